//! `swarm-operator diff`: what `run` would change, from the spec directory and the live swarm,
//! without changing anything.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::args::AgeArgs;
use super::{CliError, connect};
use crate::control::plan::{Plan, PlanDisplay, plan};
use crate::desired::DesiredState;
use crate::docker::SwarmApi;
use crate::redact::Values;
use crate::spec::{AgeIdentities, SpecError, SpecStore};

/// The arguments of `diff`.
#[derive(clap::Args)]
pub struct DiffArgs {
    /// The spec directory.
    pub dir: PathBuf,
    /// As for `run`.
    #[arg(long)]
    pub allow_empty_prune: bool,
    /// As for `run`.
    #[arg(long, env = "SWARM_OPERATOR_INSTANCE", default_value = "default")]
    pub instance: String,
    /// Print env values (old → new) instead of only `env.NAME changed`. Refused (exit 2)
    /// unless stdout is a terminal and CI is unset: values never go to pipes or CI logs.
    #[arg(long)]
    pub show_values: bool,
    #[command(flatten)]
    pub age: AgeArgs,
}

/// Prints the plan; exit 0 in sync, 1 changes pending, 2 spec problems.
pub async fn run(args: DiffArgs, context: Option<&str>) -> Result<ExitCode, CliError> {
    let DiffArgs {
        dir,
        allow_empty_prune,
        instance,
        show_values,
        age,
    } = args;
    let identities = age.read()?;
    use std::io::IsTerminal as _;
    // Values go to the user's own terminal only: a pipe, a file or a CI log would keep
    // them.
    if show_values && (!std::io::stdout().is_terminal() || std::env::var_os("CI").is_some()) {
        eprintln!(
            "diff --show-values prints env values only to your own terminal: stdout is not a terminal (or CI is set); run it without --show-values to see which keys changed"
        );
        return Ok(ExitCode::from(2));
    }
    let api = connect(context).await?;
    let (plan, errors) = diff_dir(&api, &dir, allow_empty_prune, &instance, &identities).await?;
    let values = if show_values {
        Values::Shown
    } else {
        Values::Hidden
    };
    print!("{}", PlanDisplay(&plan, values));
    for error in &errors {
        eprintln!("{error}");
    }
    Ok(if !errors.is_empty() {
        ExitCode::from(2)
    } else if plan.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The plan for the spec directory against the live swarm, and the spec problems found.
pub async fn diff_dir<A: SwarmApi>(
    api: &A,
    dir: &Path,
    allow_empty_prune: bool,
    instance: &str,
    identities: &AgeIdentities,
) -> Result<(Plan, Vec<SpecError>), CliError> {
    let observed = api.observe().await?;
    let existing: BTreeSet<String> = observed.networks.keys().cloned().collect();
    let mut store = SpecStore::with_identities(identities.clone());
    store.set_engine_api(api.engine_api_version());
    let desired = DesiredState::load(&mut store, dir, &existing, allow_empty_prune, instance)?;
    Ok((plan(&desired, &observed), desired.errors))
}
