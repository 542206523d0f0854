//! The local Docker engine: make one answer (installing and starting Debian's `docker.io` if needed) and make it a swarm manager.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cmd::{Cmd, CmdError};

/// Why no usable local Docker engine could be had.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// `apt-get` failed while installing `docker.io`.
    #[error("installing Debian's docker.io failed")]
    Install(#[source] CmdError),
    /// No `apt-get`: not a Debian-like machine, so we do not guess how to install Docker.
    #[error(
        "no Docker daemon answers and apt-get is not available: install and start Docker, then retry"
    )]
    NoApt,
    /// `dockerd` could not be started.
    #[error("starting dockerd failed")]
    Start(#[source] std::io::Error),
    /// `dockerd` started but did not answer in time.
    #[error("dockerd did not answer within {0:?}; see {LOG}")]
    Timeout(Duration),
    /// `docker swarm init` on the local engine failed.
    #[error("making the local engine a swarm manager failed")]
    Swarm(#[source] CmdError),
}

/// Where a dockerd we start writes its log.
pub const LOG: &str = "/var/log/dockerd-xtask.log";

/// Whether `docker info` succeeds (client installed and daemon answering).
pub fn answers() -> bool {
    Cmd::docker(["info", "--format", "{{.ServerVersion}}"]).succeeds()
}

/// Make sure a Docker daemon answers: install `docker.io` with apt-get if the client or daemon is
/// missing, start `dockerd` in the background (there is no systemd here), wait for it.
pub fn ensure_docker() -> Result<(), DockerError> {
    if answers() {
        return Ok(());
    }
    let has_dockerd = Cmd::new("dockerd").arg("--version").succeeds();
    if !has_dockerd {
        if !Cmd::new("apt-get").arg("--version").succeeds() {
            return Err(DockerError::NoApt);
        }
        eprintln!("no Docker engine: installing Debian's docker.io");
        Cmd::new("apt-get")
            .arg("update")
            .run()
            .map_err(DockerError::Install)?;
        Cmd::new("apt-get")
            .args([
                "install",
                "-y",
                "--no-install-recommends",
                "docker.io",
                "iptables",
                "ca-certificates",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .run()
            .map_err(DockerError::Install)?;
        if answers() {
            return Ok(());
        }
    }
    eprintln!("starting dockerd in the background (log: {LOG})");
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(LOG)
        .map_err(DockerError::Start)?;
    let log2 = log.try_clone().map_err(DockerError::Start)?;
    // Own process group: a Ctrl-C meant for xtask must not take the daemon down with it.
    Command::new("dockerd")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .process_group(0)
        .spawn()
        .map_err(DockerError::Start)?;
    let limit = Duration::from_secs(60);
    let start = Instant::now();
    while start.elapsed() < limit {
        if answers() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Err(DockerError::Timeout(limit))
}

/// The local engine's swarm state (`inactive`, `active`, `pending`, ...) and whether it is a manager.
pub fn local_swarm_state() -> Result<(String, bool), CmdError> {
    let out = Cmd::docker([
        "info",
        "--format",
        "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}",
    ])
    .output()?;
    let mut it = out.split_whitespace();
    Ok((
        it.next().unwrap_or_default().to_string(),
        it.next() == Some("true"),
    ))
}

/// Make the local engine a single-node swarm manager if it is in no swarm. Never leaves a swarm:
/// other tests on this machine rely on the local swarm.
pub fn ensure_local_swarm() -> Result<(), DockerError> {
    let (state, manager) = local_swarm_state().map_err(DockerError::Swarm)?;
    match (state.as_str(), manager) {
        ("active", true) => Ok(()),
        ("inactive", _) => {
            eprintln!("local engine is in no swarm: docker swarm init --advertise-addr 127.0.0.1");
            match Cmd::docker(["swarm", "init", "--advertise-addr", "127.0.0.1"]).output() {
                Ok(_) => Ok(()),
                // Someone else (a parallel test) may have initialised it a moment ago.
                Err(e) if local_swarm_state().is_ok_and(|(s, m)| s == "active" && m) => {
                    eprintln!("(swarm init raced with another initialiser: {e})");
                    Ok(())
                }
                Err(e) => Err(DockerError::Swarm(e)),
            }
        }
        (other, m) => Err(DockerError::Swarm(CmdError::Failed {
            cmd: "docker info".into(),
            status: format!("swarm state {other}, manager={m}"),
            stderr: "the local engine is in a swarm but not as a manager; not touching it".into(),
        })),
    }
}
