//! A process a bench starts and watches (the operator under test): its memory and CPU from
//! `/proc`, the WARN and ERROR lines of its log, and a stop that waits for it. Shared by the
//! scale and arrival benches.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::process::{Child, Command};

pub struct Watched {
    child: Option<Child>,
    pid: u32,
    /// Its standard error.
    pub log: PathBuf,
}

/// Resident memory of a process, from `/proc/PID/status`.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    pub rss_kib: u64,
    /// The anonymous part of `rss_kib` (`RssAnon`): the heap and stacks, without the binary's
    /// own pages (clean, file-backed, about 15 MB of the operator's RSS).
    pub anon_kib: u64,
    pub peak_kib: u64,
}

impl Memory {
    pub fn rss_mb(&self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }

    pub fn anon_mb(&self) -> f64 {
        self.anon_kib as f64 / 1024.0
    }

    pub fn peak_mb(&self) -> f64 {
        self.peak_kib as f64 / 1024.0
    }
}

impl std::fmt::Display for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "VmRSS {:.1} MB (RssAnon {:.1} MB), VmHWM {:.1} MB",
            self.rss_mb(),
            self.anon_mb(),
            self.peak_mb()
        )
    }
}

impl Watched {
    /// Spawns `command` with no input or output but its standard error, written to `log`;
    /// killed when dropped.
    pub fn spawn(mut command: Command, log: PathBuf) -> Result<Watched> {
        let child = command
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .kill_on_drop(true)
            .spawn()
            .context("starting swarm-operator")?;
        let pid = child.id().context("the operator exited at once")?;
        Ok(Watched {
            child: Some(child),
            pid,
            log,
        })
    }

    pub fn memory(&self) -> Option<Memory> {
        let text = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        };
        Some(Memory {
            rss_kib: field("VmRSS:")?,
            anon_kib: field("RssAnon:")?,
            peak_kib: field("VmHWM:")?,
        })
    }

    /// CPU time (user + system) the process used so far, from `/proc/PID/stat`.
    pub fn cpu(&self) -> Option<Duration> {
        cpu_of(self.pid)
    }

    /// WARN and ERROR lines of the log.
    pub fn problems(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("ERROR") || l.contains("WARN"))
            .map(str::to_owned)
            .collect()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(lines).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// Waits until the process exits by itself (never, for a healthy operator).
    pub async fn exited(&mut self) -> String {
        match self.child.as_mut() {
            Some(child) => match child.wait().await {
                Ok(status) => status.to_string(),
                Err(e) => e.to_string(),
            },
            None => std::future::pending().await,
        }
    }

    /// SIGTERM, then SIGKILL after `grace`; whether it exited cleanly.
    pub async fn stop(&mut self, grace: Duration) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        match tokio::time::timeout(grace, child.wait()).await {
            Ok(status) => status.is_ok_and(|s| s.success()),
            Err(_) => {
                let _ = child.kill().await;
                false
            }
        }
    }
}

/// CPU time (user + system) process `pid` used so far, from `/proc/PID/stat`.
pub fn cpu_of(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state … : utime and stime are fields 14 and 15, 12 and 13 after `comm`.
    let (_, after_comm) = stat.rsplit_once(") ")?;
    let fields: Vec<&str> = after_comm.split(' ').collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux architecture this runs on.
    Some(Duration::from_millis(ticks * 10))
}
