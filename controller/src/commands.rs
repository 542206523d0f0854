//! The one-shot commands: `validate` and `diff` (the long-running `run` is in `operator`).

use std::collections::BTreeSet;
use std::path::Path;

use crate::desired::DesiredState;
use crate::docker::{DockerError, SwarmApi};
use crate::plan::{Plan, plan};
use crate::spec::{LoadDirError, SpecError, SpecStore};

/// Errors of the one-shot commands.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The spec directory could not be read.
    #[error(transparent)]
    Load(#[from] LoadDirError),
    /// The swarm could not be read.
    #[error(transparent)]
    Docker(#[from] DockerError),
}

/// Validates the spec directory. With `existing_networks` (read from a live swarm) references
/// to networks that exist there are accepted; with `None` every referenced network is assumed
/// to exist (offline validation) and only the other checks run.
pub fn validate_dir(
    dir: &Path,
    existing_networks: Option<&BTreeSet<String>>,
) -> Result<Vec<SpecError>, CommandError> {
    let mut store = SpecStore::new();
    let desired = match existing_networks {
        Some(networks) => store.reload_validated(dir, networks)?,
        None => {
            // Two passes: the first learns which networks are referenced, the second treats
            // them all as existing, so that only a live swarm can call one missing.
            let loaded = store.reload(dir)?;
            let referenced: BTreeSet<String> = loaded
                .objects
                .iter()
                .filter_map(|o| o.value.as_service())
                .flat_map(|s| s.spec.networks.iter().cloned())
                .chain(
                    loaded
                        .objects
                        .iter()
                        .filter_map(|o| o.value.as_network())
                        .filter(|n| n.spec.external)
                        .map(|n| n.metadata.name.clone()),
                )
                .collect();
            store = SpecStore::new();
            store.reload_validated(dir, &referenced)?
        }
    };
    Ok(desired.errors)
}

/// The plan for the spec directory against the live swarm, and the spec problems found.
pub async fn diff_dir<A: SwarmApi>(
    api: &A,
    dir: &Path,
    allow_empty_prune: bool,
    instance: &str,
) -> Result<(Plan, Vec<SpecError>), CommandError> {
    let observed = api.observe().await?;
    let existing: BTreeSet<String> = observed.networks.keys().cloned().collect();
    let desired = DesiredState::load(
        &mut SpecStore::new(),
        dir,
        &existing,
        allow_empty_prune,
        instance,
    )?;
    Ok((plan(&desired, &observed), desired.errors))
}
