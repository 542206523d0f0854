//! `cargo xtask demo`: images, a swarm (local or docker-in-docker), the operator, the manifests, and a look at the result.

use std::path::Path;
use std::time::Duration;

use crate::cluster::{Cluster, ClusterError, UpOptions, default_managers};
use crate::cmd::CmdError;
use crate::docker::{self, DockerError};
use crate::images::{self, ImagesError};
use crate::operator::Deployment;
use crate::swarm::Manager;
use crate::timing::phase;
use crate::{operator, state};

/// Why the demo stopped.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// No Docker engine.
    #[error(transparent)]
    Docker(#[from] DockerError),
    /// Image build.
    #[error(transparent)]
    Images(#[from] ImagesError),
    /// The dind cluster or a wait.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// A docker command.
    #[error(transparent)]
    Cmd(#[from] CmdError),
}

/// Where the manifests live on a dind manager node.
pub const NODE_SPECS_DIR: &str = "/srv/swarm-operator/specs";
/// The app services the manifests declare.
pub const APP_SERVICES: [&str; 2] = ["quote-service", "account-service"];
/// The overlay network they share.
pub const APP_NETWORK: &str = "my_network";

/// Run the demo on `nodes` nodes (1 = the local engine).
pub fn run(root: &Path, nodes: usize) -> Result<(), DemoError> {
    phase("docker: engine + local swarm", || {
        docker::ensure_docker()?;
        if nodes <= 1 {
            docker::ensure_local_swarm()
        } else {
            Ok(())
        }
    })?;
    let all = images::ALL.to_vec();
    phase("images", || images::build(root, &all))?;
    let tags: Vec<String> = all.iter().map(|i| i.tag.to_string()).collect();
    let (manager, cluster) = if nodes > 1 {
        let cluster = Cluster::up(&UpOptions {
            nodes,
            managers: default_managers(nodes),
            images: tags,
        })?;
        let m = Manager::Node(cluster.manager().name.clone());
        phase("copy manifests to the manager", || {
            m.put_specs(&root.join("manifests"), NODE_SPECS_DIR)
        })?;
        // The high-availability form: a replica on every manager, specs stored in the swarm.
        phase("deploy the operator on every manager", || {
            operator::deploy(&m, Deployment::HighAvailability)
        })?;
        phase("swarm-operator apply manifests/", || {
            let printed = operator::apply_specs(&m, NODE_SPECS_DIR)?;
            eprintln!("{printed}");
            Ok::<_, CmdError>(())
        })?;
        (m, Some(cluster))
    } else {
        let m = Manager::Local;
        let specs_dir = root.join("manifests").display().to_string();
        phase("deploy the operator", || {
            operator::deploy(
                &m,
                Deployment::Directory {
                    specs_dir: &specs_dir,
                    node: None,
                },
            )
        })?;
        (m, None)
    };
    phase("converge: operator + app services", || {
        manager.wait_converged(&[operator::SERVICE], 1, Duration::from_secs(120))?;
        manager.wait_converged(&APP_SERVICES, 1, Duration::from_secs(300))
    })?;
    show(&manager)?;
    if let Some(c) = cluster {
        state::remember(root, &c.prefix);
        eprintln!(
            "\nthe cluster {} stays up; remove it with: cargo xtask cluster down",
            c.prefix
        );
        c.keep();
    }
    Ok(())
}

/// Removes the local demo: the operator first (so it does not recreate what follows), then the
/// services and the network it created, and the status volume. Missing pieces are fine.
pub fn down() -> Result<(), DemoError> {
    let manager = Manager::Local;
    let _ = manager
        .docker(["service", "rm", operator::SERVICE])
        .succeeds();
    // Its task stops gracefully after the service is gone; until then it would recreate what
    // the next steps remove.
    let operator_filter = format!("label=com.docker.swarm.service.name={}", operator::SERVICE);
    let _ = crate::cluster::wait_for("the operator to stop", Duration::from_secs(60), || {
        Ok(manager
            .docker(["ps", "-q", "--filter", operator_filter.as_str()])
            .output()
            .is_ok_and(|out| out.trim().is_empty()))
    });
    let steps: [&[&str]; 3] = [
        &["service", "rm", APP_SERVICES[0], APP_SERVICES[1]],
        &["network", "rm", APP_NETWORK],
        &["volume", "rm", operator::STATUS_VOLUME],
    ];
    for (i, args) in steps.into_iter().enumerate() {
        // The network and the volume stay busy until the tasks using them are gone.
        let tries = if i >= 1 { 30 } else { 1 };
        for attempt in 1..=tries {
            if manager.docker(args).succeeds() || attempt == tries {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    eprintln!("local demo removed");
    Ok(())
}

/// `n` × `GET /accounts/10000` from a probe container on the app network (one JSON line each).
fn probe_accounts(manager: &Manager, n: usize, extra: &[&str]) -> Result<String, CmdError> {
    let n = n.to_string();
    manager
        .docker([
            "run",
            "--rm",
            "--network",
            APP_NETWORK,
            "goblog/e2e-probe:dev",
        ])
        .args(["get", "-n", n.as_str()])
        .args(extra)
        .arg("http://account-service:6767/accounts/10000")
        .output()
}

/// Print a few account responses from the probe and the endpoints from the status file.
pub fn show(manager: &Manager) -> Result<(), DemoError> {
    // Account replicas re-resolve the quote service every few seconds; right after convergence
    // some still answer with the fallback quote. Give them up to 30 s before showing the rotation.
    let _ = crate::cluster::wait_for(
        "quotes from every account replica",
        std::time::Duration::from_secs(30),
        || {
            let out = probe_accounts(manager, 6, &[]).unwrap_or_default();
            Ok(!out.is_empty() && !out.contains("\"ipAddress\":\"fallback\""))
        },
    );
    let out = probe_accounts(manager, 9, &["--resolve-wait-ms", "10000"])?;
    println!(
        "\nGET /accounts/10000 from a client container on {APP_NETWORK} (client-side round robin over dnsrr):"
    );
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
        let body = &v["body"];
        println!(
            "  via {:<16} servedBy={:<12} quote.ipAddress={:<12} name={} quote={:?}",
            v["addr"].as_str().unwrap_or("?"),
            body["servedBy"].as_str().unwrap_or("?"),
            body["quote"]["ipAddress"].as_str().unwrap_or("?"),
            body["name"].as_str().unwrap_or("?"),
            body["quote"]["quote"]
                .as_str()
                .unwrap_or(v["error"].as_str().unwrap_or("?")),
        );
    }
    println!(
        "\ndiscovered endpoints (status file, volume {}):",
        operator::STATUS_VOLUME
    );
    match operator::read_status(manager)? {
        None => println!("  (no status file yet)"),
        Some(text) => {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            let empty = serde_json::Map::new();
            for (name, s) in v["services"].as_object().unwrap_or(&empty) {
                println!(
                    "  {name}: {}/{} running",
                    s["runningReplicas"].as_u64().unwrap_or(0),
                    s["desiredReplicas"].as_u64().unwrap_or(0)
                );
                for e in s["endpoints"].as_array().into_iter().flatten() {
                    let addrs: Vec<String> = e["addresses"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|a| {
                            format!(
                                "{}={}",
                                a["network"].as_str().unwrap_or("?"),
                                a["ip"].as_str().unwrap_or("?")
                            )
                        })
                        .collect();
                    println!(
                        "    slot {:<2} {:<8} node {:<12} {}",
                        e["slot"].as_u64().unwrap_or(0),
                        e["state"].as_str().unwrap_or("?"),
                        e["node"].as_str().unwrap_or("?"),
                        addrs.join(" ")
                    );
                }
            }
            for err in v["errors"].as_array().into_iter().flatten() {
                println!("  spec error: {err}");
            }
        }
    }
    Ok(())
}
