//! Running external programs (docker, apt-get, cargo, debootstrap) without a shell, with readable errors.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Write;
use std::process::{Command, Stdio};

/// Why an external command did not do its job.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    /// The program could not be started at all (not installed, not executable).
    #[error("could not start `{cmd}`: {source}")]
    Spawn {
        /// The command line, for the message.
        cmd: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The program ran and exited unsuccessfully.
    #[error("`{cmd}` failed ({status}){}", if stderr.is_empty() { String::new() } else { format!(": {stderr}") })]
    Failed {
        /// The command line, for the message.
        cmd: String,
        /// Its exit status.
        status: String,
        /// The tail of what it printed on stderr.
        stderr: String,
    },
    /// Feeding its standard input failed.
    #[error("writing to `{cmd}`: {source}")]
    Stdin {
        /// The command line, for the message.
        cmd: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A command line being built: `Cmd::new("docker").args(["ps"]).output()`.
#[derive(Debug)]
pub struct Cmd {
    inner: Command,
    display: String,
    stdin: Option<Stdin>,
}

#[derive(Debug)]
enum Stdin {
    Bytes(Vec<u8>),
    File(File),
}

impl Cmd {
    /// Start a command line for `program`.
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        let display = program.as_ref().to_string_lossy().into_owned();
        Cmd {
            inner: Command::new(program),
            display,
            stdin: None,
        }
    }

    /// Shorthand for `docker ARGS...`.
    pub fn docker<I, S>(args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Cmd::new("docker").args(args)
    }

    /// Append one argument.
    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Self {
        self.display.push(' ');
        self.display.push_str(&a.as_ref().to_string_lossy());
        self.inner.arg(a);
        self
    }

    /// Append arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        for a in args {
            self = self.arg(a);
        }
        self
    }

    /// Set an environment variable.
    pub fn env(mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> Self {
        self.inner.env(k, v);
        self
    }

    /// Run in `dir`.
    pub fn current_dir(mut self, dir: impl AsRef<std::path::Path>) -> Self {
        self.inner.current_dir(dir);
        self
    }

    /// Feed these bytes on standard input.
    pub fn stdin_bytes(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(Stdin::Bytes(bytes.into()));
        self
    }

    /// Feed this file on standard input.
    pub fn stdin_file(mut self, f: File) -> Self {
        self.stdin = Some(Stdin::File(f));
        self
    }

    /// The command line as text (for messages).
    pub fn display(&self) -> &str {
        &self.display
    }

    /// Run with stdout captured; stderr captured for the error message. Returns trimmed stdout.
    pub fn output(self) -> Result<String, CmdError> {
        let done = self.capture()?;
        if done.status.success() {
            Ok(done.stdout.trim_end().to_string())
        } else {
            Err(CmdError::Failed {
                cmd: done.display,
                status: done.status.to_string(),
                stderr: tail(&done.stderr),
            })
        }
    }

    /// Run with stdout and stderr captured; return both whatever the exit status (for tests that
    /// assert on failures). The bool is success.
    pub fn output_any(self) -> Result<(bool, String, String), CmdError> {
        let done = self.capture()?;
        Ok((done.status.success(), done.stdout, done.stderr))
    }

    /// Run with stdout and stderr captured; return the exit code (`None` when a signal ended
    /// it) and both outputs whatever the code (for programs whose exit codes mean results).
    pub fn output_code(self) -> Result<(Option<i32>, String, String), CmdError> {
        let done = self.capture()?;
        Ok((done.status.code(), done.stdout, done.stderr))
    }

    /// Run quietly; true if it exited 0 (false also if it could not start).
    pub fn succeeds(self) -> bool {
        self.capture().is_ok_and(|done| done.status.success())
    }

    /// Run with the terminal's stdout/stderr (for long builds whose progress a person watches).
    pub fn run(mut self) -> Result<(), CmdError> {
        let stdin = self.stdin.take();
        let status =
            match stdin {
                None => self.inner.stdin(Stdio::null()).status(),
                Some(Stdin::File(f)) => self.inner.stdin(f).status(),
                Some(Stdin::Bytes(b)) => {
                    let mut child = self.inner.stdin(Stdio::piped()).spawn().map_err(|source| {
                        CmdError::Spawn {
                            cmd: self.display.clone(),
                            source,
                        }
                    })?;
                    if let Some(mut si) = child.stdin.take() {
                        si.write_all(&b).map_err(|source| CmdError::Stdin {
                            cmd: self.display.clone(),
                            source,
                        })?;
                    }
                    child.wait()
                }
            }
            .map_err(|source| CmdError::Spawn {
                cmd: self.display.clone(),
                source,
            })?;
        if status.success() {
            Ok(())
        } else {
            Err(CmdError::Failed {
                cmd: self.display,
                status: status.to_string(),
                stderr: String::new(),
            })
        }
    }

    fn capture(mut self) -> Result<Captured, CmdError> {
        self.inner.stdout(Stdio::piped()).stderr(Stdio::piped());
        let display = self.display.clone();
        let spawn_err = |source| CmdError::Spawn {
            cmd: display.clone(),
            source,
        };
        let out = match self.stdin.take() {
            None => self
                .inner
                .stdin(Stdio::null())
                .output()
                .map_err(spawn_err)?,
            Some(Stdin::File(f)) => self.inner.stdin(f).output().map_err(spawn_err)?,
            Some(Stdin::Bytes(b)) => {
                let mut child = self
                    .inner
                    .stdin(Stdio::piped())
                    .spawn()
                    .map_err(spawn_err)?;
                let mut si = child.stdin.take().expect("stdin was piped");
                // Write from another thread: a child that fills its stdout pipe before reading
                // all of stdin would otherwise deadlock against us.
                let writer = std::thread::spawn(move || si.write_all(&b));
                let out = child.wait_with_output().map_err(spawn_err)?;
                writer
                    .join()
                    .unwrap_or(Ok(()))
                    .map_err(|source| CmdError::Stdin {
                        cmd: self.display.clone(),
                        source,
                    })?;
                out
            }
        };
        Ok(Captured {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            display: self.display,
        })
    }
}

/// A finished program's exit status and output, with its command line for messages.
struct Captured {
    status: std::process::ExitStatus,
    stdout: String,
    stderr: String,
    display: String,
}

/// The last few lines of a program's stderr: enough to see why, short enough to read.
fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.trim_end().lines().collect();
    lines[lines.len().saturating_sub(8)..].join("\n")
}
