//! Rollouts one can wait on, on the real single-node swarm: the conditions follow swarm's
//! rolling update, `get` shows them, `wait` exits by them.

// Helpers outside #[test] functions unwrap too: in a test, a failed unwrap is a failed test
// with its location.
#![allow(clippy::unwrap_used)]

mod support;

use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Swarm, TEST_IMAGE, condition, docker, engine_time};

const CONVERGE: Duration = Duration::from_secs(60);

fn holds(status: &Value, name: &str, kind: &str, reason: &str) -> bool {
    let c = condition(status, name, kind);
    c["status"] == "True" && c["reason"] == reason
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn show(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr)
    )
}

/// A service spec that rolls out one task at a time with short delays, so that a rollout
/// takes seconds.
fn rolling_spec(swarm: &Swarm, name: &str, replicas: u64, extra: &str) -> String {
    format!(
        "{}  updateConfig: {{parallelism: 1, delay: 1s, monitor: 2s}}\n{extra}",
        swarm.service_spec(name, replicas, None)
    )
}

/// `wait NAMES --for ready --specs DIR`, bounded.
fn wait_ready(swarm: &Swarm, names: &[&str], timeout: &str) -> Output {
    let mut args = vec!["wait"];
    args.extend_from_slice(names);
    args.extend([
        "--for",
        "ready",
        "--timeout",
        timeout,
        "--specs",
        swarm.specs.path().to_str().unwrap(),
    ]);
    swarm.cli(&args)
}

/// A good update: `Progressing` with counts while swarm replaces the tasks, then `Ready`
/// (every task of the new spec); `wait` exits 0 once there, `get` shows it, and
/// `wait --for deleted` follows the removal.
#[test]
fn a_good_update_progresses_with_counts_then_is_ready() {
    let Some(swarm) = Swarm::start("goodupdate") else {
        return;
    };
    let svc = swarm.name("api");
    swarm.write_spec("api.yaml", &rolling_spec(&swarm, "api", 3, ""));
    // Stays when api.yaml goes: an empty spec directory prunes nothing.
    swarm.write_spec("net.yaml", &swarm.network_spec("net"));
    let operator = swarm.operator();

    let started = Instant::now();
    // --all: every object of the specs, the network too.
    let waited = wait_ready(&swarm, &["--all"], "60s");
    assert_eq!(waited.status.code(), Some(0), "{}", show(&waited));
    eprintln!("created and ready after {:?}", started.elapsed());
    // In a pipe: plain lines, the last one saying it is ready.
    assert!(
        text(&waited.stdout)
            .lines()
            .any(|l| l == format!("{svc}: ready")),
        "{}",
        show(&waited)
    );
    assert!(
        text(&waited.stdout)
            .lines()
            .any(|l| l == format!("{}: ready", swarm.name("net"))),
        "{}",
        show(&waited)
    );

    // The update: a new environment value replaces every task, one at a time.
    swarm.write_spec(
        "api.yaml",
        &rolling_spec(&swarm, "api", 3, "").replace("ROLE: test", "ROLE: v2"),
    );
    let progressing = swarm.wait_status("Progressing with counts", CONVERGE, |s| {
        holds(s, &svc, "Progressing", "RollingUpdate")
            && condition(s, &svc, "Progressing")["message"]
                .as_str()
                .is_some_and(|m| m.contains("/3 updated"))
    });
    let message = condition(&progressing, &svc, "Progressing")["message"].clone();
    assert_eq!(
        condition(&progressing, &svc, "Ready")["status"],
        "False",
        "not ready while old tasks run: {message}"
    );
    eprintln!("while rolling: {message}");

    let waited = wait_ready(&swarm, &[&svc], "90s");
    assert_eq!(waited.status.code(), Some(0), "{}", show(&waited));
    // The lines followed the rollout: at least one count before ready.
    assert!(
        text(&waited.stdout).contains("/3 updated") || text(&waited.stdout).contains("ready"),
        "{}",
        show(&waited)
    );

    let got = swarm.cli(&["get", &svc, "-o", "json"]);
    assert_eq!(got.status.code(), Some(0), "{}", show(&got));
    let json: Value = serde_json::from_slice(&got.stdout).expect("get -o json is JSON");
    let service = &json["services"][&svc];
    assert_eq!(service["updatedReplicas"], 3, "{json}");
    assert_eq!(service["runningReplicas"], 3, "{json}");
    assert!(service["observedSpecHash"].is_string(), "{json}");

    let table = swarm.cli(&["get", &svc]);
    assert_eq!(table.status.code(), Some(0), "{}", show(&table));
    let lines: Vec<String> = text(&table.stdout).lines().map(str::to_owned).collect();
    assert!(lines[0].starts_with("NAME "), "{}", show(&table));
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        row[..6],
        [svc.as_str(), "SwarmService", "-", "3/3", "3", "Ready"],
        "{}",
        show(&table)
    );

    let missing = swarm.cli(&["get", &swarm.name("nothing")]);
    assert_eq!(missing.status.code(), Some(1), "{}", show(&missing));
    // Something that never gets ready: exit 2 when time runs out, saying where it stood.
    let nothing = swarm.name("nothing");
    let timed_out = swarm.cli(&["wait", &nothing, "--for", "ready", "--timeout", "2s"]);
    assert_eq!(timed_out.status.code(), Some(2), "{}", show(&timed_out));
    assert!(
        text(&timed_out.stderr).contains(&format!("{nothing}: timed out after 2s: not found")),
        "{}",
        show(&timed_out)
    );

    swarm.remove_spec("api.yaml");
    let deleted = swarm.cli(&["wait", &svc, "--for", "deleted", "--timeout", "60s"]);
    assert_eq!(deleted.status.code(), Some(0), "{}", show(&deleted));
    assert!(swarm.service_version("api").is_none());

    // The network outlives the test's cleanup when its last task is still detaching.
    drop(operator);
    let net = swarm.name("net");
    swarm.wait("network removed", CONVERGE, || {
        support::docker_output(&["network", "rm", &net])
            .status
            .success()
            || !support::docker_output(&["network", "inspect", &net])
                .status
                .success()
    });
}

/// An update to an image that does not exist: swarm rejects the first new task and pauses;
/// the status says `UpdatePaused` with the task's own error within the monitor period, and
/// `wait` exits 1 naming the service and the error.
#[test]
fn an_update_to_a_missing_image_is_degraded_with_the_tasks_error() {
    let Some(swarm) = Swarm::start("missingimage") else {
        return;
    };
    let svc = swarm.name("api");
    swarm.write_spec("api.yaml", &rolling_spec(&swarm, "api", 2, ""));
    let _operator = swarm.operator();
    let waited = wait_ready(&swarm, &[&svc], "60s");
    assert_eq!(waited.status.code(), Some(0), "{}", show(&waited));

    let written = Instant::now();
    swarm.write_spec(
        "api.yaml",
        &rolling_spec(&swarm, "api", 2, "").replace(TEST_IMAGE, "swarm-operator-test/missing:none"),
    );
    let degraded = swarm.wait_status("Degraded with the task's error", CONVERGE, |s| {
        condition(s, &svc, "Degraded")["status"] == "True"
            && condition(s, &svc, "Degraded")["message"]
                .as_str()
                .is_some_and(|m| m.contains("No such image"))
    });
    let took = written.elapsed();
    let reason = &condition(&degraded, &svc, "Degraded")["reason"];
    assert!(
        reason == "UpdatePaused" || reason == "TasksFailing",
        "{degraded}"
    );
    // Spec written, swarm told, first task rejected, update paused: seconds, not minutes.
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert_eq!(condition(&degraded, &svc, "Ready")["status"], "False");

    let waited = wait_ready(&swarm, &[&svc], "60s");
    assert_eq!(waited.status.code(), Some(1), "{}", show(&waited));
    let stderr = text(&waited.stderr);
    assert!(
        stderr.contains(&svc) && stderr.contains("No such image: swarm-operator-test/missing:none"),
        "{}",
        show(&waited)
    );
    assert!(stderr.contains("UpdatePaused"), "{}", show(&waited));
}

/// A healthcheck that never passes with `failure-action rollback`: swarm rolls back, the status
/// says `RolledBack` and `wait` exits 1. The service is made with the docker CLI (owned by
/// this test's instance) and no operator runs: `get` and `wait` read the swarm themselves,
/// and no operator puts the failing spec back after swarm rolled it back.
#[test]
fn a_healthcheck_that_never_passes_is_rolled_back_and_wait_fails() {
    let Some(swarm) = Swarm::start("rolledback") else {
        return;
    };
    let svc = swarm.name("api");
    let managed = "swarm-operator.io/managed-by=swarm-operator";
    let instance = format!("swarm-operator.io/instance={}", swarm.prefix);
    docker(&[
        "service",
        "create",
        "--detach",
        "--name",
        &svc,
        "--replicas",
        "2",
        "--label",
        managed,
        "--label",
        &instance,
        "--update-parallelism",
        "1",
        "--update-monitor",
        "3s",
        "--update-failure-action",
        "rollback",
        "--rollback-monitor",
        "1s",
        "--stop-grace-period",
        "1s",
        TEST_IMAGE,
        "sleep",
        "3600",
    ]);
    let waited = swarm.cli(&["wait", &svc, "--for", "ready", "--timeout", "60s"]);
    assert_eq!(waited.status.code(), Some(0), "{}", show(&waited));

    docker(&[
        "service",
        "update",
        "--detach",
        "--health-cmd",
        "false",
        "--health-interval",
        "1s",
        "--health-retries",
        "1",
        &svc,
    ]);
    let waited = swarm.cli(&["wait", &svc, "--for", "ready", "--timeout", "90s"]);
    assert_eq!(waited.status.code(), Some(1), "{}", show(&waited));
    let stderr = text(&waited.stderr);
    assert!(
        stderr.starts_with(&format!("{svc}: RolledBack: ")),
        "{}",
        show(&waited)
    );

    let got = swarm.cli(&["get", &svc, "-o", "json"]);
    let json: Value = serde_json::from_slice(&got.stdout).expect("get -o json is JSON");
    let status = serde_json::json!({ "services": json["services"] });
    assert!(holds(&status, &svc, "Degraded", "RolledBack"), "{json}");
    assert_eq!(
        condition(&status, &svc, "Ready")["status"],
        "False",
        "{json}"
    );
}

/// Running task ids of a service.
fn running_tasks(name: &str) -> Vec<String> {
    let mut ids: Vec<String> = support::docker_output(&[
        "service",
        "ps",
        "-q",
        "--filter",
        "desired-state=running",
        name,
    ])
    .stdout
    .split(|b| *b == b'\n')
    .filter(|l| !l.is_empty())
    .map(text)
    .collect();
    ids.sort();
    ids
}

/// The operator applies a spec whose healthcheck never passes, with `failureAction:
/// rollback`: swarm rolls it back, and the operator does not write the failing spec again (it
/// marks the service once, without replacing a task, and holds). `wait` exits 1 with
/// `RolledBack`; a fixed spec is then applied and gets ready.
#[test]
fn the_operator_holds_a_spec_that_swarm_rolled_back() {
    let Some(swarm) = Swarm::start("holdrollback") else {
        return;
    };
    let svc = swarm.name("api");
    let spec = format!(
        "{}  updateConfig: {{parallelism: 1, monitor: 3s, failureAction: rollback}}\n  rollbackConfig: {{parallelism: 0, monitor: 1s}}\n",
        swarm.service_spec("api", 2, None)
    );
    swarm.write_spec("api.yaml", &spec);
    let _operator = swarm.operator();
    let waited = wait_ready(&swarm, &[&svc], "60s");
    assert_eq!(waited.status.code(), Some(0), "{}", show(&waited));

    swarm.write_spec(
        "api.yaml",
        &format!(
            "{spec}  healthcheck: {{test: [CMD-SHELL, \"false\"], interval: 1s, retries: 1}}\n"
        ),
    );
    let waited = wait_ready(&swarm, &[&svc], "120s");
    assert_eq!(waited.status.code(), Some(1), "{}", show(&waited));
    assert!(
        text(&waited.stderr).starts_with(&format!("{svc}: RolledBack: ")),
        "{}",
        show(&waited)
    );
    // The mark: one write that replaces no task (every running task is older than it).
    swarm.wait("the rolled-back spec marked", CONVERGE, || {
        support::docker_output(&[
            "service",
            "inspect",
            "--format",
            "{{index .Spec.Labels \"swarm-operator.io/rolled-back-spec\"}}",
            &svc,
        ])
        .stdout
        .len()
            > 1
    });
    let marked_at = engine_time(&support::docker(&[
        "service",
        "inspect",
        "--format",
        "{{json .UpdatedAt}}",
        &svc,
    ]));
    swarm.wait("the old spec's two tasks running", CONVERGE, || {
        running_tasks(&svc).len() == 2
    });
    let tasks = running_tasks(&svc);
    for task in &tasks {
        let created = engine_time(&support::docker(&[
            "inspect",
            "--format",
            "{{json .CreatedAt}}",
            task,
        ]));
        assert!(created < marked_at, "task {task} was created by the mark");
    }
    let version = swarm.service_version("api");
    // Long enough for several update-fail-rollback rounds (each takes about 5 s here), and for
    // the operator's resync.
    std::thread::sleep(Duration::from_secs(20));
    assert_eq!(
        swarm.service_version("api"),
        version,
        "the failing spec was written again"
    );
    assert_eq!(running_tasks(&svc), tasks, "tasks were replaced while held");
    let status = swarm.status().unwrap();
    assert!(holds(&status, &svc, "Degraded", "RolledBack"), "{status}");
    assert!(
        condition(&status, &svc, "Degraded")["message"]
            .as_str()
            .is_some_and(|m| m.contains("held until the spec changes")),
        "{status}"
    );
    // A fixed spec: applied, the mark dropped, ready.
    swarm.write_spec("api.yaml", &spec.replace("ROLE: test", "ROLE: fixed"));
    let waited = wait_ready(&swarm, &[&svc], "90s");
    assert_eq!(waited.status.code(), Some(0), "{}", show(&waited));
    let labels = support::docker(&[
        "service",
        "inspect",
        "--format",
        "{{json .Spec.Labels}}",
        &svc,
    ]);
    assert!(!labels.contains("rolled-back-spec"), "{labels}");
}

/// `wait` on a terminal (tmux) draws one bar per service and redraws it in place as swarm
/// replaces tasks: two captures of the pane differ, and each shows the service on one line.
#[test]
fn wait_on_a_terminal_redraws_a_progress_bar() {
    let test = "wait_on_a_terminal_redraws_a_progress_bar";
    let Some(swarm) = Swarm::start("waittmux") else {
        return;
    };
    let Some(tmux) = support::require_tool(test, "tmux", "tmux") else {
        return;
    };
    let svc = swarm.name("api");
    let instance = format!("swarm-operator.io/instance={}", swarm.prefix);
    docker(&[
        "service",
        "create",
        "--detach",
        "--name",
        &svc,
        "--replicas",
        "4",
        "--label",
        "swarm-operator.io/managed-by=swarm-operator",
        "--label",
        &instance,
        "--update-parallelism",
        "1",
        "--update-delay",
        "2s",
        "--stop-grace-period",
        "1s",
        TEST_IMAGE,
        "sleep",
        "3600",
    ]);
    let waited = swarm.cli(&["wait", &svc, "--for", "ready", "--timeout", "60s"]);
    assert_eq!(waited.status.code(), Some(0), "{}", show(&waited));
    docker(&["service", "update", "--detach", "--env-add", "V=2", &svc]);

    // Its own tmux server (-L), so that nothing else's sessions are touched.
    let tmux_cmd = |args: &[&str]| {
        std::process::Command::new(&tmux)
            .args(["-L", &swarm.prefix])
            .args(args)
            .output()
            .expect("running tmux")
    };
    let script = format!(
        "env -u CI SWARM_OPERATOR_INSTANCE={} {} wait {svc} --for ready --timeout 60s; \
         echo EXIT=$?; sleep 60",
        swarm.prefix,
        env!("CARGO_BIN_EXE_swarm-operator")
    );
    let started = tmux_cmd(&[
        "new-session",
        "-d",
        "-s",
        "wait",
        "-x",
        "160",
        "-y",
        "12",
        &script,
    ]);
    assert!(started.status.success(), "{}", show(&started));
    let capture = || text(&tmux_cmd(&["capture-pane", "-p", "-t", "wait"]).stdout);
    let deadline = Instant::now() + CONVERGE;
    let mut captures: Vec<String> = Vec::new();
    let finished = loop {
        let pane = capture();
        if pane.contains("EXIT=") {
            break pane;
        }
        if pane.contains(&svc) && captures.last() != Some(&pane) {
            captures.push(pane);
        }
        assert!(
            Instant::now() < deadline,
            "wait did not finish: {captures:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let _ = tmux_cmd(&["kill-server"]);
    assert!(finished.contains("EXIT=0"), "{finished}");
    // At least two different drawings of the bar while the update ran, each with the service
    // on exactly one line (redrawn in place, not appended).
    let bars: Vec<&String> = captures.iter().filter(|c| c.contains("updated")).collect();
    assert!(
        bars.len() >= 2,
        "fewer than two progress drawings: {captures:?}"
    );
    for pane in &bars {
        assert_eq!(
            pane.lines().filter(|l| l.contains(&svc)).count(),
            1,
            "{pane}"
        );
        assert!(pane.contains('['), "a bar is drawn: {pane}");
    }
    eprintln!(
        "first drawing:\n{}\nlast drawing:\n{}",
        bars[0],
        bars[bars.len() - 1]
    );
    assert_eq!(
        finished.lines().filter(|l| l.contains(&svc)).count(),
        1,
        "{finished}"
    );
}

/// A CI job removes a spec and runs `wait --all --for ready --specs DIR`: the object whose
/// spec is gone is "being removed" (not done) while it exists, and "deleted" (done) once the
/// operator removed it; the command exits 0 rather than timing out on it.
#[test]
fn wait_all_after_a_spec_is_removed_exits_once_its_object_is_deleted() {
    let Some(swarm) = Swarm::start("waitremoved") else {
        return;
    };
    let (keep, old) = (swarm.name("keep"), swarm.name("old"));
    swarm.write_spec("keep.yaml", &swarm.service_spec("keep", 1, None));
    swarm.write_spec("old.yaml", &swarm.service_spec("old", 1, None));
    let mut operator = swarm.operator();
    let waited = wait_ready(&swarm, &["--all"], "60s");
    assert_eq!(waited.status.code(), Some(0), "{}", show(&waited));
    // Stopped while the spec goes, so that the wait's first look still finds `old`.
    assert!(operator.stop(), "{}", operator.log());
    swarm.remove_spec("old.yaml");

    let out = swarm.specs.path().with_extension("wait.out");
    let mut wait = std::process::Command::new(env!("CARGO_BIN_EXE_swarm-operator"))
        .args([
            "wait",
            "--all",
            "--for",
            "ready",
            "--timeout",
            "60s",
            "--specs",
        ])
        .arg(swarm.specs.path())
        .env("SWARM_OPERATOR_INSTANCE", &swarm.prefix)
        .env("CI", "true")
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = || std::fs::read_to_string(&out).unwrap_or_default();
    swarm.wait("old: being removed", CONVERGE, || {
        lines().contains(&format!("{old}: being removed"))
    });
    assert_eq!(wait.try_wait().unwrap(), None, "done while {old} exists");

    let _operator = swarm.operator();
    let deadline = Instant::now() + CONVERGE;
    let status = loop {
        if let Some(status) = wait.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "wait still runs:\n{}", lines());
        std::thread::sleep(Duration::from_millis(200));
    };
    let stderr = text(&wait.wait_with_output().unwrap().stderr);
    assert_eq!(status.code(), Some(0), "{}\n{stderr}", lines());
    assert!(lines().contains(&format!("{old}: deleted")), "{}", lines());
    assert!(lines().contains(&format!("{keep}: ready")), "{}", lines());
    assert!(swarm.service_version("old").is_none());
}
