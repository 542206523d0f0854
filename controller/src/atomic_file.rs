//! Replacing a file atomically and durably: readers (Prometheus, scripts tailing the status)
//! see the old content or the new, never half, and a crash keeps one of the two.

use std::io::Write;
use std::path::Path;

/// Replaces `path` with `bytes`: a temporary file named `<temp_prefix>….tmp` in the same
/// directory (created if missing), fsynced, renamed over `path`, then the directory fsynced so
/// the rename itself survives a crash. The temporary name never ends like the target (a
/// watcher of `*.json` must not pick it up).
pub fn replace(path: &Path, temp_prefix: &str, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(temp_prefix)
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    // The rename is durable only once the directory entry is.
    if let Ok(dir) = std::fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}
