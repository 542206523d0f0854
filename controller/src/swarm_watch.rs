//! Keeps the reflector's view of the swarm current: an event names one object, which is
//! re-read alone; the whole swarm is listed only at start, after the event stream broke, and
//! on the periodic resync; tasks (which have no events) are polled.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt, stream};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::docker::{DockerError, EventAction, SwarmApi, SwarmEvent};
use crate::world::{Observation, Reporter, World};

/// How often and how fast the watcher reads.
#[derive(Debug, Clone, Copy)]
pub struct WatchConfig {
    /// Period of the full relist (a safety net: events can be lost).
    pub resync: Duration,
    /// Period of task polling.
    pub task_poll: Duration,
}

/// How long to wait for more events of the same burst: they are read together, and an object
/// named twice is read once.
const BURST_GAP: Duration = Duration::from_millis(5);
/// Bounds one burst, so that a never-ending stream still gets handled.
const BURST_MAX: usize = 256;
/// Reads in flight at once while handling a burst: enough to keep up with hundreds of
/// events a second, few enough not to crowd the manager.
const READ_CONCURRENCY: usize = 8;
/// Reconnect delays after the event stream broke: from the first to the last, doubling.
const RECONNECT_MIN: Duration = Duration::from_millis(500);
const RECONNECT_MAX: Duration = Duration::from_secs(30);

/// One object an event asks to re-read.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Reread {
    Service(String),
    Network(String),
    Nodes,
}

/// Lists the whole swarm into the reflector (four list calls).
///
/// # Errors
/// The first failed list; what was read before it is reported all the same.
pub async fn relist<A: SwarmApi>(
    api: &A,
    world: &World,
    reporter: &Reporter,
) -> Result<(), DockerError> {
    // Networks first: services name them by id, and a list of services must not be merged
    // against a network map older than itself.
    let ticket = world.ticket();
    let networks = api.list_networks().await?;
    reporter
        .observed(Observation::Networks { ticket, networks })
        .await;
    let ticket = world.ticket();
    let (services, tasks, nodes) =
        tokio::join!(api.list_services(), api.list_tasks(), api.list_nodes());
    reporter
        .observed(Observation::Services {
            ticket,
            services: services?,
        })
        .await;
    reporter.observed(Observation::Tasks(tasks?)).await;
    reporter.observed(Observation::Nodes(nodes?)).await;
    Ok(())
}

/// Re-reads one object and reports what the engine said.
async fn reread<A: SwarmApi>(
    api: &A,
    world: &World,
    reporter: &Reporter,
    what: Reread,
) -> Result<(), DockerError> {
    let ticket = world.ticket();
    let observation = match what {
        Reread::Service(name) => Observation::Service {
            ticket,
            service: api.inspect_service(&name).await?.map(Box::new),
            name,
        },
        Reread::Network(name) => Observation::Network {
            ticket,
            network: api.inspect_network(&name).await?,
            name,
        },
        Reread::Nodes => Observation::Nodes(api.list_nodes().await?),
    };
    reporter.observed(observation).await;
    Ok(())
}

/// Whether an event can tell the cache anything it does not know yet.
fn worth_reading(world: &World, event: &SwarmEvent) -> Option<Reread> {
    let state = world.read();
    match event {
        SwarmEvent::Service { id, name, action } => {
            let cached = state.observed.services.get(name);
            let known = match action {
                // Our own create (or one already read): the event adds nothing.
                EventAction::Create => cached.is_some_and(|s| s.id == *id),
                // Already gone from the cache (our own removal, or one already read).
                EventAction::Remove => cached.is_none_or(|s| s.id != *id),
                EventAction::Update => false,
            };
            (!known).then(|| Reread::Service(name.clone()))
        }
        SwarmEvent::Network { id, name, action } => {
            let cached = state.observed.networks.get(name);
            let known = match action {
                EventAction::Create => cached.is_some_and(|n| n.id == *id),
                EventAction::Remove => cached.is_none_or(|n| n.id != *id),
                EventAction::Update => false,
            };
            (!known).then(|| Reread::Network(name.clone()))
        }
        SwarmEvent::Node { .. } => Some(Reread::Nodes),
    }
}

/// Runs until `shutdown`: follows the event stream, re-reads what events name, relists on
/// resync and after the stream broke, polls tasks. Expects one [`relist`] done before.
pub async fn run<A: SwarmApi>(
    api: Arc<A>,
    world: World,
    reporter: Reporter,
    config: WatchConfig,
    shutdown: CancellationToken,
) {
    let mut events = Box::pin(api.events());
    let mut resync = tokio::time::interval(config.resync);
    resync.set_missed_tick_behavior(MissedTickBehavior::Delay);
    resync.reset(); // the caller just listed everything
    let mut task_poll = tokio::time::interval(config.task_poll);
    task_poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut reconnect_delay = RECONNECT_MIN;

    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            first = events.next() => {
                let mut burst = BTreeSet::new();
                let mut ended = false;
                let mut next = first;
                for _ in 0..BURST_MAX {
                    match next {
                        Some(Ok(event)) => {
                            reconnect_delay = RECONNECT_MIN;
                            burst.extend(worth_reading(&world, &event));
                        }
                        Some(Err(error)) => {
                            warn!(%error, "Docker event stream failed");
                            ended = true;
                            break;
                        }
                        None => {
                            ended = true;
                            break;
                        }
                    }
                    match tokio::time::timeout(BURST_GAP, events.next()).await {
                        Ok(event) => next = event,
                        Err(_) => break,
                    }
                }
                debug!(reads = burst.len(), "event burst");
                stream::iter(burst)
                    .for_each_concurrent(READ_CONCURRENCY, |what| {
                        let (api, world, reporter) = (&api, &world, &reporter);
                        async move {
                            if let Err(error) = reread(api.as_ref(), world, reporter, what.clone()).await {
                                warn!(%error, ?what, "re-reading after an event");
                            }
                        }
                    })
                    .await;
                if ended {
                    // The engine closed the stream (restart, timeout): reconnect, then list
                    // everything, since events may have been missed meanwhile.
                    warn!(retry_in = ?reconnect_delay, "Docker event stream ended; reconnecting");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(reconnect_delay) => {}
                    }
                    reconnect_delay = (reconnect_delay * 2).min(RECONNECT_MAX);
                    events = Box::pin(api.events());
                    match relist(api.as_ref(), &world, &reporter).await {
                        Ok(()) => info!("listed the swarm after reconnecting"),
                        Err(error) => warn!(%error, "listing the swarm after reconnecting"),
                    }
                }
            }
            _ = resync.tick() => {
                if let Err(error) = relist(api.as_ref(), &world, &reporter).await {
                    warn!(%error, "periodic resync: listing the swarm");
                }
            }
            _ = task_poll.tick() => {
                match api.list_tasks().await {
                    Ok(tasks) => reporter.observed(Observation::Tasks(tasks)).await,
                    Err(error) => warn!(%error, "polling tasks"),
                }
            }
        }
    }
}
