//! What the status page and `--file-sd` cost the operator, in memory (no swarm needed).
//!
//! `cargo bench -p swarm-operator --bench page` (env: `BENCH_SERVICES`, default 500;
//! `BENCH_REPLICAS`, default 3; `BENCH_NODES`, default 3; `BENCH_ROUNDS`, default 50).
//!
//! The world holds N services loaded from real spec files, each with R running tasks spread
//! over the nodes. Each open page costs one overview build and one board render per second
//! (sent only when it changed); `--file-sd` costs one discovery build and one JSON render per
//! second (written only when it changed). The medians of those steps are printed, with the
//! size of the page and of the JSON.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use swarm_operator::docker::{
    EngineValue, NodeAvailability, NodeRole, ObservedNode, ObservedService, ObservedTask,
    Ownership, TaskAddress, TaskState,
};
use swarm_operator::spec::SpecStore;
use swarm_operator::world::WorldState;
use swarm_operator::{activity, file_sd, overview, page, status, triggers};

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
        &networks,
        false,
        "default",
    )
    .expect("loading the specs");
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
            ObservedService {
                id: id.clone(),
                version: 1,
                definition: object.definition.clone(),
                ownership: Ownership::from_labels(&object.owner_labels()),
                virtual_ips: vec![],
                update_status: None,
                revision: Default::default(),
            },
        );
        for slot in 1..=replicas {
            ip += 1;
            world.observed.tasks.push(ObservedTask {
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
    world.desired = desired;
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
        let status = status::build(&world, Path::new("/specs"), Some(&built), now);
        overview::build(&world, status, log.recent(), true)
    });
    println!("status + overview::build         {overview_time:>10.2?}");
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
    let per_page = overview_time + board_time;
    println!(
        "per open page: {per_page:.2?} of CPU per second ({:.2} %); file_sd: {sd_time:.2?} per second ({:.2} %)",
        per_page.as_secs_f64() * 100.0,
        sd_time.as_secs_f64() * 100.0
    );
}
