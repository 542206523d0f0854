//! What the status page and `--file-sd` cost the operator, in memory (no swarm needed).
//!
//! `cargo bench -p swarm-operator --bench page` (env: `BENCH_SERVICES`, default 500;
//! `BENCH_REPLICAS`, default 3; `BENCH_NODES`, default 3; `BENCH_ROUNDS`, default 50).
//!
//! The world holds N services loaded from real spec files, each with R running tasks spread
//! over the nodes. The status publisher builds the status and the overview once per change and
//! every open page shares its snapshot (whose board is rendered once); `--file-sd` builds the
//! discovery once per snapshot. A reader's snapshot of the view (`World::snapshot`) and the
//! copy the reflector's next write makes of the view's maps are timed too. The medians of
//! those steps are printed, with the
//! size of the page and of the JSON. Then the idle scenario: the page served with
//! `BENCH_STREAMS` (default 20) open event streams and nothing changing for `BENCH_IDLE_SECS`
//! (default 20), and the CPU the process used meanwhile.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use swarm_operator::control::triggers;
use swarm_operator::control::world::{World, WorldState};
use swarm_operator::docker::{
    EngineValue, NodeAvailability, NodeRole, ObservedNode, ObservedService, ObservedTask,
    Ownership, TaskAddress, TaskState,
};
use swarm_operator::election::Leadership;
use swarm_operator::report::status::publisher::{Publisher, PublisherConfig, Snapshot};
use swarm_operator::report::{activity, file_sd, page, status};
use swarm_operator::spec::SpecStore;

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn world(services: usize, replicas: usize, nodes: usize) -> WorldState {
    let dir = tempfile::tempdir().expect("temp dir");
    for i in 0..services {
        std::fs::write(
            dir.path().join(format!("svc{i:04}.yaml")),
            format!(
                "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata:\n  name: svc{i:04}\n  labels: {{prometheus.io/port: \"9100\", team: bench}}\nspec:\n  image: registry:5000/bench/app:1.{i}\n  replicas: {replicas}\n  networks: [bench_net]\n  endpointMode: dnsrr\n"
            ),
        )
        .expect("writing a spec");
    }
    let networks = BTreeSet::from(["bench_net".to_owned()]);
    let desired = triggers::reload_specs(
        &mut SpecStore::new(),
        dir.path(),
        swarm_operator::desired::OnSwarm::networks_only(&networks),
        false,
        "default",
        swarm_operator::spec::ReadScope::Whole,
        None,
    )
    .expect("loading the specs")
    .expect("built when there is nothing to compare with");
    assert!(desired.errors.is_empty(), "{:?}", desired.errors);
    let mut world = WorldState::default();
    for n in 0..nodes {
        let id = format!("node{n}");
        world.observed.nodes.insert(
            id.clone(),
            ObservedNode {
                id,
                hostname: format!("host-{n}"),
                state: "ready".into(),
                role: if n == 0 {
                    NodeRole::Manager
                } else {
                    NodeRole::Worker
                },
                availability: NodeAvailability::Active,
            },
        );
    }
    let mut ip = 0u32;
    for (name, object) in &desired.services {
        let id = format!("id-{name}");
        world.observed.services.insert(
            name.clone(),
            Arc::new(ObservedService {
                id: id.clone(),
                version: 1,
                definition: std::sync::Arc::clone(&object.definition),
                ownership: Ownership::from_labels(&object.owner_labels()),
                virtual_ips: vec![],
                update_status: None,
                revision: Default::default(),
            }),
        );
        for slot in 1..=replicas {
            ip += 1;
            Arc::make_mut(&mut world.observed.tasks).push(ObservedTask {
                id: format!("{name}-task{slot}"),
                service_id: id.clone(),
                slot: Some(slot as u64),
                node_id: Some(format!("node{}", ip as usize % nodes)),
                state: EngineValue::Known(TaskState::RUNNING),
                desired_state: EngineValue::Known(TaskState::RUNNING),
                message: "started".into(),
                error: None,
                exit_code: None,
                timestamp: None,
                template: None,
                addresses: vec![TaskAddress {
                    network: "bench_net".into(),
                    ip: format!("10.{}.{}.{}", ip >> 16, (ip >> 8) & 255, ip & 255),
                }],
            });
        }
    }
    world.desired = Arc::new(desired);
    world.specs_loaded = true;
    world.swarm_observed = true;
    world
}

/// Median time of `rounds` runs of `step`.
fn median<T>(rounds: usize, mut step: impl FnMut() -> T) -> (Duration, T) {
    let mut times = Vec::with_capacity(rounds);
    let mut last = None;
    for _ in 0..rounds {
        let start = Instant::now();
        let out = step();
        times.push(start.elapsed());
        last = Some(out);
    }
    times.sort();
    (times[rounds / 2], last.expect("at least one round"))
}

fn main() {
    let services = env_num("BENCH_SERVICES", 500);
    let replicas = env_num("BENCH_REPLICAS", 3);
    let nodes = env_num("BENCH_NODES", 3).max(1);
    let rounds = env_num("BENCH_ROUNDS", 50).max(1);
    let world = world(services, replicas, nodes);
    let log = activity::ActivityLog::default();
    println!(
        "{services} services × {replicas} running tasks on {nodes} nodes; median of {rounds} rounds"
    );

    let now = "2026-01-01T00:00:00Z";
    let (status_time, built) = median(rounds, || {
        status::build(&world, Path::new("/specs"), None, now)
    });
    println!("status::build                    {status_time:>10.2?}");
    let (overview_time, view) = median(rounds, || {
        Snapshot::build(
            &world,
            Path::new("/specs"),
            Some(&built),
            log.recent(),
            true,
            now,
        )
    });
    let view = view.overview().clone();
    println!("Snapshot::build (status+overview) {overview_time:>10.2?}");
    // What a reader's snapshot costs: the `Arc` clone under the lock, and the reflector's
    // first write after it, which copies the view's maps (a name and an `Arc` per entry).
    let shared = World::from_state(world.clone());
    let (snapshot_time, _) = median(rounds, || shared.snapshot());
    println!("World::snapshot                  {snapshot_time:>10.2?}");
    let (copy_time, _) = median(rounds, || world.clone());
    println!("copy on write after a snapshot   {copy_time:>10.2?}");
    let (board_time, board) = median(rounds, || page::render_board(&view).into_string());
    println!(
        "page::render_board               {board_time:>10.2?}   ({} KiB)",
        board.len() / 1024
    );
    let (json_time, json) = median(rounds, || serde_json::to_vec(&view).expect("JSON"));
    println!(
        "/api/v1/status JSON               {json_time:>10.2?}   ({} KiB)",
        json.len() / 1024
    );
    let (sd_time, groups) = median(rounds, || file_sd::render(&file_sd::build(&world).groups));
    println!(
        "file_sd::build + render          {sd_time:>10.2?}   ({} KiB)",
        groups.len() / 1024
    );
    let per_change = overview_time + board_time;
    println!(
        "per change of the view: {per_change:.2?} for the status, the overview and the board (shared by every page); file_sd: {sd_time:.2?}"
    );
    idle_pages(world);
}

/// CPU time (user + system) this process used so far.
fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF and a valid pointer.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    assert_eq!(rc, 0, "getrusage");
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// The idle operator with open pages (issue 17: 2,000 services, 20 pages, idle 60 s, at most
/// 2 % of a core): the page served on 127.0.0.1, `BENCH_STREAMS` clients reading its event
/// stream, nothing changing for `BENCH_IDLE_SECS`; prints the process's CPU time over that
/// window (getrusage, so it counts every thread: server, page and clients).
fn idle_pages(world: WorldState) {
    let streams = env_num("BENCH_STREAMS", 20);
    let idle = Duration::from_secs(env_num("BENCH_IDLE_SECS", 20) as u64);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async move {
        let stop = tokio_util::sync::CancellationToken::new();
        let dir = tempfile::tempdir().expect("temp dir");
        let publisher = Publisher::new(
            PublisherConfig {
                specs_dir: "/specs".into(),
                status_file: dir.path().join("status.json"),
                leadership: Leadership::always(),
            },
            World::from_state(world),
            activity::ActivityLog::default(),
            std::sync::Arc::new(swarm_operator::report::metrics::Metrics::new()),
            Default::default(),
        );
        let state = page::PageState::new(publisher.subscribe(), stop.clone());
        let publishing = tokio::spawn(publisher.run(stop.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding 127.0.0.1:0");
        let address = listener.local_addr().expect("address");
        let server = tokio::spawn(
            axum::serve(listener, page::router(state))
                .with_graceful_shutdown(stop.clone().cancelled_owned())
                .into_future(),
        );
        let received = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for _ in 0..streams {
            let received = received.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut socket = tokio::net::TcpStream::connect(address)
                    .await
                    .expect("connecting to the page");
                socket
                    .write_all(b"GET /api/v1/events HTTP/1.1\r\nHost: bench\r\n\r\n")
                    .await
                    .expect("requesting the events");
                let mut buffer = vec![0u8; 1 << 16];
                while let Ok(n) = socket.read(&mut buffer).await {
                    if n == 0 {
                        break;
                    }
                    received.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
        // Every page has its first board before the idle window starts.
        while received.load(std::sync::atomic::Ordering::Relaxed) < streams * 1024 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (cpu_before, wall) = (cpu_time(), Instant::now());
        tokio::time::sleep(idle).await;
        let (cpu, wall) = (cpu_time() - cpu_before, wall.elapsed());
        println!(
            "idle {wall:.1?} with {streams} open event streams: {cpu:.2?} of CPU ({:.2} % of a core)",
            cpu.as_secs_f64() / wall.as_secs_f64() * 100.0
        );
        stop.cancel();
        let _ = server.await;
        let _ = publishing.await;
    });
}
