//! Hooks the runner calls so metrics can be attached without the runtime knowing Prometheus.

use std::time::Duration;

/// How a reconcile ended, as a low-cardinality label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The reconcile returned `Ok(Action)`.
    Success,
    /// The reconcile returned `Err(_)`; it will be retried with backoff.
    Error,
}

impl Outcome {
    /// A stable label value (`"success"` / `"error"`) for metrics.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Error => "error",
        }
    }
}

/// Callbacks from the runner's loop. Every method defaults to a no-op.
///
/// They are called inline from the runner task, so they must be cheap and must not block
/// (incrementing a counter is fine; network I/O is not).
pub trait RunnerObserver<K>: Send + Sync {
    /// A reconcile of `key` is about to start.
    fn on_reconcile_start(&self, _key: &K) {}

    /// A reconcile of `key` finished after `duration` (measured on the tokio clock).
    fn on_reconcile_done(&self, _key: &K, _outcome: Outcome, _duration: Duration) {}

    /// A reconcile of `key` failed; it is scheduled again after `retry_in`.
    /// Called before [`RunnerObserver::on_reconcile_done`] for the same reconcile.
    fn on_reconcile_error(
        &self,
        _key: &K,
        _error: &(dyn std::error::Error + 'static),
        _retry_in: Duration,
    ) {
    }

    /// The number of keys waiting to run changed (scheduled, due but waiting for a slot, or held
    /// behind a running reconcile of the same key). In-flight reconciles are not counted.
    fn on_queue_depth(&self, _depth: usize) {}
}

/// The default observer: ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopObserver;

impl<K> RunnerObserver<K> for NoopObserver {}
