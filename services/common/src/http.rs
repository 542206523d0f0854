//! Small JSON response helpers shared by both services, so every error body has one shape.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// `Content-Type` of every body these services send.
pub const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");

/// A response with an already-serialised JSON body.
pub fn json_bytes(status: StatusCode, body: impl Into<axum::body::Body>) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, APPLICATION_JSON);
    response
}

/// `{"error": message}` with `status`.
pub fn json_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    json_bytes(status, body)
}

/// Fallback for paths no route matches: 404 with a JSON body rather than an empty one.
pub async fn not_found() -> Response {
    json_error(StatusCode::NOT_FOUND, "not found")
}

/// Fallback for a known path with the wrong method: 405 with a JSON body.
/// axum still adds the `Allow` header of the matched path.
pub async fn method_not_allowed() -> Response {
    json_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
}

/// Adds the JSON 404/405 fallbacks to a finished router.
pub fn with_json_fallbacks(router: axum::Router) -> axum::Router {
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

/// Lets handlers return `Result<_, JsonError>`.
#[derive(Debug)]
pub struct JsonError(pub StatusCode, pub String);

impl IntoResponse for JsonError {
    fn into_response(self) -> Response {
        json_error(self.0, &self.1)
    }
}
