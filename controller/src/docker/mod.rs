//! The Docker adapter: what the operator reads from and writes to a swarm, behind a trait.
//!
//! Everything above this module speaks in [`crate::desired::definition`] types and the `Observed*` types
//! below; only [`engine`] knows about bollard. Tests of the reconciler can substitute the trait.

pub mod configs;
mod convert;
pub mod deadlines;
pub mod endpoint;
pub mod engine;
mod engine_value;
#[cfg(test)]
pub(crate) mod memory;
pub mod metered;
mod raw;
pub mod transport;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;

use futures_util::Stream;

use serde::{Deserialize, Serialize};

use crate::desired::data_objects::{DataKind, DesiredData, ObservedData};
use crate::desired::definition::{
    DEFAULT_INSTANCE, DEPENDS_ON_LABEL, INSTANCE_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE,
    NetworkDefinition, ROLLED_BACK_REASON_LABEL, ROLLED_BACK_SPEC_LABEL, SOURCE_FILE_LABEL,
    SPEC_HASH_LABEL, SPEC_VALUE_LABEL_PREFIX, ServiceDefinition,
};

pub use bollard::models::{ServiceUpdateStatusStateEnum as UpdateState, TaskState};
pub use deadlines::Deadlines;
pub use engine::DockerEngine;
pub use engine_value::EngineValue;
pub use metered::Metered;

/// The kind of swarm object an error or an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    /// A swarm service.
    Service,
    /// A network.
    Network,
    /// A swarm config.
    Config,
    /// A swarm secret.
    Secret,
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Resource::Service => "service",
            Resource::Network => "network",
            Resource::Config => "config",
            Resource::Secret => "secret",
        })
    }
}

/// Errors talking to the Docker Engine API, classified once, here, so that everything above
/// decides by variant and never by matching message text.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The engine could not be reached or did not answer (connection refused or reset, timeout,
    /// a broken stream). Transient: retried with backoff.
    #[error("{op}: the Docker engine did not answer ({message}); retrying with backoff")]
    Transport {
        /// The request.
        op: Op,
        /// What the HTTP layer said.
        message: String,
    },
    /// The engine did not answer within the request's deadline (see [`Deadlines`]): it is
    /// hung or overloaded. Transient: retried with backoff.
    #[error(
        "{op}: the Docker engine did not answer within {}; retrying with backoff",
        humantime::format_duration(*after)
    )]
    Timeout {
        /// The request.
        op: Op,
        /// The deadline it missed.
        after: std::time::Duration,
    },
    /// The engine refused the request for a reason not classified below.
    #[error("{op}: the Docker engine refused it (HTTP {status}): {message}")]
    Refused {
        /// The request.
        op: Op,
        /// HTTP status code.
        status: u16,
        /// The engine's message.
        message: String,
    },
    /// The engine answered something we could not decode.
    #[error("{op}: undecodable reply from the Docker engine: {message}")]
    Undecodable {
        /// The request.
        op: Op,
        /// What did not fit.
        message: String,
    },
    /// An object with this name already exists (a create raced with another writer).
    #[error("{kind} {name:?} already exists")]
    AlreadyExists {
        /// Service or network.
        kind: Resource,
        /// The object's name.
        name: String,
    },
    /// The object does not exist (any form: 404, or a 500 whose message says "not found").
    #[error("{kind} {name:?} not found")]
    NotFound {
        /// Service or network.
        kind: Resource,
        /// The object's name or id.
        name: String,
    },
    /// A network can not be removed while services are attached to it.
    #[error("network {name:?} is still used by services {users:?}")]
    InUse {
        /// The network's name or id.
        name: String,
        /// Ids (or names) of the services attached to it, as the engine named them.
        users: Vec<String>,
    },
    /// A published port is already held by another service.
    #[error("service {name:?}: published port {port} is already used by service {holder:?}")]
    PortConflict {
        /// The service that wanted the port.
        name: String,
        /// The port.
        port: u16,
        /// The service holding it.
        holder: String,
    },
    /// A service update was based on a version that is no longer current: somebody else wrote
    /// in between. Re-read and plan again.
    #[error("service {name:?}: update out of sequence (the service changed meanwhile)")]
    OutOfSequence {
        /// Service name.
        name: String,
    },
    /// A write was not sent: this replica no longer holds the leader lease (or too little of
    /// it is left to finish the write), so another replica may lead by now.
    #[error("{op}: not sent: this replica no longer holds the leader lease")]
    NotLeader {
        /// The write.
        op: Op,
    },
    /// This node is not a swarm manager, so it can not manage services.
    #[error(
        "this Docker engine is not a swarm manager: run `docker swarm init` or point DOCKER_HOST at a manager"
    )]
    NotAManager,
}

impl DockerError {
    /// Classifies an engine answer with an error status. `kind` and `name` say which object
    /// the request was about, for the typed variants.
    pub fn from_response(
        op: Op,
        kind: Resource,
        name: &str,
        status: u16,
        message: &str,
    ) -> DockerError {
        let lower = message.to_ascii_lowercase();
        // On a create, "not found" is about something the new object refers to (a network),
        // not the object itself.
        let creates = matches!(op, Op::CreateService | Op::CreateNetwork);
        if !creates && (status == 404 || lower.contains("not found")) {
            return DockerError::NotFound {
                kind,
                name: name.to_owned(),
            };
        }
        if status == 409 || lower.contains("already exists") {
            return DockerError::AlreadyExists {
                kind,
                name: name.to_owned(),
            };
        }
        if lower.contains("update out of sequence") {
            return DockerError::OutOfSequence {
                name: name.to_owned(),
            };
        }
        if let Some(users) = network_users(message) {
            return DockerError::InUse {
                name: name.to_owned(),
                users,
            };
        }
        if let Some((port, holder)) = port_holder(message) {
            return DockerError::PortConflict {
                name: name.to_owned(),
                port,
                holder,
            };
        }
        DockerError::Refused {
            op,
            status,
            message: message.to_owned(),
        }
    }
}

/// `network X is in use by service Y` (swarm) or `network X has active endpoints` (local):
/// the services named, possibly none.
fn network_users(message: &str) -> Option<Vec<String>> {
    if let Some((_, rest)) = message.split_once("is in use by service ") {
        let users = rest
            .split([',', ' '])
            .map(|s| s.trim_matches(|c: char| c == '\'' || c == '"' || c == '.'))
            .filter(|s| !s.is_empty() && *s != "and")
            .map(str::to_owned)
            .collect();
        return Some(users);
    }
    message.contains("has active endpoints").then(Vec::new)
}

/// `port '8080' is already in use by service 'name' (id) as an ingress port`.
fn port_holder(message: &str) -> Option<(u16, String)> {
    let (_, rest) = message.split_once("port '")?;
    let (port, rest) = rest.split_once('\'')?;
    let (_, rest) = rest.split_once("already in use by service '")?;
    let (holder, _) = rest.split_once('\'')?;
    Some((port.parse().ok()?, holder.to_owned()))
}

/// One kind of Engine API request the operator makes: the `op` label of
/// `swarm_operator_docker_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// `GET /info`.
    Info,
    /// `GET /events` (one per connection).
    Events,
    /// `GET /services`.
    ListServices,
    /// `GET /networks`.
    ListNetworks,
    /// `GET /tasks`.
    ListTasks,
    /// `GET /nodes`.
    ListNodes,
    /// `GET /services/{id}`.
    InspectService,
    /// `GET /networks/{id}`.
    InspectNetwork,
    /// `POST /services/create`.
    CreateService,
    /// `POST /services/{id}/update`.
    UpdateService,
    /// `DELETE /services/{id}`.
    RemoveService,
    /// `POST /networks/create`.
    CreateNetwork,
    /// `DELETE /networks/{id}`.
    RemoveNetwork,
    /// `GET /configs`.
    ListConfigs,
    /// `GET /secrets`.
    ListSecrets,
    /// `POST /configs/create`.
    CreateConfig,
    /// `POST /secrets/create`.
    CreateSecret,
    /// `DELETE /configs/{id}`.
    RemoveConfig,
    /// `DELETE /secrets/{id}`.
    RemoveSecret,
    /// `GET /configs/{id}` (the leader lease, the stored specs).
    InspectConfig,
    /// `POST /configs/{id}/update` (the leader lease's labels).
    UpdateConfig,
}

impl Op {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Info => "info",
            Op::Events => "events",
            Op::ListServices => "list_services",
            Op::ListNetworks => "list_networks",
            Op::ListTasks => "list_tasks",
            Op::ListNodes => "list_nodes",
            Op::InspectService => "inspect_service",
            Op::InspectNetwork => "inspect_network",
            Op::CreateService => "create_service",
            Op::UpdateService => "update_service",
            Op::RemoveService => "remove_service",
            Op::CreateNetwork => "create_network",
            Op::RemoveNetwork => "remove_network",
            Op::ListConfigs => "list_configs",
            Op::ListSecrets => "list_secrets",
            Op::CreateConfig => "create_config",
            Op::CreateSecret => "create_secret",
            Op::RemoveConfig => "remove_config",
            Op::RemoveSecret => "remove_secret",
            Op::InspectConfig => "inspect_config",
            Op::UpdateConfig => "update_config",
        }
    }

    /// Whether the request changes the swarm (a raft proposal on the managers).
    pub fn is_write(self) -> bool {
        matches!(
            self,
            Op::CreateService
                | Op::UpdateService
                | Op::RemoveService
                | Op::CreateNetwork
                | Op::RemoveNetwork
                | Op::CreateConfig
                | Op::CreateSecret
                | Op::RemoveConfig
                | Op::RemoveSecret
                | Op::UpdateConfig
        )
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a request ended: the `outcome` label of `swarm_operator_docker_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestOutcome {
    /// It succeeded.
    Ok,
    /// The object was not there.
    NotFound,
    /// It lost a race or collided with another object (exists, out of sequence, in use, port).
    Conflict,
    /// The engine refused it otherwise.
    Refused,
    /// The engine could not be reached.
    Transport,
    /// The engine did not answer within the deadline.
    Timeout,
}

impl RequestOutcome {
    /// The outcome of a request's result.
    pub fn of<T>(result: &Result<T, DockerError>) -> Self {
        result
            .as_ref()
            .map_or_else(Self::of_error, |_| RequestOutcome::Ok)
    }

    /// The outcome of a failed request.
    pub fn of_error(error: &DockerError) -> Self {
        match error {
            DockerError::NotFound { .. } => RequestOutcome::NotFound,
            DockerError::AlreadyExists { .. }
            | DockerError::OutOfSequence { .. }
            | DockerError::InUse { .. }
            | DockerError::PortConflict { .. } => RequestOutcome::Conflict,
            DockerError::Transport { .. } => RequestOutcome::Transport,
            DockerError::Timeout { .. } => RequestOutcome::Timeout,
            _ => RequestOutcome::Refused,
        }
    }

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestOutcome::Ok => "ok",
            RequestOutcome::NotFound => "not_found",
            RequestOutcome::Conflict => "conflict",
            RequestOutcome::Refused => "refused",
            RequestOutcome::Transport => "transport",
            RequestOutcome::Timeout => "timeout",
        }
    }

    /// Whether the engine answered at all (with success or with an error of its own), as
    /// opposed to being unreachable or hung.
    pub fn engine_answered(self) -> bool {
        !matches!(self, RequestOutcome::Transport | RequestOutcome::Timeout)
    }
}

/// Counts the requests an [`SwarmApi`] implementation makes (the operator's metrics).
pub trait RequestObserver: Send + Sync {
    /// One request finished.
    fn on_request(&self, op: Op, outcome: RequestOutcome);
}

/// The operator's labels on an object it owns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Ownership {
    /// Carries `swarm-operator.io/managed-by=swarm-operator`.
    pub managed: bool,
    /// The operator instance that owns it (`None`: written before instances existed, which
    /// counts as the default instance).
    pub instance: Option<String>,
    /// The spec hash it was last written from.
    pub spec_hash: Option<String>,
    /// The spec file it came from.
    pub source_file: Option<String>,
    /// The policy labels ([`SPEC_VALUE_LABEL_PREFIX`]…, [`DEPENDS_ON_LABEL`]) it was last
    /// written with.
    pub policy: BTreeMap<String, String>,
    /// The spec swarm rolled back, if the operator marked one ([`ROLLED_BACK_SPEC_LABEL`]).
    pub rolled_back: Option<RolledBack>,
}

/// A spec that swarm rolled back, as marked on the service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RolledBack {
    /// The hash of the spec that was rolled back.
    pub spec_hash: String,
    /// Swarm's message at the time, e.g. `update rolled back due to failure or early
    /// termination of task …`.
    pub reason: String,
}

impl Ownership {
    /// Reads the operator's labels out of an object's labels.
    pub fn from_labels(labels: &BTreeMap<String, String>) -> Self {
        Ownership {
            managed: labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY_VALUE),
            instance: labels.get(INSTANCE_LABEL).cloned(),
            spec_hash: labels.get(SPEC_HASH_LABEL).cloned(),
            source_file: labels.get(SOURCE_FILE_LABEL).cloned(),
            policy: labels
                .iter()
                .filter(|(k, _)| k.starts_with(SPEC_VALUE_LABEL_PREFIX) || *k == DEPENDS_ON_LABEL)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            rolled_back: labels.get(ROLLED_BACK_SPEC_LABEL).map(|hash| RolledBack {
                spec_hash: hash.clone(),
                reason: labels
                    .get(ROLLED_BACK_REASON_LABEL)
                    .cloned()
                    .unwrap_or_default(),
            }),
        }
    }

    /// The operator's labels as they are on the object: what [`Ownership::from_labels`] read,
    /// written back unchanged by a write that must not change them.
    pub fn to_labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.policy.clone();
        if self.managed {
            labels.insert(MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned());
        }
        for (label, value) in [
            (INSTANCE_LABEL, &self.instance),
            (SPEC_HASH_LABEL, &self.spec_hash),
            (SOURCE_FILE_LABEL, &self.source_file),
        ] {
            if let Some(value) = value {
                labels.insert(label.to_owned(), value.clone());
            }
        }
        if let Some(mark) = &self.rolled_back {
            labels.insert(ROLLED_BACK_SPEC_LABEL.to_owned(), mark.spec_hash.clone());
            labels.insert(ROLLED_BACK_REASON_LABEL.to_owned(), mark.reason.clone());
        }
        labels
    }

    /// The services it was written to depend on.
    pub fn depends_on(&self) -> Vec<String> {
        self.policy
            .get(DEPENDS_ON_LABEL)
            .map(|v| {
                v.split(',')
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether the operator instance `instance` owns the object.
    pub fn is_owned_by(&self, instance: &str) -> bool {
        self.managed && self.instance.as_deref().unwrap_or(DEFAULT_INSTANCE) == instance
    }

    /// The labels to write for an object owned by `instance`.
    pub fn labels(spec_hash: &str, source_file: &str, instance: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned()),
            (INSTANCE_LABEL.to_owned(), instance.to_owned()),
            (SPEC_HASH_LABEL.to_owned(), spec_hash.to_owned()),
            (SOURCE_FILE_LABEL.to_owned(), source_file.to_owned()),
        ])
    }
}

/// A service's virtual IP on one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualIp {
    /// Network name.
    pub network: String,
    /// Address without the prefix length.
    pub address: String,
}

/// Swarm's own rolling-update state of a service (`UpdateStatus`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpdateStatus {
    /// Updating, paused, completed, or the same for a rollback.
    pub state: UpdateState,
    /// Swarm's explanation.
    pub message: String,
    /// When the update (or rollback) started (RFC 3339), as swarm reports it.
    pub started_at: Option<String>,
}

/// The template fingerprint of a service the operator just wrote and has not read back: no
/// task has it (real fingerprints are hex digests).
pub const UNREAD_TEMPLATE: &str = "unread";

/// What tells a service's current tasks from older ones, and how old the service is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceRevision {
    /// Fingerprint of the service's task template: a task whose own spec has the same
    /// fingerprint runs the current spec (the engine reports no spec version on tasks).
    /// `None` while unknown (our own write, not read back yet).
    pub template: Option<String>,
    /// When the service was created (RFC 3339).
    pub created_at: Option<String>,
    /// When its spec last changed (RFC 3339).
    pub updated_at: Option<String>,
}

/// A service as read from the swarm.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedService {
    /// Service id.
    pub id: String,
    /// The swarm's version index of the service, sent with an update (compare-and-swap).
    /// 0 while unknown: the operator created it and has not read it back yet.
    pub version: u64,
    /// Its spec in canonical form.
    pub definition: ServiceDefinition,
    /// The operator's labels.
    pub ownership: Ownership,
    /// Virtual IPs per network (VIP mode only).
    pub virtual_ips: Vec<VirtualIp>,
    /// Swarm's rolling-update state, if an update ever ran.
    pub update_status: Option<UpdateStatus>,
    /// Which spec its tasks should run, and when it was created and changed.
    pub revision: ServiceRevision,
}

/// A network as read from the swarm.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedNetwork {
    /// Network id.
    pub id: String,
    /// `swarm` or `local`.
    pub scope: String,
    /// Its configuration in canonical form.
    pub definition: NetworkDefinition,
    /// The operator's labels.
    pub ownership: Ownership,
}

/// A task's address on one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskAddress {
    /// Network name.
    pub network: String,
    /// IP address without the prefix length.
    pub ip: String,
}

/// A task (one replica's current incarnation) as read from the swarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedTask {
    /// Task id.
    pub id: String,
    /// Id of the service it belongs to.
    pub service_id: String,
    /// Replica slot (replicated services).
    pub slot: Option<u64>,
    /// Node it was scheduled on.
    pub node_id: Option<String>,
    /// Current state: `new` … `running`, `complete`, `failed`, `rejected`, `shutdown`, …
    pub state: EngineValue<TaskState>,
    /// What swarm wants it to be: `running`, `shutdown`, …
    pub desired_state: EngineValue<TaskState>,
    /// Swarm's status message.
    pub message: String,
    /// Error of a failed or rejected task.
    pub error: Option<String>,
    /// The container's exit code, once it exited (0 is not reported).
    pub exit_code: Option<i64>,
    /// When the task last changed state (RFC 3339).
    pub timestamp: Option<String>,
    /// Fingerprint of the spec the task runs (see [`ServiceRevision::template`]).
    pub template: Option<String>,
    /// Addresses per network, from the task's `NetworksAttachments`.
    pub addresses: Vec<TaskAddress>,
}

#[cfg(test)]
impl ObservedNetwork {
    /// Overlay network `name` as the swarm holds it, owned by the default instance and written
    /// from the spec file `file`, for tests.
    pub(crate) fn owned_for_test(name: &str, file: &str) -> Self {
        ObservedNetwork {
            id: format!("net-{name}"),
            scope: "swarm".into(),
            definition: crate::desired::definition::tests::sample_network(name),
            ownership: Ownership::from_labels(&Ownership::labels(
                "h",
                file,
                crate::desired::definition::DEFAULT_INSTANCE,
            )),
        }
    }
}

#[cfg(test)]
impl ObservedTask {
    /// A task of service `service_id` in `state` that swarm wants running, for tests.
    pub(crate) fn for_test(
        id: impl Into<String>,
        service_id: impl Into<String>,
        state: &str,
    ) -> Self {
        ObservedTask {
            id: id.into(),
            service_id: service_id.into(),
            slot: Some(1),
            node_id: None,
            state: EngineValue::parse("state", state),
            desired_state: EngineValue::parse("desired", "running"),
            message: String::new(),
            error: None,
            exit_code: None,
            timestamp: None,
            template: None,
            addresses: vec![],
        }
    }
}

/// A swarm node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedNode {
    /// Node id.
    pub id: String,
    /// Hostname.
    pub hostname: String,
    /// `ready`, `down`, …
    pub state: String,
    /// Manager or worker.
    pub role: NodeRole,
    /// Whether the scheduler may place tasks on it.
    pub availability: NodeAvailability,
}

/// A node's role in the swarm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    /// Takes part in the raft and may run the operator.
    Manager,
    /// Runs tasks only.
    Worker,
    /// The engine did not say (an older or newer API).
    #[default]
    Unknown,
}

/// A node's availability for new tasks (`docker node update --availability`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeAvailability {
    /// Gets new tasks.
    Active,
    /// Keeps its tasks, gets no new ones.
    Pause,
    /// Its tasks are moved elsewhere.
    Drain,
    /// The engine did not say.
    #[default]
    Unknown,
}

impl NodeRole {
    /// As Docker spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Manager => "manager",
            NodeRole::Worker => "worker",
            NodeRole::Unknown => "unknown",
        }
    }
}

impl NodeAvailability {
    /// As Docker spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeAvailability::Active => "active",
            NodeAvailability::Pause => "pause",
            NodeAvailability::Drain => "drain",
            NodeAvailability::Unknown => "unknown",
        }
    }
}

/// Everything the operator reads from the swarm in one observation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// Services by name.
    pub services: BTreeMap<String, ObservedService>,
    /// Networks by name (swarm-scoped and local ones, so references to existing networks
    /// resolve).
    pub networks: BTreeMap<String, ObservedNetwork>,
    /// All tasks, of every service.
    pub tasks: Vec<ObservedTask>,
    /// Nodes by id.
    pub nodes: BTreeMap<String, ObservedNode>,
}

impl Observed {
    /// How a node is shown: its hostname, or its id while the hostname is unknown.
    pub fn node_name(&self, id: &str) -> String {
        self.nodes
            .get(id)
            .map(|n| n.hostname.clone())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| id.to_owned())
    }
}

/// What an event says happened to its object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventAction {
    /// The object was created.
    Create,
    /// The object was changed.
    Update,
    /// The object was removed.
    Remove,
}

/// What changed on the swarm, as reported by the engine's event stream. An event is a hint
/// about one object: the receiver re-reads that object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwarmEvent {
    /// A service was created, updated or removed.
    Service {
        /// Service id.
        id: String,
        /// Service name.
        name: String,
        /// What happened.
        action: EventAction,
    },
    /// A network was created or removed.
    Network {
        /// Network id.
        id: String,
        /// Network name.
        name: String,
        /// What happened.
        action: EventAction,
    },
    /// A node changed (joined, left, went down, was promoted).
    Node {
        /// Node id.
        id: String,
    },
}

/// The operations the operator needs from a swarm: one method per Engine API request, so
/// that every request can be counted. [`DockerEngine`] implements them over the Docker Engine
/// API; tests use an in-memory swarm.
pub trait SwarmApi: Send + Sync + 'static {
    /// Fails with [`DockerError::NotAManager`] unless the engine manages a swarm.
    fn ensure_manager(&self) -> impl Future<Output = Result<(), DockerError>> + Send;

    /// Service, network and node events from now on. The stream ends when the engine closes
    /// it; the caller reconnects and lists again (events may have been missed).
    fn events(&self) -> impl Stream<Item = Result<SwarmEvent, DockerError>> + Send + 'static;

    /// Lists every service.
    fn list_services(
        &self,
    ) -> impl Future<Output = Result<Vec<ObservedService>, DockerError>> + Send;

    /// Lists every network (swarm-scoped and local ones, so references to existing networks
    /// resolve).
    fn list_networks(
        &self,
    ) -> impl Future<Output = Result<Vec<ObservedNetwork>, DockerError>> + Send;

    /// Lists every task (swarm has no task events, so they are polled).
    fn list_tasks(&self) -> impl Future<Output = Result<Vec<ObservedTask>, DockerError>> + Send;

    /// Lists the swarm's nodes.
    fn list_nodes(&self) -> impl Future<Output = Result<Vec<ObservedNode>, DockerError>> + Send;

    /// Reads one service by name or id; `None` if it does not exist.
    fn inspect_service(
        &self,
        name_or_id: &str,
    ) -> impl Future<Output = Result<Option<ObservedService>, DockerError>> + Send;

    /// Reads one network by name or id; `None` if it does not exist.
    fn inspect_network(
        &self,
        name_or_id: &str,
    ) -> impl Future<Output = Result<Option<ObservedNetwork>, DockerError>> + Send;

    /// Creates a network with the given operator labels; returns what was created.
    fn create_network(
        &self,
        definition: &NetworkDefinition,
        owner_labels: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<ObservedNetwork, DockerError>> + Send;

    /// Removes a network by id.
    fn remove_network(&self, id: &str) -> impl Future<Output = Result<(), DockerError>> + Send;

    /// Creates a service with the given operator labels; returns its id.
    fn create_service(
        &self,
        definition: &ServiceDefinition,
        owner_labels: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<String, DockerError>> + Send;

    /// Replaces a service's spec, based on `version` (compare-and-swap: a stale version fails
    /// with [`DockerError::OutOfSequence`]; the caller re-reads and plans again).
    fn update_service(
        &self,
        id: &str,
        version: u64,
        definition: &ServiceDefinition,
        owner_labels: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<(), DockerError>> + Send;

    /// Removes a service by id.
    fn remove_service(&self, id: &str) -> impl Future<Output = Result<(), DockerError>> + Send;

    /// Lists the configs or the secrets: names and labels, never contents. The default is an
    /// API without configs and secrets (the in-memory test swarm).
    fn list_data(
        &self,
        kind: DataKind,
    ) -> impl Future<Output = Result<Vec<ObservedData>, DockerError>> + Send {
        let _ = kind;
        async { Ok(Vec::new()) }
    }

    /// Creates a config or secret; returns its id.
    fn create_data(
        &self,
        data: &DesiredData,
        labels: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<String, DockerError>> + Send {
        let (kind, name) = (data.kind, data.name.clone());
        let _ = labels;
        async move {
            Err(DockerError::Refused {
                op: data_op(kind, DataOp::Create),
                status: 501,
                message: format!("{kind} {name:?}: this swarm API has no configs and secrets"),
            })
        }
    }

    /// Removes a config or secret by id.
    fn remove_data(
        &self,
        kind: DataKind,
        id: &str,
    ) -> impl Future<Output = Result<(), DockerError>> + Send {
        let id = id.to_owned();
        async move {
            Err(DockerError::Refused {
                op: data_op(kind, DataOp::Remove),
                status: 501,
                message: format!("{kind} {id:?}: this swarm API has no configs and secrets"),
            })
        }
    }

    /// Lists the whole swarm: four list calls, never one per object. Networks first, since
    /// services name them by id.
    fn observe(&self) -> impl Future<Output = Result<Observed, DockerError>> + Send {
        async move {
            let networks = self.list_networks().await?;
            let (services, tasks, nodes) =
                tokio::try_join!(self.list_services(), self.list_tasks(), self.list_nodes())?;
            Ok(Observed {
                services: services
                    .into_iter()
                    .map(|s| (s.definition.name.clone(), s))
                    .collect(),
                networks: networks
                    .into_iter()
                    .map(|n| (n.definition.name.clone(), n))
                    .collect(),
                tasks,
                nodes: nodes.into_iter().map(|n| (n.id.clone(), n)).collect(),
            })
        }
    }
}

/// The three requests on configs and secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataOp {
    /// List.
    List,
    /// Create.
    Create,
    /// Remove.
    Remove,
}

/// The [`Op`] of a request on configs or secrets.
pub fn data_op(kind: DataKind, op: DataOp) -> Op {
    match (kind, op) {
        (DataKind::Config, DataOp::List) => Op::ListConfigs,
        (DataKind::Config, DataOp::Create) => Op::CreateConfig,
        (DataKind::Config, DataOp::Remove) => Op::RemoveConfig,
        (DataKind::Secret, DataOp::List) => Op::ListSecrets,
        (DataKind::Secret, DataOp::Create) => Op::CreateSecret,
        (DataKind::Secret, DataOp::Remove) => Op::RemoveSecret,
    }
}
