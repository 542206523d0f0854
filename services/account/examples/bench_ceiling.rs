//! The benchmark's ceiling: the smallest axum "hello" server, same runtime and build profile
//! as the services, so `services/bench/run.sh` can say how close the account service gets.

use axum::Router;
use axum::routing::get;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(18081);
    let router = Router::new()
        .route("/", get(|| async { "Hello, World!" }))
        .route("/health", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, router).await
}
