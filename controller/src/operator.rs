//! `swarm-operator run`: wires the triggers, the runtime, the reconciler, the status writer and
//! the metrics server together, and shuts them down in order.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::docker::{DockerEngine, DockerError, SwarmEvent};
use crate::election::Leadership;
use crate::metrics::{self, Metrics};
use crate::plan::ObjectKey;
use crate::reconcile::{Context, reconcile};
use crate::runtime::{self, Runner, RunnerConfig, Trigger};
use crate::spec::SpecStore;
use crate::status::{self, StatusFile};
use crate::triggers::{self, refresh_service, refresh_swarm, reload_specs};
use crate::world::World;

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
    /// The metrics server failed.
    #[error(transparent)]
    Metrics(#[from] metrics::MetricsError),
    /// The status file could not be written.
    #[error(transparent)]
    Status(#[from] status::StatusError),
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
    /// Serve metrics and health here.
    pub metrics_addr: Option<SocketAddr>,
    /// Allow an empty spec directory to remove every managed object.
    pub allow_empty_prune: bool,
    /// Reconciles running at once.
    pub concurrency: usize,
    /// This operator's instance name; it owns only objects labelled with it.
    pub instance: String,
    /// Whether this replica may write ([`Leadership::always`] for a single replica).
    pub leadership: Leadership,
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
            metrics_addr: None,
            allow_empty_prune: false,
            concurrency: 8,
            instance: crate::definition::DEFAULT_INSTANCE.to_owned(),
            leadership: Leadership::always(),
        }
    }
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// Writes the status whenever the world changed, at most every `STATUS_DEBOUNCE`, and once
/// more at shutdown.
async fn status_writer(
    world: World,
    config: OperatorConfig,
    shutdown: CancellationToken,
) -> Result<(), status::StatusError> {
    // Coalesces bursts (a rollout touches many tasks) into one write.
    const STATUS_DEBOUNCE: Duration = Duration::from_millis(100);
    let mut last: Option<StatusFile> = status::read(&config.status_file);
    loop {
        let stopping = tokio::select! {
            _ = world.changed() => false,
            _ = shutdown.cancelled() => true,
        };
        if !stopping {
            tokio::time::sleep(STATUS_DEBOUNCE).await;
        }
        let next = {
            let state = world.read();
            status::build(&state, &config.specs_dir, last.as_ref(), &now_rfc3339())
        };
        if stopping
            || last
                .as_ref()
                .is_none_or(|l| !status::same_content(l, &next))
        {
            status::write_atomic(&config.status_file, &next)?;
            last = Some(next);
        }
        if stopping {
            info!(path = %config.status_file.display(), "final status written");
            return Ok(());
        }
    }
}

/// Docker events that arrived together. Swarm emits them in bursts (a rollout, 500 creates);
/// re-reading each service is one call per event, while one listing serves any number.
#[derive(Debug, Default)]
struct EventBurst {
    /// Services named by service events.
    services: BTreeSet<String>,
    /// A network or node changed.
    other: bool,
    /// The stream ended.
    ended: bool,
}

impl EventBurst {
    /// How long to wait for the next event of a burst: short enough to keep drift correction
    /// immediate, long enough to catch events queued behind the first.
    const GAP: Duration = Duration::from_millis(10);
    /// Bounds one burst, so that a never-ending stream still gets handled.
    const MAX_EVENTS: usize = 512;
    /// Above this many services one listing is cheaper than reading them one by one.
    const INSPECT_LIMIT: usize = 8;

    async fn collect<S>(first: Option<Result<SwarmEvent, DockerError>>, events: &mut S) -> Self
    where
        S: futures_util::Stream<Item = Result<SwarmEvent, DockerError>> + Unpin,
    {
        let mut burst = EventBurst::default();
        let mut next = first;
        for _ in 0..Self::MAX_EVENTS {
            match next {
                Some(Ok(SwarmEvent::Service { name })) => {
                    burst.services.insert(name);
                }
                Some(Ok(SwarmEvent::Other)) => burst.other = true,
                Some(Err(error)) => warn!(%error, "Docker event stream"),
                None => {
                    burst.ended = true;
                    break;
                }
            }
            match tokio::time::timeout(Self::GAP, events.next()).await {
                Ok(event) => next = event,
                Err(_) => break,
            }
        }
        burst
    }

    fn refresh_all(&self) -> bool {
        self.other || self.services.len() > Self::INSPECT_LIMIT
    }
}

/// Runs the operator until `shutdown` completes; in-flight reconciles finish and a final status
/// is written before it returns.
pub async fn run(
    config: OperatorConfig,
    api: DockerEngine,
    shutdown: impl Future<Output = ()>,
) -> Result<(), OperatorError> {
    api.ensure_manager().await?;
    let world = World::default();
    let metrics = Arc::new(Metrics::new());
    let stop = CancellationToken::new();

    let metrics_server = config.metrics_addr.map(|addr| {
        tokio::spawn(metrics::serve(
            addr,
            metrics.clone(),
            world.clone(),
            config.leadership.clone(),
            stop.clone().cancelled_owned(),
        ))
    });

    // First look, before anything runs, so the first plan sees the whole swarm.
    refresh_swarm(&api, &world).await?;
    let mut store = SpecStore::new();
    if let Err(error) = reload_specs(
        &world,
        &mut store,
        &config.specs_dir,
        config.allow_empty_prune,
        &config.instance,
    ) {
        warn!(%error, "spec directory unreadable: nothing will be created or removed until it is");
    }

    let ctx = Arc::new(Context {
        api: api.clone(),
        world: world.clone(),
        metrics: metrics.clone(),
    });
    // Bounded: triggers are cheap to coalesce, and a stuck runner must not grow memory.
    let (trigger_tx, trigger_rx) = mpsc::channel::<Trigger<ObjectKey>>(1024);
    let keys_world = world.clone();
    // Followers keep their view warm but never write: the gate is checked at the start of
    // every reconcile, and a replica that becomes leader reconciles everything at once.
    let gate = config.leadership.clone();
    let gate_metrics = metrics.clone();
    let mut leadership = config.leadership.clone();
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
        RunnerConfig::default().concurrency(config.concurrency),
    )?
    .observer(metrics.clone())
    .keys_fn(move || triggers::keys(&keys_world));
    let runner_task = tokio::spawn(runner.run(
        runtime::receiver_stream(trigger_rx),
        stop.clone().cancelled_owned(),
    ));
    let writer_task = tokio::spawn(status_writer(world.clone(), config.clone(), stop.clone()));

    let (_watcher, mut spec_changes) = triggers::watch_specs(&config.specs_dir)?;
    let mut events = Box::pin(api.events());
    let mut resync = tokio::time::interval(config.resync);
    resync.set_missed_tick_behavior(MissedTickBehavior::Delay);
    resync.reset(); // the first full pass is the initial one just below
    let mut task_poll = tokio::time::interval(config.task_poll);
    task_poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut spec_poll = config.spec_poll.map(tokio::time::interval);
    let _ = trigger_tx.send(Trigger::ReconcileAll).await;
    info!(specs = %config.specs_dir.display(), status = %config.status_file.display(),
          api = api.api_version(), "operator running");

    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            () = leadership.changed() => {
                if leadership.is_leader() {
                    info!("leading: reconciling everything");
                    match refresh_swarm(&api, &world).await {
                        Ok(()) => { let _ = trigger_tx.send(Trigger::ReconcileAll).await; }
                        Err(error) => warn!(%error, "listing the swarm on becoming leader"),
                    }
                }
            }
            Some(()) = spec_changes.recv() => {
                reload_and_trigger(&world, &mut store, &config, &trigger_tx).await;
            }
            _ = async { spec_poll.as_mut().unwrap().tick().await }, if spec_poll.is_some() => {
                reload_and_trigger(&world, &mut store, &config, &trigger_tx).await;
            }
            event = events.next() => {
                let burst = EventBurst::collect(event, &mut events).await;
                if burst.refresh_all() {
                    match refresh_swarm(&api, &world).await {
                        Ok(()) => { let _ = trigger_tx.send(Trigger::ReconcileAll).await; }
                        Err(error) => warn!(%error, "listing the swarm after events"),
                    }
                } else {
                    for name in burst.services {
                        if let Err(error) = refresh_service(&api, &world, &name).await {
                            warn!(%error, service = %name, "re-reading service after event");
                        }
                        let _ = trigger_tx.send(Trigger::Reconcile(ObjectKey::service(name))).await;
                    }
                }
                if burst.ended {
                    // The engine closed the stream (restart, timeout): reconnect, and list
                    // everything since events may have been missed meanwhile.
                    warn!("Docker event stream ended; reconnecting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    events = Box::pin(api.events());
                    if refresh_swarm(&api, &world).await.is_ok() {
                        let _ = trigger_tx.send(Trigger::ReconcileAll).await;
                    }
                }
            }
            _ = resync.tick() => {
                reload_and_trigger(&world, &mut store, &config, &trigger_tx).await;
                match refresh_swarm(&api, &world).await {
                    Ok(()) => { let _ = trigger_tx.send(Trigger::ReconcileAll).await; }
                    Err(error) => warn!(%error, "periodic resync: listing the swarm"),
                }
            }
            _ = task_poll.tick() => {
                match crate::docker::SwarmApi::list_tasks(&api).await {
                    Ok(tasks) => { world.set_tasks(tasks); }
                    Err(error) => warn!(%error, "polling tasks"),
                }
            }
        }
    }

    info!("shutting down: finishing in-flight reconciles");
    stop.cancel();
    let _ = runner_task.await;
    writer_task.await.expect("status writer panicked")?;
    if let Some(server) = metrics_server {
        server.await.expect("metrics server panicked")?;
    }
    Ok(())
}

async fn reload_and_trigger(
    world: &World,
    store: &mut SpecStore,
    config: &OperatorConfig,
    trigger_tx: &mpsc::Sender<Trigger<ObjectKey>>,
) {
    match reload_specs(
        world,
        store,
        &config.specs_dir,
        config.allow_empty_prune,
        &config.instance,
    ) {
        Ok(true) => {
            let _ = trigger_tx.send(Trigger::ReconcileAll).await;
        }
        Ok(false) => {}
        Err(error) => warn!(%error, "spec directory unreadable; keeping the last good specs"),
    }
}
