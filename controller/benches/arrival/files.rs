//! What a user puts in front of each contender: N spec files for the operator, arriving in
//! one of the ways files really arrive, and the same N services as one compose file.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use tokio::process::Command;

use crate::swarm::{BENCH_LABEL, TEST_IMAGE};

/// How the spec files land in the watched directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// `cp -r prepared/. specs/`: a bulk copy, like unpacking an archive.
    Copy,
    /// Each prepared file renamed into the directory (`mv prepared/* specs/`, a `git
    /// checkout` that writes beside and renames).
    Rename,
    /// A loop writing one file after another (open, write, close), like a generating script.
    Loop,
}

impl Arrival {
    pub fn parse(name: &str) -> Result<Arrival> {
        match name.trim() {
            "copy" => Ok(Arrival::Copy),
            "rename" => Ok(Arrival::Rename),
            "loop" => Ok(Arrival::Loop),
            other => bail!("unknown arrival {other:?} in BENCH_ARRIVALS (copy, rename, loop)"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Arrival::Copy => "copy",
            Arrival::Rename => "rename",
            Arrival::Loop => "loop",
        }
    }
}

/// The service every contender deploys: `replicas` tasks of the local static busybox image
/// (never pulled), like the integration tests' services. Stopped with SIGKILL: `sleep` as PID 1
/// ignores SIGTERM, so every stop would wait out the grace period and the cleanup between
/// runs (500 containers: 95–219 s) would dominate the bench.
pub struct ServiceShape {
    pub replicas: u32,
    /// A placement constraint no node meets: the tasks are created (in raft, as for any
    /// service) but stay pending, so no container starts. 5,000 running containers do not fit
    /// on one 24 GiB machine (about 9 MB each, measured), while the control plane's work the
    /// stopwatch measures is the same.
    pub unplaceable: bool,
}

/// The node label [`ServiceShape::unplaceable`] asks for; no node has it.
const NOWHERE: &str = "node.labels.swarm-operator-bench==nowhere";

/// The subnet of each contender's overlay network. `docker stack deploy` attaches every
/// service to the stack's default network, whose subnet the engine picks from its pool: a /24,
/// 253 task addresses, so at 5,000 services 4,747 tasks would stay `new` (not allocated) and
/// swarm's allocator would retry all of them on every pass (measured: 347 of 600 left `new`),
/// work the operator's services, attached to nothing, were spared. Both contenders attach
/// their services to one overlay network of this /16 instead (one contender at a time: the
/// network is removed between runs).
const SUBNET: &str = "10.231.0.0/16";

/// N spec files written to `prepared`, ready to arrive in `specs`.
pub struct PreparedSpecs {
    pub prepared: PathBuf,
    pub files: Vec<(String, String)>,
}

impl ServiceShape {
    /// One SwarmService spec; `label` is the value of [`BENCH_LABEL`] the poller counts;
    /// attached to `network` when given.
    pub fn spec(&self, name: &str, label: &str, network: Option<&str>) -> String {
        let placement = if self.unplaceable {
            format!("  placement: {{constraints: [\"{NOWHERE}\"]}}\n")
        } else {
            String::new()
        };
        let networks = network.map_or(String::new(), |n| format!("  networks: [{n}]\n"));
        format!(
            "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata:\n  name: {name}\n  labels: {{{BENCH_LABEL}: {label}}}\nspec:\n  image: {TEST_IMAGE}\n  replicas: {}\n  args: [sleep, \"3600\"]\n  endpointMode: dnsrr\n  stopSignal: SIGKILL\n  stopGracePeriod: 1s\n{networks}{placement}",
            self.replicas
        )
    }

    /// The SwarmNetwork spec of the overlay network the services attach to.
    fn network(name: &str) -> String {
        format!(
            "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmNetwork\nmetadata:\n  name: {name}\nspec:\n  driver: overlay\n  ipam: {{subnet: \"{SUBNET}\"}}\n"
        )
    }

    /// The same `n` services as a compose file for `docker stack deploy`.
    pub fn compose(&self, n: usize, label: &str) -> String {
        let mut text = format!(
            "version: \"3.8\"\nnetworks:\n  default:\n    driver: overlay\n    ipam:\n      config: [{{subnet: \"{SUBNET}\"}}]\nservices:\n"
        );
        let placement = if self.unplaceable {
            format!("      placement: {{constraints: [\"{NOWHERE}\"]}}\n")
        } else {
            String::new()
        };
        for i in 0..n {
            // Writing to a String can not fail.
            let _ = write!(
                text,
                "  s{i:05}:\n    image: {TEST_IMAGE}\n    command: [sleep, \"3600\"]\n    stop_signal: SIGKILL\n    stop_grace_period: 1s\n    deploy:\n      replicas: {}\n      endpoint_mode: dnsrr\n      labels: {{{BENCH_LABEL}: {label}}}\n{placement}",
                self.replicas
            );
        }
        text
    }

    /// Writes `n` spec files named `{service_prefix}s{i}.yaml` into a fresh `prepared`, and
    /// `{service_prefix}network.yaml`, the network they attach to (first in path order, as a
    /// stack's network is created before its services).
    pub fn prepare(
        &self,
        prepared: &Path,
        n: usize,
        service_prefix: &str,
        label: &str,
    ) -> Result<PreparedSpecs> {
        std::fs::create_dir_all(prepared)?;
        let network = format!("{service_prefix}net");
        let files: Vec<(String, String)> =
            std::iter::once((format!("{network}.yaml"), Self::network(&network)))
                .chain((0..n).map(|i| {
                    let name = format!("{service_prefix}s{i:05}");
                    (
                        format!("{name}.yaml"),
                        self.spec(&name, label, Some(&network)),
                    )
                }))
                .collect();
        for (file, text) in &files {
            std::fs::write(prepared.join(file), text)?;
        }
        Ok(PreparedSpecs {
            prepared: prepared.to_owned(),
            files,
        })
    }
}

impl PreparedSpecs {
    /// Lands the files in `specs` the way `arrival` says; returns when the last one is there.
    pub async fn land(&self, arrival: Arrival, specs: &Path) -> Result<()> {
        match arrival {
            Arrival::Copy => {
                let mut source = self.prepared.clone().into_os_string();
                source.push("/.");
                let status = Command::new("cp")
                    .arg("-r")
                    .arg(&source)
                    .arg(specs)
                    .status()
                    .await
                    .context("running cp")?;
                if !status.success() {
                    bail!(
                        "cp -r {} {}: {status}",
                        self.prepared.display(),
                        specs.display()
                    );
                }
            }
            Arrival::Rename => {
                for (file, _) in &self.files {
                    std::fs::rename(self.prepared.join(file), specs.join(file))?;
                }
            }
            Arrival::Loop => {
                for (file, text) in &self.files {
                    std::fs::write(specs.join(file), text)?;
                }
            }
        }
        Ok(())
    }
}
