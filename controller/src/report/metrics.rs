//! Prometheus metrics and the routes serving them with `/healthz` and `/readyz` (served by
//! [`crate::web`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::control::plan::{ObjectKey, ObjectKind};
use crate::control::world::World;
use crate::docker::{Op, RequestObserver, RequestOutcome};
use crate::election::Leadership;
use crate::report::notify::{DeliveryOutcome, NotifyObserver};
use crate::runtime::{Outcome, RunnerObserver};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReconcileLabels {
    kind: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    op: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabels {
    sink: String,
}

fn kind_label(kind: ObjectKind) -> &'static str {
    kind.as_str()
}

/// The operator's metrics.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ReconcileLabels, Counter>,
    reconcile_duration: Family<KindLabels, Histogram>,
    queue_depth: Gauge,
    managed_objects: Family<KindLabels, Gauge>,
    drift_corrections: Counter,
    spec_errors: Gauge,
    docker_requests: Family<RequestLabels, Counter>,
    status_write_failures: Counter,
    /// The last status write's error, `None` after a success: shown on `/readyz`.
    status_write_error: Mutex<Option<String>>,
    /// The last request the engine did not answer (unreachable or past its deadline), `None`
    /// once a later one got an answer: shown on `/readyz`, so that a hung engine is noticed.
    engine_unanswered: Mutex<Option<(Op, RequestOutcome)>>,
    leader: Gauge,
    skipped_as_follower: Counter,
    notifications_delivered: Family<SinkLabels, Counter>,
    notifications_failed: Family<SinkLabels, Counter>,
    notifications_dropped: Family<SinkLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `swarm_operator` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("swarm_operator");
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles by object kind and result",
            reconciles.clone(),
        );
        let reconcile_duration = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile took",
            reconcile_duration.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Objects waiting to be reconciled",
            queue_depth.clone(),
        );
        let managed_objects = Family::<KindLabels, Gauge>::default();
        registry.register(
            "managed_objects",
            "Objects carrying the operator's label",
            managed_objects.clone(),
        );
        let drift_corrections = Counter::default();
        registry.register(
            "drift_corrections",
            "Services rewritten because they were changed behind the operator's back",
            drift_corrections.clone(),
        );
        let spec_errors = Gauge::default();
        registry.register(
            "spec_errors",
            "Problems in the spec directory",
            spec_errors.clone(),
        );
        let docker_requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "docker_requests",
            "Docker Engine API requests the operator made, by op and outcome (writes are raft \
             proposals on the managers)",
            docker_requests.clone(),
        );
        let status_write_failures = Counter::default();
        registry.register(
            "status_write_failures",
            "Failed writes of the status file (each is retried with backoff)",
            status_write_failures.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica leads (reconciles and writes), 0 on a standby replica",
            leader.clone(),
        );
        let skipped_as_follower = Counter::default();
        registry.register(
            "reconciles_skipped_as_follower",
            "Reconciles that wrote nothing because this replica did not lead",
            skipped_as_follower.clone(),
        );
        let notifications_delivered = Family::<SinkLabels, Counter>::default();
        registry.register(
            "notifications_delivered",
            "Events accepted by a webhook (sink webhook-N, the N-th URL of --notify, then of \
             --notify-file) or appended to the events log (sink events-log)",
            notifications_delivered.clone(),
        );
        let notifications_failed = Family::<SinkLabels, Counter>::default();
        registry.register(
            "notifications_failed",
            "Events a sink refused, given up after the retries, or left undelivered at shutdown",
            notifications_failed.clone(),
        );
        let notifications_dropped = Family::<SinkLabels, Counter>::default();
        registry.register(
            "notifications_dropped",
            "Events never queued for a sink because its bounded queue was full",
            notifications_dropped.clone(),
        );
        Metrics {
            notifications_delivered,
            notifications_failed,
            notifications_dropped,
            docker_requests,
            status_write_failures,
            status_write_error: Mutex::new(None),
            engine_unanswered: Mutex::new(None),
            leader,
            skipped_as_follower,
            registry,
            reconciles,
            reconcile_duration,
            queue_depth,
            managed_objects,
            drift_corrections,
            spec_errors,
        }
    }

    /// Counts one drift correction.
    pub fn drift_corrected(&self) {
        self.drift_corrections.inc();
    }

    /// A status write failed.
    pub fn status_write_failed(&self, error: &dyn std::fmt::Display) {
        self.status_write_failures.inc();
        *self
            .status_write_error
            .lock()
            .expect("metrics lock poisoned") = Some(error.to_string());
    }

    /// A status write succeeded.
    pub fn status_write_succeeded(&self) {
        *self
            .status_write_error
            .lock()
            .expect("metrics lock poisoned") = None;
    }

    /// Why the last status write failed, if it did.
    pub fn status_write_error(&self) -> Option<String> {
        self.status_write_error
            .lock()
            .expect("metrics lock poisoned")
            .clone()
    }

    /// The last engine request that got no answer, while no later one got an answer.
    pub fn engine_unanswered(&self) -> Option<(Op, RequestOutcome)> {
        *self
            .engine_unanswered
            .lock()
            .expect("metrics lock poisoned")
    }

    /// Total drift corrections so far.
    pub fn drift_corrections(&self) -> u64 {
        self.drift_corrections.get()
    }

    /// Counts a reconcile a standby replica skipped.
    pub fn reconcile_skipped_as_follower(&self) {
        self.skipped_as_follower.inc();
    }

    /// Updates the gauges derived from the world (managed objects, spec errors).
    pub fn observe_world(&self, world: &World) {
        let state = world.snapshot();
        let services = state
            .observed
            .services
            .values()
            .filter(|s| s.ownership.is_owned_by(&state.desired.instance))
            .count();
        let networks = state
            .observed
            .networks
            .values()
            .filter(|n| n.ownership.is_owned_by(&state.desired.instance))
            .count();
        self.managed_objects
            .get_or_create(&KindLabels { kind: "service" })
            .set(services as i64);
        self.managed_objects
            .get_or_create(&KindLabels { kind: "network" })
            .set(networks as i64);
        self.spec_errors.set(state.desired.errors.len() as i64);
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("encoding metrics into a String");
        out
    }
}

impl RequestObserver for Metrics {
    fn on_request(&self, op: Op, outcome: RequestOutcome) {
        self.docker_requests
            .get_or_create(&RequestLabels {
                op: op.as_str(),
                outcome: outcome.as_str(),
            })
            .inc();
        let mut unanswered = self
            .engine_unanswered
            .lock()
            .expect("metrics lock poisoned");
        *unanswered = (!outcome.engine_answered()).then_some((op, outcome));
    }
}

impl NotifyObserver for Metrics {
    fn on_notifications(&self, sink: &str, outcome: DeliveryOutcome, count: u64) {
        let family = match outcome {
            DeliveryOutcome::Delivered => &self.notifications_delivered,
            DeliveryOutcome::Failed => &self.notifications_failed,
            DeliveryOutcome::Dropped => &self.notifications_dropped,
        };
        family
            .get_or_create(&SinkLabels {
                sink: sink.to_owned(),
            })
            .inc_by(count);
    }
}

impl RunnerObserver<ObjectKey> for Metrics {
    fn on_reconcile_done(&self, key: &ObjectKey, outcome: Outcome, duration: Duration) {
        let kind = kind_label(key.kind);
        self.reconciles
            .get_or_create(&ReconcileLabels {
                kind,
                result: outcome.as_str(),
            })
            .inc();
        self.reconcile_duration
            .get_or_create(&KindLabels { kind })
            .observe(duration.as_secs_f64());
    }

    fn on_reconcile_error(
        &self,
        key: &ObjectKey,
        error: &(dyn std::error::Error + 'static),
        retry_in: Duration,
    ) {
        tracing::warn!(%key, %error, retry_in = ?retry_in, "reconcile failed; will retry");
    }

    fn on_queue_depth(&self, depth: usize) {
        self.queue_depth.set(depth as i64);
    }
}

#[derive(Clone)]
struct ServerState {
    metrics: Arc<Metrics>,
    world: World,
    leadership: Leadership,
}

/// The router serving `/metrics`, `/healthz` and `/readyz`.
pub fn router(metrics: Arc<Metrics>, world: World, leadership: Leadership) -> Router {
    Router::new()
        .route("/metrics", get(serve_metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(ServerState {
            metrics,
            world,
            leadership,
        })
}

async fn serve_metrics(State(state): State<ServerState>) -> impl IntoResponse {
    state.metrics.observe_world(&state.world);
    state
        .metrics
        .leader
        .set(i64::from(state.leadership.is_leader()));
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

async fn ready(State(state): State<ServerState>) -> impl IntoResponse {
    if !state.leadership.is_leader() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: standby replica, another one leads".to_owned(),
        );
    }
    if !state.world.is_ready() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: specs or swarm not read yet".to_owned(),
        );
    }
    if let Some((op, outcome)) = state.metrics.engine_unanswered() {
        // Names the request only: the transport's own message may quote the endpoint.
        let why = match outcome {
            RequestOutcome::Timeout => "did not answer within its deadline",
            _ => "could not be reached",
        };
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: the Docker engine {why} ({op}); retrying"),
        );
    }
    match state.metrics.status_write_error() {
        None => (StatusCode::OK, "ready".to_owned()),
        // /readyz is open to anyone who reaches the port: it says what is wrong, not where
        // (the path and the OS error are in the log and on the protected page).
        Some(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the status file can not be written; retrying".to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unanswered_request_counts_until_the_engine_answers_again() {
        let metrics = Metrics::new();
        assert_eq!(metrics.engine_unanswered(), None);
        metrics.on_request(Op::ListTasks, RequestOutcome::Timeout);
        assert_eq!(
            metrics.engine_unanswered(),
            Some((Op::ListTasks, RequestOutcome::Timeout))
        );
        // An error of the engine's own is an answer: the engine is up.
        metrics.on_request(Op::InspectService, RequestOutcome::NotFound);
        assert_eq!(metrics.engine_unanswered(), None);
        metrics.on_request(Op::Info, RequestOutcome::Transport);
        assert_eq!(
            metrics.engine_unanswered(),
            Some((Op::Info, RequestOutcome::Transport))
        );
        metrics.on_request(Op::ListTasks, RequestOutcome::Ok);
        assert_eq!(metrics.engine_unanswered(), None);
        assert!(metrics.encode().contains("outcome=\"timeout\""));
    }
}
