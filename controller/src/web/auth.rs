//! HTTP basic authentication against the bcrypt hashes of `basic_auth_users`.
//!
//! A bcrypt check costs tens of milliseconds of CPU by design; a Prometheus scraping every
//! 15 s must not pay it every time. A successful check is remembered per user as a SHA-256 of
//! (process key, user, hash, password), compared in constant time, so that the cache holds
//! nothing a reader of memory could replay and a wrong password still costs a full bcrypt.
//! An unknown user is checked against a configured hash too, so that its cost does not tell
//! which user names exist.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

/// Paths that reveal nothing and stay open so that health checks keep working; every other
/// path, including any added later, needs credentials.
pub const OPEN_PATHS: [&str; 2] = ["/healthz", "/readyz"];

/// Paths that prove their caller themselves and so skip basic auth (a forge can not send it):
/// the push hook checks the forge's signature before it does anything.
pub const SELF_AUTHENTICATED_PATHS: [&str; 1] = [crate::push_hook::PATH];

/// The configured users and the remembered successful checks.
pub struct BasicAuth {
    users: BTreeMap<String, String>,
    /// Checked for an unknown user, so that it costs what a known one costs.
    decoy: String,
    /// Random per process: the cached digests are worthless outside it.
    key: [u8; 32],
    verified: Mutex<HashMap<String, [u8; 32]>>,
    /// bcrypt checks at once: wrong passwords sent in a flood take one core, not all.
    bcrypt_slots: Semaphore,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl BasicAuth {
    /// `users`: name → bcrypt hash (checked by the config loader). `None` when empty (no
    /// authentication configured).
    pub fn new(users: BTreeMap<String, String>) -> Option<BasicAuth> {
        let decoy = users.values().next()?.clone();
        let mut key = [0u8; 32];
        // A failure here leaves the key predictable, which only costs the cache its
        // per-process salt; the digests still hold the password only through SHA-256.
        if getrandom_fill(&mut key).is_err() {
            tracing::warn!("no OS randomness for the basic-auth cache key");
        }
        Some(BasicAuth {
            users,
            decoy,
            key,
            verified: Mutex::new(HashMap::new()),
            bcrypt_slots: Semaphore::new(1),
        })
    }

    fn digest(&self, user: &str, hash: &str, password: &[u8]) -> [u8; 32] {
        let mut sha = Sha256::new();
        for part in [&self.key[..], user.as_bytes(), hash.as_bytes(), password] {
            sha.update((part.len() as u64).to_le_bytes());
            sha.update(part);
        }
        sha.finalize().into()
    }

    /// Whether the `Authorization` header holds a configured user's password.
    pub async fn check(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some((user, password)) = authorization.and_then(parse_basic) else {
            return false;
        };
        let (hash, known) = match self.users.get(&user) {
            Some(hash) => (hash.clone(), true),
            None => (self.decoy.clone(), false),
        };
        let digest = self.digest(&user, &hash, &password);
        if known {
            let verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if verified
                .get(&user)
                .is_some_and(|cached| bool::from(cached.ct_eq(&digest)))
            {
                return true;
            }
        }
        let Ok(_slot) = self.bcrypt_slots.acquire().await else {
            return false;
        };
        let matches =
            tokio::task::spawn_blocking(move || bcrypt::verify(&password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
        if known && matches {
            self.verified
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(user, digest);
        }
        known && matches
    }
}

fn getrandom_fill(key: &mut [u8; 32]) -> std::io::Result<()> {
    use std::io::Read as _;
    std::fs::File::open("/dev/urandom")?.read_exact(key)
}

/// `Basic base64(user:password)` → (user, password bytes).
fn parse_basic(value: &HeaderValue) -> Option<(String, Vec<u8>)> {
    let value = value.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

/// Middleware: lets [`OPEN_PATHS`] and [`SELF_AUTHENTICATED_PATHS`] through, and everything else only with credentials
/// (401 with a `WWW-Authenticate: Basic` challenge otherwise).
pub async fn require(State(auth): State<Arc<BasicAuth>>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if OPEN_PATHS.contains(&path)
        || SELF_AUTHENTICATED_PATHS.contains(&path)
        || auth
            .check(request.headers().get(header::AUTHORIZATION))
            .await
    {
        return next.run(request).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            r#"Basic realm="swarm-operator", charset="UTF-8""#,
        )],
        "credentials required\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user: &str, password: &str) -> HeaderValue {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        HeaderValue::from_str(&format!("Basic {encoded}")).unwrap()
    }

    fn auth() -> BasicAuth {
        let hash = bcrypt::hash("s3cret:with colon", 4).unwrap();
        BasicAuth::new(BTreeMap::from([("prometheus".to_owned(), hash)])).unwrap()
    }

    #[tokio::test]
    async fn only_the_right_user_and_password_pass() {
        let auth = auth();
        assert!(
            auth.check(Some(&header("prometheus", "s3cret:with colon")))
                .await
        );
        // Now from the cache, and still exact.
        assert!(
            auth.check(Some(&header("prometheus", "s3cret:with colon")))
                .await
        );
        assert!(
            !auth
                .check(Some(&header("prometheus", "s3cret:with colo")))
                .await
        );
        assert!(!auth.check(Some(&header("prometheus", ""))).await);
        assert!(
            !auth
                .check(Some(&header("nobody", "s3cret:with colon")))
                .await
        );
        assert!(!auth.check(None).await);
        assert!(
            !auth
                .check(Some(&HeaderValue::from_static("Bearer abc")))
                .await
        );
        assert!(
            !auth
                .check(Some(&HeaderValue::from_static("Basic !!!")))
                .await
        );
    }

    #[tokio::test]
    async fn a_cached_success_does_not_let_another_password_in() {
        let auth = auth();
        assert!(
            auth.check(Some(&header("prometheus", "s3cret:with colon")))
                .await
        );
        assert!(!auth.check(Some(&header("prometheus", "wrong"))).await);
        assert!(
            auth.check(Some(&header("prometheus", "s3cret:with colon")))
                .await
        );
    }

    #[tokio::test]
    async fn the_push_hook_skips_basic_auth_and_nothing_else_does() {
        use tower_service::Service as _;
        let ok = || async { "reached" };
        let mut app = axum::Router::new()
            .route(crate::push_hook::PATH, axum::routing::post(ok))
            .route("/hooks/other", axum::routing::post(ok))
            .layer(axum::middleware::from_fn_with_state(
                Arc::new(auth()),
                require,
            ));
        let call = |path: &str| {
            axum::http::Request::post(path)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        let hook = app.call(call(crate::push_hook::PATH)).await.unwrap();
        assert_eq!(hook.status(), StatusCode::OK);
        let other = app.call(call("/hooks/other")).await.unwrap();
        assert_eq!(other.status(), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn no_users_means_no_authentication() {
        assert!(BasicAuth::new(BTreeMap::new()).is_none());
    }
}
