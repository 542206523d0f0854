//! `swarm-operator validate`: every spec of a directory checked, offline or against the swarm's
//! networks, one line per problem.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::args::AgeArgs;
use super::{CliError, connect};
use crate::docker::SwarmApi;
use crate::spec::{AgeIdentities, EngineApiVersion, SpecError, SpecStore};

/// The arguments of `validate`.
#[derive(clap::Args)]
pub struct ValidateArgs {
    /// The spec directory.
    pub dir: PathBuf,
    /// Do not ask the swarm which networks exist (references are then not checked), nor
    /// which Engine API version it speaks (fields it would not know are then checked only
    /// against `--api-version`).
    #[arg(long)]
    pub offline: bool,
    /// Refuse service fields that this Engine API version (e.g. `1.41`, Docker 20.10) does
    /// not know, instead of the engine's own version.
    #[arg(long, value_name = "VERSION")]
    pub api_version: Option<EngineApiVersion>,
    #[command(flatten)]
    pub age: AgeArgs,
}

/// Prints every problem; exit 1 if there is one.
pub async fn run(args: ValidateArgs, context: Option<&str>) -> Result<ExitCode, CliError> {
    let ValidateArgs {
        dir,
        offline,
        api_version,
        age,
    } = args;
    let identities = age.read()?;
    let (networks, engine_api) = if offline {
        if api_version.is_none() {
            eprintln!(
                "note: offline, so fields the engine's API version may not know are not checked (give --api-version, e.g. 1.41)"
            );
        }
        (None, api_version)
    } else {
        let api = connect(context)
            .await
            .map_err(|e| CliError::NetworkCheck(Box::new(e)))?;
        let networks = api.observe().await?.networks.into_keys().collect();
        (Some(networks), api_version.or(api.engine_api_version()))
    };
    let errors = validate_dir(&dir, networks.as_ref(), &identities, engine_api)?;
    for error in &errors {
        println!("{error}");
    }
    if errors.is_empty() {
        println!("{}: all specs valid", dir.display());
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("{} problem(s) found", errors.len());
        Ok(ExitCode::from(1))
    }
}

/// Validates the spec directory. With `existing_networks` (read from a live swarm) references
/// to networks that exist there are accepted; with `None` every referenced network is assumed
/// to exist (offline validation) and only the other checks run. `.age` files are decrypted
/// with `identities`. With `engine_api`, service fields that Engine API version does not know
/// are errors; with `None` that check is skipped.
pub fn validate_dir(
    dir: &Path,
    existing_networks: Option<&BTreeSet<String>>,
    identities: &AgeIdentities,
    engine_api: Option<EngineApiVersion>,
) -> Result<Vec<SpecError>, CliError> {
    let mut store = SpecStore::with_identities(identities.clone());
    store.set_engine_api(engine_api);
    let desired = match existing_networks {
        Some(networks) => store.reload_validated(dir, networks)?,
        None => {
            // Two passes: the first learns which networks are referenced, the second treats
            // them all as existing, so that only a live swarm can call one missing.
            let objects = store.reload(dir)?.objects();
            let referenced: BTreeSet<String> = objects
                .iter()
                .filter_map(|o| o.value.as_service())
                .flat_map(|s| s.spec.networks.iter().cloned())
                .chain(
                    objects
                        .iter()
                        .filter_map(|o| o.value.as_network())
                        .filter(|n| n.spec.external)
                        .map(|n| n.metadata.name.clone()),
                )
                .collect();
            store = SpecStore::with_identities(identities.clone());
            store.set_engine_api(engine_api);
            store.reload_validated(dir, &referenced)?
        }
    };
    Ok(desired.errors)
}
