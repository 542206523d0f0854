//! The quote service: a quote from a small built-in set plus the address of the replica that served it.

pub mod config;
pub mod quotes;
pub mod routes;

use tokio::net::TcpListener;

pub use config::{Config, ConfigError};
use service_common::{Health, ServeError, Server};

/// Builds the router and starts serving on `listener` in the background.
pub fn start(config: &Config, listener: TcpListener) -> Result<Server, ServeError> {
    let router = routes::router(&config.advertise_addr, &Health::new());
    let server = Server::spawn(router, listener)?;
    tracing::info!(addr = %server.local_addr(), ip_address = %config.advertise_addr, "quote service listening");
    Ok(server)
}
