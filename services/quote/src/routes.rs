//! HTTP routes: `/api/quote?strength=N`, `/quotes/{id}`, plus the shared health routes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use service_common::Health;
use service_common::http::{json_bytes, json_error, with_json_fallbacks};

use crate::quotes::Rendered;

#[derive(Clone)]
struct AppState {
    quotes: Arc<Rendered>,
    // Rotates through the set when no strength is given, so callers see variety
    // without a random number generator dependency.
    next: Arc<AtomicU64>,
}

/// The complete router of the quote service.
pub fn router(advertise_addr: &str, health: &Health) -> Router {
    let state = AppState {
        quotes: Arc::new(Rendered::new(advertise_addr)),
        next: Arc::new(AtomicU64::new(0)),
    };
    let api = Router::new()
        .route("/api/quote", get(api_quote))
        .route("/quotes/{id}", get(quote_by_id))
        .with_state(state);
    with_json_fallbacks(api.merge(health.routes()))
}

/// Query of the original blog's API. `strength` picks the quote (modulo the set size).
#[derive(Debug, Deserialize)]
struct QuoteQuery {
    strength: Option<u64>,
}

async fn api_quote(
    State(state): State<AppState>,
    query: Result<Query<QuoteQuery>, QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "strength must be a non-negative integer",
        );
    };
    let n = query
        .strength
        .unwrap_or_else(|| state.next.fetch_add(1, Ordering::Relaxed));
    json_bytes(StatusCode::OK, state.quotes.get(n))
}

async fn quote_by_id(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    // The seed answered any id; numeric ids pick a quote, anything else is not a quote.
    match id.parse::<u64>() {
        Ok(n) => json_bytes(StatusCode::OK, state.quotes.get(n)),
        Err(_) => json_error(StatusCode::NOT_FOUND, "no such quote"),
    }
}
