//! `POST /hooks/git`: a forge's push hook that makes the git source fetch at once instead of
//! at its next poll.
//!
//! * **Who may call it**: the forge, proven by the shared secret ([`signature`]): GitHub's and
//!   Gitea/Forgejo's HMAC-SHA256 of the body or GitLab's token, compared in constant time. A
//!   request without a valid proof gets 401 and changes nothing. The route is not behind
//!   `--web-config`'s basic auth (a forge cannot send it) but is served over its TLS.
//! * **What it does**: a push to the ref the operator follows wakes the fetch (a request
//!   already pending absorbs it); a push to another ref, or an event without a ref (GitHub's
//!   `ping`), is accepted (202) and ignored. Only the body's `ref` and `after` fields are read.
//! * **On a follower** (`--leader-election`): it fetches too (keeping its cache warm) and
//!   passes the pushed commit on to the leader ([`pass_on`]), so a load balancer may send the
//!   hook to any replica.
//! * **Bounds**: bodies over [`MAX_BODY`] get 413, a body must arrive within [`BODY_TIMEOUT`],
//!   and requests beyond a burst of [`BURST`] then [`PER_SECOND`] a second get 429, checked
//!   before the body is read or a signature computed.
//! * **Never logged**: the secret, the signature headers, the body.

pub mod pass_on;
pub mod rate;
pub mod signature;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http_body_util::BodyExt as _;
use serde::Deserialize;
use tracing::{debug, info};

pub use pass_on::PassOn;
pub use rate::RateLimit;
pub use signature::{HookSecret, Refusal, Scheme, SecretError};

/// The path of the hook.
pub const PATH: &str = "/hooks/git";
/// The largest body read: GitHub caps its payloads at 25 MB, but a push's `ref` comes first
/// and pushes of a few commits are a few KiB; larger ones are refused unread.
pub const MAX_BODY: usize = 1024 * 1024;
/// Time for the whole body once the headers arrived (the server bounds the headers).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests served at once before the rate applies: a forge redelivering a few hooks.
pub const BURST: u32 = 10;
/// Requests a second served after the burst: far more pushes than a repository sees, far
/// fewer HMACs over 1 MiB than would load a core.
pub const PER_SECOND: f64 = 2.0;

/// The ref the operator follows, as forges name it in a push (`refs/heads/main`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowedRef(String);

impl FollowedRef {
    /// `--git-ref`: a full ref (`refs/…`) as is, a bare name as the branch of that name.
    pub fn new(git_ref: &str) -> Self {
        if git_ref.starts_with("refs/") {
            FollowedRef(git_ref.to_owned())
        } else {
            FollowedRef(format!("refs/heads/{git_ref}"))
        }
    }

    /// The full ref.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What the hook needs: the secret, the ref, and the fetch to wake.
#[derive(Debug, Clone)]
pub struct HookConfig {
    /// The shared secret (`--git-webhook-secret-file`).
    pub secret: HookSecret,
    /// The ref `run` follows.
    pub followed: FollowedRef,
    /// Woken for a push to `followed`: the git source fetches at once.
    pub fetch_now: crate::git::FetchTrigger,
    /// How a follower passes the push on to the leader (`None` without leader election).
    pub pass_on: Option<PassOn>,
}

#[derive(Clone)]
struct HookState {
    config: Arc<HookConfig>,
    limit: Arc<RateLimit>,
}

/// The route of the hook, to merge into the web server's router.
pub fn router(config: HookConfig) -> Router {
    Router::new().route(PATH, post(hook)).with_state(HookState {
        config: Arc::new(config),
        limit: Arc::new(RateLimit::new(BURST, PER_SECOND)),
    })
}

/// What the hook answered, for the log and the tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Fetching,
    PassedOn,
    OtherRef,
    NoRef,
    NotJson,
    Refused(Refusal),
    TooLarge,
    TooSlow,
    Broken,
    Limited(Duration),
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let (status, text) = match self {
            Answer::Fetching => (StatusCode::ACCEPTED, "fetching\n".to_owned()),
            Answer::PassedOn => (
                StatusCode::ACCEPTED,
                "fetching; passed on to the leader\n".to_owned(),
            ),
            Answer::OtherRef => (
                StatusCode::ACCEPTED,
                "ignored: a push to a ref this operator does not follow\n".to_owned(),
            ),
            Answer::NoRef => (
                StatusCode::ACCEPTED,
                "ignored: not a push (no ref)\n".to_owned(),
            ),
            Answer::NotJson => (
                StatusCode::BAD_REQUEST,
                "the body is not a JSON object: set the hook's content type to application/json\n"
                    .to_owned(),
            ),
            Answer::Refused(refusal) => (StatusCode::UNAUTHORIZED, format!("{refusal}\n")),
            Answer::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than {MAX_BODY} bytes\n"),
            ),
            Answer::TooSlow => (
                StatusCode::REQUEST_TIMEOUT,
                format!("the body did not arrive within {BODY_TIMEOUT:?}\n"),
            ),
            Answer::Broken => (
                StatusCode::BAD_REQUEST,
                "the body could not be read\n".to_owned(),
            ),
            Answer::Limited(wait) => {
                let seconds = wait.as_secs() + 1;
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::RETRY_AFTER, seconds.to_string())],
                    "too many hook requests; retry later\n",
                )
                    .into_response();
            }
        };
        (status, text).into_response()
    }
}

/// Only the field the hook needs; serde skips the rest of the push.
#[derive(Deserialize)]
struct Push {
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    /// The pushed commit (GitHub, Gitea/Forgejo and GitLab all send it; zeros for a deleted
    /// branch).
    after: Option<String>,
}

async fn hook(State(state): State<HookState>, request: Request) -> Answer {
    let answer = answer(&state, request).await;
    match answer {
        Answer::Fetching => info!("push hook: fetching now"),
        Answer::PassedOn => info!("push hook: fetching now, and passing it on to the leader"),
        Answer::Refused(refusal) => info!(%refusal, "push hook refused"),
        answer => debug!(?answer, "push hook"),
    }
    answer
}

async fn answer(state: &HookState, request: Request) -> Answer {
    if let Err(wait) = state.limit.take() {
        return Answer::Limited(wait);
    }
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY as u64) {
        return Answer::TooLarge;
    }
    let read = http_body_util::Limited::new(body, MAX_BODY).collect();
    let body = match tokio::time::timeout(BODY_TIMEOUT, read).await {
        Err(_) => return Answer::TooSlow,
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
            return Answer::TooLarge;
        }
        Ok(Err(_)) => return Answer::Broken,
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    // Nothing of the body is looked at before it is proven to come from the forge.
    if let Err(refusal) = signature::verify(&state.config.secret, &parts.headers, &body) {
        return Answer::Refused(refusal);
    }
    let Ok(push) = serde_json::from_slice::<Push>(&body) else {
        return Answer::NotJson;
    };
    match push.git_ref {
        None => Answer::NoRef,
        Some(r) if r == state.config.followed.as_str() => {
            state.config.fetch_now.fetch_now();
            let pushed = push
                .after
                .as_deref()
                .and_then(|a| crate::revision::Revision::parse(a).ok())
                .filter(|r| r.as_str().bytes().any(|b| b != b'0'));
            match (&state.config.pass_on, pushed) {
                (Some(pass_on), Some(pushed)) if pass_on.pass(&pushed) => Answer::PassedOn,
                _ => Answer::Fetching,
            }
        }
        Some(_) => Answer::OtherRef,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use hmac::{Hmac, Mac};
    use sha2::Sha256;
    use tower_service::Service as _;

    const SECRET: &str = "0123456789abcdef-test-secret";

    fn sign(body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    fn app() -> (Router, crate::git::FetchTrigger) {
        let fetch_now = crate::git::FetchTrigger::default();
        let router = router(HookConfig {
            secret: HookSecret::new(SECRET),
            followed: FollowedRef::new("main"),
            fetch_now: fetch_now.clone(),
            pass_on: None,
        });
        (router, fetch_now)
    }

    async fn post(app: &mut Router, body: Vec<u8>, signature: Option<String>) -> Response {
        let mut request = Request::post(PATH).header(header::CONTENT_TYPE, "application/json");
        if let Some(signature) = signature {
            request = request.header(signature::GITHUB_HEADER, signature);
        }
        app.call(request.body(Body::from(body)).unwrap())
            .await
            .unwrap()
    }

    /// Whether a fetch was asked for (consumes the stored wake-up).
    async fn woken(fetch_now: &crate::git::FetchTrigger) -> bool {
        tokio::time::timeout(Duration::from_millis(50), fetch_now.notify().notified())
            .await
            .is_ok()
    }

    fn push(git_ref: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "ref": git_ref, "before": "0".repeat(40), "after": "1".repeat(40),
            "commits": [{"id": "1".repeat(40), "message": "a change"}],
        }))
        .unwrap()
    }

    #[test]
    fn a_bare_ref_is_a_branch() {
        assert_eq!(FollowedRef::new("main").as_str(), "refs/heads/main");
        assert_eq!(FollowedRef::new("refs/tags/v1").as_str(), "refs/tags/v1");
    }

    #[tokio::test]
    async fn a_signed_push_to_the_followed_ref_fetches() {
        let (mut app, fetch_now) = app();
        let body = push("refs/heads/main");
        let response = post(&mut app, body.clone(), Some(sign(&body))).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        assert!(woken(&fetch_now).await);
    }

    #[tokio::test]
    async fn a_push_to_another_ref_or_a_ping_is_accepted_and_ignored() {
        let (mut app, fetch_now) = app();
        for body in [
            push("refs/heads/feature"),
            push("refs/tags/main"),
            br#"{"zen":"Keep it logically awesome.","hook_id":1}"#.to_vec(),
        ] {
            let response = post(&mut app, body.clone(), Some(sign(&body))).await;
            assert_eq!(response.status(), StatusCode::ACCEPTED);
        }
        assert!(!woken(&fetch_now).await);
    }

    #[tokio::test]
    async fn a_bad_or_missing_signature_is_401_and_fetches_nothing() {
        let (mut app, fetch_now) = app();
        let body = push("refs/heads/main");
        let other = sign(b"another body");
        for signature in [None, Some(other), Some("sha256=00".to_owned())] {
            let response = post(&mut app, body.clone(), signature).await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            let text = response.into_body().collect().await.unwrap().to_bytes();
            assert!(!String::from_utf8_lossy(&text).contains(SECRET));
        }
        assert!(!woken(&fetch_now).await);
    }

    #[tokio::test]
    async fn a_signed_body_that_is_not_json_is_400() {
        let (mut app, fetch_now) = app();
        let body = b"payload=%7B%22ref%22%3A%22refs%2Fheads%2Fmain%22%7D".to_vec();
        let response = post(&mut app, body.clone(), Some(sign(&body))).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert!(!woken(&fetch_now).await);
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_413() {
        let (mut app, fetch_now) = app();
        // Declared too large.
        let body = vec![b' '; MAX_BODY + 1];
        let response = post(&mut app, body.clone(), Some(sign(&body))).await;
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        // Streamed without a length.
        let chunks = futures_util::stream::iter(
            std::iter::repeat_n(bytes::Bytes::from(vec![b' '; 64 * 1024]), 17)
                .map(Ok::<_, std::io::Error>),
        );
        let request = Request::post(PATH)
            .header(signature::GITHUB_HEADER, sign(b""))
            .body(Body::from_stream(chunks))
            .unwrap();
        let response = app.call(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        // Exactly the limit is read (and here refused for its signature, not its size).
        let body = vec![b' '; MAX_BODY];
        let response = post(&mut app, body, Some(sign(b"x"))).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(!woken(&fetch_now).await);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_beyond_the_burst_are_429_until_the_bucket_refills() {
        let (mut app, fetch_now) = app();
        let body = push("refs/heads/main");
        for _ in 0..BURST {
            let response = post(&mut app, body.clone(), Some(sign(&body))).await;
            assert_eq!(response.status(), StatusCode::ACCEPTED);
        }
        let response = post(&mut app, body.clone(), Some(sign(&body))).await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(response.headers().contains_key(header::RETRY_AFTER));
        // Unsigned requests spend the bucket too: a flood can not make the hook compute
        // HMACs at will.
        let response = post(&mut app, body.clone(), None).await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        tokio::time::advance(Duration::from_secs(1)).await;
        let response = post(&mut app, body.clone(), Some(sign(&body))).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        // Eleven pushes, one stored wake-up: the fetch runs once for all of them.
        assert!(woken(&fetch_now).await);
    }
}
