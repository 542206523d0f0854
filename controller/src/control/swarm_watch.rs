//! Keeps the reflector's view of the swarm current: an event names one object, which is
//! re-read alone; the whole swarm is listed only at start, after the event stream broke, and
//! on the periodic resync; tasks (which have no events) are polled.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use futures_util::{Stream, StreamExt, stream};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::control::world::{Observation, Reporter, World};
use crate::desired::data_objects::DataKind;
use crate::desired::definition::{KnownDefinitions, ServiceDefinition};
use crate::docker::{Deadlines, DockerError, EventAction, SwarmApi, SwarmEvent};

/// How often and how fast the watcher reads.
#[derive(Debug, Clone, Copy)]
pub struct WatchConfig {
    /// Period of the full relist (a safety net: events can be lost).
    pub resync: Duration,
    /// Period of task polling.
    pub task_poll: Duration,
    /// The event stream's silence deadline, and the read deadline of the ping that follows it.
    pub deadlines: Deadlines,
}

/// How long to wait for more events of the same burst: they are read together, and an object
/// named twice is read once.
const BURST_GAP: Duration = Duration::from_millis(5);
/// Bounds one burst, so that a never-ending stream still gets handled.
const BURST_MAX: usize = 256;
/// Reads in flight at once while handling a burst: enough to keep up with hundreds of
/// events a second, few enough not to crowd the manager.
const READ_CONCURRENCY: usize = 8;
/// The pause after a task poll: the configured period, or [`TASK_POLL_PACE`] times what the
/// poll took if that is longer.
fn task_poll_pause(period: Duration, took: Duration) -> Duration {
    period.max(took.saturating_mul(TASK_POLL_PACE))
}

/// A task poll waits at least this many times as long as the last one took. Listing every task
/// costs the engine in proportion to the swarm (5,000 tasks: a 3.8 MB answer, 0.3–0.6 s of
/// the engine, measured), and the operator's own decoding and merging too: polled every
/// second, a large swarm's manager would spend half its time answering it, and every write
/// (its creates, anyone's) would wait behind that. With this, listing tasks takes at most a
/// fifth of the time however large the swarm; a small swarm is still polled every period.
const TASK_POLL_PACE: u32 = 5;
/// Reconnect delays after the event stream broke: from the first to the last, doubling.
const RECONNECT_MIN: Duration = Duration::from_millis(500);
const RECONNECT_MAX: Duration = Duration::from_secs(30);

/// One object an event asks to re-read.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Reread {
    Service(String),
    Network(String),
    /// The configs or the secrets, listed: the engine's events name a version by id, and a
    /// burst of them (a rotation, an `apply`) is one list.
    Data(DataKind),
    Nodes,
}

/// Lists the whole swarm into the reflector (six list calls).
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
    // Configs and secrets before services too: a service listed with a version the view does
    // not have yet would look like it waits for it.
    let ticket = world.ticket();
    let (configs, secrets) = tokio::join!(
        api.list_data(DataKind::Config),
        api.list_data(DataKind::Secret)
    );
    for (kind, list) in [(DataKind::Config, configs), (DataKind::Secret, secrets)] {
        reporter
            .observed(Observation::Data {
                ticket,
                kind,
                list: list?,
            })
            .await;
    }
    let ticket = world.ticket();
    let held = |name: &str, listed: &ServiceDefinition| world.held_definition(name, listed);
    let (services, tasks, nodes) = tokio::join!(
        api.list_services_sharing(KnownDefinitions::new(&held)),
        api.list_tasks(),
        api.list_nodes()
    );
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
        Reread::Data(kind) => Observation::Data {
            ticket,
            kind,
            list: api.list_data(kind).await?,
        },
        Reread::Nodes => Observation::Nodes(api.list_nodes().await?),
    };
    reporter.observed(observation).await;
    Ok(())
}

/// Whether an event can tell the cache anything it does not know yet.
fn worth_reading(world: &World, event: &SwarmEvent) -> Option<Reread> {
    let state = world.snapshot();
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
        SwarmEvent::Data {
            kind,
            id,
            name,
            action,
        } => {
            let cached = state.observed.data(*kind).get(name);
            let known = match action {
                EventAction::Create => cached.is_some_and(|d| d.id == *id),
                EventAction::Remove => cached.is_none_or(|d| d.id != *id),
                // Label updates of the leader lease and the stored specs: not versions.
                EventAction::Update => true,
            };
            (!known).then_some(Reread::Data(*kind))
        }
        SwarmEvent::Node { .. } => Some(Reread::Nodes),
    }
}

/// Runs until `shutdown`: follows the event stream, re-reads what events name, relists on
/// resync and after the stream broke, polls tasks. Expects one [`relist`] done before.
///
/// Shutdown never waits on the engine: whatever read is in flight is dropped.
pub async fn run<A: SwarmApi>(
    api: Arc<A>,
    world: World,
    reporter: Reporter,
    config: WatchConfig,
    shutdown: CancellationToken,
) {
    tokio::select! {
        () = shutdown.cancelled() => {}
        () = watch(api, world, reporter, config, shutdown.clone()) => {}
    }
}

/// Whether the engine gave no answer at all (as opposed to an error of its own).
pub(crate) fn unanswered(error: &DockerError) -> bool {
    matches!(
        error,
        DockerError::Timeout { .. } | DockerError::Transport { .. }
    )
}

/// Reconnect delays after the event stream broke or went silent on a hung engine: backon's
/// exponential backoff with jitter, reset by the first event of a new stream.
struct Reconnects {
    builder: ExponentialBuilder,
    current: Option<ExponentialBackoff>,
}

impl Reconnects {
    fn new() -> Self {
        Reconnects {
            builder: ExponentialBuilder::default()
                .with_min_delay(RECONNECT_MIN)
                .with_max_delay(RECONNECT_MAX)
                .with_factor(2.0)
                .with_jitter()
                // The watcher reconnects for as long as it runs.
                .without_max_times(),
            current: None,
        }
    }

    fn next_delay(&mut self) -> Duration {
        self.current
            .get_or_insert_with(|| self.builder.build())
            .next()
            .unwrap_or(RECONNECT_MAX)
    }

    fn reset(&mut self) {
        self.current = None;
    }
}

/// Why the event stream is given up and opened again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reconnect {
    /// The engine closed the stream or it failed: wait (backoff), then reconnect.
    Ended,
    /// The stream was silent and the engine did not answer a ping: it is hung. Wait
    /// (backoff), then reconnect; the new stream is suspect until an event arrives on it.
    Hung,
    /// The engine answers again, but the stream was opened while it was hung, or was open
    /// while a read got no answer (its connection may be stalled for good): reconnect at once.
    Suspect,
}

async fn watch<A: SwarmApi>(
    api: Arc<A>,
    world: World,
    reporter: Reporter,
    config: WatchConfig,
    shutdown: CancellationToken,
) {
    // Boxed as a trait object so that a lost stream can be dropped before the new one exists.
    let mut events: Pin<Box<dyn Stream<Item = Result<SwarmEvent, DockerError>> + Send>> =
        Box::pin(api.events());
    let mut resync = tokio::time::interval(config.resync);
    resync.set_missed_tick_behavior(MissedTickBehavior::Delay);
    resync.reset(); // the caller just listed everything
    let mut next_task_poll = Instant::now() + config.task_poll;
    let mut reconnects = Reconnects::new();
    let silence = config.deadlines.events_silence;
    // Swarm sends nothing on a quiet stream, so silence is checked by asking the engine.
    let mut silent_until = Instant::now() + silence;
    // Opened while the engine did not answer, or open while a read got no answer: the
    // connection may be stalled for good. Only an event proves it works.
    let mut suspect = false;

    loop {
        let mut reconnect = None;
        tokio::select! {
            () = shutdown.cancelled() => return,
            first = events.next() => {
                let mut burst = BTreeSet::new();
                let mut next = first;
                for _ in 0..BURST_MAX {
                    match next {
                        Some(Ok(event)) => {
                            reconnects.reset();
                            suspect = false;
                            burst.extend(worth_reading(&world, &event));
                        }
                        Some(Err(error)) => {
                            warn!(%error, "Docker event stream failed");
                            reconnect = Some(Reconnect::Ended);
                            break;
                        }
                        None => {
                            reconnect = Some(Reconnect::Ended);
                            break;
                        }
                    }
                    match tokio::time::timeout(BURST_GAP, events.next()).await {
                        Ok(event) => next = event,
                        Err(_) => break,
                    }
                }
                silent_until = Instant::now() + silence;
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
            }
            () = tokio::time::sleep_until(silent_until) => {
                // Bounded here too: the API's own deadlines are not known to this loop.
                let ping = tokio::time::timeout(config.deadlines.read, api.ensure_manager()).await;
                match ping {
                    Ok(Err(ref error)) if unanswered(error) => {
                        warn!(silent_for = ?silence,
                              "the Docker event stream is silent and the engine does not answer; reconnecting");
                        reconnect = Some(Reconnect::Hung);
                    }
                    Err(_) => {
                        warn!(silent_for = ?silence,
                              "the Docker event stream is silent and the engine does not answer; reconnecting");
                        reconnect = Some(Reconnect::Hung);
                    }
                    // An answer (even a refusal): the engine is up and the swarm just quiet.
                    Ok(_) if suspect => {
                        info!("the Docker engine answers again; opening a new event stream");
                        reconnect = Some(Reconnect::Suspect);
                    }
                    Ok(_) => {}
                }
                silent_until = Instant::now() + silence;
            }
            _ = resync.tick() => {
                if let Err(error) = relist(api.as_ref(), &world, &reporter).await {
                    suspect |= unanswered(&error);
                    warn!(%error, "periodic resync: listing the swarm");
                }
                // As after a task poll: the whole swarm's answers were just dropped.
                crate::allocator::release_free_memory();
            }
            () = tokio::time::sleep_until(next_task_poll) => {
                let started = Instant::now();
                let pause = match api.list_tasks().await {
                    Ok(tasks) => {
                        reporter.observed(Observation::Tasks(tasks)).await;
                        // The answer (every task of the swarm) was parsed and dropped: hand
                        // its pages back, or the resident size keeps them until the next
                        // status pass trims (10 MB at 5,000 services, measured).
                        crate::allocator::release_free_memory();
                        task_poll_pause(config.task_poll, started.elapsed())
                    }
                    // A failed poll's time is the engine's silence, not the list's cost: ask
                    // again after the period (readiness comes back with the first answer).
                    Err(error) => {
                        suspect |= unanswered(&error);
                        warn!(%error, "polling tasks");
                        config.task_poll
                    }
                };
                next_task_poll = Instant::now() + pause;
            }
        }
        let Some(why) = reconnect else { continue };
        // Dropping the stream closes its connection, whatever state it is in.
        drop(std::mem::replace(
            &mut events,
            Box::pin(futures_util::stream::empty()),
        ));
        if why != Reconnect::Suspect {
            let delay = reconnects.next_delay();
            warn!(retry_in = ?delay, reason = ?why, "Docker event stream lost; reconnecting");
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
        }
        suspect = why == Reconnect::Hung;
        events = Box::pin(api.events());
        silent_until = Instant::now() + silence;
        // Events may have been missed meanwhile.
        match relist(api.as_ref(), &world, &reporter).await {
            Ok(()) => info!("listed the swarm after reconnecting"),
            Err(error) => {
                suspect |= unanswered(&error);
                warn!(%error, "listing the swarm after reconnecting");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::world::Reflector;
    use crate::docker::Op;
    use crate::docker::memory::MemorySwarm;

    const HOUR: Duration = Duration::from_secs(3600);

    fn start(
        swarm: &Arc<MemorySwarm>,
        config: WatchConfig,
    ) -> (CancellationToken, tokio::task::JoinHandle<()>) {
        let world = World::default();
        let (changes, _) = tokio::sync::mpsc::unbounded_channel();
        let (reflector, reporter) = Reflector::new(world.clone(), changes);
        tokio::spawn(reflector.run());
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(swarm.clone(), world, reporter, config, stop.clone()));
        (stop, task)
    }

    /// Waits (paused time) until the watcher opened its `n`-th event stream; returns when.
    async fn stream_opened(swarm: &MemorySwarm, n: usize, limit: Duration) -> Instant {
        let deadline = Instant::now() + limit;
        while swarm.count(Op::Events) < n {
            assert!(
                Instant::now() < deadline,
                "event stream {n} not opened within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Instant::now()
    }

    /// A swarm whose task list takes the engine 1 s to answer is polled every 5 s, not every
    /// second: the poll never takes more than a fifth of the engine's time.
    #[tokio::test(start_paused = true)]
    async fn a_slow_task_list_is_polled_less_often() {
        let swarm = Arc::new(MemorySwarm::default());
        let config = WatchConfig {
            resync: HOUR,
            task_poll: Duration::from_secs(1),
            deadlines: Deadlines::default(),
        };
        let (stop, task) = start(&swarm, config);
        stream_opened(&swarm, 1, Duration::from_secs(1)).await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        let fast = swarm.count(Op::ListTasks);
        assert!(
            (9..=11).contains(&fast),
            "a quick list is polled every second: {fast} in 10 s"
        );
        swarm.set_latency(Op::ListTasks, Duration::from_secs(1));
        tokio::time::sleep(Duration::from_secs(2)).await;
        let before = swarm.count(Op::ListTasks);
        tokio::time::sleep(Duration::from_secs(60)).await;
        let slow = swarm.count(Op::ListTasks) - before;
        // Each poll: 1 s answering, then 5 s of pause (6 s a poll).
        assert!(
            (9..=11).contains(&slow),
            "a 1 s list is polled every 6 s: {slow} in 60 s"
        );
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_stream_on_a_hung_engine_is_reconnected_with_backoff() {
        let swarm = Arc::new(MemorySwarm::default());
        let deadlines = Deadlines {
            read: Duration::from_secs(2),
            write: Duration::from_secs(5),
            events_silence: Duration::from_secs(10),
        };
        let config = WatchConfig {
            resync: HOUR,
            task_poll: HOUR,
            deadlines,
        };
        let (stop, task) = start(&swarm, config);
        stream_opened(&swarm, 1, Duration::from_secs(1)).await;
        // A quiet swarm whose engine answers: asked after each silence, the stream is kept.
        tokio::time::sleep(Duration::from_secs(35)).await;
        assert_eq!(
            swarm.count(Op::Events),
            1,
            "a quiet stream is not reconnected"
        );
        assert_eq!(swarm.count(Op::Info), 3, "one ping per silence");

        // The engine hangs: the ping after the next silence times out, and the stream is
        // reopened after a backoff that grows with each failed ping.
        swarm.set_latency(Op::Info, 24 * HOUR);
        let hung_at = Instant::now();
        let mut opened = vec![stream_opened(&swarm, 2, Duration::from_secs(20)).await];
        assert!(
            opened[0] - hung_at <= Duration::from_secs(5 + 2 + 1),
            "{:?}",
            opened[0] - hung_at
        );
        for n in 3..=6 {
            opened.push(stream_opened(&swarm, n, Duration::from_secs(120)).await);
        }
        // Each gap: the silence, the ping's deadline, then the backoff (doubling from 0.5 s,
        // with up to 100 % jitter).
        let backoffs: Vec<Duration> = opened
            .windows(2)
            .map(|w| w[1] - w[0] - Duration::from_secs(10 + 2))
            .collect();
        assert!(backoffs[3] > backoffs[0], "backoff grows: {backoffs:?}");
        assert!(
            backoffs[3] >= Duration::from_secs(4),
            "4th delay ≥ 0.5 s × 2³: {backoffs:?}"
        );

        // The engine answers again: the stream opened while it hung is suspect and replaced
        // at the next silence, at once; after that a quiet stream is kept again.
        swarm.set_latency(Op::Info, Duration::ZERO);
        let before = swarm.count(Op::Events);
        stream_opened(&swarm, before + 1, Duration::from_secs(10 + 2 + 1)).await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(
            swarm.count(Op::Events),
            before + 1,
            "a healthy quiet stream is kept"
        );

        stop.cancel();
        task.await.unwrap();
    }

    /// A hang shorter than the silence: the ping after it is answered, but the stream lived
    /// through a read that got no answer, so it is replaced (and the swarm listed) once.
    #[tokio::test(start_paused = true)]
    async fn a_stream_that_lived_through_an_unanswered_read_is_replaced() {
        let swarm = Arc::new(MemorySwarm::default());
        let config = WatchConfig {
            resync: HOUR,
            task_poll: Duration::from_secs(1),
            deadlines: Deadlines {
                read: Duration::from_secs(2),
                write: Duration::from_secs(5),
                events_silence: Duration::from_secs(10),
            },
        };
        let (stop, task) = start(&swarm, config);
        tokio::time::sleep(Duration::from_secs(25)).await;
        assert_eq!(swarm.count(Op::Events), 1, "a quiet stream is kept");
        swarm.fail(crate::docker::memory::FailRule {
            op: Op::ListTasks,
            name: None,
            times: Some(1),
            make: |_| DockerError::Timeout {
                op: Op::ListTasks,
                after: Duration::from_secs(2),
            },
        });
        stream_opened(&swarm, 2, Duration::from_secs(10 + 1)).await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(swarm.count(Op::Events), 2, "replaced once");
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_drops_a_read_the_engine_never_answers() {
        let swarm = Arc::new(MemorySwarm::default());
        swarm.set_latency(Op::ListTasks, 24 * HOUR);
        let config = WatchConfig {
            resync: HOUR,
            task_poll: Duration::from_secs(1),
            deadlines: Deadlines::default(),
        };
        let (stop, task) = start(&swarm, config);
        while swarm.count(Op::ListTasks) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let started = Instant::now();
        stop.cancel();
        task.await.unwrap();
        assert_eq!(started.elapsed(), Duration::ZERO, "returned at once");
    }
}
