//! One `swarm-operator run` as a user starts it (default flags but `--concurrency` when the
//! bench varies it), with its log, memory and CPU.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::process::{Child, Command};

pub struct Operator {
    child: Option<Child>,
    pid: u32,
    pub log: PathBuf,
}

/// Resident memory from `/proc/PID/status`, in MB.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    pub rss_mb: f64,
    pub peak_mb: f64,
}

impl Operator {
    pub fn start(
        specs: &Path,
        work: &Path,
        instance: &str,
        concurrency: Option<usize>,
        log_filter: &str,
    ) -> Result<Operator> {
        let log = work.join(format!("{instance}.log"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_swarm-operator"));
        command
            .args(["run", "--specs"])
            .arg(specs)
            .arg("--status")
            .arg(work.join(format!("{instance}.status.json")))
            .args(["--instance", instance]);
        if let Some(concurrency) = concurrency {
            command.args(["--concurrency", &concurrency.to_string()]);
        }
        let child = command
            .env("RUST_LOG", log_filter)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .kill_on_drop(true)
            .spawn()
            .context("starting swarm-operator")?;
        let pid = child.id().context("the operator exited at once")?;
        Ok(Operator {
            child: Some(child),
            pid,
            log,
        })
    }

    pub fn memory(&self) -> Option<Memory> {
        let text = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        let kib = |name: &str| -> Option<f64> {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        };
        Some(Memory {
            rss_mb: kib("VmRSS:")? / 1024.0,
            peak_mb: kib("VmHWM:")? / 1024.0,
        })
    }

    /// CPU time (user + system) so far, from `/proc/PID/stat`.
    pub fn cpu(&self) -> Option<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok()?;
        let (_, after_comm) = stat.rsplit_once(") ")?;
        let fields: Vec<&str> = after_comm.split(' ').collect();
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        // USER_HZ is 100 on every Linux architecture this runs on.
        Some(Duration::from_millis(ticks * 10))
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

    /// SIGTERM, then SIGKILL after 30 s; whether it exited cleanly.
    pub async fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        match tokio::time::timeout(Duration::from_secs(30), child.wait()).await {
            Ok(status) => status.is_ok_and(|s| s.success()),
            Err(_) => {
                let _ = child.kill().await;
                false
            }
        }
    }
}
