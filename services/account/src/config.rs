//! Configuration of the account service from its environment; every variable is listed here.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `PORT` | `6767` | listening port on 0.0.0.0 |
//! | `ACCOUNT_DB` | `accounts.redb` | redb file (created and seeded if missing) |
//! | `ADVERTISE_ADDR` | first non-loopback IPv4 | reported as `servedBy` |
//! | `QUOTE_SERVICE` | `http://quote-service:8080` | one base URL (host re-resolved to every A record, also `tasks.<host>`) or a comma-separated list of static base URLs |
//! | `QUOTE_TIMEOUT` | `1s` | total budget of one quote lookup, retry included, before the fallback quote |
//! | `QUOTE_REFRESH_INTERVAL` | `5s` | how often the quote host is re-resolved |
//! | `QUOTE_EJECTION_TIME` | `5s` | how long a failed quote endpoint is left out of the rotation |

use std::path::PathBuf;
use std::time::Duration;

use crate::balancer::{Target, TargetError};

/// Default listening port, the seed's.
pub const DEFAULT_PORT: u16 = 6767;
/// Default quote service base URL: the swarm service name.
pub const DEFAULT_QUOTE_SERVICE: &str = "http://quote-service:8080";
/// Default total budget of a quote lookup.
pub const DEFAULT_QUOTE_TIMEOUT: Duration = Duration::from_secs(1);
/// Default DNS refresh interval: swarm DNS changes as soon as a task starts or stops.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(5);
/// Default ejection cool-down.
pub const DEFAULT_EJECTION_TIME: Duration = Duration::from_secs(5);

/// Errors reading the environment.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `PORT` is not a port number.
    #[error("PORT={0:?} is not a port number (0-65535)")]
    Port(String),
    /// A duration variable does not parse (`500ms`, `1s`, `2m` are valid).
    #[error("{name}={value:?} is not a duration like 500ms, 1s or 1m: {source}")]
    Duration {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// Why.
        #[source]
        source: humantime::DurationError,
    },
    /// A duration variable is zero.
    #[error("{0} must be greater than zero")]
    ZeroDuration(&'static str),
    /// `QUOTE_SERVICE` is not a usable URL list.
    #[error("QUOTE_SERVICE: {0}")]
    QuoteService(#[from] TargetError),
}

/// What the account service needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// TCP port on 0.0.0.0.
    pub port: u16,
    /// The redb file.
    pub db_path: PathBuf,
    /// Reported as `servedBy`.
    pub advertise_addr: String,
    /// Where the quotes come from.
    pub quote_target: Target,
    /// Total budget of one quote lookup, retry included.
    pub quote_timeout: Duration,
    /// DNS refresh interval.
    pub refresh_interval: Duration,
    /// Ejection cool-down of a failed endpoint.
    pub ejection_time: Duration,
}

impl Config {
    /// Defaults for everything but the store and the quote target (for tests and embedding).
    pub fn new(db_path: impl Into<PathBuf>, quote_target: Target) -> Self {
        Self {
            port: DEFAULT_PORT,
            db_path: db_path.into(),
            advertise_addr: service_common::addr::UNKNOWN.to_owned(),
            quote_target,
            quote_timeout: DEFAULT_QUOTE_TIMEOUT,
            refresh_interval: DEFAULT_REFRESH_INTERVAL,
            ejection_time: DEFAULT_EJECTION_TIME,
        }
    }

    /// Sets the advertised address.
    pub fn advertise_addr(mut self, addr: impl Into<String>) -> Self {
        self.advertise_addr = addr.into();
        self
    }

    /// Sets the quote budget.
    pub fn quote_timeout(mut self, budget: Duration) -> Self {
        self.quote_timeout = budget;
        self
    }

    /// Sets the ejection cool-down.
    pub fn ejection_time(mut self, cool_down: Duration) -> Self {
        self.ejection_time = cool_down;
        self
    }

    /// Reads the variables in the table above.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`Config::from_env`] with the environment injected.
    pub fn from_lookup(env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let port = match env("PORT") {
            Some(raw) => raw.trim().parse().map_err(|_| ConfigError::Port(raw))?,
            None => DEFAULT_PORT,
        };
        let db_path = env("ACCOUNT_DB")
            .filter(|p| !p.trim().is_empty())
            .map_or_else(|| PathBuf::from("accounts.redb"), PathBuf::from);
        let quote_service = env("QUOTE_SERVICE")
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_QUOTE_SERVICE.to_owned());
        let duration = |name: &'static str, default: Duration| -> Result<Duration, ConfigError> {
            let Some(value) = env(name) else {
                return Ok(default);
            };
            let parsed = humantime::parse_duration(value.trim()).map_err(|source| {
                ConfigError::Duration {
                    name,
                    value: value.clone(),
                    source,
                }
            })?;
            if parsed.is_zero() {
                return Err(ConfigError::ZeroDuration(name));
            }
            Ok(parsed)
        };
        let advertise_addr = service_common::addr::resolve(
            env(service_common::addr::ADVERTISE_ADDR_ENV).as_deref(),
            service_common::addr::first_non_loopback_ipv4,
        );
        Ok(Self {
            port,
            db_path,
            advertise_addr,
            quote_target: Target::parse(&quote_service)?,
            quote_timeout: duration("QUOTE_TIMEOUT", DEFAULT_QUOTE_TIMEOUT)?,
            refresh_interval: duration("QUOTE_REFRESH_INTERVAL", DEFAULT_REFRESH_INTERVAL)?,
            ejection_time: duration("QUOTE_EJECTION_TIME", DEFAULT_EJECTION_TIME)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let config = Config::from_lookup(|name| match name {
            "ADVERTISE_ADDR" => Some("10.0.0.9".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(config.port, 6767);
        assert_eq!(config.db_path, PathBuf::from("accounts.redb"));
        assert_eq!(config.advertise_addr, "10.0.0.9");
        assert_eq!(config.quote_timeout, Duration::from_secs(1));
        assert!(
            matches!(config.quote_target, Target::Dns { ref host, port: 8080, .. } if host == "quote-service")
        );

        let config = Config::from_lookup(|name| match name {
            "PORT" => Some("7000".into()),
            "QUOTE_TIMEOUT" => Some("250ms".into()),
            "QUOTE_SERVICE" => Some("http://127.0.0.1:1, http://127.0.0.1:2".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(config.port, 7000);
        assert_eq!(config.quote_timeout, Duration::from_millis(250));
        assert!(matches!(config.quote_target, Target::Static(ref urls) if urls.len() == 2));

        let bad = |k: &'static str, v: &'static str| {
            Config::from_lookup(move |name| (name == k).then(|| v.to_owned())).unwrap_err()
        };
        assert!(matches!(bad("PORT", "http"), ConfigError::Port(_)));
        assert!(matches!(
            bad("QUOTE_TIMEOUT", "soon"),
            ConfigError::Duration { .. }
        ));
        assert!(matches!(
            bad("QUOTE_TIMEOUT", "0s"),
            ConfigError::ZeroDuration(_)
        ));
        assert!(matches!(
            bad("QUOTE_SERVICE", "https://x:1"),
            ConfigError::QuoteService(_)
        ));
    }
}
