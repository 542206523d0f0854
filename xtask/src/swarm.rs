//! A swarm manager driven through the docker CLI: the local engine, or a node of the docker-in-docker cluster.

use std::path::Path;
use std::time::Duration;

use crate::cluster::{ClusterError, wait_for};
use crate::cmd::{Cmd, CmdError};

/// Where commands for the swarm go.
#[derive(Debug, Clone)]
pub enum Manager {
    /// The local engine (a single-node swarm).
    Local,
    /// A dind node, by container name.
    Node(String),
}

/// One service as `docker service ls` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRow {
    /// Service name.
    pub name: String,
    /// Running tasks.
    pub running: u64,
    /// Desired tasks.
    pub desired: u64,
}

impl Manager {
    /// `docker ARGS` against this manager's engine.
    pub fn docker<I, S>(&self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        match self {
            Manager::Local => Cmd::docker(args),
            Manager::Node(n) => Cmd::docker(["exec", "-i", n.as_str(), "docker"]).args(args),
        }
    }

    /// A human name for messages.
    pub fn describe(&self) -> String {
        match self {
            Manager::Local => "the local engine".into(),
            Manager::Node(n) => format!("node {n}"),
        }
    }

    /// Read a file inside a named volume on the manager (`None` if it does not exist yet).
    pub fn read_volume_file(&self, volume: &str, file: &str) -> Result<Option<String>, CmdError> {
        match self {
            Manager::Local => {
                let mount =
                    Cmd::docker(["volume", "inspect", "--format", "{{.Mountpoint}}", volume])
                        .output();
                let Ok(mount) = mount else { return Ok(None) };
                Ok(std::fs::read_to_string(Path::new(&mount).join(file)).ok())
            }
            Manager::Node(n) => {
                let path = format!("/var/lib/docker/volumes/{volume}/_data/{file}");
                let (ok, out, _) = Cmd::docker(["exec", n.as_str(), "cat", &path]).output_any()?;
                Ok(ok.then_some(out))
            }
        }
    }

    /// Copy the `*.yaml`/`*.yml` files of `local_dir` into `dest` on the manager (a host path for
    /// the local engine, a path inside the node otherwise), replacing what was there.
    pub fn put_specs(&self, local_dir: &Path, dest: &str) -> Result<(), CmdError> {
        let io_err = |source| CmdError::Spawn {
            cmd: format!("copy specs from {}", local_dir.display()),
            source,
        };
        let mut files: Vec<_> = std::fs::read_dir(local_dir)
            .map_err(io_err)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            .collect();
        files.sort();
        match self {
            Manager::Local => {
                std::fs::create_dir_all(dest).map_err(io_err)?;
                for f in files {
                    std::fs::copy(&f, Path::new(dest).join(f.file_name().unwrap_or_default()))
                        .map_err(io_err)?;
                }
            }
            Manager::Node(n) => {
                Cmd::docker(["exec", n.as_str(), "rm", "-rf", dest]).output()?;
                Cmd::docker(["exec", n.as_str(), "mkdir", "-p", dest]).output()?;
                for f in files {
                    let name = f
                        .file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned();
                    Cmd::docker(["cp"])
                        .arg(&f)
                        .arg(format!("{n}:{dest}/{name}"))
                        .output()?;
                }
            }
        }
        Ok(())
    }

    /// Write one file at `path` on the manager.
    pub fn write_file(&self, path: &str, contents: &str) -> Result<(), CmdError> {
        match self {
            Manager::Local => std::fs::write(path, contents).map_err(|source| CmdError::Spawn {
                cmd: format!("write {path}"),
                source,
            }),
            Manager::Node(n) => {
                // `tee` from coreutils (in the node image): no shell needed.
                Cmd::docker(["exec", "-i", n.as_str(), "tee", path])
                    .stdin_bytes(contents)
                    .output()
                    .map(|_| ())
            }
        }
    }

    /// Remove one file on the manager (no error if absent).
    pub fn remove_file(&self, path: &str) -> Result<(), CmdError> {
        match self {
            Manager::Local => match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(CmdError::Spawn {
                    cmd: format!("rm {path}"),
                    source: e,
                }),
                _ => Ok(()),
            },
            Manager::Node(n) => Cmd::docker(["exec", n.as_str(), "rm", "-f", path])
                .output()
                .map(|_| ()),
        }
    }

    /// All services with running/desired counts.
    pub fn services(&self) -> Result<Vec<ServiceRow>, CmdError> {
        let out = self
            .docker(["service", "ls", "--format", "{{.Name}} {{.Replicas}}"])
            .output()?;
        Ok(out.lines().filter_map(parse_service_row).collect())
    }

    /// Wait until each named service exists and runs all desired replicas (at least `min` each).
    pub fn wait_converged(
        &self,
        names: &[&str],
        min: u64,
        limit: Duration,
    ) -> Result<(), ClusterError> {
        wait_for(
            &format!("services {names:?} converged on {}", self.describe()),
            limit,
            || {
                let rows = self.services()?;
                Ok(names.iter().all(|n| {
                    rows.iter()
                        .any(|r| r.name == *n && r.desired >= min && r.running == r.desired)
                }))
            },
        )
    }
}

/// `account-service 3/3` (or `3/3 (max 1 per node)`) → a row.
fn parse_service_row(line: &str) -> Option<ServiceRow> {
    let mut it = line.split_whitespace();
    let name = it.next()?.to_string();
    let (running, desired) = it.next()?.split_once('/')?;
    Some(ServiceRow {
        name,
        running: running.parse().ok()?,
        desired: desired.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_service_rows() {
        assert_eq!(
            parse_service_row("quote-service 2/3 (max 1 per node)"),
            Some(ServiceRow {
                name: "quote-service".into(),
                running: 2,
                desired: 3
            })
        );
        assert_eq!(parse_service_row("global-thing"), None);
    }
}
