//! Test harness for running the real `swarm-operator` binary against the local Docker engine
//! as a single-node swarm.

#![allow(dead_code)] // each test binary uses a different part of it

pub mod git;
pub mod git_servers;
pub mod pki;
pub mod process;
pub mod sshd;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The image every test service runs: static busybox, built locally (nothing can be pulled).
pub const TEST_IMAGE: &str = "swarm-operator-test/busybox:dev";

/// The tests share one small swarm; running them one at a time keeps their timings honest.
static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `docker` with `args`; panics with its stderr on failure.
pub fn docker(args: &[&str]) -> String {
    let output = docker_output(args);
    assert!(
        output.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Creates a service by hand, as another client would (not the operator's): no replicas, the
/// test image, and `extra` options (`--network`, `-p`, …). Returns its id.
pub fn create_service_by_hand(name: &str, extra: &[&str]) -> String {
    let mut args = vec!["service", "create", "-q", "-d", "--name", name];
    args.extend(["--replicas", "0"]);
    args.extend(extra);
    args.push(TEST_IMAGE);
    docker(&args)
}

/// Runs `docker` with `args` and returns its output, success or not.
pub fn docker_output(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("running the docker CLI")
}

/// A serialized test session on the local swarm with its own name prefix and spec directory.
pub struct Swarm {
    _serial: MutexGuard<'static, ()>,
    /// Unique prefix of every object this test creates.
    pub prefix: String,
    /// The spec directory (a temp dir).
    pub specs: tempfile::TempDir,
    /// The status file path.
    pub status: PathBuf,
}

impl Swarm {
    /// Sets up, or returns `None` (with a printed reason) when no Docker engine answers and CI
    /// is unset. Under `CI=true` a missing engine fails the test.
    pub fn start(test: &str) -> Option<Swarm> {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let info = Command::new("docker")
            .args(["info", "--format", "{{.Swarm.LocalNodeState}}"])
            .output();
        let state = match info {
            Ok(out) if out.status.success() => {
                String::from_utf8_lossy(&out.stdout).trim().to_owned()
            }
            other => {
                let why = match other {
                    Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                    Err(e) => e.to_string(),
                };
                if std::env::var_os("CI").is_some() {
                    panic!("CI is set but no Docker engine answers: {why}");
                }
                eprintln!(
                    "SKIPPED {test}: no Docker engine answers ({why}); set up Docker or run `cargo xtask test`"
                );
                return None;
            }
        };
        if state != "active" {
            docker(&["swarm", "init", "--advertise-addr", "127.0.0.1"]);
        }
        ensure_test_image();
        let prefix = format!(
            "sot{}{}",
            std::process::id() % 10000,
            test.replace('_', "").chars().take(12).collect::<String>()
        );
        let specs = tempfile::tempdir().expect("temp dir");
        let status = specs.path().with_extension("status.json");
        let swarm = Swarm {
            _serial: serial,
            prefix,
            specs,
            status,
        };
        swarm.cleanup();
        Some(swarm)
    }

    /// `prefix-name`.
    pub fn name(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    /// Writes a spec file into the spec directory (atomically, like an editor's save).
    pub fn write_spec(&self, file: &str, text: &str) {
        let tmp = self.specs.path().join(format!(".{file}.tmp"));
        std::fs::write(&tmp, text).expect("writing spec");
        std::fs::rename(&tmp, self.specs.path().join(file)).expect("renaming spec");
    }

    /// Removes a spec file.
    pub fn remove_spec(&self, file: &str) {
        std::fs::remove_file(self.specs.path().join(file)).expect("removing spec");
    }

    /// A SwarmService spec running the test image.
    pub fn service_spec(&self, name: &str, replicas: u64, network: Option<&str>) -> String {
        let networks = network
            .map(|n| format!("  networks: [{}]\n", self.name(n)))
            .unwrap_or_default();
        format!(
            "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata:\n  name: {}\nspec:\n  image: {TEST_IMAGE}\n  replicas: {replicas}\n  args: [sleep, \"3600\"]\n{networks}  endpointMode: dnsrr\n  stopGracePeriod: 1s\n  env: {{ROLE: test}}\n",
            self.name(name)
        )
    }

    /// A SwarmNetwork spec.
    pub fn network_spec(&self, name: &str) -> String {
        format!(
            "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmNetwork\nmetadata:\n  name: {}\nspec:\n  driver: overlay\n  attachable: true\n",
            self.name(name)
        )
    }

    /// Starts `swarm-operator run` on this test's directories, serving metrics on a free
    /// loopback port.
    pub fn operator(&self) -> Operator {
        self.operator_with(
            &[
                "--specs",
                self.specs.path().to_str().expect("a UTF-8 temp path"),
            ],
            &self.status,
            "",
            &[],
        )
    }

    /// Starts `swarm-operator run` with `args` (instead of `--specs DIR`) writing `status`,
    /// plus `extra_args` (e.g. `--file-sd FILE`); its log file gets the suffix `log_name`.
    pub fn operator_with(
        &self,
        args: &[&str],
        status: &Path,
        log_name: &str,
        extra_args: &[&std::ffi::OsStr],
    ) -> Operator {
        self.operator_with_env(args, status, log_name, extra_args, &[])
    }

    /// [`Swarm::operator_with`], with environment variables set (`Some`) or removed (`None`).
    pub fn operator_with_env(
        &self,
        args: &[&str],
        status: &Path,
        log_name: &str,
        extra_args: &[&std::ffi::OsStr],
        env: &[(&str, Option<&std::ffi::OsStr>)],
    ) -> Operator {
        let metrics_addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port");
        let log = self
            .specs
            .path()
            .with_extension(format!("operator{log_name}.log"));
        let log_file = std::fs::File::create(&log).expect("operator log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_swarm-operator"));
        command.env("RUST_LOG", "info,swarm_operator=debug");
        // After the defaults: a test may set its own RUST_LOG.
        for (key, value) in env {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        let child = command
            .arg("run")
            .args(args)
            .arg("--status")
            .arg(status)
            .args(["--resync", "2s"])
            .args(extra_args)
            .arg("--metrics-addr")
            .arg(metrics_addr.to_string())
            // Its own instance: operators of other tests (or a benchmark) on the same swarm
            // then never prune this test's services, nor this one theirs.
            .env("SWARM_OPERATOR_INSTANCE", &self.prefix)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("starting swarm-operator");
        Operator {
            child,
            log,
            metrics_addr,
        }
    }

    /// Runs a one-shot subcommand (`validate`, `diff`) on the spec directory.
    pub fn command(&self, subcommand: &str) -> Output {
        Command::new(env!("CARGO_BIN_EXE_swarm-operator"))
            .arg(subcommand)
            .arg(self.specs.path())
            .env("SWARM_OPERATOR_INSTANCE", &self.prefix)
            .env("NO_COLOR", "1")
            .output()
            .expect("running swarm-operator")
    }

    /// Runs `swarm-operator ARGS` with this test's instance.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_swarm-operator"))
            .args(args)
            .env("SWARM_OPERATOR_INSTANCE", &self.prefix)
            .env("NO_COLOR", "1")
            .output()
            .expect("running swarm-operator")
    }

    /// The status file, once it exists and parses.
    pub fn status(&self) -> Option<Value> {
        let text = std::fs::read_to_string(&self.status).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Waits until `check` holds for the status file, or panics after `timeout` with the last
    /// status and what was waited for.
    pub fn wait_status(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let start = Instant::now();
        loop {
            if let Some(status) = self.status().filter(|s| check(s)) {
                eprintln!("{what}: after {:?}", start.elapsed());
                return status;
            }
            if start.elapsed() > timeout {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; status: {}",
                    self.status().map(|s| s.to_string()).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until `check` holds, polling the engine.
    pub fn wait(&self, what: &str, timeout: Duration, check: impl Fn() -> bool) {
        let start = Instant::now();
        while !check() {
            assert!(
                start.elapsed() < timeout,
                "timed out after {timeout:?} waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        eprintln!("{what}: after {:?}", start.elapsed());
    }

    /// Version index of a service (changes on every write), or `None` if it does not exist.
    pub fn service_version(&self, name: &str) -> Option<u64> {
        let out = docker_output(&[
            "service",
            "inspect",
            "--format",
            "{{.Version.Index}}",
            &self.name(name),
        ]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
            .flatten()
    }

    /// Desired replicas of a service as the engine holds them.
    pub fn service_replicas(&self, name: &str) -> Option<u64> {
        let out = docker_output(&[
            "service",
            "inspect",
            "--format",
            "{{.Spec.Mode.Replicated.Replicas}}",
            &self.name(name),
        ]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
            .flatten()
    }

    /// Removes every service and network with this test's prefix, and the configs (stored
    /// specs, leader lease) and secrets of its operator instance.
    pub fn cleanup(&self) {
        let filter = format!("label=swarm-operator.io/instance={}", self.prefix);
        for kind in ["service", "network"] {
            let filter = format!("name={}", self.prefix);
            let names = docker(&[kind, "ls", "--filter", &filter, "--format", "{{.Name}}"]);
            for name in names.lines().filter(|n| n.starts_with(&self.prefix)) {
                let _ = docker_output(&[kind, "rm", name]);
            }
        }
        // Configs and secrets last: swarm refuses to remove one a service still mounts.
        for kind in ["config", "secret"] {
            let ids = docker(&[kind, "ls", "-q", "--filter", &filter]);
            for id in ids.lines() {
                let _ = docker_output(&[kind, "rm", id]);
            }
        }
    }
}

impl Drop for Swarm {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// A running operator process; stopped with SIGTERM on drop.
pub struct Operator {
    child: Child,
    /// Its log file.
    pub log: PathBuf,
    /// Where it serves /metrics, /healthz and /readyz.
    pub metrics_addr: std::net::SocketAddr,
}

impl Operator {
    /// Sends SIGTERM and waits; returns whether it exited successfully.
    pub fn stop(&mut self) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for operator") {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and waits up to `timeout`; its exit status, or `None` (then killed) if it
    /// was still running.
    pub fn stop_within(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for operator") {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the process at once (no shutdown, no lease release), like a lost node.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The value of an unlabelled metric, `None` while nothing answers.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let (_, body) = self.http_get("/metrics")?;
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// The sum of a metric over all its label sets (0 when absent).
    pub fn metric_sum(&self, name: &str) -> f64 {
        let Some((_, body)) = self.http_get("/metrics") else {
            return 0.0;
        };
        body.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// `GET path` on the metrics server: `(status code, body)`, or `None` if nothing answers.
    pub fn http_get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.metrics_addr, path)
    }

    /// `POST path` with `headers` and `body` on the metrics server: `(status code, body)`.
    pub fn http_post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Option<(u16, String)> {
        use std::io::{Read, Write};
        let mut stream =
            std::net::TcpStream::connect_timeout(&self.metrics_addr, Duration::from_secs(2))
                .ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut head = format!(
            "POST {path} HTTP/1.0\r\nHost: localhost\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).ok()?;
        stream.write_all(body).ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let code = response.split_whitespace().nth(1)?.parse().ok()?;
        let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
        Some((code, body))
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.stop();
        }
    }
}

/// `GET path` on `addr`: `(status code, body)`, or `None` if nothing answers.
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let code = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((code, body))
}

/// The path of a tool a test needs, or `None` (with a printed reason) when it is missing and
/// CI is unset. Under `CI=true` a missing tool fails the test (`.ci/run` installs it).
pub fn require_tool(test: &str, tool: &str, package: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(tool))
            .find(|path| path.is_file())
    });
    if found.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!("CI is set but `{tool}` is missing: apt-get install {package}");
        }
        eprintln!("SKIPPED {test}: `{tool}` is missing (apt-get install {package})");
    }
    found
}

/// Where tests leave files for humans to look at (screenshots): `target/test-artifacts/`.
pub fn artifacts_dir() -> PathBuf {
    // The binary under test is target/<profile>/swarm-operator.
    let dir = Path::new(env!("CARGO_BIN_EXE_swarm-operator"))
        .parent()
        .and_then(Path::parent)
        .expect("the binary lives in target/<profile>")
        .join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("creating target/test-artifacts");
    dir
}

/// Runs `command`, killing it after `timeout`; returns its output.
pub fn output_within(command: &mut Command, timeout: Duration) -> Output {
    use std::io::Read as _;
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {command:?}: {e}"));
    // Drain both pipes on threads: a full pipe would block the child forever.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + timeout;
    while child.try_wait().expect("waiting for child").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{command:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = child.wait().expect("waiting for child");
    let stdout = stdout.join().expect("stdout reader");
    let stderr = stderr.join().expect("stderr reader");
    Output {
        status,
        stdout,
        stderr,
    }
}

/// Condition `kind` (`Ready`, `Progressing`, `Degraded`) of service `name` in a status file
/// (or `get -o json`), `Null` when it has none.
pub fn condition<'a>(status: &'a Value, name: &str, kind: &str) -> &'a Value {
    status["services"][name]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == kind))
        .unwrap_or(&Value::Null)
}

/// An engine timestamp (RFC 3339, up to nanoseconds; quoted, as `{{json .CreatedAt}}` prints
/// it, or not).
pub fn engine_time(text: &str) -> std::time::SystemTime {
    humantime::parse_rfc3339(text.trim().trim_matches('"'))
        .unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

/// Builds [`TEST_IMAGE`] from the host's static busybox if it is not there yet.
fn ensure_test_image() {
    if docker_output(&["image", "inspect", TEST_IMAGE])
        .status
        .success()
    {
        return;
    }
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "the test image needs a static busybox at /bin/busybox: apt-get install busybox-static"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::copy(busybox, dir.path().join("busybox")).expect("copying busybox");
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nENTRYPOINT [\"/bin/busybox\"]\nCMD [\"sleep\", \"3600\"]\n",
    )
    .expect("writing Dockerfile");
    docker(&[
        "build",
        "-q",
        "-t",
        TEST_IMAGE,
        dir.path().to_str().expect("a UTF-8 temp path"),
    ]);
}
