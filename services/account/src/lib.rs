//! The account service: accounts from an embedded redb store, each with a quote fetched
//! from the quote service through client-side load balancing.

pub mod balancer;
pub mod config;
pub mod http1;
pub mod quote_client;
pub mod routes;
pub mod store;

use std::sync::Arc;

use service_common::{Health, ServeError, Server};
use tokio::net::TcpListener;

pub use config::{Config, ConfigError};

use crate::balancer::Balancer;
use crate::quote_client::{QuoteClient, QuoteError};
use crate::routes::AppState;
use crate::store::{Store, StoreError};

/// Errors of starting the service.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be opened or seeded.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The HTTP client could not be built.
    #[error(transparent)]
    Quote(#[from] QuoteError),
    /// The listener is unusable.
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// Opens and seeds the store, resolves the quote endpoints once, and starts serving on
/// `listener` in the background. Resolution failures are not fatal: the service answers
/// with fallback quotes until the quote service appears.
pub async fn start(config: Config, listener: TcpListener) -> Result<Server, StartError> {
    let mut store = Store::open(&config.db_path)?;
    let store_released = store.release_signal();
    let store = Arc::new(store);
    let inserted = store.seed()?;
    tracing::info!(path = %config.db_path.display(), inserted, "account store ready");

    let balancer = Arc::new(Balancer::new(
        config.quote_target.clone(),
        config.ejection_time,
    ));
    match balancer.refresh().await {
        Ok(n) => {
            tracing::info!(endpoints = n, target = ?config.quote_target, "quote endpoints resolved");
        }
        Err(err) => {
            tracing::warn!(error = %err, "quote endpoints not resolved yet; serving fallback quotes until they are");
        }
    }
    // Not joined: it holds only a Weak and ends once the router (and so the balancer) is gone.
    let _refresher = balancer.spawn_refresher(config.refresh_interval);
    let quotes = Arc::new(QuoteClient::new(balancer, config.quote_timeout)?);

    let probe_store = Arc::clone(&store);
    let health = Health::new().with_probe(move || {
        probe_store
            .ping()
            .map_err(|err| format!("store unavailable: {err}"))
    });
    let state = AppState {
        store,
        quotes,
        served_by: Arc::from(config.advertise_addr.as_str()),
    };
    let server = Server::spawn(routes::router(state, &health), listener)?.releasing(store_released);
    tracing::info!(addr = %server.local_addr(), served_by = %config.advertise_addr, "account service listening");
    Ok(server)
}
