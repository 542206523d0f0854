//! `quote-service`: reads the environment, binds, serves until SIGTERM/SIGINT.

use anyhow::Context;
use quote_service::Config;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_common::telemetry::init();
    let config = Config::from_env()?;
    let listener = TcpListener::bind(("0.0.0.0", config.port))
        .await
        .with_context(|| format!("binding 0.0.0.0:{}", config.port))?;
    let server = quote_service::start(&config, listener)?;
    server.run_until(service_common::shutdown_signal()).await?;
    tracing::info!("quote service stopped");
    Ok(())
}
