//! Scenario 13: the operator's own high availability on 3 managers + 1 worker. The operator is
//! redeployed in its HA form (a replica on every manager, a leader elected through a lease in
//! the swarm, specs stored in the swarm by `apply`); the leader's node is killed; another
//! replica takes over, and a spec applied after the failover is applied. A job scheduled every
//! 5 s runs throughout: each scheduled time runs once, by one replica, across the failover too
//! (issue 18: three operator replicas never run a job twice).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use xtask::cluster::Node;
use xtask::operator::{self, Deployment};
use xtask::swarm::Manager;

use super::{ACCOUNT, Env, NET, Outcome, PROBE, QUOTE, ensure};

/// Where this scenario's copy of the specs lives on the manager it uses.
const HA_SPECS: &str = "/srv/swarm-operator/ha-specs";
/// The lease config of the default instance.
const LEASE: &str = "swarm-operator-lease-default";
/// The target: node stop → first reconcile by the new leader.
const FAILOVER_TARGET: Duration = Duration::from_secs(20);
/// The scheduled job that runs through the failover.
pub(crate) const JOB: &str = "e2e-cron-tick";
/// Its period: `*/5 * * * * *`.
const JOB_PERIOD_NS: i128 = 5_000_000_000;

fn docker(m: &Manager, args: &[&str]) -> Result<String, String> {
    m.docker(args).output().map_err(|e| e.to_string())
}

/// The lease's holder (`node-hostname/task-id`), empty when released; `None` when the swarm
/// does not answer (no raft leader).
fn try_lease_holder(m: &Manager) -> Option<String> {
    m.docker([
        "config",
        "inspect",
        "--format",
        "{{index .Spec.Labels \"swarm-operator.io/lease-holder\"}}",
        LEASE,
    ])
    .output()
    .ok()
}

fn lease_holder(m: &Manager) -> String {
    try_lease_holder(m).unwrap_or_default()
}

/// Whether `node` is the swarm's raft leader.
fn is_raft_leader(m: &Manager, node: &str) -> bool {
    m.docker([
        "node",
        "inspect",
        "--format",
        "{{.ManagerStatus.Leader}}",
        node,
    ])
    .output()
    .is_ok_and(|l| l == "true")
}

/// The operator container on `node`, if one runs there.
fn operator_container(node: &Node) -> Option<String> {
    let filter = format!("label=com.docker.swarm.service.name={}", operator::SERVICE);
    node.docker(["ps", "-q", "--filter", &filter])
        .output()
        .ok()
        .and_then(|out| out.lines().next().map(str::to_owned))
}

/// The metrics of the operator replica on `node` (unlabelled and summed over labels), read
/// from inside its network namespace with the probe (the image has no shell or curl).
fn replica_metrics(node: &Node) -> Option<BTreeMap<String, f64>> {
    let container = operator_container(node)?;
    let url = format!("http://127.0.0.1:{}/metrics", operator::METRICS_PORT);
    let out = node
        .docker([
            "run",
            "--rm",
            "--network",
            &format!("container:{container}"),
            PROBE,
            "get",
            &url,
        ])
        .output()
        .ok()?;
    let line: serde_json::Value = serde_json::from_str(out.lines().next()?).ok()?;
    let text = line["body"].as_str()?;
    let mut metrics = BTreeMap::new();
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = l.rsplit_once(' ') else {
            continue;
        };
        let name = name.split('{').next().unwrap_or(name).to_owned();
        *metrics.entry(name).or_default() += value.parse::<f64>().unwrap_or(0.0);
    }
    Some(metrics)
}

/// Reconciles a replica ran past the leader gate: the only path to a write.
fn reconciles_as_leader(metrics: &BTreeMap<String, f64>) -> f64 {
    metrics
        .get("swarm_operator_reconciles_total")
        .copied()
        .unwrap_or(0.0)
        - metrics
            .get("swarm_operator_reconciles_skipped_as_follower_total")
            .copied()
            .unwrap_or(0.0)
}

/// Name → id of the app services and the network, and how often each name appears.
fn app_objects(m: &Manager) -> Result<(BTreeMap<String, String>, usize), String> {
    let services = docker(m, &["service", "ls", "--format", "{{.Name}} {{.ID}}"])?;
    let networks = docker(
        m,
        &[
            "network",
            "ls",
            "--filter",
            &format!("name={NET}"),
            "--format",
            "{{.Name}} {{.ID}}",
        ],
    )?;
    let mut objects = BTreeMap::new();
    let mut count = 0;
    for line in services.lines().chain(networks.lines()) {
        if let Some((name, id)) = line.split_once(' ')
            && [ACCOUNT, QUOTE, NET].contains(&name)
        {
            count += 1;
            objects.insert(name.to_owned(), id.to_owned());
        }
    }
    Ok((objects, count))
}

fn version(m: &Manager, svc: &str) -> Result<String, String> {
    docker(
        m,
        &["service", "inspect", "--format", "{{.Version.Index}}", svc],
    )
}

/// Whether `svc` asks for `n` replicas and runs them on nodes other than `lost`. Counted from
/// the tasks: `service ls` keeps counting a task of a lost node as running until the node is
/// back.
fn runs_replicas(m: &Manager, svc: &str, n: u64, lost: &str) -> bool {
    let spec = m
        .docker([
            "service",
            "inspect",
            "--format",
            "{{.Spec.Mode.Replicated.Replicas}}",
            svc,
        ])
        .output()
        .ok()
        .and_then(|r| r.trim().parse::<u64>().ok());
    let tasks = m
        .docker([
            "service",
            "ps",
            "--filter",
            "desired-state=running",
            "--format",
            "{{.Node}} {{.CurrentState}}",
            svc,
        ])
        .output()
        .unwrap_or_default();
    let running = tasks
        .lines()
        .filter(|l| !l.starts_with(&format!("{lost} ")) && l.contains(" Running"))
        .count() as u64;
    spec == Some(n) && running == n
}

/// The job: the probe resolving a name (it exits 0 at once), every 5 s; a time missed by up
/// to 30 s (a failover) runs once, late.
fn job_spec() -> String {
    format!(
        "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata: {{name: {JOB}}}\nspec:\n  image: {PROBE}\n  mode: replicated-job\n  args: [resolve, localhost]\n  restartPolicy: {{condition: none}}\n  schedule: \"*/5 * * * * *\"\n  startingDeadline: 30s\n"
    )
}

/// One reading of the job's service: its `ForceUpdate` (one more per run) and `UpdatedAt`
/// (the time of its last write, in Unix nanoseconds), and when it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct JobReading {
    force_update: u64,
    updated_at: i128,
    seen: Instant,
}

fn read_job(m: &Manager) -> Option<JobReading> {
    let out = m
        .docker([
            "service",
            "inspect",
            "--format",
            "{{.Spec.TaskTemplate.ForceUpdate}} {{.UpdatedAt.UnixNano}}",
            JOB,
        ])
        .output()
        .ok()?;
    let (force, updated) = out.trim().split_once(' ')?;
    Some(JobReading {
        force_update: force.parse().ok()?,
        updated_at: updated.parse().ok()?,
        seen: Instant::now(),
    })
}

/// Reads the job's service every half second from whichever manager answers, keeping each
/// reading that differs from the one before, until `stop`.
fn watch_job(
    managers: Vec<Manager>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<JobReading>> {
    std::thread::spawn(move || {
        let mut readings: Vec<JobReading> = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            if let Some(r) = managers.iter().find_map(read_job) {
                let last = readings.last().map(|l| (l.force_update, l.updated_at));
                if last != Some((r.force_update, r.updated_at)) {
                    readings.push(r);
                }
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        readings
    })
}

/// Scheduled times (multiples of the period) in `(after, upto]`.
fn slots_between(after: i128, upto: i128) -> i128 {
    upto.div_euclid(JOB_PERIOD_NS) - after.div_euclid(JOB_PERIOD_NS)
}

/// Each run is due at a scheduled time after the previous run's write (`UpdatedAt`) and
/// written at or after it: so between two readings, no more runs than scheduled times, and no
/// write that is not a run. Returns a line describing the readings around `killed`.
fn check_runs(readings: &[JobReading], killed: Instant) -> Result<String, String> {
    let mut around_kill = String::from("no run seen after the kill");
    for pair in readings.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let runs = b
            .force_update
            .checked_sub(a.force_update)
            .ok_or_else(|| format!("ForceUpdate went back: {a:?} -> {b:?}"))?;
        ensure(runs > 0, || {
            format!(
                "a write that is not a run (UpdatedAt moved, ForceUpdate did not): {a:?} -> {b:?}"
            )
        })?;
        let slots = slots_between(a.updated_at, b.updated_at);
        ensure(i128::from(runs) <= slots, || {
            format!(
                "{runs} run(s) for {slots} scheduled time(s) between writes at {} and {} (ns): a time ran twice",
                a.updated_at, b.updated_at
            )
        })?;
        if a.seen <= killed && b.seen > killed {
            around_kill = format!(
                "first change after the kill: {runs} run(s), {slots} scheduled time(s) since the run before ({:.1} s apart)",
                (b.updated_at - a.updated_at) as f64 / 1e9
            );
        }
    }
    Ok(around_kill)
}

/// Removes ANSI colour sequences (`ESC [ … m`) from a log line.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The scheduled times of the job's runs that operator replicas logged on `node` (every
/// operator container there, running or exited), as `YYYY-MM-DD HH:MM:SS`.
fn logged_runs(node: &Node) -> Result<Vec<String>, String> {
    let filter = format!("label=com.docker.swarm.service.name={}", operator::SERVICE);
    let ids = node
        .docker(["ps", "-aq", "--filter", &filter])
        .output()
        .map_err(|e| e.to_string())?;
    let mut dues = Vec::new();
    for id in ids.lines() {
        let (_, out, err) = node
            .docker(["logs", id])
            .output_any()
            .map_err(|e| e.to_string())?;
        for line in out.lines().chain(err.lines()).map(strip_ansi) {
            if !line.contains("ran the scheduled job") || !line.contains(JOB) {
                continue;
            }
            let due = line
                .split_once("due")
                .map(|(_, rest)| rest.trim_start_matches(['=', '"', ':']))
                .and_then(|rest| rest.get(..19))
                .ok_or_else(|| format!("no due time in {line:?}"))?;
            dues.push(due.to_owned());
        }
    }
    Ok(dues)
}

/// Writes the manifests into `HA_SPECS` on `node` with account-service at `replicas` (and the
/// scheduled job when `job`), and applies them from there.
fn apply_manifests(e: &Env, m: &Manager, account_replicas: u64, job: bool) -> Outcome {
    m.put_specs(&e.root.join("manifests"), HA_SPECS)
        .map_err(|x| x.to_string())?;
    if job {
        m.write_file(&format!("{HA_SPECS}/{JOB}.yaml"), &job_spec())
            .map_err(|x| x.to_string())?;
    }
    let account = e.original_spec("account-service.yaml")?;
    m.write_file(
        &format!("{HA_SPECS}/account-service.yaml"),
        &account.replacen("replicas: 3", &format!("replicas: {account_replicas}"), 1),
    )
    .map_err(|x| x.to_string())?;
    let printed = operator::apply_specs(m, HA_SPECS).map_err(|x| x.to_string())?;
    eprintln!("    apply: {}", printed.replace('\n', "; "));
    Ok(())
}

pub fn operator_failover(e: &Env) -> Outcome {
    let managers: Vec<Node> = e.cluster.managers().cloned().collect();
    ensure(managers.len() >= 3, || {
        format!(
            "{} manager(s): the failover needs 3 (cargo xtask e2e --nodes 4)",
            managers.len()
        )
    })?;
    // The running system, as the single-replica operator of the earlier scenarios keeps it.
    e.wait_apps(3, 3, Duration::from_secs(240))?;
    let (before, _) = app_objects(&e.m)?;
    let versions_before = (version(&e.m, ACCOUNT)?, version(&e.m, QUOTE)?);

    // The HA form takes over the running system: same specs, stored in the swarm.
    apply_manifests(e, &e.m, 3, true)?;
    operator::deploy(&e.m, Deployment::HighAvailability).map_err(|x| x.to_string())?;
    e.m.wait_converged(&[operator::SERVICE], 3, Duration::from_secs(120))
        .map_err(|x| x.to_string())?;
    e.wait("a leader holds the lease", Duration::from_secs(30), || {
        !lease_holder(&e.m).is_empty()
    })?;
    let holder = lease_holder(&e.m);
    let leader_host = holder.split('/').next().unwrap_or_default().to_owned();
    eprintln!("    leader: {holder}");

    // Normal operation: every replica serves metrics; only the leader reconciles.
    std::thread::sleep(Duration::from_secs(5));
    let mut leaders = Vec::new();
    for node in &managers {
        let metrics =
            replica_metrics(node).ok_or_else(|| format!("no metrics from {}", node.name))?;
        let leads = metrics.get("swarm_operator_leader") == Some(&1.0);
        let past_gate = reconciles_as_leader(&metrics);
        eprintln!(
            "    {}: leader={leads} reconciles as leader={past_gate}",
            node.name
        );
        if leads {
            leaders.push(node.name.clone());
        } else {
            ensure(past_gate == 0.0, || {
                format!(
                    "follower {} reconciled past the gate {past_gate} times",
                    node.name
                )
            })?;
        }
    }
    ensure(leaders == [leader_host.clone()], || {
        format!("leaders by metrics {leaders:?}, lease holder {holder}")
    })?;
    let versions_adopted = (version(&e.m, ACCOUNT)?, version(&e.m, QUOTE)?);
    ensure(versions_adopted == versions_before, || {
        format!(
            "adopting the running services wrote to them: {versions_before:?} -> {versions_adopted:?}"
        )
    })?;

    // The scheduled job runs every 5 s from now on; watch it from any manager that answers.
    let stop_watch = Arc::new(AtomicBool::new(false));
    let watcher = watch_job(
        managers
            .iter()
            .map(|n| Manager::Node(n.name.clone()))
            .collect(),
        Arc::clone(&stop_watch),
    );
    e.wait(
        "two scheduled runs of the job",
        Duration::from_secs(60),
        || read_job(&e.m).is_some_and(|r| r.force_update >= 2),
    )?;

    // Kill the leader's node; watch from a surviving manager.
    let victim = e
        .cluster
        .node(&leader_host)
        .ok_or_else(|| format!("the leader's node {leader_host} is not in the cluster"))?
        .clone();
    let survivor_node = managers
        .iter()
        .find(|n| n.name != victim.name)
        .expect("3 managers")
        .clone();
    let survivor = Manager::Node(survivor_node.name);
    // When the leader's node is also the swarm's raft leader, the swarm itself answers
    // nothing (not even reads) until raft has elected another one: that outage is measured
    // too, as the bound the operator cannot beat.
    let raft_leader_lost = is_raft_leader(&e.m, &victim.name);
    eprintln!(
        "    killing {} (the leader's node{})",
        victim.name,
        if raft_leader_lost {
            ", also the raft leader"
        } else {
            ""
        }
    );
    let force_at_kill = read_job(&e.m).map_or(0, |r| r.force_update);
    let killed = Instant::now();
    e.cluster.kill_node(&victim).map_err(|x| x.to_string())?;
    let result = (|| {
        let mut swarm_silent = false;
        let mut swarm_back: Option<Duration> = None;
        e.wait(
            "another replica holds the lease",
            Duration::from_secs(60),
            || match try_lease_holder(&survivor) {
                None => {
                    swarm_silent = true;
                    false
                }
                Some(h) => {
                    if swarm_silent && swarm_back.is_none() {
                        swarm_back = Some(killed.elapsed());
                    }
                    !h.is_empty() && !h.starts_with(&format!("{}/", victim.name))
                }
            },
        )?;
        let lease_taken = killed.elapsed();
        if let Some(back) = swarm_back {
            println!(
                "    the swarm answered again {} after the kill (raft re-election)",
                xtask::timing::fmt(back)
            );
        }
        let new_host = lease_holder(&survivor)
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let new_leader = e
            .cluster
            .node(&new_host)
            .ok_or_else(|| format!("new leader {new_host} not in the cluster"))?
            .clone();
        e.wait(
            "the new leader's first reconcile",
            Duration::from_secs(30),
            || replica_metrics(&new_leader).is_some_and(|m| reconciles_as_leader(&m) > 0.0),
        )?;
        let first_reconcile = killed.elapsed();
        println!(
            "    failover: node killed -> lease taken by {new_host} after {}, its first reconcile seen after {} (target {})",
            xtask::timing::fmt(lease_taken),
            xtask::timing::fmt(first_reconcile),
            xtask::timing::fmt(FAILOVER_TARGET)
        );
        // The reconcile is seen by polling (a probe container per poll): the lease, taken
        // by the same process right before it reconciles, bounds it more tightly.
        // Beyond the target only while the swarm itself had no raft leader, and then by no
        // more than one follower round after it answered again.
        let raft_bound = swarm_back.map(|back| back + Duration::from_secs(3));
        ensure(
            lease_taken <= FAILOVER_TARGET || raft_bound.is_some_and(|b| lease_taken <= b),
            || format!("failover took {lease_taken:?} (swarm answered again after {swarm_back:?})"),
        )?;

        // Nothing duplicated or removed across the failover.
        let (after, count) = app_objects(&survivor)?;
        ensure(after == before && count == before.len(), || {
            format!("objects before {before:?}, after {after:?} ({count} names)")
        })?;

        // A spec change applied after the failover is applied by the new leader.
        apply_manifests(e, &survivor, 4, true)?;
        e.wait(
            "account-service at 4 replicas",
            Duration::from_secs(120),
            || runs_replicas(&survivor, ACCOUNT, 4, &victim.name),
        )?;
        apply_manifests(e, &survivor, 3, true)?;
        e.wait(
            "account-service back at 3",
            Duration::from_secs(120),
            || runs_replicas(&survivor, ACCOUNT, 3, &victim.name),
        )?;
        let (after, _) = app_objects(&survivor)?;
        ensure(after == before, || {
            format!("objects changed identity: {before:?} -> {after:?}")
        })?;
        // The new leader goes on running the job.
        e.wait(
            "two runs by the new leader",
            Duration::from_secs(60),
            || read_job(&survivor).is_some_and(|r| r.force_update >= force_at_kill + 2),
        )
    })();
    // The job's runs, from the swarm: then the job goes (the specs without it).
    stop_watch.store(true, Ordering::Relaxed);
    let readings = watcher.join().unwrap_or_default();
    let runs = check_runs(&readings, killed);
    let removed = apply_manifests(e, &survivor, 3, false).and_then(|()| {
        e.wait("the job removed", Duration::from_secs(60), || {
            !survivor.docker(["service", "inspect", JOB]).succeeds()
        })
    });
    e.cluster.start_node(&victim).map_err(|x| x.to_string())?;
    let rejoined = e.wait(
        "the killed node back in the swarm",
        Duration::from_secs(120),
        || {
            survivor
                .docker([
                    "node",
                    "inspect",
                    "--format",
                    "{{.Status.State}}",
                    &victim.name,
                ])
                .output()
                .is_ok_and(|s| s == "ready")
        },
    );
    let logged = rejoined.and_then(|()| {
        let runs = runs?;
        eprintln!("    job: {} readings; {runs}", readings.len());
        check_logged_runs(&managers, &readings)
    });
    result.and(removed).and(logged)
}

/// The operator replicas' logs, the killed leader's included: no scheduled time was run twice,
/// and they ran as many times as the swarm counted up to the last reading.
fn check_logged_runs(managers: &[Node], readings: &[JobReading]) -> Outcome {
    let last = readings
        .last()
        .ok_or("the job was never read from the swarm")?;
    let mut by_node = Vec::new();
    let mut dues = Vec::new();
    for node in managers {
        let logged = logged_runs(node)?;
        by_node.push(format!("{}: {}", node.name, logged.len()));
        dues.extend(logged);
    }
    eprintln!("    runs logged per manager: {}", by_node.join(", "));
    let distinct: BTreeSet<&String> = dues.iter().collect();
    ensure(distinct.len() == dues.len(), || {
        format!("a scheduled time was run twice: {dues:?}")
    })?;
    // Every run logged before the last reading's write is counted in its ForceUpdate (the
    // job's runs are its only writes: `check_runs`); later runs are due after that write.
    let before_last = dues
        .iter()
        .filter_map(|d| unix_seconds(d))
        .filter(|s| i128::from(*s) * 1_000_000_000 <= last.updated_at)
        .count();
    ensure(before_last as u64 == last.force_update, || {
        format!(
            "{before_last} run(s) logged up to the last reading, the swarm counted {}: {dues:?}",
            last.force_update
        )
    })
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) as Unix seconds.
fn unix_seconds(text: &str) -> Option<i64> {
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // Days from the civil date (H. Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}
