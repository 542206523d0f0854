//! `cargo xtask`: parses arguments and calls the library; the work is in xtask's modules.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use xtask::{cluster, demo, docker, images, interrupt, repo_root, state, testrun, timing};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Repository chores: images, the dind swarm, the demo, the full test run"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build static binaries and the FROM-scratch images (all, or the named ones).
    Images {
        /// Image names: account-service, quote-service, swarm-operator, e2e-probe.
        names: Vec<String>,
    },
    /// The docker-in-docker swarm.
    Cluster {
        #[command(subcommand)]
        cmd: ClusterCmd,
    },
    /// Bring up the demo: images, swarm, operator, manifests; print responses and endpoints.
    Demo {
        /// 1 = the local engine as a single-node swarm; more = a dind cluster.
        #[arg(long, default_value_t = 1)]
        nodes: usize,
        /// Remove the local demo instead (operator, app services, network, status volume);
        /// a dind demo goes with `cargo xtask cluster down`.
        #[arg(long)]
        down: bool,
    },
    /// Images, a dind cluster, and the e2e scenarios (extra args go to the test binary).
    E2e {
        /// Nodes of the cluster: 4 = 3 managers (the operator's failover) + 1 worker (node loss).
        #[arg(long, default_value_t = 4)]
        nodes: usize,
        /// Passed to the e2e test binary (e.g. a scenario name filter).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Everything: fmt, clippy, unit + integration tests, images, e2e.
    Test {
        /// Stop after the unit and integration tests.
        #[arg(long)]
        skip_e2e: bool,
        /// Nodes of the e2e cluster (3 managers from 3 nodes on).
        #[arg(long, default_value_t = 4)]
        nodes: usize,
    },
}

#[derive(Subcommand)]
enum ClusterCmd {
    /// Start a cluster and leave it running (its prefix is remembered for `down`).
    Up {
        /// Nodes (3 managers from 3 nodes on, else 1).
        #[arg(long, default_value_t = 4)]
        nodes: usize,
        /// Do not build and load the project images.
        #[arg(long)]
        no_images: bool,
        /// Do not build images; load those of the project images that exist.
        #[arg(long)]
        no_build: bool,
    },
    /// Remove the remembered cluster, the one named by --prefix, or --all of them.
    Down {
        #[arg(long)]
        prefix: Option<String>,
        #[arg(long)]
        all: bool,
    },
    /// List clusters' prefixes.
    Ls,
}

fn main() -> Result<()> {
    interrupt::install();
    let root = repo_root();
    let cli = Cli::parse();
    let r = run(&root, cli.cmd);
    eprintln!("{}", timing::summary());
    r
}

fn run(root: &std::path::Path, cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Images { names } => {
            docker::ensure_docker()?;
            let selected = images::select(&names)?;
            timing::phase("static binaries", || {
                images::build_binaries(root, &selected)
            })?;
            timing::phase("docker build", || images::build_images(root, &selected))?;
        }
        Cmd::Cluster {
            cmd:
                ClusterCmd::Up {
                    nodes,
                    no_images,
                    no_build,
                },
        } => {
            docker::ensure_docker()?;
            let mut tags = Vec::new();
            if no_build && !no_images {
                tags = images::ALL
                    .iter()
                    .map(|i| i.tag.to_string())
                    .filter(|t| images::exists(t))
                    .collect();
            } else if !no_images {
                let all = images::ALL.to_vec();
                timing::phase("images", || images::build(root, &all))?;
                tags = all.iter().map(|i| i.tag.to_string()).collect();
            }
            let c = cluster::Cluster::up(&cluster::UpOptions {
                nodes,
                managers: cluster::default_managers(nodes),
                images: tags,
            })?;
            state::remember(root, &c.prefix);
            println!(
                "cluster {} is up: manager {} ({})",
                c.prefix,
                c.manager().name,
                c.manager().ip
            );
            println!(
                "use it: docker exec -it {} docker node ls",
                c.manager().name
            );
            println!(
                "e2e against it: {}={} cargo test -p e2e --test swarm",
                cluster::ENV_CLUSTER,
                c.prefix
            );
            println!("remove it: cargo xtask cluster down");
            c.keep();
        }
        Cmd::Cluster {
            cmd: ClusterCmd::Down { prefix, all },
        } => {
            let prefixes = if all {
                cluster::list_prefixes()
            } else if let Some(p) = prefix.or_else(|| state::recall(root)) {
                vec![p]
            } else {
                bail!(
                    "no remembered cluster: pass --prefix P or --all (see `cargo xtask cluster ls`)"
                );
            };
            for p in prefixes {
                timing::phase(&format!("teardown {p}"), || {
                    cluster::remove_prefix(&p);
                    Ok::<_, std::convert::Infallible>(())
                })?;
            }
            state::forget(root);
        }
        Cmd::Cluster {
            cmd: ClusterCmd::Ls,
        } => {
            for p in cluster::list_prefixes() {
                println!("{p}");
            }
        }
        Cmd::Demo { down: true, .. } => demo::down().context("demo --down")?,
        Cmd::Demo { nodes, .. } => demo::run(root, nodes).context("demo")?,
        Cmd::E2e { nodes, args } => testrun::e2e(root, nodes, &args).context("e2e")?,
        Cmd::Test { skip_e2e, nodes } => {
            testrun::run(root, &testrun::TestOptions { skip_e2e, nodes })
                .context("cargo xtask test")?;
        }
    }
    Ok(())
}
