//! The election logic on paused time against an in-memory lease store with the same
//! compare-and-swap rules as the swarm's (every write moves the version on).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep};
use tokio_util::sync::CancellationToken;

use super::*;

#[derive(Clone, Default)]
struct MemoryLease {
    lease: Arc<Mutex<Option<VersionedLease>>>,
    next_version: Arc<AtomicU64>,
    failing: Arc<AtomicBool>,
    /// Calls never return, as on a hung engine.
    hanging: Arc<AtomicBool>,
    writes: Arc<AtomicU64>,
}

impl MemoryLease {
    async fn hang_if_hung(&self) {
        if self.hanging.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
    }

    fn check(&self) -> Result<(), LeaseError> {
        if self.failing.load(Ordering::SeqCst) {
            Err(LeaseError::Timeout(Duration::ZERO))
        } else {
            Ok(())
        }
    }

    fn store(&self, record: &LeaseRecord) {
        self.writes.fetch_add(1, Ordering::SeqCst);
        let version = self.next_version.fetch_add(1, Ordering::SeqCst) + 1;
        *self.lease.lock().unwrap() = Some(VersionedLease {
            version,
            record: record.clone(),
        });
    }

    fn holder(&self) -> Option<String> {
        self.lease
            .lock()
            .unwrap()
            .as_ref()
            .map(|l| l.record.holder.clone())
    }

    fn term(&self) -> u64 {
        self.lease
            .lock()
            .unwrap()
            .as_ref()
            .map_or(0, |l| l.record.term)
    }
}

impl LeaseStore for MemoryLease {
    async fn read(&self) -> Result<Option<VersionedLease>, LeaseError> {
        self.hang_if_hung().await;
        self.check()?;
        Ok(self.lease.lock().unwrap().clone())
    }

    async fn create(&self, record: &LeaseRecord) -> Result<CasOutcome, LeaseError> {
        self.hang_if_hung().await;
        self.check()?;
        if self.lease.lock().unwrap().is_some() {
            return Ok(CasOutcome::Conflict);
        }
        self.store(record);
        Ok(CasOutcome::Written)
    }

    async fn replace(&self, version: u64, record: &LeaseRecord) -> Result<CasOutcome, LeaseError> {
        self.hang_if_hung().await;
        self.check()?;
        let current = self.lease.lock().unwrap().as_ref().map(|l| l.version);
        if current != Some(version) {
            return Ok(CasOutcome::Conflict);
        }
        self.store(record);
        Ok(CasOutcome::Written)
    }
}

struct Replica {
    leadership: Leadership,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

fn replica(store: &MemoryLease, identity: &str) -> Replica {
    let (elector, leadership) = Elector::new(store.clone(), ElectionConfig::new(identity));
    let stop = CancellationToken::new();
    let task = tokio::spawn(elector.run(stop.clone().cancelled_owned()));
    Replica {
        leadership,
        stop,
        task,
    }
}

/// Advances paused time in small steps, checking `invariant` at each.
async fn run_for(duration: Duration, mut invariant: impl FnMut()) {
    let end = Instant::now() + duration;
    while Instant::now() < end {
        sleep(Duration::from_millis(100)).await;
        invariant();
    }
}

/// Waits (in paused time) until `condition` holds; returns how long that took.
async fn time_until(limit: Duration, condition: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < limit,
            "condition not reached within {limit:?}"
        );
        sleep(Duration::from_millis(100)).await;
    }
    start.elapsed()
}

#[tokio::test(start_paused = true)]
async fn a_lone_replica_leads_and_renews_once_per_renew_period() {
    let store = MemoryLease::default();
    let a = replica(&store, "a");
    time_until(Duration::from_secs(1), || a.leadership.is_leader()).await;
    assert_eq!(store.holder().as_deref(), Some("a"));
    assert_eq!(store.term(), 1);
    let writes_before = store.writes.load(Ordering::SeqCst);
    run_for(Duration::from_secs(60), || {
        assert!(a.leadership.is_leader());
    })
    .await;
    let renewals = store.writes.load(Ordering::SeqCst) - writes_before;
    assert_eq!(renewals, 12, "one write per 5 s over 60 s");
    assert_eq!(store.term(), 1, "renewals keep the term");
}

#[tokio::test(start_paused = true)]
async fn of_two_replicas_started_together_exactly_one_leads() {
    let store = MemoryLease::default();
    let a = replica(&store, "a");
    let b = replica(&store, "b");
    time_until(Duration::from_secs(1), || {
        a.leadership.is_leader() || b.leadership.is_leader()
    })
    .await;
    let leader = if a.leadership.is_leader() { "a" } else { "b" };
    run_for(Duration::from_secs(120), || {
        assert!(
            a.leadership.is_leader() ^ b.leadership.is_leader(),
            "exactly one leader at every moment"
        );
    })
    .await;
    assert_eq!(store.holder().as_deref(), Some(leader), "no flapping");
    assert_eq!(store.term(), 1);
}

#[tokio::test(start_paused = true)]
async fn when_the_leader_stops_renewing_the_other_takes_over_after_the_lease() {
    let store = MemoryLease::default();
    let a = replica(&store, "a");
    time_until(Duration::from_secs(1), || a.leadership.is_leader()).await;
    let b = replica(&store, "b");
    run_for(Duration::from_secs(20), || {
        assert!(!b.leadership.is_leader());
    })
    .await;

    // The leader's process dies: no renewal, no release.
    let last_write = store.writes.load(Ordering::SeqCst);
    a.task.abort();
    let _ = a.task.await;
    let waited = time_until(Duration::from_secs(30), || b.leadership.is_leader()).await;
    assert!(
        !a.leadership.is_leader(),
        "the dead leader's view expired on its own"
    );
    assert!(
        waited >= LEASE_DURATION - RENEW_PERIOD,
        "not before the lease could have run out: {waited:?}"
    );
    assert!(
        waited <= LEASE_DURATION + 2 * RETRY_PERIOD,
        "soon after it ran out: {waited:?}"
    );
    assert!(store.writes.load(Ordering::SeqCst) > last_write);
    assert_eq!(store.holder().as_deref(), Some("b"));
    assert_eq!(store.term(), 2, "a new term for a new holder");
}

#[tokio::test(start_paused = true)]
async fn a_leader_that_cannot_renew_stops_leading_before_anyone_else_may_start() {
    let store = MemoryLease::default();
    let a = replica(&store, "a");
    time_until(Duration::from_secs(1), || a.leadership.is_leader()).await;
    run_for(Duration::from_secs(7), || {}).await;
    let cut = Instant::now();
    store.failing.store(true, Ordering::SeqCst);
    let stepped_down = time_until(Duration::from_secs(20), || !a.leadership.is_leader()).await;
    // The last successful renewal was at most one renew period before the cut.
    assert!(
        stepped_down <= RENEW_DEADLINE,
        "stepped down {stepped_down:?} after the store failed"
    );
    assert!(
        cut.elapsed() < LEASE_DURATION - RENEW_PERIOD,
        "well before a follower could take over"
    );
    // The store comes back: the lease still names `a`, which takes it again.
    store.failing.store(false, Ordering::SeqCst);
    time_until(Duration::from_secs(10), || a.leadership.is_leader()).await;
    assert_eq!(store.holder().as_deref(), Some("a"));
}

#[tokio::test(start_paused = true)]
async fn a_paused_leader_stops_counting_itself_leader_at_its_deadline() {
    let store = MemoryLease::default();
    let (mut elector, leadership) = Elector::new(store.clone(), ElectionConfig::new("a"));
    elector.step().await;
    assert!(leadership.is_leader());
    // Nothing runs the elector any more (a paused process): only the clock moves.
    sleep(RENEW_DEADLINE - Duration::from_millis(1)).await;
    assert!(leadership.is_leader());
    sleep(Duration::from_millis(1)).await;
    assert!(!leadership.is_leader());
}

#[tokio::test(start_paused = true)]
async fn a_lease_changed_under_a_renewal_is_lost_not_overwritten() {
    let store = MemoryLease::default();
    let (mut elector, leadership) = Elector::new(store.clone(), ElectionConfig::new("a"));
    elector.step().await;
    assert!(leadership.is_leader());
    // Another replica writes between our read and our write: the version moved on.
    let read = store.read().await.unwrap().unwrap();
    store.store(&LeaseRecord {
        holder: "b".into(),
        token: "b-token".into(),
        term: 2,
        renewed_at: String::new(),
    });
    let outcome = store
        .replace(read.version, &elector.record(1))
        .await
        .unwrap();
    assert_eq!(outcome, CasOutcome::Conflict);
    // The elector's next round reads b's lease and steps down.
    elector.step().await;
    assert!(!leadership.is_leader());
    assert_eq!(store.holder().as_deref(), Some("b"));
}

#[tokio::test(start_paused = true)]
async fn a_leader_shutting_down_releases_so_the_other_takes_over_at_once() {
    let store = MemoryLease::default();
    let a = replica(&store, "a");
    time_until(Duration::from_secs(1), || a.leadership.is_leader()).await;
    let b = replica(&store, "b");
    run_for(Duration::from_secs(10), || {
        assert!(!b.leadership.is_leader());
    })
    .await;
    a.stop.cancel();
    a.task.await.unwrap();
    assert!(!a.leadership.is_leader());
    assert_eq!(store.holder().as_deref(), Some(""), "released");
    let waited = time_until(Duration::from_secs(10), || b.leadership.is_leader()).await;
    // One follower round, measured in 100 ms steps.
    assert!(
        waited <= RETRY_PERIOD + Duration::from_millis(100),
        "took {waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_on_a_hung_engine_gives_up_the_release_in_time() {
    let store = MemoryLease::default();
    let a = replica(&store, "a");
    time_until(Duration::from_secs(1), || a.leadership.is_leader()).await;
    // Mid-renewal when the engine hangs: neither the step nor the release may hold shutdown.
    sleep(RENEW_PERIOD - Duration::from_millis(100)).await;
    store.hanging.store(true, Ordering::SeqCst);
    sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    a.stop.cancel();
    a.task.await.unwrap();
    let took = started.elapsed();
    assert!(!a.leadership.is_leader(), "no longer leads");
    assert!(took <= RETRY_PERIOD, "shutdown took {took:?}");
    assert_eq!(
        store.holder().as_deref(),
        Some("a"),
        "the lease runs out instead"
    );
}

#[tokio::test(start_paused = true)]
async fn leadership_changes_are_announced() {
    let store = MemoryLease::default();
    let a = replica(&store, "a");
    let mut watcher = a.leadership.clone();
    tokio::time::timeout(Duration::from_secs(1), watcher.wait_for_leader())
        .await
        .expect("announced as leader");
    store.failing.store(true, Ordering::SeqCst);
    tokio::time::timeout(RENEW_DEADLINE + RETRY_PERIOD, watcher.changed())
        .await
        .expect("announced stepping down");
    assert!(!watcher.is_leader());
}

#[tokio::test(start_paused = true)]
async fn two_replicas_given_the_same_identity_never_both_lead() {
    let store = MemoryLease::default();
    let a = replica(&store, "same");
    let b = replica(&store, "same");
    time_until(Duration::from_secs(1), || {
        a.leadership.is_leader() || b.leadership.is_leader()
    })
    .await;
    let token = || {
        store
            .lease
            .lock()
            .unwrap()
            .as_ref()
            .unwrap()
            .record
            .token
            .clone()
    };
    let first_token = token();
    run_for(Duration::from_secs(120), || {
        assert!(
            !(a.leadership.is_leader() && b.leadership.is_leader()),
            "both replicas called `same` lead at once"
        );
    })
    .await;
    assert_eq!(
        token(),
        first_token,
        "the first holder kept it, no flapping"
    );
    assert_eq!(store.term(), 1);

    // The holder dies: the other one (same identity) waits out the lease like any follower.
    let (leader, other) = if a.leadership.is_leader() {
        (a, b)
    } else {
        (b, a)
    };
    leader.task.abort();
    let _ = leader.task.await;
    let waited = time_until(Duration::from_secs(30), || other.leadership.is_leader()).await;
    assert!(
        waited >= LEASE_DURATION - RENEW_PERIOD,
        "took over after {waited:?}"
    );
    assert_ne!(token(), first_token);
    assert_eq!(store.term(), 2, "a new term for a new process");
}

#[tokio::test(start_paused = true)]
async fn a_write_needs_a_margin_of_tenure_left() {
    let leadership = Leadership::until_for_test(Instant::now() + Duration::from_secs(5));
    assert!(leadership.may_write());
    sleep(Duration::from_secs(5) - WRITE_MARGIN).await;
    assert!(leadership.is_leader(), "still leading");
    assert!(
        !leadership.may_write(),
        "but too close to the deadline to start a write"
    );
    assert!(Leadership::always().may_write());
}

#[test]
fn always_leads() {
    assert!(Leadership::always().is_leader());
}

/// A leader whose renewals failed long enough for its writes to be refused (its tenure within
/// WRITE_MARGIN of the end) but not long enough to step down announces the renewal that lets
/// writes through again, as it announces becoming leader: the reconciles that met the refusal
/// wait for a change, and the operator looks at every key again on it. An ordinary renewal
/// stays silent.
#[tokio::test(start_paused = true)]
async fn a_renewal_that_lets_writes_through_again_is_announced() {
    let store = MemoryLease::default();
    let (mut elector, leadership) = Elector::new(store.clone(), ElectionConfig::new("a"));
    elector.step().await;
    let mut watcher = leadership.clone();
    tokio::time::timeout(Duration::from_millis(10), watcher.changed())
        .await
        .expect("becoming leader is announced");

    sleep(RENEW_PERIOD).await;
    elector.step().await;
    assert!(
        tokio::time::timeout(Duration::from_millis(10), watcher.changed())
            .await
            .is_err(),
        "an ordinary renewal is announced"
    );

    store.failing.store(true, Ordering::SeqCst);
    sleep(RENEW_PERIOD).await;
    elector.step().await;
    sleep(RENEW_DEADLINE - RENEW_PERIOD - WRITE_MARGIN + Duration::from_millis(500)).await;
    assert!(leadership.is_leader(), "still leading");
    assert!(!leadership.may_write(), "writes refused near the deadline");

    store.failing.store(false, Ordering::SeqCst);
    elector.step().await;
    assert!(
        leadership.may_write(),
        "writes let through after the renewal"
    );
    tokio::time::timeout(Duration::from_millis(10), watcher.changed())
        .await
        .expect("the renewal that lets writes through again is announced");
}
