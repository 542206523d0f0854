//! Configuration of the quote service from its environment (`PORT`, `ADVERTISE_ADDR`).

/// Default listening port, the seed's.
pub const DEFAULT_PORT: u16 = 8080;

/// Errors reading the environment.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `PORT` is not a port number.
    #[error("PORT={0:?} is not a port number (0-65535)")]
    Port(String),
}

/// What the quote service needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// TCP port on 0.0.0.0.
    pub port: u16,
    /// Reported as `ipAddress` in every quote.
    pub advertise_addr: String,
}

impl Config {
    /// Reads `PORT` (default 8080) and the advertised address (`ADVERTISE_ADDR` or discovery).
    pub fn from_env() -> Result<Self, ConfigError> {
        let port = match std::env::var("PORT") {
            Ok(raw) => raw.trim().parse().map_err(|_| ConfigError::Port(raw))?,
            Err(_) => DEFAULT_PORT,
        };
        Ok(Self {
            port,
            advertise_addr: service_common::advertised_addr(),
        })
    }
}
