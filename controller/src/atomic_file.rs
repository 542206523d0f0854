//! Replacing a file atomically and durably: readers (Prometheus, scripts tailing the status)
//! see the old content or the new, never half, and a crash keeps one of the two.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The mode of every file written here: the status file and the file_sd file hold nothing
/// secret (no env values, no secret contents) and are read by other users, Prometheus first.
pub const MODE: u32 = 0o644;

/// Replaces `path` with `bytes` (see [`replace_with`]).
pub fn replace(path: &Path, temp_prefix: &str, bytes: &[u8]) -> std::io::Result<()> {
    replace_with(path, temp_prefix, |out| out.write_all(bytes))
}

/// Replaces `path` with what `write` writes: a temporary file named `<temp_prefix>….tmp` in the
/// same directory (created if missing), given mode [`MODE`], written through a buffer, fsynced,
/// renamed over `path`, then the directory fsynced so the rename itself survives a crash. The
/// temporary name never ends like the target (a watcher of `*.json` must not pick it up).
///
/// Written as it is produced, never whole in memory first: the status of 5,000 services is
/// 5.8 MB of JSON, and building it in a growing buffer on every status pass (8 MB allocated
/// and freed amid long-lived data) left the heap fragmented.
pub fn replace_with(
    path: &Path,
    temp_prefix: &str,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(temp_prefix)
        .suffix(".tmp")
        .tempfile_in(dir)?;
    // tempfile creates 0600; set the mode on the open file (fchmod, which the umask does not
    // narrow) before the rename, so that the target never exists with another mode.
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(MODE))?;
    {
        let mut out = std::io::BufWriter::with_capacity(64 * 1024, tmp.as_file_mut());
        write(&mut out)?;
        out.flush()?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    // The rename is durable only once the directory entry is.
    if let Ok(dir) = std::fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_file_is_world_readable_whatever_mode_it_had() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.json");
        replace(&path, ".status-", b"{}").unwrap();
        assert_eq!(mode(&path), 0o644);
        // A narrower file from before (e.g. an older operator's 0600) is replaced by a 0644 one.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        replace(&path, ".status-", b"{\"a\":1}").unwrap();
        assert_eq!(mode(&path), 0o644);
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"a\":1}");
    }
}
