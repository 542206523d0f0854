//! The HTTP endpoints on a production swarm: flags checked before anything starts, a half-sent
//! request that cannot hold shutdown, and `--web-config` (TLS, client certificates, basic
//! auth) checked with curl and a real Prometheus scraping over TLS, all against the real
//! binary and the local single-node swarm.
// Helpers outside #[test] functions unwrap too: in a test, a failed unwrap is a failed test
// with its location.
#![allow(clippy::unwrap_used)]

mod support;

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::pki::Pki;
use support::{Operator, Swarm, output_within, require_tool};

const PASSWORD: &str = "correct horse battery staple";

/// `swarm-operator ARGS` to its end (these never reach the engine).
fn operator_cli(args: &[&str]) -> Output {
    output_within(
        Command::new(env!("CARGO_BIN_EXE_swarm-operator"))
            .args(args)
            .env("NO_COLOR", "1"),
        Duration::from_secs(30),
    )
}

/// `swarm-operator run` on an empty spec directory in `dir` with `extra` flags, to its end,
/// with DOCKER_HOST pointing nowhere: a run that gets as far as the engine fails there.
fn run_without_engine(dir: &Path, extra: &[&OsStr]) -> Output {
    output_within(
        Command::new(env!("CARGO_BIN_EXE_swarm-operator"))
            .args(["run", "--specs"])
            .arg(dir)
            .arg("--status")
            .arg(dir.join("status.json"))
            .args(extra)
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock"),
        Duration::from_secs(30),
    )
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Zero, negative, absurd durations and a zero concurrency are usage errors (exit 2) naming
/// the flag, for every command that takes them; nothing panics.
#[test]
fn bad_flags_are_usage_errors_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let specs = dir.path().to_str().unwrap();
    let status = dir.path().join("status.json");
    let status = status.to_str().unwrap();
    let run = ["run", "--specs", specs, "--status", status];
    let cases: [(&[&str], &str); 9] = [
        (&["--resync", "10ms"], "--resync"),
        (&["--resync", "0s"], "--resync"),
        (&["--resync", "0"], "--resync"),
        (&["--spec-poll", "0s"], "--spec-poll"),
        (&["--resync=-5s"], "--resync"),
        (&["--spec-poll", "99999999999999999999y"], "--spec-poll"),
        (&["--resync", "400d"], "--resync"),
        (&["--concurrency", "0"], "--concurrency"),
        (&["--concurrency", "18446744073709551615"], "--concurrency"),
    ];
    for (extra, flag) in cases {
        let output = operator_cli(&[&run[..], extra].concat());
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{extra:?}: {err}");
        assert!(
            err.contains(flag) && !err.contains("panicked"),
            "{extra:?}: {err}"
        );
    }
    let output = operator_cli(&["wait", "x", "--for", "ready", "--timeout", "0s"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("--timeout"), "{}", stderr(&output));
    // --web-config protects --metrics-addr: without it, there is nothing to protect.
    let output = operator_cli(&[&run[..], &["--web-config", "web.yml"]].concat());
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("--metrics-addr"),
        "{}",
        stderr(&output)
    );
}

/// An address in use ends `run` at once with exit 1 naming it, before the engine is reached
/// (DOCKER_HOST points nowhere here, which would be exit 2).
#[test]
fn a_metrics_address_in_use_ends_run_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = run_without_engine(
        dir.path(),
        &[OsStr::new("--metrics-addr"), OsStr::new(&addr)],
    );
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&addr) && err.contains("--metrics-addr"),
        "{err}"
    );
}

/// A web configuration with a mistake stops `run` with the file, line and column, before the
/// engine is reached, and never quotes a hash.
#[test]
fn a_bad_web_config_is_a_located_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("web.yml");
    std::fs::write(
        &config,
        "basic_auth_users:\n  prometheus: $2y$10$notreallyahashbutlookslikeonexxxxxxxxxxxxxxxxxxxxxxx\ntls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n",
    )
    .unwrap();
    let output = run_without_engine(
        dir.path(),
        &[
            OsStr::new("--metrics-addr"),
            OsStr::new("127.0.0.1:0"),
            OsStr::new("--web-config"),
            config.as_os_str(),
        ],
    );
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("{}:6:3", config.display())) && err.contains("cipher_suites"),
        "{err}"
    );
    // The hash is bad too, but only the position is reported first; fix the key and the
    // hash is named by its user, not quoted.
    std::fs::write(
        &config,
        "basic_auth_users:\n  prometheus: $2y$10$notreallyahashbutlookslikeone\n",
    )
    .unwrap();
    let output = run_without_engine(
        dir.path(),
        &[
            OsStr::new("--metrics-addr"),
            OsStr::new("127.0.0.1:0"),
            OsStr::new("--web-config"),
            config.as_os_str(),
        ],
    );
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(
        err.contains("basic_auth_users.prometheus") && !err.contains("notreallyahash"),
        "{err}"
    );
}

/// A `--notify-file` that cannot be used ends `run` before the engine is reached (DOCKER_HOST
/// points nowhere: reaching it would fail with an engine error instead), naming the file and
/// the line, never the line's content.
#[test]
fn a_bad_notify_file_ends_run_before_the_engine_is_reached() {
    let dir = tempfile::tempdir().unwrap();
    let urls = dir.path().join("webhooks");
    std::fs::write(
        &urls,
        "# receivers\nftp://hooks.example/T0KEN-in-the-file\n",
    )
    .unwrap();
    let output = run_without_engine(dir.path(), &[OsStr::new("--notify-file"), urls.as_os_str()]);
    let err = stderr(&output);
    assert_ne!(output.status.code(), Some(0), "{err}");
    assert!(
        err.contains("--notify-file") && err.contains("line 2"),
        "{err}"
    );
    assert!(
        !err.contains("T0KEN"),
        "the line's content was shown: {err}"
    );
    assert!(
        !err.to_lowercase().contains("docker engine") && !err.contains("nonexistent"),
        "the engine was reached first: {err}"
    );
}

/// The issue's reproduction: a client sends `GET / HTTP/1.1` and nothing more; SIGTERM still
/// ends the operator within 10 s, with exit 0 (final status written, webhooks drained).
#[test]
fn a_half_sent_request_does_not_hold_shutdown() {
    let Some(swarm) = Swarm::start("a_half_sent_request_does_not_hold_shutdown") else {
        return;
    };
    let mut operator = swarm.operator();
    wait_http(&operator, "/healthz");
    let mut stalled = TcpStream::connect(operator.metrics_addr).unwrap();
    stalled.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    // A second one that never sends a byte.
    let _silent = TcpStream::connect(operator.metrics_addr).unwrap();
    let started = Instant::now();
    let status = operator.stop_within(Duration::from_secs(10));
    let log = operator.log();
    let status = status.unwrap_or_else(|| panic!("still running 10 s after SIGTERM; log:\n{log}"));
    assert!(status.success(), "exit {status:?}; log:\n{log}");
    assert!(log.contains("final status written"), "{log}");
    eprintln!("stopped after {:?}", started.elapsed());
}

/// More event streams than the cap get 503 with Retry-After; the open ones keep streaming.
#[test]
fn event_streams_are_capped() {
    let Some(swarm) = Swarm::start("event_streams_are_capped") else {
        return;
    };
    let operator = swarm.operator();
    wait_http(&operator, "/healthz");
    let cap = swarm_operator::report::page::MAX_EVENT_STREAMS;
    let open: Vec<TcpStream> = (0..cap)
        .map(|i| {
            let mut stream = TcpStream::connect(operator.metrics_addr).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            write!(
                stream,
                "GET /api/v1/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
            )
            .unwrap();
            let head = read_head(&mut stream);
            assert!(head.starts_with("HTTP/1.1 200"), "stream {i}: {head}");
            stream
        })
        .collect();
    let mut extra = TcpStream::connect(operator.metrics_addr).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        extra,
        "GET /api/v1/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let head = read_head(&mut extra);
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 10"),
        "{head}"
    );
    // The page and the health checks still answer.
    assert_eq!(operator.http_get("/healthz").map(|r| r.0), Some(200));
    drop(open);
}

/// The response head (status line and headers) of a request just sent.
fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            other => panic!(
                "reading a response head: {other:?} after {:?}",
                String::from_utf8_lossy(&head)
            ),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

fn wait_http(operator: &Operator, path: &str) {
    let start = Instant::now();
    while operator.http_get(path).is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{path} never answered; log:\n{}",
            operator.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The test PKI: a CA, a server certificate for 127.0.0.1, a client certificate, and a client
/// certificate from a CA the server does not trust (`stranger`).
fn web_pki(openssl: &Path) -> Pki {
    let pki = Pki::new(openssl);
    pki.issue(
        "server",
        "ca",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    );
    pki.issue("client", "ca", "extendedKeyUsage=clientAuth\n");
    pki.ca("other-ca", "another CA");
    pki.issue("stranger", "other-ca", "extendedKeyUsage=clientAuth\n");
    pki
}

/// Writes `web.yml` next to the certificates (its paths are relative, as users write them).
fn web_config(pki: &Pki, text: &str) -> PathBuf {
    let path = pki.path("web.yml");
    std::fs::write(&path, text).unwrap();
    path
}

fn curl(curl: &Path, args: &[&OsStr]) -> (u16, String) {
    let output = output_within(
        Command::new(curl)
            .args([
                "-sS",
                "-i",
                "--max-time",
                "10",
                "-o",
                "-",
                "-w",
                "\n%{http_code}",
            ])
            .args(args),
        Duration::from_secs(30),
    );
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        format!("{body}{}", stderr(&output)),
    )
}

fn tools(test: &str) -> Option<(PathBuf, PathBuf)> {
    let openssl = require_tool(test, "openssl", "openssl")?;
    let curl = require_tool(test, "curl", "curl")?;
    Some((openssl, curl))
}

fn start_protected(swarm: &Swarm, web_config: &Path) -> Operator {
    let operator = swarm.operator_with(
        &["--specs", swarm.specs.path().to_str().unwrap()],
        &swarm.status,
        "",
        &[OsStr::new("--web-config"), web_config.as_os_str()],
    );
    // /healthz answers plain HTTP even on the TLS port (the image's HEALTHCHECK).
    wait_http(&operator, "/healthz");
    operator
}

/// TLS and basic auth as an exporter's users configure them: a real Prometheus scrapes
/// `/metrics` over TLS (verifying the test CA) with basic auth; curl without credentials or
/// with a wrong password gets 401 on every protected path; the health checks stay open.
#[test]
fn prometheus_scrapes_over_tls_with_basic_auth() {
    let test = "prometheus_scrapes_over_tls_with_basic_auth";
    let Some((openssl, curl_bin)) = tools(test) else {
        return;
    };
    let Some(prometheus_bin) = require_tool(test, "prometheus", "prometheus") else {
        return;
    };
    let Some(swarm) = Swarm::start(test) else {
        return;
    };
    let pki = web_pki(&openssl);
    let hash = bcrypt::hash(PASSWORD, 6).unwrap();
    let web_config = web_config(
        &pki,
        &format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  prometheus: '{hash}'\n"
        ),
    );
    let operator = start_protected(&swarm, &web_config);
    let base = format!("https://{}", operator.metrics_addr);
    let ca = pki.path("ca.crt");
    let https = |path: &str, user: Option<&str>| {
        let mut args: Vec<&OsStr> = vec![OsStr::new("--cacert"), ca.as_os_str()];
        if let Some(credentials) = user {
            args.extend([OsStr::new("-u"), OsStr::new(credentials)]);
        }
        let url = format!("{base}{path}");
        args.push(OsStr::new(&url));
        curl(&curl_bin, &args)
    };
    let right = format!("prometheus:{PASSWORD}");
    for path in [
        "/",
        "/api/v1/status",
        "/api/v1/events",
        "/metrics",
        "/page.js",
        "/nope",
    ] {
        let (code, text) = https(path, None);
        assert_eq!(code, 401, "{path} without credentials: {text}");
        assert!(
            text.to_ascii_lowercase()
                .contains("www-authenticate: basic"),
            "{path}: {text}"
        );
        let (code, text) = https(path, Some("prometheus:wrong"));
        assert_eq!(code, 401, "{path} with a wrong password: {text}");
        let (code, text) = https(path, Some(&format!("nobody:{PASSWORD}")));
        assert_eq!(code, 401, "{path} as an unknown user: {text}");
    }
    let (code, text) = https("/metrics", Some(&right));
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("swarm_operator_leader"), "{text}");
    let (code, text) = https("/api/v1/status", Some(&right));
    assert_eq!(code, 200, "{text}");
    // The event stream sends its first board at once; curl stops after 8 s (the stream never
    // ends by itself).
    let events = output_within(
        Command::new(&curl_bin)
            .args(["-sS", "-N", "--max-time", "8", "--cacert"])
            .arg(&ca)
            .args(["-u", &right])
            .arg(format!("{base}/api/v1/events")),
        Duration::from_secs(30),
    );
    let text = String::from_utf8_lossy(&events.stdout);
    assert!(text.contains("event: board"), "{text}{}", stderr(&events));
    for path in ["/healthz", "/readyz"] {
        let (code, text) = https(path, None);
        assert!(code == 200 || code == 503, "{path} over TLS: {text}");
    }
    // Plain HTTP reaches the health checks only.
    let (code, _) = support::http_get(operator.metrics_addr, "/healthz").unwrap();
    assert_eq!(code, 200);
    let (code, body) = support::http_get(operator.metrics_addr, "/metrics").unwrap();
    assert_eq!(code, 400, "{body}");
    assert!(!body.contains("swarm_operator"), "{body}");

    let prometheus = Prometheus::start(
        &prometheus_bin,
        pki.dir(),
        &format!(
            "global: {{scrape_interval: 1s, scrape_timeout: 1s}}\nscrape_configs:\n  - job_name: operator\n    scheme: https\n    tls_config: {{ca_file: {}}}\n    basic_auth: {{username: prometheus, password: '{PASSWORD}'}}\n    static_configs: [{{targets: ['{}']}}]\n",
            ca.display(),
            operator.metrics_addr
        ),
    );
    let leader = prometheus.wait_query("swarm_operator_leader{job=\"operator\"}");
    assert_eq!(leader["value"][1], "1", "{leader}");
    let target = prometheus.target("operator").unwrap();
    assert_eq!(target["health"], "up", "{target}");
    assert_eq!(target["scrapeUrl"], format!("{base}/metrics"), "{target}");
    // The password never reaches the operator's log.
    let log = operator.log();
    assert!(!log.contains(PASSWORD) && !log.contains(&hash), "{log}");
}

/// Each `client_auth_type` against no certificate, one from the trusted CA, and one from
/// another CA (a failed handshake is curl's code 0); `/healthz` over plain HTTP stays open.
#[test]
fn client_certificate_policies() {
    let test = "client_certificate_policies";
    let Some((openssl, curl_bin)) = tools(test) else {
        return;
    };
    let Some(swarm) = Swarm::start(test) else {
        return;
    };
    let pki = web_pki(&openssl);
    // (policy, code without a certificate, with the trusted CA's, with another CA's)
    let policies = [
        ("RequireAndVerifyClientCert", 0, 200, 0),
        ("VerifyClientCertIfGiven", 200, 200, 0),
        ("RequireAnyClientCert", 0, 200, 200),
        ("RequestClientCert", 200, 200, 200),
    ];
    for (policy, none, trusted, stranger) in policies {
        let ca_line = if policy.contains("Verify") {
            "  client_ca_file: ca.crt\n"
        } else {
            ""
        };
        let web_config = web_config(
            &pki,
            &format!(
                "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: {policy}\n{ca_line}  min_version: TLS12\n"
            ),
        );
        let mut operator = start_protected(&swarm, &web_config);
        let url = format!("https://{}/metrics", operator.metrics_addr);
        let ca = pki.path("ca.crt");
        let with_cert = |name: Option<&str>| {
            let (cert, key) = name
                .map(|n| (pki.path(&format!("{n}.crt")), pki.path(&format!("{n}.key"))))
                .unzip();
            let mut args: Vec<&OsStr> = vec![OsStr::new("--cacert"), ca.as_os_str()];
            if let (Some(cert), Some(key)) = (&cert, &key) {
                args.extend([
                    OsStr::new("--cert"),
                    cert.as_os_str(),
                    OsStr::new("--key"),
                    key.as_os_str(),
                ]);
            }
            args.push(OsStr::new(&url));
            curl(&curl_bin, &args)
        };
        for (client, expected) in [
            (None, none),
            (Some("client"), trusted),
            (Some("stranger"), stranger),
        ] {
            let (code, text) = with_cert(client);
            assert_eq!(
                code, expected,
                "{policy}, client certificate {client:?}: {text}"
            );
            if code == 200 {
                assert!(text.contains("swarm_operator_leader"), "{text}");
            }
        }
        assert_eq!(
            support::http_get(operator.metrics_addr, "/healthz").map(|r| r.0),
            Some(200)
        );
        assert!(operator.stop(), "{policy}: {}", operator.log());
    }
}

/// A certificate renewed in place is served from the next connection on, without a restart;
/// a broken renewal keeps the last good one.
#[test]
fn a_renewed_certificate_is_used_without_a_restart() {
    let test = "a_renewed_certificate_is_used_without_a_restart";
    let Some((openssl, curl_bin)) = tools(test) else {
        return;
    };
    let Some(swarm) = Swarm::start(test) else {
        return;
    };
    let pki = web_pki(&openssl);
    let web_config = web_config(
        &pki,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
    );
    let operator = start_protected(&swarm, &web_config);
    let ca = pki.path("ca.crt");
    let url = format!("https://{}/healthz", operator.metrics_addr);
    let subject = || {
        let (code, text) = curl(
            &curl_bin,
            &[
                OsStr::new("-v"),
                OsStr::new("--cacert"),
                ca.as_os_str(),
                OsStr::new(&url),
            ],
        );
        assert_eq!(code, 200, "{text}");
        text.lines()
            .find_map(|l| l.trim().strip_prefix("*  subject: "))
            .unwrap_or_else(|| panic!("no subject in {text}"))
            .to_owned()
    };
    assert!(subject().contains("CN=server"), "{}", subject());
    // Renewed: a new key and certificate, written over the old files.
    pki.issue(
        "renewed",
        "ca",
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    );
    // Written in place, as a renewal tool does; the modification time must change even on a
    // file system with coarse timestamps.
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::copy(pki.path("renewed.key"), pki.path("server.key")).unwrap();
    std::fs::copy(pki.path("renewed.crt"), pki.path("server.crt")).unwrap();
    assert!(subject().contains("CN=renewed"), "{}", subject());
    // A broken renewal: the last good certificate stays.
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(pki.path("server.crt"), "not a certificate").unwrap();
    assert!(subject().contains("CN=renewed"), "{}", subject());
    assert!(
        operator
            .log()
            .contains("keeping the last good TLS certificate"),
        "{}",
        operator.log()
    );
}

/// A client that starts a TLS handshake and stops is dropped after the handshake timeout
/// (10 s), and a client that sends nothing at all too: neither holds a connection slot.
#[test]
fn a_stalled_tls_handshake_is_dropped() {
    let test = "a_stalled_tls_handshake_is_dropped";
    let Some((openssl, _)) = tools(test) else {
        return;
    };
    let Some(swarm) = Swarm::start(test) else {
        return;
    };
    let pki = web_pki(&openssl);
    let web_config = web_config(
        &pki,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
    );
    let operator = start_protected(&swarm, &web_config);
    let open = |first: &[u8]| {
        let mut stream = TcpStream::connect(operator.metrics_addr).unwrap();
        stream.write_all(first).unwrap();
        // Far past the server's timeout: an answer within it is the server closing.
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        stream
    };
    // The first bytes of a TLS record header (handshake, TLS 1.0 record version), then nothing.
    let mut started = open(&[0x16, 0x03, 0x01]);
    let mut silent = open(&[]);
    for (what, stream) in [
        ("a started handshake", &mut started),
        ("a silent client", &mut silent),
    ] {
        let mut buf = [0u8; 64];
        match stream.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("{what}: expected the server to close, got {other:?}"),
        }
    }
}

/// The status page behind TLS and basic auth in a real headless Chromium: with the
/// credentials, the page and its script (both protected) load; without them, nothing of the
/// page.
#[test]
fn the_protected_page_works_in_a_real_browser() {
    let test = "the_protected_page_works_in_a_real_browser";
    let Some((openssl, _)) = tools(test) else {
        return;
    };
    let Some(browser) = require_tool(test, "chromium", "chromium") else {
        return;
    };
    let Some(swarm) = Swarm::start(test) else {
        return;
    };
    let pki = web_pki(&openssl);
    let hash = bcrypt::hash(PASSWORD, 6).unwrap();
    let web_config = web_config(
        &pki,
        &format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  viewer: '{hash}'\n"
        ),
    );
    let operator = start_protected(&swarm, &web_config);
    let page = |credentials: &str| {
        let url = format!("https://{credentials}{}/", operator.metrics_addr);
        let output = output_within(
            Command::new(&browser)
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    // The certificate is checked by curl and Prometheus; the browser has no
                    // way to be given the test CA but its profile's NSS database.
                    "--ignore-certificate-errors",
                    "--dump-dom",
                ])
                .arg(&url),
            Duration::from_secs(60),
        );
        assert!(output.status.success(), "chromium: {}", stderr(&output));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let dom = page(&format!("viewer:{}@", PASSWORD.replace(' ', "%20")));
    // The page's script (protected too) ran: it marks the body before it connects to the
    // event stream, whose answer under auth curl checks in the Prometheus test.
    assert!(
        dom.contains("data-live=\"connecting\"") || dom.contains("data-live=\"live\""),
        "the script did not run:\n{dom}"
    );
    assert!(dom.contains("<main"), "{dom}");
    // Without: headless Chromium shows nothing of the page (it does not render a 401 that
    // asks for credentials it cannot prompt for).
    let dom = page("");
    assert!(
        !dom.contains("<main") && !dom.contains("data-live"),
        "{dom}"
    );
}

/// A Prometheus started by the test with `config`.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Prometheus {
    fn start(binary: &Path, dir: &Path, config: &str) -> Prometheus {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap();
        let config_file = dir.join("prometheus.yml");
        std::fs::write(&config_file, config).unwrap();
        let log = dir.join("prometheus.log");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Prometheus { child, addr, log }
    }

    fn api(&self, path: &str) -> Option<Value> {
        let (code, body) = support::http_get(self.addr, path)?;
        (code == 200).then(|| serde_json::from_str(&body).ok())?
    }

    /// The active target of `job`.
    fn target(&self, job: &str) -> Option<Value> {
        self.api("/api/v1/targets?state=active")?["data"]["activeTargets"]
            .as_array()?
            .iter()
            .find(|t| t["scrapePool"] == job)
            .cloned()
    }

    /// The first sample of `query` once it has one (60 s at most).
    fn wait_query(&self, query: &str) -> Value {
        let encoded: String = query
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        let start = Instant::now();
        loop {
            if let Some(sample) = self
                .api(&format!("/api/v1/query?query={encoded}"))
                .and_then(|v| v["data"]["result"].get(0).cloned())
            {
                eprintln!("{query}: after {:?}", start.elapsed());
                return sample;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no sample of {query}; target: {:?}; log:\n{}",
                self.target("operator"),
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
