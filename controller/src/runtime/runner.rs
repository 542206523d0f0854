//! The reconcile loop: triggers in, scheduled and rate-limited reconciles out, graceful shutdown.

use std::collections::{HashSet, VecDeque};
use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::Instrument;

use super::backoff::{DEFAULT_MAX_BACKOFF, DEFAULT_MIN_BACKOFF, KeyedBackoff};
use super::scheduler::{Debounce, ScheduleRequest, Scheduler};
use super::{Action, Error, NoopObserver, Outcome, RunnerObserver};

/// Adapts an mpsc receiver into the stream of keys [`Runner::run`] takes.
///
/// The runner drains triggers continuously (scheduling is cheap and deduplicated), so a
/// bounded channel only applies back-pressure while the runner is not being polled.
pub fn receiver_stream<T>(mut rx: mpsc::Receiver<T>) -> impl Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Default number of reconciles allowed to run at once.
pub const DEFAULT_CONCURRENCY: usize = 4;

/// Runner settings; builder methods consume and return `self`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunnerConfig {
    concurrency: usize,
    debounce: Debounce,
    min_backoff: Duration,
    max_backoff: Duration,
    shutdown_grace: Option<Duration>,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            concurrency: DEFAULT_CONCURRENCY,
            debounce: Debounce::NONE,
            min_backoff: DEFAULT_MIN_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
            shutdown_grace: None,
        }
    }
}

impl RunnerConfig {
    /// At most `n` reconciles run at once, across all keys (default 4). Must be at least 1.
    ///
    /// The limit protects the Docker daemon: every reconcile makes API calls, and a resync of
    /// hundreds of objects must not open hundreds of requests at once.
    #[must_use]
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// Delay every request by `window`, restarting it when another request for the same key
    /// arrives, but never by more than `max_delay` (see [`Scheduler`]). Default: no debounce.
    ///
    /// Debounce applies to every scheduled run, including [`Action::requeue`] and backoff
    /// retries, which therefore run up to `window` late.
    #[must_use]
    pub fn debounce(mut self, window: Duration, max_delay: Duration) -> Self {
        self.debounce = Debounce { window, max_delay };
        self
    }

    /// Retry delays after errors grow from `min` to `max` (defaults 500 ms and 5 min).
    #[must_use]
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.min_backoff = min;
        self.max_backoff = max;
        self
    }

    /// At shutdown, give in-flight reconciles `grace` to finish, then drop them (default: wait
    /// for them however long they take). A reconcile stuck on a hung dependency must not hold
    /// the process; dropping one mid-way is safe when, as here, every reconcile starts by
    /// reading what is there.
    #[must_use]
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = Some(grace);
        self
    }

    fn validate(&self) -> Result<(), Error> {
        if self.concurrency == 0 {
            return Err(Error::ZeroConcurrency);
        }
        if self.min_backoff.is_zero() || self.min_backoff > self.max_backoff {
            return Err(Error::InvalidBackoff {
                min: self.min_backoff,
                max: self.max_backoff,
            });
        }
        Ok(())
    }
}

/// Runs a reconcile function for the keys it is sent: each one names an object whose state
/// changed.
///
/// Guarantees:
/// * **one at a time per key** — a key that becomes due while its reconcile is running is held
///   and runs once more right after it finishes, however many requests came in meanwhile;
/// * **global limit** — at most [`RunnerConfig::concurrency`] reconciles in flight; due keys
///   wait in FIFO order for a free slot;
/// * **backoff per key** — `Err` schedules a retry after the key's next backoff delay
///   ([`KeyedBackoff`]); `Ok` resets it and follows the [`Action`]. A failing key's retry sits
///   in the scheduler, not in a slot, so it never blocks other keys. A key sent again while it
///   backs off runs at once, as in kube-runtime: callers send a key only when its object or
///   its spec changed, which is new information. The backoff keeps growing until the key
///   succeeds.
///
/// Reconciles are polled inside the future returned by [`Runner::run`] (a `FuturesUnordered`,
/// like kube-runtime's runner), not spawned: there is no `JoinError` to handle, and a panic in
/// the reconcile function propagates to whoever awaits `run`. Spawn `run` itself to put it on
/// its own task.
pub struct Runner<K, F> {
    reconcile: F,
    config: RunnerConfig,
    observer: Arc<dyn RunnerObserver<K>>,
}

impl<K, F> Debug for Runner<K, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<K, F, Fut, E> Runner<K, F>
where
    K: Clone + Eq + Hash + Debug + Send + Sync + 'static,
    F: Fn(K) -> Fut,
    Fut: Future<Output = Result<Action, E>>,
    E: std::error::Error + 'static,
{
    /// A runner calling `reconcile` for each due key.
    ///
    /// # Errors
    /// [`Error::ZeroConcurrency`] or [`Error::InvalidBackoff`] for an unusable `config`.
    pub fn new(reconcile: F, config: RunnerConfig) -> Result<Self, Error> {
        config.validate()?;
        Ok(Self {
            reconcile,
            config,
            observer: Arc::new(NoopObserver),
        })
    }

    /// Report progress to `observer` (metrics). Default: [`NoopObserver`].
    #[must_use]
    pub fn observer(mut self, observer: Arc<dyn RunnerObserver<K>>) -> Self {
        self.observer = observer;
        self
    }

    /// Run until `shutdown` completes, then stop taking triggers and starting reconciles, wait
    /// for the in-flight ones to finish, and return. Queued work is dropped (a restart
    /// reconciles everything anyway).
    ///
    /// `triggers` names keys to reconcile as soon as possible (subject to debounce, the
    /// concurrency limit and a running reconcile of the same key). Its end is not a shutdown: scheduled requeues and retries keep
    /// running until `shutdown` completes. For a `CancellationToken`, pass
    /// `token.cancelled_owned()`.
    pub async fn run<S, Sh>(self, triggers: S, shutdown: Sh)
    where
        S: Stream<Item = K>,
        Sh: Future<Output = ()>,
    {
        let Runner {
            reconcile,
            config,
            observer,
        } = self;
        let mut scheduler = Scheduler::new().with_debounce(config.debounce);
        let mut backoff = KeyedBackoff::new(config.min_backoff, config.max_backoff);
        // Keys with a reconcile in flight: the "never two at once" invariant.
        let mut running: HashSet<K> = HashSet::new();
        // Keys that became due while running; each runs once more when its reconcile ends.
        let mut held: HashSet<K> = HashSet::new();
        // Keys due now, waiting for a concurrency slot, in arrival order (deduplicated).
        let mut ready: VecDeque<K> = VecDeque::new();
        let mut ready_set: HashSet<K> = HashSet::new();
        let mut in_flight = FuturesUnordered::new();

        let mut triggers = pin!(triggers);
        let mut shutdown = pin!(shutdown);
        let mut triggers_open = true;
        let mut stopping = false;
        let mut last_depth = None;
        let mut was_idle = true;
        // Armed at shutdown when there is a grace.
        let mut grace_ends: Option<Instant> = None;

        loop {
            if !stopping {
                while in_flight.len() < config.concurrency {
                    let Some(key) = ready.pop_front() else { break };
                    ready_set.remove(&key);
                    running.insert(key.clone());
                    observer.on_reconcile_start(&key);
                    in_flight.push(reconcile_one(&reconcile, key));
                }
            }
            let depth = scheduler.len() + ready.len() + held.len();
            if last_depth != Some(depth) {
                last_depth = Some(depth);
                observer.on_queue_depth(depth);
            }
            // Every table grows to a burst's size and keeps it: give the room back once the
            // burst has run (a few small allocations on a quiet swarm, where bursts are one key).
            let idle = depth == 0 && in_flight.is_empty();
            if idle && !was_idle {
                scheduler.shrink_to_fit();
                ready.shrink_to_fit();
                ready_set.shrink_to_fit();
                held.shrink_to_fit();
                running.shrink_to_fit();
                backoff.shrink_to_fit();
            }
            was_idle = idle;
            if stopping && in_flight.is_empty() {
                break;
            }

            tokio::select! {
                () = &mut shutdown, if !stopping => {
                    stopping = true;
                    grace_ends = config.shutdown_grace.map(|grace| Instant::now() + grace);
                    tracing::info!(in_flight = in_flight.len(), "runner stopping: waiting for in-flight reconciles");
                }
                () = async { tokio::time::sleep_until(grace_ends.expect("guarded")).await },
                    if grace_ends.is_some() => {
                    tracing::warn!(abandoned = ?running, "in-flight reconciles did not finish within the shutdown grace; abandoned");
                    break;
                }
                Some((key, result, elapsed)) = in_flight.next(), if !in_flight.is_empty() => {
                    running.remove(&key);
                    match result {
                        Ok(action) => {
                            backoff.reset(&key);
                            observer.on_reconcile_done(&key, Outcome::Success, elapsed);
                            if let Some(delay) = action.requeue_after() {
                                scheduler.schedule(ScheduleRequest::after(key.clone(), delay));
                            }
                        }
                        Err(error) => {
                            let retry_in = backoff.next_delay(&key);
                            tracing::warn!(
                                key = ?key,
                                error = &error as &(dyn std::error::Error + 'static),
                                failures = backoff.failures(&key),
                                ?retry_in,
                                "reconcile failed"
                            );
                            observer.on_reconcile_error(&key, &error, retry_in);
                            observer.on_reconcile_done(&key, Outcome::Error, elapsed);
                            scheduler.schedule(ScheduleRequest::after(key.clone(), retry_in));
                        }
                    }
                    if held.remove(&key) && ready_set.insert(key.clone()) {
                        ready.push_back(key);
                    }
                }
                trigger = triggers.next(), if triggers_open && !stopping => match trigger {
                    Some(key) => scheduler.schedule(ScheduleRequest::now(key)),
                    None => {
                        tracing::debug!("trigger stream ended; scheduled work continues until shutdown");
                        triggers_open = false;
                    }
                },
                key = scheduler.next_due(), if !stopping => {
                    if running.contains(&key) {
                        held.insert(key);
                    } else if ready_set.insert(key.clone()) {
                        ready.push_back(key);
                    }
                }
            }
        }
        tracing::info!("runner stopped");
    }
}

/// One reconcile as a future: the key, its result and how long it took, inside a span.
fn reconcile_one<K, F, Fut, E>(
    reconcile: &F,
    key: K,
) -> impl Future<Output = (K, Result<Action, E>, Duration)> + use<K, F, Fut, E>
where
    K: Debug,
    F: Fn(K) -> Fut,
    K: Clone,
    Fut: Future<Output = Result<Action, E>>,
{
    let span = tracing::info_span!("reconcile", key = ?key);
    let fut = span.in_scope(|| reconcile(key.clone()));
    async move {
        let started = Instant::now();
        let result = fut.await;
        let elapsed = started.elapsed();
        tracing::debug!(?elapsed, ok = result.is_ok(), "reconcile finished");
        (key, result, elapsed)
    }
    .instrument(span)
}
