//! Runner tests on paused tokio time: every duration below is virtual and exact to the ms.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, sleep};
use tokio_util::sync::CancellationToken;

use super::*;

type Key = &'static str;

#[derive(Debug, thiserror::Error)]
#[error("boom")]
struct Boom;

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// `actual` within 2 ms of `expected` (the delay queue has 1 ms resolution and rounds up).
fn assert_near(actual: Duration, expected: Duration, what: &str) {
    let diff = actual.abs_diff(expected);
    assert!(
        diff <= Duration::from_millis(2),
        "{what}: {actual:?}, expected {expected:?}"
    );
}

/// Records reconciles: start times, and in-flight counters per key and in total.
struct Probe {
    origin: Instant,
    starts: Mutex<Vec<(Key, Duration)>>,
    in_flight: HashMap<Key, AtomicUsize>,
    max_in_flight: HashMap<Key, AtomicUsize>,
    total: AtomicUsize,
    max_total: AtomicUsize,
    finished: AtomicUsize,
}

struct InFlight {
    probe: Arc<Probe>,
    key: Key,
    /// 1-based number of this reconcile of `key`.
    attempt: usize,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.probe.in_flight[self.key].fetch_sub(1, Ordering::SeqCst);
        self.probe.total.fetch_sub(1, Ordering::SeqCst);
        self.probe.finished.fetch_add(1, Ordering::SeqCst);
    }
}

impl Probe {
    fn new(keys: &[Key]) -> Arc<Self> {
        Arc::new(Self {
            origin: Instant::now(),
            starts: Mutex::default(),
            in_flight: keys.iter().map(|k| (*k, AtomicUsize::new(0))).collect(),
            max_in_flight: keys.iter().map(|k| (*k, AtomicUsize::new(0))).collect(),
            total: AtomicUsize::new(0),
            max_total: AtomicUsize::new(0),
            finished: AtomicUsize::new(0),
        })
    }

    fn enter(self: &Arc<Self>, key: Key) -> InFlight {
        let now = self.in_flight[key].fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight[key].fetch_max(now, Ordering::SeqCst);
        let total = self.total.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_total.fetch_max(total, Ordering::SeqCst);
        let mut starts = self.starts.lock().unwrap();
        starts.push((key, self.origin.elapsed()));
        let attempt = starts.iter().filter(|(k, _)| *k == key).count();
        InFlight {
            probe: Arc::clone(self),
            key,
            attempt,
        }
    }

    fn starts_of(&self, key: Key) -> Vec<Duration> {
        let starts = self.starts.lock().unwrap();
        starts
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, t)| *t)
            .collect()
    }

    fn max_in_flight(&self, key: Key) -> usize {
        self.max_in_flight[key].load(Ordering::SeqCst)
    }
}

fn gaps(starts: &[Duration]) -> Vec<Duration> {
    starts.windows(2).map(|w| w[1] - w[0]).collect()
}

/// Run `runner` while `script` sends triggers; cancel when the script returns. Returns the
/// virtual time from start until `run` returned.
async fn drive<F, Fut, S>(
    runner: Runner<Key, F>,
    script: impl FnOnce(mpsc::Sender<Key>) -> S,
) -> Duration
where
    F: Fn(Key) -> Fut,
    Fut: Future<Output = Result<Action, Boom>>,
    S: Future<Output = ()>,
{
    let (tx, rx) = mpsc::channel(64);
    let token = CancellationToken::new();
    let start = Instant::now();
    let script = script(tx);
    let stop = token.clone();
    let run = async {
        runner
            .run(receiver_stream(rx), token.cancelled_owned())
            .await;
        start.elapsed()
    };
    let (elapsed, ()) = tokio::join!(run, async move {
        script.await;
        stop.cancel();
    });
    elapsed
}

async fn send(tx: &mpsc::Sender<Key>, key: Key) {
    tx.send(key).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn same_key_never_runs_twice_at_once_and_held_requests_run_once_after() {
    let probe = Probe::new(&["a", "b"]);
    let p = probe.clone();
    let reconcile = move |key: Key| {
        let p = p.clone();
        async move {
            let _in = p.enter(key);
            sleep(secs(1.0)).await;
            Ok::<_, Boom>(Action::await_change())
        }
    };
    let runner = Runner::new(reconcile, RunnerConfig::default().concurrency(4)).unwrap();
    drive(runner, |tx| async move {
        send(&tx, "a").await;
        for _ in 0..5 {
            sleep(secs(0.1)).await;
            send(&tx, "a").await;
        }
        send(&tx, "b").await;
        sleep(secs(10.0)).await;
    })
    .await;

    assert_eq!(
        probe.max_in_flight("a"),
        1,
        "two reconciles of a overlapped"
    );
    let a = probe.starts_of("a");
    assert_eq!(
        a.len(),
        2,
        "5 requests during the run collapse into one rerun: {a:?}"
    );
    assert_near(a[0], Duration::ZERO, "first run");
    assert_near(
        a[1],
        secs(1.0),
        "rerun starts as soon as the first finishes",
    );
    // Other keys are not held behind a's run: b starts when it is triggered.
    let b = probe.starts_of("b");
    assert_eq!(b.len(), 1);
    assert_near(b[0], secs(0.5), "b");
}

#[tokio::test(start_paused = true)]
async fn global_concurrency_limit_is_respected() {
    let keys: Vec<Key> = vec!["k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9"];
    let probe = Probe::new(&keys);
    let p = probe.clone();
    let reconcile = move |key: Key| {
        let p = p.clone();
        async move {
            let _in = p.enter(key);
            sleep(secs(1.0)).await;
            Ok::<_, Boom>(Action::await_change())
        }
    };
    let runner = Runner::new(reconcile, RunnerConfig::default().concurrency(3)).unwrap();
    let keys2 = keys.clone();
    drive(runner, |tx| async move {
        for key in keys2 {
            send(&tx, key).await;
        }
        sleep(secs(10.0)).await;
    })
    .await;

    assert_eq!(
        probe.max_total.load(Ordering::SeqCst),
        3,
        "limit exceeded or never reached"
    );
    assert_eq!(
        probe.finished.load(Ordering::SeqCst),
        10,
        "every key ran once"
    );
    let mut starts: Vec<Duration> = probe.starts.lock().unwrap().iter().map(|s| s.1).collect();
    starts.sort();
    // Four waves of at most three: 0, 1, 2, 3 s.
    let waves: Vec<u64> = starts
        .iter()
        .map(|d| d.as_secs_f64().round() as u64)
        .collect();
    assert_eq!(waves, vec![0, 0, 0, 1, 1, 1, 2, 2, 2, 3]);
}

/// Records what the runner reports to its observer.
#[derive(Default)]
struct Recorder {
    outcomes: Mutex<Vec<(Key, Outcome)>>,
    retries: Mutex<Vec<Duration>>,
    depths: Mutex<Vec<usize>>,
}

impl RunnerObserver<Key> for Recorder {
    fn on_reconcile_done(&self, key: &Key, outcome: Outcome, _duration: Duration) {
        self.outcomes.lock().unwrap().push((*key, outcome));
    }
    fn on_reconcile_error(
        &self,
        _key: &Key,
        error: &(dyn std::error::Error + 'static),
        retry_in: Duration,
    ) {
        assert_eq!(error.to_string(), "boom");
        self.retries.lock().unwrap().push(retry_in);
    }
    fn on_queue_depth(&self, depth: usize) {
        self.depths.lock().unwrap().push(depth);
    }
}

#[tokio::test(start_paused = true)]
async fn backoff_grows_on_errors_and_resets_after_success() {
    let probe = Probe::new(&["a"]);
    let p = probe.clone();
    // Attempts 1-4 fail, 5 succeeds and requeues in 10 s, 6-7 fail, 8 succeeds for good.
    let reconcile = move |key: Key| {
        let p = p.clone();
        async move {
            let attempt = p.enter(key).attempt;
            match attempt {
                1..=4 | 6 | 7 => Err(Boom),
                5 => Ok(Action::requeue(secs(10.0))),
                _ => Ok(Action::await_change()),
            }
        }
    };
    let recorder = Arc::new(Recorder::default());
    let runner = Runner::new(reconcile, RunnerConfig::default())
        .unwrap()
        .observer(recorder.clone());
    drive(runner, |tx| async move {
        send(&tx, "a").await;
        sleep(secs(120.0)).await;
    })
    .await;

    let starts = probe.starts_of("a");
    assert_eq!(starts.len(), 8, "{starts:?}");
    let g = gaps(&starts);
    // Jitter adds up to 100 %: failure n waits in [0.5 s * 2^(n-1), 1 s * 2^(n-1)].
    for (n, (gap, base)) in g[..4].iter().zip([0.5, 1.0, 2.0, 4.0]).enumerate() {
        assert!(
            *gap >= secs(base) && *gap <= secs(2.0 * base) + Duration::from_millis(2),
            "retry {}: {gap:?} not in [{base}s, {}s]",
            n + 1,
            2.0 * base
        );
    }
    assert!(
        g[0] < g[1] && g[1] < g[2] && g[2] < g[3],
        "backoff did not grow: {g:?}"
    );
    assert_near(
        g[4],
        secs(10.0),
        "success follows the requeue, not the backoff",
    );
    assert!(
        g[5] >= secs(0.5) && g[5] <= secs(1.0) + Duration::from_millis(2),
        "after a success the backoff starts again at min: {:?}",
        g[5]
    );
    assert!(g[6] >= secs(1.0), "and grows again: {:?}", g[6]);

    // The observer saw each retry delay that was actually waited.
    let retries = recorder.retries.lock().unwrap().clone();
    assert_eq!(retries.len(), 6);
    for (reported, waited) in retries.iter().zip(g[..4].iter().chain(&g[5..7])) {
        assert_near(*waited, *reported, "reported retry_in vs actual gap");
    }
    let outcomes = recorder.outcomes.lock().unwrap().clone();
    let errors = outcomes
        .iter()
        .filter(|(_, o)| *o == Outcome::Error)
        .count();
    assert_eq!((outcomes.len(), errors), (8, 6));
    assert_eq!(
        recorder.depths.lock().unwrap().last(),
        Some(&0),
        "queue drained at the end"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_key_does_not_block_another() {
    let probe = Probe::new(&["bad", "good"]);
    let p = probe.clone();
    let reconcile = move |key: Key| {
        let p = p.clone();
        async move {
            let _in = p.enter(key);
            sleep(secs(0.1)).await;
            if key == "bad" {
                Err(Boom)
            } else {
                Ok(Action::requeue(secs(1.0)))
            }
        }
    };
    // A single slot: the worst case for head-of-line blocking.
    let runner = Runner::new(reconcile, RunnerConfig::default().concurrency(1)).unwrap();
    drive(runner, |tx| async move {
        send(&tx, "bad").await;
        send(&tx, "good").await;
        sleep(secs(20.0)).await;
    })
    .await;

    let good = probe.starts_of("good");
    assert!(
        good.len() >= 17,
        "good starved: {} runs in 20 s",
        good.len()
    );
    for gap in gaps(&good) {
        // 0.1 s run + 1 s requeue + at most 0.1 s waiting for bad's slot.
        assert!(
            gap <= secs(1.2) + Duration::from_millis(2),
            "good delayed by bad: {gap:?}"
        );
    }
    let bad = probe.starts_of("bad");
    // Backoff 0.5, 1, 2, 4, 8 s (+ jitter) between runs: a handful, not a hot loop.
    assert!((3..=7).contains(&bad.len()), "bad ran {} times", bad.len());
}

#[tokio::test(start_paused = true)]
async fn requeue_fires_at_the_requested_time_and_await_change_does_not() {
    let probe = Probe::new(&["periodic", "once"]);
    let p = probe.clone();
    let reconcile = move |key: Key| {
        let p = p.clone();
        async move {
            let _in = p.enter(key);
            Ok::<_, Boom>(if key == "periodic" {
                Action::requeue(secs(30.0))
            } else {
                Action::await_change()
            })
        }
    };
    let runner = Runner::new(reconcile, RunnerConfig::default()).unwrap();
    drive(runner, |tx| async move {
        send(&tx, "periodic").await;
        send(&tx, "once").await;
        sleep(secs(100.0)).await;
    })
    .await;

    let periodic = probe.starts_of("periodic");
    assert_eq!(periodic.len(), 4, "{periodic:?}");
    for (start, expected) in periodic.iter().zip([0.0, 30.0, 60.0, 90.0]) {
        assert_near(*start, secs(expected), "requeue time");
    }
    assert_eq!(probe.starts_of("once").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_in_flight_work_and_starts_nothing_new() {
    let probe = Probe::new(&["a", "b"]);
    let p = probe.clone();
    let reconcile = move |key: Key| {
        let p = p.clone();
        async move {
            let _in = p.enter(key);
            sleep(secs(5.0)).await;
            Ok::<_, Boom>(Action::requeue(secs(1.0)))
        }
    };
    let runner = Runner::new(reconcile, RunnerConfig::default().concurrency(1)).unwrap();
    let elapsed = drive(runner, |tx| async move {
        send(&tx, "a").await;
        // Later, so that a surely has the single slot (keys due in the same ms have no order).
        sleep(secs(0.1)).await;
        send(&tx, "b").await;
        sleep(secs(0.9)).await;
        // Cancelled here, while a is mid-reconcile and b waits for the slot.
    })
    .await;

    assert_near(
        elapsed,
        secs(5.0),
        "run returned when a finished, not before or later",
    );
    assert_eq!(
        probe.finished.load(Ordering::SeqCst),
        1,
        "a ran to completion"
    );
    assert!(probe.starts_of("b").is_empty(), "b started after shutdown");
}

#[tokio::test(start_paused = true)]
async fn shutdown_abandons_a_reconcile_that_outlives_the_grace() {
    let probe = Probe::new(&["a"]);
    let p = probe.clone();
    let reconcile = move |key: Key| {
        let p = p.clone();
        async move {
            let _in = p.enter(key);
            // A call to a hung engine that never returns.
            std::future::pending::<()>().await;
            Ok::<_, Boom>(Action::await_change())
        }
    };
    let config = RunnerConfig::default().shutdown_grace(secs(2.0));
    let runner = Runner::new(reconcile, config).unwrap();
    let elapsed = drive(runner, |tx| async move {
        send(&tx, "a").await;
        sleep(secs(1.0)).await;
    })
    .await;
    assert_near(
        elapsed,
        secs(3.0),
        "run returned when the grace ran out, 2 s after shutdown",
    );
    assert_eq!(probe.starts_of("a").len(), 1);
    assert_eq!(
        probe.total.load(Ordering::SeqCst),
        0,
        "the abandoned reconcile was dropped, not left running"
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_with_nothing_in_flight_returns_at_once() {
    let reconcile = |_key: Key| async { Ok::<_, Boom>(Action::requeue(secs(60.0))) };
    let runner = Runner::new(reconcile, RunnerConfig::default()).unwrap();
    let elapsed = drive(runner, |tx| async move {
        send(&tx, "a").await;
        sleep(secs(2.0)).await;
    })
    .await;
    assert_near(elapsed, secs(2.0), "pending requeues do not delay shutdown");
}

#[tokio::test(start_paused = true)]
async fn debounce_collapses_a_burst_of_triggers() {
    let probe = Probe::new(&["a"]);
    let p = probe.clone();
    let reconcile = move |key: Key| {
        let p = p.clone();
        async move {
            let _in = p.enter(key);
            Ok::<_, Boom>(Action::await_change())
        }
    };
    let config = RunnerConfig::default().debounce(secs(0.5), secs(5.0));
    let runner = Runner::new(reconcile, config).unwrap();
    drive(runner, |tx| async move {
        for _ in 0..10 {
            send(&tx, "a").await;
            sleep(secs(0.1)).await;
        }
        sleep(secs(5.0)).await;
    })
    .await;
    let a = probe.starts_of("a");
    assert_eq!(a.len(), 1, "{a:?}");
    assert_near(a[0], secs(1.4), "0.5 s after the last trigger at 0.9 s");
}

#[test]
fn unusable_configs_are_rejected() {
    let reconcile = |_key: Key| async { Ok::<_, Boom>(Action::await_change()) };
    assert_eq!(
        Runner::new(reconcile, RunnerConfig::default().concurrency(0)).unwrap_err(),
        Error::ZeroConcurrency
    );
    for (min, max) in [(secs(0.0), secs(1.0)), (secs(2.0), secs(1.0))] {
        assert_eq!(
            Runner::new(reconcile, RunnerConfig::default().backoff(min, max)).unwrap_err(),
            Error::InvalidBackoff { min, max }
        );
    }
    assert!(Runner::new(reconcile, RunnerConfig::default()).is_ok());
}
