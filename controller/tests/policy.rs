//! Reconcile policies on a real single-node swarm: drift policy, suspend, dependsOn.
// Helpers outside #[test] functions unwrap too: in a test, a failed unwrap is a failed test
// with its location.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Swarm, TEST_IMAGE, condition, docker, docker_output, engine_time};

const CONVERGE: Duration = Duration::from_secs(60);

fn running(status: &Value, name: &str, replicas: u64) -> bool {
    status["services"][name]["runningReplicas"] == replicas
        && condition(status, name, "Ready")["status"] == "True"
}

/// Starts the operator with `--events-log`; returns it and the log's path.
fn operator_with_events(swarm: &Swarm) -> (support::Operator, std::path::PathBuf) {
    let events = swarm.specs.path().with_extension("events.jsonl");
    let operator = swarm.operator_with(
        &[
            "--specs",
            swarm.specs.path().to_str().expect("a UTF-8 temp path"),
        ],
        &swarm.status,
        "",
        &["--events-log".as_ref(), events.as_os_str()],
    );
    (operator, events)
}

/// The (kind, object) of every event in the events log.
fn events(path: &std::path::Path) -> Vec<(String, String)> {
    events_with_hash(path)
        .into_iter()
        .map(|(kind, object, _)| (kind, object))
        .collect()
}

/// The (kind, object, specHash) of every event in the events log.
fn events_with_hash(path: &std::path::Path) -> Vec<(String, String, Value)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let event: Value = serde_json::from_str(line).expect("one JSON object per line");
            (
                event["kind"].as_str().expect("a kind").to_owned(),
                event["object"].as_str().expect("an object").to_owned(),
                event["specHash"].clone(),
            )
        })
        .collect()
}

fn inspect(name: &str, format: &str) -> String {
    docker(&["service", "inspect", "--format", format, name])
}

fn exists(name: &str) -> bool {
    docker_output(&["service", "inspect", name])
        .status
        .success()
}

/// Sleeps through a few operator resyncs (`--resync 2s`): long enough for a correction to
/// happen if the operator were going to make one.
fn several_resyncs() {
    std::thread::sleep(Duration::from_secs(7));
}

/// `driftPolicy.ignore: [replicas]`: a manual `docker service scale` stays, while an image
/// change in the spec is still applied (and keeps the scaled replica count).
#[test]
fn drift_policy_leaves_manual_scaling_alone_but_applies_spec_changes() {
    let Some(swarm) = Swarm::start("driftpolicy") else {
        return;
    };
    let svc = swarm.name("scaled");
    let spec = swarm.service_spec("scaled", 1, None);
    let ignoring = format!("{spec}  driftPolicy: {{ignore: [replicas]}}\n");
    swarm.write_spec("scaled.yaml", &ignoring);
    let (_operator, events_log) = operator_with_events(&swarm);
    swarm.wait_status("1 replica ready", CONVERGE, |s| running(s, &svc, 1));

    docker(&["service", "scale", "--detach", &format!("{svc}=2")]);
    let status = swarm.wait_status("ExternallyManaged in the status", CONVERGE, |s| {
        condition(s, &svc, "Degraded")["reason"] == "ExternallyManaged"
    });
    let message = condition(&status, &svc, "Degraded")["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("replicas: 2 on the swarm, 1 in the spec"),
        "{message}"
    );
    assert_eq!(condition(&status, &svc, "Degraded")["status"], "False");
    several_resyncs();
    assert_eq!(swarm.service_replicas("scaled"), Some(2), "not scaled back");

    // A new image tag of the test image: the spec change is applied, the replicas stay.
    let tag = format!("swarm-operator-test/busybox:{}", swarm.prefix);
    docker(&["tag", TEST_IMAGE, &tag]);
    swarm.write_spec("scaled.yaml", &ignoring.replace(TEST_IMAGE, &tag));
    swarm.wait("the new image on the service", CONVERGE, || {
        inspect(&svc, "{{.Spec.TaskTemplate.ContainerSpec.Image}}") == tag
    });
    assert_eq!(swarm.service_replicas("scaled"), Some(2), "replicas kept");
    assert_eq!(
        inspect(
            &svc,
            "{{index .Spec.Labels \"swarm-operator.io/spec-value.replicas\"}}"
        ),
        "1",
        "the spec's value is recorded for the next comparison"
    );
    // Two rollouts announced: the creation and the image change, each once, each with its
    // own spec hash.
    let rollouts = || -> Vec<Value> {
        events_with_hash(&events_log)
            .into_iter()
            .filter(|(kind, object, _)| {
                kind == "rolloutSucceeded" && *object == format!("service/{svc}")
            })
            .map(|(_, _, hash)| hash)
            .collect()
    };
    swarm.wait("the new image's rollout announced", CONVERGE, || {
        rollouts().len() >= 2
    });
    several_resyncs();
    assert_eq!(swarm.service_replicas("scaled"), Some(2));
    let hashes = rollouts();
    assert_eq!(hashes.len(), 2, "{:?}", events_with_hash(&events_log));
    assert_ne!(hashes[0], hashes[1]);
    assert!(hashes.iter().all(Value::is_string), "{hashes:?}");
    let status = swarm.status().expect("a status");
    assert_eq!(
        status["services"][&svc]["desiredReplicas"], 2,
        "the externally managed count is the one expected"
    );

    // Without the policy the same difference is drift and is corrected.
    swarm.write_spec("scaled.yaml", &spec.replace(TEST_IMAGE, &tag));
    swarm.wait("scaled back to the spec's 1", CONVERGE, || {
        swarm.service_replicas("scaled") == Some(1)
    });
    drop(_operator);
    swarm.cleanup();
    let _ = docker_output(&["image", "rm", &tag]);
}

/// A `.suspend` file holds everything: a deleted spec's service stays, a manual scale stays,
/// and the status says `Suspended`; removing the file resumes (and prunes).
#[test]
fn suspend_leaves_a_deleted_specs_service_in_place() {
    let Some(swarm) = Swarm::start("suspend") else {
        return;
    };
    let kept = swarm.name("kept");
    let held = swarm.name("held");
    swarm.write_spec("kept.yaml", &swarm.service_spec("kept", 1, None));
    // Suspended by its annotation from the start: never created.
    let annotated = swarm.service_spec("held", 1, None).replace(
        &format!("  name: {held}\n"),
        &format!("  name: {held}\n  annotations: {{swarm-operator.io/suspend: \"true\"}}\n"),
    );
    swarm.write_spec("held.yaml", &annotated);
    let (_operator, events_log) = operator_with_events(&swarm);
    let status = swarm.wait_status("kept ready, held suspended", CONVERGE, |s| {
        running(s, &kept, 1) && condition(s, &held, "Progressing")["reason"] == "Suspended"
    });
    assert!(!exists(&held), "a suspended spec creates nothing");
    assert_eq!(condition(&status, &held, "Progressing")["status"], "False");

    std::fs::write(swarm.specs.path().join(".suspend"), "").unwrap();
    swarm.wait_status("kept suspended", CONVERGE, |s| {
        condition(s, &kept, "Progressing")["reason"] == "Suspended"
    });
    let diff = swarm.command("diff");
    let text = String::from_utf8_lossy(&diff.stdout);
    assert!(text.contains(".suspend file"), "{text}");
    swarm.remove_spec("kept.yaml");
    docker(&["service", "scale", "--detach", &format!("{kept}=2")]);
    several_resyncs();
    assert!(exists(&kept), "a suspended directory prunes nothing");
    assert_eq!(
        swarm.service_replicas("kept"),
        Some(2),
        "nor corrects drift"
    );
    let diff = swarm.command("diff");
    let text = String::from_utf8_lossy(&diff.stdout);
    assert!(text.contains("(held: remove)"), "{text}");

    std::fs::remove_file(swarm.specs.path().join(".suspend")).unwrap();
    swarm.wait("kept pruned once resumed", CONVERGE, || !exists(&kept));
    assert!(!exists(&held), "still suspended by its annotation");
    let pruned = ("pruned".to_owned(), format!("service/{kept}"));
    swarm.wait("the prune announced", Duration::from_secs(10), || {
        events(&events_log).contains(&pruned)
    });
}

/// `dependsOn` creates the client only after the database-like service runs, and removes it
/// before the database.
#[test]
fn depends_on_orders_creation_and_removal() {
    let Some(swarm) = Swarm::start("dependson") else {
        return;
    };
    let db = swarm.name("db");
    let client = swarm.name("client");
    // A spec that stays when the other two go (a directory left without specs prunes
    // nothing), suspended so that it never creates anything.
    let anchor = swarm.name("anchor");
    swarm.write_spec(
        "anchor.yaml",
        &swarm.service_spec("anchor", 1, None).replace(
            &format!("  name: {anchor}\n"),
            &format!("  name: {anchor}\n  annotations: {{swarm-operator.io/suspend: \"true\"}}\n"),
        ),
    );
    let client_spec = format!(
        "{}  dependsOn: [{db}]\n",
        swarm.service_spec("client", 1, None)
    );
    swarm.write_spec("client.yaml", &client_spec);
    swarm.write_spec("db.yaml", &swarm.service_spec("db", 2, None));
    let _operator = swarm.operator();
    swarm.wait_status("both ready", CONVERGE, |s| {
        running(s, &db, 2) && running(s, &client, 1)
    });
    let client_created = engine_time(&inspect(&client, "{{json .CreatedAt}}"));
    let db_created = engine_time(&inspect(&db, "{{json .CreatedAt}}"));
    let db_tasks = docker(&[
        "service",
        "ps",
        "--filter",
        "desired-state=running",
        "--format",
        "{{.ID}}",
        &db,
    ]);
    let mut db_running_at = Vec::new();
    for task in db_tasks.lines() {
        let started = docker(&["inspect", "--format", "{{json .Status.Timestamp}}", task]);
        db_running_at.push(engine_time(&started));
    }
    assert_eq!(db_running_at.len(), 2);
    let db_ready = db_running_at.iter().max().copied().unwrap();
    eprintln!(
        "db created {:?}, ready {:?}, client created {:?}",
        db_created, db_ready, client_created
    );
    assert!(
        client_created >= db_ready,
        "the client was created before its dependency ran every replica"
    );
    let labels = inspect(
        &client,
        "{{index .Spec.Labels \"swarm-operator.io/depends-on\"}}",
    );
    assert_eq!(labels, db);

    // Both specs removed at once: the client goes first, the database after it.
    swarm.remove_spec("client.yaml");
    swarm.remove_spec("db.yaml");
    let start = Instant::now();
    loop {
        let (c, d) = (exists(&client), exists(&db));
        assert!(
            d || !c,
            "the database was removed while its client still existed"
        );
        if !c && !d {
            break;
        }
        assert!(start.elapsed() < CONVERGE, "removal did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
}
