//! A counting Unix-socket proxy in front of the engine socket: every request on the wire, with
//! the object it names and the status of its response.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Result;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use crate::swarm::ENGINE_SOCKET;

/// One request seen on the wire.
#[derive(Debug, Clone)]
pub struct Request {
    pub at: Instant,
    /// `METHOD /path` with ids replaced by `{id}`, e.g. `POST /services/{id}/update`.
    pub key: String,
    /// The object the request names: the id or name in the path, or the `Name` of a create's
    /// body.
    pub target: Option<String>,
    /// HTTP status of the response, once it arrived.
    pub status: Option<u16>,
}

impl Request {
    /// Whether the request changes the swarm (each one a raft proposal on the manager).
    pub fn is_write(&self) -> bool {
        !(self.key.starts_with("GET ") || self.key.starts_with("HEAD "))
    }

    pub fn is_service_create(&self) -> bool {
        self.key == "POST /services/create"
    }
}

/// The requests of one proxy, in arrival order (append-only, so indexes are stable marks).
#[derive(Clone, Default)]
pub struct WireLog(Arc<Mutex<Vec<Request>>>);

impl WireLog {
    /// A mark: [`WireLog::since`] returns the requests after it.
    pub fn mark(&self) -> usize {
        self.0.lock().expect("wire log lock").len()
    }

    pub fn since(&self, mark: usize) -> Vec<Request> {
        self.0.lock().expect("wire log lock")[mark..].to_vec()
    }

    /// The requests from `mark` to `end` (two marks), with the statuses that arrived since.
    pub fn between(&self, mark: usize, end: usize) -> Vec<Request> {
        self.0.lock().expect("wire log lock")[mark..end].to_vec()
    }

    fn push(&self, request: Request) -> usize {
        let mut log = self.0.lock().expect("wire log lock");
        log.push(request);
        log.len() - 1
    }

    fn set_target(&self, index: usize, target: String) {
        self.0.lock().expect("wire log lock")[index].target = Some(target);
    }

    fn set_status(&self, index: usize, status: u16) {
        self.0.lock().expect("wire log lock")[index].status = Some(status);
    }
}

/// A listening proxy; clients reach the engine through `host` (a `DOCKER_HOST` value).
pub struct Wire {
    pub host: String,
    pub log: WireLog,
}

impl Wire {
    pub fn start(socket: &Path) -> Result<Wire> {
        let listener = UnixListener::bind(socket)?;
        let log = WireLog::default();
        tokio::spawn(accept(listener, log.clone()));
        Ok(Wire {
            host: format!("unix://{}", socket.display()),
            log,
        })
    }
}

async fn accept(listener: UnixListener, log: WireLog) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(connection(stream, log.clone()));
    }
}

/// `GET /v1.41/services/abc/update?version=3 HTTP/1.1` → (`GET /services/{id}/update`, `abc`).
pub fn request_key(line: &str) -> Option<(String, Option<String>)> {
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if !version.starts_with("HTTP/1") || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let path = target.split('?').next()?;
    let mut segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segments.first().is_some_and(|s| s.starts_with('v')) && segments.len() > 1 {
        segments.remove(0);
    }
    let mut object = None;
    if segments.len() >= 2 && !matches!(segments[1], "create" | "prune") {
        object = Some(segments[1].to_owned());
        segments[1] = "{id}";
    }
    Some((format!("{method} /{}", segments.join("/")), object))
}

/// `HTTP/1.1 409 Conflict` → 409.
fn status_code(line: &str) -> Option<u16> {
    let rest = line.strip_prefix("HTTP/1.")?;
    rest.get(2..5)?.parse().ok()
}

/// The first `"Name":"…"` of a create's JSON body: the object's name (it comes first in both
/// the Docker CLI's and bollard's encoding of service and network specs).
fn body_name(bytes: &[u8]) -> Option<String> {
    const KEY: &[u8] = b"\"Name\":\"";
    let start = bytes.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let len = bytes[start..].iter().position(|b| *b == b'"')?;
    Some(String::from_utf8_lossy(&bytes[start..start + len]).into_owned())
}

const NAME_SCAN_LIMIT: usize = 16 * 1024;

async fn connection(client: UnixStream, log: WireLog) -> std::io::Result<()> {
    let engine = UnixStream::connect(ENGINE_SOCKET).await?;
    let (mut client_read, mut client_write) = client.into_split();
    let (mut engine_read, mut engine_write) = engine.into_split();
    // Requests of this connection awaiting their response (HTTP/1.1: responses come in order).
    let pending: Arc<Mutex<VecDeque<usize>>> = Arc::default();
    let upstream_log = log.clone();
    let upstream_pending = pending.clone();
    let upstream = async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut line: Vec<u8> = Vec::new();
        // A create whose body is still to be searched for the object's name.
        let mut naming: Option<(usize, Vec<u8>)> = None;
        loop {
            let n = client_read.read(&mut buf).await?;
            if n == 0 {
                engine_write.shutdown().await?;
                return Ok::<_, std::io::Error>(());
            }
            for &b in &buf[..n] {
                if let Some((index, seen)) = &mut naming {
                    seen.push(b);
                    if b == b'"'
                        && let Some(name) = body_name(seen)
                    {
                        upstream_log.set_target(*index, name);
                        naming = None;
                    } else if seen.len() > NAME_SCAN_LIMIT {
                        naming = None;
                    }
                }
                if b == b'\n' {
                    let text = String::from_utf8_lossy(&line);
                    if let Some((key, target)) = request_key(text.trim_end()) {
                        let is_create = key.starts_with("POST ") && key.ends_with("/create");
                        let index = upstream_log.push(Request {
                            at: Instant::now(),
                            key,
                            target,
                            status: None,
                        });
                        upstream_pending
                            .lock()
                            .expect("pending lock")
                            .push_back(index);
                        naming = is_create.then(|| (index, Vec::new()));
                    }
                    line.clear();
                } else if line.len() < 4096 {
                    line.push(b);
                }
            }
            engine_write.write_all(&buf[..n]).await?;
        }
    };
    let downstream = async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut line: Vec<u8> = Vec::new();
        loop {
            let n = engine_read.read(&mut buf).await?;
            if n == 0 {
                return client_write.shutdown().await;
            }
            for &b in &buf[..n] {
                if b == b'\n' {
                    if let Some(code) = status_code(&String::from_utf8_lossy(&line))
                        && let Some(index) = pending.lock().expect("pending lock").pop_front()
                    {
                        log.set_status(index, code);
                    }
                    line.clear();
                } else if line.len() < 64 {
                    line.push(b);
                }
            }
            client_write.write_all(&buf[..n]).await?;
        }
    };
    let _ = tokio::try_join!(upstream, downstream);
    Ok(())
}

/// Requests by key.
pub fn counts<'a>(requests: impl IntoIterator<Item = &'a Request>) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for request in requests {
        *counts.entry(request.key.clone()).or_default() += 1;
    }
    counts
}

/// `N (a KEY, b KEY, …)`, most frequent first.
pub fn breakdown(requests: &[Request]) -> String {
    let counts = counts(requests);
    let mut by: Vec<_> = counts.iter().collect();
    by.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let list = by
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("{} ({list})", requests.len())
}

/// Requests whose response was not a success, by status: `409×3, 500×1`.
pub fn failures(requests: &[Request]) -> String {
    let mut by: BTreeMap<u16, u64> = BTreeMap::new();
    for request in requests {
        if let Some(status) = request.status.filter(|s| *s >= 400) {
            *by.entry(status).or_default() += 1;
        }
    }
    if by.is_empty() {
        return "none".to_owned();
    }
    by.iter()
        .map(|(s, n)| format!("{s}×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}
