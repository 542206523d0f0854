//! Files a compose file points at (config and secret `file:`, `env_file:`, `.env`), read only
//! from inside the compose file's directory, only when regular, and never past a size limit.
//!
//! Why confined to the compose file's directory although `docker stack deploy` reads any path:
//! compose files come from other people's repositories, and what the import reads is copied
//! into the spec directory and from there into swarm configs and secrets that the stack's own
//! services mount. A file saying `file: ~/.ssh/id_rsa` (or `../../.ssh/id_rsa`, or a symlink in
//! the repository pointing there) would hand the reader's private files to whoever wrote it.

use std::path::{Component, Path, PathBuf};

/// Swarm's limit on one config or secret (swarmkit's `MaxConfigSize` / `MaxSecretSize`).
pub const MAX_DATA_BYTES: u64 = crate::spec::files::MAX_DATA_BYTES as u64;
/// Limit on one env file (`env_file:`, `.env`): far above any real one.
pub const MAX_ENV_FILE_BYTES: u64 = 1024 * 1024;
/// Limit on one compose file, as for spec files.
pub const MAX_COMPOSE_BYTES: u64 = crate::spec::load::MAX_FILE_BYTES;

/// Why a source file cannot be used. No variant holds the path as written or any content: the
/// path may have been interpolated from the environment, and the error is located by the
/// caller (file:line:column and field) instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceProblem {
    /// An absolute path.
    #[error(
        "an absolute path is not read: copy the file into the compose file's directory and give a relative path"
    )]
    Absolute,
    /// `..` or a symlink leading out of the compose file's directory.
    #[error(
        "the path leads outside the compose file's directory {} (through `..` or a symlink): only files inside it are read",
        dir.display()
    )]
    Outside {
        /// The compose file's directory.
        dir: PathBuf,
    },
    /// Missing, unreadable, …
    #[error("cannot read the file: {0}")]
    Unreadable(String),
    /// A directory, FIFO, device or socket.
    #[error("not a regular file ({0}): only regular files are read")]
    NotRegular(&'static str),
    /// Over the limit.
    #[error("the file is larger than {max} bytes, the limit for {what}")]
    TooLarge {
        /// The limit.
        max: u64,
        /// What the limit is for.
        what: &'static str,
    },
}

/// Resolves `written` against `base_dir` (the compose file's directory) and makes sure the
/// result, with every symlink followed, is inside `base_dir`.
pub fn resolve_inside(base_dir: &Path, written: &str) -> Result<PathBuf, SourceProblem> {
    let path = Path::new(written);
    if path.is_absolute() {
        return Err(SourceProblem::Absolute);
    }
    let outside = || SourceProblem::Outside {
        dir: base_dir.to_owned(),
    };
    // Refused before touching the file system, so that a missing file outside reads as outside.
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(outside());
    }
    let unreadable = |e: std::io::Error| SourceProblem::Unreadable(e.kind().to_string());
    let real_dir = base_dir.canonicalize().map_err(unreadable)?;
    let real = base_dir.join(path).canonicalize().map_err(unreadable)?;
    if !real.starts_with(&real_dir) || real == real_dir {
        return Err(outside());
    }
    Ok(real)
}

/// Reads `path` (canonical: as [`resolve_inside`] or `canonicalize` return it) if it is a
/// regular file of at most `max` bytes, with the spec loader's reader
/// ([`crate::spec::files::read_regular`]: no final symlink, no blocking on a FIFO, the type
/// checked on the open descriptor, the read itself bounded).
pub fn read_bounded(path: &Path, max: u64, what: &'static str) -> Result<Vec<u8>, SourceProblem> {
    use crate::spec::files::{ReadProblem, read_regular};
    read_regular(path, max).map_err(|problem| match problem {
        ReadProblem::Symlink => SourceProblem::NotRegular("a symlink"),
        ReadProblem::NotRegular(kind) => SourceProblem::NotRegular(kind),
        ReadProblem::TooLarge => SourceProblem::TooLarge { max, what },
        ReadProblem::Changed => SourceProblem::Unreadable(problem.to_string()),
        ReadProblem::Io(kind) => SourceProblem::Unreadable(kind.to_string()),
    })
}

/// [`resolve_inside`] then [`read_bounded`].
pub fn read_inside(
    base_dir: &Path,
    written: &str,
    max: u64,
    what: &'static str,
) -> Result<Vec<u8>, SourceProblem> {
    read_bounded(&resolve_inside(base_dir, written)?, max, what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inside_only() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(repo.join("sub")).unwrap();
        std::fs::write(repo.join("sub/a.txt"), "a").unwrap();
        std::fs::write(dir.path().join("private"), "p").unwrap();
        std::os::unix::fs::symlink(dir.path().join("private"), repo.join("link")).unwrap();
        std::os::unix::fs::symlink("sub/a.txt", repo.join("inner")).unwrap();
        let read = |w: &str| read_inside(&repo, w, 10, "test");
        assert_eq!(read("./sub/a.txt"), Ok(b"a".to_vec()));
        assert_eq!(read("inner"), Ok(b"a".to_vec()), "a symlink inside is fine");
        assert_eq!(read("/etc/hostname"), Err(SourceProblem::Absolute));
        assert!(matches!(
            read("../private"),
            Err(SourceProblem::Outside { .. })
        ));
        assert!(matches!(
            read("sub/../../private"),
            Err(SourceProblem::Outside { .. })
        ));
        assert!(matches!(read("link"), Err(SourceProblem::Outside { .. })));
        assert!(matches!(read("."), Err(SourceProblem::Outside { .. })));
        assert_eq!(read("sub"), Err(SourceProblem::NotRegular("a directory")));
        assert!(matches!(read("missing"), Err(SourceProblem::Unreadable(_))));
    }

    #[test]
    fn devices_fifos_and_large_files_are_refused_without_reading_them() {
        assert_eq!(
            read_bounded(Path::new("/dev/zero"), 10, "test"),
            Err(SourceProblem::NotRegular("a device"))
        );
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // Would block for ever without O_NONBLOCK (no writer).
        assert_eq!(
            read_bounded(&fifo, 10, "test"),
            Err(SourceProblem::NotRegular("a FIFO"))
        );
        let big = dir.path().join("big");
        std::fs::write(&big, [b'x'; 11]).unwrap();
        assert_eq!(
            read_bounded(&big, 10, "test"),
            Err(SourceProblem::TooLarge {
                max: 10,
                what: "test"
            })
        );
        std::fs::write(&big, [b'x'; 10]).unwrap();
        assert_eq!(read_bounded(&big, 10, "test").map(|b| b.len()), Ok(10));
        // A directory on the resolved path that is (now) a symlink: what opens is elsewhere.
        let real = dir.path().canonicalize().unwrap();
        std::fs::create_dir(real.join("sub")).unwrap();
        std::fs::write(real.join("sub/f"), "f").unwrap();
        std::os::unix::fs::symlink(real.join("sub"), real.join("swapped")).unwrap();
        assert_eq!(
            read_bounded(&real.join("sub/f"), 10, "test"),
            Ok(b"f".to_vec())
        );
        assert!(matches!(
            read_bounded(&real.join("swapped/f"), 10, "test"),
            Err(SourceProblem::Unreadable(_))
        ));
        std::os::unix::fs::symlink(&big, dir.path().join("l")).unwrap();
        assert_eq!(
            read_bounded(&dir.path().join("l"), 10, "test"),
            Err(SourceProblem::NotRegular("a symlink"))
        );
    }
}
