//! The operator against a real single-node swarm on the local Docker engine.
// Helpers outside #[test] functions unwrap too: in a test, a failed unwrap is a failed test
// with its location.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{Swarm, condition, docker, docker_output};

const CONVERGE: Duration = Duration::from_secs(60);

fn service<'a>(status: &'a Value, name: &str) -> &'a Value {
    &status["services"][name]
}

fn ready(status: &Value, name: &str, replicas: u64) -> bool {
    let svc = service(status, name);
    svc["runningReplicas"] == replicas
        && svc["desiredReplicas"] == replicas
        && condition(status, name, "Ready")["status"] == "True"
        && svc["endpoints"]
            .as_array()
            .is_some_and(|e| e.len() as u64 == replicas)
}

/// Create → converged with endpoints; edit replicas → scaled; scale by hand → reverted;
/// broken file → located error and nothing touched; restart → zero writes; spec removed →
/// service removed.
#[test]
fn lifecycle_on_a_real_swarm() {
    let Some(swarm) = Swarm::start("lifecycle") else {
        return;
    };
    let svc = swarm.name("web");
    let net = swarm.name("net");
    swarm.write_spec("net.yaml", &swarm.network_spec("net"));
    swarm.write_spec("web.yaml", &swarm.service_spec("web", 2, Some("net")));

    // diff before anything exists: changes pending.
    let diff = swarm.command("diff");
    assert_eq!(
        diff.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&diff.stdout)
    );
    let plan = String::from_utf8_lossy(&diff.stdout);
    assert!(
        plan.contains(&format!("+ network/{net} (create)")),
        "{plan}"
    );
    assert!(
        plan.contains(&format!("+ service/{svc} (create)")),
        "{plan}"
    );

    let mut operator = swarm.operator();
    let status = swarm.wait_status("2 replicas ready", CONVERGE, |s| ready(s, &svc, 2));
    for endpoint in service(&status, &svc)["endpoints"].as_array().unwrap() {
        let address = &endpoint["addresses"][0];
        assert_eq!(address["network"], net.as_str(), "{endpoint}");
        let ip: std::net::Ipv4Addr = address["ip"]
            .as_str()
            .unwrap()
            .parse()
            .expect("an IPv4 address");
        assert!(!ip.is_loopback());
        assert_eq!(endpoint["state"], "running");
    }
    let labels = docker(&[
        "service",
        "inspect",
        "--format",
        "{{json .Spec.Labels}}",
        &svc,
    ]);
    assert!(
        labels.contains("\"swarm-operator.io/managed-by\":\"swarm-operator\""),
        "{labels}"
    );
    assert!(labels.contains("swarm-operator.io/spec-hash"), "{labels}");

    // Ready, and the metrics say what happened.
    assert_eq!(operator.http_get("/readyz").map(|r| r.0), Some(200));
    assert_eq!(operator.http_get("/healthz").map(|r| r.0), Some(200));

    // A task that stops leaves the status endpoints promptly (swarm has no task events: the
    // operator polls every second).
    let victim = service(&status, &svc)["endpoints"][0]["task"]
        .as_str()
        .unwrap()
        .to_owned();
    let container = docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.docker.swarm.task.id={victim}"),
    ]);
    assert!(!container.is_empty(), "the task's container runs here");
    docker(&["rm", "-f", &container]);
    swarm.wait_status(
        "stopped task gone from the endpoints",
        Duration::from_secs(10),
        |s| {
            service(s, &svc)["endpoints"]
                .as_array()
                .is_some_and(|e| e.iter().all(|e| e["task"] != victim.as_str()))
        },
    );
    swarm.wait_status("replacement task running", CONVERGE, |s| ready(s, &svc, 2));

    // In sync now: diff says so.
    let diff = swarm.command("diff");
    assert_eq!(
        diff.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&diff.stdout)
    );

    // Edit replicas in the spec.
    swarm.write_spec("web.yaml", &swarm.service_spec("web", 3, Some("net")));
    swarm.wait_status("scaled to 3 by spec edit", CONVERGE, |s| ready(s, &svc, 3));

    // Scale by hand: drift, reverted.
    docker(&["service", "scale", "--detach", &format!("{svc}=1")]);
    swarm.wait("manual scale reverted", Duration::from_secs(15), || {
        swarm.service_replicas("web") == Some(3)
    });
    swarm.wait_status("3 replicas running again", CONVERGE, |s| ready(s, &svc, 3));
    let (code, metrics) = operator.http_get("/metrics").expect("metrics answer");
    assert_eq!(code, 200);
    assert!(
        metrics.contains("swarm_operator_drift_corrections_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("swarm_operator_reconciles_total{kind=\"service\",result=\"success\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("swarm_operator_managed_objects{kind=\"service\"} 1"),
        "{metrics}"
    );

    // A broken file: located error in the status, nothing changed or removed.
    let version = swarm.service_version("web").unwrap();
    swarm.write_spec("web.yaml", "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata:\n  name: x\nspec:\n  image: img\n  replicas: [oops\n");
    let status = swarm.wait_status("located error in status", CONVERGE, |s| {
        s["errors"].as_array().is_some_and(|e| !e.is_empty())
    });
    let error = &status["errors"][0];
    assert_eq!(error["file"], "web.yaml", "{error}");
    assert!(error["line"].as_u64().is_some_and(|l| l >= 6), "{error}");
    assert!(error["column"].as_u64().is_some(), "{error}");
    std::thread::sleep(Duration::from_secs(3)); // past one resync
    assert_eq!(
        swarm.service_version("web"),
        Some(version),
        "a broken file must change nothing"
    );
    assert!(ready(&swarm.status().unwrap(), &svc, 3));

    // Fix it again, then restart the operator: zero writes.
    swarm.write_spec("web.yaml", &swarm.service_spec("web", 3, Some("net")));
    swarm.wait_status("error cleared", CONVERGE, |s| {
        s["errors"].as_array().is_some_and(|e| e.is_empty())
    });
    let version = swarm.service_version("web").unwrap();
    assert!(
        operator.stop(),
        "operator exits cleanly on SIGTERM; log:\n{}",
        operator.log()
    );
    let mut operator = swarm.operator();
    std::thread::sleep(Duration::from_secs(5)); // start + two resyncs
    assert_eq!(
        swarm.service_version("web"),
        Some(version),
        "a restart must not write; log:\n{}",
        operator.log()
    );

    // Remove the spec: service and network removed.
    swarm.remove_spec("web.yaml");
    swarm.remove_spec("net.yaml");
    // An empty directory prunes nothing by default...
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        swarm.service_version("web").is_some(),
        "an empty spec dir must not prune"
    );
    // ...but with another spec present the deletion is real.
    swarm.write_spec("other.yaml", &swarm.service_spec("other", 1, None));
    swarm.wait("service removed", CONVERGE, || {
        swarm.service_version("web").is_none()
    });
    swarm.wait("network removed", CONVERGE, || {
        !docker_output(&["network", "inspect", &net])
            .status
            .success()
    });
    swarm.wait_status("removed service gone from status", CONVERGE, |s| {
        s["services"].get(&svc).is_none()
    });
    assert!(operator.stop());
}

/// A service of the same name made by hand is reported, never updated or removed; unrelated
/// services are never touched.
#[test]
fn unowned_services_are_never_touched() {
    let Some(swarm) = Swarm::start("unowned") else {
        return;
    };
    let clash = swarm.name("clash");
    let bystander = swarm.name("bystander");
    for name in [&clash, &bystander] {
        docker(&[
            "service",
            "create",
            "--detach",
            "--name",
            name,
            "--replicas",
            "1",
            support::TEST_IMAGE,
            "sleep",
            "3600",
        ]);
    }
    let clash_version = swarm.service_version("clash").unwrap();
    let bystander_version = swarm.service_version("bystander").unwrap();
    swarm.write_spec("clash.yaml", &swarm.service_spec("clash", 2, None));
    let _operator = swarm.operator();
    let status = swarm.wait_status("NotOwned reported", CONVERGE, |s| {
        condition(s, &clash, "Ready")["reason"] == "NotOwned"
    });
    assert!(
        service(&status, &clash)["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("not managed by swarm-operator")),
        "{status}"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(swarm.service_version("clash"), Some(clash_version));
    assert_eq!(swarm.service_version("bystander"), Some(bystander_version));
    assert_eq!(swarm.service_replicas("clash"), Some(1));
    assert!(
        swarm.status().unwrap()["services"]
            .get(&bystander)
            .is_none()
    );
}

/// `validate` exit codes and located messages.
#[test]
fn validate_reports_located_errors() {
    let Some(swarm) = Swarm::start("validate") else {
        return;
    };
    swarm.write_spec("ok.yaml", &swarm.service_spec("ok", 1, None));
    let out = swarm.command("validate");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    swarm.write_spec(
        "bad.yml",
        "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata:\n  name: bad\nspec:\n  image: img\n  replicas: 2\n  ports:\n    - {target: 70000}\n  bogus: 1\n",
    );
    let out = swarm.command("validate");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("bad.yml:"), "{stdout}");
    assert!(stdout.contains("65535"), "port range explained: {stdout}");

    // A symlink loop is an error of its own, not a file that is silently skipped.
    swarm.remove_spec("bad.yml");
    let link = |name: &str, target: &str| {
        std::os::unix::fs::symlink(target, swarm.specs.path().join(name)).expect("symlink");
    };
    link("loop-a.yaml", "loop-b.yaml");
    link("loop-b.yaml", "loop-a.yaml");
    let out = swarm.command("validate");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout
            .contains("loop-a.yaml: is a symlink loop (loop-a.yaml -> loop-b.yaml -> loop-a.yaml)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("loop-b.yaml: is a symlink loop"),
        "{stdout}"
    );
}

/// The Docker adapter classifies the engine's refusals once, on a real engine: removing what
/// is gone is "not found" (done), a network with attached services is "in use" naming them,
/// and a published port held by another service is a port conflict naming the holder.
#[test]
fn engine_errors_are_classified() {
    use std::collections::BTreeMap;
    use swarm_operator::docker::{DockerEngine, DockerError, SwarmApi};

    let Some(swarm) = Swarm::start("engine_errors") else {
        return;
    };
    let net = swarm.name("net");
    let user = swarm.name("user");
    let holder = swarm.name("holder");
    let port = 20_000 + std::process::id() % 10_000;
    docker(&["network", "create", "-d", "overlay", &net]);
    let user_id = support::create_service_by_hand(&user, &["--network", &net]);
    support::create_service_by_hand(&holder, &["-p", &format!("{port}:80")]);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let engine = DockerEngine::connect().await.expect("connecting");
        match engine.remove_network(&net).await {
            Err(DockerError::InUse { users, .. }) => {
                assert_eq!(
                    users,
                    [user_id.trim()],
                    "the engine names the attached service"
                );
            }
            other => panic!("expected InUse, got {other:?}"),
        }
        for result in [
            engine.remove_network("sot-no-such-network").await,
            engine.remove_service("sot-no-such-service").await,
        ] {
            assert!(
                matches!(result, Err(DockerError::NotFound { .. })),
                "{result:?}"
            );
        }
        let text = format!(
            "{}  ports: [{{target: 80, published: {port}}}]\n",
            swarm.service_spec("wants", 0, None)
        );
        let loaded = swarm_operator::spec::load_str(std::path::Path::new("wants.yaml"), &text);
        let service = loaded.objects().expect("a valid spec")[0]
            .value
            .as_service()
            .expect("a service")
            .clone();
        let mut wants = swarm_operator::desired::service_definition(&service);
        wants.networks.clear();
        // Swarm refuses ingress ports with dnsrr before it looks at the port.
        wants.endpoint_mode = swarm_operator::desired::definition::EndpointMode::Vip;
        match engine.create_service(&wants, &BTreeMap::new()).await {
            Err(DockerError::PortConflict {
                port: p, holder: h, ..
            }) => {
                assert_eq!((u32::from(p), h.as_str()), (port, holder.as_str()));
            }
            other => panic!("expected PortConflict, got {other:?}"),
        }
    });
}

/// The adapter's network names stay current: a service attached to a network made after the
/// last network list shows the network's name, not its id (the list is decoded one service at
/// a time, such a service converted after the networks are listed again), and networks that
/// went away are forgotten. A sharing list keeps the caller's equal definitions.
#[test]
fn the_adapter_keeps_network_names_current() {
    use swarm_operator::docker::{DockerEngine, SwarmApi};

    let Some(swarm) = Swarm::start("list_networks_late") else {
        return;
    };
    let early = swarm.name("early");
    let late_net = swarm.name("late-net");
    let late = swarm.name("late");
    support::create_service_by_hand(&early, &[]);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let engine = DockerEngine::connect().await.expect("connecting");
        engine.list_networks().await.expect("listing networks");
        docker(&["network", "create", "-d", "overlay", &late_net]);
        support::create_service_by_hand(&late, &["--network", &late_net]);

        let services = engine.list_services().await.expect("listing services");
        let find = |name: &str| {
            services
                .iter()
                .find(|s| s.definition.name == name)
                .unwrap_or_else(|| panic!("{name} missing from the list"))
        };
        assert!(find(&early).definition.networks.is_empty());
        assert_eq!(find(&late).definition.networks, [late_net.as_str()]);

        // A sharing list keeps the definition the caller holds where it equals the listed one
        // (the relist's way of not re-allocating every spec), and only there.
        let held = std::sync::Arc::clone(&find(&early).definition);
        let mut other = (*find(&late).definition).clone();
        other.image = "not-what-is-listed".into();
        let other = std::sync::Arc::new(other);
        let lookup =
            |name: &str, listed: &swarm_operator::desired::definition::ServiceDefinition| {
                [&held, &other]
                    .into_iter()
                    .find(|d| d.name == name && ***d == *listed)
                    .cloned()
            };
        let shared = engine
            .list_services_sharing(swarm_operator::desired::definition::KnownDefinitions::new(
                &lookup,
            ))
            .await
            .expect("listing services");
        let find_shared = |name: &str| {
            shared
                .iter()
                .find(|s| s.definition.name == name)
                .unwrap_or_else(|| panic!("{name} missing from the sharing list"))
        };
        assert!(std::sync::Arc::ptr_eq(
            &find_shared(&early).definition,
            &held
        ));
        assert!(!std::sync::Arc::ptr_eq(
            &find_shared(&late).definition,
            &other
        ));
        assert_eq!(find_shared(&late).definition, find(&late).definition);

        // Networks that go away are forgotten (on a busy swarm the map would otherwise grow
        // with every network ever seen): one removed by the adapter at once, one removed by
        // someone else at the next list.
        docker(&["service", "rm", &late]);
        let gone = swarm.name("gone");
        let gone_id = docker(&["network", "create", "-d", "overlay", &gone]);
        let listed = engine
            .list_networks()
            .await
            .expect("listing networks")
            .len();
        assert_eq!(engine.remembered_networks(), listed);
        engine
            .remove_network(gone_id.trim())
            .await
            .expect("removing a network");
        assert_eq!(engine.remembered_networks(), listed - 1);
        docker(&["network", "rm", &late_net]);
        let listed = engine
            .list_networks()
            .await
            .expect("listing networks")
            .len();
        assert_eq!(engine.remembered_networks(), listed);
    });
}

fn network_condition<'a>(status: &'a Value, name: &str, kind: &str) -> &'a Value {
    status["networks"][name]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == kind))
        .unwrap_or(&Value::Null)
}

/// What the user sees for an object that can not be applied: a port held by another service
/// is `Degraded/PortConflict` naming the holder; a network whose spec is gone but which is
/// still used is `Progressing/WaitingForUsers` naming the users. Both are retried with
/// backoff only (counted in `swarm_operator_docker_requests_total`), and go through as soon as
/// the blocker is gone.
#[test]
fn blocked_objects_are_reported_and_recover() {
    let Some(swarm) = Swarm::start("blocked") else {
        return;
    };
    let net = swarm.name("net");
    let holder = swarm.name("holder");
    let wants = swarm.name("wants");
    let user = swarm.name("user");
    let port = 20_000 + (std::process::id() + 1) % 10_000;
    docker(&[
        "service",
        "create",
        "-q",
        "-d",
        "--name",
        &holder,
        "--replicas",
        "0",
        "-p",
        &format!("{port}:80"),
        support::TEST_IMAGE,
    ]);
    swarm.write_spec("net.yaml", &swarm.network_spec("net"));
    let wants_spec = swarm
        .service_spec("wants", 0, None)
        .replace("endpointMode: dnsrr", "endpointMode: vip")
        + &format!("  ports: [{{target: 80, published: {port}}}]\n");
    swarm.write_spec("wants.yaml", &wants_spec);
    let operator = swarm.operator();

    let status = swarm.wait_status("port conflict reported", CONVERGE, |s| {
        condition(s, &wants, "Degraded")["reason"] == "PortConflict"
            && network_condition(s, &net, "Ready")["status"] == "True"
    });
    let message = condition(&status, &wants, "Degraded")["message"].to_string();
    assert!(
        message.contains(&holder) && message.contains(&port.to_string()),
        "{message}"
    );

    // An unmanaged service attaches to the owned network; then the network's spec goes.
    docker(&[
        "service",
        "create",
        "-q",
        "-d",
        "--name",
        &user,
        "--network",
        &net,
        "--replicas",
        "0",
        support::TEST_IMAGE,
    ]);
    swarm.remove_spec("net.yaml");
    let status = swarm.wait_status("network waits for its users", CONVERGE, |s| {
        network_condition(s, &net, "Progressing")["reason"] == "WaitingForUsers"
    });
    let message = network_condition(&status, &net, "Progressing")["message"].to_string();
    assert!(message.contains(&user), "names the user: {message}");

    let (_, metrics) = operator.http_get("/metrics").expect("metrics");
    assert!(
        metrics.contains(
            r#"swarm_operator_docker_requests_total{op="create_service",outcome="conflict"}"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"swarm_operator_docker_requests_total{op="remove_network",outcome="conflict"}"#
        ),
        "{metrics}"
    );

    // Unblocked: both go through well before their backoff would have retried them.
    docker(&["service", "rm", &holder, &user]);
    swarm.wait(
        "wants created and net removed",
        Duration::from_secs(10),
        || {
            swarm.service_version("wants").is_some()
                && !support::docker_output(&["network", "inspect", &net])
                    .status
                    .success()
        },
    );
}

/// Ordering inside one reload on a real swarm (issue 18.4): a network, a config and the
/// service that needs both, from one file, applied by a fresh operator. The service waits for
/// them inside the plan, so it is created once and converges, and no error reaches the
/// activity log, the events log (what webhooks get) or the operator's warnings.
#[test]
fn a_network_config_and_service_from_one_file_converge_without_an_error() {
    let Some(swarm) = Swarm::start("one_file") else {
        return;
    };
    let svc = swarm.name("web");
    let net = swarm.name("net");
    let conf = swarm.name("conf");
    let service = swarm.service_spec("web", 1, Some("net")).replace(
        "  endpointMode: dnsrr\n",
        &format!("  endpointMode: dnsrr\n  configs: [{{name: {conf}, target: /etc/app.conf}}]\n"),
    );
    swarm.write_spec(
        "stack.yaml",
        &format!(
            "{}---\napiVersion: swarm-operator.io/v1alpha1\nkind: SwarmConfig\nmetadata:\n  name: {conf}\nspec:\n  data: \"listen 80\\n\"\n---\n{service}",
            swarm.network_spec("net")
        ),
    );
    // diff shows the config's version by name (its hash prefix), never its content.
    let diff = swarm.command("diff");
    let plan = String::from_utf8_lossy(&diff.stdout);
    assert!(plan.contains(&format!("+ config/{conf}-")), "{plan}");
    assert!(
        plan.contains(&format!("+ service/{svc} (create)")),
        "{plan}"
    );
    assert!(!plan.contains("listen 80"), "{plan}");

    let events = swarm.specs.path().with_extension("events.jsonl");
    let events_arg = std::ffi::OsString::from(&events);
    let mut operator = swarm.operator_with(
        &["--specs", swarm.specs.path().to_str().unwrap()],
        &swarm.status,
        "",
        &[std::ffi::OsStr::new("--events-log"), &events_arg],
    );
    swarm.wait_status("the service converged", CONVERGE, |s| ready(s, &svc, 1));
    let mounted = docker(&[
        "service",
        "inspect",
        "--format",
        "{{range .Spec.TaskTemplate.ContainerSpec.Configs}}{{.ConfigName}}{{end}}",
        &svc,
    ]);
    assert!(mounted.starts_with(&format!("{conf}-")), "{mounted}");

    let (code, api) = operator
        .http_get("/api/v1/status")
        .expect("the API answers");
    assert_eq!(code, 200);
    let api: Value =
        serde_json::from_str(api.split("\r\n\r\n").nth(1).unwrap_or(&api)).unwrap_or(Value::Null);
    let activity = api["activity"].as_array().cloned().unwrap_or_default();
    assert!(
        activity.iter().all(|e| e["kind"] != "error"),
        "no error in the activity: {activity:?}"
    );
    for object in [format!("network/{net}"), format!("service/{svc}")] {
        assert!(
            activity
                .iter()
                .any(|e| e["kind"] == "created" && e["object"] == object.as_str()),
            "{object} created: {activity:?}"
        );
    }
    assert!(
        activity.iter().any(|e| e["kind"] == "created"
            && e["object"]
                .as_str()
                .is_some_and(|o| o.starts_with(&format!("config/{conf}-")))),
        "the config's version created: {activity:?}"
    );
    let log = std::fs::read_to_string(&events).unwrap_or_default();
    assert!(
        !log.contains("rolloutFailed") && !log.contains("not found"),
        "events log:\n{log}"
    );
    let log = operator.log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ERROR") || (l.contains("WARN") && l.contains("not found")))
        .collect();
    assert!(warnings.is_empty(), "{warnings:#?}");
    // One create of the service: it was never sent before its network and config existed.
    let metrics = operator.http_get("/metrics").unwrap().1;
    let creates: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("swarm_operator_docker_requests_total{")
                && l.contains("op=\"create_service\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(creates, 1.0, "{metrics}");
    assert!(operator.stop());
}
