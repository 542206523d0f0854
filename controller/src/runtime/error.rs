//! The runtime's error type: the only errors that cross the module boundary.

use std::time::Duration;

/// Why a [`super::Runner`] could not be built.
///
/// Reconcile errors never surface here: they belong to the caller's reconcile function, are
/// retried with backoff, and are reported through [`super::RunnerObserver`] and `tracing`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// `concurrency` was 0, so no reconcile could ever start.
    #[error("runner concurrency must be at least 1")]
    ZeroConcurrency,

    /// The backoff bounds are unusable: a zero minimum would retry a failing key in a hot loop,
    /// and a minimum above the maximum has no meaning.
    #[error("invalid reconcile backoff: min {min:?}, max {max:?} (need 0 < min <= max)")]
    InvalidBackoff {
        /// The configured first (smallest) retry delay.
        min: Duration,
        /// The configured largest retry delay.
        max: Duration,
    },
}
