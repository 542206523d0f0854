//! The health flag, `/health` and `/testability/healthy/{bool}`, shared by both services.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;

use crate::http::{json_bytes, json_error};

/// A dependency check run on every `/health` call; `Err` carries the reason reported.
pub type Probe = dyn Fn() -> Result<(), String> + Send + Sync;

/// Shared health state: a flag tests and operators flip through `/testability`, plus an
/// optional probe of the service's own dependencies (the account store).
#[derive(Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

struct Inner {
    // Relaxed is enough: the flag guards nothing else, readers only need to see it eventually.
    healthy: AtomicBool,
    probe: Option<Box<Probe>>,
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("healthy", &self.inner.healthy.load(Ordering::Relaxed))
            .field("probe", &self.inner.probe.is_some())
            .finish()
    }
}

impl Health {
    /// Healthy, with no probe.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                healthy: AtomicBool::new(true),
                probe: None,
            }),
        }
    }

    /// Adds a dependency probe. Must be called before the value is cloned.
    pub fn with_probe(
        self,
        probe: impl Fn() -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        let healthy = self.inner.healthy.load(Ordering::Relaxed);
        Self {
            inner: Arc::new(Inner {
                healthy: AtomicBool::new(healthy),
                probe: Some(Box::new(probe)),
            }),
        }
    }

    /// Sets the testability flag.
    pub fn set_healthy(&self, healthy: bool) {
        self.inner.healthy.store(healthy, Ordering::Relaxed);
    }

    /// `Ok` when the flag is healthy and the probe passes, else the reason.
    pub fn check(&self) -> Result<(), String> {
        if !self.inner.healthy.load(Ordering::Relaxed) {
            return Err("unhealthy: testability flag set to false".to_owned());
        }
        match &self.inner.probe {
            Some(probe) => probe(),
            None => Ok(()),
        }
    }

    /// `GET /health` and `GET /testability/healthy/{true|false}`, ready to `merge`.
    pub fn routes(&self) -> Router {
        Router::new()
            .route("/health", get(health))
            .route("/testability/healthy/{value}", get(set_healthy))
            .with_state(self.clone())
    }
}

async fn health(State(health): State<Health>) -> Response {
    match health.check() {
        Ok(()) => json_bytes(StatusCode::OK, r#"{"status":"UP"}"#),
        Err(reason) => {
            let body = serde_json::json!({ "status": reason }).to_string();
            json_bytes(StatusCode::SERVICE_UNAVAILABLE, body)
        }
    }
}

async fn set_healthy(State(health): State<Health>, Path(value): Path<String>) -> Response {
    let healthy = match value.as_str() {
        "true" => true,
        "false" => false,
        _ => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "expected /testability/healthy/true or /testability/healthy/false",
            );
        }
    };
    health.set_healthy(healthy);
    tracing::info!(healthy, "testability flag changed");
    let body = serde_json::json!({ "healthy": healthy }).to_string();
    json_bytes(StatusCode::OK, body)
}
