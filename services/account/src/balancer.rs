//! Client-side load balancing over every quote replica: discovery, round robin, ejection.
//!
//! Ribbon-style: the account service itself knows every quote replica's address and
//! spreads its calls, instead of trusting a virtual IP (which, without IPVS, does not
//! route at all, see docs/architecture.md) or the one address a resolver happens to return first.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use url::Url;

use crate::http1::Origin;

/// Path and query of the quote call, the original blog's API.
pub const QUOTE_PATH: &str = "/api/quote?strength=4";

/// Least time between two lookups, however often a refresh is asked for: a flapping
/// endpoint must not turn into a DNS query per request.
const MIN_REFRESH_GAP: Duration = Duration::from_secs(1);

/// Errors of parsing the quote target.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// No URL at all.
    #[error("no base URL given")]
    Empty,
    /// One entry is not an absolute URL.
    #[error("{url:?} is not a base URL: {reason}")]
    Invalid {
        /// The entry.
        url: String,
        /// Why.
        reason: String,
    },
    /// Only plain HTTP is spoken between the services (inside the overlay network).
    #[error("{0:?}: only http:// base URLs are supported")]
    Scheme(String),
}

/// Errors of resolving the quote host.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// Neither the host nor `tasks.<host>` resolved.
    #[error("resolving {host}: {source}")]
    Lookup {
        /// The host.
        host: String,
        /// The resolver's error.
        #[source]
        source: io::Error,
    },
    /// The name resolved to no address.
    #[error("{0} resolved to no address")]
    NoAddress(String),
}

/// Where the quote endpoints come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One base URL with a host name: every address of the name is an endpoint, and the
    /// set is re-resolved periodically.
    Dns {
        /// The name, e.g. `quote-service`.
        host: String,
        /// Its port.
        port: u16,
    },
    /// Fixed base URLs, used as given (a single URL with an IP literal is one of these).
    Static(Vec<String>),
}

impl Target {
    /// Parses `QUOTE_SERVICE`: one base URL, or several separated by commas.
    pub fn parse(spec: &str) -> Result<Self, TargetError> {
        let mut bases = Vec::new();
        let mut single_host = None;
        for raw in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let invalid = |reason: &str| TargetError::Invalid {
                url: raw.to_owned(),
                reason: reason.to_owned(),
            };
            let url = Url::parse(raw).map_err(|err| invalid(&err.to_string()))?;
            if url.scheme() != "http" {
                return Err(TargetError::Scheme(raw.to_owned()));
            }
            if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
                return Err(invalid("expected scheme://host:port with no path or query"));
            }
            let port = url.port_or_known_default().unwrap_or(80);
            let host = url.host_str().ok_or_else(|| invalid("no host"))?;
            let literal = host.trim_start_matches('[').trim_end_matches(']');
            // An IP literal is already an endpoint; only a name has more addresses to find.
            single_host = literal
                .parse::<IpAddr>()
                .is_err()
                .then(|| (host.to_owned(), port));
            // Url keeps a trailing "/"; the quote path brings its own.
            bases.push(url.as_str().trim_end_matches('/').to_owned());
        }
        match (bases.len(), single_host) {
            (0, _) => Err(TargetError::Empty),
            (1, Some((host, port))) => Ok(Self::Dns { host, port }),
            _ => Ok(Self::Static(bases)),
        }
    }
}

/// One quote replica.
#[derive(Debug)]
pub struct Endpoint {
    base: String,
    // Parsed once, not per call.
    url: Url,
    // Its idle keep-alive connections and the pre-rendered quote request.
    origin: Origin,
    // Milliseconds since the balancer's origin until which this endpoint sits out; 0 = in.
    // An atomic rather than a lock: it is read on every request by every worker.
    ejected_until_ms: AtomicU64,
}

impl Endpoint {
    fn new(base: String) -> Self {
        // `base` is either checked by `Target::parse` or built from a socket address.
        let url = Url::parse(&format!("{base}{QUOTE_PATH}")).expect("valid base URL");
        let host = url.host_str().expect("base URL has a host");
        let port = url.port_or_known_default().unwrap_or(80);
        let origin = Origin::new(&format!("{host}:{port}"), QUOTE_PATH);
        Self {
            base,
            url,
            origin,
            ejected_until_ms: AtomicU64::new(0),
        }
    }

    /// The base URL, e.g. `http://10.0.1.7:8080`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The full quote URL.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Its connection pool.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    fn is_ejected(&self, now_ms: u64) -> bool {
        self.ejected_until_ms.load(Ordering::Relaxed) > now_ms
    }
}

/// Owns the set of quote endpoints and chooses one per call.
#[derive(Debug)]
pub struct Balancer {
    target: Target,
    // Replaced wholesale on refresh; readers clone the Arc and never hold the lock while
    // calling out, so a refresh never waits for a slow quote call.
    endpoints: RwLock<Arc<[Arc<Endpoint>]>>,
    next: AtomicUsize,
    origin: Instant,
    ejection_time: Duration,
    // Kept outside `self` so the refresher can wait on it holding only a Weak.
    wake: Arc<Notify>,
}

impl Balancer {
    /// A balancer for `target`; static endpoints are ready at once, DNS ones after [`refresh`].
    ///
    /// [`refresh`]: Balancer::refresh
    pub fn new(target: Target, ejection_time: Duration) -> Self {
        let endpoints: Arc<[Arc<Endpoint>]> = match &target {
            Target::Static(bases) => bases
                .iter()
                .map(|b| Arc::new(Endpoint::new(b.clone())))
                .collect(),
            Target::Dns { .. } => Arc::new([]),
        };
        Self {
            target,
            endpoints: RwLock::new(endpoints),
            next: AtomicUsize::new(0),
            origin: Instant::now(),
            ejection_time,
            wake: Arc::new(Notify::new()),
        }
    }

    /// The current endpoint set.
    pub fn endpoints(&self) -> Arc<[Arc<Endpoint>]> {
        self.endpoints
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The next endpoint in round-robin order that is not ejected and is not `tried`.
    ///
    /// If every other endpoint is ejected, returns one anyway ("panic mode", as Envoy does):
    /// ejection is a guess, and refusing to try at all would turn a blip on every replica
    /// into a full outage for the whole cool-down.
    pub fn pick(&self, tried: Option<&Endpoint>) -> Option<Arc<Endpoint>> {
        let endpoints = self.endpoints();
        let n = endpoints.len();
        if n == 0 {
            self.wake.notify_one();
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = self.now_ms();
        let candidates = (0..n)
            .map(|i| &endpoints[start.wrapping_add(i) % n])
            .filter(|e| !tried.is_some_and(|t| std::ptr::eq(Arc::as_ptr(e), t)));
        let mut fallback = None;
        for endpoint in candidates {
            if !endpoint.is_ejected(now) {
                return Some(endpoint.clone());
            }
            fallback.get_or_insert(endpoint);
        }
        fallback.cloned()
    }

    /// Takes `endpoint` out of the rotation for the cool-down. Returns whether it was in.
    pub fn eject(&self, endpoint: &Endpoint) -> bool {
        let now = self.now_ms();
        let until = now.saturating_add(self.ejection_time.as_millis() as u64);
        let before = endpoint.ejected_until_ms.swap(until, Ordering::Relaxed);
        let newly = before <= now;
        if newly {
            tracing::warn!(endpoint = %endpoint.base, cool_down = ?self.ejection_time, "quote endpoint ejected");
            // A replica that fails may have been rescheduled to a new address: look again soon.
            self.wake.notify_one();
        }
        newly
    }

    /// Re-resolves a DNS target and replaces the endpoint set (keeping the ejection state
    /// of addresses that stay). On failure the previous set is kept: a stale list is
    /// better than none while the resolver hiccups. Static targets: no-op.
    pub async fn refresh(&self) -> Result<usize, ResolveError> {
        let Target::Dns { host, port } = &self.target else {
            return Ok(self.endpoints().len());
        };
        let addrs = resolve(host, *port).await?;
        let current = self.endpoints();
        let by_base: HashMap<&str, &Arc<Endpoint>> =
            current.iter().map(|e| (e.base.as_str(), e)).collect();
        let next: Arc<[Arc<Endpoint>]> = addrs
            .iter()
            .map(|addr| {
                let base = format!("http://{addr}");
                by_base
                    .get(base.as_str())
                    .map_or_else(|| Arc::new(Endpoint::new(base.clone())), |e| Arc::clone(e))
            })
            .collect();
        let changed = next.len() != current.len()
            || next
                .iter()
                .zip(current.iter())
                .any(|(a, b)| a.base != b.base);
        if changed {
            let list: Vec<&str> = next.iter().map(|e| e.base.as_str()).collect();
            tracing::info!(host = %host, endpoints = ?list, "quote endpoints changed");
            *self
                .endpoints
                .write()
                .unwrap_or_else(PoisonError::into_inner) = next;
        }
        Ok(addrs.len())
    }

    /// Re-resolves every `interval`, and sooner (at most once per second) when a call
    /// found no endpoint or ejected one. The task holds only a `Weak`, so it ends by
    /// itself once the service that owns the balancer is gone. `None` for static targets.
    pub fn spawn_refresher(self: &Arc<Self>, interval: Duration) -> Option<JoinHandle<()>> {
        if matches!(self.target, Target::Static(_)) {
            return None;
        }
        let weak: Weak<Self> = Arc::downgrade(self);
        let wake = Arc::clone(&self.wake);
        Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(MIN_REFRESH_GAP.min(interval)).await;
                tokio::select! {
                    () = tokio::time::sleep(interval.saturating_sub(MIN_REFRESH_GAP)) => {}
                    () = wake.notified() => {}
                }
                let Some(balancer) = weak.upgrade() else {
                    return;
                };
                if let Err(err) = balancer.refresh().await {
                    tracing::warn!(error = %err, "quote endpoint refresh failed; keeping the last known set");
                }
            }
        }))
    }
}

/// Every address of `host`: those of `tasks.<host>` (swarm's per-task records, which skip
/// the virtual IP) when it resolves, else those of `host` itself. IPv4 only when there is
/// any (the overlay networks are IPv4 and the services listen on 0.0.0.0), sorted.
async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, ResolveError> {
    let plain = tokio::net::lookup_host((host, port));
    // `tasks.` is a swarm convention for service names (single DNS labels); asking it for
    // `localhost` or a dotted name would only send a pointless query upstream.
    let swarm_style = !host.contains('.') && !host.eq_ignore_ascii_case("localhost");
    let (tasks, plain) = if swarm_style {
        let tasks_name = format!("tasks.{host}");
        let tasks = tokio::net::lookup_host((tasks_name.as_str(), port));
        let (tasks, plain) = tokio::join!(tasks, plain);
        (tasks.ok().map(Iterator::collect::<Vec<_>>), plain)
    } else {
        (None, plain.await)
    };
    let addrs: Vec<SocketAddr> = match tasks.filter(|t| !t.is_empty()) {
        Some(tasks) => tasks,
        None => plain
            .map_err(|source| ResolveError::Lookup {
                host: host.to_owned(),
                source,
            })?
            .collect(),
    };
    let mut addrs = if addrs.iter().any(SocketAddr::is_ipv4) {
        addrs.into_iter().filter(SocketAddr::is_ipv4).collect()
    } else {
        addrs
    };
    addrs.sort_by_key(|a| (matches!(a.ip(), IpAddr::V6(_)), *a));
    addrs.dedup();
    if addrs.is_empty() {
        return Err(ResolveError::NoAddress(host.to_owned()));
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_targets() {
        assert_eq!(
            Target::parse("http://quote-service:8080").unwrap(),
            Target::Dns {
                host: "quote-service".into(),
                port: 8080
            }
        );
        assert_eq!(
            Target::parse("http://10.0.0.5:9000/").unwrap(),
            Target::Static(vec!["http://10.0.0.5:9000".into()])
        );
        assert_eq!(
            Target::parse(" http://a:1 ,http://b:2").unwrap(),
            Target::Static(vec!["http://a:1".into(), "http://b:2".into()])
        );
        assert!(matches!(Target::parse(""), Err(TargetError::Empty)));
        assert!(matches!(
            Target::parse("https://a"),
            Err(TargetError::Scheme(_))
        ));
        assert!(matches!(
            Target::parse("http://a/x"),
            Err(TargetError::Invalid { .. })
        ));
        assert!(matches!(
            Target::parse("a:1"),
            Err(TargetError::Scheme(_)) | Err(TargetError::Invalid { .. })
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn round_robin_skips_ejected_until_cool_down_ends() {
        let target = Target::Static(vec!["http://a:1".into(), "http://b:1".into()]);
        let balancer = Balancer::new(target, Duration::from_secs(5));
        let picks: Vec<String> = (0..4)
            .map(|_| balancer.pick(None).unwrap().base().to_owned())
            .collect();
        assert_eq!(
            picks,
            ["http://a:1", "http://b:1", "http://a:1", "http://b:1"]
        );

        let a = balancer.pick(None).unwrap();
        assert!(balancer.eject(&a));
        assert!(!balancer.eject(&a), "already ejected");
        for _ in 0..4 {
            assert_eq!(balancer.pick(None).unwrap().base(), "http://b:1");
        }
        // The retry never returns the endpoint that just failed, unless it is the only one.
        let b = balancer.pick(None).unwrap();
        assert_eq!(
            balancer.pick(Some(&b)).unwrap().base(),
            "http://a:1",
            "panic mode"
        );

        tokio::time::advance(Duration::from_secs(6)).await;
        let picks: Vec<String> = (0..2)
            .map(|_| balancer.pick(None).unwrap().base().to_owned())
            .collect();
        assert!(picks.contains(&"http://a:1".to_owned()), "{picks:?}");
    }
}
