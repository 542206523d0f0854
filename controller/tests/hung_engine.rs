//! A Docker engine that stops answering mid-run, on the real engine: the operator reaches it
//! through a unix-socket proxy (run by the test) that can be switched to accept and read but
//! never answer, stalling every open connection (the event stream's included). `/readyz`
//! must notice, the watch loop must reconnect once the engine answers again, and SIGTERM
//! must end the process within 10 s while the engine hangs.
// Helpers outside #[test] functions unwrap too: in a test, a failed unwrap is a failed test
// with its location.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use support::Swarm;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

/// The engine's socket, as the docker CLI (and `Swarm::start`) find it.
fn engine_socket() -> PathBuf {
    std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|host| host.strip_prefix("unix://").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/var/run/docker.sock"))
}

/// The switch of the proxy: while `hung`, nothing is forwarded either way, and a connection
/// that was open when the engine hung (or was opened while it hung) stays stalled for good,
/// like a connection to an engine that never answers.
#[derive(Default)]
struct Switch {
    hung: AtomicBool,
    /// Counts the hangs: a connection born before the latest hang is stalled.
    hangs: AtomicU64,
}

impl Switch {
    fn hang(&self) {
        self.hangs.fetch_add(1, Ordering::SeqCst);
        self.hung.store(true, Ordering::SeqCst);
    }

    fn answer(&self) {
        self.hung.store(false, Ordering::SeqCst);
    }

    /// The generation a connection opened now belongs to; `None` when it is born stalled.
    fn birth(&self) -> Option<u64> {
        (!self.hung.load(Ordering::SeqCst)).then(|| self.hangs.load(Ordering::SeqCst))
    }

    fn stalled(&self, born: Option<u64>) -> bool {
        born.is_none_or(|generation| self.hangs.load(Ordering::SeqCst) != generation)
    }
}

/// Forwards `from` to `to` until either side closes; once the connection is stalled, reads
/// on (so the writer never notices) and forwards nothing.
async fn pump(
    mut from: tokio::net::unix::OwnedReadHalf,
    mut to: tokio::net::unix::OwnedWriteHalf,
    switch: Arc<Switch>,
    born: Option<u64>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if switch.stalled(born) {
            continue;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            break;
        }
    }
    if switch.stalled(born) {
        // Dropping the half would close it: a hung engine closes nothing.
        std::mem::forget(to);
    } else {
        let _ = to.shutdown().await;
    }
}

/// Runs the proxy on its own thread and runtime until the test ends.
fn start_proxy(socket: &Path, switch: Arc<Switch>) {
    let socket = socket.to_owned();
    let engine_socket = engine_socket();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = UnixListener::bind(&socket).unwrap();
            ready_tx.send(()).unwrap();
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let born = switch.birth();
                let switch = switch.clone();
                let engine_socket = engine_socket.clone();
                tokio::spawn(async move {
                    let Ok(engine) = UnixStream::connect(&engine_socket).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (engine_read, engine_write) = engine.into_split();
                    tokio::join!(
                        pump(client_read, engine_write, switch.clone(), born),
                        pump(engine_read, client_write, switch, born),
                    );
                });
            }
        });
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the proxy listens");
}

/// The operator under test, reaching the engine through the proxy.
struct Operator {
    child: Child,
    log: PathBuf,
    metrics_addr: std::net::SocketAddr,
}

impl Operator {
    fn start(swarm: &Swarm, proxy: &Path) -> Operator {
        let metrics_addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap();
        let log = swarm.specs.path().with_extension("hung-engine.log");
        let child = Command::new(env!("CARGO_BIN_EXE_swarm-operator"))
            .arg("run")
            .arg("--specs")
            .arg(swarm.specs.path())
            .arg("--status")
            .arg(&swarm.status)
            // Only the watch loop's reconnect can list the swarm again within this test.
            .args(["--resync", "1h"])
            .args(["--engine-timeout", "2s", "--engine-write-timeout", "4s"])
            .args(["--events-silence", "3s"])
            // The lease is kept through the engine too: its release must not hold SIGTERM.
            .args(["--leader-election", "--identity", "hung-engine-test"])
            .arg("--metrics-addr")
            .arg(metrics_addr.to_string())
            .env("DOCKER_HOST", format!("unix://{}", proxy.display()))
            .env("RUST_LOG", "info,swarm_operator=debug")
            .env("SWARM_OPERATOR_INSTANCE", &swarm.prefix)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Operator {
            child,
            log,
            metrics_addr,
        }
    }

    fn readyz(&self) -> Option<(u16, String)> {
        support::http_get(self.metrics_addr, "/readyz")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `/readyz` answers `want` (200 or not); returns how long that took.
    fn wait_ready(&self, want_ok: bool, limit: Duration) -> (Duration, String) {
        let started = Instant::now();
        loop {
            if let Some((code, body)) = self.readyz()
                && (code == 200) == want_ok
            {
                return (started.elapsed(), body);
            }
            assert!(
                started.elapsed() < limit,
                "/readyz not {} within {limit:?}: {:?}\n{}",
                if want_ok { "200" } else { "failing" },
                self.readyz(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_hung_engine_is_noticed_survived_and_does_not_hold_shutdown() {
    let Some(swarm) = Swarm::start("a_hung_engine_is_noticed_survived_and_does_not_hold_shutdown")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let proxy = dir.path().join("engine.sock");
    let switch = Arc::new(Switch::default());
    start_proxy(&proxy, switch.clone());

    swarm.write_spec("api.yaml", &swarm.service_spec("api", 1, None));
    let operator = Operator::start(&swarm, &proxy);
    swarm.wait(
        "the service created through the proxy",
        Duration::from_secs(60),
        || swarm.service_replicas("api") == Some(1),
    );
    operator.wait_ready(true, Duration::from_secs(60));

    // The engine hangs: every open connection stalls (the event stream's too), new ones are
    // accepted and read but never answered.
    switch.hang();
    let (noticed, reason) = operator.wait_ready(false, Duration::from_secs(60));
    eprintln!("/readyz failed {noticed:?} after the engine hung: {reason}");
    assert!(
        noticed < Duration::from_secs(60),
        "noticed after {noticed:?}"
    );
    assert!(reason.contains("Docker engine"), "{reason}");
    // Long enough for the silence check: the ping gets no answer either, and the watch loop
    // drops the stalled stream and reconnects with backoff, while the engine still hangs (so
    // the new stream's request is never answered either, and its list fails).
    swarm.wait(
        "the silent event stream given up and reopened on the hung engine",
        Duration::from_secs(60),
        || {
            let log = operator.log();
            log.contains("the engine does not answer; reconnecting")
                && log.contains("listing the swarm after reconnecting")
        },
    );

    // The engine answers again: ready again, a new spec converges, and the watch loop is back
    // on a live event stream (it reconnected and listed the swarm; with a resync of an hour
    // nothing else lists it).
    switch.answer();
    let (recovered, _) = operator.wait_ready(true, Duration::from_secs(60));
    eprintln!("/readyz recovered {recovered:?} after the engine answered again");
    swarm.write_spec("api.yaml", &swarm.service_spec("api", 2, None));
    swarm.wait("the new spec applied", Duration::from_secs(60), || {
        swarm.service_replicas("api") == Some(2)
    });
    // Within the silence and a ping (5 s here), with a wide margin for a loaded machine but
    // well under bollard's own 60 s request timeout, which would end the stalled stream too.
    swarm.wait(
        "the event stream reconnected and the swarm listed again",
        Duration::from_secs(30),
        || {
            operator
                .log()
                .contains("listed the swarm after reconnecting")
        },
    );
    // A change by hand reaches the operator through the new event stream (or the reconnect's
    // list): the drift is corrected.
    support::docker(&[
        "service",
        "update",
        "--detach",
        "--replicas",
        "3",
        &swarm.name("api"),
    ]);
    swarm.wait("the drift corrected", Duration::from_secs(60), || {
        swarm.service_replicas("api") == Some(2)
    });

    // Hung again, with a write in flight: SIGTERM still ends the process within 10 s.
    switch.hang();
    swarm.write_spec("api.yaml", &swarm.service_spec("api", 1, None));
    std::thread::sleep(Duration::from_secs(1));
    let mut operator = operator;
    let pid = operator.child.id().to_string();
    let signalled = Instant::now();
    let killed = support::output_within(
        Command::new("kill").args(["-TERM", &pid]),
        Duration::from_secs(10),
    );
    assert!(killed.status.success());
    let exited = loop {
        if let Some(status) = operator.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(30),
            "still running 30 s after SIGTERM on a hung engine:\n{}",
            operator.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = signalled.elapsed();
    eprintln!("exited {took:?} after SIGTERM with the engine hung ({exited})");
    assert!(
        took < Duration::from_secs(10),
        "exit took {took:?}:\n{}",
        operator.log()
    );
    assert!(exited.success(), "{exited}:\n{}", operator.log());
    assert!(
        operator
            .log()
            .contains("shutting down: no longer the leader"),
        "it led at SIGTERM, so it tried to release the lease:\n{}",
        operator.log()
    );
    switch.answer();
}

#[test]
fn a_zero_deadline_is_refused_before_anything_starts() {
    for flag in [
        "--engine-timeout",
        "--engine-write-timeout",
        "--events-silence",
    ] {
        let output = support::output_within(
            Command::new(env!("CARGO_BIN_EXE_swarm-operator")).args([
                "run",
                "--specs",
                ".",
                "--status",
                "status.json",
                flag,
                "0s",
            ]),
            Duration::from_secs(30),
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flag}: {stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains("must be more than zero"),
            "{flag}: {stderr}"
        );
    }
}
