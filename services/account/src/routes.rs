//! HTTP routes: `GET /accounts/{id}` plus the shared health routes.

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde::Serialize;
use service_common::Health;
use service_common::http::{json_bytes, json_error, with_json_fallbacks};

use crate::quote_client::{Quote, QuoteClient};
use crate::store::Store;

/// Everything a request needs, shared by all of them.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The account store.
    pub store: Arc<Store>,
    /// The quote client.
    pub quotes: Arc<QuoteClient>,
    /// This replica's address, reported as `servedBy`.
    pub served_by: Arc<str>,
}

/// The response, fields in the documented order: id, name, servedBy, quote.
#[derive(Serialize)]
struct AccountBody<'a> {
    id: &'a str,
    name: &'a str,
    #[serde(rename = "servedBy")]
    served_by: &'a str,
    quote: &'a Quote,
}

/// Ids longer than this cannot be accounts; they are answered 404 without a lookup.
const MAX_ID_LEN: usize = 64;

/// The complete router of the account service.
pub fn router(state: AppState, health: &Health) -> Router {
    let api = Router::new()
        .route("/accounts/{id}", get(get_account))
        .with_state(state);
    with_json_fallbacks(api.merge(health.routes()))
}

async fn get_account(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    // A malformed id (e.g. percent-encoding that is not UTF-8) names no account either:
    // same 404 as an unknown one, rather than axum's plain-text 400.
    let Ok(Path(id)) = id else {
        return json_error(StatusCode::NOT_FOUND, "account not found");
    };
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return json_error(StatusCode::NOT_FOUND, "account not found");
    }
    let account = match state.store.get(&id) {
        Ok(Some(account)) => account,
        Ok(None) => return json_error(StatusCode::NOT_FOUND, "account not found"),
        Err(err) => {
            tracing::error!(error = %err, id, "account lookup failed");
            return json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "account store unavailable",
            );
        }
    };
    // Only after the account exists: a 404 must not cost a quote call.
    let quote = state.quotes.fetch().await;
    let body = AccountBody {
        id: &account.id,
        name: &account.name,
        served_by: &state.served_by,
        quote: &quote,
    };
    let mut bytes = Vec::with_capacity(256);
    match serde_json::to_writer(&mut bytes, &body) {
        Ok(()) => json_bytes(StatusCode::OK, bytes),
        Err(err) => {
            tracing::error!(error = %err, "serialising an account failed");
            json_error(StatusCode::INTERNAL_SERVER_ERROR, "serialisation failed")
        }
    }
}
