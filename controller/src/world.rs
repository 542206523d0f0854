//! The operator's in-memory view: the desired state, the last observation of the swarm, and
//! what happened to each object, shared by the triggers, the reconciler and the status writer.
//!
//! Like kube-runtime's reflector store, it lets a reconcile of one object plan without listing
//! the whole swarm; writers update the entries they touched so the next plan sees their work.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::Notify;

use crate::desired::DesiredState;
use crate::docker::{Observed, ObservedTask};
use crate::plan::{Conflict, ObjectKey};

/// The outcome of the last reconcile of one object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObjectOutcome {
    /// The error of the last reconcile, if it failed.
    pub last_error: Option<String>,
    /// Why the plan left the object alone, if it did.
    pub conflict: Option<Conflict>,
}

/// Everything the operator knows right now.
#[derive(Debug, Default)]
pub struct WorldState {
    /// What the spec directory asks for.
    pub desired: DesiredState,
    /// What the swarm looked like, as last listed and patched by our own writes.
    pub observed: Observed,
    /// Per-object outcome of the last reconcile.
    pub outcomes: BTreeMap<ObjectKey, ObjectOutcome>,
    /// The spec directory has been read at least once.
    pub specs_loaded: bool,
    /// The swarm has been observed at least once.
    pub swarm_observed: bool,
}

/// Shared handle to the [`WorldState`] plus a signal that the status file is out of date.
#[derive(Debug, Clone, Default)]
pub struct World {
    state: Arc<RwLock<WorldState>>,
    changed: Arc<Notify>,
}

impl World {
    /// Read access. Hold it briefly: writers wait.
    pub fn read(&self) -> RwLockReadGuard<'_, WorldState> {
        // A panic while holding the lock is a bug we would rather surface than hide.
        self.state.read().expect("world lock poisoned")
    }

    /// Write access; marks the status as out of date.
    pub fn write(&self) -> RwLockWriteGuard<'_, WorldState> {
        self.changed.notify_one();
        self.state.write().expect("world lock poisoned")
    }

    /// Waits until something was written since the last wait.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Replaces the task list; returns whether anything the status shows changed.
    pub fn set_tasks(&self, tasks: Vec<ObservedTask>) -> bool {
        if self.read().observed.tasks == tasks {
            return false;
        }
        self.write().observed.tasks = tasks;
        true
    }

    /// Records the outcome of a reconcile.
    pub fn set_outcome(&self, key: &ObjectKey, outcome: ObjectOutcome) {
        let unchanged = self.read().outcomes.get(key) == Some(&outcome);
        if !unchanged {
            self.write().outcomes.insert(key.clone(), outcome);
        }
    }

    /// Whether both the specs and the swarm have been read once (readiness).
    pub fn is_ready(&self) -> bool {
        let state = self.read();
        state.specs_loaded && state.swarm_observed
    }
}
