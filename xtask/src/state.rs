//! The last cluster `cargo xtask` left running, remembered in target/xtask/cluster so `cluster down` finds it.

use std::path::{Path, PathBuf};

fn file(root: &Path) -> PathBuf {
    root.join("target").join("xtask").join("cluster")
}

/// Remember a kept cluster's prefix.
pub fn remember(root: &Path, prefix: &str) {
    let f = file(root);
    if let Some(dir) = f.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = std::fs::write(f, prefix);
}

/// The remembered prefix, if any.
pub fn recall(root: &Path) -> Option<String> {
    std::fs::read_to_string(file(root))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Forget it (after teardown).
pub fn forget(root: &Path) {
    let _ = std::fs::remove_file(file(root));
}
