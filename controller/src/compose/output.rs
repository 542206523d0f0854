//! The output directory of an import (`--out`): every file lands inside it, built from checked
//! names only, never through a symlink, each written atomically.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// Longest file name most file systems accept.
const MAX_COMPONENT_BYTES: usize = 255;

/// Why the output directory cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// `--out` itself, or something inside it on the way to a file, is a symlink.
    #[error(
        "{} is a symlink: the import writes only into real directories (give --out a plain directory, and remove symlinks inside it)",
        path.display()
    )]
    Symlink {
        /// The symlink.
        path: PathBuf,
    },
    /// Something that must be a directory is not, or a file's place holds a directory.
    #[error("{} is {found}: expected {expected}", path.display())]
    WrongType {
        /// The path.
        path: PathBuf,
        /// What is there.
        found: &'static str,
        /// What should be.
        expected: &'static str,
    },
    /// A relative path with an empty, `.`, `..` or otherwise unusable part: a bug of the
    /// importer (names are checked before), refused rather than written.
    #[error("refusing to write `{}`: its part #{index} is not a plain file name", relative.escape_debug())]
    BadName {
        /// The relative path.
        relative: String,
        /// 1-based index of the bad part.
        index: usize,
    },
    /// The file's directory, with symlinks resolved, is not inside `--out`.
    #[error("{} resolves outside the output directory {}", path.display(), out.display())]
    Escapes {
        /// The directory.
        path: PathBuf,
        /// The output directory.
        out: PathBuf,
    },
    /// The file system refused.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OutputError + '_ {
    move |source| OutputError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Whether `part` can be one part of a written path: not empty, not `.` or `..`, no `/`, no NUL,
/// and not longer than a file name may be.
pub fn plain_file_name(part: &str) -> bool {
    !part.is_empty()
        && part != "."
        && part != ".."
        && !part.contains(['/', '\0'])
        && part.len() <= MAX_COMPONENT_BYTES
}

/// The output directory, checked: a real directory (not a symlink), known by its canonical path.
#[derive(Debug)]
pub struct OutDir {
    /// As given, for messages.
    given: PathBuf,
    /// Canonical.
    root: PathBuf,
}

impl OutDir {
    /// Creates `path` if missing (its parents too: they are the user's choice), and refuses it
    /// if it is a symlink or not a directory.
    pub fn prepare(path: &Path) -> Result<OutDir, OutputError> {
        // Without a trailing `/`: `link/` would be looked at through the link.
        let path: PathBuf = path.components().collect();
        let path = path.as_path();
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(OutputError::Symlink {
                    path: path.to_owned(),
                });
            }
            Ok(m) if !m.is_dir() => {
                return Err(OutputError::WrongType {
                    path: path.to_owned(),
                    found: "not a directory",
                    expected: "a directory",
                });
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(path).map_err(io(path))?;
            }
            Err(e) => return Err(io(path)(e)),
        }
        let root = path.canonicalize().map_err(io(path))?;
        Ok(OutDir {
            given: path.to_owned(),
            root,
        })
    }

    /// The directory as given.
    pub fn path(&self) -> &Path {
        &self.given
    }

    /// Writes `bytes` to `relative` (parts separated by `/`, each a [`plain_file_name`]),
    /// creating its directories. Every existing part on the way must be a real directory and
    /// the file's place must not be a symlink. The content goes to a new temporary file in the
    /// same directory (created exclusively, mode 0600 from the start, so a secret is never
    /// readable by others even for a moment), then gets `mode` and is renamed over the target:
    /// readers see the old file or the new, and a rename replaces a directory entry without
    /// following it.
    pub fn write(&self, relative: &str, bytes: &[u8], mode: u32) -> Result<PathBuf, OutputError> {
        let parts: Vec<&str> = relative.split('/').collect();
        if let Some(i) = parts.iter().position(|p| !plain_file_name(p)) {
            return Err(OutputError::BadName {
                relative: relative.to_owned(),
                index: i + 1,
            });
        }
        let (file, dirs) = parts.split_last().ok_or_else(|| OutputError::BadName {
            relative: relative.to_owned(),
            index: 1,
        })?;
        let mut dir = self.root.clone();
        for part in dirs {
            dir.push(part);
            self.ensure_dir(&dir)?;
        }
        // With every part checked this cannot fail; checked anyway, on the resolved path, in
        // case something was swapped for a symlink meanwhile.
        let real = dir.canonicalize().map_err(io(&dir))?;
        if !real.starts_with(&self.root) {
            return Err(OutputError::Escapes {
                path: dir,
                out: self.given.clone(),
            });
        }
        let target = real.join(file);
        match std::fs::symlink_metadata(&target) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(OutputError::Symlink { path: target });
            }
            Ok(m) if m.is_dir() => {
                return Err(OutputError::WrongType {
                    path: target,
                    found: "a directory",
                    expected: "a file (or nothing)",
                });
            }
            _ => {}
        }
        let mut tmp = tempfile::Builder::new()
            .prefix(".import-")
            .suffix(".tmp")
            .permissions(std::fs::Permissions::from_mode(0o600))
            .tempfile_in(&real)
            .map_err(io(&real))?;
        tmp.write_all(bytes).map_err(io(&target))?;
        tmp.as_file().sync_all().map_err(io(&target))?;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(io(&target))?;
        tmp.persist(&target).map_err(|e| io(&target)(e.error))?;
        Ok(target)
    }

    /// Makes sure `dir` (inside the root) is a real directory, creating it if missing.
    fn ensure_dir(&self, dir: &Path) -> Result<(), OutputError> {
        let check = |m: std::fs::Metadata| {
            if m.file_type().is_symlink() {
                Err(OutputError::Symlink {
                    path: dir.to_owned(),
                })
            } else if !m.is_dir() {
                Err(OutputError::WrongType {
                    path: dir.to_owned(),
                    found: "not a directory",
                    expected: "a directory",
                })
            } else {
                Ok(())
            }
        };
        match std::fs::symlink_metadata(dir) {
            Ok(m) => check(m),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                match std::fs::DirBuilder::new().mode(0o755).create(dir) {
                    Ok(()) => Ok(()),
                    // Created by someone else meanwhile: check what it is.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        check(std::fs::symlink_metadata(dir).map_err(io(dir))?)
                    }
                    Err(e) => Err(io(dir)(e)),
                }
            }
            Err(e) => Err(io(dir)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_inside_with_modes() {
        let sandbox = tempfile::tempdir().unwrap();
        let out = OutDir::prepare(&sandbox.path().join("out/specs")).unwrap();
        let secret = out.write("files/secrets/s/key", b"k", 0o600).unwrap();
        let spec = out.write("secret.s.yaml", b"y", 0o644).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&secret), mode(&spec)), (0o600, 0o644));
        assert_eq!(std::fs::read(&secret).unwrap(), b"k");
        out.write("secret.s.yaml", b"z", 0o644).unwrap();
        assert_eq!(std::fs::read(&spec).unwrap(), b"z", "replaced");
        let names: Vec<_> = std::fs::read_dir(sandbox.path().join("out/specs"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "no temporary file left: {names:?}");
    }

    #[test]
    fn refuses_traversal_and_symlinks() {
        let sandbox = tempfile::tempdir().unwrap();
        let victim = sandbox.path().join("victim");
        std::fs::create_dir(&victim).unwrap();
        let out_path = sandbox.path().join("out");
        let out = OutDir::prepare(&out_path).unwrap();
        for bad in [
            "../victim/x",
            "a/../../victim/x",
            "/etc/x",
            "a//b",
            "",
            "a/.",
            "x\0y",
        ] {
            assert!(
                matches!(
                    out.write(bad, b"x", 0o644),
                    Err(OutputError::BadName { .. })
                ),
                "{bad:?}"
            );
        }
        std::os::unix::fs::symlink(&victim, out_path.join("files")).unwrap();
        assert!(matches!(
            out.write("files/x", b"x", 0o644),
            Err(OutputError::Symlink { .. })
        ));
        std::os::unix::fs::symlink(victim.join("t"), out_path.join("t.yaml")).unwrap();
        assert!(matches!(
            out.write("t.yaml", b"x", 0o644),
            Err(OutputError::Symlink { .. })
        ));
        assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 0);
        let link = sandbox.path().join("link");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        assert!(matches!(
            OutDir::prepare(&link),
            Err(OutputError::Symlink { .. })
        ));
        let mut with_slash = link.into_os_string();
        with_slash.push("/");
        assert!(matches!(
            OutDir::prepare(Path::new(&with_slash)),
            Err(OutputError::Symlink { .. })
        ));
    }
}
