//! The healthcheck binary's exit codes against a live service, an unhealthy one, a dead
//! port and a port that never answers.
// Helpers outside #[test] functions unwrap too: in a test, a failed unwrap is a failed test
// with its location.
#![allow(clippy::unwrap_used)]

use std::net::TcpListener as StdListener;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn healthcheck(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_healthcheck"))
        .args(args)
        .output()
        .expect("run healthcheck")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn exit_codes_against_live_and_dead_ports() {
    // The real quote service on a runtime of its own; the test thread stays blocking,
    // as the probe itself is.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = quote_service::Config {
            port: 0,
            advertise_addr: "10.0.0.1".into(),
        };
        quote_service::start(&config, listener).unwrap()
    });
    let port = server.local_addr().port().to_string();

    // Live and healthy: 0, silent.
    let live = healthcheck(&["--port", &port]);
    assert_eq!(live.status.code(), Some(0), "{}", stderr(&live));
    assert!(live.stderr.is_empty());

    // Live but unhealthy (503): 1 with the status in the reason. The toggle itself is a
    // GET answered 200, so the probe can flip it.
    let flip = healthcheck(&["--port", &port, "--path", "/testability/healthy/false"]);
    assert_eq!(flip.status.code(), Some(0), "{}", stderr(&flip));
    let unhealthy = healthcheck(&["--port", &port]);
    assert_eq!(unhealthy.status.code(), Some(1));
    assert!(stderr(&unhealthy).contains("503"), "{}", stderr(&unhealthy));
    assert_eq!(stderr(&unhealthy).lines().count(), 1, "one-line reason");
    healthcheck(&["--port", &port, "--path", "/testability/healthy/true"]);
    assert_eq!(healthcheck(&["--port", &port]).status.code(), Some(0));

    // Any other status (404) is unhealthy too.
    let missing = healthcheck(&["--port", &port, "--path", "/nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("404"), "{}", stderr(&missing));

    // Dead port: the server is gone, connection refused.
    runtime.block_on(server.shutdown()).unwrap();
    let dead = healthcheck(&["--port", &port]);
    assert_eq!(dead.status.code(), Some(1));
    assert!(stderr(&dead).contains("connecting"), "{}", stderr(&dead));

    // A port that accepts (the kernel completes the handshake) but never answers: 1 after
    // the timeout, not a hang.
    let silent = StdListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port().to_string();
    let started = Instant::now();
    let hung = healthcheck(&["--port", &silent_port, "--timeout", "300ms"]);
    let took = started.elapsed();
    assert_eq!(hung.status.code(), Some(1));
    assert!(stderr(&hung).contains("timed out"), "{}", stderr(&hung));
    assert!(took < Duration::from_secs(2), "took {took:?}");

    // Usage errors are unhealthy too, never a hang or a panic.
    let usage = healthcheck(&[]);
    assert_eq!(usage.status.code(), Some(1));
    assert!(stderr(&usage).contains("--port"));
}
