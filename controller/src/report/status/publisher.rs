//! Builds the status and the page's overview once per change of the view, writes the status
//! file, and publishes both to every viewer as one immutable [`Snapshot`].

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::control::world::World;
use crate::election::Leadership;
use crate::report::activity::ActivityLog;
use crate::report::metrics::Metrics;
use crate::report::notify::{Notifier, StatusEvents};
use crate::report::overview::{self, Overview};
use crate::report::status::{self, StatusError, StatusFile};

/// Coalesces bursts (a rollout touches many tasks) into one pass.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// Building and writing the status grows with the swarm (about 50 ms for 3,000 services):
/// while the world keeps changing, the publisher waits four times what the last pass took, so
/// it never takes more than a fifth of a core from the reconciles it reports on.
const PACE_FACTOR: u32 = 4;
const PACE_MAX: Duration = Duration::from_secs(2);
/// Conditions also change with time alone (a rollout passing its deadline, a lease lapsing);
/// nothing is written or published unless the content changed.
const RECHECK: Duration = Duration::from_secs(5);
const RETRY_MIN: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// What every viewer sees: the overview (whose `status` is what the status file holds), built
/// once, never changed after it is published.
#[derive(Debug)]
pub struct Snapshot {
    overview: Overview,
    /// The page's board, rendered by the first viewer that needs it and shared by all of them.
    board: OnceLock<String>,
}

impl Snapshot {
    /// A snapshot of `overview`.
    pub fn new(overview: Overview) -> Self {
        Snapshot {
            overview,
            board: OnceLock::new(),
        }
    }

    /// The overview (status, nodes and tasks, activity, leadership).
    pub fn overview(&self) -> &Overview {
        &self.overview
    }

    /// The status, as the status file holds it.
    pub fn status(&self) -> &StatusFile {
        &self.overview.status
    }

    /// The board as `render` makes it from the overview; rendered once, the first time it is
    /// asked for (the renderer lives with the page, which is the only one that needs it).
    pub fn board(&self, render: impl FnOnce(&Overview) -> String) -> &str {
        self.board.get_or_init(|| render(&self.overview))
    }
}

/// The receiving end: the latest snapshot, and a wait for the next one.
pub type Snapshots = watch::Receiver<Arc<Snapshot>>;

/// Where the publisher reads from and writes to.
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// The spec directory (error file names are shown relative to it).
    pub specs_dir: PathBuf,
    /// Where the status file goes; it also seeds the conditions' transition times.
    pub status_file: PathBuf,
    /// Whether this replica leads (shown, and only the leader announces changes).
    pub leadership: Leadership,
}

/// The one builder of the status: see [`Publisher::run`].
pub struct Publisher {
    config: PublisherConfig,
    world: World,
    activity: ActivityLog,
    metrics: Arc<Metrics>,
    notifier: Notifier,
    sender: watch::Sender<Arc<Snapshot>>,
}

impl Publisher {
    /// A publisher of what `world` and `activity` hold, whose first snapshot is built now (so
    /// that a page asked before the first change has something to show); status changes are
    /// announced through `notifier`, file writes counted in `metrics`.
    pub fn new(
        config: PublisherConfig,
        world: World,
        activity: ActivityLog,
        metrics: Arc<Metrics>,
        notifier: Notifier,
    ) -> Self {
        let previous = status::read(&config.status_file);
        let first = {
            let state = world.read();
            let status = status::build(&state, &config.specs_dir, previous.as_ref(), &now());
            overview::build(
                &state,
                status,
                activity.recent(),
                config.leadership.is_leader(),
            )
        };
        let (sender, _) = watch::channel(Arc::new(Snapshot::new(first)));
        Publisher {
            config,
            world,
            activity,
            metrics,
            notifier,
            sender,
        }
    }

    /// The snapshots, from the latest one on.
    pub fn subscribe(&self) -> Snapshots {
        self.sender.subscribe()
    }

    /// Builds the status whenever the world, the activity log or the leadership changed, at
    /// most every [`DEBOUNCE`] (more apart while building takes long), and once more at
    /// shutdown; writes the file when its content changed and publishes a snapshot when
    /// anything the page shows changed. A failed write (disk full, read-only volume) is logged
    /// when it happens, counted, shown on `/readyz`, and retried with backoff until it
    /// succeeds; it never stops the publisher.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), StatusError> {
        let Publisher {
            config,
            world,
            activity,
            metrics,
            notifier,
            sender,
        } = self;
        let mut leadership = config.leadership.clone();
        // What the conditions' transition times and the notifications are computed against:
        // the last status built (written, unless `unwritten`).
        let mut last: Option<StatusFile> = status::read(&config.status_file);
        let mut unwritten = false;
        let mut retry: Option<Duration> = None;
        let mut pace = DEBOUNCE;
        let mut status_events = StatusEvents::default();
        loop {
            let stopping = match retry {
                Some(delay) => tokio::select! {
                    () = tokio::time::sleep(delay) => false,
                    () = shutdown.cancelled() => true,
                },
                None => tokio::select! {
                    () = world.changed() => false,
                    () = activity.changed() => false,
                    () = leadership.changed() => false,
                    () = tokio::time::sleep(RECHECK) => false,
                    () = shutdown.cancelled() => true,
                },
            };
            if !stopping && retry.is_none() {
                tokio::time::sleep(pace).await;
            }
            let started = Instant::now();
            let leader = config.leadership.is_leader();
            let (next, view, changed) = {
                let state = world.read();
                let next = status::build(&state, &config.specs_dir, last.as_ref(), &now());
                let changed = last
                    .as_ref()
                    .is_none_or(|l| !status::same_content(l, &next));
                if changed {
                    let events = status_events.changes(last.as_ref(), &next, |name| {
                        state.desired.services.get(name).map(|d| d.hash.clone())
                    });
                    // Followers see the same changes; only the leader announces them.
                    if leader {
                        events.into_iter().for_each(|e| notifier.send(e));
                    }
                }
                let view = overview::build(&state, next.clone(), activity.recent(), leader);
                (next, view, changed)
            };
            // Only a change of what the page shows wakes its event streams.
            if !same_view(sender.borrow().overview(), &view) {
                sender.send_replace(Arc::new(Snapshot::new(view)));
            }
            if stopping || retry.is_some() || unwritten || changed {
                match status::write_atomic(&config.status_file, &next) {
                    Ok(()) => {
                        if retry.take().is_some() {
                            info!(path = %config.status_file.display(), "status file written again");
                        }
                        metrics.status_write_succeeded();
                        unwritten = false;
                    }
                    Err(error) if stopping => return Err(error),
                    Err(error) => {
                        let delay = retry.map_or(RETRY_MIN, |d| (d * 2).min(RETRY_MAX));
                        warn!(%error, retry_in = ?delay,
                              "writing the status file failed (full or read-only file system?); retrying");
                        metrics.status_write_failed(&error);
                        retry = Some(delay);
                        unwritten = true;
                    }
                }
            }
            last = Some(next);
            // The pass allocated the whole status several times over (built, copied into the
            // overview, serialized); without this the resident size keeps the peak of the
            // largest pass.
            crate::allocator::release_free_memory();
            pace = (started.elapsed() * PACE_FACTOR).clamp(DEBOUNCE, PACE_MAX);
            if stopping {
                info!(path = %config.status_file.display(), "final status written");
                return Ok(());
            }
        }
    }
}

/// Whether two overviews show the same thing (the time they were built aside).
fn same_view(a: &Overview, b: &Overview) -> bool {
    status::same_content(&a.status, &b.status)
        && a.leader == b.leader
        && a.instance == b.instance
        && a.nodes == b.nodes
        && a.unassigned == b.unassigned
        && a.activity == b.activity
}

fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::control::plan::ObjectKey;
    use crate::control::world::Reflector;
    use crate::report::activity::ActivityKind;
    use crate::report::overview::tests::{sample_overview, sample_world};

    fn publisher(world: World, activity: ActivityLog, dir: &std::path::Path) -> Publisher {
        Publisher::new(
            PublisherConfig {
                specs_dir: "/specs".into(),
                status_file: dir.join("status.json"),
                leadership: Leadership::always(),
            },
            world,
            activity,
            Arc::new(Metrics::new()),
            Notifier::default(),
        )
    }

    /// The paused clock runs through many rechecks while nothing changes: no snapshot is
    /// published (no event stream wakes), and the file is written once.
    #[tokio::test(start_paused = true)]
    async fn nothing_is_published_while_nothing_changes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let publisher = publisher(
            World::from_state(sample_world()),
            ActivityLog::default(),
            dir.path(),
        );
        let mut snapshots = publisher.subscribe();
        let first = snapshots.borrow().clone();
        assert!(first.status().services.contains_key("web"), "{first:?}");
        let stop = CancellationToken::new();
        let running = tokio::spawn(publisher.run(stop.clone()));
        let waited =
            tokio::time::timeout(RECHECK * 12 + Duration::from_secs(1), snapshots.changed()).await;
        assert!(waited.is_err(), "published without a change");
        assert!(Arc::ptr_eq(&first, &snapshots.borrow()));
        let written = status::read(&dir.path().join("status.json")).expect("status file");
        assert!(status::same_content(&written, first.status()));
        stop.cancel();
        running.await.expect("publisher").expect("final write");
    }

    #[tokio::test(start_paused = true)]
    async fn an_activity_or_a_change_of_the_view_is_published_to_every_viewer() {
        let dir = tempfile::tempdir().expect("temp dir");
        let world = World::from_state(sample_world());
        let activity = ActivityLog::default();
        let publisher = publisher(world.clone(), activity.clone(), dir.path());
        let (mut page, mut other) = (publisher.subscribe(), publisher.subscribe());
        let stop = CancellationToken::new();
        let running = tokio::spawn(publisher.run(stop.clone()));

        // Within a second of the (paused, so exact) clock: woken by the change itself, not
        // by the recheck five seconds later.
        let soon = Duration::from_secs(1);
        activity.record(ActivityKind::Created, &ObjectKey::service("web"), "");
        tokio::time::timeout(soon, page.changed())
            .await
            .expect("published at once")
            .expect("published");
        other.changed().await.expect("published");
        let seen = page.borrow_and_update().clone();
        assert_eq!(seen.overview().activity.len(), 1, "{seen:?}");
        assert!(Arc::ptr_eq(&seen, &other.borrow_and_update()), "one build");

        let (tx, _keys) = tokio::sync::mpsc::unbounded_channel();
        let (reflector, reporter) = Reflector::new(world.clone(), tx);
        tokio::spawn(reflector.run());
        let mut desired = world.read().desired.clone();
        desired.instance = "other".into();
        reporter.desired(desired).await;
        tokio::time::timeout(soon, page.changed())
            .await
            .expect("published at once")
            .expect("published");
        assert_eq!(page.borrow().overview().instance, "other");
        stop.cancel();
        running.await.expect("publisher").expect("final write");
    }

    #[test]
    fn the_board_is_rendered_once_for_every_viewer() {
        let snapshot = Snapshot::new(sample_overview(&sample_world()));
        let renders = AtomicUsize::new(0);
        let render = |o: &Overview| {
            renders.fetch_add(1, Ordering::SeqCst);
            o.instance.clone()
        };
        for _ in 0..20 {
            assert_eq!(snapshot.board(render), "default");
        }
        assert_eq!(renders.load(Ordering::SeqCst), 1);
    }
}
