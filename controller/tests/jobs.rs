//! Field identity with the docker CLI and job services, on the local swarm.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{Swarm, TEST_IMAGE, condition, docker, docker_output};

const CONVERGE: Duration = Duration::from_secs(90);

/// The test image under its untagged name: the CLI sends it as `…:latest`.
const UNTAGGED: &str = "swarm-operator-test/busybox";

/// `swarm_operator_docker_requests_total{op="<op>",outcome="ok"}` of a running operator.
fn requests(operator: &support::Operator, op: &str) -> u64 {
    let (_, metrics) = operator.http_get("/metrics").expect("metrics answer");
    let key = format!(r#"swarm_operator_docker_requests_total{{op="{op}",outcome="ok"}} "#);
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&key))
        .map_or(0, |v| v.trim().parse().unwrap())
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

fn _unused(_: &Value) {}
