//! The command line: the arguments of every command, and each command's run (one module per
//! command), returning typed errors; the binary only parses, starts the runtime and prints.

pub mod apply;
pub mod args;
pub mod crds;
pub mod delete;
pub mod diff;
pub mod get;
pub mod import_compose;
pub mod live_status;
pub mod run;
pub mod validate;
pub mod wait;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::compose::ImportError;
use crate::control::operator::OperatorError;
use crate::docker::endpoint::{self, EndpointError, EndpointInputs, ResolvedEndpoint};
use crate::docker::{DockerEngine, DockerError};
use crate::report::notify::NotifyError;
use crate::spec::LoadDirError;
use crate::spec::encrypted::IdentityError;
use crate::spec::in_swarm::StoredSpecsError;
use crate::web::{WebConfigError, WebError};

/// A Kubernetes-style operator for Docker Swarm.
#[derive(Parser)]
#[command(version, about)]
pub struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true, env = "SWARM_OPERATOR_LOG_JSON")]
    pub log_json: bool,
    /// The docker CLI context to reach the swarm through (as `docker --context`); default:
    /// DOCKER_HOST, else DOCKER_CONTEXT, else the current context of ~/.docker/config.json.
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

// Built once per process: boxing `run`'s many flags would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum Command {
    /// Run the reconcile loop against the swarm reached as the docker CLI reaches it
    /// (`--context`, DOCKER_HOST, DOCKER_CONTEXT, the current context, the local socket).
    Run(run::RunArgs),
    /// Validate the specs of a file or directory, then store them in the swarm for
    /// `run --source swarm`. A directory replaces every stored file (files gone from it are
    /// removed), its `.suspend` file included; a file (or a `.suspend` file) is added or
    /// replaced. Exit 0 stored, 1 invalid (nothing stored).
    Apply(apply::ApplyArgs),
    /// Remove stored spec files: those of a file or directory, or one by its file name
    /// (`delete .suspend` resumes). Exit 0 removed, 1 nothing of that name was stored.
    Delete(delete::DeleteArgs),
    /// Check every spec; exit 0 if all are valid, 1 otherwise (one line per problem).
    Validate(validate::ValidateArgs),
    /// Show what `run` would change, without changing anything.
    /// Exit 0 = in sync, 1 = changes pending, 2 = error.
    Diff(diff::DiffArgs),
    /// Turn compose stack files into spec files (one per object), named as
    /// `docker stack deploy -c FILE NAME` names them.
    /// Exit 0 = everything imported, 1 = imported but keys were dropped (listed), 2 = error.
    ImportCompose(import_compose::ImportComposeArgs),
    /// Show services and networks, one line each like `kubectl get`, read from the swarm with
    /// the operator's own status code (no operator needs to run). Exit 1 if a named object
    /// was not found.
    Get(get::GetArgs),
    /// Wait until objects are ready (or deleted). Exit 0 when all got there, 1 when one is
    /// Degraded (update paused or rolled back, tasks failing, deadline exceeded: the reason
    /// and the task's error are printed), 2 on timeout.
    Wait(wait::WaitArgs),
    /// Write the JSON Schemas of the spec kinds (the files in crds/).
    Crds(crds::CrdsArgs),
}

/// Why a command failed (exit 2). Each context a command adds is a variant whose source is
/// what failed, so that the binary prints the whole chain (`context: cause: …`).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// An `--age-identity` file could not be read.
    #[error(transparent)]
    AgeIdentity(#[from] IdentityError),
    /// The `--web-config` file is invalid.
    #[error("--web-config")]
    WebConfig(#[source] WebConfigError),
    /// The `--web-config` TLS or auth settings could not be set up.
    #[error("--web-config")]
    WebServer(#[source] WebError),
    /// A `--notify` URL or `--notify-file` is unusable.
    #[error(transparent)]
    Notify(#[from] NotifyError),
    /// `run --source dir` without `--specs`.
    #[error("--specs DIR is required (or --source swarm to read the specs stored by `apply`)")]
    SpecsRequired,
    /// No engine could be chosen from `--context` and the environment.
    #[error("finding the Docker engine to reach")]
    FindEngine(#[source] EndpointError),
    /// The chosen engine did not answer.
    #[error("connecting to the Docker engine at {} ({})", engine.endpoint, engine.origin)]
    Connect {
        /// The engine tried, and why this one (boxed: it is large, and errors are rare).
        engine: Box<ResolvedEndpoint>,
        /// What failed.
        source: DockerError,
    },
    /// `validate` could not reach the swarm to check network references.
    #[error("checking network references (use --offline to skip that check)")]
    NetworkCheck(#[source] Box<CliError>),
    /// The first copy of the stored specs (`run --source swarm`) failed.
    #[error("copying the stored specs into {}", dir.display())]
    Mirror {
        /// The mirror directory.
        dir: PathBuf,
        /// What failed.
        source: StoredSpecsError,
    },
    /// The operator stopped on an error.
    #[error(transparent)]
    Operator(#[from] OperatorError),
    /// The leader elector's task panicked.
    #[error("the leader elector panicked")]
    ElectorPanicked(#[source] tokio::task::JoinError),
    /// The spec directory could not be read.
    #[error(transparent)]
    Load(#[from] LoadDirError),
    /// The swarm could not be read or written.
    #[error(transparent)]
    Docker(#[from] DockerError),
    /// Stored specs could not be read or written.
    #[error(transparent)]
    Stored(#[from] StoredSpecsError),
    /// `import-compose` failed.
    #[error(transparent)]
    Import(#[from] ImportError),
    /// `get` could not render the status.
    #[error(transparent)]
    Render(#[from] get::RenderError),
    /// `get` or `wait` could not build the status.
    #[error(transparent)]
    LiveStatus(#[from] live_status::LiveStatusError),
    /// `crds --out` could not write a schema.
    #[error("writing schemas to {}", dir.display())]
    WriteCrds {
        /// The `--out` directory.
        dir: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

/// Runs one command; `context` is `--context`.
pub async fn execute(command: Command, context: Option<&str>) -> Result<ExitCode, CliError> {
    match command {
        Command::Run(args) => run::run(args, context).await,
        Command::Apply(args) => apply::run(args, context).await,
        Command::Delete(args) => delete::run(args, context).await,
        Command::Validate(args) => validate::run(args, context).await,
        Command::Diff(args) => diff::run(args, context).await,
        Command::ImportCompose(args) => import_compose::run(args),
        Command::Get(args) => get::run(args, context).await,
        Command::Wait(args) => wait::run(args, context).await,
        Command::Crds(args) => crds::run(args),
    }
}

/// Connects to the engine the docker CLI would reach with the same `--context` and
/// environment, saying which one failed.
async fn connect(context: Option<&str>) -> Result<DockerEngine, CliError> {
    let inputs = EndpointInputs::from_env(context.map(str::to_owned));
    let resolved = endpoint::resolve(&inputs).map_err(CliError::FindEngine)?;
    DockerEngine::connect_to(&resolved.endpoint)
        .await
        .map_err(|source| CliError::Connect {
            engine: Box::new(resolved),
            source,
        })
}

/// SIGTERM (as `docker stop` and swarm send it) or Ctrl-C.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
