//! Helpers shared by the account service's integration tests: real servers on 127.0.0.1:0.

#![allow(dead_code)] // each test file uses a different subset

use std::path::Path;
use std::time::Duration;

use account_service::Config;
use account_service::balancer::Target;
use service_common::Server;
use tokio::net::TcpListener;

/// Binds 127.0.0.1 on a free port.
pub async fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0")
}

/// A real quote service reporting `ip_address`.
pub async fn start_quote(ip_address: &str) -> Server {
    service_common::telemetry::init_for_tests();
    let config = quote_service::Config {
        port: 0,
        advertise_addr: ip_address.to_owned(),
    };
    quote_service::start(&config, listener().await).expect("start quote service")
}

/// A real account service on `db` over `quote_urls` (comma-separated base URLs).
pub async fn start_account(db: &Path, quote_urls: &str, budget: Duration) -> Server {
    service_common::telemetry::init_for_tests();
    let config = Config::new(db, Target::parse(quote_urls).expect("quote target"))
        .advertise_addr("10.9.9.9")
        .quote_timeout(budget);
    account_service::start(config, listener().await)
        .await
        .expect("start account service")
}

/// `http://127.0.0.1:PORT` of a server.
pub fn base(server: &Server) -> String {
    format!("http://{}", server.local_addr())
}

/// A plain HTTP client for the tests themselves.
pub fn client() -> reqwest::Client {
    // Workspace feature unification builds reqwest with `rustls-no-provider` (the operator's git
    // client brings its own ring configuration): a client needs a provider installed even for
    // plain http. Installing twice is refused, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// GET `url`: (status, content type, raw body text).
pub async fn get(client: &reqwest::Client, url: &str) -> (u16, String, String) {
    let response = client.get(url).send().await.expect("request");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, response.text().await.expect("body"))
}

/// The quote's `ipAddress` in an account body.
pub fn quote_ip(body: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(body).expect("json body");
    value["quote"]["ipAddress"]
        .as_str()
        .expect("quote.ipAddress")
        .to_owned()
}
