//! No value ever leaves (issue 16, item 1): one hostile fixture holds a recognisable value in
//! an env value, an env file, two secrets (inline data and a file), a config marked sensitive
//! and a webhook URL's path; the operator runs at `RUST_LOG=trace` through a create, a drift
//! correction and a spec error; then every output channel is collected and none may hold the
//! value. `diff --show-values` must show it, which proves the fixture reaches the output.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use support::{Swarm, TEST_IMAGE, condition, docker, docker_output, http_get, require_tool};

/// A variable of the operator's own environment that a bare `NAME` env-file line names.
const OPERATOR_VAR: &str = "NO_LEAKS_OPERATOR_VAR";

/// Generous: the machine is shared and loaded.
const CONVERGE: Duration = Duration::from_secs(120);

/// A plain-http webhook receiver on 127.0.0.1:0 recording every request body.
struct Receiver {
    addr: SocketAddr,
    bodies: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the receiver");
        let addr = listener.local_addr().expect("receiver address");
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let recorded = bodies.clone();
        // Runs until the test process ends; it only ever answers this test's operator.
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                if let Some(body) = read_request(stream) {
                    recorded.lock().expect("receiver lock").push(body);
                }
            }
        });
        Receiver { addr, bodies }
    }

    fn bodies(&self) -> Vec<String> {
        self.bodies.lock().expect("receiver lock").clone()
    }
}

/// Reads one request (headers, then `Content-Length` bytes), answers 200 and closes.
fn read_request(stream: TcpStream) -> Option<String> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut reader = BufReader::new(stream);
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
        if let Some((key, value)) = line.split_once(':')
            && key.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let mut stream = reader.into_inner();
    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    Some(String::from_utf8_lossy(&body).into_owned())
}

/// `/api/v1/events`, read on a thread from the start until [`EventStream::finish`].
struct EventStream {
    stop: Arc<AtomicBool>,
    reader: JoinHandle<String>,
}

impl EventStream {
    fn open(addr: SocketAddr) -> EventStream {
        let mut stream = TcpStream::connect(addr).expect("connecting to the event stream");
        stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .expect("read timeout");
        write!(
            stream,
            "GET /api/v1/events HTTP/1.0\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n"
        )
        .expect("requesting the event stream");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let reader = std::thread::spawn(move || {
            let mut text = Vec::new();
            let mut buffer = [0u8; 16 * 1024];
            while !stopped.load(Ordering::Relaxed) {
                match stream.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(n) => text.extend_from_slice(&buffer[..n]),
                    // A timeout: look at the stop flag, then read on.
                    Err(_) => {}
                }
            }
            String::from_utf8_lossy(&text).into_owned()
        });
        EventStream { stop, reader }
    }

    fn finish(self) -> String {
        self.stop.store(true, Ordering::Relaxed);
        self.reader.join().expect("event stream reader")
    }
}

/// `swarm-operator run` at the most verbose log level, stdout and stderr in one file.
struct Operator {
    child: Child,
    log: PathBuf,
    addr: SocketAddr,
}

impl Operator {
    fn start(swarm: &Swarm, notify: &str, events_log: &std::path::Path, value: &str) -> Operator {
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port");
        let log = swarm.specs.path().with_extension("operator-trace.log");
        let out = std::fs::File::create(&log).expect("operator log");
        let err = out.try_clone().expect("operator log");
        let child = Command::new(env!("CARGO_BIN_EXE_swarm-operator"))
            .arg("run")
            .arg("--specs")
            .arg(swarm.specs.path())
            .arg("--status")
            .arg(&swarm.status)
            .args(["--resync", "2s", "--notify", notify])
            .arg("--events-log")
            .arg(events_log)
            .arg("--metrics-addr")
            .arg(addr.to_string())
            // Everything, dependencies included: bollard logs request bodies at debug.
            .env("RUST_LOG", "trace")
            // What a bare `NAME` line in an env file would read, were it looked up.
            .env(OPERATOR_VAR, format!("{value}-operator-env"))
            .env("SWARM_OPERATOR_INSTANCE", &swarm.prefix)
            .env("NO_COLOR", "1")
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("starting swarm-operator");
        Operator { child, log, addr }
    }

    /// SIGTERM, then the whole log.
    fn stop(&mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Removes this test's services (so their secrets are free), then the secrets its operator
/// instance created; `Swarm`'s own cleanup leaves secrets alone.
struct SecretCleanup<'a>(&'a Swarm);

impl Drop for SecretCleanup<'_> {
    fn drop(&mut self) {
        self.0.cleanup();
        let filter = format!("label=swarm-operator.io/instance={}", self.0.prefix);
        for id in docker(&["secret", "ls", "-q", "--filter", &filter]).lines() {
            let _ = docker_output(&["secret", "rm", id]);
        }
    }
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A value no output should ever hold: unique per run, so a stale file cannot match.
fn hostile_value() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("s3cr3t-{:x}{:x}", std::process::id(), nanos)
}

#[test]
fn no_value_leaves_through_any_channel() {
    let Some(swarm) = Swarm::start("no_value_leaves_through_any_channel") else {
        return;
    };
    let _secrets = SecretCleanup(&swarm);
    let value = hostile_value();
    let receiver = Receiver::start();
    let service = swarm.name("app");
    let (secret_data, secret_file, config) =
        (swarm.name("secd"), swarm.name("secf"), swarm.name("conf"));
    let dir = swarm.specs.path();
    std::fs::write(dir.join("app.env"), format!("FROM_FILE={value}-envfile\n")).unwrap();
    std::fs::write(dir.join("secret.txt"), format!("{value}-secret-file\n")).unwrap();
    let head = "apiVersion: swarm-operator.io/v1alpha1";
    swarm.write_spec(
        "app.yaml",
        &format!(
            "{head}\nkind: SwarmService\nmetadata:\n  name: {service}\nspec:\n  image: {TEST_IMAGE}\n  replicas: 1\n  args: [sleep, \"3600\"]\n  endpointMode: dnsrr\n  stopGracePeriod: 1s\n  env: {{DB_PASSWORD: \"{value}-env\"}}\n  envFile: [./app.env]\n  secrets: [{{name: {secret_data}}}, {{name: {secret_file}}}]\n  configs: [{{name: {config}}}]\n\
             ---\n{head}\nkind: SwarmSecret\nmetadata: {{name: {secret_data}}}\nspec: {{data: \"{value}-secret-data\"}}\n\
             ---\n{head}\nkind: SwarmSecret\nmetadata: {{name: {secret_file}}}\nspec: {{file: ./secret.txt}}\n\
             ---\n{head}\nkind: SwarmConfig\nmetadata: {{name: {config}}}\nspec: {{data: \"{value}-config\", sensitive: true}}\n"
        ),
    );
    // The token is the URL's path, as with Slack or Discord webhooks.
    let notify = format!("http://{}/hooks/{value}-hook", receiver.addr);
    let events_log = dir.with_extension("events.jsonl");
    let mut operator = Operator::start(&swarm, &notify, &events_log, &value);

    // 1. Create.
    swarm.wait_status("the service is ready", CONVERGE, |s| {
        condition(s, &service, "Ready")["status"] == "True"
    });
    let events = EventStream::open(operator.addr);

    // 2. Drift: someone sets the password by hand; the operator puts the spec's value back.
    docker(&[
        "service",
        "update",
        "-d",
        "--env-add",
        &format!("DB_PASSWORD={value}-drift"),
        &service,
    ]);
    swarm.wait("the drift correction is notified", CONVERGE, || {
        receiver
            .bodies()
            .iter()
            .any(|b| b.contains("driftCorrected") && b.contains(&service))
    });
    let drift_message = receiver
        .bodies()
        .into_iter()
        .find(|b| b.contains("driftCorrected"))
        .unwrap_or_default();

    // 3. A spec error: an env file whose line is a pasted value without `NAME=`.
    std::fs::write(dir.join("broken.env"), format!("{value}-pasted alone\n")).unwrap();
    swarm.write_spec(
        "broken.yaml",
        &format!(
            "{head}\nkind: SwarmService\nmetadata:\n  name: {}\nspec:\n  image: {TEST_IMAGE}\n  envFile: [./broken.env]\n",
            swarm.name("broken")
        ),
    );
    // And a bare `NAME` naming a variable the operator has: refused, never read.
    std::fs::write(dir.join("bare.env"), format!("A=1\n{OPERATOR_VAR}\n")).unwrap();
    swarm.write_spec(
        "bare.yaml",
        &format!(
            "{head}\nkind: SwarmService\nmetadata:\n  name: {}\nspec:\n  image: {TEST_IMAGE}\n  envFile: [./bare.env]\n",
            swarm.name("bare")
        ),
    );
    let status = swarm.wait_status("the spec errors are reported", CONVERGE, |s| {
        let s = s.to_string();
        s.contains("broken.env") && s.contains("bare.env")
    });
    assert!(
        status.to_string().contains("`./bare.env` line 2, column 1"),
        "the bare name is a located error: {status}"
    );
    assert!(
        swarm.service_version("bare").is_none(),
        "no service is made from a refused env file"
    );
    swarm.wait("the spec error is notified", CONVERGE, || {
        receiver.bodies().iter().any(|b| b.contains("specError"))
    });

    // Every channel of the running operator.
    let browser = require_tool(
        "no_value_leaves_through_any_channel",
        "chromium",
        "chromium",
    );
    let page_dom = browser.map(|browser| {
        text(&support::output_within(
            Command::new(browser)
                .args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"])
                .arg(format!("http://{}/", operator.addr)),
            Duration::from_secs(60),
        ))
    });
    let get = |path: &str| {
        let (code, body) = http_get(operator.addr, path).unwrap_or_default();
        assert_eq!(code, 200, "GET {path}: {body}");
        body
    };
    let page = get("/");
    let api_status = get("/api/v1/status");
    let sse = events.finish();
    assert!(
        sse.contains("event:"),
        "the event stream sent events: {sse}"
    );
    let status_file = std::fs::read_to_string(&swarm.status).unwrap_or_default();
    let operator_log = operator.stop();
    assert!(
        operator_log.contains("TRACE") || operator_log.contains("DEBUG"),
        "the log is verbose: {}",
        &operator_log[..operator_log.len().min(2000)]
    );
    let events_log_text = std::fs::read_to_string(&events_log).unwrap_or_default();
    assert!(
        events_log_text.contains("driftCorrected"),
        "{events_log_text}"
    );
    let webhooks = receiver.bodies().join("\n");

    // The one-shot commands, with a change pending (made by hand again, the operator stopped).
    docker(&[
        "service",
        "update",
        "-d",
        "--env-add",
        &format!("DB_PASSWORD={value}-pending"),
        &service,
    ]);
    let specs = dir.to_str().expect("a UTF-8 temp path");
    let get_json = text(&swarm.cli(&["get", "-o", "json", "--specs", specs]));
    let get_yaml = text(&swarm.cli(&["get", "-o", "yaml", "--specs", specs]));
    let get_table = text(&swarm.cli(&["get", "--specs", specs]));
    let wait = text(&support::output_within(
        Command::new(env!("CARGO_BIN_EXE_swarm-operator"))
            .args(["wait", &service, "--for", "ready", "--timeout", "60s"])
            .env("SWARM_OPERATOR_INSTANCE", &swarm.prefix)
            .env("NO_COLOR", "1"),
        Duration::from_secs(90),
    ));
    let diff = text(&swarm.cli(&["diff", specs]));
    let validate = text(&swarm.cli(&["validate", specs]));
    assert!(
        validate.contains("broken.env` line 1, column 1"),
        "validate locates the bad line: {validate}"
    );
    // Interpolation errors of import-compose quote no value either.
    let compose = dir.with_extension("compose.yml");
    std::fs::write(
        &compose,
        format!("services:\n  web:\n    image: x\n    environment:\n      PASSWORD: \"{value}-interp$ tail\"\n"),
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let import = text(&swarm.cli(&[
        "import-compose",
        compose.to_str().unwrap(),
        "--stack",
        "s",
        "--out",
        out.path().to_str().unwrap(),
    ]));
    assert!(import.contains("invalid interpolation"), "{import}");

    // --show-values into a pipe (a CI log) is refused.
    let piped = swarm.cli(&["diff", "--show-values", specs]);
    assert_eq!(piped.status.code(), Some(2), "{}", text(&piped));
    let piped = text(&piped);
    assert!(piped.contains("only to your own terminal"), "{piped}");
    // On a terminal it shows values: the fixture does reach the output where they are asked for.
    if let Some(script) = require_tool("no_value_leaves_through_any_channel", "script", "bsdutils")
    {
        let command = format!(
            "{} diff --show-values {specs}",
            env!("CARGO_BIN_EXE_swarm-operator")
        );
        let shown = Command::new(script)
            .args(["-q", "-e", "-c", &command, "/dev/null"])
            .env("SWARM_OPERATOR_INSTANCE", &swarm.prefix)
            .env("NO_COLOR", "1")
            .env_remove("CI")
            .output()
            .expect("running diff in a terminal");
        let shown = text(&shown);
        assert!(
            shown.contains(&format!("{value}-pending")) && shown.contains(&format!("{value}-env")),
            "diff --show-values on a terminal shows old and new values: {shown}"
        );
    }

    let (api_status_kept, diff_kept) = (api_status.clone(), diff.clone());
    let mut channels: Vec<(&str, String)> = vec![
        ("status page HTML (GET /)", page),
        ("GET /api/v1/status", api_status),
        ("/api/v1/events stream", sse),
        ("status file", status_file),
        ("operator stdout+stderr at RUST_LOG=trace", operator_log),
        ("events log", events_log_text),
        ("webhook payloads", webhooks),
        ("get -o json", get_json),
        ("get -o yaml", get_yaml),
        ("get (table)", get_table),
        ("wait", wait),
        ("diff (no --show-values)", diff),
        ("diff --show-values into a pipe", piped),
        ("validate errors", validate),
        ("import-compose interpolation error", import),
    ];
    if let Some(dom) = page_dom {
        channels.push(("status page DOM in chromium", dom));
    }
    let leaks: Vec<String> = channels
        .iter()
        .filter_map(|(name, text)| {
            let at = text.find(&value)?;
            let from = text[..at]
                .char_indices()
                .rev()
                .nth(200)
                .map_or(0, |(i, _)| i);
            let context: String = text[from..].chars().take(400).collect();
            Some(format!("{name}: …{context}…"))
        })
        .collect();
    for (name, text) in &channels {
        eprintln!("{name}: {} bytes checked", text.len());
    }
    assert!(
        leaks.is_empty(),
        "the value leaked through:\n{}",
        leaks.join("\n\n")
    );
    // What is shown instead: the key and the fact that it changed.
    for (name, text) in [
        ("drift webhook", &drift_message),
        ("GET /api/v1/status", &api_status_kept),
        ("diff (no --show-values)", &diff_kept),
    ] {
        assert!(
            text.contains("env.DB_PASSWORD changed"),
            "{name} names the change by key: {text}"
        );
    }
}
