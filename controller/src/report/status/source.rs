//! The status file's `source`: where the desired state comes from and which commit of it is
//! applied (`run --source git`).

use serde::{Deserialize, Serialize};

/// The kinds of source the status describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SourceKind {
    /// A git repository (`--source git`).
    Git,
}

/// The top-level `source` of the status file. The URL never carries credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceStatus {
    /// `git`.
    pub kind: SourceKind,
    /// The remote, without user name or password for http(s), without password for ssh.
    pub url: String,
    /// The ref followed (`refs/heads/main`).
    #[serde(rename = "ref")]
    pub reference: String,
    /// The directory of the repository the specs are read from (`--git-path`; `/`: the root).
    pub path: String,
    /// The commit whose tree is applied (40 hex); `null` until one was checked out. The
    /// status's `errors` are those of this commit's specs.
    pub revision: Option<String>,
    /// When the remote last answered a fetch (RFC 3339, UTC).
    pub fetched_at: Option<String>,
    /// Why the last fetch or checkout failed (the last good commit stays applied); `null`
    /// when it succeeded.
    pub error: Option<String>,
}
