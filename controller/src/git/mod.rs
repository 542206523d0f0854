//! `run --source git`: the desired state is the tree of one commit of a git repository, fetched
//! into a bare cache, checked out whole into its own directory and switched to atomically.
//!
//! * [`fetch`]: the bare cache (`--git-cache`) and one bounded fetch of the ref; how a fetch
//!   reaches and authenticates to the remote plugs in through [`fetch::Access`].
//! * [`checkout`]: one commit's tree (under `--git-path`) written to `trees/<sha>`, checked
//!   entry by entry, and the `current` symlink switched to it.
//! * [`source`]: the polling loop (poll, fetch now on request, back off while the remote
//!   fails) and the handle the operator reads commits and the source's state from.
//! * [`remote`]: the remote's URL as it may be shown (no credentials).
//! * [`credentials`]: what a fetch authenticates with (`--git-*-file` flags): a token, an
//!   ssh key and known_hosts, a CA file.

pub mod checkout;
pub mod credentials;
mod error;
pub mod fetch;
pub mod remote;
pub mod source;

pub use checkout::Checkout;
pub use error::GitError;
pub use fetch::{Access, Revision};
pub use remote::RemoteUrl;
pub use source::{FetchTrigger, GitConfig, GitSource, RefMove, SourceHandle, SourceUpdate};
