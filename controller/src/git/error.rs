//! What can go wrong fetching and checking out: every message names the remote without
//! credentials and the commit and path it is about.

use std::path::PathBuf;
use std::time::Duration;

/// Errors of the git source. None quotes a credential: the remote is a [`RemoteUrl`](super::RemoteUrl)'s display, and the
/// library's messages pass through [`RemoteUrl::scrub`](super::RemoteUrl::scrub) before they are kept.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GitError {
    /// `--git-url` is not a git URL.
    #[error("--git-url: {reason}")]
    InvalidUrl {
        /// Why (without the URL, which may hold a password).
        reason: String,
    },
    /// `--git-ref` is not a valid ref name.
    #[error("--git-ref {reference:?}: {reason}")]
    InvalidRef {
        /// The ref as given.
        reference: String,
        /// Why.
        reason: String,
    },
    /// `--git-path` is absolute or leaves the repository.
    #[error("--git-path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// Why.
        reason: String,
    },
    /// The cache directory could not be created, opened or written.
    #[error("git cache {}: {message}", path.display())]
    Cache {
        /// The directory or file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// The remote could not be reached, refused us, or sent something unusable.
    #[error("fetching {reference} from {url}: {message}")]
    Fetch {
        /// The remote, without credentials (`RemoteUrl`'s display).
        url: String,
        /// The ref.
        reference: String,
        /// The library's message, scrubbed.
        message: String,
    },
    /// The fetch did not finish within its deadline.
    #[error("fetching {reference} from {url}: no answer within {after:?}")]
    TimedOut {
        /// The remote, without credentials (`RemoteUrl`'s display).
        url: String,
        /// The ref.
        reference: String,
        /// The deadline.
        after: Duration,
    },
    /// The remote has no such ref (and the cache never had it either).
    #[error("{url} has no ref {reference}")]
    RefNotFound {
        /// The remote, without credentials (`RemoteUrl`'s display).
        url: String,
        /// The ref.
        reference: String,
    },
    /// An object of the cache could not be read.
    #[error("reading commit {commit} from the git cache: {message}")]
    Object {
        /// The commit being read (40 hex).
        commit: String,
        /// What failed.
        message: String,
    },
    /// A commit whose tree is not checked out: a hostile or oversized entry, a symlink or
    /// submodule, or no `--git-path` in it. The last good commit stays applied.
    #[error("commit {commit}: {path}: {reason}")]
    Refused {
        /// The commit (40 hex).
        commit: String,
        /// The entry's path in the repository.
        path: String,
        /// Why it is refused.
        reason: String,
    },
    /// Writing the checkout failed (disk full, permissions).
    #[error("checking out commit {commit} into {}: {message}", path.display())]
    Checkout {
        /// The commit (40 hex).
        commit: String,
        /// The file or directory being written.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}
