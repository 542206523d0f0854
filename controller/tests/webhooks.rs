//! Webhooks people can use, end to end: the real operator on the local swarm POSTs its events
//! over https to a local TLS receiver whose certificate comes from a CA the test makes (openssl
//! CLI), trusted only through `SSL_CERT_FILE`; the URLs (with their token) come from a
//! `--notify-file` and appear in nothing the operator writes.
// Helpers outside #[test] functions unwrap too: in a test, a failed unwrap is a failed test
// with its location.
#![allow(clippy::unwrap_used)]

mod support;

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;
use support::pki::Pki;
use support::{Operator, Swarm, require_tool};

const TOKEN: &str = "T0KEN-0f-the-webhook";
const ARRIVE: Duration = Duration::from_secs(60);

/// An https webhook receiver on 127.0.0.1: answers every `POST` with `status_line` and
/// records `(path, JSON body)`.
struct Receiver {
    port: u16,
    received: Arc<Mutex<Vec<(String, Value)>>>,
    /// Requests read whole (a failed TLS handshake is none).
    requests: Arc<AtomicUsize>,
}

impl Receiver {
    fn start(cert: &Path, key: &Path, status_line: &'static str) -> Receiver {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(key).unwrap();
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let receiver = Receiver {
            port: listener.local_addr().unwrap().port(),
            received: Arc::default(),
            requests: Arc::default(),
        };
        let (received, requests) = (receiver.received.clone(), receiver.requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (config, received, requests) =
                    (config.clone(), received.clone(), requests.clone());
                std::thread::spawn(move || {
                    // A refused handshake (the operator does not trust the CA) ends here.
                    let _ = serve(stream, config, status_line, &received, &requests);
                });
            }
        });
        receiver
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    fn bodies(&self) -> Vec<(String, Value)> {
        self.received.lock().unwrap().clone()
    }
}

fn serve(
    stream: TcpStream,
    config: Arc<rustls::ServerConfig>,
    status_line: &str,
    received: &Mutex<Vec<(String, Value)>>,
    requests: &AtomicUsize,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    let connection = rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(connection, stream);
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head_end, length) = loop {
        let n = tls.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        bytes.extend_from_slice(&chunk[..n]);
        if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&bytes[..end]).to_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse::<usize>().unwrap());
            break (end + 4, length);
        }
    };
    while bytes.len() < head_end + length {
        let n = tls.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        bytes.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&bytes[..head_end]).into_owned();
    let path = head
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let body = serde_json::from_slice(&bytes[head_end..]).unwrap_or(Value::Null);
    requests.fetch_add(1, Ordering::SeqCst);
    received.lock().unwrap().push((path, body));
    write!(
        tls,
        "HTTP/1.1 {status_line}\r\nLocation: https://127.0.0.1:1/moved/{TOKEN}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    tls.conn.send_close_notify();
    tls.flush()
}

/// A spec the operator can not load: one `specError` event.
fn broken_spec(swarm: &Swarm) {
    swarm.write_spec(
        "broken.yaml",
        &format!(
            "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata:\n  name: {}\n\
             spec:\n  image: busybox\n  replicas: many\n",
            swarm.name("broken")
        ),
    );
}

/// Starts the operator with `--notify-file` holding `urls` (and a comment), `format`, an
/// events log, its own status file, and `env`.
fn operator(
    swarm: &Swarm,
    dir: &Path,
    run: &str,
    urls: &[String],
    format: &str,
    env: &[(&str, Option<&OsStr>)],
) -> (Operator, PathBuf, PathBuf) {
    let hooks = dir.join(format!("{run}.hooks"));
    std::fs::write(
        &hooks,
        format!("# the team's webhooks\n\n{}\n", urls.join("\n")),
    )
    .unwrap();
    let events = dir.join(format!("{run}.events.jsonl"));
    let status = dir.join(format!("{run}.status.json"));
    let specs = swarm.specs.path().to_str().unwrap();
    let extra: Vec<&OsStr> = vec![
        OsStr::new("--notify-file"),
        hooks.as_os_str(),
        OsStr::new("--notify-format"),
        OsStr::new(format),
        OsStr::new("--events-log"),
        events.as_os_str(),
    ];
    let operator = swarm.operator_with_env(&["--specs", specs], &status, run, &extra, env);
    (operator, events, status)
}

/// The value of `swarm_operator_notifications_<outcome>_total{sink="<sink>"}`.
fn notifications(operator: &Operator, outcome: &str, sink: &str) -> Option<f64> {
    let (_, body) = operator.http_get("/metrics")?;
    let series = format!("swarm_operator_notifications_{outcome}_total{{sink=\"{sink}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&series)?.trim().parse().ok())
}

fn wait_for(what: &str, operator: &Operator, done: impl Fn() -> bool) {
    let deadline = Instant::now() + ARRIVE;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} within {ARRIVE:?}; operator log:\n{}",
            operator.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Nothing the operator wrote holds the token.
fn assert_no_token(operator: &Operator, files: &[&Path]) {
    let log = operator.log();
    assert!(
        !log.contains(TOKEN),
        "the token is in the operator's log:\n{log}"
    );
    if let Some((_, metrics)) = operator.http_get("/metrics") {
        assert!(!metrics.contains(TOKEN), "the token is in /metrics");
    }
    for file in files {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        assert!(!text.contains(TOKEN), "the token is in {}", file.display());
    }
}

#[test]
fn https_webhooks_from_a_notify_file_trust_ssl_cert_file_and_never_show_the_token() {
    let Some(swarm) = Swarm::start("https_webhooks") else {
        return;
    };
    let Some(openssl) = require_tool("https_webhooks", "openssl", "openssl") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&openssl);
    pki.issue(
        "server",
        "ca",
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    );
    let (ca, cert, key) = (
        pki.path("ca.crt"),
        pki.path("server.crt"),
        pki.path("server.key"),
    );
    let accepting = Receiver::start(&cert, &key, "204 No Content");
    let moved = Receiver::start(&cert, &key, "302 Found");
    broken_spec(&swarm);
    let trust_ca = [
        ("SSL_CERT_FILE", Some(ca.as_os_str())),
        ("SSL_CERT_DIR", None),
    ];

    // Slack format; webhook-1 accepts, webhook-2 answers with a redirect.
    let (mut op, events, status) = operator(
        &swarm,
        dir.path(),
        "slack",
        &[
            accepting.url(&format!("/hook/{TOKEN}")),
            moved.url(&format!("/moved/{TOKEN}")),
        ],
        "slack",
        &trust_ca,
    );
    wait_for("the spec error at the accepting webhook", &op, || {
        !accepting.bodies().is_empty()
    });
    let (path, body) = accepting.bodies()[0].clone();
    assert_eq!(path, format!("/hook/{TOKEN}"), "the whole URL is used");
    let text = body["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text in {body}"));
    assert!(
        text.contains("specError") && text.contains("broken.yaml"),
        "{text}"
    );
    assert_eq!(
        body.as_object().unwrap().len(),
        1,
        "slack gets only text: {body}"
    );
    wait_for("the redirect counted as failed", &op, || {
        notifications(&op, "failed", "webhook-2") == Some(1.0)
    });
    // Retries would come 0.5, 1.5 and 3.5 s after the first attempt: none comes.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        moved.requests.load(Ordering::SeqCst),
        1,
        "one attempt at a redirect"
    );
    assert_eq!(notifications(&op, "failed", "webhook-2"), Some(1.0));
    assert_eq!(notifications(&op, "delivered", "webhook-1"), Some(1.0));
    let log = op.log();
    let refused: Vec<&str> = log.lines().filter(|l| l.contains("refused")).collect();
    assert_eq!(refused.len(), 1, "the redirect is logged once:\n{log}");
    assert!(
        refused[0].contains("302") && refused[0].contains("webhook-2"),
        "{}",
        refused[0]
    );
    assert!(op.stop(), "the operator stops cleanly");
    assert_no_token(&op, &[&events, &status]);
    let logged: Vec<Value> = std::fs::read_to_string(&events)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!(logged[0]["kind"], "specError");
    assert_eq!(mode(&events), 0o600, "the events log is private");
    assert_eq!(
        mode(&status),
        0o644,
        "the status file is readable by Prometheus"
    );

    // Discord format, same CA.
    let (op, _, _) = operator(
        &swarm,
        dir.path(),
        "discord",
        &[accepting.url(&format!("/discord/{TOKEN}"))],
        "discord",
        &trust_ca,
    );
    wait_for("the spec error in Discord's format", &op, || {
        accepting
            .bodies()
            .iter()
            .any(|(p, _)| p.starts_with("/discord/"))
    });
    let (_, body) = accepting
        .bodies()
        .into_iter()
        .find(|(p, _)| p.starts_with("/discord/"))
        .unwrap();
    let content = body["content"]
        .as_str()
        .unwrap_or_else(|| panic!("no content in {body}"));
    assert!(content.contains("specError"), "{content}");
    assert_eq!(
        body.as_object().unwrap().len(),
        1,
        "discord gets only content: {body}"
    );
    assert_no_token(&op, &[]);
    drop(op);

    // Without SSL_CERT_FILE the system roots do not know the test's CA: a certificate error,
    // named with the receiver's scheme and host, not its URL.
    let before = accepting.requests.load(Ordering::SeqCst);
    let (op, _, _) = operator(
        &swarm,
        dir.path(),
        "untrusted",
        &[accepting.url(&format!("/untrusted/{TOKEN}"))],
        "json",
        &[("SSL_CERT_FILE", None), ("SSL_CERT_DIR", None)],
    );
    wait_for("the certificate error logged", &op, || {
        op.log()
            .lines()
            .any(|l| l.contains("does not accept notifications"))
    });
    let log = op.log();
    let line = log
        .lines()
        .find(|l| l.contains("does not accept notifications"))
        .unwrap();
    assert!(line.contains("certificate"), "{line}");
    assert!(
        line.contains(&format!("receiver=https://127.0.0.1:{}", accepting.port)),
        "{line}"
    );
    assert_eq!(
        accepting.requests.load(Ordering::SeqCst),
        before,
        "nothing got through"
    );
    assert_no_token(&op, &[]);
}
