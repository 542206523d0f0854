//! Leader election against the real swarm of the local Docker engine: the lease is a swarm
//! config whose labels are replaced with its version index as compare-and-swap.
// Helpers outside #[test] functions unwrap too: in a test, a failed unwrap is a failed test
// with its location.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use swarm_operator::docker::configs::CasOutcome;
use swarm_operator::docker::{DockerEngine, SwarmApi};
use swarm_operator::election::{
    ElectionConfig, Elector, LEASE_DURATION, Leadership, LeaseStore, RENEW_PERIOD, RETRY_PERIOD,
    SwarmLeaseStore,
};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep};
use tokio_util::sync::CancellationToken;

/// The engine, or `None` (with a printed reason) when none answers and CI is unset.
async fn engine(test: &str) -> Option<DockerEngine> {
    let connected = match DockerEngine::connect().await {
        Ok(api) => api.ensure_manager().await.map(|()| api),
        Err(e) => Err(e),
    };
    match connected {
        Ok(api) => Some(api),
        Err(error) if std::env::var_os("CI").is_none() => {
            eprintln!("SKIPPED {test}: no swarm manager answers ({error}); run `cargo xtask test`");
            None
        }
        Err(error) => panic!("CI is set but no swarm manager answers: {error}"),
    }
}

fn instance(test: &str) -> String {
    format!("sot{}{test}", std::process::id() % 10000)
}

/// Removes the lease config when the test ends, however it ends.
struct LeaseCleanup(String);

impl Drop for LeaseCleanup {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["config", "rm", &self.0])
            .output();
    }
}

struct Replica {
    leadership: Leadership,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

fn replica(api: &DockerEngine, instance: &str, identity: &str) -> Replica {
    let store = SwarmLeaseStore::new(api.clone(), instance);
    let (elector, leadership) = Elector::new(store, ElectionConfig::new(identity));
    let stop = CancellationToken::new();
    let task = tokio::spawn(elector.run(stop.clone().cancelled_owned()));
    Replica {
        leadership,
        stop,
        task,
    }
}

async fn wait_for(limit: Duration, what: &str, condition: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}

/// Two electors: exactly one leads; the leader dies without releasing → the other takes over
/// after the lease ran out; a graceful stop releases → immediate takeover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_one_leader_and_takeover_on_a_real_swarm() {
    let Some(api) = engine("two_replicas_one_leader").await else {
        return;
    };
    let instance = instance("election");
    let _cleanup = LeaseCleanup(SwarmLeaseStore::config_name(&instance));
    let a = replica(&api, &instance, "replica-a");
    wait_for(Duration::from_secs(5), "a leads", || {
        a.leadership.is_leader()
    })
    .await;
    let b = replica(&api, &instance, "replica-b");

    let watch_until = Instant::now() + Duration::from_secs(12);
    while Instant::now() < watch_until {
        assert!(a.leadership.is_leader(), "the leader keeps its lease");
        assert!(!b.leadership.is_leader(), "exactly one leader");
        sleep(Duration::from_millis(100)).await;
    }
    let store = SwarmLeaseStore::new(api.clone(), &instance);
    let lease = store.read().await.unwrap().expect("the lease exists");
    assert_eq!(lease.record.holder, "replica-a");
    assert_eq!(lease.record.term, 1);

    // The leader dies: no more renewals, no release.
    a.task.abort();
    let _ = a.task.await;
    let took = wait_for(LEASE_DURATION + 3 * RETRY_PERIOD, "b takes over", || {
        b.leadership.is_leader()
    })
    .await;
    eprintln!("takeover after the leader died: {took:?}");
    assert!(
        took >= LEASE_DURATION - RENEW_PERIOD,
        "not before the lease ran out ({took:?})"
    );
    assert!(!a.leadership.is_leader(), "the dead leader's view expired");
    let lease = store.read().await.unwrap().unwrap();
    assert_eq!(lease.record.holder, "replica-b");
    assert_eq!(lease.record.term, 2);

    // b stops gracefully: it releases, and a newcomer leads within one follower round.
    let c = replica(&api, &instance, "replica-c");
    sleep(Duration::from_secs(3)).await;
    assert!(!c.leadership.is_leader());
    b.stop.cancel();
    b.task.await.unwrap();
    let took = wait_for(
        RETRY_PERIOD + Duration::from_secs(2),
        "c takes the released lease",
        || c.leadership.is_leader(),
    )
    .await;
    eprintln!("takeover after a release: {took:?}");
    assert_eq!(store.read().await.unwrap().unwrap().record.term, 3);
    c.stop.cancel();
    c.task.await.unwrap();
}

/// Two replicas given the same identity (a copy-pasted `--identity`): the lease's token tells
/// them apart through the swarm's labels, so exactly one leads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_with_the_same_identity_do_not_both_lead_on_a_real_swarm() {
    let Some(api) = engine("same_identity").await else {
        return;
    };
    let instance = instance("sameid");
    let _cleanup = LeaseCleanup(SwarmLeaseStore::config_name(&instance));
    let a = replica(&api, &instance, "twin");
    wait_for(Duration::from_secs(5), "a leads", || {
        a.leadership.is_leader()
    })
    .await;
    let b = replica(&api, &instance, "twin");
    // Longer than a lease and two renewals: b reads a's lease every retry period meanwhile.
    let watch_until = Instant::now() + LEASE_DURATION + 2 * RENEW_PERIOD;
    while Instant::now() < watch_until {
        assert!(
            !(a.leadership.is_leader() && b.leadership.is_leader()),
            "both replicas named `twin` lead"
        );
        sleep(Duration::from_millis(100)).await;
    }
    assert!(a.leadership.is_leader(), "the first one kept the lease");
    let store = SwarmLeaseStore::new(api.clone(), &instance);
    let lease = store.read().await.unwrap().expect("the lease exists");
    assert_eq!(lease.record.holder, "twin");
    assert_eq!(lease.record.token.len(), 16, "{:?}", lease.record.token);
    assert_eq!(lease.record.term, 1);
    for replica in [a, b] {
        replica.stop.cancel();
        replica.task.await.unwrap();
    }
}

/// The version index is a compare-and-swap: a write with a stale version is refused, and a
/// second create of the same lease is refused.
#[tokio::test]
async fn stale_lease_writes_are_refused_by_the_swarm() {
    let Some(api) = engine("stale_lease_writes").await else {
        return;
    };
    let instance = instance("cas");
    let name = SwarmLeaseStore::config_name(&instance);
    let _cleanup = LeaseCleanup(name.clone());
    let store = SwarmLeaseStore::new(api.clone(), &instance);
    let record = |holder: &str, term| swarm_operator::election::LeaseRecord {
        holder: holder.into(),
        token: format!("{holder}-token"),
        term,
        renewed_at: String::new(),
    };
    assert_eq!(store.read().await.unwrap(), None);
    assert_eq!(
        store.create(&record("x", 1)).await.unwrap(),
        CasOutcome::Written
    );
    assert_eq!(
        store.create(&record("y", 1)).await.unwrap(),
        CasOutcome::Conflict
    );
    let read = store.read().await.unwrap().unwrap();
    assert_eq!(read.record, record("x", 1));
    assert_eq!(
        store.replace(read.version, &record("x", 1)).await.unwrap(),
        CasOutcome::Written
    );
    // The same version again: someone (we) wrote since, so it is refused.
    assert_eq!(
        store.replace(read.version, &record("y", 2)).await.unwrap(),
        CasOutcome::Conflict
    );
    assert_eq!(store.read().await.unwrap().unwrap().record.holder, "x");

    // The config is owned by the instance, so `docker config ls` shows whose it is.
    let labels: BTreeMap<String, String> = api
        .inspect_config(&name)
        .await
        .unwrap()
        .expect("exists")
        .labels;
    assert_eq!(
        labels.get("swarm-operator.io/instance").map(String::as_str),
        Some(instance.as_str())
    );
}

/// The commit record (`applied_revision`) on the real swarm: created by the first write,
/// replaced with the version check by the next, not written again when nothing changed, read
/// back as written, and what `wait --revision` judges by.
#[tokio::test]
async fn the_applied_commit_is_recorded_in_a_swarm_config() {
    use swarm_operator::applied_revision::{self, Progress, RevisionRecord, WaitVerdict};
    use swarm_operator::revision::Revision;
    let Some(api) = engine("the_applied_commit_is_recorded_in_a_swarm_config").await else {
        return;
    };
    let instance = instance("rev");
    let name = format!("swarm-operator-revision-{instance}");
    let _cleanup = LeaseCleanup(name.clone());
    let record = RevisionRecord::new(api.clone(), &instance);
    let commit = |digit: char| Revision::parse(&digit.to_string().repeat(40)).unwrap();
    assert_eq!(record.read().await.unwrap(), Progress::default());

    let loading = Progress {
        loaded: Some(commit('2')),
        applied: Some(commit('1')),
    };
    record.write(&loading).await.unwrap();
    assert_eq!(record.read().await.unwrap(), loading);
    let version = api.inspect_config(&name).await.unwrap().unwrap().version;
    record.write(&loading).await.unwrap();
    assert_eq!(
        api.inspect_config(&name).await.unwrap().unwrap().version,
        version,
        "an unchanged record was written again"
    );
    let (verdict, _) = applied_revision::wait(&record, &commit('2'), Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(verdict, WaitVerdict::Pending);

    let applied = Progress {
        loaded: Some(commit('2')),
        applied: Some(commit('2')),
    };
    record.write(&applied).await.unwrap();
    assert_eq!(record.read().await.unwrap(), applied);
    let (verdict, _) = applied_revision::wait(&record, &commit('2'), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(verdict, WaitVerdict::Applied);
}
