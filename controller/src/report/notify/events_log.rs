//! The events log file: JSON lines, readable by the operator's user only, rotated by size.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;
use tracing::{info, warn};

/// The events log's mode: event messages describe the swarm's objects and their failures, which
/// is no business of the host's other users.
pub const MODE: u32 = 0o600;

/// `--events-log-max-size` by default.
pub const DEFAULT_MAX_SIZE: u64 = 10 * 1024 * 1024;

/// Rotated files kept: `FILE.1` (the newest) to `FILE.3`.
pub const KEEP: u32 = 3;

/// An open events log.
#[derive(Debug)]
pub struct EventsLog {
    path: PathBuf,
    file: tokio::fs::File,
    /// Bytes in the current file.
    size: u64,
    max_size: u64,
}

impl EventsLog {
    /// Opens `path` for appending: created with mode 0600; an existing file readable by others
    /// is narrowed to 0600 (and that is logged). Rotates to `path.1` once a line would take it
    /// past `max_size`.
    pub async fn open(path: &Path, max_size: u64) -> std::io::Result<Self> {
        let file = open_private(path).await?;
        let size = file.metadata().await?.len();
        Ok(EventsLog {
            path: path.to_owned(),
            file,
            size,
            max_size,
        })
    }

    /// Appends one line (which ends in `\n`), rotating first if the file would grow past the
    /// limit. A failed rotation is logged and the line still appended to the current file:
    /// losing events is worse than a file that grows.
    pub async fn append(&mut self, line: &[u8]) -> std::io::Result<()> {
        let grown = self.size.saturating_add(line.len() as u64);
        if self.size > 0 && grown > self.max_size {
            match self.rotate().await {
                Ok(()) => info!(path = %self.path.display(), kept = KEEP, "events log rotated"),
                Err(error) => {
                    warn!(path = %self.path.display(), %error,
                          "rotating the events log failed; appending to it as it is");
                }
            }
        }
        self.file.write_all(line).await?;
        self.file.flush().await?;
        self.size = self.size.saturating_add(line.len() as u64);
        Ok(())
    }

    /// `FILE.2` → `FILE.3` (the old `.3` goes), `FILE.1` → `FILE.2`, `FILE` → `FILE.1`, then a
    /// new empty `FILE`.
    async fn rotate(&mut self) -> std::io::Result<()> {
        self.file.sync_all().await?;
        for n in (1..KEEP).rev() {
            match tokio::fs::rename(numbered(&self.path, n), numbered(&self.path, n + 1)).await {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
                _ => {}
            }
        }
        tokio::fs::rename(&self.path, numbered(&self.path, 1)).await?;
        self.file = open_private(&self.path).await?;
        self.size = 0;
        Ok(())
    }
}

/// `FILE.n`.
pub fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

async fn open_private(path: &Path) -> std::io::Result<tokio::fs::File> {
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(MODE)
        .open(path)
        .await?;
    // `mode` applies only to a file this call creates.
    let mode = file.metadata().await?.permissions().mode() & 0o777;
    if mode & !MODE != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(MODE))
            .await?;
        warn!(path = %path.display(), was = format!("{mode:o}"),
              "the events log was readable by other users; its mode is now 600");
    }
    Ok(file)
}

/// Parses `--events-log-max-size`: bytes, or a number with `K`, `M`, `G` (powers of 1024,
/// optionally written `KiB`, `MiB`, `GiB`), e.g. `10M`. Zero is refused.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size; give bytes or e.g. 512K, 10M, 1G"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        other => {
            return Err(format!(
                "unknown size unit `{other}`; use K, M or G (powers of 1024)"
            ));
        }
    };
    match number.checked_mul(1 << shift) {
        Some(0) => Err("the size must be more than 0".to_owned()),
        Some(bytes) => Ok(bytes),
        None => Err(format!("`{text}` is too large")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn the_log_is_private_even_if_it_existed_readable_by_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        EventsLog::open(&path, 100).await.unwrap();
        assert_eq!(mode(&path), 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut log = EventsLog::open(&path, 100).await.unwrap();
        assert_eq!(mode(&path), 0o600, "narrowed when opened");
        log.append(b"{}\n").await.unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"{}\n",
            "appended, not truncated"
        );
    }

    #[tokio::test]
    async fn the_log_rotates_at_its_size_and_keeps_three_private_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        // 9-byte lines, 25 bytes a file: two lines per file.
        let mut log = EventsLog::open(&path, 25).await.unwrap();
        for i in 0..11 {
            log.append(format!("event {i:02}\n").as_bytes())
                .await
                .unwrap();
        }
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(path.clone()), "event 10\n");
        assert_eq!(read(numbered(&path, 1)), "event 08\nevent 09\n");
        assert_eq!(read(numbered(&path, 2)), "event 06\nevent 07\n");
        assert_eq!(read(numbered(&path, 3)), "event 04\nevent 05\n");
        assert!(!numbered(&path, 4).exists(), "only three are kept");
        for file in [path.clone(), numbered(&path, 1), numbered(&path, 3)] {
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
        // An existing log's size counts: reopened, the next line rotates at once.
        let mut log = EventsLog::open(&path, 12).await.unwrap();
        log.append(b"event 11\n").await.unwrap();
        assert_eq!(read(path.clone()), "event 11\n");
        assert_eq!(read(numbered(&path, 1)), "event 10\n");
    }

    #[test]
    fn sizes_parse_in_powers_of_1024_and_zero_is_refused() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("10M"), Ok(10 << 20));
        assert_eq!(parse_size("10MiB"), Ok(10 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert!(parse_size("0").unwrap_err().contains("more than 0"));
        assert!(parse_size("10X").unwrap_err().contains("unknown size unit"));
        assert!(parse_size("M").unwrap_err().contains("not a size"));
        assert!(
            parse_size("99999999999999G")
                .unwrap_err()
                .contains("too large")
        );
    }
}
