//! Notifications: operator events POSTed to webhooks over http or https (retried with backoff,
//! through a bounded queue that never blocks reconciling) and appended as JSON lines to an
//! events log.

mod events_log;
mod payload;
mod receivers;

pub use events_log::parse_size;
pub use payload::PayloadFormat;
pub use receivers::ReceiverError;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder as _, ExponentialBackoff, ExponentialBuilder};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::report::status::{
    ConditionReason, ConditionStatus, ConditionType, ServiceStatus, StatusFile,
};

/// Events waiting per receiver (and in the dispatcher): past this the newest are dropped and
/// counted, so a receiver that is down for long costs bounded memory.
pub const QUEUE_CAPACITY: usize = 1024;

/// How long shutdown gives the events still queued: each is written to the events log and
/// POSTed once more to every webhook within this time; what is left is counted and logged.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Retry delays of one delivery: 500 ms doubling to 30 s, for at most this many attempts
/// (about 10 minutes), then the event is given up and logged.
const RETRY_MIN: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);
const MAX_ATTEMPTS: usize = 25;
/// One POST (connect, TLS handshake, answer) may take this long before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A 429's `Retry-After` is honoured up to this long.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(300);

/// The client every webhook is POSTed with: plain http, or https through rustls (ring).
type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The sink name (metrics label, logs) of the events log.
pub const EVENTS_LOG_SINK: &str = "events-log";

/// Why notifications can not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// A `--notify` URL or `--notify-file` that can not be used (never quoting the URL).
    #[error(transparent)]
    Receiver(#[from] ReceiverError),
    /// rustls refused its own configuration (no protocol version the ring provider supports).
    #[error("setting up TLS for https webhooks: {0}")]
    Tls(rustls::Error),
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
    /// The commit the specs were loaded from (`--source git`), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
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
        // One line: chat receivers show it as it is.
        let one_line = message.replace(['\r', '\n'], " ");
        Event {
            text: format!(
                "swarm-operator: {object} {} ({reason}): {one_line}",
                kind.as_str()
            ),
            time: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            object,
            kind,
            reason,
            message,
            spec_hash,
            revision: None,
        }
    }

    /// The event, naming the commit it happened at: `revision` in the body, `at 3f2a9c1` at
    /// the end of the chat line.
    #[must_use]
    pub fn at(mut self, revision: Option<&crate::revision::Revision>) -> Self {
        if let Some(revision) = revision {
            self.text = format!("{} at {}", self.text, revision.short());
            self.revision = Some(revision.to_string());
        }
        self
    }
}

/// Where events go.
#[derive(Clone)]
pub struct NotifyConfig {
    /// Webhook URLs (`http://` or `https://`) from the command line.
    pub urls: Vec<String>,
    /// Files of webhook URLs, one a line (a docker secret keeps the token off the command
    /// line); read at start.
    pub url_files: Vec<PathBuf>,
    /// The body every webhook gets.
    pub format: PayloadFormat,
    /// A file that gets one JSON line per event.
    pub events_log: Option<PathBuf>,
    /// The events log is rotated once it would grow past this many bytes.
    pub events_log_max_size: u64,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            urls: Vec::new(),
            url_files: Vec::new(),
            format: PayloadFormat::default(),
            events_log: None,
            events_log_max_size: events_log::DEFAULT_MAX_SIZE,
        }
    }
}

/// The URLs are secrets: `{:?}` shows how many there are, not what they are.
impl std::fmt::Debug for NotifyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifyConfig")
            .field("urls", &self.urls.len())
            .field("url_files", &self.url_files)
            .field("format", &self.format)
            .field("events_log", &self.events_log)
            .field("events_log_max_size", &self.events_log_max_size)
            .finish()
    }
}

/// What became of events at one sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// Accepted by the webhook (2xx), or appended to the events log.
    Delivered,
    /// Refused for good, given up after the retries, or still undelivered when shutdown's
    /// grace period ran out.
    Failed,
    /// Never queued for the sink: its queue was full (or notifications had stopped).
    Dropped,
}

impl DeliveryOutcome {
    /// Every outcome, so that counters can start at zero.
    pub const ALL: [DeliveryOutcome; 3] = [
        DeliveryOutcome::Delivered,
        DeliveryOutcome::Failed,
        DeliveryOutcome::Dropped,
    ];
}

/// Told what became of events (the operator's metrics).
pub trait NotifyObserver: Send + Sync {
    /// `count` events reached `outcome` at `sink` ([`EVENTS_LOG_SINK`], or `webhook-N`, the
    /// N-th webhook URL: the `--notify` URLs, then those of each `--notify-file`).
    fn on_notifications(&self, sink: &str, outcome: DeliveryOutcome, count: u64);
}

/// Counts consecutive drops, so that a full queue is logged when it starts dropping and when
/// it accepts events again, rather than once per event.
#[derive(Debug, Default)]
struct DropBurst {
    dropped: AtomicU64,
}

impl DropBurst {
    /// Counts one drop; true for the first drop of a burst (the one to log).
    fn dropped(&self) -> bool {
        self.dropped.fetch_add(1, Ordering::Relaxed) == 0
    }

    /// An event got through: how many were dropped in the burst this ends, if any.
    fn accepted(&self) -> Option<u64> {
        match self.dropped.swap(0, Ordering::Relaxed) {
            0 => None,
            dropped => Some(dropped),
        }
    }
}

/// One place events go.
#[derive(Debug)]
struct Sink {
    /// [`EVENTS_LOG_SINK`] or `webhook-N`: a webhook URL carries a token, so metrics name a
    /// webhook by its position only, and logs by its position, scheme and host.
    name: String,
    /// Events handed to this sink and neither delivered nor given up yet.
    pending: AtomicU64,
    /// Drops of this sink's own queue.
    burst: DropBurst,
}

impl Sink {
    fn new(name: impl Into<String>) -> Arc<Self> {
        Arc::new(Sink {
            name: name.into(),
            pending: AtomicU64::new(0),
            burst: DropBurst::default(),
        })
    }
}

/// What the sending side and the delivery tasks count together.
struct Counts {
    /// Events in the dispatcher's queue or being dispatched.
    queued: AtomicU64,
    /// Drops of the dispatcher's queue.
    burst: DropBurst,
    /// Every sink: an event the dispatcher's queue drops is lost to all of them.
    sinks: Vec<Arc<Sink>>,
    observer: Arc<dyn NotifyObserver>,
}

impl Counts {
    fn count(&self, sink: &Sink, outcome: DeliveryOutcome, count: u64) {
        self.observer.on_notifications(&sink.name, outcome, count);
    }
}

/// The sending side; cheap to clone. A disabled notifier drops everything.
#[derive(Clone, Default)]
pub struct Notifier {
    queue: Option<(mpsc::Sender<Event>, Arc<Counts>)>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("enabled", &self.queue.is_some())
            .finish()
    }
}

impl NotifyConfig {
    /// Reads and checks every webhook URL (files included) without starting anything: `run`
    /// calls it before it connects to the engine, so a bad `--notify-file` ends it at once.
    pub fn check(&self) -> Result<(), NotifyError> {
        receivers::collect(&self.urls, &self.url_files)?;
        Ok(())
    }
}

impl Notifier {
    /// A notifier that sends nothing.
    pub fn disabled() -> Self {
        Notifier::default()
    }

    /// Starts the delivery tasks, which tell `observer` what became of each event; no tasks
    /// when nothing is configured. Stop them with [`Delivery::drain`].
    pub async fn start(
        config: NotifyConfig,
        observer: Arc<dyn NotifyObserver>,
    ) -> Result<(Self, Option<Delivery>), NotifyError> {
        let urls = receivers::collect(&config.urls, &config.url_files)?;
        if urls.is_empty() && config.events_log.is_none() {
            return Ok((Notifier::disabled(), None));
        }
        let log = match &config.events_log {
            Some(path) => Some(LogSink {
                log: events_log::EventsLog::open(path, config.events_log_max_size)
                    .await
                    .map_err(|source| NotifyError::EventsLog {
                        path: path.clone(),
                        source,
                    })?,
                sink: Sink::new(EVENTS_LOG_SINK),
            }),
            None => None,
        };
        let tls_roots = if urls.iter().any(|u| u.scheme == receivers::Scheme::Https) {
            system_roots()
        } else {
            rustls::RootCertStore::empty()
        };
        let client = http_client(tls_roots)?;
        let webhooks: Vec<Webhook> = urls
            .into_iter()
            .enumerate()
            .map(|(i, url)| {
                let sink = Sink::new(format!("webhook-{}", i + 1));
                info!(sink = %sink.name, receiver = %url.public, format = ?config.format,
                      "notifying a webhook");
                Webhook {
                    sink,
                    url,
                    format: config.format,
                }
            })
            .collect();
        let sinks: Vec<Arc<Sink>> = log
            .iter()
            .map(|l| l.sink.clone())
            .chain(webhooks.iter().map(|w| w.sink.clone()))
            .collect();
        // Counters exist from the start, so that rates work from the first event.
        for sink in &sinks {
            for outcome in DeliveryOutcome::ALL {
                observer.on_notifications(&sink.name, outcome, 0);
            }
        }
        let counts = Arc::new(Counts {
            queued: AtomicU64::new(0),
            burst: DropBurst::default(),
            sinks,
            observer,
        });
        let stopping = Arc::new(Stopping::default());
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let mut queues = Vec::new();
        let mut webhook_tasks = Vec::new();
        for webhook in webhooks {
            let (queue, events) = mpsc::channel(QUEUE_CAPACITY);
            queues.push((webhook.sink.clone(), queue));
            webhook_tasks.push(tokio::spawn(deliver(
                client.clone(),
                webhook,
                events,
                counts.clone(),
                stopping.clone(),
            )));
        }
        let dispatcher = tokio::spawn(dispatch(rx, log, queues, counts.clone(), stopping.clone()));
        Ok((
            Notifier {
                queue: Some((tx, counts.clone())),
            },
            Some(Delivery {
                counts,
                stopping,
                dispatcher,
                webhooks: webhook_tasks,
            }),
        ))
    }

    /// Queues `event`; never waits. When the queue is full the event is dropped and counted.
    pub fn send(&self, event: Event) {
        let Some((queue, counts)) = &self.queue else {
            return;
        };
        // Counted before it can be taken, so that the dispatcher's decrement never comes first.
        counts.queued.fetch_add(1, Ordering::Relaxed);
        match queue.try_send(event) {
            Ok(()) => {
                if let Some(dropped) = counts.burst.accepted() {
                    warn!(
                        dropped,
                        "the notification queue accepts events again; {dropped} were dropped"
                    );
                }
            }
            Err(error) => {
                counts.queued.fetch_sub(1, Ordering::Relaxed);
                if counts.burst.dropped() {
                    let why = match error {
                        TrySendError::Full(_) => "the notification queue is full",
                        TrySendError::Closed(_) => "notifications have stopped",
                    };
                    warn!(
                        "{why}; dropping events until it accepts them again (counted in swarm_operator_notifications_dropped_total)"
                    );
                }
                for sink in &counts.sinks {
                    counts.count(sink, DeliveryOutcome::Dropped, 1);
                }
            }
        }
    }
}

/// Shutdown as the delivery tasks see it: once `token` is cancelled nothing waits for a retry
/// delay, and each event gets one more attempt, bounded by `deadline`.
#[derive(Debug, Default)]
struct Stopping {
    token: CancellationToken,
    deadline: OnceLock<Instant>,
}

impl Stopping {
    fn is_stopping(&self) -> bool {
        self.token.is_cancelled()
    }

    /// How long a POST may take now: the rest of the grace period once stopping.
    fn request_timeout(&self) -> Duration {
        self.deadline.get().map_or(REQUEST_TIMEOUT, |deadline| {
            deadline
                .saturating_duration_since(Instant::now())
                .min(REQUEST_TIMEOUT)
        })
    }
}

/// The running delivery tasks.
pub struct Delivery {
    counts: Arc<Counts>,
    stopping: Arc<Stopping>,
    dispatcher: JoinHandle<()>,
    webhooks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("webhooks", &self.webhooks.len())
            .finish_non_exhaustive()
    }
}

/// What shutdown could not deliver.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Events left undelivered, per sink that had any.
    pub undelivered: BTreeMap<String, u64>,
}

impl Delivery {
    /// Stops within `grace`: every event still queued is written to the events log and POSTed
    /// once more to each webhook (a delivery waiting for its retry delay is tried at once);
    /// what could not be delivered is counted as failed, logged, and returned. Events sent
    /// from now on are dropped.
    pub async fn drain(self, grace: Duration) -> DrainReport {
        let deadline = Instant::now() + grace;
        let _ = self.stopping.deadline.set(deadline);
        self.stopping.token.cancel();
        let mut tasks: Vec<JoinHandle<()>> = std::iter::once(self.dispatcher)
            .chain(self.webhooks)
            .collect();
        let finished =
            tokio::time::timeout_at(deadline, futures_util::future::join_all(tasks.iter_mut()))
                .await;
        if finished.is_err() {
            tasks.iter().for_each(JoinHandle::abort);
        }
        let counts = &self.counts;
        let queued = counts.queued.load(Ordering::Relaxed);
        let mut report = DrainReport::default();
        for sink in &counts.sinks {
            let left = queued + sink.pending.load(Ordering::Relaxed);
            if left > 0 {
                counts.count(sink, DeliveryOutcome::Failed, left);
                report.undelivered.insert(sink.name.clone(), left);
            }
        }
        if report.undelivered.is_empty() {
            info!("notifications stopped; every queued event was delivered");
        } else {
            let total: u64 = report.undelivered.values().sum();
            warn!(per_sink = ?report.undelivered, ?grace,
                  "notifications stopped; {total} event(s) left undelivered");
        }
        report
    }
}

/// The events log as a sink.
struct LogSink {
    log: events_log::EventsLog,
    sink: Arc<Sink>,
}

impl LogSink {
    async fn append(&mut self, event: &Event, counts: &Counts) {
        let mut line = serde_json::to_vec(event).expect("events serialize");
        line.push(b'\n');
        match self.log.append(&line).await {
            Ok(()) => counts.count(&self.sink, DeliveryOutcome::Delivered, 1),
            Err(error) => {
                warn!(%error, "appending to the events log failed");
                counts.count(&self.sink, DeliveryOutcome::Failed, 1);
            }
        }
    }
}

/// One webhook.
struct Webhook {
    sink: Arc<Sink>,
    /// Logs show `url.public` (scheme, host, port), never the whole URL.
    url: receivers::ReceiverUrl,
    format: PayloadFormat,
}

/// The roots https webhooks are verified against: the system's, or those of `SSL_CERT_FILE` /
/// `SSL_CERT_DIR` when set (rustls-native-certs reads them, as OpenSSL does). What could not
/// be loaded is logged; no roots at all is logged as the reason every https delivery will fail.
fn system_roots() -> rustls::RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        warn!(%error, "a TLS root certificate store could not be read");
    }
    let mut roots = rustls::RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    if ignored > 0 {
        warn!(
            ignored,
            "TLS root certificates rustls can not use were skipped"
        );
    }
    if roots.is_empty() {
        warn!(
            "no TLS root certificates were found (system store, SSL_CERT_FILE, SSL_CERT_DIR): \
             every https webhook will fail certificate verification"
        );
    } else {
        info!(
            roots = added,
            "TLS root certificates loaded for https webhooks"
        );
    }
    roots
}

/// A client for http and https URLs: rustls with the ring provider (the project's one TLS
/// stack), verifying against `roots`; HTTP/1.1 only (every webhook receiver speaks it).
fn http_client(roots: rustls::RootCertStore) -> Result<HttpClient, NotifyError> {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(NotifyError::Tls)?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// Writes each event to the log and hands it to every webhook's queue. When stopping, takes
/// what is queued, then ends (which ends the webhooks' queues too).
async fn dispatch(
    mut events: mpsc::Receiver<Event>,
    mut log: Option<LogSink>,
    webhooks: Vec<(Arc<Sink>, mpsc::Sender<Event>)>,
    counts: Arc<Counts>,
    stopping: Arc<Stopping>,
) {
    let mut closed = false;
    loop {
        let next = tokio::select! {
            event = events.recv() => event,
            () = stopping.token.cancelled(), if !closed => {
                // Queued events are still received; new sends fail at once.
                events.close();
                closed = true;
                continue;
            }
        };
        let Some(event) = next else { return };
        if let Some(log) = &mut log {
            log.append(&event, &counts).await;
        }
        for (sink, queue) in &webhooks {
            sink.pending.fetch_add(1, Ordering::Relaxed);
            if queue.try_send(event.clone()).is_ok() {
                if let Some(dropped) = sink.burst.accepted() {
                    warn!(sink = %sink.name, dropped,
                          "the webhook's queue accepts events again; {dropped} were dropped");
                }
            } else {
                sink.pending.fetch_sub(1, Ordering::Relaxed);
                if sink.burst.dropped() {
                    warn!(sink = %sink.name,
                          "the webhook's queue is full (the receiver is slow or down); dropping \
                           its events until it catches up (counted in \
                           swarm_operator_notifications_dropped_total)");
                }
                counts.count(sink, DeliveryOutcome::Dropped, 1);
            }
        }
        counts.queued.fetch_sub(1, Ordering::Relaxed);
    }
}

/// POSTs the events of one webhook in order, each until it is accepted (2xx), the receiver
/// refuses it for good (3xx, 4xx other than 408/429), or the attempts run out; when stopping,
/// each gets one more attempt and what fails is left pending (for [`Delivery::drain`] to
/// count). That the receiver starts failing is logged once (with why), and again once it
/// accepts events again; single attempts are logged at debug level.
async fn deliver(
    client: HttpClient,
    webhook: Webhook,
    mut events: mpsc::Receiver<Event>,
    counts: Arc<Counts>,
    stopping: Arc<Stopping>,
) {
    let mut failing = false;
    while let Some(event) = events.recv().await {
        if let Some(outcome) = deliver_one(&client, &webhook, &event, &stopping, &mut failing).await
        {
            webhook.sink.pending.fetch_sub(1, Ordering::Relaxed);
            counts.count(&webhook.sink, outcome, 1);
        }
    }
}

/// What a receiver's answer means for a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// 2xx.
    Accepted,
    /// 3xx (a redirect is not followed: a moved webhook is a configuration to fix, and
    /// following would send events wherever an answer points), and 4xx other than 408 and
    /// 429: the same request would be refused again.
    Refused,
    /// 5xx, 408, 429 (and 1xx): worth another attempt.
    Retry,
}

fn verdict(status: StatusCode) -> Verdict {
    if status.is_success() {
        Verdict::Accepted
    } else if status.is_redirection()
        || (status.is_client_error()
            && status != StatusCode::REQUEST_TIMEOUT
            && status != StatusCode::TOO_MANY_REQUESTS)
    {
        Verdict::Refused
    } else {
        Verdict::Retry
    }
}

/// Delivers one event; `None` when it is still undelivered at shutdown.
async fn deliver_one(
    client: &HttpClient,
    webhook: &Webhook,
    event: &Event,
    stopping: &Stopping,
    failing: &mut bool,
) -> Option<DeliveryOutcome> {
    let (sink, receiver) = (&webhook.sink.name, &webhook.url.public);
    let body = webhook.format.body(event);
    let mut delays = retry_delays();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let last_chance = stopping.is_stopping();
        let outcome = post(client, webhook, body.clone(), stopping.request_timeout()).await;
        let (why, retry_after) = match outcome {
            Ok(answer) => match verdict(answer.status) {
                Verdict::Accepted => {
                    if std::mem::take(failing) {
                        info!(%sink, %receiver, "the webhook accepts notifications again");
                    }
                    debug!(%sink, %receiver, kind = event.kind.as_str(), object = %event.object,
                           attempt, "notification delivered");
                    return Some(DeliveryOutcome::Delivered);
                }
                Verdict::Refused => {
                    let status = answer.status;
                    if status.is_redirection() {
                        warn!(%sink, %receiver, %status, object = %event.object,
                              "the webhook refused the notification with a redirect, which is \
                               not followed (fix the URL); not retrying it");
                    } else {
                        warn!(%sink, %receiver, %status, object = %event.object,
                              "the webhook refused the notification; not retrying it");
                    }
                    return Some(DeliveryOutcome::Failed);
                }
                Verdict::Retry => (answer.status.to_string(), answer.retry_after),
            },
            Err(error) => (error, None),
        };
        if last_chance {
            debug!(%sink, %receiver, %why, object = %event.object,
                   "notification not delivered before shutdown");
            return None;
        }
        let Some(delay) = delays.next() else {
            warn!(%sink, %receiver, %why, object = %event.object, attempts = attempt,
                  "giving up on a notification");
            return Some(DeliveryOutcome::Failed);
        };
        // The receiver's own wish (429), within bounds, else the backoff.
        let wait = retry_after.map_or(delay, |after| after.clamp(delay, RETRY_AFTER_MAX));
        if std::mem::replace(failing, true) {
            debug!(%sink, %receiver, %why, retry_in = ?wait, "notification not delivered; retrying");
        } else {
            warn!(%sink, %receiver, %why, retry_in = ?wait,
                  "the webhook does not accept notifications; retrying with backoff");
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            // Shutdown does not wait for the delay: the last attempt is made now.
            () = stopping.token.cancelled() => {}
        }
    }
}

/// The delays between the attempts of one delivery: [`RETRY_MIN`] doubling to [`RETRY_MAX`],
/// one fewer than [`MAX_ATTEMPTS`], then none (give up). A 429's `Retry-After` replaces a
/// delay but does not slow the doubling down. No jitter: one webhook's events go out one at a
/// time, so there is no herd of retries to spread, and the README promises this schedule.
fn retry_delays() -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(RETRY_MIN)
        .with_max_delay(RETRY_MAX)
        .with_factor(2.0)
        .with_max_times(MAX_ATTEMPTS - 1)
        .build()
}

/// A receiver's answer.
struct Answer {
    status: StatusCode,
    /// `Retry-After` in seconds (the HTTP-date form is not worth a date parser here).
    retry_after: Option<Duration>,
}

/// One POST within `timeout` (connect, TLS handshake and the answer's head). An error names
/// what failed with every cause (`…: invalid peer certificate: UnknownIssuer`), never the URL.
async fn post(
    client: &HttpClient,
    webhook: &Webhook,
    body: Bytes,
    timeout: Duration,
) -> Result<Answer, String> {
    let request = Request::builder()
        .method(Method::POST)
        .uri(webhook.url.uri.clone())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .map_err(|e| webhook.url.scrub(&e.to_string()))?;
    match tokio::time::timeout(timeout, client.request(request)).await {
        Ok(Ok(response)) => Ok(Answer {
            status: response.status(),
            retry_after: response
                .headers()
                .get(hyper::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()?.trim().parse().ok())
                .map(Duration::from_secs),
        }),
        Ok(Err(error)) => Err(webhook.url.scrub(&error_chain(&error))),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

/// `error` and its causes, `: `-separated, each said once (an io::Error shows its inner error
/// and then hands out the inner error's own cause).
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut last = text.clone();
    let mut cause = error.source();
    while let Some(error) = cause {
        let part = error.to_string();
        if part != last && !last.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        last = part;
        cause = error.source();
    }
    text
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
                        &*ready.message,
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
                    &*degraded.message,
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

fn condition(
    service: &ServiceStatus,
    kind: ConditionType,
) -> Option<&crate::report::status::Condition> {
    service.conditions.iter().find(|c| c.kind == kind)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use axum::extract::State;
    use axum::routing::post;
    use serde_json::Value;

    use super::*;
    use crate::report::metrics::Metrics;
    use crate::report::status::{Condition, StatusSpecError};

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

    /// The value of `swarm_operator_notifications_<outcome>_total{sink="<sink>"}`.
    fn counted(metrics: &Metrics, outcome: &str, sink: &str) -> u64 {
        let series = format!("swarm_operator_notifications_{outcome}_total{{sink=\"{sink}\"}} ");
        let text = metrics.encode();
        let line = text
            .lines()
            .find(|l| l.starts_with(&series))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"));
        line[series.len()..].parse().unwrap()
    }

    /// A port nothing listens on (bound, then closed): connections are refused.
    /// A notifier POSTing to `urls` and appending to an events log in a fresh directory.
    struct Started {
        notifier: Notifier,
        /// `None` without sinks; the tests always give some.
        delivery: Option<Delivery>,
        metrics: Arc<Metrics>,
        log: std::path::PathBuf,
        /// Removed when the test ends.
        _dir: tempfile::TempDir,
    }

    async fn start_with(urls: Vec<String>) -> Started {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("events.jsonl");
        let metrics = Arc::new(Metrics::new());
        let (notifier, delivery) = Notifier::start(
            NotifyConfig {
                urls,
                events_log: Some(log.clone()),
                ..NotifyConfig::default()
            },
            metrics.clone(),
        )
        .await
        .unwrap();
        Started {
            notifier,
            delivery,
            metrics,
            log,
            _dir: dir,
        }
    }

    fn closed_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    fn read_log(path: &std::path::Path) -> Vec<Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
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
        // Connections are refused until the receiver starts.
        let port = closed_port();
        let Started {
            notifier,
            metrics,
            log,
            delivery: _delivery,
            _dir,
        } = start_with(vec![format!("http://127.0.0.1:{port}/hook")]).await;
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
            "swarm-operator: service/s0 pruned (SpecRemoved): its spec is gone"
        );
        assert!(got[0]["time"].as_str().unwrap().ends_with('Z'));
        assert_eq!(counted(&metrics, "delivered", "webhook-1"), 3);
        assert_eq!(counted(&metrics, "delivered", EVENTS_LOG_SINK), 3);
        assert_eq!(counted(&metrics, "dropped", "webhook-1"), 0);
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
    async fn shutdown_delivers_what_waits_for_a_retry_exactly_once() {
        let port = closed_port();
        let Started {
            notifier,
            delivery,
            metrics,
            log,
            _dir,
        } = start_with(vec![format!("http://127.0.0.1:{port}/hook")]).await;
        notifier.send(event(0));
        notifier.send(event(1));
        // Refused at 0, 0.5 and 1.5 s: event 0 now waits 2 s for its next attempt.
        tokio::time::sleep(Duration::from_millis(1700)).await;
        let received = Received::default();
        receiver(
            std::net::TcpListener::bind(("127.0.0.1", port)).unwrap(),
            received.clone(),
            0,
        );
        // Still in the dispatcher's queue when shutdown starts.
        notifier.send(event(2));
        let started = tokio::time::Instant::now();
        let report = delivery.unwrap().drain(SHUTDOWN_GRACE).await;
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "the retry delay is not waited for: {:?}",
            started.elapsed()
        );
        assert_eq!(report, DrainReport::default(), "nothing left undelivered");
        let objects = |events: &[Value]| -> Vec<String> {
            events
                .iter()
                .map(|e| e["object"].as_str().unwrap().to_owned())
                .collect()
        };
        let expected = ["service/s0", "service/s1", "service/s2"];
        assert_eq!(objects(&received.lock().unwrap()), expected);
        assert_eq!(objects(&read_log(&log)), expected);
        // Sent after shutdown: dropped and counted, not delivered.
        notifier.send(event(3));
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(
            objects(&received.lock().unwrap()),
            expected,
            "each event arrived exactly once"
        );
        assert_eq!(counted(&metrics, "delivered", "webhook-1"), 3);
        assert_eq!(counted(&metrics, "dropped", "webhook-1"), 1);
        assert_eq!(counted(&metrics, "failed", "webhook-1"), 0);
    }

    #[tokio::test]
    async fn shutdown_keeps_to_its_grace_and_counts_what_a_dead_receiver_never_got() {
        // One receiver refuses connections; one accepts them and never answers.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let Started {
            notifier,
            delivery,
            metrics,
            log,
            _dir,
        } = start_with(vec![
            format!("http://127.0.0.1:{}/hook", closed_port()),
            format!("http://{}/hook", silent.local_addr().unwrap()),
        ])
        .await;
        for i in 0..3 {
            notifier.send(event(i));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let grace = Duration::from_millis(400);
        let started = tokio::time::Instant::now();
        let report = delivery.unwrap().drain(grace).await;
        let took = started.elapsed();
        assert!(took >= grace && took < grace * 3, "took {took:?}");
        assert_eq!(
            report.undelivered,
            BTreeMap::from([("webhook-1".to_owned(), 3), ("webhook-2".to_owned(), 3)])
        );
        assert_eq!(read_log(&log).len(), 3, "the events log has every event");
        for sink in ["webhook-1", "webhook-2"] {
            assert_eq!(counted(&metrics, "failed", sink), 3, "{sink}");
            assert_eq!(counted(&metrics, "delivered", sink), 0, "{sink}");
        }
        drop(silent);
    }

    /// Log lines written on this thread, for tests on a current-thread runtime.
    fn capture_logs() -> (Arc<Mutex<Vec<u8>>>, tracing::subscriber::DefaultGuard) {
        #[derive(Clone)]
        struct Lines(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines(Arc::default());
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .with_writer(move || writer.clone())
            .finish();
        (lines.0, tracing::subscriber::set_default(subscriber))
    }

    /// Polls (generously: this machine may be loaded) until `counted(outcome, sink)` is
    /// `expected`.
    async fn wait_until_counted(metrics: &Metrics, outcome: &str, sink: &str, expected: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while counted(metrics, outcome, sink) != expected {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{outcome} {sink}: {} rather than {expected}",
                counted(metrics, outcome, sink)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn full_queues_drop_without_blocking_count_per_sink_and_warn_once_per_burst() {
        let (logs, _guard) = capture_logs();
        // Accepts connections and never answers.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let Started {
            notifier,
            metrics,
            delivery: _delivery,
            _dir,
            ..
        } = start_with(vec![format!(
            "http://{}/hook",
            silent.local_addr().unwrap()
        )])
        .await;
        // Burst 1: the dispatcher's queue fills (nothing runs between these sends), so every
        // sink loses the rest. Every send returns at once.
        for i in 0..3 * QUEUE_CAPACITY {
            notifier.send(event(i));
        }
        let lost = 2 * QUEUE_CAPACITY as u64;
        assert_eq!(counted(&metrics, "dropped", EVENTS_LOG_SINK), lost);
        assert_eq!(counted(&metrics, "dropped", "webhook-1"), lost);
        // The log gets what was queued (the dispatcher hands each event to the webhook's queue
        // right after logging it); the webhook takes the first into a POST that hangs. Both
        // are waited for, not assumed after a fixed time: on a loaded machine 1024 appends to
        // the log can take longer than any such guess, and burst 2 would then find the
        // dispatcher's queue still full.
        wait_until_counted(
            &metrics,
            "delivered",
            EVENTS_LOG_SINK,
            QUEUE_CAPACITY as u64,
        )
        .await;
        let (_hanging, _) = tokio::time::timeout(Duration::from_secs(60), silent.accept())
            .await
            .expect("the webhook POSTs its first event")
            .unwrap();
        // Burst 2: the dispatcher's queue has room again; the webhook's queue has room for one
        // (the event in the POST) and drops the rest.
        for i in 0..QUEUE_CAPACITY {
            notifier.send(event(i));
        }
        wait_until_counted(
            &metrics,
            "delivered",
            EVENTS_LOG_SINK,
            2 * QUEUE_CAPACITY as u64,
        )
        .await;
        assert_eq!(counted(&metrics, "dropped", EVENTS_LOG_SINK), lost);
        assert_eq!(
            counted(&metrics, "dropped", "webhook-1") - lost,
            QUEUE_CAPACITY as u64 - 1,
            "the webhook's own queue dropped all but one of burst 2"
        );
        let logs = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
        let count = |needle: &str| logs.lines().filter(|l| l.contains(needle)).count();
        assert_eq!(count("the notification queue is full"), 1, "{logs}");
        assert_eq!(
            count(&format!("accepts events again; {lost} were dropped")),
            1,
            "{logs}"
        );
        assert_eq!(count("the webhook's queue is full"), 1, "{logs}");
        // If the machine is slow enough for the hanging POST to reach its own timeout, the
        // retry is logged too; that is not a burst edge, so it is left out of this count.
        let queue_lines = logs
            .lines()
            .filter(|l| !l.contains("the webhook does not accept notifications"))
            .count();
        assert_eq!(queue_lines, 3, "one line per burst edge:\n{logs}");
    }

    #[test]
    fn a_delivery_retries_on_the_documented_schedule_then_gives_up() {
        let delays: Vec<Duration> = retry_delays().collect();
        assert_eq!(
            delays.len(),
            MAX_ATTEMPTS - 1,
            "one delay between two attempts"
        );
        let ms = Duration::from_millis;
        assert_eq!(
            delays[..7],
            [
                ms(500),
                ms(1000),
                ms(2000),
                ms(4000),
                ms(8000),
                ms(16_000),
                RETRY_MAX
            ],
            "500 ms doubling, capped at 30 s"
        );
        assert!(delays[7..].iter().all(|d| *d == RETRY_MAX), "{delays:?}");
        let total: Duration = delays.iter().sum();
        assert!(
            (Duration::from_secs(9 * 60)..=Duration::from_secs(10 * 60)).contains(&total),
            "about 10 minutes before giving up: {total:?}"
        );
    }

    #[test]
    fn debug_never_shows_a_webhook_token() {
        let config = NotifyConfig {
            urls: vec!["http://127.0.0.1:9/hooks/tok3n".into()],
            ..NotifyConfig::default()
        };
        let text = format!("{config:?}");
        assert!(!text.contains("tok3n"), "{text}");
        assert!(text.contains("urls: 1"), "{text}");
    }

    #[tokio::test]
    async fn a_bad_url_stops_the_start_and_is_named_by_place_not_quoted() {
        for (url, why) in [
            ("ftp://hooks.example/T0KEN", "only http:// and https://"),
            ("127.0.0.1:9/T0KEN", "not a URL"),
            ("/just/a/T0KEN", "no scheme"),
        ] {
            let error = Notifier::start(
                NotifyConfig {
                    urls: vec!["https://fine.example/x".into(), url.into()],
                    ..NotifyConfig::default()
                },
                Arc::new(Metrics::new()),
            )
            .await
            .unwrap_err()
            .to_string();
            assert!(error.starts_with("--notify URL 2: "), "{error}");
            assert!(error.contains(why), "{error}");
            assert!(!error.contains("T0KEN"), "{error}");
        }
    }

    /// Serves `POST /hook/T0KEN` answering `status` (with `Location` pointing elsewhere),
    /// counting the requests.
    fn answering(status: StatusCode) -> (String, Arc<AtomicU64>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook/T0KEN", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let requests = Arc::new(AtomicU64::new(0));
        let app = axum::Router::new()
            .route(
                "/hook/T0KEN",
                post(move |State(requests): State<Arc<AtomicU64>>| async move {
                    requests.fetch_add(1, Ordering::SeqCst);
                    (status, [("location", "http://127.0.0.1:9/moved/T0KEN")])
                }),
            )
            .with_state(requests.clone());
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, requests)
    }

    #[tokio::test]
    async fn a_redirect_or_a_client_error_fails_at_the_first_answer_logged_once_per_event() {
        let (logs, _guard) = capture_logs();
        for (status, sent) in [(StatusCode::FOUND, 2), (StatusCode::NOT_FOUND, 1)] {
            let (url, requests) = answering(status);
            let Started {
                notifier,
                metrics,
                delivery,
                _dir,
                ..
            } = start_with(vec![url]).await;
            for i in 0..sent {
                notifier.send(event(i));
            }
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while counted(&metrics, "failed", "webhook-1") < sent as u64 {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{status}: not failed yet"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // A retry would come after 500 ms: wait past it.
            tokio::time::sleep(Duration::from_millis(1200)).await;
            assert_eq!(
                requests.load(Ordering::SeqCst),
                sent as u64,
                "{status}: one attempt each"
            );
            assert_eq!(counted(&metrics, "failed", "webhook-1"), sent as u64);
            assert_eq!(counted(&metrics, "delivered", "webhook-1"), 0);
            assert_eq!(
                delivery.unwrap().drain(SHUTDOWN_GRACE).await,
                DrainReport::default()
            );
        }
        let logs = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
        let refused: Vec<&str> = logs.lines().filter(|l| l.contains("refused")).collect();
        assert_eq!(refused.len(), 3, "one line per event:\n{logs}");
        assert!(
            refused[0].contains("302 Found") && refused[0].contains("webhook-1"),
            "{logs}"
        );
        assert!(refused[0].contains("receiver=http://127.0.0.1:"), "{logs}");
        assert!(refused[2].contains("404 Not Found"), "{logs}");
        assert!(!logs.contains("T0KEN"), "{logs}");
    }

    #[tokio::test]
    async fn a_too_many_requests_answer_is_retried_after_the_time_it_asks_for() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let times = Arc::new(Mutex::new(Vec::<tokio::time::Instant>::new()));
        let app = axum::Router::new()
            .route(
                "/hook",
                post(
                    |State(times): State<Arc<Mutex<Vec<tokio::time::Instant>>>>| async move {
                        let mut times = times.lock().unwrap();
                        times.push(tokio::time::Instant::now());
                        if times.len() == 1 {
                            (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "2")])
                        } else {
                            (StatusCode::OK, [("retry-after", "0")])
                        }
                    },
                ),
            )
            .with_state(times.clone());
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let Started {
            notifier, metrics, ..
        } = start_with(vec![url]).await;
        notifier.send(event(0));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while counted(&metrics, "delivered", "webhook-1") < 1 {
            assert!(tokio::time::Instant::now() < deadline, "not delivered");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let times = times.lock().unwrap();
        assert_eq!(times.len(), 2);
        // The backoff alone would have retried after 500 ms.
        assert!(
            times[1] - times[0] >= Duration::from_secs(2),
            "{:?}",
            times[1] - times[0]
        );
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
            schedule: None,
            stack: None,
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
            source: None,
            warnings: vec![],
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
    fn an_event_names_the_commit_it_happened_at() {
        let revision =
            crate::revision::Revision::parse(&format!("3f2a9c1{}", "0".repeat(33))).unwrap();
        let event = Event::new(
            EventKind::RolloutSucceeded,
            "service/web",
            "RolloutComplete",
            "1/1 running",
            None,
        );
        let plain = serde_json::to_value(&event).unwrap();
        assert!(plain.get("revision").is_none(), "{plain}");
        let event = event.at(Some(&revision));
        assert!(
            event
                .text
                .ends_with("rolloutSucceeded (RolloutComplete): 1/1 running at 3f2a9c1"),
            "{}",
            event.text
        );
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["revision"], revision.as_str());
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
