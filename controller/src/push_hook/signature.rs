//! Checks that a push hook comes from the forge: GitHub's and Gitea/Forgejo's HMAC-SHA256 of
//! the body, or GitLab's shared token, all compared in constant time.

use std::path::{Path, PathBuf};

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// GitHub (and Gitea, Forgejo, Gogs, Bitbucket Server): `sha256=<hex of HMAC-SHA256(body)>`.
pub const GITHUB_HEADER: &str = "x-hub-signature-256";
/// Gitea and Forgejo: `<hex of HMAC-SHA256(body)>`.
pub const GITEA_HEADER: &str = "x-gitea-signature";
/// GitLab: the secret token itself (GitLab signs nothing).
pub const GITLAB_HEADER: &str = "x-gitlab-token";

/// The longest secret file read: a forge's secret is a line, not a document.
const MAX_SECRET_BYTES: u64 = 4096;
/// Below this the secret is guessable; GitHub suggests 20+ random characters.
const MIN_SECRET_BYTES: usize = 16;

/// Why the secret file cannot be used. No variant holds any of its content.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Missing, unreadable, not a regular file, or too large.
    #[error("--git-webhook-secret-file {path}: {reason}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why, without content.
        reason: String,
    },
    /// Shorter than [`MIN_SECRET_BYTES`] once the final newline is trimmed.
    #[error(
        "--git-webhook-secret-file {path}: the secret has {len} bytes; use at least {MIN_SECRET_BYTES} random ones (e.g. `openssl rand -hex 32`)"
    )]
    TooShort {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: usize,
    },
}

/// The shared secret of the hook. Its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct HookSecret(Vec<u8>);

impl std::fmt::Debug for HookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HookSecret(..)")
    }
}

impl HookSecret {
    /// The secret `bytes` (tests and callers that already hold it).
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        HookSecret(bytes.into())
    }

    /// Reads the secret from `path` (a docker secret, typically), without its final line
    /// break: `echo secret > file` and the forge's form must agree.
    pub fn read(path: &Path) -> Result<Self, SecretError> {
        let unreadable = |reason: String| SecretError::Unreadable {
            path: path.to_owned(),
            reason,
        };
        // The reader compares the opened descriptor with the canonical path.
        let real = path.canonicalize().map_err(|e| unreadable(e.to_string()))?;
        let mut bytes = crate::spec::files::read_regular(&real, MAX_SECRET_BYTES)
            .map_err(|problem| unreadable(problem.to_string()))?;
        while bytes.last().is_some_and(|b| matches!(b, b'\n' | b'\r')) {
            bytes.pop();
        }
        if bytes.len() < MIN_SECRET_BYTES {
            return Err(SecretError::TooShort {
                path: path.to_owned(),
                len: bytes.len(),
            });
        }
        Ok(HookSecret(bytes))
    }
}

/// Which forge's proof a request carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `X-Hub-Signature-256`.
    GitHub,
    /// `X-Gitea-Signature`.
    Gitea,
    /// `X-Gitlab-Token`.
    GitLab,
}

/// Why a request is refused (401). Nothing here holds the header's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No signature or token header at all.
    #[error(
        "no X-Hub-Signature-256, X-Gitea-Signature or X-Gitlab-Token header: set the hook's secret"
    )]
    Missing,
    /// A header that is not hex of the right length (or not `sha256=`-prefixed for GitHub).
    #[error("malformed {0:?} signature")]
    Malformed(Scheme),
    /// Well formed, but not made with our secret.
    #[error("{0:?} signature does not match the secret")]
    Mismatch(Scheme),
}

/// Checks `body` against the first proof header present, in the order GitHub, Gitea,
/// GitLab: Gitea sends GitHub's header too, and either proves the same.
pub fn verify(secret: &HookSecret, headers: &HeaderMap, body: &[u8]) -> Result<Scheme, Refusal> {
    let value = |name: &str| headers.get(name).map(|v| v.as_bytes());
    if let Some(value) = value(GITHUB_HEADER) {
        let hex = value
            .strip_prefix(b"sha256=")
            .ok_or(Refusal::Malformed(Scheme::GitHub))?;
        return check_hmac(secret, body, hex, Scheme::GitHub);
    }
    if let Some(value) = value(GITEA_HEADER) {
        return check_hmac(secret, body, value, Scheme::Gitea);
    }
    if let Some(value) = value(GITLAB_HEADER) {
        // Constant time in the content; the length of the secret is not hidden (GitLab's
        // token is the secret itself, so its length is all a timing could tell).
        return if bool::from(value.ct_eq(&secret.0)) {
            Ok(Scheme::GitLab)
        } else {
            Err(Refusal::Mismatch(Scheme::GitLab))
        };
    }
    Err(Refusal::Missing)
}

fn check_hmac(
    secret: &HookSecret,
    body: &[u8],
    hex_signature: &[u8],
    scheme: Scheme,
) -> Result<Scheme, Refusal> {
    let mut expected = [0u8; 32];
    hex::decode_to_slice(hex_signature, &mut expected).map_err(|_| Refusal::Malformed(scheme))?;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(&secret.0).expect("HMAC takes a key of any length");
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&expected)
        .map(|()| scheme)
        .map_err(|_| Refusal::Mismatch(scheme))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    /// GitHub's documented test vector (docs.github.com, "Validating webhook deliveries").
    const GITHUB_SECRET: &str = "It's a Secret to Everybody";
    const GITHUB_BODY: &str = "Hello, World!";
    const GITHUB_SIGNATURE: &str =
        "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_str(value).unwrap());
        headers
    }

    fn secret() -> HookSecret {
        HookSecret::new(GITHUB_SECRET)
    }

    #[test]
    fn githubs_documented_vector_is_accepted() {
        let h = headers(GITHUB_HEADER, &format!("sha256={GITHUB_SIGNATURE}"));
        assert_eq!(
            verify(&secret(), &h, GITHUB_BODY.as_bytes()),
            Ok(Scheme::GitHub)
        );
        // Upper-case hex is the same signature.
        let h = headers(
            GITHUB_HEADER,
            &format!("sha256={}", GITHUB_SIGNATURE.to_uppercase()),
        );
        assert_eq!(
            verify(&secret(), &h, GITHUB_BODY.as_bytes()),
            Ok(Scheme::GitHub)
        );
    }

    #[test]
    fn gitea_signs_the_same_hmac_without_a_prefix() {
        let h = headers(GITEA_HEADER, GITHUB_SIGNATURE);
        assert_eq!(
            verify(&secret(), &h, GITHUB_BODY.as_bytes()),
            Ok(Scheme::Gitea)
        );
    }

    #[test]
    fn gitlab_sends_the_token() {
        let h = headers(GITLAB_HEADER, GITHUB_SECRET);
        assert_eq!(verify(&secret(), &h, b"{}"), Ok(Scheme::GitLab));
        let h = headers(GITLAB_HEADER, "It's a Secret to Everybodz");
        assert_eq!(
            verify(&secret(), &h, b"{}"),
            Err(Refusal::Mismatch(Scheme::GitLab))
        );
        let h = headers(GITLAB_HEADER, "It's a Secret");
        assert_eq!(
            verify(&secret(), &h, b"{}"),
            Err(Refusal::Mismatch(Scheme::GitLab))
        );
    }

    #[test]
    fn another_body_or_secret_does_not_match() {
        let h = headers(GITHUB_HEADER, &format!("sha256={GITHUB_SIGNATURE}"));
        assert_eq!(
            verify(&secret(), &h, b"Hello, World?"),
            Err(Refusal::Mismatch(Scheme::GitHub))
        );
        assert_eq!(
            verify(
                &HookSecret::new("another secret!!"),
                &h,
                GITHUB_BODY.as_bytes()
            ),
            Err(Refusal::Mismatch(Scheme::GitHub))
        );
        let h = headers(GITEA_HEADER, GITHUB_SIGNATURE);
        assert_eq!(
            verify(&secret(), &h, b""),
            Err(Refusal::Mismatch(Scheme::Gitea))
        );
    }

    #[test]
    fn malformed_signatures_are_refused() {
        let cases = [
            // Missing prefix, wrong prefix (SHA-1's header format), too short, too long,
            // not hex, empty.
            (GITHUB_HEADER, GITHUB_SIGNATURE.to_owned()),
            (GITHUB_HEADER, format!("sha1={GITHUB_SIGNATURE}")),
            (GITHUB_HEADER, format!("sha256={}", &GITHUB_SIGNATURE[..62])),
            (GITHUB_HEADER, format!("sha256={GITHUB_SIGNATURE}00")),
            (GITHUB_HEADER, format!("sha256={}", "zz".repeat(32))),
            (GITEA_HEADER, String::new()),
            (GITEA_HEADER, GITHUB_SIGNATURE[..10].to_owned()),
        ];
        for (name, value) in cases {
            let result = verify(&secret(), &headers(name, &value), GITHUB_BODY.as_bytes());
            assert!(
                matches!(result, Err(Refusal::Malformed(_))),
                "{name}: {value}: {result:?}"
            );
        }
    }

    #[test]
    fn no_proof_is_refused() {
        assert_eq!(
            verify(&secret(), &HeaderMap::new(), GITHUB_BODY.as_bytes()),
            Err(Refusal::Missing)
        );
    }

    #[test]
    fn the_secret_file_loses_its_line_break_and_must_be_long_enough() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, format!("{GITHUB_SECRET}\n")).unwrap();
        let read = HookSecret::read(&path).unwrap();
        assert_eq!(read.0, GITHUB_SECRET.as_bytes());
        assert_eq!(format!("{read:?}"), "HookSecret(..)");
        std::fs::write(&path, "short\n").unwrap();
        let error = HookSecret::read(&path).unwrap_err().to_string();
        assert!(
            error.contains("5 bytes") && !error.contains("short"),
            "{error}"
        );
        let error = HookSecret::read(&dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("--git-webhook-secret-file"), "{error}");
    }
}
