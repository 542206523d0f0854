//! Repository chores as a library, so the e2e tests reuse the same cluster, image and deploy code as `cargo xtask`.

pub mod apt;
pub mod cluster;
pub mod cmd;
pub mod demo;
pub mod docker;
pub mod git_server;
pub mod images;
pub mod interrupt;
pub mod operator;
pub mod operator_cli;
pub mod state;
pub mod swarm;
pub mod testrun;
pub mod timing;

use std::path::PathBuf;

/// The workspace root (xtask lives one level below it).
pub fn repo_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// Whether we run under CI (`CI=true`): missing prerequisites are failures there, never skips.
pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}
