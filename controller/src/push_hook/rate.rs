//! A token bucket bounding how often the push hook is served: a burst, then a steady rate.
//!
//! Hand-written rather than a crate (governor and tower's limiters pull in a dozen crates, and
//! tower's waits instead of answering 429): the one shared bucket is a dozen lines.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// One shared bucket of `burst` tokens refilled at `per_second`.
#[derive(Debug)]
pub struct RateLimit {
    burst: f64,
    per_second: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimit {
    /// A full bucket.
    pub fn new(burst: u32, per_second: f64) -> Self {
        RateLimit {
            burst: f64::from(burst),
            per_second,
            state: Mutex::new((f64::from(burst), Instant::now())),
        }
    }

    /// Takes a token, or says how long until one is available.
    pub fn take(&self) -> Result<(), Duration> {
        let mut state = self.state.lock().expect("rate limit lock poisoned");
        let (tokens, last) = &mut *state;
        let now = Instant::now();
        *tokens =
            (*tokens + now.duration_since(*last).as_secs_f64() * self.per_second).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_then_the_rate() {
        let limit = RateLimit::new(3, 2.0);
        for _ in 0..3 {
            limit.take().unwrap();
        }
        let wait = limit.take().unwrap_err();
        assert!(wait <= Duration::from_millis(500), "{wait:?}");
        tokio::time::advance(Duration::from_millis(500)).await;
        limit.take().unwrap();
        assert!(limit.take().is_err());
        // A long pause refills the burst, not more.
        tokio::time::advance(Duration::from_secs(60)).await;
        for _ in 0..3 {
            limit.take().unwrap();
        }
        assert!(limit.take().is_err());
    }
}
