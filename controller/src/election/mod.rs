//! Leader election among operator replicas: a lease in a store with compare-and-swap (the swarm's
//! raft store, through a config's version index), renewed by the leader, taken over once it
//! has not changed for a whole lease duration.
//!
//! Like client-go's leader election, followers judge expiry by their own monotonic clock from
//! the moment they saw the lease change, never by the holder's wall clock, so clock skew between
//! managers does not matter. The leader counts itself leader only until `renew_deadline` after
//! its last successful renewal (shorter than the lease), and [`Leadership::is_leader`] checks
//! that deadline on every call: a process that was paused past it stops writing at once, even
//! before its elector task runs again.

mod gate;
mod swarm;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::docker::DockerError;
use crate::docker::configs::CasOutcome;

pub use gate::LeaderGate;
pub use swarm::SwarmLeaseStore;

/// How long a lease stays valid without renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How often the leader renews.
pub const RENEW_PERIOD: Duration = Duration::from_secs(5);
/// How long the leader keeps leading without a successful renewal (less than the lease, so it
/// has stopped before anyone else may start).
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// How often followers look at the lease, and how soon a failed call is retried.
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);
/// How much of its tenure a leader must have left to start a write: a write begun just before
/// the deadline would otherwise land after it (the lease itself runs 5 s longer still).
pub const WRITE_MARGIN: Duration = Duration::from_secs(2);

/// Errors reading or writing the lease.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The swarm did not answer as expected.
    #[error("leader lease {lease:?}: {source}")]
    Docker {
        /// The lease object's name.
        lease: String,
        /// What the engine said.
        source: DockerError,
    },
    /// The store did not answer in time.
    #[error("leader lease: no answer within {0:?}")]
    Timeout(Duration),
}

/// What the lease says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    /// The identity of the replica holding it; empty when released.
    pub holder: String,
    /// A random token of the holding process: two replicas given the same identity (a
    /// copy-pasted `--identity`, or two tasks on one host) still tell their leases apart.
    pub token: String,
    /// Incremented whenever the lease changes hands.
    pub term: u64,
    /// When the holder last renewed, RFC 3339 (for people; expiry uses the observers' clocks).
    pub renewed_at: String,
}

/// A lease record with the store version to compare-and-swap against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionedLease {
    /// The store's version of the record.
    pub version: u64,
    /// The record.
    pub record: LeaseRecord,
}

/// Where the lease lives: one record with compare-and-swap.
pub trait LeaseStore: Send + Sync + 'static {
    /// The current record; `None` when there is no lease object yet.
    fn read(&self) -> impl Future<Output = Result<Option<VersionedLease>, LeaseError>> + Send;

    /// Creates the lease object; [`CasOutcome::Conflict`] if it already exists.
    fn create(
        &self,
        record: &LeaseRecord,
    ) -> impl Future<Output = Result<CasOutcome, LeaseError>> + Send;

    /// Replaces the record if the stored version is still `version`.
    fn replace(
        &self,
        version: u64,
        record: &LeaseRecord,
    ) -> impl Future<Output = Result<CasOutcome, LeaseError>> + Send;
}

/// Timing of the election.
#[derive(Debug, Clone)]
pub struct ElectionConfig {
    /// This replica's identity (unique among the replicas: task name, hostname).
    pub identity: String,
    /// See [`LEASE_DURATION`].
    pub lease_duration: Duration,
    /// See [`RENEW_PERIOD`].
    pub renew_period: Duration,
    /// See [`RENEW_DEADLINE`].
    pub renew_deadline: Duration,
    /// See [`RETRY_PERIOD`].
    pub retry_period: Duration,
}

impl ElectionConfig {
    /// The default timing (lease 15 s, renew every 5 s) for `identity`.
    pub fn new(identity: impl Into<String>) -> Self {
        ElectionConfig {
            identity: identity.into(),
            lease_duration: LEASE_DURATION,
            renew_period: RENEW_PERIOD,
            renew_deadline: RENEW_DEADLINE,
            retry_period: RETRY_PERIOD,
        }
    }
}

/// Whether this replica leads, as of now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tenure {
    Follower,
    /// Leading until this instant unless renewed.
    Until(Instant),
    /// The single-replica case: no election.
    Always,
}

impl Tenure {
    /// Whether a write may start now: leading, with at least [`WRITE_MARGIN`] of the tenure
    /// left (by the monotonic clock).
    fn lets_writes_through(&self) -> bool {
        match *self {
            Tenure::Follower => false,
            Tenure::Until(deadline) => Instant::now() + WRITE_MARGIN < deadline,
            Tenure::Always => true,
        }
    }
}

/// A read-only view of this replica's leadership, cheap to clone.
#[derive(Debug, Clone)]
pub struct Leadership {
    tenure: watch::Receiver<Tenure>,
}

impl Leadership {
    /// Leadership without an election: always the leader (one replica).
    pub fn always() -> Self {
        let (_sender, tenure) = watch::channel(Tenure::Always);
        Leadership { tenure }
    }

    /// A replica that never leads (another one does), for tests.
    #[cfg(test)]
    pub(crate) fn never() -> Self {
        let (_sender, tenure) = watch::channel(Tenure::Follower);
        Leadership { tenure }
    }

    /// Whether this replica leads right now.
    pub fn is_leader(&self) -> bool {
        match *self.tenure.borrow() {
            Tenure::Follower => false,
            Tenure::Until(deadline) => Instant::now() < deadline,
            Tenure::Always => true,
        }
    }

    /// Whether this replica may start a write now: it leads, with at least [`WRITE_MARGIN`]
    /// of its tenure left (a cheap local check by the monotonic clock, made right before each
    /// write, so that a lease lost in the middle of a reconcile stops its next write).
    pub fn may_write(&self) -> bool {
        self.tenure.borrow().lets_writes_through()
    }

    /// A leadership that holds until `deadline` and then lapses, as if renewals stopped.
    #[cfg(test)]
    pub(crate) fn until_for_test(deadline: Instant) -> Self {
        let (_sender, tenure) = watch::channel(Tenure::Until(deadline));
        Leadership { tenure }
    }

    /// Waits until the leadership may have changed (became leader, or stepped down). Returns
    /// at once, and then never again, if nobody elects any more (the elector ended, or
    /// [`Leadership::always`]): callers should use it in a `select!` with other work.
    pub async fn changed(&mut self) {
        if self.tenure.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Waits until this replica leads.
    pub async fn wait_for_leader(&mut self) {
        loop {
            if self.is_leader() {
                return;
            }
            self.changed().await;
        }
    }
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// A random token for this process's lease records. Falls back to std's per-process random
/// hasher keys (also seeded by the OS) if the OS source fails, rather than failing to start.
fn process_token() -> String {
    let value = getrandom::u64().unwrap_or_else(|_| {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::hash::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        hasher.finish()
    });
    format!("{value:016x}")
}

/// The last change of the lease this replica saw, and when (by its own clock).
#[derive(Debug, Clone)]
struct Observation {
    version: u64,
    seen_at: Instant,
}

/// Runs the election for one replica and publishes the result as a [`Leadership`].
pub struct Elector<S> {
    store: S,
    config: ElectionConfig,
    tenure: watch::Sender<Tenure>,
    /// This process's [`LeaseRecord::token`].
    token: String,
    observed: Option<Observation>,
    /// The term this replica leads in, while it leads.
    term: Option<u64>,
}

impl<S: LeaseStore> Elector<S> {
    /// An elector, starting as follower, and the view of its result.
    pub fn new(store: S, config: ElectionConfig) -> (Self, Leadership) {
        let (tenure, receiver) = watch::channel(Tenure::Follower);
        let elector = Elector {
            store,
            config,
            tenure,
            token: process_token(),
            observed: None,
            term: None,
        };
        (elector, Leadership { tenure: receiver })
    }

    /// Campaigns and renews until `shutdown` completes; then releases the lease if it holds
    /// it, so that another replica takes over without waiting for the lease to run out. Stop
    /// writing before `shutdown` completes: leadership ends with it.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let deadline = self.leader_deadline();
            // Shutdown does not wait for a step on a hung engine: the release below reads the
            // lease again anyway.
            let stepped = tokio::select! {
                () = &mut shutdown => break,
                stepped = async {
                    match deadline {
                        // A step that hangs past the renew deadline ends leadership on time.
                        Some(deadline) => tokio::time::timeout_at(deadline, self.step()).await.ok(),
                        None => Some(self.step().await),
                    }
                } => stepped,
            };
            let delay = match stepped {
                Some(delay) => delay,
                None => {
                    self.step_down("renewal did not finish before the renew deadline");
                    self.config.retry_period
                }
            };
            let wake = Instant::now() + delay;
            let deadline = self.leader_deadline();
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep_until(wake) => {}
                () = async { tokio::time::sleep_until(deadline.expect("guarded")).await },
                    if deadline.is_some_and(|d| d < wake) => {
                    self.step_down("no successful renewal before the renew deadline");
                }
            }
        }
        // Best effort, bounded as a whole: shutdown must not wait on a hung engine, and a lease
        // left behind only runs out.
        let limit = self.config.retry_period;
        if tokio::time::timeout(limit, self.release()).await.is_err() {
            warn!(after = ?limit, "the leader lease was not released in time; it runs out instead");
        }
    }

    fn leader_deadline(&self) -> Option<Instant> {
        match *self.tenure.borrow() {
            Tenure::Until(deadline) => Some(deadline),
            _ => None,
        }
    }

    fn is_leading(&self) -> bool {
        self.term.is_some()
    }

    fn record(&self, term: u64) -> LeaseRecord {
        LeaseRecord {
            holder: self.config.identity.clone(),
            token: self.token.clone(),
            term,
            renewed_at: now_rfc3339(),
        }
    }

    /// Whether `record` is this process's own lease: the identity alone is not enough, since
    /// another replica may have been given the same one.
    fn holds(&self, record: &LeaseRecord) -> bool {
        record.holder == self.config.identity && record.token == self.token
    }

    fn lead(&mut self, term: u64, since: Instant) {
        if self.term != Some(term) {
            info!(identity = %self.config.identity, term, "became the leader");
        }
        self.term = Some(term);
        let until = since + self.config.renew_deadline;
        self.tenure.send_if_modified(|tenure| {
            // Whether writes were let through until now: a leader whose renewals failed for a
            // while (a hung engine) is still the leader, but its writes were refused once its
            // tenure came within WRITE_MARGIN of the end, and the reconciles that met the
            // refusal wait for a change. A renewal that lets writes through again is a
            // transition like becoming leader: waiters look at every key again.
            let could_write = tenure.lets_writes_through();
            *tenure = Tenure::Until(until);
            // Otherwise a renewal extends silently.
            !could_write
        });
    }

    fn step_down(&mut self, why: &str) {
        if self.term.take().is_some() {
            warn!(identity = %self.config.identity, why, "no longer the leader");
        }
        self.tenure.send_if_modified(|tenure| {
            let was_leading = *tenure != Tenure::Follower;
            *tenure = Tenure::Follower;
            was_leading
        });
    }

    /// One round: read the lease, then renew it, take it, or leave it. Returns how long to
    /// wait before the next round.
    async fn step(&mut self) -> Duration {
        let started = Instant::now();
        let retry = self.config.retry_period;
        let lease = match self.call(self.store.read()).await {
            Ok(lease) => lease,
            Err(error) => {
                warn!(%error, "reading the leader lease");
                return retry;
            }
        };
        let Some(lease) = lease else {
            return match self.call(self.store.create(&self.record(1))).await {
                Ok(CasOutcome::Written) => {
                    self.lead(1, started);
                    self.config.renew_period
                }
                Ok(CasOutcome::Conflict) => retry,
                Err(error) => {
                    warn!(%error, "creating the leader lease");
                    retry
                }
            };
        };
        if self
            .observed
            .as_ref()
            .is_none_or(|o| o.version != lease.version)
        {
            self.observed = Some(Observation {
                version: lease.version,
                seen_at: started,
            });
        }
        let seen_at = self.observed.as_ref().map_or(started, |o| o.seen_at);
        let mine = self.holds(&lease.record);
        let free = lease.record.holder.is_empty();
        let expired = started.duration_since(seen_at) >= self.config.lease_duration;
        if !(mine || free || expired) {
            if self.is_leading() {
                self.step_down("another replica holds the lease");
            }
            return retry;
        }
        let term = match self.term {
            Some(term) if mine && term == lease.record.term => term,
            _ => lease.record.term + 1,
        };
        match self
            .call(self.store.replace(lease.version, &self.record(term)))
            .await
        {
            Ok(CasOutcome::Written) => {
                if !mine && !free {
                    info!(previous = %lease.record.holder, "taking over an expired lease");
                }
                self.lead(term, started);
                self.config.renew_period
            }
            Ok(CasOutcome::Conflict) => {
                // Someone else wrote since our read: whoever it was, the next read tells.
                self.step_down("the lease changed under a renewal");
                retry
            }
            Err(error) => {
                warn!(%error, "writing the leader lease");
                retry
            }
        }
    }

    /// Bounds a store call by the retry period, so that a hung engine cannot stall the loop.
    async fn call<T>(
        &self,
        call: impl Future<Output = Result<T, LeaseError>>,
    ) -> Result<T, LeaseError> {
        let limit = self.config.retry_period;
        tokio::time::timeout(limit, call)
            .await
            .unwrap_or(Err(LeaseError::Timeout(limit)))
    }

    /// Gives the lease up (holder emptied) if this replica holds it.
    async fn release(&mut self) {
        let Some(term) = self.term.take() else {
            return;
        };
        info!(identity = %self.config.identity, "shutting down: no longer the leader");
        self.step_down("shutting down");
        let released = LeaseRecord {
            holder: String::new(),
            token: String::new(),
            term,
            renewed_at: now_rfc3339(),
        };
        match self.call(self.store.read()).await {
            Ok(Some(lease)) if self.holds(&lease.record) => {
                match self
                    .call(self.store.replace(lease.version, &released))
                    .await
                {
                    Ok(CasOutcome::Written) => info!("released the leader lease"),
                    Ok(CasOutcome::Conflict) => {}
                    Err(error) => warn!(%error, "releasing the leader lease"),
                }
            }
            Ok(_) => {}
            Err(error) => warn!(%error, "reading the leader lease to release it"),
        }
    }
}
