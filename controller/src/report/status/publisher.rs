//! Builds the status and the page's overview once per change of the view, writes the status
//! file, and publishes both to every viewer as one immutable [`Snapshot`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use backon::{BackoffBuilder as _, ExponentialBackoff, ExponentialBuilder};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::control::world::{World, WorldState};
use crate::election::Leadership;
use crate::report::activity::{ActivityEvent, ActivityLog};
use crate::report::metrics::Metrics;
use crate::report::notify::{Notifier, StatusEvents};
use crate::report::overview::{self, Overview};
use crate::report::status::{self, StatusError, StatusFile};

/// Coalesces bursts (a rollout touches many tasks) into one pass.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// Building and writing the status grows with the swarm (about 50 ms for 3,000 services, a
/// 5.9 MB file at 5,000): while the world keeps changing, the publisher waits nine times what
/// the last pass took, so it never takes more than a tenth of a core. On a manager the operator
/// shares the cores with the engine, whose raft work bounds how fast a burst of creates lands:
/// at 5,000 services a factor of 4 made the status passes the operator's largest CPU cost
/// during convergence (controller/BENCHMARK.md, "scale as users meet it").
const PACE_FACTOR: u32 = 9;
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

    /// The one way a status is built, by the publisher and by `get`/`wait` alike: from `view`,
    /// with the conditions' transition times carried over from `previous` (the previous
    /// snapshot's status, or the status file read at start) where a condition did not change.
    /// `now` (RFC 3339) stamps new transitions and `generatedAt`.
    pub fn build(
        view: &WorldState,
        specs_dir: &Path,
        previous: Option<&StatusFile>,
        activity: Vec<ActivityEvent>,
        leader: bool,
        now: &str,
    ) -> Self {
        let status = status::build(view, specs_dir, previous, now);
        Snapshot::new(overview::build(view, status, activity, leader))
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
    /// The status file as read at start, until [`Publisher::run`] has written and announced
    /// the first snapshot's changes from it.
    seed: Option<StatusFile>,
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
        let seed = status::read(&config.status_file);
        let first = Snapshot::build(
            &world.snapshot(),
            &config.specs_dir,
            seed.as_ref(),
            activity.recent(),
            config.leadership.is_leader(),
            &now(),
        );
        let (sender, _) = watch::channel(Arc::new(first));
        Publisher {
            config,
            seed,
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
            seed,
            world,
            activity,
            metrics,
            notifier,
            sender,
        } = self;
        let mut leadership = config.leadership.clone();
        // The previous snapshot is the only memory: of the conditions' transition times, and
        // of what was announced. The first one was built against the status file; what changed
        // since that file is written and announced on the first pass.
        let mut status_events = StatusEvents::default();
        let mut unwritten = {
            let first = sender.borrow().clone();
            let changed = seed
                .as_ref()
                .is_none_or(|s| !status::same_content(s, first.status()));
            if changed {
                announce(
                    &notifier,
                    &mut status_events,
                    &world.snapshot(),
                    seed.as_ref(),
                    first.status(),
                    config.leadership.is_leader(),
                );
            }
            changed
        };
        drop(seed);
        let mut retry: Option<Duration> = None;
        // The delays of the current run of failed writes; `None` after a success.
        let mut retries: Option<ExponentialBackoff> = None;
        let mut pace = DEBOUNCE;
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
            let previous = sender.borrow().clone();
            // A snapshot of the view: the reflector keeps writing while the status is built.
            let view = world.snapshot();
            let next = Snapshot::build(
                &view,
                &config.specs_dir,
                Some(previous.status()),
                activity.recent(),
                leader,
                &now(),
            );
            let changed = !status::same_content(previous.status(), next.status());
            if changed {
                announce(
                    &notifier,
                    &mut status_events,
                    &view,
                    Some(previous.status()),
                    next.status(),
                    leader,
                );
            }
            drop(view);
            let next = Arc::new(next);
            // Only a change of what the page shows wakes its event streams. A status whose
            // content did not change is not published either, so the previous snapshot keeps
            // the transition times the next pass starts from.
            if !same_view(previous.overview(), next.overview()) {
                sender.send_replace(next.clone());
            }
            drop(previous);
            if stopping || retry.is_some() || unwritten || changed {
                match status::write_atomic(&config.status_file, next.status()) {
                    Ok(()) => {
                        if retry.take().is_some() {
                            info!(path = %config.status_file.display(), "status file written again");
                        }
                        retries = None;
                        metrics.status_write_succeeded();
                        unwritten = false;
                    }
                    Err(error) if stopping => return Err(error),
                    Err(error) => {
                        let delay = retries
                            .get_or_insert_with(|| {
                                ExponentialBuilder::default()
                                    .with_min_delay(RETRY_MIN)
                                    .with_max_delay(RETRY_MAX)
                                    .without_max_times()
                                    .build()
                            })
                            .next()
                            .unwrap_or(RETRY_MAX);
                        warn!(%error, retry_in = ?delay,
                              "writing the status file failed (full or read-only file system?); retrying");
                        metrics.status_write_failed(&error);
                        retry = Some(delay);
                        unwritten = true;
                    }
                }
            }
            drop(next);
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

/// Announces the changes from `previous` to `next` (both built by [`Snapshot::build`]): only
/// the leader does; followers see the same changes and keep quiet.
fn announce(
    notifier: &Notifier,
    status_events: &mut StatusEvents,
    view: &WorldState,
    previous: Option<&StatusFile>,
    next: &StatusFile,
    leader: bool,
) {
    let revision = view.desired.revision.as_ref();
    let events = status_events
        .changes(previous, next, |name| {
            view.desired.services.get(name).map(|d| d.hash.to_string())
        })
        .into_iter()
        .map(|event| event.at(revision));
    if leader {
        events.for_each(|e| notifier.send(e));
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
        && a.revision == b.revision
}

fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::control::plan::ObjectKey;
    use crate::control::world::{Observation, Reflector};
    use crate::desired::DesiredState;
    use crate::docker::ObservedService;
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
        let mut desired = world.snapshot().desired.as_ref().clone();
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

    /// `services` services of this instance, desired and running one task each.
    fn large_world(services: usize) -> WorldState {
        use crate::desired::DesiredObject;
        use crate::desired::definition::DEFAULT_INSTANCE;
        use crate::desired::definition::tests::sample_service;
        use crate::docker::{ObservedService, Ownership};
        use crate::report::overview::tests::task;

        let mut world = WorldState::default();
        let desired = Arc::make_mut(&mut world.desired);
        let tasks = Arc::make_mut(&mut world.observed.tasks);
        for i in 0..services {
            let name = format!("svc{i:04}");
            let object =
                DesiredObject::new(sample_service(&name), "a.yaml".into(), DEFAULT_INSTANCE);
            let id = format!("id-{name}");
            world.observed.services.insert(
                name.clone(),
                Arc::new(ObservedService {
                    id: id.clone(),
                    version: 1,
                    definition: Arc::clone(&object.definition),
                    ownership: Ownership::from_labels(&object.owner_labels()),
                    virtual_ips: vec![],
                    update_status: None,
                    revision: Default::default(),
                }),
            );
            tasks.push(task(&format!("t-{name}"), &id, 1, "n1", "running"));
            desired.services.insert(name, object);
        }
        world.specs_loaded = true;
        world.swarm_observed = true;
        world
    }

    /// The point of snapshots: a status built from a large view (3,000 services) does not
    /// hold the reflector off. The reader keeps its snapshot until told to let go, which is
    /// only after the reflector applied two writes; with a lock guard instead of a snapshot
    /// those writes would wait for the reader, and the test would fail at its deadline.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_status_build_over_a_snapshot_does_not_block_the_reflector() {
        let world = World::from_state(large_world(3_000));
        let (tx, _keys) = tokio::sync::mpsc::unbounded_channel();
        let (reflector, reporter) = Reflector::new(world.clone(), tx);
        tokio::spawn(reflector.run());
        let (holding, held) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let reader = {
            let world = world.clone();
            std::thread::spawn(move || {
                let view = world.snapshot();
                holding.send(()).expect("test waits");
                let started = Instant::now();
                let built =
                    Snapshot::build(&view, Path::new("/specs"), None, Vec::new(), true, "now");
                let took = started.elapsed();
                released.recv().expect("released");
                (view, built, took)
            })
        };
        tokio::task::block_in_place(|| held.recv()).expect("reader holds its snapshot");
        let before = world.snapshot();

        // Two writes while the reader holds its snapshot: an observation of one service, and
        // a reload that drops another.
        let started = Instant::now();
        let mut changed = ObservedService::clone(&before.observed.services["svc0001"]);
        changed.version = 2;
        Arc::make_mut(&mut changed.definition).image = "changed".into();
        let mut desired = DesiredState::clone(&before.desired);
        desired.services.remove("svc0002");
        let writes = async {
            reporter
                .observed(Observation::Service {
                    ticket: world.ticket(),
                    name: "svc0001".into(),
                    service: Some(Box::new(changed)),
                })
                .await;
            reporter.desired(desired).await;
        };
        tokio::time::timeout(Duration::from_secs(120), writes)
            .await
            .expect("the reflector wrote while a snapshot was held");
        let wrote = started.elapsed();
        let after = world.snapshot();
        release.send(()).expect("reader waits");
        let (view, built, took) = reader.join().expect("reader");
        println!("status build over the snapshot: {took:?}; two writes meanwhile: {wrote:?}");

        assert_eq!(
            after.observed.services["svc0001"].definition.image,
            "changed"
        );
        assert!(!after.desired.services.contains_key("svc0002"));
        // The reader's snapshot and what it built are the view as it was.
        assert!(Arc::ptr_eq(&view, &before));
        assert_ne!(
            view.observed.services["svc0001"].definition.image,
            "changed"
        );
        assert!(view.desired.services.contains_key("svc0002"));
        assert_eq!(built.status().services.len(), 3_000);
        // The write copied the maps' entries, not the objects: every other service is the
        // same allocation in both views, and so is the task list, which did not change.
        assert!(Arc::ptr_eq(
            &before.observed.services["svc0003"],
            &after.observed.services["svc0003"]
        ));
        assert!(Arc::ptr_eq(&before.observed.tasks, &after.observed.tasks));
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
