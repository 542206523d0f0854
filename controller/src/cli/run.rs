//! `swarm-operator run`: the flags of the long-running operator, checked before the engine is
//! reached, then the leader elector, the stored-specs mirror and [`operator::run`] wired.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::args::{AgeArgs, period, positive_duration};
use super::{CliError, connect, shutdown_signal};
use crate::applied_revision::{self, Progress, RevisionRecord};
use crate::control::operator::{self, OperatorConfig};
use crate::docker::Deadlines;
use crate::election::{ElectionConfig, Elector, Leadership, SwarmLeaseStore};
use crate::git::checkout::{Limits, RepoPath};
use crate::git::credentials::{Auth, AuthFiles};
use crate::git::{GitConfig, GitSource, RemoteUrl};
use crate::push_hook::{self, FollowedRef, HookConfig, HookSecret, PassOn};
use crate::report::notify::{NotifyConfig, PayloadFormat};
use crate::spec::in_swarm::SpecConfigs;
use crate::web::{self, WebConfig};

/// The body `run` POSTs to webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NotifyFormat {
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
pub enum Source {
    /// The `--specs` directory.
    Dir,
    /// The specs stored in the swarm by `apply`.
    Swarm,
    /// The tree of the commit a git ref points to (`--git-url`, `--git-ref`), applied whole.
    Git,
}

/// `run --source git`'s repository.
#[derive(clap::Args)]
pub struct GitArgs {
    /// The repository of the specs (`--source git`): https://, ssh://, user@host:path,
    /// git:// or file://. Credentials never show (status, logs, errors).
    #[arg(long, value_name = "URL", env = "SWARM_OPERATOR_GIT_URL")]
    pub git_url: Option<String>,
    /// The branch (or full ref, e.g. refs/tags/v1) whose commit is applied.
    #[arg(
        long,
        value_name = "REF",
        default_value = "main",
        env = "SWARM_OPERATOR_GIT_REF"
    )]
    pub git_ref: String,
    /// The directory of the repository holding the specs (default: its root).
    #[arg(
        long,
        value_name = "DIR",
        default_value = "",
        env = "SWARM_OPERATOR_GIT_PATH"
    )]
    pub git_path: String,
    /// How often the ref is fetched.
    #[arg(long, value_name = "PERIOD", default_value = "60s", value_parser = positive_duration)]
    pub git_poll: Duration,
    /// A bare clone and the checked-out commit, kept across restarts (make it a volume): a
    /// restart fetches only what is new (default: `git-cache/` next to the status file).
    #[arg(long, value_name = "DIR", env = "SWARM_OPERATOR_GIT_CACHE")]
    pub git_cache: Option<PathBuf>,
    /// Deadline of one fetch; one that misses it counts as failed (retried with backoff).
    #[arg(long, value_name = "PERIOD", default_value = "60s", value_parser = positive_duration)]
    pub git_timeout: Duration,
    #[command(flatten)]
    pub auth: GitAuthArgs,
    /// Serve `POST /hooks/git` on --metrics-addr: a push to --git-ref signed with this secret
    /// (GitHub/Gitea/Forgejo HMAC-SHA256, GitLab token) fetches at once.
    #[arg(
        long,
        value_name = "FILE",
        requires = "metrics_addr",
        env = "SWARM_OPERATOR_GIT_WEBHOOK_SECRET_FILE"
    )]
    pub git_webhook_secret_file: Option<PathBuf>,
}

/// How `run --source git` authenticates and whom it trusts: files read once, at start.
#[derive(clap::Args)]
pub struct GitAuthArgs {
    /// The https token (a docker secret), sent as the basic-auth password; only over https.
    #[arg(long, value_name = "FILE", env = "SWARM_OPERATOR_GIT_TOKEN_FILE")]
    pub git_token_file: Option<PathBuf>,
    /// The ssh deploy key (mode 0400 or 0600), the only key offered.
    #[arg(long, value_name = "FILE", env = "SWARM_OPERATOR_GIT_SSH_KEY")]
    pub git_ssh_key: Option<PathBuf>,
    /// The ssh host keys to accept (default: ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts);
    /// host keys are always checked.
    #[arg(long, value_name = "FILE", env = "SWARM_OPERATOR_GIT_KNOWN_HOSTS")]
    pub git_known_hosts: Option<PathBuf>,
    /// The only CAs an https git server's certificate is checked against (default: the
    /// system's store).
    #[arg(long, value_name = "FILE", env = "SWARM_OPERATOR_GIT_CA_FILE")]
    pub git_ca_file: Option<PathBuf>,
}

impl GitAuthArgs {
    fn files(&self) -> AuthFiles {
        AuthFiles {
            token: self.git_token_file.clone(),
            ssh_key: self.git_ssh_key.clone(),
            known_hosts: self.git_known_hosts.clone(),
            ca: self.git_ca_file.clone(),
        }
    }

    fn any(&self) -> bool {
        self.git_token_file.is_some()
            || self.git_ssh_key.is_some()
            || self.git_known_hosts.is_some()
            || self.git_ca_file.is_some()
    }
}

impl GitArgs {
    /// The source's settings; `status` places the default cache.
    fn config(&self, status: &std::path::Path) -> Result<GitConfig, CliError> {
        let url = self.git_url.as_deref().ok_or(CliError::GitUrlRequired)?;
        // First: it refuses a password in the URL and reads every credential file, so that
        // a mistake stops the start naming its flag.
        let auth = Auth::load(url, &self.auth.files())?;
        Ok(GitConfig {
            url: RemoteUrl::parse(url)?,
            reference: self.git_ref.clone(),
            path: RepoPath::parse(&self.git_path)?,
            cache: self.git_cache.clone().unwrap_or_else(|| {
                status
                    .parent()
                    .unwrap_or(std::path::Path::new("."))
                    .join("git-cache")
            }),
            poll: self.git_poll,
            fetch_timeout: self.git_timeout,
            access: Arc::new(auth),
            limits: Limits::default(),
        })
    }
}

/// The flags of `run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// Directory of SwarmService / SwarmNetwork specs (*.yaml, *.yml). With
    /// `--source swarm`, where the stored specs are mirrored (default: `swarm-specs/` next
    /// to the status file).
    #[arg(long)]
    pub specs: Option<PathBuf>,
    /// Where the desired state comes from: the spec directory, the specs stored in the
    /// swarm by `swarm-operator apply` (the same on every manager), or a git repository.
    #[arg(long, value_enum, default_value_t = Source::Dir, env = "SWARM_OPERATOR_SOURCE")]
    pub source: Source,
    #[command(flatten)]
    pub git: GitArgs,
    /// Status file to write (replaced atomically).
    #[arg(long)]
    pub status: PathBuf,
    /// Period of the full resync.
    #[arg(long, default_value = "30s", value_parser = period)]
    pub resync: Duration,
    /// Also re-read the spec directory on this period (for mounts without inotify).
    #[arg(long, value_parser = period)]
    pub spec_poll: Option<Duration>,
    /// Serve /metrics, /healthz, /readyz, the status page (/) and /api/v1/status here.
    #[arg(long)]
    pub metrics_addr: Option<SocketAddr>,
    /// Protect --metrics-addr with TLS and/or basic auth, configured in the Prometheus
    /// exporter-toolkit web configuration format (tls_server_config, basic_auth_users);
    /// /healthz and /readyz stay open.
    #[arg(
        long,
        value_name = "FILE",
        requires = "metrics_addr",
        env = "SWARM_OPERATOR_WEB_CONFIG"
    )]
    pub web_config: Option<PathBuf>,
    /// Let an empty spec directory remove every managed object.
    #[arg(long)]
    pub allow_empty_prune: bool,
    /// Reconciles running at once (1 to 1024) [default: 64, or 8 over ssh, where each
    /// connection is an ssh session].
    #[arg(long,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
    pub concurrency: Option<usize>,
    /// Instance name: several operators can share a swarm, each owning only its objects.
    #[arg(long, env = "SWARM_OPERATOR_INSTANCE", default_value = "default")]
    pub instance: String,
    /// Keep this Prometheus file_sd_configs JSON file listing every running task endpoint.
    #[arg(long)]
    pub file_sd: Option<PathBuf>,
    /// Run as one of several replicas: only the holder of the instance's lease (a swarm
    /// config, lease 15 s, renewed every 5 s) reconciles; the others stand by.
    #[arg(long, env = "SWARM_OPERATOR_LEADER_ELECTION")]
    pub leader_election: bool,
    /// This replica's name in the lease (default: hostname-pid; swarm sets a task's
    /// hostname to its container id).
    #[arg(long, env = "SWARM_OPERATOR_IDENTITY")]
    pub identity: Option<String>,
    /// POST each event (rolloutSucceeded, rolloutFailed, rolledBack, driftCorrected,
    /// specError, pruned) to this https:// or http:// URL, retried with backoff;
    /// repeatable. The URL holds the webhook's token and shows in `ps` and
    /// `docker service inspect`: prefer --notify-file.
    #[arg(long = "notify", value_name = "URL")]
    pub notify: Vec<String>,
    /// Read webhook URLs from this file (one a line, `#` comments), e.g. a docker secret;
    /// repeatable, and combines with --notify.
    #[arg(long, value_name = "FILE")]
    pub notify_file: Vec<PathBuf>,
    /// The body POSTed to every webhook: the whole event as JSON, or the one line a chat
    /// service shows (`text` for Slack-compatible webhooks, `content` for Discord).
    #[arg(long, value_enum, default_value_t = NotifyFormat::Json)]
    pub notify_format: NotifyFormat,
    /// Append each event as a JSON line to this file (mode 0600).
    #[arg(long, value_name = "FILE")]
    pub events_log: Option<PathBuf>,
    /// Rotate the events log once it would grow past this size (K, M, G: powers of 1024),
    /// keeping FILE.1 to FILE.3.
    #[arg(long, value_name = "SIZE", default_value = "10M",
          value_parser = crate::report::notify::parse_size)]
    pub events_log_max_size: u64,
    /// Deadline of one Engine API read; an engine that misses it counts as hung (/readyz
    /// fails) until it answers again.
    #[arg(long, default_value = "20s", value_parser = positive_duration)]
    pub engine_timeout: Duration,
    /// Deadline of one Engine API write (create, update, remove).
    #[arg(long, default_value = "60s", value_parser = positive_duration)]
    pub engine_write_timeout: Duration,
    /// After this long without an event, ask the engine whether it still answers; if not,
    /// reconnect the event stream with backoff.
    #[arg(long, default_value = "30s", value_parser = positive_duration)]
    pub events_silence: Duration,
    #[command(flatten)]
    pub age: AgeArgs,
}

/// Runs the operator until SIGTERM or Ctrl-C.
pub async fn run(args: RunArgs, context: Option<&str>) -> Result<ExitCode, CliError> {
    let RunArgs {
        specs,
        source,
        git,
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
    } = args;
    let age_identities = age.read()?;
    // Before anything starts: a taken address ends `run` here, not at shutdown.
    let web = match metrics_addr {
        Some(addr) => {
            let web_config = web_config
                .as_deref()
                .map(WebConfig::load)
                .transpose()
                .map_err(CliError::WebConfig)?;
            match web::Listener::bind(addr, web_config.as_ref()).await {
                Ok(listener) => Some(listener),
                Err(error @ web::WebError::Bind { .. }) => {
                    eprintln!("error: {error}");
                    return Ok(ExitCode::from(1));
                }
                Err(error) => return Err(CliError::WebServer(error)),
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
        return Err(CliError::SpecsRequired);
    }
    let git_config = match source {
        Source::Git => {
            if specs.is_some() {
                return Err(CliError::SpecsWithGit);
            }
            let hook_secret = git
                .git_webhook_secret_file
                .as_deref()
                .map(HookSecret::read)
                .transpose()?;
            Some((git.config(&status)?, hook_secret))
        }
        Source::Dir | Source::Swarm
            if git.git_url.is_some() || git.auth.any() || git.git_webhook_secret_file.is_some() =>
        {
            return Err(CliError::GitUrlWithoutGit);
        }
        Source::Dir | Source::Swarm => None,
    };
    let deadlines = Deadlines {
        read: engine_timeout,
        write: engine_write_timeout,
        events_silence,
    };
    let api = connect(context).await?.with_deadlines(deadlines);
    let concurrency = concurrency.unwrap_or_else(|| api.default_concurrency());
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
    let mut git_source = None;
    let mut push_hook = None;
    let specs = match source {
        Source::Dir => specs.ok_or(CliError::SpecsRequired)?,
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
            if let Err(source) = stored.sync_mirror(&dir).await {
                return Err(CliError::Mirror { dir, source });
            }
            tokio::spawn(stored.mirror(dir.clone(), resync, stop_mirroring.clone()));
            dir
        }
        Source::Git => {
            let (config, hook_secret) = git_config.ok_or(CliError::GitUrlRequired)?;
            let followed = FollowedRef::new(&config.reference);
            let (source, handle) = tokio::task::spawn_blocking(move || GitSource::open(config))
                .await
                .map_err(CliError::GitOpenPanicked)??;
            tokio::spawn(source.run(stop_mirroring.clone()));
            let dir = handle.specs_dir();
            // Hooks reaching a follower are passed on through the revision record, which the
            // leader reads (only with an election: a single replica leads always).
            let pass_on = leader_election.then(|| PassOn {
                record: RevisionRecord::new(api.clone(), &instance),
                leadership: leadership.clone(),
            });
            if pass_on.is_some() && hook_secret.is_some() {
                tokio::spawn(push_hook::pass_on::follow_requests(
                    RevisionRecord::new(api.clone(), &instance),
                    leadership.clone(),
                    handle.trigger.clone(),
                    handle.updates.clone(),
                    stop_mirroring.clone(),
                ));
            }
            push_hook = hook_secret.map(|secret| HookConfig {
                secret,
                followed,
                fetch_now: handle.trigger.clone(),
                pass_on,
            });
            git_source = Some(handle);
            dir
        }
    };
    // The commit applied, recorded in the swarm by the leader (nothing is written until a
    // commit is loaded, i.e. with --source git).
    let (progress, progress_rx) = tokio::sync::watch::channel(Progress::default());
    let stop_recording = CancellationToken::new();
    let recorder = tokio::spawn(applied_revision::keep(
        RevisionRecord::new(api.clone(), &instance),
        progress_rx,
        leadership.clone(),
        stop_recording.clone(),
    ));
    let config = OperatorConfig {
        progress: Some(progress),
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
        git: git_source,
        push_hook,
        ..OperatorConfig::new(specs, status)
    };
    let result = operator::run(config, api, shutdown_signal()).await;
    // Release the lease only once nothing writes any more.
    stop_recording.cancel();
    let _ = recorder.await;
    stop_mirroring.cancel();
    stop_electing.cancel();
    if let Some(task) = elector {
        task.await.map_err(CliError::ElectorPanicked)?;
    }
    result?;
    Ok(ExitCode::SUCCESS)
}

/// Hostname and process id: unique among replicas in containers (swarm sets the hostname to
/// the container id) and among processes on one host.
fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}-{}", host.trim(), std::process::id())
}
