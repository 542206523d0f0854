//! Files that specs point at (env files, config and secret data): resolved relative to the
//! spec file, confined to the spec directory, size-limited, and parsed.

use std::path::{Component, Path, PathBuf};

use super::encrypted::{self, AgeIdentities, DecryptProblem};

/// Swarm's limit on the size of one config or secret (swarmkit's `MaxConfigSize` and
/// `MaxSecretSize`).
pub const MAX_DATA_BYTES: usize = 500 * 1024;

/// Why a referenced file could not be used. The messages never quote file contents, so that
/// they are safe for secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileProblem {
    /// An absolute path: only paths relative to the spec file are allowed.
    #[error("`{path}` is absolute: give a path relative to the spec file, inside its directory")]
    Absolute {
        /// The path as written.
        path: String,
    },
    /// The path leaves the spec directory (through `..` or a symlink).
    #[error(
        "`{path}` is outside the spec directory {}: only files inside it may be read (no `..`, no symlink out of it)",
        dir.display()
    )]
    Outside {
        /// The path as written.
        path: String,
        /// The spec directory.
        dir: PathBuf,
    },
    /// The file does not exist or cannot be read.
    #[error("cannot read `{path}`: {reason}")]
    Unreadable {
        /// The path as written.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// Larger than allowed (swarm's 500 KiB for configs and secrets).
    #[error("`{path}` is over {max} bytes, the limit for this file (swarm configs and secrets may be at most {data} bytes, 500 KiB)", data = MAX_DATA_BYTES)]
    TooLarge {
        /// The path as written.
        path: String,
        /// The limit.
        max: u64,
    },
    /// An `.age` file that cannot be decrypted.
    #[error("cannot decrypt `{path}`: {problem}")]
    Decrypt {
        /// The path as written.
        path: String,
        /// Why.
        problem: DecryptProblem,
    },
    /// An env file line that is not `NAME=value` or a comment. The message names the key
    /// when there is one, never the line's value.
    #[error("`{path}` line {line}, column {column}: {message}")]
    EnvSyntax {
        /// The path as written.
        path: String,
        /// 1-based line in the env file.
        line: usize,
        /// 1-based column (in characters) of the problem.
        column: usize,
        /// What is wrong.
        message: String,
    },
}

/// Resolves `relative` against the directory of `spec_file`, and makes sure the result (with
/// symlinks followed) is inside that directory.
pub fn resolve_inside(spec_file: &Path, relative: &str) -> Result<PathBuf, FileProblem> {
    let dir = spec_file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let written = Path::new(relative);
    if written.is_absolute() {
        return Err(FileProblem::Absolute {
            path: relative.to_owned(),
        });
    }
    let outside = || FileProblem::Outside {
        path: relative.to_owned(),
        dir: dir.to_owned(),
    };
    // Rejected before touching the file system, so that a missing file outside the directory
    // is reported as outside rather than as missing.
    if written.components().any(|c| c == Component::ParentDir) {
        return Err(outside());
    }
    let joined = dir.join(written);
    let unreadable = |e: std::io::Error| FileProblem::Unreadable {
        path: relative.to_owned(),
        reason: e.to_string(),
    };
    let real_dir = dir.canonicalize().map_err(unreadable)?;
    let real = joined.canonicalize().map_err(unreadable)?;
    if !real.starts_with(&real_dir) {
        return Err(outside());
    }
    Ok(real)
}

/// Reads a file found by [`resolve_inside`], refusing files over `max` bytes unread.
pub fn read_limited(spec_file: &Path, relative: &str, max: usize) -> Result<Vec<u8>, FileProblem> {
    let path = resolve_inside(spec_file, relative)?;
    read_regular(&path, max as u64).map_err(|problem| match problem {
        ReadProblem::TooLarge => FileProblem::TooLarge {
            path: relative.to_owned(),
            max: max as u64,
        },
        problem => FileProblem::Unreadable {
            path: relative.to_owned(),
            reason: problem.to_string(),
        },
    })
}

/// Why [`read_regular`] did not read a file. No variant holds the path or any content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadProblem {
    /// The final component is a symlink (checked paths are canonical: one now is a swap).
    #[error("not a regular file (a symlink)")]
    Symlink,
    /// A directory, FIFO, device or socket.
    #[error("not a regular file ({0}): only regular files are read")]
    NotRegular(&'static str),
    /// More bytes than the limit.
    #[error("larger than the limit")]
    TooLarge,
    /// The descriptor opened is not the path that was checked (a directory on the way was
    /// swapped for a symlink in between).
    #[error("the file changed while it was opened")]
    Changed,
    /// Missing, no permission, …
    #[error("{0}")]
    Io(std::io::ErrorKind),
}

/// Reads `path` (canonical, as [`resolve_inside`] returns it) if it is a regular file of at
/// most `max` bytes: the one reader of every file that input names (spec files' `file:` and
/// `envFile`, compose files' sources). The file is opened without following a final symlink
/// and without blocking (a FIFO would otherwise wait for a writer for ever), its type is
/// checked on the open descriptor (not on the path, which could be swapped in between), and
/// the read stops after `max + 1` bytes, whatever the file claims its size is (`/dev/zero`,
/// a file still growing).
pub fn read_regular(path: &Path, max: u64) -> Result<Vec<u8>, ReadProblem> {
    use std::io::Read as _;
    use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => ReadProblem::Symlink,
            _ => ReadProblem::Io(e.kind()),
        })?;
    // Where /proc is mounted, the open descriptor says what was really opened.
    {
        use std::os::fd::AsRawFd as _;
        if let Ok(opened) = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
            && path.is_absolute()
            && opened != path
        {
            return Err(ReadProblem::Changed);
        }
    }
    let meta = file.metadata().map_err(|e| ReadProblem::Io(e.kind()))?;
    let kind = meta.file_type();
    if !kind.is_file() {
        return Err(ReadProblem::NotRegular(if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "not a file"
        }));
    }
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ReadProblem::Io(e.kind()))?;
    if bytes.len() as u64 > max {
        return Err(ReadProblem::TooLarge);
    }
    Ok(bytes)
}

/// Reads a file a spec refers to, at most `max` bytes of content: a `.age` file is read
/// (bounded by its encrypted size) and decrypted in memory with `identities`, so that every
/// use of a file (`file:`, `envFile`) decrypts in this one place and its plaintext never
/// touches disk.
pub fn read_content(
    spec_file: &Path,
    relative: &str,
    max: usize,
    identities: &AgeIdentities,
) -> Result<Vec<u8>, FileProblem> {
    if !encrypted::is_encrypted(relative) {
        return read_limited(spec_file, relative, max);
    }
    let sealed = read_limited(spec_file, relative, encrypted::encrypted_limit(max))?;
    identities
        .decrypt(&sealed, max)
        .map_err(|problem| FileProblem::Decrypt {
            path: relative.to_owned(),
            problem,
        })
}

/// Parses an env file the way the docker CLI does for `docker stack deploy` and `docker run
/// --env-file`: one `NAME=value` per line, the value taken literally (no quotes, no
/// interpolation); `#` comments and blank lines skipped. A bare `NAME` is a located error: the
/// docker CLI takes its value from the *client's* environment, which for an operator is its
/// own (its `DOCKER_HOST`, tokens, whatever its container holds), and a spec must never read
/// it; such a line is also more often a value pasted on its own than a name. Errors give line
/// and column and the key, never the line's value.
pub fn parse_env_file(path: &str, text: &str) -> Result<Vec<(String, String)>, FileProblem> {
    let mut vars = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // Columns count characters of the raw line, 1-based.
        let indent = raw.chars().count() - line.chars().count();
        let problem = |column: usize, message: String| FileProblem::EnvSyntax {
            path: path.to_owned(),
            line: i + 1,
            column: indent + column,
            message,
        };
        let Some((name, value)) = line.split_once('=') else {
            // Without `=` the whole line may be a value pasted on its own: it is not quoted.
            return Err(problem(
                1,
                "a line without `=`: write `NAME=value` (a bare `NAME` would take the \
                 value from the operator's own environment, which specs may not read)"
                    .to_owned(),
            ));
        };
        if name.is_empty() {
            return Err(problem(1, "no variable name before `=`".to_owned()));
        }
        if let Some(at) = name.find(char::is_whitespace) {
            let column = name[..at].chars().count() + 1;
            // The part before `=` is the key (possibly with stray spaces), never the value.
            return Err(problem(
                column,
                format!(
                    "variable name `{}` contains whitespace: write `NAME=value`",
                    name.trim_end()
                ),
            ));
        }
        vars.push((name.to_owned(), value.to_owned()));
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_dir() -> (tempfile::TempDir, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("specs");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/app.env"), "A=1\n").unwrap();
        std::fs::write(root.path().join("outside.env"), "SECRET=1\n").unwrap();
        let spec = dir.join("web.yaml");
        (root, spec)
    }

    #[test]
    fn files_inside_the_spec_directory_are_read() {
        let (_root, spec) = spec_dir();
        assert_eq!(read_limited(&spec, "sub/app.env", 10).unwrap(), b"A=1\n");
        assert_eq!(read_limited(&spec, "./sub/app.env", 10).unwrap(), b"A=1\n");
    }

    #[test]
    fn escapes_are_refused() {
        let (root, spec) = spec_dir();
        let e = read_limited(&spec, "../outside.env", 100).unwrap_err();
        assert!(matches!(e, FileProblem::Outside { .. }), "{e}");
        assert!(e.to_string().contains("outside the spec directory"), "{e}");
        let abs = root.path().join("outside.env");
        let e = read_limited(&spec, abs.to_str().unwrap(), 100).unwrap_err();
        assert!(matches!(e, FileProblem::Absolute { .. }), "{e}");
        std::os::unix::fs::symlink(&abs, spec.parent().unwrap().join("link.env")).unwrap();
        let e = read_limited(&spec, "link.env", 100).unwrap_err();
        assert!(matches!(e, FileProblem::Outside { .. }), "{e}");
        assert!(!e.to_string().contains("SECRET"), "{e}");
    }

    #[test]
    fn missing_and_large_files_are_reported() {
        let (_root, spec) = spec_dir();
        let e = read_limited(&spec, "nope.env", 100).unwrap_err();
        assert!(e.to_string().starts_with("cannot read `nope.env`"), "{e}");
        let e = read_limited(&spec, "sub/app.env", 3).unwrap_err();
        assert_eq!(
            e,
            FileProblem::TooLarge {
                path: "sub/app.env".into(),
                max: 3
            }
        );
    }

    #[test]
    fn fifos_and_devices_are_refused_without_blocking() {
        let (root, spec) = spec_dir();
        let fifo = root.path().join("specs/pipe.env");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        // Opened without O_NONBLOCK this would wait for a writer for ever.
        let e = read_limited(&spec, "pipe.env", 100).unwrap_err();
        assert!(e.to_string().contains("a FIFO"), "{e}");
        assert_eq!(
            read_regular(Path::new("/dev/zero"), 100),
            Err(ReadProblem::NotRegular("a device"))
        );
    }

    #[test]
    fn env_files_follow_the_docker_cli() {
        let text = "# comment\n\nA=1\n  B = x \nC=\"quoted\"\nD=a=b\nE=\n";
        let vars = parse_env_file("app.env", text).unwrap_err();
        assert_eq!(
            vars,
            FileProblem::EnvSyntax {
                path: "app.env".into(),
                line: 4,
                column: 4,
                message: "variable name `B` contains whitespace: write `NAME=value`".into()
            }
        );
        let text = text.replace("  B = x \n", "");
        let vars = parse_env_file("app.env", &text).unwrap();
        let expect = [("A", "1"), ("C", "\"quoted\""), ("D", "a=b"), ("E", "")];
        let expect: Vec<(String, String)> = expect
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(vars, expect);
    }

    /// A bare `NAME` would read the operator's own environment (docker CLI semantics for its
    /// client): refused with its position, or skipped for compose's `.env`, never looked up.
    #[test]
    fn bare_names_never_read_the_environment() {
        // PATH is set in every test process: were it looked up, it would show.
        let text = "A=1\nPATH\n";
        let e = parse_env_file("app.env", text).unwrap_err();
        assert!(
            matches!(
                e,
                FileProblem::EnvSyntax {
                    line: 2,
                    column: 1,
                    ..
                }
            ),
            "{e}"
        );
        assert!(
            e.to_string().starts_with("`app.env` line 2, column 1: "),
            "{e}"
        );
    }

    /// The line of a broken env file may be a pasted secret: the error gives its position only.
    #[test]
    fn syntax_errors_never_quote_the_value() {
        for text in [
            "s3cr3t-pasted alone\n",
            "=s3cr3t-value\n",
            "K EY=s3cr3t-value\n",
        ] {
            let e = parse_env_file("app.env", text).unwrap_err();
            assert!(!e.to_string().contains("s3cr3t"), "{e}");
            assert!(e.to_string().contains("line 1, column"), "{e}");
        }
    }
}
