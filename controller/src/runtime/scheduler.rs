//! A delay queue of keys that keeps one pending entry per key (the earliest), with optional debounce.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::Hash;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use tokio::time::Instant;
use tokio_util::time::delay_queue::{self, DelayQueue};

/// Ask for `key` to be emitted at (or soon after) `run_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleRequest<K> {
    /// The object to reconcile.
    pub key: K,
    /// When it should run, on the tokio clock (so paused-time tests control it).
    pub run_at: Instant,
}

impl<K> ScheduleRequest<K> {
    /// A request to run `key` as soon as possible.
    #[must_use]
    pub fn now(key: K) -> Self {
        Self {
            key,
            run_at: Instant::now(),
        }
    }

    /// A request to run `key` after `delay`.
    #[must_use]
    pub fn after(key: K, delay: Duration) -> Self {
        Self {
            key,
            run_at: Instant::now() + delay,
        }
    }
}

/// Debounce settings: see [`Scheduler`] for the exact rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Debounce {
    /// Every request is delayed by this much; a newer request for a pending key restarts it.
    pub window: Duration,
    /// No request waits longer than this past the time it asked for, however many requests
    /// keep arriving. Values below `window` shorten the window to this.
    pub max_delay: Duration,
}

impl Debounce {
    /// No debounce: a request runs at the time it asks for.
    pub const NONE: Debounce = Debounce {
        window: Duration::ZERO,
        max_delay: Duration::ZERO,
    };
}

#[derive(Debug)]
struct Pending {
    run_at: Instant,
    deadline: Instant,
    queue_key: delay_queue::Key,
}

/// Pending work, at most one entry per key, emitted when due.
///
/// # Rule
///
/// A request for key `k` asking for time `t`, with debounce window `d` and bound `m`:
///
/// * no entry pending for `k`: it is scheduled at `min(t + d, t + m)`, and its *deadline* is
///   `t + m`;
/// * an entry pending at `p` and `t > p`: the request is dropped: the pending run comes first
///   and a reconcile reads the current state, so it covers the later request too;
/// * an entry pending at `p` and `t <= p`: the deadline becomes `min(deadline, t + m)` and the
///   entry moves to `min(t + d, deadline)`.
///
/// Without debounce (`d = m = 0`) that is "keep the earliest time". With debounce, a burst of
/// requests pushes the entry back to `d` after the last one (a spec file written in several
/// steps, a flurry of Docker events), but never past `m` after the earliest request: a key
/// whose requests never stop (a flapping container) still runs at least every `m`, instead of
/// starving as it would with kube-runtime's unbounded debounce. An earlier request (a trigger
/// for a key whose backoff retry is pending minutes ahead) always pulls the entry forward.
///
/// The scheduler is a [`Stream`] of due keys that never ends (it is `Pending` while empty, and
/// wakes when a key is scheduled); [`Scheduler::next_due`] is the same as an `async fn`.
#[derive(Debug)]
pub struct Scheduler<K> {
    queue: DelayQueue<K>,
    pending: HashMap<K, Pending>,
    debounce: Debounce,
}

impl<K> Default for Scheduler<K>
where
    K: Clone + Eq + Hash,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<K> Scheduler<K>
where
    K: Clone + Eq + Hash,
{
    /// An empty scheduler without debounce.
    #[must_use]
    pub fn new() -> Self {
        Self {
            queue: DelayQueue::new(),
            pending: HashMap::new(),
            debounce: Debounce::NONE,
        }
    }

    /// Use `debounce` for requests scheduled from now on.
    #[must_use]
    pub fn with_debounce(mut self, debounce: Debounce) -> Self {
        self.debounce = debounce;
        self
    }

    /// Add a request, merging it with the key's pending entry (see the rule above).
    pub fn schedule(&mut self, request: ScheduleRequest<K>) {
        let ScheduleRequest { key, run_at: t } = request;
        let bound = t + self.debounce.max_delay;
        let debounced = t + self.debounce.window;
        match self.pending.entry(key) {
            Entry::Vacant(slot) => {
                let run_at = debounced.min(bound);
                let queue_key = self.queue.insert_at(slot.key().clone(), run_at);
                slot.insert(Pending {
                    run_at,
                    deadline: bound,
                    queue_key,
                });
            }
            Entry::Occupied(mut slot) => {
                let pending = slot.get_mut();
                if t > pending.run_at {
                    return;
                }
                pending.deadline = pending.deadline.min(bound);
                let run_at = debounced.min(pending.deadline);
                if run_at != pending.run_at {
                    pending.run_at = run_at;
                    self.queue.reset_at(&pending.queue_key, run_at);
                }
            }
        }
    }

    /// Drop `key`'s pending entry; `true` if there was one.
    pub fn remove(&mut self, key: &K) -> bool {
        match self.pending.remove(key) {
            Some(pending) => {
                self.queue.remove(&pending.queue_key);
                true
            }
            None => false,
        }
    }

    /// When `key` is due, if it is pending.
    #[must_use]
    pub fn scheduled_at(&self, key: &K) -> Option<Instant> {
        self.pending.get(key).map(|p| p.run_at)
    }

    /// Number of pending keys.
    #[must_use]
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// `true` when nothing is pending.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Gives back the room a burst left behind: after thousands of keys were due at once (a
    /// start over a large swarm, a mass edit), the tables stay at their peak size, about 250
    /// bytes a key, until shrunk.
    pub fn shrink_to_fit(&mut self) {
        self.pending.shrink_to_fit();
        self.queue.compact();
    }

    /// Poll for the next due key. `Pending` while nothing is due, including when empty.
    pub fn poll_next_due(&mut self, cx: &mut Context<'_>) -> Poll<K> {
        match self.queue.poll_expired(cx) {
            Poll::Ready(Some(expired)) => {
                let key = expired.into_inner();
                self.pending.remove(&key);
                Poll::Ready(key)
            }
            // An empty DelayQueue reports the end of its stream, but this queue is refilled by
            // `schedule`; the waker registered by `poll_expired` is woken by `insert_at`.
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
        }
    }

    /// Wait for the next due key (cancel-safe: nothing is lost if the future is dropped).
    pub async fn next_due(&mut self) -> K {
        std::future::poll_fn(|cx| self.poll_next_due(cx)).await
    }
}

impl<K> Stream for Scheduler<K>
where
    K: Clone + Eq + Hash + Unpin,
{
    type Item = K;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<K>> {
        self.get_mut().poll_next_due(cx).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::{sleep, sleep_until};

    const MS: Duration = Duration::from_millis(1);

    /// Everything due until `origin + horizon`, as `(key, when relative to origin)`.
    async fn drain(
        scheduler: &mut Scheduler<&'static str>,
        origin: Instant,
        horizon: Duration,
    ) -> Vec<(&'static str, Duration)> {
        let mut out = Vec::new();
        while let Ok(key) = tokio::time::timeout_at(origin + horizon, scheduler.next_due()).await {
            out.push((key, origin.elapsed()));
        }
        out
    }

    fn at(key: &'static str, origin: Instant, millis: u64) -> ScheduleRequest<&'static str> {
        ScheduleRequest {
            key,
            run_at: origin + Duration::from_millis(millis),
        }
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[tokio::test(start_paused = true)]
    async fn dedupe_keeps_earliest_time() {
        let mut scheduler = Scheduler::new();
        let origin = Instant::now();
        scheduler.schedule(at("a", origin, 10_000));
        scheduler.schedule(at("a", origin, 3_000));
        scheduler.schedule(at("a", origin, 7_000));
        assert_eq!(scheduler.len(), 1, "one pending entry per key");
        assert_eq!(scheduler.scheduled_at(&"a"), Some(origin + secs(3.0)));

        let due = drain(&mut scheduler, origin, secs(60.0)).await;
        assert_eq!(
            due,
            vec![("a", secs(3.0))],
            "emitted once, at the earliest time"
        );
        assert!(scheduler.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_drained_burst_gives_its_room_back() {
        let mut scheduler = Scheduler::new();
        for i in 0..5_000 {
            scheduler.schedule(ScheduleRequest::now(i));
        }
        for _ in 0..5_000 {
            scheduler.next_due().await;
        }
        assert!(scheduler.is_empty());
        assert!(scheduler.pending.capacity() >= 5_000 && scheduler.queue.capacity() >= 5_000);
        scheduler.shrink_to_fit();
        assert_eq!(
            (scheduler.pending.capacity(), scheduler.queue.capacity()),
            (0, 0)
        );
        // And it still works.
        scheduler.schedule(ScheduleRequest::now(7));
        assert_eq!(scheduler.next_due().await, 7);
    }

    #[tokio::test(start_paused = true)]
    async fn keys_are_independent_and_emitted_in_time_order() {
        let mut scheduler = Scheduler::new();
        let origin = Instant::now();
        scheduler.schedule(at("late", origin, 5_000));
        scheduler.schedule(at("early", origin, 1_000));
        scheduler.schedule(at("late", origin, 2_000));
        let due = drain(&mut scheduler, origin, secs(60.0)).await;
        assert_eq!(due, vec![("early", secs(1.0)), ("late", secs(2.0))]);
    }

    #[tokio::test(start_paused = true)]
    async fn past_requests_run_at_once_and_removed_keys_never_run() {
        let mut scheduler = Scheduler::new();
        sleep(secs(10.0)).await;
        let origin = Instant::now();
        scheduler.schedule(at("gone", origin, 0));
        scheduler.schedule(ScheduleRequest {
            key: "a",
            run_at: origin - secs(5.0),
        });
        assert!(scheduler.remove(&"gone"));
        assert!(!scheduler.remove(&"gone"));
        let due = drain(&mut scheduler, origin, secs(60.0)).await;
        assert_eq!(due.len(), 1, "{due:?}");
        assert_eq!(due[0].0, "a");
        assert!(
            due[0].1 <= MS,
            "a past run_at is due at once: {:?}",
            due[0].1
        );
    }

    #[tokio::test(start_paused = true)]
    async fn stream_wakes_when_an_empty_scheduler_gets_work() {
        use futures_util::StreamExt;
        let mut scheduler = Scheduler::new();
        let origin = Instant::now();
        // Poll while empty (registers the waker), then schedule from "elsewhere" via select.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            sleep(secs(1.0)).await;
            tx.send(at("a", Instant::now(), 2_000)).unwrap();
        });
        let mut got = None;
        while got.is_none() {
            tokio::select! {
                Some(req) = rx.recv() => scheduler.schedule(req),
                key = scheduler.next() => got = key.map(|k| (k, origin.elapsed())),
            }
        }
        assert_eq!(got, Some(("a", secs(3.0))));
    }

    #[tokio::test(start_paused = true)]
    async fn debounce_pushes_a_burst_back_to_window_after_the_last_request() {
        let mut scheduler = Scheduler::new().with_debounce(Debounce {
            window: secs(1.0),
            max_delay: secs(10.0),
        });
        let origin = Instant::now();
        // Requests at 0, 0.5, 1.0, 1.5 s: each arrives while the previous one is pending.
        for _ in 0..4 {
            scheduler.schedule(ScheduleRequest::now("a"));
            sleep(secs(0.5)).await;
        }
        let due = drain(&mut scheduler, origin, secs(60.0)).await;
        assert_eq!(
            due,
            vec![("a", secs(2.5))],
            "once, window after the last request"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn debounce_is_bounded_so_a_flapping_key_still_runs() {
        let mut scheduler = Scheduler::new().with_debounce(Debounce {
            window: secs(1.0),
            max_delay: secs(3.0),
        });
        let origin = Instant::now();
        let mut emitted = Vec::new();
        let mut next_request = origin;
        // A request every 200 ms for 10 s: without the bound the key would never be due.
        while origin.elapsed() < secs(10.0) {
            tokio::select! {
                biased;
                key = scheduler.next_due() => emitted.push((key, origin.elapsed())),
                () = sleep_until(next_request) => {
                    scheduler.schedule(ScheduleRequest::now("a"));
                    next_request += secs(0.2);
                }
            }
        }
        // Each run comes `max_delay` after the first request that found nothing pending.
        assert_eq!(
            emitted,
            vec![("a", secs(3.0)), ("a", secs(6.0)), ("a", secs(9.0))]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_request_pulls_a_debounced_or_requeued_entry_forward() {
        let mut scheduler = Scheduler::new().with_debounce(Debounce {
            window: secs(1.0),
            max_delay: secs(5.0),
        });
        let origin = Instant::now();
        // A backoff retry five minutes out, then a trigger now: the trigger wins.
        scheduler.schedule(at("a", origin, 300_000));
        scheduler.schedule(at("a", origin, 0));
        // A request later than the pending time is covered by the pending run.
        scheduler.schedule(at("a", origin, 2_000));
        let due = drain(&mut scheduler, origin, secs(600.0)).await;
        assert_eq!(due, vec![("a", secs(1.0))]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_max_delay_below_the_window_shortens_the_window() {
        let mut scheduler = Scheduler::new().with_debounce(Debounce {
            window: secs(5.0),
            max_delay: secs(2.0),
        });
        let origin = Instant::now();
        scheduler.schedule(ScheduleRequest::now("a"));
        let due = drain(&mut scheduler, origin, secs(60.0)).await;
        assert_eq!(due, vec![("a", secs(2.0))]);
    }
}
