//! `swarm-operator run`: wires the triggers, the runtime, the reconciler, the status publisher
//! and the metrics server together, and shuts them down in order.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::control::plan::ObjectKey;
use crate::control::reconcile::{Context, reconcile};
use crate::control::swarm_watch::{self, WatchConfig};
use crate::control::triggers;
use crate::control::wake;
use crate::control::world::{self, Reflector, Reporter, World};
use crate::desired::OnSwarm;
use crate::desired::definition::{KnownDefinitions, ServiceDefinition};
use crate::docker::{Deadlines, DockerError, Metered, SwarmApi};
use crate::election::{LeaderGate, Leadership};
use crate::git::{self, Revision, SourceHandle};
use crate::report::activity::ActivityLog;
use crate::report::file_sd;
use crate::report::metrics::{self, Metrics};
use crate::report::notify::{Notifier, NotifyConfig, NotifyError, SHUTDOWN_GRACE};
use crate::report::page;
use crate::report::status;
use crate::report::status::publisher::{Publisher, PublisherConfig};
use crate::runtime::{self, Runner, RunnerConfig};
use crate::spec::{ReadScope, SpecStore};
use crate::web;

/// Errors that stop the operator.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// The Docker engine could not be used.
    #[error(transparent)]
    Docker(#[from] DockerError),
    /// A trigger could not be set up.
    #[error(transparent)]
    Trigger(#[from] triggers::TriggerError),
    /// The runtime configuration is unusable.
    #[error(transparent)]
    Runtime(#[from] runtime::Error),
    /// The status file could not be written.
    #[error(transparent)]
    Status(#[from] status::StatusError),
    /// Notifications could not be set up.
    #[error(transparent)]
    Notify(#[from] NotifyError),
}

/// Settings of `swarm-operator run`.
#[derive(Debug, Clone)]
pub struct OperatorConfig {
    /// The spec directory.
    pub specs_dir: PathBuf,
    /// Where the status file goes.
    pub status_file: PathBuf,
    /// Period of the full resync.
    pub resync: Duration,
    /// Period of task polling (swarm has no task events).
    pub task_poll: Duration,
    /// Re-read the spec directory on this period too (for mounts that deliver no inotify
    /// events).
    pub spec_poll: Option<Duration>,
    /// Serve metrics, health, the page and the API here (bound by the caller, so that a taken
    /// address ends `run` before anything starts).
    pub web: Option<web::Listener>,
    /// Allow an empty spec directory to remove every managed object.
    pub allow_empty_prune: bool,
    /// Reconciles running at once (`run` passes `--concurrency` or the endpoint's default,
    /// [`crate::docker::endpoint::Endpoint::default_concurrency`]; [`OperatorConfig::new`] takes 8).
    pub concurrency: usize,
    /// This operator's instance name; it owns only objects labelled with it.
    pub instance: String,
    /// Keep this Prometheus `file_sd_configs` file up to date.
    pub file_sd: Option<PathBuf>,
    /// Whether this replica may write ([`Leadership::always`] for a single replica).
    pub leadership: Leadership,
    /// Webhooks and the events log.
    pub notify: NotifyConfig,
    /// Identities that decrypt the `.age` files specs refer to (`--age-identity`).
    pub age_identities: crate::spec::AgeIdentities,
    /// The engine's deadlines (the API applies them to its calls; here they bound the event
    /// stream's silence and a whole reconcile).
    pub deadlines: Deadlines,
    /// The time job schedules are read against (the system clock; tests pass a paused one).
    pub clock: crate::control::schedule::Clock,
    /// `--source git`: the running source whose commits are applied; `specs_dir` is then its
    /// `current` tree, read only after a switch to a whole commit, never watched.
    pub git: Option<SourceHandle>,
    /// Serve `POST /hooks/git` on the web address (`--git-webhook-secret-file`).
    pub push_hook: Option<crate::push_hook::HookConfig>,
    /// Where the commit loaded and the last one applied (every object Ready) are sent, for
    /// the record in the swarm ([`crate::applied_revision`]).
    pub progress: Option<watch::Sender<crate::applied_revision::Progress>>,
}

impl OperatorConfig {
    /// Defaults for everything but the two paths.
    pub fn new(specs_dir: PathBuf, status_file: PathBuf) -> Self {
        OperatorConfig {
            specs_dir,
            status_file,
            resync: Duration::from_secs(30),
            task_poll: Duration::from_secs(1),
            spec_poll: None,
            web: None,
            allow_empty_prune: false,
            concurrency: 8,
            instance: crate::desired::definition::DEFAULT_INSTANCE.to_owned(),
            file_sd: None,
            leadership: Leadership::always(),
            notify: NotifyConfig::default(),
            age_identities: crate::spec::AgeIdentities::none(),
            deadlines: Deadlines::default(),
            clock: crate::control::schedule::Clock::system(),
            git: None,
            push_hook: None,
            progress: None,
        }
    }
}

/// Retry delays of a failing object: 1 s doubling (plus jitter) to 5 min, so an object that
/// can never be applied costs at most 6 attempts in its first minute and then one every few
/// minutes. Retried at once when its own object or its spec changes.
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(5 * 60);

/// Startup's waits for an engine that gives no answer (unreachable, restarting, or slower than
/// `--engine-timeout` under load): 1 s doubling (plus jitter) to 30 s.
const STARTUP_RETRY_MIN: Duration = Duration::from_secs(1);
const STARTUP_RETRY_MAX: Duration = Duration::from_secs(30);

/// Runs one of startup's calls until the engine answers it, waiting with backoff while it gives
/// no answer at all, so that an operator started beside a busy or restarting engine waits for
/// it instead of exiting. An error of the engine's own (not a manager, refused) is returned at
/// once. `None` when shutdown came first.
async fn until_answered<T, Fut>(
    what: &str,
    shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    mut call: impl FnMut() -> Fut,
) -> Result<Option<T>, DockerError>
where
    Fut: Future<Output = Result<T, DockerError>>,
{
    let mut delays = ExponentialBuilder::default()
        .with_min_delay(STARTUP_RETRY_MIN)
        .with_max_delay(STARTUP_RETRY_MAX)
        .with_jitter()
        .without_max_times()
        .build();
    loop {
        match call().await {
            Ok(answer) => return Ok(Some(answer)),
            Err(error) if swarm_watch::unanswered(&error) => {
                let delay = delays.next().unwrap_or(STARTUP_RETRY_MAX);
                warn!(%error, retry_in = ?delay, "{what}: waiting for the Docker engine");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.as_mut() => return Ok(None),
                }
            }
            Err(error) => return Err(error),
        }
    }
}

/// How long shutdown waits for in-flight reconciles before dropping them: with the lease
/// release and the webhooks' grace, SIGTERM ends the process within 10 s whatever the engine
/// does.
pub const RECONCILE_SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Runs the operator until `shutdown` completes; in-flight reconciles finish (within
/// [`RECONCILE_SHUTDOWN_GRACE`]), a final status is written and queued notifications are
/// delivered (within [`SHUTDOWN_GRACE`]) before it returns. Nothing on that path waits on the
/// engine beyond those graces.
///
/// Tasks: the reflector (the only writer of the shared view), the swarm watcher (events,
/// relists, task polling), the spec watcher (here), the runner (reconciles of the keys the
/// reflector says changed), the status publisher and the metrics server.
pub async fn run<A: SwarmApi>(
    config: OperatorConfig,
    api: A,
    shutdown: impl Future<Output = ()>,
) -> Result<(), OperatorError> {
    let metrics = Arc::new(Metrics::new());
    let api = Arc::new(Metered::new(api, metrics.clone()));
    tokio::pin!(shutdown);
    if until_answered(
        "checking that this engine is a swarm manager",
        &mut shutdown,
        || api.ensure_manager(),
    )
    .await?
    .is_none()
    {
        return Ok(());
    }
    let world = World::default();
    let stop = CancellationToken::new();
    let (notifier, delivery) = Notifier::start(config.notify.clone(), metrics.clone()).await?;
    let activity = ActivityLog::with_notifier(notifier.clone());
    let source_activity = activity.clone();

    // The one builder of the status, for the file, the page and its event streams.
    let publisher = Publisher::new(
        PublisherConfig {
            specs_dir: config.specs_dir.clone(),
            status_file: config.status_file.clone(),
            leadership: config.leadership.clone(),
        },
        world.clone(),
        activity.clone(),
        metrics.clone(),
        notifier,
    );
    let metrics_server = config.web.clone().map(|listener| {
        let page = page::PageState::new(publisher.subscribe(), stop.clone());
        let mut app = metrics::router(metrics.clone(), world.clone(), config.leadership.clone())
            .merge(page::router(page));
        if let Some(hook) = config.push_hook.clone() {
            app = app.merge(crate::push_hook::router(hook));
        }
        tokio::spawn(web::serve(listener, app, stop.clone()))
    });

    let (changes_tx, changes_rx) = mpsc::unbounded_channel::<ObjectKey>();
    // Keys to look at: from the reflector (what changed), and all of them when this replica
    // becomes the leader.
    let all_keys_tx = changes_tx.clone();
    let (reflector, reporter) = Reflector::new(world.clone(), changes_tx);
    let reflector_task = tokio::spawn(reflector.run());

    // First look, before anything runs, so the first plan sees the whole swarm.
    let first_look = until_answered("listing the swarm", &mut shutdown, || {
        swarm_watch::relist(api.as_ref(), &world, &reporter)
    });
    if first_look.await?.is_none() {
        stop.cancel();
        return Ok(());
    }
    let mut store = SpecStore::with_identities(config.age_identities.clone());
    store.set_engine_api(api.engine_api_version());
    // With a git source, the specs are read once a commit is checked out and made current
    // (until then nothing is desired and nothing may be pruned).
    let mut git = config.git.clone();
    let mut revision: Option<Revision> = None;
    if let Some(source) = git.as_mut() {
        follow_git(source, &reporter, &source_activity, &mut revision).await;
    }
    if git.is_none() || revision.is_some() {
        // Nothing reconciles yet: the first read is whole.
        let first = ReadScope::Whole;
        reload(&world, &reporter, &mut store, &config, revision, first).await;
    }

    let ctx = Arc::new(Context {
        // Every write of a reconcile checks the lease right before it is sent.
        api: Arc::new(LeaderGate::new(api.clone(), config.leadership.clone())),
        world: world.clone(),
        reporter: reporter.clone(),
        metrics: metrics.clone(),
        activity,
        deadline: config.deadlines.reconcile(),
        clock: config.clock.clone(),
    });
    // Followers keep their view warm but never write: leadership is checked at the start of
    // every reconcile and again (the `LeaderGate`) right before each of its writes, and a
    // replica that becomes leader looks at every key once.
    let gate = config.leadership.clone();
    let gate_metrics = metrics.clone();
    let runner = Runner::new(
        move |key| {
            let ctx = ctx.clone();
            let leading = gate.is_leader();
            let metrics = gate_metrics.clone();
            async move {
                if leading {
                    reconcile(ctx, key).await
                } else {
                    metrics.reconcile_skipped_as_follower();
                    Ok(runtime::Action::await_change())
                }
            }
        },
        RunnerConfig::default()
            .concurrency(config.concurrency)
            .backoff(RETRY_MIN, RETRY_MAX)
            .shutdown_grace(RECONCILE_SHUTDOWN_GRACE),
    )?
    .observer(metrics.clone());
    // The first pass looks at every key; after it, only at keys whose state changed.
    let initial = wake::all_keys(&world);
    let mut changes_rx = changes_rx;
    let changes = futures_util::stream::poll_fn(move |cx| changes_rx.poll_recv(cx));
    let triggers = futures_util::stream::iter(initial).chain(changes);
    let runner_task = tokio::spawn(runner.run(triggers, stop.clone().cancelled_owned()));
    let watch_task = tokio::spawn(swarm_watch::run(
        api.clone(),
        world.clone(),
        reporter.clone(),
        WatchConfig {
            resync: config.resync,
            task_poll: config.task_poll,
            deadlines: config.deadlines,
        },
        stop.clone(),
    ));

    let file_sd_task = config.file_sd.clone().map(|path| {
        let snapshots = publisher.subscribe();
        tokio::spawn(file_sd::writer(
            world.clone(),
            snapshots,
            path,
            stop.clone(),
        ))
    });
    let progress_task = config.progress.clone().map(|progress| {
        tokio::spawn(crate::applied_revision::follow(
            publisher.subscribe(),
            progress,
            stop.clone(),
        ))
    });
    let writer_task = tokio::spawn(publisher.run(stop.clone()));

    // A git source's tree never changes in place: its commits come through `follow_git`.
    let (_watcher, mut spec_changes) = match &git {
        None => {
            let (watcher, changes) = triggers::watch_specs(&config.specs_dir)?;
            (Some(watcher), changes)
        }
        Some(_) => (None, mpsc::channel(1).1),
    };
    // The spec directory is read again on every resync too (and on `--spec-poll`): inotify
    // does not see changes made through some bind mounts.
    let mut spec_poll =
        tokio::time::interval(config.spec_poll.unwrap_or(config.resync).min(config.resync));
    spec_poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
    spec_poll.reset();
    info!(specs = %config.specs_dir.display(), status = %config.status_file.display(),
          concurrency = config.concurrency, "operator running");

    let mut leadership = config.leadership.clone();
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            () = leadership.changed() => {
                if leadership.is_leader() {
                    // What happened while following was seen but not acted on: list again
                    // (the view may lag behind the old leader's last writes) and look at
                    // every key once.
                    info!("leading: reconciling everything");
                    // A hung engine must not hold SIGTERM here either.
                    tokio::select! {
                        () = &mut shutdown => break,
                        listed = swarm_watch::relist(api.as_ref(), &world, &reporter) => {
                            if let Err(error) = listed {
                                warn!(%error, "listing the swarm on becoming leader");
                            }
                        }
                    }
                    for key in wake::all_keys(&world) {
                        let _ = all_keys_tx.send(key);
                    }
                }
            }
            Some(()) = spec_changes.recv() => {
                reload(&world, &reporter, &mut store, &config, revision, ReadScope::FirstOfBurst).await;
            }
            () = git_changed(&mut git) => {
                let source = git.as_mut().expect("git_changed waits only with a git source");
                if follow_git(source, &reporter, &source_activity, &mut revision).await {
                    reload(&world, &reporter, &mut store, &config, revision, ReadScope::FirstOfBurst).await;
                }
            }
            _ = spec_poll.tick() => {
                if git.is_none() || revision.is_some() {
                    reload(&world, &reporter, &mut store, &config, revision, ReadScope::FirstOfBurst).await;
                }
            }
        }
    }

    info!("shutting down: finishing in-flight reconciles");
    stop.cancel();
    let _ = runner_task.await;
    let _ = watch_task.await;
    if let Some(task) = file_sd_task {
        let _ = task.await;
    }
    if let Some(task) = progress_task {
        let _ = task.await;
    }
    let written = writer_task.await.expect("status writer panicked");
    if let Some(server) = metrics_server {
        server.await.expect("HTTP server panicked");
    }
    // Last: the final status may have announced something, and nothing sends after it.
    if let Some(delivery) = delivery {
        delivery.drain(SHUTDOWN_GRACE).await;
    }
    drop(reporter);
    let _ = reflector_task.await;
    written?;
    Ok(())
}

/// Waits for the git source's next update; never returns without one.
async fn git_changed(git: &mut Option<SourceHandle>) {
    if let Some(source) = git
        && source.updates.changed().await.is_ok()
    {
        return;
    }
    // No source, or it ended (only at shutdown): nothing more comes.
    std::future::pending::<()>().await;
}

/// Takes the git source's latest update: makes a newly checked-out commit the current tree
/// (between two reads of the spec directory, so no read sees two commits), says so when the
/// ref moved backwards, and reports the source's state with the commit now current. Returns
/// whether the current commit changed (the specs must be read again).
async fn follow_git(
    source: &mut SourceHandle,
    reporter: &Reporter,
    activity: &ActivityLog,
    current: &mut Option<Revision>,
) -> bool {
    let update = source.updates.borrow_and_update().clone();
    let mut status = update.status;
    let mut switched = false;
    if let Some((checkout, moved)) = update.checkout
        && *current != Some(checkout.revision)
    {
        let revision = checkout.revision;
        match git::source::activate(checkout, &source.cache).await {
            Ok(()) => {
                if let Some(notice) = moved.notice(&revision, &status.reference) {
                    activity.record_source("git", notice);
                }
                info!(%revision, "applying commit");
                *current = Some(revision);
                switched = true;
            }
            Err(error) => {
                warn!(%error, "switching to the new commit; keeping the last good one");
                status.error = Some(error.to_string());
            }
        }
    }
    status.revision = current.map(|r| r.to_string());
    reporter.source(status).await;
    switched
}

/// Re-reads the spec directory and hands the result to the reflector, which reconciles the
/// keys whose spec changed. An unreadable directory changes nothing. `revision` is the commit
/// the directory holds (git source).
///
/// A burst of new files (a `cp -r`, a checkout, a generating script) is handed over in two
/// steps: its first files as soon as they are read, so that their objects are created while
/// the rest is parsed, then the whole directory (`scope` [`ReadScope::FirstOfBurst`]). The reading
/// runs on a blocking thread: the reflector and the reconciles go on meanwhile.
async fn reload(
    world: &World,
    reporter: &Reporter,
    store: &mut SpecStore,
    config: &OperatorConfig,
    revision: Option<Revision>,
    mut scope: ReadScope,
) {
    loop {
        let started = std::time::Instant::now();
        let existing = world::existing_networks(world);
        let (dir, allow_empty_prune, instance) = (
            config.specs_dir.clone(),
            config.allow_empty_prune,
            config.instance.clone(),
        );
        // What a reload that reads nothing new would build again: then nothing is built.
        let previous = {
            let state = world.snapshot();
            (state.specs_loaded
                && state.desired.revision == revision.map(crate::revision::Revision::from))
            .then(|| Arc::clone(&state.desired))
        };
        let mut taken = std::mem::take(store);
        let view = world.clone();
        let read = tokio::task::spawn_blocking(move || {
            let held = |name: &str, built: &ServiceDefinition| view.held_definition(name, built);
            let on_swarm = OnSwarm {
                networks: &existing,
                definitions: KnownDefinitions::new(&held),
            };
            let read = triggers::reload_specs(
                &mut taken,
                &dir,
                on_swarm,
                allow_empty_prune,
                &instance,
                scope,
                previous.as_deref(),
            );
            (taken, read)
        })
        .await;
        let read = match read {
            Ok((taken, read)) => {
                *store = taken;
                read
            }
            // A panic while reading is the bug it would be on this task, raised here.
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        };
        match read {
            Ok(None) => {
                debug!(elapsed = ?started.elapsed(), "specs reloaded: nothing read anew");
                return;
            }
            Ok(Some(mut desired)) => {
                desired.revision = revision.map(crate::revision::Revision::from);
                let unchanged = {
                    let state = world.snapshot();
                    state.specs_loaded && *state.desired == desired
                };
                // How long a reload takes, for the time from a file's arrival to the first
                // write (BENCHMARK.md, "scale as users meet it").
                debug!(services = desired.services.len(), files_failing = desired.failed_files.len(),
                       partial = desired.partial, elapsed = ?started.elapsed(), unchanged,
                       "specs reloaded");
                let partial = desired.partial;
                if !unchanged {
                    reporter.desired(desired).await;
                }
                if !partial {
                    return;
                }
                scope = ReadScope::Whole;
            }
            Err(error) => {
                warn!(%error, "spec directory unreadable; keeping the last good specs");
                return;
            }
        }
    }
}
