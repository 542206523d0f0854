//! Per-key exponential backoff with jitter for failed reconciles, built on backon.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// Default first retry delay after an error.
pub const DEFAULT_MIN_BACKOFF: Duration = Duration::from_millis(500);
/// Default cap on the retry delay.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(5 * 60);

type Sequence = <ExponentialBuilder as BackoffBuilder>::Backoff;

/// Independent backoff sequences, one per key that is currently failing.
///
/// The n-th consecutive failure of a key waits `min * 2^(n-1)` plus a random jitter of up to
/// 100 % of that (backon's jitter), never more than `max`. A success [`reset`](Self::reset)s the
/// key, so its next failure starts again at `min`. Keys never share a sequence, so one failing
/// key cannot slow down another.
#[derive(Debug)]
pub struct KeyedBackoff<K> {
    builder: ExponentialBuilder,
    max: Duration,
    /// Per-process random seeds: backon is built without its `std` feature here, and without an
    /// explicit seed every sequence would use the same fixed seed and jitter in lockstep, which
    /// is exactly the thundering herd jitter exists to prevent.
    seeds: RandomState,
    sequences: HashMap<K, (Sequence, u32)>,
}

impl<K: Eq + Hash + Clone> KeyedBackoff<K> {
    /// A backoff starting at `min` and capped at `max` (the caller checks `0 < min <= max`).
    #[must_use]
    pub fn new(min: Duration, max: Duration) -> Self {
        let builder = ExponentialBuilder::default()
            .with_min_delay(min)
            .with_max_delay(max)
            .with_factor(2.0)
            .with_jitter()
            // A controller retries forever; giving up would leave the object unreconciled.
            .without_max_times();
        Self {
            builder,
            max,
            seeds: RandomState::new(),
            sequences: HashMap::new(),
        }
    }

    /// Record a failure of `key` and return how long to wait before retrying it.
    pub fn next_delay(&mut self, key: &K) -> Duration {
        if !self.sequences.contains_key(key) {
            let sequence = self
                .builder
                .with_jitter_seed(self.seeds.hash_one(key))
                .build();
            self.sequences.insert(key.clone(), (sequence, 0));
        }
        let (sequence, failures) = self
            .sequences
            .get_mut(key)
            .expect("sequence inserted above");
        *failures = failures.saturating_add(1);
        // `without_max_times` makes the iterator endless; fall back to the cap regardless.
        // backon caps the base delay but adds jitter on top of it, so cap again here.
        sequence.next().unwrap_or(self.max).min(self.max)
    }

    /// Forget `key`'s failures (after a successful reconcile).
    pub fn reset(&mut self, key: &K) {
        self.sequences.remove(key);
    }

    /// Gives back the room of keys reset since the table last grew.
    pub fn shrink_to_fit(&mut self) {
        self.sequences.shrink_to_fit();
    }

    /// Consecutive failures recorded for `key` since its last reset.
    #[must_use]
    pub fn failures(&self, key: &K) -> u32 {
        self.sequences.get(key).map_or(0, |(_, n)| *n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(300);

    #[test]
    fn delays_double_within_jitter_and_cap() {
        let mut backoff = KeyedBackoff::new(MIN, MAX);
        for n in 0..20u32 {
            let base = MIN.saturating_mul(2u32.saturating_pow(n)).min(MAX);
            let delay = backoff.next_delay(&"k");
            assert!(delay >= base, "attempt {n}: {delay:?} < base {base:?}");
            assert!(
                delay <= (base * 2).min(MAX),
                "attempt {n}: {delay:?} above jitter/cap"
            );
        }
        assert_eq!(backoff.failures(&"k"), 20);
        assert_eq!(
            backoff.next_delay(&"k"),
            MAX,
            "long failing keys sit at the cap"
        );
    }

    #[test]
    fn reset_starts_over_and_keys_are_independent() {
        let mut backoff = KeyedBackoff::new(MIN, MAX);
        for _ in 0..6 {
            backoff.next_delay(&"a");
        }
        let fresh = backoff.next_delay(&"b");
        assert!(
            fresh >= MIN && fresh < MIN * 2,
            "b starts at min: {fresh:?}"
        );
        backoff.reset(&"a");
        assert_eq!(backoff.failures(&"a"), 0);
        let again = backoff.next_delay(&"a");
        assert!(
            again >= MIN && again < MIN * 2,
            "a restarts at min: {again:?}"
        );
    }

    #[test]
    fn jitter_differs_between_keys() {
        let mut backoff = KeyedBackoff::new(MIN, MAX);
        let delays: std::collections::HashSet<Duration> =
            (0..16).map(|k| backoff.next_delay(&k)).collect();
        assert!(
            delays.len() > 1,
            "16 keys all got the same jittered delay: {delays:?}"
        );
    }
}
