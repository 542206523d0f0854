//! The `swarm-operator` binary: parses arguments and hands over to the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use swarm_operator::commands::{diff_dir, validate_dir};
use swarm_operator::compose;
use swarm_operator::docker::{DockerEngine, SwarmApi};
use swarm_operator::operator::{self, OperatorConfig};
use swarm_operator::plan::PlanDisplay;
use tracing_subscriber::EnvFilter;

/// A Kubernetes-style operator for Docker Swarm.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true, env = "SWARM_OPERATOR_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the reconcile loop against the swarm of DOCKER_HOST (or the local socket).
    Run {
        /// Directory of SwarmService / SwarmNetwork specs (*.yaml, *.yml).
        #[arg(long)]
        specs: PathBuf,
        /// Status file to write (replaced atomically).
        #[arg(long)]
        status: PathBuf,
        /// Period of the full resync.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        resync: Duration,
        /// Also re-read the spec directory on this period (for mounts without inotify).
        #[arg(long, value_parser = humantime::parse_duration)]
        spec_poll: Option<Duration>,
        /// Serve /metrics, /healthz and /readyz on this address.
        #[arg(long)]
        metrics_addr: Option<SocketAddr>,
        /// Let an empty spec directory remove every managed object.
        #[arg(long)]
        allow_empty_prune: bool,
        /// Reconciles running at once.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Instance name: several operators can share a swarm, each owning only its objects.
        #[arg(long, env = "SWARM_OPERATOR_INSTANCE", default_value = "default")]
        instance: String,
    },
    /// Check every spec; exit 0 if all are valid, 1 otherwise (one line per problem).
    Validate {
        /// The spec directory.
        dir: PathBuf,
        /// Do not ask the swarm which networks exist (references are then not checked).
        #[arg(long)]
        offline: bool,
    },
    /// Show what `run` would change, without changing anything.
    /// Exit 0 = in sync, 1 = changes pending, 2 = error.
    Diff {
        /// The spec directory.
        dir: PathBuf,
        /// As for `run`.
        #[arg(long)]
        allow_empty_prune: bool,
        /// As for `run`.
        #[arg(long, env = "SWARM_OPERATOR_INSTANCE", default_value = "default")]
        instance: String,
    },
    /// Turn compose stack files into spec files (one per object), named as
    /// `docker stack deploy -c FILE NAME` names them.
    /// Exit 0 = everything imported, 1 = imported but keys were dropped (listed), 2 = error.
    ImportCompose {
        /// Compose files, merged in order like repeated `docker stack deploy -c`.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The stack name (`NAME` of `docker stack deploy`).
        #[arg(long)]
        stack: String,
        /// Directory to write the specs (and the files they read) to.
        #[arg(long)]
        out: PathBuf,
        /// Fail (exit 2, nothing written) if any key would be dropped.
        #[arg(long)]
        strict: bool,
    },
    /// Write the JSON Schemas of the spec kinds (the files in crds/).
    Crds {
        /// Directory to write them to; prints them when absent.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn init_logging(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_json);
    match execute(cli.command).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn execute(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run {
            specs,
            status,
            resync,
            spec_poll,
            metrics_addr,
            allow_empty_prune,
            concurrency,
            instance,
        } => {
            let config = OperatorConfig {
                resync,
                spec_poll,
                metrics_addr,
                allow_empty_prune,
                concurrency,
                instance,
                ..OperatorConfig::new(specs, status)
            };
            let api = DockerEngine::connect()
                .await
                .context("connecting to the Docker engine (DOCKER_HOST or /var/run/docker.sock)")?;
            operator::run(config, api, shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { dir, offline } => {
            let networks = if offline {
                None
            } else {
                let api = DockerEngine::connect().await.context(
                    "connecting to the Docker engine to check network references \
                     (use --offline to skip that check)",
                )?;
                Some(api.observe().await?.networks.into_keys().collect())
            };
            let errors = validate_dir(&dir, networks.as_ref())?;
            for error in &errors {
                println!("{error}");
            }
            if errors.is_empty() {
                println!("{}: all specs valid", dir.display());
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("{} problem(s) found", errors.len());
                Ok(ExitCode::from(1))
            }
        }
        Command::Diff {
            dir,
            allow_empty_prune,
            instance,
        } => {
            let api = DockerEngine::connect()
                .await
                .context("connecting to the Docker engine")?;
            let (plan, errors) = diff_dir(&api, &dir, allow_empty_prune, &instance).await?;
            print!("{}", PlanDisplay(&plan));
            for error in &errors {
                eprintln!("{error}");
            }
            Ok(if !errors.is_empty() {
                ExitCode::from(2)
            } else if plan.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::ImportCompose {
            files,
            stack,
            out,
            strict,
        } => {
            let lookup = compose::environment(&files, |k| std::env::var(k).ok())?;
            let request = compose::ImportRequest {
                files,
                stack,
                out,
                strict,
            };
            let report = compose::import(&request, &lookup)?;
            for warning in &report.warnings {
                eprintln!("warning: {warning}");
            }
            println!(
                "wrote {} file(s) to {}",
                report.written.len(),
                request.out.display()
            );
            for removed in &report.removed {
                println!("removed (no longer in the compose files): {removed}");
            }
            for dropped in &report.dropped {
                println!("dropped: {dropped}");
            }
            Ok(if report.dropped.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Crds { out } => {
            match out {
                Some(dir) => {
                    swarm_operator::spec::write_crds(&dir)
                        .with_context(|| format!("writing schemas to {}", dir.display()))?;
                }
                None => {
                    for (name, schema) in swarm_operator::spec::crds() {
                        println!("# {name}\n{schema}");
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
