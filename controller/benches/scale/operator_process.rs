//! One `swarm-operator run` process of the bench: started on a spec directory behind a counting
//! proxy, with its memory, its own API-call metric, its status file and its log.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;

use crate::process::{Memory, Watched};

/// The operator's count of its own Engine API calls (added by issue 7; absent before).
const REQUESTS_METRIC: &str = "swarm_operator_docker_requests_total";

pub struct OperatorProcess {
    process: Watched,
    metrics: SocketAddr,
    status: PathBuf,
}

/// Series of [`REQUESTS_METRIC`] by label set (`op="…",outcome="…"`).
pub type RequestMetric = BTreeMap<String, f64>;

impl OperatorProcess {
    /// Starts `swarm-operator run` on `specs`, talking to the engine through `docker_host`;
    /// its log, status file and metrics port belong to `name` under `work`.
    pub fn start(
        specs: &Path,
        work: &Path,
        name: &str,
        instance: &str,
        docker_host: &str,
    ) -> Result<OperatorProcess> {
        // A free port: bind, read, release (nothing else on this machine races for it in the
        // instant before the operator binds it again).
        let metrics = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let status = work.join(format!("{name}.status.json"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_swarm-operator"));
        command
            .args(["run", "--specs"])
            .arg(specs)
            .arg("--status")
            .arg(&status)
            .args(["--resync", "30s", "--instance", instance])
            .arg("--metrics-addr")
            .arg(metrics.to_string())
            .env("DOCKER_HOST", docker_host)
            .env("RUST_LOG", "info");
        let process = Watched::spawn(command, work.join(format!("{name}.log")))?;
        Ok(OperatorProcess {
            process,
            metrics,
            status,
        })
    }

    pub fn memory(&self) -> Option<Memory> {
        self.process.memory()
    }

    /// CPU time (user + system) the process used so far.
    pub fn cpu(&self) -> Option<Duration> {
        self.process.cpu()
    }

    /// The operator's [`REQUESTS_METRIC`] now; `None` when it does not export it (or the
    /// endpoint does not answer).
    pub async fn request_metric(&self) -> Option<RequestMetric> {
        let text = tokio::time::timeout(Duration::from_secs(5), self.scrape())
            .await
            .ok()?
            .ok()?;
        let series: RequestMetric = text
            .lines()
            .filter_map(|l| l.strip_prefix(REQUESTS_METRIC)?.strip_prefix('{'))
            .filter_map(|l| {
                let (labels, value) = l.rsplit_once("} ")?;
                Some((labels.to_owned(), value.trim().parse().ok()?))
            })
            .collect();
        (!series.is_empty()).then_some(series)
    }

    async fn scrape(&self) -> std::io::Result<String> {
        let mut stream = TcpStream::connect(self.metrics).await?;
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        Ok(response)
    }

    /// The status file's entry for an object (`services.NAME`, or any other map holding NAME).
    pub fn status_of(&self, name: &str) -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(&self.status).ok()?;
        let status: serde_json::Value = serde_json::from_str(&text).ok()?;
        status
            .as_object()?
            .values()
            .find_map(|v| v.as_object()?.get(name).cloned())
    }

    /// WARN and ERROR lines of the log.
    pub fn problems(&self) -> Vec<String> {
        self.process.problems()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    /// SIGTERM, then SIGKILL after 20 s; whether it exited cleanly.
    pub async fn stop(&mut self) -> bool {
        self.process.stop(Duration::from_secs(20)).await
    }
}

/// `after - before` per series, non-zero ones, as `op/outcome N, …`.
pub fn metric_delta(before: Option<&RequestMetric>, after: Option<&RequestMetric>) -> String {
    let Some(after) = after else {
        return "metric not exported by this build".to_owned();
    };
    let mut parts: Vec<(String, f64)> = after
        .iter()
        .map(|(labels, v)| {
            let was = before.and_then(|b| b.get(labels)).copied().unwrap_or(0.0);
            (labels.replace('"', ""), v - was)
        })
        .filter(|(_, d)| *d > 0.0)
        .collect();
    parts.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total: f64 = parts.iter().map(|p| p.1).sum();
    format!(
        "{total} ({})",
        parts
            .iter()
            .map(|(l, d)| format!("{d} {{{l}}}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}
