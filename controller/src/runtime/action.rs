//! What a reconcile asks the runtime to do next: requeue after a delay, or wait for a change.

use std::time::Duration;

/// The successful result of one reconcile, modelled on kube-runtime's `Action`.
///
/// Errors are not an `Action`: a reconcile that returns `Err` is retried with per-key
/// exponential backoff (see [`super::backoff`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Action {
    requeue_after: Option<Duration>,
}

impl Action {
    /// Reconcile this key again after `duration`, even if nothing triggers it.
    ///
    /// Use it for state that has no change events (swarm tasks) or as a safety net. An earlier
    /// trigger for the same key still wins: the scheduler keeps the earliest pending time.
    #[must_use]
    pub const fn requeue(duration: Duration) -> Self {
        Self {
            requeue_after: Some(duration),
        }
    }

    /// Do nothing until a trigger names this key again (a spec change, a Docker event, a resync).
    #[must_use]
    pub const fn await_change() -> Self {
        Self {
            requeue_after: None,
        }
    }

    /// The requested requeue delay, `None` for [`Action::await_change`].
    #[must_use]
    pub const fn requeue_after(&self) -> Option<Duration> {
        self.requeue_after
    }
}
