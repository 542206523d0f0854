//! What wakes the reconciler: spec directory changes, Docker events, task polling and the
//! periodic resync. Each trigger refreshes the shared view and says which objects to look at.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::desired::DesiredState;
use crate::docker::{DockerError, SwarmApi};
use crate::plan::{ObjectKey, all_keys};
use crate::spec::SpecStore;
use crate::spec::load::LoadDirError;
use crate::world::World;

/// Errors setting up a trigger.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    /// The spec directory could not be watched.
    #[error("watching spec directory {dir}: {source}")]
    Watch {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: notify::Error,
    },
}

/// How long file events are collected before one reload: editors write a file in several
/// steps (truncate, write, rename), and one reload per save is enough.
const SPEC_DEBOUNCE: Duration = Duration::from_millis(150);

/// Re-reads the spec directory into the world. Returns whether the desired state changed.
///
/// A directory that can not be read changes nothing (and so prunes nothing); the error is
/// returned for the caller to report.
pub fn reload_specs(
    world: &World,
    store: &mut SpecStore,
    dir: &Path,
    allow_empty_prune: bool,
    instance: &str,
) -> Result<bool, LoadDirError> {
    let existing_networks: BTreeSet<String> =
        world.read().observed.networks.keys().cloned().collect();
    let desired = DesiredState::load(store, dir, &existing_networks, allow_empty_prune, instance)?;
    for error in &desired.errors {
        warn!(%error, "spec problem");
    }
    let changed = {
        let state = world.read();
        state.desired != desired || !state.specs_loaded
    };
    if changed {
        let mut state = world.write();
        state.desired = desired;
        state.specs_loaded = true;
    }
    Ok(changed)
}

/// Lists the whole swarm into the world.
pub async fn refresh_swarm<A: SwarmApi>(api: &A, world: &World) -> Result<(), DockerError> {
    let observed = api.observe().await?;
    let mut state = world.write();
    state.observed = observed;
    state.swarm_observed = true;
    Ok(())
}

/// Re-reads one service into the world (after an event about it).
pub async fn refresh_service<A: SwarmApi>(
    api: &A,
    world: &World,
    name: &str,
) -> Result<(), DockerError> {
    let service = api.inspect_service(name).await?;
    let mut state = world.write();
    match service {
        Some(service) => state.observed.services.insert(name.to_owned(), service),
        None => state.observed.services.remove(name),
    };
    Ok(())
}

/// Every object key the world knows (for a full resync).
pub fn keys(world: &World) -> Vec<ObjectKey> {
    let state = world.read();
    all_keys(&state.desired, &state.observed)
        .into_iter()
        .collect()
}

/// Watches the spec directory; every burst of changes sends one `()`. Keep the returned
/// debouncer alive for as long as events are wanted. Events are hints only: the receiver
/// re-reads the whole directory.
pub fn watch_specs(
    dir: &Path,
) -> Result<
    (
        Debouncer<notify::RecommendedWatcher, RecommendedCache>,
        mpsc::Receiver<()>,
    ),
    TriggerError,
> {
    // Capacity 1: a pending "something changed" already covers any later change.
    let (tx, rx) = mpsc::channel(1);
    let mut debouncer = new_debouncer(SPEC_DEBOUNCE, None, move |result: DebounceEventResult| {
        match result {
            Ok(events) if !events.is_empty() => {
                debug!(events = events.len(), "spec directory changed");
                let _ = tx.try_send(());
            }
            Ok(_) => {}
            Err(errors) => {
                for error in errors {
                    warn!(%error, "watching the spec directory");
                }
                // Lost events: re-read to be safe.
                let _ = tx.try_send(());
            }
        }
    })
    .map_err(|source| TriggerError::Watch {
        dir: dir.to_owned(),
        source,
    })?;
    debouncer
        .watch(dir, RecursiveMode::NonRecursive)
        .map_err(|source| TriggerError::Watch {
            dir: dir.to_owned(),
            source,
        })?;
    Ok((debouncer, rx))
}
