//! Field identity with the docker CLI and job services, on the local swarm.

#![allow(clippy::unwrap_used)] // a test fails by panicking

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{Swarm, TEST_IMAGE, condition, docker, docker_output};

const CONVERGE: Duration = Duration::from_secs(90);

/// The test image under its untagged name: the CLI sends it as `…:latest`.
const UNTAGGED: &str = "swarm-operator-test/busybox";

/// `swarm_operator_docker_requests_total{op="<op>",outcome="ok"}` of a running operator.
fn requests(operator: &support::Operator, op: &str) -> u64 {
    // 0 until the server answers (the operator is starting).
    let Some((_, metrics)) = operator.http_get("/metrics") else {
        return 0;
    };
    let key = format!(r#"swarm_operator_docker_requests_total{{op="{op}",outcome="ok"}} "#);
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&key))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// Every write the operator made (each a raft proposal): the `ok` requests of every op that
/// changes the swarm.
fn all_writes(operator: &support::Operator) -> u64 {
    [
        "create_service",
        "update_service",
        "remove_service",
        "create_network",
        "remove_network",
        "create_config",
        "create_secret",
        "remove_config",
        "remove_secret",
        "update_config",
    ]
    .into_iter()
    .map(|op| requests(operator, op))
    .sum()
}

fn image_of(service: &str) -> String {
    docker(&[
        "service",
        "inspect",
        "--format",
        "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
        service,
    ])
}

/// A spec naming an untagged image is sent as `docker service create` sends it (`name:latest`),
/// and a service created by the CLI from the untagged name holds the very same reference: the
/// spec and that service compare equal, and the operator's own service needs no update.
#[test]
fn an_untagged_image_is_sent_and_compared_as_the_cli_sends_it() {
    let Some(swarm) = Swarm::start("image") else {
        return;
    };
    docker(&["tag", TEST_IMAGE, &format!("{UNTAGGED}:latest")]);
    let by_cli = swarm.name("cli");
    docker(&[
        "service",
        "create",
        "-q",
        "-d",
        "--no-resolve-image",
        "--replicas",
        "0",
        "--name",
        &by_cli,
        UNTAGGED,
    ]);
    let svc = swarm.name("web");
    swarm.write_spec(
        "web.yaml",
        &swarm
            .service_spec("web", 1, None)
            .replace(TEST_IMAGE, UNTAGGED),
    );
    let operator = swarm.operator();
    swarm.wait_status("the service ready", CONVERGE, |s| {
        condition(s, &svc, "Ready")["status"] == "True"
    });
    assert_eq!(image_of(&svc), format!("{UNTAGGED}:latest"));
    assert_eq!(image_of(&svc), image_of(&by_cli), "same as the CLI");

    // Several resyncs (2 s each) later: no write, and `diff` sees nothing to do.
    let version = swarm.service_version("web");
    let updates = requests(&operator, "update_service");
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(swarm.service_version("web"), version);
    assert_eq!(requests(&operator, "update_service"), updates);
    let diff = swarm.command("diff");
    assert_eq!(
        diff.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&diff.stdout)
    );
    let _ = docker_output(&["service", "rm", &by_cli]);
}

/// A job's spec: `mode: replicated-job` running `script` in the test image.
fn job_spec(swarm: &Swarm, name: &str, replicas: u64, script: &str) -> String {
    format!(
        "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata:\n  name: {}\nspec:\n  image: {TEST_IMAGE}\n  mode: replicated-job\n  replicas: {replicas}\n  args: [sh, -c, {script:?}]\n  restartPolicy: {{condition: none}}\n",
        swarm.name(name)
    )
}

fn reason(status: &Value, name: &str, kind: &str) -> (String, String) {
    let c = condition(status, name, kind);
    (
        c["status"].as_str().unwrap_or_default().to_owned(),
        c["reason"].as_str().unwrap_or_default().to_owned(),
    )
}

/// A replicated job of 2 completes: Ready/Completed in the status, `wait --for complete` exits
/// 0, and the operator writes nothing more (a write would run the job again). A job that exits
/// 3 is Degraded with the task's error, and `wait --for complete` exits 1 naming it.
#[test]
fn a_job_completes_once_and_a_failing_job_fails_the_wait() {
    let Some(swarm) = Swarm::start("jobs") else {
        return;
    };
    let job = swarm.name("once");
    swarm.write_spec("once.yaml", &job_spec(&swarm, "once", 2, "echo done"));
    let operator = swarm.operator();
    let wait = swarm.cli(&["wait", &job, "--for", "complete", "--timeout", "90s"]);
    assert_eq!(
        wait.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&wait.stdout),
        String::from_utf8_lossy(&wait.stderr)
    );
    let status = swarm.wait_status("the job completed", CONVERGE, |s| {
        reason(s, &job, "Ready") == ("True".into(), "Completed".into())
    });
    assert_eq!(
        reason(&status, &job, "Degraded"),
        ("False".into(), "AsExpected".into())
    );
    assert_eq!(status["services"][job.as_str()]["desiredReplicas"], 2);
    let completed = docker(&[
        "service",
        "ps",
        &job,
        "--filter",
        "desired-state=complete",
        "--format",
        "{{.CurrentState}}",
    ]);
    assert_eq!(
        completed
            .lines()
            .filter(|l| l.starts_with("Complete"))
            .count(),
        2,
        "{completed}"
    );

    // Steady state: several resyncs (2 s each) and task polls later, no write at all.
    let writes = |op| requests(&operator, op);
    let (creates, updates) = (writes("create_service"), writes("update_service"));
    assert_eq!((creates, updates), (1, 0), "one create, no update");
    let version = swarm.service_version("once");
    std::thread::sleep(Duration::from_secs(7));
    assert_eq!(writes("update_service"), 0, "a job is never re-run");
    assert_eq!(writes("create_service"), 1);
    assert_eq!(swarm.service_version("once"), version);
    let diff = swarm.command("diff");
    assert_eq!(
        diff.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&diff.stdout)
    );

    let failing = swarm.name("fails");
    swarm.write_spec("fails.yaml", &job_spec(&swarm, "fails", 1, "exit 3"));
    let wait = swarm.cli(&["wait", &failing, "--for", "complete", "--timeout", "90s"]);
    let stderr = String::from_utf8_lossy(&wait.stderr);
    assert_eq!(wait.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&failing) && stderr.contains("non-zero exit (3)"),
        "{stderr}"
    );
    let status = swarm.wait_status("the job failed", CONVERGE, |s| {
        reason(s, &failing, "Degraded") == ("True".into(), "TasksFailing".into())
    });
    let message = condition(&status, &failing, "Degraded")["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("non-zero exit (3)"), "{message}");
    assert_eq!(
        writes("update_service"),
        0,
        "a failed job is not re-run either"
    );
    // `wait --for complete` on a service that is not a job fails at once instead of timing out.
    let web = swarm.name("web");
    swarm.write_spec("web.yaml", &swarm.service_spec("web", 1, None));
    swarm.wait_status("the service ready", CONVERGE, |s| {
        reason(s, &web, "Ready").0 == "True"
    });
    let wait = swarm.cli(&["wait", &web, "--for", "complete", "--timeout", "60s"]);
    assert_eq!(wait.status.code(), Some(1));
    drop(operator);
}

/// A job with a seconds schedule runs at each time: one service update (ForceUpdate + 1) per
/// run, nothing between runs, and each run's task completes.
#[test]
fn a_scheduled_job_runs_at_each_time_with_one_update_per_run() {
    let Some(swarm) = Swarm::start("cron") else {
        return;
    };
    let job = swarm.name("tick");
    swarm.write_spec(
        "tick.yaml",
        &format!(
            "{}  schedule: \"*/4 * * * * *\"\n",
            job_spec(&swarm, "tick", 1, "echo tick")
        ),
    );
    let operator = swarm.operator();
    let force_update = || {
        docker(&[
            "service",
            "inspect",
            "--format",
            "{{.Spec.TaskTemplate.ForceUpdate}}",
            &job,
        ])
        .parse::<u64>()
        .unwrap()
    };
    swarm.wait("two scheduled runs", CONVERGE, || {
        requests(&operator, "update_service") >= 2
    });
    // Between runs the operator only waits: the counter and the writes move together.
    let mut checks = 0;
    while checks < 3 {
        let before = requests(&operator, "update_service");
        let counter = force_update();
        let after = requests(&operator, "update_service");
        if before == after {
            assert_eq!(
                counter, after,
                "one update per run, each raising ForceUpdate by one"
            );
            checks += 1;
        }
        std::thread::sleep(Duration::from_millis(700));
    }
    let runs = requests(&operator, "update_service");
    assert_eq!(requests(&operator, "create_service"), 1);
    // No other write at all: the creation, then one update per run.
    let (updates, writes) = loop {
        let before = requests(&operator, "update_service");
        let writes = all_writes(&operator);
        if requests(&operator, "update_service") == before {
            break (before, writes);
        }
    };
    assert_eq!(writes, 1 + updates, "every write is the creation or a run");
    // Every run completes (the first at creation, one per scheduled time).
    swarm.wait("the runs' tasks completed", CONVERGE, || {
        let done = docker(&["service", "ps", &job, "--format", "{{.CurrentState}}"]);
        done.lines().filter(|l| l.starts_with("Complete")).count() as u64 >= runs
    });
    // The status lists the runs and when the last one started and the last good one ended.
    let status = swarm.wait_status("the runs in the status", CONVERGE, |s| {
        let schedule = &s["services"][job.as_str()]["schedule"];
        schedule["runs"].as_array().is_some_and(|r| r.len() >= 2)
            && schedule["lastSuccessfulTime"].is_string()
    });
    let schedule = &status["services"][job.as_str()]["schedule"];
    assert!(schedule["lastScheduleTime"].is_string(), "{schedule}");
    assert!(
        schedule["runs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["outcome"] == "Completed" || r["outcome"] == "Running"),
        "{schedule}"
    );
    // At most one run per 4 s time: the writes cannot outpace the schedule.
    let started = std::time::Instant::now();
    let first = requests(&operator, "update_service");
    std::thread::sleep(Duration::from_secs(9));
    let elapsed = started.elapsed().as_secs();
    let more = requests(&operator, "update_service") - first;
    assert!(
        more >= 1 && more <= elapsed / 4 + 1,
        "{more} runs in {elapsed} s of a 4 s schedule"
    );
    drop(operator);
}
