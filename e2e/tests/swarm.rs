//! The e2e scenarios of issue 4 on a docker-in-docker swarm of 3 managers + 1 worker: converge, discovery/LB, scale, drift, removal, bad input, node loss, operator restart, VIP; of issue 9: rollouts waited on with the operator's `wait`; of issue 11: the operator's own failover; and of issue 19: a push to a git repository applied via its webhook.
//!
//! Reuses the cluster named by `SWARM_E2E_CLUSTER` (set by `cargo xtask e2e` / `cargo xtask test`),
//! else brings one up itself (building missing images) and tears it down at the end. Without a
//! Docker daemon it fails under `CI=true` and skips, saying why, otherwise.
//! The harness is libtest's command line (`--list`, `--exact`, `--skip`, a name filter:
//! `cargo test -p e2e --test swarm -- drift`); the scenarios always run one at a time, in order.

use std::collections::BTreeSet;
use std::panic::AssertUnwindSafe;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use e2e::probe::ProbeLine;
use e2e::status::Status;
use libtest_mimic::{Arguments, Completion, Failed, Trial};
use xtask::cluster::{Cluster, ENV_CLUSTER, UpOptions};
use xtask::operator::Deployment;
use xtask::operator_cli::{self, Goal, Targets, Wait, WaitExit, WaitReport};
use xtask::swarm::Manager;
use xtask::{docker, images, interrupt, operator};

#[path = "scenarios/failover.rs"]
mod failover;
#[path = "scenarios/git_push.rs"]
mod git_push;
#[path = "scenarios/rollout.rs"]
mod rollout;

/// Where the e2e copy of the specs lives on the manager node.
const SPECS: &str = "/srv/swarm-operator/e2e-specs";
const NET: &str = "my_network";
const ACCOUNT: &str = "account-service";
const QUOTE: &str = "quote-service";
const PROBE: &str = "goblog/e2e-probe:dev";
/// How long the operator's status file may lag behind the swarm it describes: it is rewritten
/// on the swarm's events, so seconds.
const STATUS_FOLLOWS: Duration = Duration::from_secs(30);

type Outcome = Result<(), String>;

/// A scenario's result: passed, failed, or skipped with a reason.
enum Verdict {
    Pass,
    Fail(String),
    Skip(String),
}

struct Env {
    cluster: Cluster,
    m: Manager,
    root: std::path::PathBuf,
}

type Scenario = fn(&Env) -> Verdict;

/// In the order they run: each builds on the state the previous ones left (s1 converges the
/// app the others edit, break and restore).
const SCENARIOS: [(&str, Scenario); 14] = [
    ("s1_converge", |e| pass(converge(e))),
    ("s2_discovery_and_load_balancing", |e| pass(discovery(e))),
    ("s3_scale_by_spec_edit", |e| pass(scale(e))),
    ("s4_drift_is_reverted", |e| pass(drift(e))),
    ("s5_removal", |e| pass(removal(e))),
    ("s6_bad_input", |e| pass(bad_input(e))),
    ("s7_node_loss", |e| pass(node_loss(e))),
    ("s8_operator_restart", |e| pass(operator_restart(e))),
    ("s9_vip_and_ingress", vip),
    // A service of their own, removed by the last of them.
    ("s10_rolling_update_waited_on", |e| {
        pass(rollout::rolling_update(e))
    }),
    ("s11_missing_image_is_degraded", |e| {
        pass(rollout::missing_image(e))
    }),
    ("s12_rollback_is_held", |e| pass(rollout::rollback_held(e))),
    // Last: it redeploys the operator in its HA form and kills a manager.
    ("s13_operator_failover", |e| {
        pass(failover::operator_failover(e))
    }),
    // Its own operator instance and service; it replaces the operator service with the git
    // form and removes it at the end.
    ("s14_git_push_to_applied", |e| {
        pass(git_push::push_to_applied(e))
    }),
];

/// Why the scenarios have no environment to run in.
#[derive(Clone)]
enum NoEnv {
    /// No Docker daemon and CI unset: the scenarios are skipped, saying why.
    Skip(String),
    /// Setup failed, or no daemon under `CI=true`: every scenario fails with this.
    Fail(String),
}

/// The environment the scenarios share: set up by the first one that runs (so `--list`, or a
/// filter that matches nothing, starts no cluster) and torn down after the last.
type SharedEnv = Arc<Mutex<Option<Result<Env, NoEnv>>>>;

fn main() -> ExitCode {
    let mut args = Arguments::from_args();
    // One shared cluster, scenarios that build on each other: one at a time, in order.
    args.test_threads = Some(1);
    interrupt::install();
    let shared: SharedEnv = Arc::default();
    let trials = SCENARIOS
        .iter()
        .map(|&(name, scenario)| {
            let shared = Arc::clone(&shared);
            Trial::ignorable_test(name, move || run_scenario(&shared, name, scenario))
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    // The cluster's Drop guard tears it down (if this run brought it up) before the exit.
    drop(lock(&shared).take());
    conclusion.exit_code()
}

fn lock(shared: &SharedEnv) -> MutexGuard<'_, Option<Result<Env, NoEnv>>> {
    // A scenario that panicked leaves the cluster as usable as one that failed.
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

fn run_scenario(shared: &SharedEnv, name: &str, scenario: Scenario) -> Result<Completion, Failed> {
    if interrupt::interrupted() {
        return Err("interrupted (Ctrl-C): not run".into());
    }
    let mut env = lock(shared);
    let env = match env.get_or_insert_with(prepare) {
        Ok(env) => env,
        Err(NoEnv::Skip(why)) => return Ok(Completion::ignored_with(why.clone())),
        Err(NoEnv::Fail(why)) => return Err(why.as_str().into()),
    };
    let started = Instant::now();
    let verdict = std::panic::catch_unwind(AssertUnwindSafe(|| scenario(env)));
    eprintln!("--- {name}: {}", xtask::timing::fmt(started.elapsed()));
    match verdict {
        Ok(Verdict::Pass) => Ok(Completion::Completed),
        Ok(Verdict::Skip(why)) => Ok(Completion::ignored_with(why)),
        Ok(Verdict::Fail(why)) => {
            print_status(env);
            Err(why.into())
        }
        Err(panic) => {
            print_status(env);
            // The harness reports the panic with its message.
            std::panic::resume_unwind(panic)
        }
    }
}

fn print_status(env: &Env) {
    if let Ok(Some(s)) = operator::read_status(&env.m) {
        eprintln!("    status file at failure: {s}");
    }
}

/// A Docker daemon, then [`setup`]; or why the scenarios can not run.
fn prepare() -> Result<Env, NoEnv> {
    if !docker::answers() {
        return Err(if xtask::is_ci() {
            NoEnv::Fail(
                "no Docker daemon answers and CI=true: this is a failure, not a skip".into(),
            )
        } else {
            NoEnv::Skip(
                "no Docker daemon answers: `cargo xtask e2e` starts one; CI=true makes this a failure".into(),
            )
        });
    }
    setup().map_err(|e| NoEnv::Fail(format!("e2e setup failed: {e}")))
}

fn pass(o: Outcome) -> Verdict {
    match o {
        Ok(()) => Verdict::Pass,
        Err(e) => Verdict::Fail(e),
    }
}

/// Cluster (reused or new), fresh copy of the specs, the operator deployed.
fn setup() -> Result<Env, String> {
    let root = xtask::repo_root();
    let cluster = match std::env::var(ENV_CLUSTER) {
        Ok(prefix) if !prefix.is_empty() => {
            eprintln!("e2e: reusing cluster {prefix} ({ENV_CLUSTER})");
            Cluster::attach(&prefix).map_err(|e| e.to_string())?
        }
        _ => {
            let all = images::ALL.to_vec();
            let missing: Vec<_> = all
                .iter()
                .filter(|i| !images::exists(i.tag))
                .copied()
                .collect();
            if !missing.is_empty() {
                images::build(&root, &missing).map_err(|e| e.to_string())?;
            }
            let tags = all.iter().map(|i| i.tag.to_string()).collect();
            Cluster::up(&UpOptions {
                nodes: 4,
                managers: 3,
                images: tags,
            })
            .map_err(|e| e.to_string())?
        }
    };
    let m = Manager::Node(cluster.manager().name.clone());
    // A reused cluster may carry a previous run's operator and services: start clean.
    for svc in [
        operator::SERVICE,
        ACCOUNT,
        QUOTE,
        "vip-echo",
        rollout::SERVICE,
        failover::JOB,
        git_push::WEB,
    ] {
        let _ = m.docker(["service", "rm", svc]).output();
    }
    m.put_specs(&root.join("manifests"), SPECS)
        .map_err(|e| e.to_string())?;
    // One replica on the manager holding the spec files the scenarios edit (s13 switches to
    // the HA form).
    operator::deploy(
        &m,
        Deployment::Directory {
            specs_dir: SPECS,
            node: Some(&cluster.manager().name),
        },
    )
    .map_err(|e| e.to_string())?;
    Ok(Env { cluster, m, root })
}

impl Env {
    fn status(&self) -> Option<Status> {
        let text = operator::read_status(&self.m).ok()??;
        serde_json::from_str(&text).ok()
    }

    /// Poll the status file until `pred` holds.
    fn wait_status(
        &self,
        what: &str,
        limit: Duration,
        pred: impl Fn(&Status) -> bool,
    ) -> Result<Status, String> {
        let start = Instant::now();
        loop {
            if let Some(s) = self.status()
                && pred(&s)
            {
                eprintln!("    {what}: after {}", xtask::timing::fmt(start.elapsed()));
                return Ok(s);
            }
            if start.elapsed() > limit || interrupt::interrupted() {
                return Err(format!(
                    "timed out after {limit:?} waiting for {what}; status: {:?}",
                    self.status()
                ));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn wait(&self, what: &str, limit: Duration, mut pred: impl FnMut() -> bool) -> Outcome {
        let start = Instant::now();
        while !pred() {
            if start.elapsed() > limit || interrupt::interrupted() {
                return Err(format!("timed out after {limit:?} waiting for {what}"));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        eprintln!("    {what}: after {}", xtask::timing::fmt(start.elapsed()));
        Ok(())
    }

    /// `swarm-operator wait … --specs SPECS` on the manager, as a CI job deploying the spec
    /// files would run it: an object is ready once the swarm runs its current spec with every
    /// task up (and healthy).
    fn operator_wait(
        &self,
        targets: Targets<'_>,
        goal: Goal,
        limit: Duration,
    ) -> Result<WaitReport, String> {
        let start = Instant::now();
        let report = operator_cli::wait(
            &self.m,
            &Wait {
                targets,
                goal,
                timeout: limit,
                specs_dir: Some(SPECS),
            },
        )
        .map_err(|e| e.to_string())?;
        eprintln!(
            "    swarm-operator wait {targets:?} --for {goal:?}: {:?} after {}",
            report.exit,
            xtask::timing::fmt(start.elapsed())
        );
        Ok(report)
    }

    /// Every object of the spec files ready, by the operator's `wait --all`.
    fn wait_all_ready(&self, limit: Duration) -> Outcome {
        let report = self.operator_wait(Targets::All, Goal::Ready, limit)?;
        ensure(report.exit == WaitExit::Reached, || report.to_string())
    }

    fn docker(&self, args: &[&str]) -> Result<String, String> {
        self.m.docker(args).output().map_err(|e| e.to_string())
    }

    /// Run the probe on the overlay network.
    fn probe(&self, args: &[&str]) -> Result<Vec<ProbeLine>, String> {
        let (_, out, err) = self
            .m
            .docker(["run", "--rm", "--network", NET, PROBE])
            .args(args)
            .output_any()
            .map_err(|e| e.to_string())?;
        let lines = ProbeLine::parse_all(&out);
        if lines.is_empty() {
            return Err(format!("probe {args:?} printed nothing; stderr: {err}"));
        }
        Ok(lines)
    }

    fn version(&self, svc: &str) -> Result<u64, String> {
        let v = self.docker(&["service", "inspect", "--format", "{{.Version.Index}}", svc])?;
        v.trim().parse().map_err(|_| format!("bad version {v:?}"))
    }

    fn spec_path(&self, file: &str) -> String {
        format!("{SPECS}/{file}")
    }

    fn original_spec(&self, file: &str) -> Result<String, String> {
        std::fs::read_to_string(self.root.join("manifests").join(file))
            .map_err(|e| format!("{file}: {e}"))
    }

    /// Wait until every object of the specs is ready (the operator's `wait --all`), then until
    /// the status file shows both app services running `n` replicas each with their addresses.
    fn wait_apps(&self, account: u64, quote: u64, limit: Duration) -> Result<Status, String> {
        self.wait_all_ready(limit)?;
        self.wait_status(
            &format!("{ACCOUNT}={account}, {QUOTE}={quote} running in the status file"),
            STATUS_FOLLOWS,
            |s| {
                [(ACCOUNT, account), (QUOTE, quote)].iter().all(|(svc, n)| {
                    s.services.get(*svc).is_some_and(|st| {
                        st.desired_replicas == Some(*n)
                            && st.running_replicas == Some(*n)
                            && st.running_ips(NET).len() as u64 == *n
                    })
                })
            },
        )
    }

    /// Node hostname (and ID) of each running task of `svc`.
    fn task_nodes(&self, svc: &str) -> Result<Vec<String>, String> {
        let out = self.docker(&[
            "service",
            "ps",
            "--filter",
            "desired-state=running",
            "--format",
            "{{.Node}}",
            svc,
        ])?;
        Ok(out.lines().map(String::from).collect())
    }
}

fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Outcome {
    if cond { Ok(()) } else { Err(msg()) }
}

/// 1. Both services converge to 3 replicas spread over more than one node; the status lists 3
///    endpoints each with an overlay address.
fn converge(e: &Env) -> Outcome {
    e.m.wait_converged(&[operator::SERVICE], 1, Duration::from_secs(120))
        .map_err(|x| x.to_string())?;
    let s = e.wait_apps(3, 3, Duration::from_secs(240))?;
    for svc in [ACCOUNT, QUOTE] {
        let st = &s.services[svc];
        ensure(st.endpoints.len() >= 3, || {
            format!("{svc}: {} endpoints", st.endpoints.len())
        })?;
        for ep in st.endpoints.iter().filter(|x| x.state == "running") {
            ensure(
                ep.addresses
                    .iter()
                    .any(|a| a.network == NET && a.bare_ip().parse::<std::net::Ipv4Addr>().is_ok()),
                || format!("{svc}: endpoint {} has no {NET} address", ep.task),
            )?;
        }
        let nodes: BTreeSet<String> = e.task_nodes(svc)?.into_iter().collect();
        ensure(nodes.len() > 1, || format!("{svc}: all tasks on {nodes:?}"))?;
        eprintln!("    {svc}: {:?} on {nodes:?}", st.running_ips(NET));
    }
    Ok(())
}

/// 2. 30 GETs from a client container: servedBy covers every account replica and quote.ipAddress
///    every quote replica; every endpoint answers /health with UP.
fn discovery(e: &Env) -> Outcome {
    let s = e.wait_apps(3, 3, Duration::from_secs(60))?;
    let accounts: BTreeSet<String> = s.services[ACCOUNT].running_ips(NET).into_iter().collect();
    let quotes: BTreeSet<String> = s.services[QUOTE].running_ips(NET).into_iter().collect();
    // Replicas that just started may not have resolved the quote service yet (they re-resolve
    // every few seconds) and answer with the fallback quote: wait until that has passed.
    e.wait(
        "no fallback quotes (account replicas see the quote replicas)",
        Duration::from_secs(60),
        || {
            e.probe(&[
                "get",
                "-n",
                "9",
                "http://account-service:6767/accounts/10000",
            ])
            .is_ok_and(|ls| {
                ls.iter()
                    .all(|l| l.status == Some(200) && l.body["quote"]["ipAddress"] != "fallback")
            })
        },
    )?;
    let lines = e.probe(&[
        "get",
        "-n",
        "30",
        "--resolve-wait-ms",
        "10000",
        "http://account-service:6767/accounts/10000",
    ])?;
    let ok: Vec<_> = lines.iter().filter(|l| l.status == Some(200)).collect();
    ensure(ok.len() == 30, || {
        format!("{} of 30 requests answered 200: {lines:?}", ok.len())
    })?;
    let served: BTreeSet<String> = ok
        .iter()
        .filter_map(|l| l.body["servedBy"].as_str().map(String::from))
        .collect();
    let quoted: BTreeSet<String> = ok
        .iter()
        .filter_map(|l| l.body["quote"]["ipAddress"].as_str().map(String::from))
        .collect();
    eprintln!("    servedBy {served:?}, quote.ipAddress {quoted:?}");
    ensure(served == accounts, || {
        format!("servedBy {served:?} != account endpoints {accounts:?}")
    })?;
    ensure(quoted == quotes, || {
        format!("quote.ipAddress {quoted:?} != quote endpoints {quotes:?}")
    })?;
    let urls: Vec<String> = accounts
        .iter()
        .map(|ip| format!("http://{ip}:6767/health"))
        .chain(quotes.iter().map(|ip| format!("http://{ip}:8080/health")))
        .collect();
    let mut args = vec!["each"];
    args.extend(urls.iter().map(String::as_str));
    let health = e.probe(&args)?;
    for l in &health {
        ensure(l.status == Some(200) && l.body["status"] == "UP", || {
            format!("unhealthy: {l:?}")
        })?;
    }
    ensure(health.len() == 6, || {
        format!("{} health answers", health.len())
    })
}

/// 3. Editing the spec 3 → 5 scales the service; the status follows. Restored to 3 afterwards.
fn scale(e: &Env) -> Outcome {
    let orig = e.original_spec("account-service.yaml")?;
    ensure(orig.contains("replicas: 3"), || {
        "account-service.yaml has no `replicas: 3`".into()
    })?;
    e.m.write_file(
        &e.spec_path("account-service.yaml"),
        &orig.replacen("replicas: 3", "replicas: 5", 1),
    )
    .map_err(|x| x.to_string())?;
    let s = e.wait_apps(5, 3, Duration::from_secs(120))?;
    ensure(s.services[ACCOUNT].running_ips(NET).len() == 5, || {
        "5 account endpoints expected".into()
    })?;
    e.m.write_file(&e.spec_path("account-service.yaml"), &orig)
        .map_err(|x| x.to_string())?;
    e.wait_apps(3, 3, Duration::from_secs(120)).map(|_| ())
}

/// 4. A manual `docker service scale account-service=1` is reverted to the spec's 3.
fn drift(e: &Env) -> Outcome {
    let before = e.version(ACCOUNT)?;
    e.docker(&["service", "scale", "-d", "account-service=1"])?;
    let start = Instant::now();
    e.wait(
        "drift reverted (desired replicas back to 3)",
        Duration::from_secs(90),
        || {
            e.m.services()
                .is_ok_and(|rows| rows.iter().any(|r| r.name == ACCOUNT && r.desired == 3))
        },
    )?;
    eprintln!(
        "    reverted {} after the manual scale",
        xtask::timing::fmt(start.elapsed())
    );
    // Two updates since: ours (to 1) and the operator's (back to 3). Guards against a pass
    // where the scale never took effect.
    let after = e.version(ACCOUNT)?;
    ensure(after >= before + 2, || {
        format!("service version {before} -> {after}: the manual scale or its revert is missing")
    })?;
    e.wait_apps(3, 3, Duration::from_secs(120)).map(|_| ())
}

/// 5. Deleting the quote spec removes the service; accounts still answer with the fallback quote.
fn removal(e: &Env) -> Outcome {
    e.m.remove_file(&e.spec_path("quote-service.yaml"))
        .map_err(|x| x.to_string())?;
    let result = (|| {
        e.wait(
            "quote-service removed from the swarm",
            Duration::from_secs(90),
            || !e.m.docker(["service", "inspect", QUOTE]).succeeds(),
        )?;
        e.wait_status(
            "quote-service gone from the status",
            Duration::from_secs(60),
            |s| {
                s.services
                    .get(QUOTE)
                    .is_none_or(|q| q.running_replicas.unwrap_or(0) == 0)
            },
        )?;
        ensure(
            e.m.docker(["service", "inspect", ACCOUNT]).succeeds(),
            || "account-service was removed too".into(),
        )?;
        // The removed service's tasks take their stop grace period to go away.
        e.wait(
            "accounts answer with the fallback quote",
            Duration::from_secs(60),
            || {
                e.probe(&[
                    "get",
                    "-n",
                    "6",
                    "http://account-service:6767/accounts/10000",
                ])
                .is_ok_and(|ls| {
                    ls.iter().all(|l| {
                        l.status == Some(200) && l.body["quote"]["ipAddress"] == "fallback"
                    })
                })
            },
        )
    })();
    // Restore whatever happened, so the later scenarios start from the full system.
    let orig = e.original_spec("quote-service.yaml")?;
    e.m.write_file(&e.spec_path("quote-service.yaml"), &orig)
        .map_err(|x| x.to_string())?;
    let restored = e.wait_apps(3, 3, Duration::from_secs(180)).map(|_| ());
    result.and(restored)
}

/// 6. A broken YAML file yields a located error in the status; nothing is removed or changed.
fn bad_input(e: &Env) -> Outcome {
    let before = (e.version(ACCOUNT)?, e.version(QUOTE)?);
    let broken = "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata:\n  name: broken\nspec:\n  image: [unclosed\n  replicas: 2\n";
    let path = e.spec_path("zz-broken.yaml");
    e.m.write_file(&path, broken).map_err(|x| x.to_string())?;
    let s = e.wait_status(
        "a located error for zz-broken.yaml",
        Duration::from_secs(60),
        |s| {
            s.errors.iter().any(|er| {
                er.file
                    .as_deref()
                    .is_some_and(|f| f.ends_with("zz-broken.yaml"))
                    && er.line.is_some()
            })
        },
    )?;
    let err = s.errors.iter().find(|er| {
        er.file
            .as_deref()
            .is_some_and(|f| f.ends_with("zz-broken.yaml"))
    });
    eprintln!("    error: {err:?}");
    // Give a reconcile pass time to (wrongly) act on it.
    std::thread::sleep(Duration::from_secs(5));
    let after = (e.version(ACCOUNT)?, e.version(QUOTE)?);
    ensure(before == after, || {
        format!("service versions changed {before:?} -> {after:?}")
    })?;
    ensure(
        !e.m.docker(["service", "inspect", "broken"]).succeeds(),
        || "a service `broken` was created".into(),
    )?;
    e.wait_apps(3, 3, Duration::from_secs(10))?;
    e.m.remove_file(&path).map_err(|x| x.to_string())?;
    e.wait_status("the error cleared", Duration::from_secs(60), |s| {
        s.errors.is_empty()
    })
    .map(|_| ())
}

/// 7. Stopping a worker: its tasks are rescheduled, the status endpoints follow.
fn node_loss(e: &Env) -> Outcome {
    let nodes = e.task_nodes(ACCOUNT)?;
    let victim = e
        .cluster
        .workers()
        .find(|w| nodes.contains(&w.name))
        .or_else(|| e.cluster.workers().next())
        .ok_or("no worker node")?
        .clone();
    let victim_id = e.docker(&["node", "inspect", "--format", "{{.ID}}", &victim.name])?;
    eprintln!("    stopping {} ({victim_id})", victim.name);
    e.cluster.stop_node(&victim).map_err(|x| x.to_string())?;
    let result = (|| {
        let s = e.wait_status(
            "3 + 3 running again, none on the stopped node",
            Duration::from_secs(180),
            |s| {
                [ACCOUNT, QUOTE].iter().all(|svc| {
                    s.services.get(*svc).is_some_and(|st| {
                        let running: Vec<_> = st
                            .endpoints
                            .iter()
                            .filter(|x| x.state == "running")
                            .collect();
                        running.len() == 3
                            && running
                                .iter()
                                .all(|x| x.node != victim.name && x.node != victim_id)
                            && st.running_ips(NET).len() == 3
                    })
                })
            },
        )?;
        let lines = e.probe(&[
            "get",
            "-n",
            "6",
            "--resolve-wait-ms",
            "5000",
            "http://account-service:6767/accounts/10000",
        ])?;
        let ok = lines.iter().filter(|l| l.status == Some(200)).count();
        ensure(ok == 6, || {
            format!("{ok}/6 answered after node loss: {lines:?}")
        })?;
        let accounts: BTreeSet<String> = s.services[ACCOUNT].running_ips(NET).into_iter().collect();
        let served: BTreeSet<String> = lines
            .iter()
            .filter_map(|l| l.body["servedBy"].as_str().map(String::from))
            .collect();
        ensure(served.is_subset(&accounts), || {
            format!("served by {served:?}, status says {accounts:?}")
        })
    })();
    e.cluster.start_node(&victim).map_err(|x| x.to_string())?;
    result
}

/// 8. Killing the operator's container: swarm restarts it, and it updates no service.
fn operator_restart(e: &Env) -> Outcome {
    let before = (e.version(ACCOUNT)?, e.version(QUOTE)?);
    let task = e.docker(&[
        "service",
        "ps",
        "-q",
        "--filter",
        "desired-state=running",
        operator::SERVICE,
    ])?;
    let container = e.docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.docker.swarm.service.name={}", operator::SERVICE),
    ])?;
    ensure(!container.is_empty(), || {
        "no operator container on the manager".into()
    })?;
    e.docker(&["kill", container.lines().next().unwrap_or_default()])?;
    e.wait(
        "a new operator task running",
        Duration::from_secs(90),
        || {
            e.m.docker([
                "service",
                "ps",
                "-q",
                "--filter",
                "desired-state=running",
                operator::SERVICE,
            ])
            .output()
            .is_ok_and(|t| !t.is_empty() && t != task)
                && e.m.services().is_ok_and(|r| {
                    r.iter()
                        .any(|r| r.name == operator::SERVICE && r.running == 1)
                })
        },
    )?;
    // The status file is rewritten only when its content changes, so wait for the new
    // operator's healthcheck instead (it serves /healthz once its loop runs), then give its
    // first reconcile pass time to (wrongly) update something.
    let healthy = format!("label=com.docker.swarm.service.name={}", operator::SERVICE);
    e.wait("the new operator healthy", Duration::from_secs(60), || {
        e.m.docker([
            "ps",
            "-q",
            "--filter",
            &healthy,
            "--filter",
            "health=healthy",
        ])
        .output()
        .is_ok_and(|c| !c.is_empty())
    })?;
    std::thread::sleep(Duration::from_secs(8));
    let after = (e.version(ACCOUNT)?, e.version(QUOTE)?);
    ensure(before == after, || {
        format!("service versions changed across the restart {before:?} -> {after:?}")
    })
}

/// 9. VIP + ingress routing mesh: only where the kernel has IPVS.
fn vip(e: &Env) -> Verdict {
    if !std::path::Path::new("/proc/net/ip_vs").exists() {
        return Verdict::Skip(
            "the kernel has no IPVS (/proc/net/ip_vs missing): swarm VIPs and the ingress mesh cannot route here".into(),
        );
    }
    pass((|| {
        let spec = "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata: {name: vip-echo}\nspec:\n  image: goblog/e2e-probe:dev\n  args: [serve, --port, \"8080\"]\n  replicas: 2\n  networks: [my_network]\n  endpointMode: vip\n  ports:\n    - {target: 8080, published: 18080, mode: ingress}\n";
        let path = e.spec_path("vip-echo.yaml");
        e.m.write_file(&path, spec).map_err(|x| x.to_string())?;
        let r = (|| {
            let s = e.wait_status(
                "vip-echo running with a VIP",
                Duration::from_secs(120),
                |s| {
                    s.services
                        .get("vip-echo")
                        .is_some_and(|v| v.running_replicas == Some(2) && !v.virtual_ips.is_empty())
                },
            )?;
            let vip = s.services["vip-echo"].virtual_ips[0]
                .address
                .split('/')
                .next()
                .unwrap_or_default()
                .to_string();
            let lines = e.probe(&["get", "-n", "4", &format!("http://{vip}:8080/")])?;
            ensure(lines.iter().all(|l| l.status == Some(200)), || {
                format!("VIP did not route: {lines:?}")
            })?;
            let (ok, out, _) =
                e.m.docker([
                    "run",
                    "--rm",
                    "--network",
                    "host",
                    PROBE,
                    "get",
                    "-n",
                    "2",
                    "http://127.0.0.1:18080/",
                ])
                .output_any()
                .map_err(|x| x.to_string())?;
            ensure(ok, || format!("ingress port 18080 did not answer: {out}"))
        })();
        e.m.remove_file(&path).map_err(|x| x.to_string())?;
        r
    })())
}
