//! A small reconciler runtime modelled on kube-runtime: scheduler, per-key backoff and runner.
//!
//! The runtime decides *when* a key is reconciled; the caller's reconcile function decides
//! *what* happens. It knows nothing about Docker or spec files: keys are any
//! `Clone + Eq + Hash + Debug + Send + Sync + 'static` value.
//!
//! * [`Scheduler`] — pending work, one entry per key, earliest time wins, optional bounded
//!   debounce.
//! * [`KeyedBackoff`] — exponential backoff with jitter per failing key (backon).
//! * [`Runner`] — takes the keys of changed objects, runs the reconcile function with a global concurrency
//!   limit and never twice at once for the same key, requeues per the returned [`Action`] or
//!   the backoff, and shuts down gracefully.
//!
//! ```no_run
//! use std::time::Duration;
//! use swarm_operator::runtime::{self, Action, Runner, RunnerConfig};
//! use tokio_util::sync::CancellationToken;
//!
//! #[derive(Debug, thiserror::Error)]
//! #[error("docker said no")]
//! struct ReconcileError;
//!
//! async fn reconcile(name: String) -> Result<Action, ReconcileError> {
//!     // observe, plan, apply, write status for `name` ...
//!     Ok(Action::requeue(Duration::from_secs(2)))
//! }
//!
//! # async fn example() -> Result<(), runtime::Error> {
//! let (tx, rx) = tokio::sync::mpsc::channel(1024);
//! let shutdown = CancellationToken::new();
//! let runner = Runner::new(reconcile, RunnerConfig::default().concurrency(8))?;
//! let task = tokio::spawn(runner.run(runtime::receiver_stream(rx), shutdown.clone().cancelled_owned()));
//!
//! tx.send("quote-service".to_string()).await.unwrap(); // its spec or its service changed
//! shutdown.cancel(); // SIGTERM: no new work, in-flight reconciles finish, then `run` returns
//! task.await.unwrap();
//! # Ok(()) }
//! ```

mod action;
pub mod backoff;
mod error;
mod observer;
pub mod runner;
pub mod scheduler;

// The tests run on paused tokio time (`start_paused`), which needs tokio's `test-util` feature:
// controller/Cargo.toml [dev-dependencies] must have
// `tokio = { workspace = true, features = ["test-util"] }`.
#[cfg(test)]
mod tests;

pub use action::Action;
pub use backoff::KeyedBackoff;
pub use error::Error;
pub use observer::{NoopObserver, Outcome, RunnerObserver};
pub use runner::{Runner, RunnerConfig, receiver_stream};
pub use scheduler::{Debounce, ScheduleRequest, Scheduler};
