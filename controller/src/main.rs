//! The `swarm-operator` binary: parses arguments and hands over to the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use swarm_operator::cli::apply::{ApplyOutcome, apply_path, delete_target, diff_dir, validate_dir};
use swarm_operator::cli::get::{Format, Printer, Selection};
use swarm_operator::cli::live_status::LiveStatus;
use swarm_operator::cli::wait::{self, Goal, Targets, WaitOutcome};
use swarm_operator::compose;
use swarm_operator::control::operator::{self, OperatorConfig};
use swarm_operator::control::plan::PlanDisplay;
use swarm_operator::docker::endpoint::{self, EndpointInputs};
use swarm_operator::docker::{Deadlines, DockerEngine, SwarmApi};
use swarm_operator::election::{ElectionConfig, Elector, Leadership, SwarmLeaseStore};
use swarm_operator::redact::Values;
use swarm_operator::report::notify::{NotifyConfig, PayloadFormat};
use swarm_operator::spec::AgeIdentities;
use swarm_operator::spec::in_swarm::SpecConfigs;
use swarm_operator::web::{self, WebConfig};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// A Kubernetes-style operator for Docker Swarm.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true, env = "SWARM_OPERATOR_LOG_JSON")]
    log_json: bool,
    /// The docker CLI context to reach the swarm through (as `docker --context`); default:
    /// DOCKER_HOST, else DOCKER_CONTEXT, else the current context of ~/.docker/config.json.
    #[arg(long, global = true, value_name = "NAME")]
    context: Option<String>,
    #[command(subcommand)]
    command: Command,
}

/// How `get` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OutputFormat {
    /// One aligned line per object.
    Table,
    /// The objects' status as JSON.
    Json,
    /// The objects' status as YAML.
    Yaml,
}

/// What `wait` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum WaitFor {
    /// The `Ready` condition holds.
    Ready,
    /// The object is gone from the swarm.
    Deleted,
    /// A job's current run completed (exit 1 if it failed).
    Complete,
}

/// The body `run` POSTs to webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum NotifyFormat {
    /// The whole event as JSON.
    Json,
    /// `{"text": …}` (Slack, Mattermost and other Slack-compatible webhooks).
    Slack,
    /// `{"content": …}` (Discord).
    Discord,
}

impl From<NotifyFormat> for PayloadFormat {
    fn from(format: NotifyFormat) -> Self {
        match format {
            NotifyFormat::Json => PayloadFormat::Json,
            NotifyFormat::Slack => PayloadFormat::Slack,
            NotifyFormat::Discord => PayloadFormat::Discord,
        }
    }
}

/// Where `run` reads the desired state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Source {
    /// The `--specs` directory.
    Dir,
    /// The specs stored in the swarm by `apply`.
    Swarm,
}

/// `--age-identity`, for every command that reads a spec directory.
#[derive(clap::Args)]
struct AgeArgs {
    /// Decrypt the `.age` files specs use (`file:`, `envFile`) in memory with the X25519
    /// identities in this file, as `age-keygen` writes it (mount it as a docker secret);
    /// repeatable.
    #[arg(long = "age-identity", value_name = "FILE")]
    age_identity: Vec<PathBuf>,
}

impl AgeArgs {
    /// Reads the identity files once, at start.
    fn read(&self) -> anyhow::Result<AgeIdentities> {
        Ok(AgeIdentities::read(&self.age_identity)?)
    }
}

// Built once per process: boxing `run`'s many flags would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the reconcile loop against the swarm reached as the docker CLI reaches it
    /// (`--context`, DOCKER_HOST, DOCKER_CONTEXT, the current context, the local socket).
    Run {
        /// Directory of SwarmService / SwarmNetwork specs (*.yaml, *.yml). With
        /// `--source swarm`, where the stored specs are mirrored (default: `swarm-specs/` next
        /// to the status file).
        #[arg(long)]
        specs: Option<PathBuf>,
        /// Where the desired state comes from: the spec directory, or the specs stored in the
        /// swarm by `swarm-operator apply` (the same on every manager).
        #[arg(long, value_enum, default_value_t = Source::Dir, env = "SWARM_OPERATOR_SOURCE")]
        source: Source,
        /// Status file to write (replaced atomically).
        #[arg(long)]
        status: PathBuf,
        /// Period of the full resync.
        #[arg(long, default_value = "30s", value_parser = period)]
        resync: Duration,
        /// Also re-read the spec directory on this period (for mounts without inotify).
        #[arg(long, value_parser = period)]
        spec_poll: Option<Duration>,
        /// Serve /metrics, /healthz, /readyz, the status page (/) and /api/v1/status here.
        #[arg(long)]
        metrics_addr: Option<SocketAddr>,
        /// Protect --metrics-addr with TLS and/or basic auth, configured in the Prometheus
        /// exporter-toolkit web configuration format (tls_server_config, basic_auth_users);
        /// /healthz and /readyz stay open.
        #[arg(
            long,
            value_name = "FILE",
            requires = "metrics_addr",
            env = "SWARM_OPERATOR_WEB_CONFIG"
        )]
        web_config: Option<PathBuf>,
        /// Let an empty spec directory remove every managed object.
        #[arg(long)]
        allow_empty_prune: bool,
        /// Reconciles running at once (1 to 1024).
        #[arg(long, default_value_t = 8,
              value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
        concurrency: usize,
        /// Instance name: several operators can share a swarm, each owning only its objects.
        #[arg(long, env = "SWARM_OPERATOR_INSTANCE", default_value = "default")]
        instance: String,
        /// Keep this Prometheus file_sd_configs JSON file listing every running task endpoint.
        #[arg(long)]
        file_sd: Option<PathBuf>,
        /// Run as one of several replicas: only the holder of the instance's lease (a swarm
        /// config, lease 15 s, renewed every 5 s) reconciles; the others stand by.
        #[arg(long, env = "SWARM_OPERATOR_LEADER_ELECTION")]
        leader_election: bool,
        /// This replica's name in the lease (default: hostname-pid; swarm sets a task's
        /// hostname to its container id).
        #[arg(long, env = "SWARM_OPERATOR_IDENTITY")]
        identity: Option<String>,
        /// POST each event (rolloutSucceeded, rolloutFailed, rolledBack, driftCorrected,
        /// specError, pruned) to this https:// or http:// URL, retried with backoff;
        /// repeatable. The URL holds the webhook's token and shows in `ps` and
        /// `docker service inspect`: prefer --notify-file.
        #[arg(long = "notify", value_name = "URL")]
        notify: Vec<String>,
        /// Read webhook URLs from this file (one a line, `#` comments), e.g. a docker secret;
        /// repeatable, and combines with --notify.
        #[arg(long, value_name = "FILE")]
        notify_file: Vec<PathBuf>,
        /// The body POSTed to every webhook: the whole event as JSON, or the one line a chat
        /// service shows (`text` for Slack-compatible webhooks, `content` for Discord).
        #[arg(long, value_enum, default_value_t = NotifyFormat::Json)]
        notify_format: NotifyFormat,
        /// Append each event as a JSON line to this file (mode 0600).
        #[arg(long, value_name = "FILE")]
        events_log: Option<PathBuf>,
        /// Rotate the events log once it would grow past this size (K, M, G: powers of 1024),
        /// keeping FILE.1 to FILE.3.
        #[arg(long, value_name = "SIZE", default_value = "10M",
              value_parser = swarm_operator::report::notify::parse_size)]
        events_log_max_size: u64,
        /// Deadline of one Engine API read; an engine that misses it counts as hung (/readyz
        /// fails) until it answers again.
        #[arg(long, default_value = "20s", value_parser = positive_duration)]
        engine_timeout: Duration,
        /// Deadline of one Engine API write (create, update, remove).
        #[arg(long, default_value = "60s", value_parser = positive_duration)]
        engine_write_timeout: Duration,
        /// After this long without an event, ask the engine whether it still answers; if not,
        /// reconnect the event stream with backoff.
        #[arg(long, default_value = "30s", value_parser = positive_duration)]
        events_silence: Duration,
        #[command(flatten)]
        age: AgeArgs,
    },
    /// Validate the specs of a file or directory, then store them in the swarm for
    /// `run --source swarm`. A directory replaces every stored file (files gone from it are
    /// removed), its `.suspend` file included; a file (or a `.suspend` file) is added or
    /// replaced. Exit 0 stored, 1 invalid (nothing stored).
    Apply {
        /// A spec file or directory.
        path: PathBuf,
        /// As for `run`.
        #[arg(long, env = "SWARM_OPERATOR_INSTANCE", default_value = "default")]
        instance: String,
        #[command(flatten)]
        age: AgeArgs,
    },
    /// Remove stored spec files: those of a file or directory, or one by its file name
    /// (`delete .suspend` resumes). Exit 0 removed, 1 nothing of that name was stored.
    Delete {
        /// A spec file or directory, or the name of a stored file (`quote-service.yaml`).
        target: PathBuf,
        /// As for `run`.
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
        #[command(flatten)]
        age: AgeArgs,
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
        /// Print env values (old → new) instead of only `env.NAME changed`. Refused (exit 2)
        /// unless stdout is a terminal and CI is unset: values never go to pipes or CI logs.
        #[arg(long)]
        show_values: bool,
        #[command(flatten)]
        age: AgeArgs,
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
    /// Show services and networks, one line each like `kubectl get`, read from the swarm with
    /// the operator's own status code (no operator needs to run). Exit 1 if a named object
    /// was not found.
    Get {
        /// Objects to show (default: every object of the instance).
        names: Vec<String>,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
        /// Keep running and print the lines that change.
        #[arg(short, long)]
        watch: bool,
        /// Compare the swarm with this spec directory (a spec not applied yet is not Ready).
        #[arg(long)]
        specs: Option<PathBuf>,
        /// As for `run`.
        #[arg(long, env = "SWARM_OPERATOR_INSTANCE", default_value = "default")]
        instance: String,
        #[command(flatten)]
        age: AgeArgs,
    },
    /// Wait until objects are ready (or deleted). Exit 0 when all got there, 1 when one is
    /// Degraded (update paused or rolled back, tasks failing, deadline exceeded: the reason
    /// and the task's error are printed), 2 on timeout.
    Wait {
        /// Objects to wait for.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        names: Vec<String>,
        /// Every object of the instance. With `--specs`, an object whose spec is gone is
        /// waited for until the operator has removed it.
        #[arg(long)]
        all: bool,
        /// What to wait for.
        #[arg(long = "for", value_enum)]
        goal: WaitFor,
        /// Give up after this long.
        #[arg(long, default_value = "5m", value_parser = positive_duration)]
        timeout: Duration,
        /// Compare the swarm with this spec directory: an object is ready only once the
        /// swarm runs its current spec (how CI waits after writing the specs).
        #[arg(long)]
        specs: Option<PathBuf>,
        /// As for `run`.
        #[arg(long, env = "SWARM_OPERATOR_INSTANCE", default_value = "default")]
        instance: String,
        #[command(flatten)]
        age: AgeArgs,
    },
    /// Write the JSON Schemas of the spec kinds (the files in crds/).
    Crds {
        /// Directory to write them to; prints them when absent.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// The longest duration a flag takes: far beyond any sensible period, and far from the
/// overflow of the clock arithmetic that timers do with it.
const MAX_FLAG_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// A duration flag (`30s`, `5m`, `1h30m`): more than zero (a zero period would spin or panic
/// the timers) and at most a year. Every duration flag uses it.
fn positive_duration(text: &str) -> Result<Duration, String> {
    let duration =
        humantime::parse_duration(text).map_err(|e| format!("{e} (e.g. 30s, 5m, 1h)"))?;
    if duration.is_zero() {
        return Err("must be more than zero".to_owned());
    }
    if duration > MAX_FLAG_DURATION {
        return Err("must be at most 366d".to_owned());
    }
    Ok(duration)
}

/// A period of the loop (`--resync`, `--spec-poll`): as [`positive_duration`], and at least a
/// second, since each one lists the whole swarm or reads the whole spec directory.
fn period(text: &str) -> Result<Duration, String> {
    let duration = positive_duration(text)?;
    if duration < Duration::from_secs(1) {
        return Err(
            "must be at least 1s (each period lists the swarm or reads every spec)".to_owned(),
        );
    }
    Ok(duration)
}

fn init_logging(json: bool) {
    use tracing_subscriber::filter::FilterExt as _;
    use tracing_subscriber::prelude::*;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // bollard logs request bodies (env values) at debug: no RUST_LOG may enable that, so a
    // second filter drops such events whatever the first one lets through.
    let filter = filter.and(tracing_subscriber::filter::filter_fn(|meta| {
        swarm_operator::redact::may_log(meta.target(), meta.level())
    }));
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    if json {
        let layer = layer.json().with_filter(filter);
        tracing_subscriber::registry().with(layer).init();
    } else {
        tracing_subscriber::registry()
            .with(layer.with_filter(filter))
            .init();
    }
}

/// Hostname and process id: unique among replicas in containers (swarm sets the hostname to
/// the container id) and among processes on one host.
fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}-{}", host.trim(), std::process::id())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Connects to the engine the docker CLI would reach with the same `--context` and
/// environment, saying which one failed.
async fn connect(context: Option<&str>) -> anyhow::Result<DockerEngine> {
    let inputs = EndpointInputs::from_env(context.map(str::to_owned));
    let resolved = endpoint::resolve(&inputs).context("finding the Docker engine to reach")?;
    DockerEngine::connect_to(&resolved.endpoint)
        .await
        .with_context(|| {
            format!(
                "connecting to the Docker engine at {} ({})",
                resolved.endpoint, resolved.origin
            )
        })
}

fn main() -> ExitCode {
    swarm_operator::allocator::limit_arenas();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("starting the tokio runtime")
        .block_on(run_cli())
}

async fn run_cli() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_json);
    match execute(cli.command, cli.context.as_deref()).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn execute(command: Command, context: Option<&str>) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run {
            specs,
            source,
            status,
            resync,
            spec_poll,
            metrics_addr,
            web_config,
            allow_empty_prune,
            concurrency,
            instance,
            file_sd,
            leader_election,
            identity,
            notify,
            notify_file,
            notify_format,
            events_log,
            events_log_max_size,
            engine_timeout,
            engine_write_timeout,
            events_silence,
            age,
        } => {
            let age_identities = age.read()?;
            // Before anything starts: a taken address ends `run` here, not at shutdown.
            let web = match metrics_addr {
                Some(addr) => {
                    let web_config = web_config
                        .as_deref()
                        .map(WebConfig::load)
                        .transpose()
                        .context("--web-config")?;
                    match web::Listener::bind(addr, web_config.as_ref()).await {
                        Ok(listener) => Some(listener),
                        Err(error @ web::WebError::Bind { .. }) => {
                            eprintln!("error: {error}");
                            return Ok(ExitCode::from(1));
                        }
                        Err(error) => return Err(error).context("--web-config"),
                    }
                }
                None => None,
            };
            // Everything else that can be checked before the engine is: a bad --notify-file
            // or a missing --specs ends `run` here, not after connecting.
            let notify = NotifyConfig {
                urls: notify,
                url_files: notify_file,
                format: notify_format.into(),
                events_log,
                events_log_max_size,
            };
            notify.check()?;
            if source == Source::Dir && specs.is_none() {
                anyhow::bail!(
                    "--specs DIR is required (or --source swarm to read the specs stored by `apply`)"
                );
            }
            let deadlines = Deadlines {
                read: engine_timeout,
                write: engine_write_timeout,
                events_silence,
            };
            let api = connect(context).await?.with_deadlines(deadlines);
            let stop_electing = CancellationToken::new();
            let (leadership, elector) = if leader_election {
                let identity = identity.unwrap_or_else(default_identity);
                let store = SwarmLeaseStore::new(api.clone(), &instance);
                let (elector, leadership) = Elector::new(store, ElectionConfig::new(identity));
                let task = tokio::spawn(elector.run(stop_electing.clone().cancelled_owned()));
                (leadership, Some(task))
            } else {
                (Leadership::always(), None)
            };
            let stop_mirroring = CancellationToken::new();
            let specs = match source {
                Source::Dir => specs.context(
                    "--specs DIR is required (or --source swarm to read the specs stored by `apply`)",
                )?,
                Source::Swarm => {
                    let dir = specs.unwrap_or_else(|| {
                        status
                            .parent()
                            .unwrap_or(std::path::Path::new("."))
                            .join("swarm-specs")
                    });
                    let stored = SpecConfigs::new(api.clone(), &instance);
                    // The first copy before the operator reads the directory, so that it never
                    // acts on a stale or empty one.
                    stored.sync_mirror(&dir).await.with_context(|| {
                        format!("copying the stored specs into {}", dir.display())
                    })?;
                    tokio::spawn(stored.mirror(dir.clone(), resync, stop_mirroring.clone()));
                    dir
                }
            };
            let config = OperatorConfig {
                resync,
                spec_poll,
                web,
                allow_empty_prune,
                concurrency,
                instance,
                file_sd,
                leadership,
                notify,
                deadlines,
                age_identities,
                ..OperatorConfig::new(specs, status)
            };
            let result = operator::run(config, api, shutdown_signal()).await;
            // Release the lease only once nothing writes any more.
            stop_mirroring.cancel();
            stop_electing.cancel();
            if let Some(task) = elector {
                task.await.context("the leader elector panicked")?;
            }
            result?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Apply {
            path,
            instance,
            age,
        } => {
            let identities = age.read()?;
            let api = connect(context).await?;
            match apply_path(&api, &path, &instance, &identities).await? {
                ApplyOutcome::Invalid(errors) => {
                    for error in &errors {
                        println!("{error}");
                    }
                    eprintln!("{} problem(s) found; nothing stored", errors.len());
                    Ok(ExitCode::from(1))
                }
                ApplyOutcome::Applied(report) => {
                    for name in &report.stored {
                        println!("{name} stored");
                    }
                    for name in &report.unchanged {
                        println!("{name} unchanged");
                    }
                    for name in &report.removed {
                        println!("{name} removed");
                    }
                    for name in &report.secrets_created {
                        println!("secret {name} created");
                    }
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        Command::Delete { target, instance } => {
            let api = connect(context).await?;
            let report = delete_target(&api, &target, &instance).await?;
            for name in &report.removed {
                println!("{name} removed");
            }
            for name in &report.secrets.removed {
                println!("secret {name} removed");
            }
            for name in &report.secrets.kept {
                println!("secret {name} still in use: the operator removes it once unused");
            }
            if report.removed.is_empty() {
                eprintln!(
                    "{}: no such stored spec file of instance {instance:?}",
                    target.display()
                );
                Ok(ExitCode::from(1))
            } else {
                Ok(ExitCode::SUCCESS)
            }
        }
        Command::Validate { dir, offline, age } => {
            let identities = age.read()?;
            let networks = if offline {
                None
            } else {
                let api = connect(context)
                    .await
                    .context("checking network references (use --offline to skip that check)")?;
                Some(api.observe().await?.networks.into_keys().collect())
            };
            let errors = validate_dir(&dir, networks.as_ref(), &identities)?;
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
            show_values,
            age,
        } => {
            let identities = age.read()?;
            use std::io::IsTerminal as _;
            // Values go to the user's own terminal only: a pipe, a file or a CI log would keep
            // them.
            if show_values && (!std::io::stdout().is_terminal() || std::env::var_os("CI").is_some())
            {
                eprintln!(
                    "diff --show-values prints env values only to your own terminal: stdout is not a terminal (or CI is set); run it without --show-values to see which keys changed"
                );
                return Ok(ExitCode::from(2));
            }
            let api = connect(context).await?;
            let (plan, errors) =
                diff_dir(&api, &dir, allow_empty_prune, &instance, &identities).await?;
            let values = if show_values {
                Values::Shown
            } else {
                Values::Hidden
            };
            print!("{}", PlanDisplay(&plan, values));
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
        Command::Get {
            names,
            output,
            watch,
            specs,
            instance,
            age,
        } => {
            let identities = age.read()?;
            let api = connect(context).await?;
            let mut view = LiveStatus::open(api, &instance, specs.as_deref(), &identities).await?;
            let mut printer = Printer::new(match output {
                OutputFormat::Table => Format::Table,
                OutputFormat::Json => Format::Json,
                OutputFormat::Yaml => Format::Yaml,
            });
            let mut first = true;
            loop {
                let snapshot = view.snapshot();
                let selection = Selection::of(&snapshot.status, &names);
                if first {
                    for error in &snapshot.status.errors {
                        let at = [error.line, error.column]
                            .iter()
                            .flatten()
                            .map(|n| format!(":{n}"))
                            .collect::<String>();
                        eprintln!("{}{at}: {}: {}", error.file, error.field, error.message);
                    }
                    for name in &selection.missing {
                        eprintln!(
                            "{name}: no service or network of that name (instance {instance:?})"
                        );
                    }
                    if names.is_empty()
                        && selection.services.is_empty()
                        && selection.networks.is_empty()
                    {
                        eprintln!("no services or networks of instance {instance:?}");
                    }
                }
                print!(
                    "{}",
                    printer.next(&selection, &snapshot.status.generated_at)?
                );
                first = false;
                if !watch {
                    return Ok(if selection.missing.is_empty() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    });
                }
                tokio::select! {
                    () = view.changed() => {}
                    () = shutdown_signal() => return Ok(ExitCode::SUCCESS),
                }
            }
        }
        Command::Wait {
            names,
            all,
            goal,
            timeout,
            specs,
            instance,
            age,
        } => {
            let identities = age.read()?;
            let api = connect(context).await?;
            let mut view = LiveStatus::open(api, &instance, specs.as_deref(), &identities).await?;
            let targets = if all {
                Targets::All
            } else {
                Targets::Named(names)
            };
            let goal = match goal {
                WaitFor::Ready => Goal::Ready,
                WaitFor::Deleted => Goal::Deleted,
                WaitFor::Complete => Goal::Complete,
            };
            match wait::wait(&mut view, targets, goal, timeout, wait::Display::detect()).await {
                WaitOutcome::Reached => Ok(ExitCode::SUCCESS),
                WaitOutcome::Failed(failed) => {
                    for (name, reason, message) in failed {
                        eprintln!("{name}: {reason}: {message}");
                    }
                    Ok(ExitCode::from(1))
                }
                WaitOutcome::TimedOut(pending) => {
                    for (name, line) in pending {
                        eprintln!(
                            "{name}: timed out after {}: {line}",
                            humantime::format_duration(timeout)
                        );
                    }
                    Ok(ExitCode::from(2))
                }
            }
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
