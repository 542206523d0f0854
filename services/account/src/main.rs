//! `account-service`: reads the environment, binds, serves until SIGTERM/SIGINT.

use account_service::Config;
use anyhow::Context;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_common::telemetry::init();
    let config = Config::from_env()?;
    let listener = TcpListener::bind(("0.0.0.0", config.port))
        .await
        .with_context(|| format!("binding 0.0.0.0:{}", config.port))?;
    let server = account_service::start(config, listener).await?;
    server.run_until(service_common::shutdown_signal()).await?;
    tracing::info!("account service stopped");
    Ok(())
}
