//! The bench's own view of the swarm: the Docker CLI, counting and waiting (directly on the
//! engine socket, not through a counting proxy), the test image and the final cleanup.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bollard::Docker;
use bollard::query_parameters::ListServicesOptions;
use tokio::process::Command;

pub const TEST_IMAGE: &str = "swarm-operator-test/busybox:dev";
pub const ENGINE_SOCKET: &str = "/var/run/docker.sock";
/// Label on every service of a run (value: the run's prefix), spec-made or stack-made.
pub const BENCH_LABEL: &str = "swarm-operator-bench";

/// Runs `docker` against `host` (the engine, or a counting proxy).
pub async fn docker_via(host: &str, args: &[&str]) -> Result<String> {
    let out = Command::new("docker")
        .args(args)
        .env("DOCKER_HOST", host)
        .stdin(Stdio::null())
        .output()
        .await
        .context("running the docker CLI")?;
    if !out.status.success() {
        bail!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

pub async fn docker(args: &[&str]) -> Result<String> {
    docker_via(&format!("unix://{ENGINE_SOCKET}"), args).await
}

/// The engine, seen directly, and the run's name prefix.
pub struct Swarm {
    pub engine: Docker,
    pub prefix: String,
    pub timeout: Duration,
}

impl Swarm {
    /// Polling period: listing thousands of services takes a while itself.
    fn poll(want: usize) -> Duration {
        if want > 1000 {
            Duration::from_millis(100)
        } else {
            Duration::from_millis(20)
        }
    }

    /// Number of services of this run whose name starts with `name_prefix`.
    pub async fn count(&self, name_prefix: &str) -> Result<usize> {
        let label = format!("{BENCH_LABEL}={}", self.prefix);
        let filters = HashMap::from([("label".to_owned(), vec![label])]);
        let services = self
            .engine
            .list_services(Some(ListServicesOptions {
                filters: Some(filters),
                status: None,
            }))
            .await?;
        Ok(services
            .iter()
            .filter_map(|s| s.spec.as_ref()?.name.as_deref())
            .filter(|n| n.starts_with(name_prefix))
            .count())
    }

    /// Polls until `count(name_prefix) == want`; returns the time since `start`.
    pub async fn wait_count(
        &self,
        name_prefix: &str,
        want: usize,
        start: Instant,
    ) -> Result<Duration> {
        let mut have_before = usize::MAX;
        loop {
            let have = self.count(name_prefix).await?;
            if have == want {
                return Ok(start.elapsed());
            }
            if start.elapsed() > self.timeout {
                bail!(
                    "timed out after {:?}: {have} services {name_prefix}*, waiting for {want}",
                    self.timeout
                );
            }
            if have != have_before && start.elapsed() > Duration::from_secs(10) {
                eprintln!(
                    "  … {have}/{want} services {name_prefix}* after {:.0?}",
                    start.elapsed()
                );
            }
            have_before = have;
            tokio::time::sleep(Self::poll(want)).await;
        }
    }

    pub async fn service_env(&self, name: &str) -> Result<Vec<String>> {
        let service = self.engine.inspect_service(name, None).await?;
        Ok(service
            .spec
            .and_then(|s| s.task_template)
            .and_then(|t| t.container_spec)
            .and_then(|c| c.env)
            .unwrap_or_default())
    }

    /// The network's id, if it exists.
    pub async fn network_id(&self, name: &str) -> Option<String> {
        self.engine
            .inspect_network(
                name,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
            .ok()?
            .id
    }

    pub async fn wait_network_gone(&self, name: &str) {
        let start = Instant::now();
        while self.network_id(name).await.is_some() && start.elapsed() < Duration::from_secs(60) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Removes every service, then every network, whose name starts with `name_prefix`.
    pub async fn remove_all(&self, name_prefix: &str) {
        for kind in ["service", "network"] {
            let filter = format!("name={name_prefix}");
            let Ok(names) =
                docker(&[kind, "ls", "--filter", &filter, "--format", "{{.Name}}"]).await
            else {
                continue;
            };
            let mine: Vec<&str> = names
                .lines()
                .filter(|n| n.starts_with(name_prefix))
                .collect();
            for chunk in mine.chunks(100) {
                let mut args = vec![kind, "rm"];
                args.extend(chunk);
                if let Err(e) = docker(&args).await {
                    eprintln!("cleanup: {e}");
                }
            }
            if kind == "service" && !mine.is_empty() {
                // Services hold their networks until they are gone.
                let start = Instant::now();
                loop {
                    let left = docker(&["service", "ls", "--filter", &filter, "-q"])
                        .await
                        .map(|out| out.lines().count())
                        .unwrap_or(0);
                    if left == 0 || start.elapsed() > Duration::from_secs(60) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}

pub async fn ensure_test_image() -> Result<()> {
    if docker(&["image", "inspect", TEST_IMAGE]).await.is_ok() {
        return Ok(());
    }
    let busybox = Path::new("/bin/busybox");
    if !busybox.exists() {
        bail!(
            "the test image needs a static busybox at /bin/busybox: apt-get install busybox-static"
        );
    }
    let dir = tempfile::tempdir()?;
    std::fs::copy(busybox, dir.path().join("busybox"))?;
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nENTRYPOINT [\"/bin/busybox\"]\nCMD [\"sleep\", \"3600\"]\n",
    )?;
    docker(&[
        "build",
        "-q",
        "-t",
        TEST_IMAGE,
        dir.path().to_str().context("path")?,
    ])
    .await?;
    Ok(())
}

/// The 1-minute load average (other engineers share the machine).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split(' ').next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}
