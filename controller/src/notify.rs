//! Notifications: operator events POSTed as JSON to webhooks (retried with backoff, through a
//! bounded queue that never blocks reconciling) and appended as JSON lines to an events log.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::status::{ConditionReason, ConditionStatus, ConditionType, ServiceStatus, StatusFile};

/// Events waiting per receiver (and in the dispatcher): past this the newest are dropped and
/// counted, so a receiver that is down for long costs bounded memory.
pub const QUEUE_CAPACITY: usize = 1024;

/// Retry delays of one delivery: 500 ms doubling to 30 s, for at most this many attempts
/// (about 10 minutes), then the event is given up and logged.
const RETRY_MIN: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);
const MAX_ATTEMPTS: u32 = 25;
/// One POST may take this long before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why notifications can not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// A `--notify` URL that is not an `http://` URL.
    #[error(
        "--notify {url}: {why}; give an http:// URL (for an https webhook such as Slack, run a local relay)"
    )]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong.
        why: String,
    },
    /// The events log can not be opened for appending.
    #[error("--events-log {}: {source}", path.display())]
    EventsLog {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum EventKind {
    /// A service became ready on a new spec.
    RolloutSucceeded,
    /// A rollout stopped: tasks fail, swarm paused the update, or the operator's write failed.
    RolloutFailed,
    /// Swarm rolled an update back.
    RolledBack,
    /// The operator rewrote an object someone changed.
    DriftCorrected,
    /// A spec file has a problem.
    SpecError,
    /// The operator removed an object whose spec is gone.
    Pruned,
}

impl EventKind {
    /// The wire word.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::RolloutSucceeded => "rolloutSucceeded",
            EventKind::RolloutFailed => "rolloutFailed",
            EventKind::RolledBack => "rolledBack",
            EventKind::DriftCorrected => "driftCorrected",
            EventKind::SpecError => "specError",
            EventKind::Pruned => "pruned",
        }
    }
}

/// One notification, as POSTed and logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// The object, e.g. `service/quote`, or the spec file for a spec error.
    pub object: String,
    /// What happened.
    pub kind: EventKind,
    /// The status reason, e.g. `RolledBack`, `TasksFailing`.
    pub reason: String,
    /// For humans.
    pub message: String,
    /// Hash of the spec the event is about, when there is one.
    pub spec_hash: Option<String>,
    /// When it happened (RFC 3339, UTC).
    pub time: String,
    /// One line for chat webhooks (Slack and compatibles show `text`).
    pub text: String,
}

impl Event {
    /// An event that happens now.
    pub fn new(
        kind: EventKind,
        object: impl Into<String>,
        reason: impl Into<String>,
        message: impl Into<String>,
        spec_hash: Option<String>,
    ) -> Self {
        let (object, reason, message) = (object.into(), reason.into(), message.into());
        Event {
            text: format!("swarm-operator: {object} {}: {message}", kind.as_str()),
            time: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            object,
            kind,
            reason,
            message,
            spec_hash,
        }
    }
}

/// Where events go.
#[derive(Debug, Clone, Default)]
pub struct NotifyConfig {
    /// Webhook URLs (`http://` only).
    pub urls: Vec<String>,
    /// A file that gets one JSON line per event.
    pub events_log: Option<PathBuf>,
}

/// The sending side; cheap to clone. A disabled notifier drops everything.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    queue: Option<mpsc::Sender<Event>>,
    dropped: Arc<AtomicU64>,
}

impl Notifier {
    /// A notifier that sends nothing.
    pub fn disabled() -> Self {
        Notifier::default()
    }

    /// Starts the delivery tasks; `None` when nothing is configured.
    pub async fn start(
        config: NotifyConfig,
    ) -> Result<(Self, Option<JoinHandle<()>>), NotifyError> {
        if config.urls.is_empty() && config.events_log.is_none() {
            return Ok((Notifier::disabled(), None));
        }
        let uris = config
            .urls
            .iter()
            .map(|url| parse_url(url).map(|uri| (url.clone(), uri)))
            .collect::<Result<Vec<_>, _>>()?;
        let log = match &config.events_log {
            Some(path) => Some(
                tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .await
                    .map_err(|source| NotifyError::EventsLog {
                        path: path.clone(),
                        source,
                    })?,
            ),
            None => None,
        };
        let dropped = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let receivers = uris
            .into_iter()
            .map(|(url, uri)| {
                let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
                tokio::spawn(deliver(client.clone(), url.clone(), uri, rx));
                (url, tx)
            })
            .collect();
        let task = tokio::spawn(dispatch(rx, log, receivers, dropped.clone()));
        Ok((
            Notifier {
                queue: Some(tx),
                dropped,
            },
            Some(task),
        ))
    }

    /// Queues `event`; never waits. When the queue is full the event is dropped and counted.
    pub fn send(&self, event: Event) {
        let Some(queue) = &self.queue else {
            return;
        };
        if let Err(error) = queue.try_send(event) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            warn!(%error, "notification queue full; event dropped");
        }
    }

    /// Events dropped because a queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

fn parse_url(url: &str) -> Result<Uri, NotifyError> {
    let bad = |why: &str| NotifyError::BadUrl {
        url: url.to_owned(),
        why: why.to_owned(),
    };
    let uri: Uri = url
        .parse()
        .map_err(|e: hyper::http::uri::InvalidUri| bad(&e.to_string()))?;
    match uri.scheme_str() {
        Some("http") if uri.host().is_some() => Ok(uri),
        Some("http") => Err(bad("no host")),
        Some(other) => Err(bad(&format!("scheme {other} is not supported"))),
        None => Err(bad("no scheme")),
    }
}

/// Writes each event to the log and hands it to every receiver's queue.
async fn dispatch(
    mut rx: mpsc::Receiver<Event>,
    mut log: Option<tokio::fs::File>,
    receivers: Vec<(String, mpsc::Sender<Event>)>,
    dropped: Arc<AtomicU64>,
) {
    while let Some(event) = rx.recv().await {
        if let Some(file) = &mut log {
            let mut line = serde_json::to_vec(&event).expect("events serialize");
            line.push(b'\n');
            if let Err(error) = file.write_all(&line).await {
                warn!(%error, "appending to the events log failed");
            } else {
                let _ = file.flush().await;
            }
        }
        for (url, queue) in &receivers {
            if queue.try_send(event.clone()).is_err() {
                dropped.fetch_add(1, Ordering::Relaxed);
                warn!(%url, "notification queue of this receiver is full; event dropped");
            }
        }
    }
}

/// POSTs the events of one receiver in order, each until it is accepted (2xx), the receiver
/// refuses it for good (4xx other than 408/429), or the attempts run out.
async fn deliver(
    client: Client<HttpConnector, Full<Bytes>>,
    url: String,
    uri: Uri,
    mut rx: mpsc::Receiver<Event>,
) {
    while let Some(event) = rx.recv().await {
        let body = Bytes::from(serde_json::to_vec(&event).expect("events serialize"));
        let mut delay = RETRY_MIN;
        for attempt in 1..=MAX_ATTEMPTS {
            match post(&client, &uri, body.clone()).await {
                Ok(status) if status.is_success() => {
                    debug!(%url, kind = event.kind.as_str(), object = %event.object, attempt,
                           "notification delivered");
                    break;
                }
                Ok(status)
                    if status.is_client_error()
                        && status != StatusCode::REQUEST_TIMEOUT
                        && status != StatusCode::TOO_MANY_REQUESTS =>
                {
                    warn!(%url, %status, object = %event.object,
                          "the webhook refused the notification; not retrying it");
                    break;
                }
                outcome => {
                    let why = match outcome {
                        Ok(status) => status.to_string(),
                        Err(error) => error,
                    };
                    if attempt == MAX_ATTEMPTS {
                        warn!(%url, %why, object = %event.object, attempts = attempt,
                              "giving up on a notification");
                        break;
                    }
                    debug!(%url, %why, retry_in = ?delay, "notification not delivered; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(RETRY_MAX);
                }
            }
        }
    }
}

async fn post(
    client: &Client<HttpConnector, Full<Bytes>>,
    uri: &Uri,
    body: Bytes,
) -> Result<StatusCode, String> {
    let request = Request::builder()
        .method(Method::POST)
        .uri(uri.clone())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(REQUEST_TIMEOUT, client.request(request)).await {
        Ok(Ok(response)) => Ok(response.status()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {REQUEST_TIMEOUT:?}")),
    }
}

/// Turns status changes into events: rollouts that became ready on a new spec, degradations
/// that appeared, new spec errors. Remembers which spec each service last became ready on, so
/// that a replica coming back after a crash is not a new rollout.
#[derive(Debug, Default)]
pub struct StatusEvents {
    ready_on: BTreeMap<String, String>,
    started: bool,
}

impl StatusEvents {
    /// The events between `previous` and `next`; `hash_of` gives a service's desired spec hash.
    /// The first call only learns what is ready (nothing that was true before the operator
    /// started is news).
    pub fn changes(
        &mut self,
        previous: Option<&StatusFile>,
        next: &StatusFile,
        hash_of: impl Fn(&str) -> Option<String>,
    ) -> Vec<Event> {
        let mut events = Vec::new();
        let started = std::mem::replace(&mut self.started, true);
        for (name, service) in &next.services {
            let hash = hash_of(name);
            let object = format!("service/{name}");
            if let (Some(ready), Some(hash)) = (condition(service, ConditionType::Ready), &hash)
                && ready.status == ConditionStatus::True
                && self.ready_on.get(name) != Some(hash)
            {
                self.ready_on.insert(name.clone(), hash.clone());
                if started {
                    events.push(Event::new(
                        EventKind::RolloutSucceeded,
                        &object,
                        ready.reason.as_str(),
                        &ready.message,
                        Some(hash.clone()),
                    ));
                }
            }
            let Some(degraded) = condition(service, ConditionType::Degraded)
                .filter(|d| d.status == ConditionStatus::True)
            else {
                continue;
            };
            let kind = match degraded.reason {
                ConditionReason::RolledBack => EventKind::RolledBack,
                ConditionReason::TasksFailing
                | ConditionReason::UpdatePaused
                | ConditionReason::RollbackPaused
                | ConditionReason::ReconcileError
                | ConditionReason::PortConflict => EventKind::RolloutFailed,
                _ => continue,
            };
            let before = previous
                .and_then(|p| p.services.get(name))
                .and_then(|s| condition(s, ConditionType::Degraded));
            let news = before
                .is_none_or(|b| b.status != ConditionStatus::True || b.reason != degraded.reason);
            if news {
                events.push(Event::new(
                    kind,
                    &object,
                    degraded.reason.as_str(),
                    &degraded.message,
                    hash.clone(),
                ));
            }
        }
        for error in &next.errors {
            if previous.is_some_and(|p| p.errors.contains(error)) {
                continue;
            }
            let place = match (error.line, error.column) {
                (Some(line), Some(column)) => format!("{}:{line}:{column}", error.file),
                _ => error.file.clone(),
            };
            let field = if error.field.is_empty() {
                String::new()
            } else {
                format!("{}: ", error.field)
            };
            events.push(Event::new(
                EventKind::SpecError,
                &error.file,
                "SpecError",
                format!("{place}: {field}{}", error.message),
                None,
            ));
        }
        events
    }
}

fn condition(service: &ServiceStatus, kind: ConditionType) -> Option<&crate::status::Condition> {
    service.conditions.iter().find(|c| c.kind == kind)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use axum::extract::State;
    use axum::routing::post;
    use serde_json::Value;

    use super::*;
    use crate::status::{Condition, StatusSpecError};

    type Received = Arc<Mutex<Vec<Value>>>;

    /// Serves `POST /hook` on `listener`, recording each JSON body; the first `fail_first`
    /// requests get a 503.
    fn receiver(listener: std::net::TcpListener, received: Received, fail_first: usize) {
        listener.set_nonblocking(true).unwrap();
        let failures = Arc::new(AtomicU64::new(fail_first as u64));
        let app = axum::Router::new()
            .route(
                "/hook",
                post(
                    |State((received, failures)): State<(Received, Arc<AtomicU64>)>,
                     axum::Json(body): axum::Json<Value>| async move {
                        if failures
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                            .is_ok()
                        {
                            return StatusCode::SERVICE_UNAVAILABLE;
                        }
                        received.lock().unwrap().push(body);
                        StatusCode::NO_CONTENT
                    },
                ),
            )
            .with_state((received, failures));
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
    }

    async fn wait_for(received: &Received, count: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while received.lock().unwrap().len() < count {
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {:?} arrived",
                received.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn event(i: usize) -> Event {
        Event::new(
            EventKind::Pruned,
            format!("service/s{i}"),
            "SpecRemoved",
            "its spec is gone",
            None,
        )
    }

    #[tokio::test]
    async fn a_receiver_that_is_down_for_a_while_gets_each_event_once_in_order() {
        // Reserve a port, then close it: connections are refused until the receiver starts.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("events.jsonl");
        let (notifier, _task) = Notifier::start(NotifyConfig {
            urls: vec![format!("http://127.0.0.1:{port}/hook")],
            events_log: Some(log.clone()),
        })
        .await
        .unwrap();
        for i in 0..3 {
            notifier.send(event(i));
        }
        // Down long enough for several refused attempts.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let received = Received::default();
        // Up, but failing the first two requests with 503: retried too.
        receiver(
            std::net::TcpListener::bind(("127.0.0.1", port)).unwrap(),
            received.clone(),
            2,
        );
        wait_for(&received, 3).await;
        // Nothing more arrives later (no duplicate from an earlier attempt).
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let got = received.lock().unwrap().clone();
        let objects: Vec<&str> = got.iter().map(|e| e["object"].as_str().unwrap()).collect();
        assert_eq!(objects, ["service/s0", "service/s1", "service/s2"]);
        assert_eq!(got[0]["kind"], "pruned");
        assert_eq!(got[0]["reason"], "SpecRemoved");
        assert_eq!(
            got[0]["text"],
            "swarm-operator: service/s0 pruned: its spec is gone"
        );
        assert!(got[0]["time"].as_str().unwrap().ends_with('Z'));
        assert_eq!(notifier.dropped(), 0);
        let lines: Vec<Value> = std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines, got,
            "the events log has the same events, one per line"
        );
    }

    #[tokio::test]
    async fn a_receiver_that_never_answers_never_blocks_the_sender() {
        // Accepts connections and never answers.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (notifier, _task) = Notifier::start(NotifyConfig {
            urls: vec![format!("http://{}/hook", silent.local_addr().unwrap())],
            events_log: None,
        })
        .await
        .unwrap();
        let sent = 3 * QUEUE_CAPACITY;
        for i in 0..sent {
            notifier.send(event(i));
        }
        // Every send returned; what did not fit was dropped and counted, not waited for.
        assert!(notifier.dropped() > 0, "bounded: some of {sent} dropped");
        assert!(notifier.dropped() < sent as u64);
        drop(silent);
    }

    #[tokio::test]
    async fn only_http_urls_are_accepted() {
        for (url, why) in [
            ("https://hooks.example/x", "scheme https is not supported"),
            ("127.0.0.1:9/x", "invalid format"),
            ("/just/a/path", "no scheme"),
        ] {
            let error = Notifier::start(NotifyConfig {
                urls: vec![url.into()],
                events_log: None,
            })
            .await
            .unwrap_err();
            assert!(error.to_string().contains(why), "{error}");
            assert!(error.to_string().contains(url), "{error}");
        }
    }

    fn service(ready: bool, degraded: Option<ConditionReason>) -> ServiceStatus {
        let condition = |kind, holds: bool, reason: ConditionReason, message: &str| Condition {
            kind,
            status: ConditionStatus::from(holds),
            reason,
            message: message.into(),
            last_transition_time: "t".into(),
        };
        ServiceStatus {
            desired_replicas: Some(1),
            running_replicas: u64::from(ready),
            updated_replicas: u64::from(ready),
            spec_hash: None,
            observed_spec_hash: None,
            created_at: None,
            conditions: vec![
                condition(
                    ConditionType::Ready,
                    ready,
                    if ready {
                        ConditionReason::AllReplicasRunning
                    } else {
                        ConditionReason::ReplicasUnavailable
                    },
                    "1/1 replicas running",
                ),
                condition(
                    ConditionType::Degraded,
                    degraded.is_some(),
                    degraded.unwrap_or(ConditionReason::AsExpected),
                    "task: No such image",
                ),
            ],
            virtual_ips: vec![],
            endpoints: vec![],
            last_error: None,
        }
    }

    fn file(services: &[(&str, ServiceStatus)], errors: Vec<StatusSpecError>) -> StatusFile {
        StatusFile {
            generated_at: "t".into(),
            services: services
                .iter()
                .map(|(n, s)| (n.to_string(), s.clone()))
                .collect(),
            networks: BTreeMap::new(),
            errors,
        }
    }

    fn kinds(events: &[Event]) -> Vec<(&str, &str)> {
        events
            .iter()
            .map(|e| (e.kind.as_str(), e.object.as_str()))
            .collect()
    }

    #[test]
    fn a_rollout_succeeds_once_per_spec_and_what_was_ready_at_start_is_not_news() {
        let mut watch = StatusEvents::default();
        let hash = |h: &'static str| move |_: &str| Some(h.to_owned());
        let up = file(&[("web", service(true, None))], vec![]);
        assert!(watch.changes(None, &up, hash("h1")).is_empty());
        // A replica crashes and comes back on the same spec: not a rollout.
        let down = file(&[("web", service(false, None))], vec![]);
        assert!(watch.changes(Some(&up), &down, hash("h1")).is_empty());
        assert!(watch.changes(Some(&down), &up, hash("h1")).is_empty());
        // A new spec becomes ready: one event, with its hash.
        let events = watch.changes(Some(&down), &up, hash("h2"));
        assert_eq!(kinds(&events), [("rolloutSucceeded", "service/web")]);
        assert_eq!(events[0].spec_hash.as_deref(), Some("h2"));
        assert!(watch.changes(Some(&up), &up, hash("h2")).is_empty());
    }

    #[test]
    fn degradations_and_new_spec_errors_are_announced_once() {
        let mut watch = StatusEvents::default();
        let hash = |_: &str| Some("h".to_owned());
        let fine = file(&[("web", service(true, None))], vec![]);
        watch.changes(None, &fine, hash);
        let rolled_back = file(
            &[("web", service(true, Some(ConditionReason::RolledBack)))],
            vec![],
        );
        let events = watch.changes(Some(&fine), &rolled_back, hash);
        assert_eq!(kinds(&events), [("rolledBack", "service/web")]);
        assert_eq!(events[0].message, "task: No such image");
        assert!(
            watch
                .changes(Some(&rolled_back), &rolled_back, hash)
                .is_empty()
        );
        let failing = file(
            &[("web", service(false, Some(ConditionReason::TasksFailing)))],
            vec![StatusSpecError {
                file: "web.yaml".into(),
                line: Some(3),
                column: Some(7),
                field: "spec.replicas".into(),
                message: "must be a number".into(),
            }],
        );
        let events = watch.changes(Some(&rolled_back), &failing, hash);
        assert_eq!(
            kinds(&events),
            [("rolloutFailed", "service/web"), ("specError", "web.yaml")]
        );
        assert_eq!(
            events[1].message,
            "web.yaml:3:7: spec.replicas: must be a number"
        );
        assert!(watch.changes(Some(&failing), &failing, hash).is_empty());
    }
}
