//! `swarm-operator delete`: stored spec files removed, then the secrets `apply` created that
//! nothing names or mounts any more.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{CliError, connect};
use crate::desired::applied_secrets::{self, Collected};
use crate::docker::DockerEngine;
use crate::spec::in_swarm::{SpecConfigs, read_spec_files};

/// The arguments of `delete`.
#[derive(clap::Args)]
pub struct DeleteArgs {
    /// A spec file or directory, or the name of a stored file (`quote-service.yaml`).
    pub target: PathBuf,
    /// As for `run`.
    #[arg(long, env = "SWARM_OPERATOR_INSTANCE", default_value = "default")]
    pub instance: String,
}

/// Prints what was removed; exit 1 if nothing of that name was stored.
pub async fn run(args: DeleteArgs, context: Option<&str>) -> Result<ExitCode, CliError> {
    let DeleteArgs { target, instance } = args;
    let api = connect(context).await?;
    let report = delete_target(&api, &target, &instance).await?;
    for name in &report.removed {
        println!("{name} removed");
    }
    for name in &report.secrets.removed {
        println!("secret {name} removed");
    }
    for name in &report.secrets.kept {
        println!("secret {name} still in use: the operator removes it once unused");
    }
    if report.removed.is_empty() {
        eprintln!(
            "{}: no such stored spec file of instance {instance:?}",
            target.display()
        );
        Ok(ExitCode::from(1))
    } else {
        Ok(ExitCode::SUCCESS)
    }
}

/// What `delete` did.
#[derive(Debug, Default)]
pub struct DeleteReport {
    /// The stored files removed.
    pub removed: Vec<String>,
    /// Secrets `apply` created that no stored spec names any more, removed.
    pub secrets: Collected,
}

/// `delete TARGET`: removes stored spec files. `TARGET` is a spec file or directory (its file
/// names are removed) or the name of a stored file. Then removes the secrets `apply` created
/// whose SwarmSecret no stored spec declares any more and that no service mounts (see
/// [`applied_secrets::collect_unused`]).
pub async fn delete_target(
    api: &DockerEngine,
    target: &Path,
    instance: &str,
) -> Result<DeleteReport, CliError> {
    let names: BTreeSet<String> = if target.exists() {
        read_spec_files(target)?
            .into_iter()
            .map(|f| f.name)
            .collect()
    } else {
        BTreeSet::from([target.display().to_string()])
    };
    let removed = SpecConfigs::new(api.clone(), instance)
        .delete(&names)
        .await?;
    let secrets = applied_secrets::collect_unused(api, instance).await?;
    Ok(DeleteReport { removed, secrets })
}
