//! Fetching a quote through the balancer: bounded time, one retry elsewhere, then a fallback.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::balancer::{Balancer, Endpoint};
use crate::http1::HttpError;

/// `ipAddress` of the quote served when no replica could answer in time.
pub const FALLBACK_IP: &str = "fallback";

/// Text of the fallback quote (the blog series' own circuit-breaker fallback).
pub const FALLBACK_TEXT: &str = "May the source be with you, always.";

/// A quote body larger than this is garbage, not a quote; it is not read further.
const MAX_BODY: usize = 64 * 1024;

/// Attempts per lookup: the first endpoint, then one retry on another.
const ATTEMPTS: u32 = 2;

/// Idle pooled connections are dropped after this. Shorter than hyper's 30 s server-side
/// header-read timeout, so the pool never hands out a connection the server is closing.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(20);

/// Errors of one quote call.
#[derive(Debug, thiserror::Error)]
pub enum QuoteError {
    /// No endpoint is known (DNS has not answered yet, or names nothing).
    #[error("no quote endpoint known")]
    NoEndpoint,
    /// Connecting, sending or reading failed, or the response is not HTTP.
    #[error("quote request failed: {0}")]
    Transport(#[source] HttpError),
    /// The attempt ran out of its share of the budget.
    #[error("quote request timed out after {0:?}")]
    Timeout(Duration),
    /// The quote service answered with a non-200 status.
    #[error("quote service answered {0}")]
    Status(StatusCode),
    /// The body exceeded the size limit.
    #[error("quote body larger than {MAX_BODY} bytes")]
    TooLarge,
    /// The body is not a quote.
    #[error("quote body is not a quote: {0}")]
    Body(#[source] serde_json::Error),
}

/// A quote, as the quote service sends it and as the account response embeds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quote {
    /// The text.
    pub quote: String,
    /// The replica that served it, or [`FALLBACK_IP`].
    #[serde(rename = "ipAddress")]
    pub ip_address: String,
    /// Language code.
    pub language: String,
}

impl Quote {
    /// The quote used when the quote service cannot answer.
    pub fn fallback() -> Self {
        Self {
            quote: FALLBACK_TEXT.to_owned(),
            ip_address: FALLBACK_IP.to_owned(),
            language: "EN".to_owned(),
        }
    }
}

/// The quote client over the balancer's endpoints. Each endpoint keeps a pool of keep-alive
/// connections (`http1::Origin`), which is where the speed over the seed (a new connection
/// per call) comes from.
#[derive(Debug)]
pub struct QuoteClient {
    balancer: Arc<Balancer>,
    budget: Duration,
    // Rate limit for the fallback warning, so an outage logs once a second, not per request.
    last_fallback_log_ms: AtomicU64,
    origin: Instant,
}

impl QuoteClient {
    /// A client over `balancer` with a total budget per lookup.
    pub fn new(balancer: Arc<Balancer>, budget: Duration) -> Result<Self, QuoteError> {
        // No proxy from the environment (endpoints are addresses on an internal network, a
        // proxy would only break the rotation); connecting is bounded by the attempt's share.
        Ok(Self {
            balancer,
            budget,
            last_fallback_log_ms: AtomicU64::new(0),
            origin: Instant::now(),
        })
    }

    /// The balancer in use.
    pub fn balancer(&self) -> &Arc<Balancer> {
        &self.balancer
    }

    /// A quote from some replica within the budget, else [`Quote::fallback`]. Never fails.
    pub async fn fetch(&self) -> Quote {
        match self.try_fetch().await {
            Ok(quote) => quote,
            Err(err) => {
                self.log_fallback(&err);
                Quote::fallback()
            }
        }
    }

    /// A quote from some replica within the budget, trying a second endpoint after a failure.
    pub async fn try_fetch(&self) -> Result<Quote, QuoteError> {
        let deadline = Instant::now() + self.budget;
        let mut endpoint = self.balancer.pick(None).ok_or(QuoteError::NoEndpoint)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            // Split what is left evenly over the attempts left, so one hung replica cannot
            // eat the time the retry needs.
            let remaining = deadline.saturating_duration_since(Instant::now());
            let share = remaining / (ATTEMPTS + 1 - attempt);
            let result = match tokio::time::timeout(share, self.call(&endpoint)).await {
                Ok(result) => result,
                Err(_) => Err(QuoteError::Timeout(share)),
            };
            let err = match result {
                Ok(quote) => return Ok(quote),
                Err(err) => err,
            };
            tracing::debug!(endpoint = endpoint.base(), attempt, error = %err, "quote attempt failed");
            self.balancer.eject(&endpoint);
            if attempt >= ATTEMPTS || Instant::now() >= deadline {
                return Err(err);
            }
            match self.balancer.pick(Some(&endpoint)) {
                Some(next) => endpoint = next,
                None => return Err(err),
            }
        }
    }

    async fn call(&self, endpoint: &Endpoint) -> Result<Quote, QuoteError> {
        let response = endpoint
            .origin()
            .get(POOL_IDLE_TIMEOUT, MAX_BODY)
            .await
            .map_err(|err| match err {
                HttpError::TooLarge(_) => QuoteError::TooLarge,
                err => QuoteError::Transport(err),
            })?;
        if response.status != StatusCode::OK {
            return Err(QuoteError::Status(response.status));
        }
        serde_json::from_slice(&response.body).map_err(QuoteError::Body)
    }

    fn log_fallback(&self, err: &QuoteError) {
        let now = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX) + 1_000;
        let last = self.last_fallback_log_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 1_000
            && self
                .last_fallback_log_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(error = %err, "quote service unavailable; serving the fallback quote");
        }
    }
}
