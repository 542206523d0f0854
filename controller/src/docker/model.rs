//! The swarm as the operator reads it: services, networks, tasks, nodes, and the events
//! that name what changed.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::TaskState;
use super::UpdateState;
use super::engine_value::EngineValue;
use super::ownership::Ownership;
use crate::desired::data_objects::{DataKind, ObservedData};
use crate::desired::definition::{KnownDefinitions, NetworkDefinition, ServiceDefinition};

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
    /// The configs and secrets its previous spec mounts (swarm's `PreviousSpec`, what a
    /// rollback restores): the operator keeps those versions.
    pub previous_mounts: Vec<String>,
}

/// A service as read from the swarm.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedService {
    /// Service id.
    pub id: String,
    /// The swarm's version index of the service, sent with an update (compare-and-swap).
    /// 0 while unknown: the operator created it and has not read it back yet.
    pub version: u64,
    /// Its spec in canonical form. Shared with the desired service when the two are equal
    /// (the steady state): the view then holds one definition per service, not two.
    pub definition: Arc<ServiceDefinition>,
    /// The operator's labels.
    pub ownership: Ownership,
    /// Virtual IPs per network (VIP mode only).
    pub virtual_ips: Vec<VirtualIp>,
    /// Swarm's rolling-update state, if an update ever ran. Boxed, as the rolled-back mark of
    /// its ownership is: every service of the view holds room for what few have.
    pub update_status: Option<Box<UpdateStatus>>,
    /// Which spec its tasks should run, and when it was created and changed.
    pub revision: ServiceRevision,
}

impl ObservedService {
    /// The same service, with the held definition `known` has equal to its own, if any.
    pub fn sharing(mut self, known: KnownDefinitions<'_>) -> Self {
        self.definition = known.share(self.definition);
        self
    }
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
    /// Swarm's status message. Shared with the other tasks of one read that say the same, as
    /// are the error and the template.
    pub message: Arc<str>,
    /// Error of a failed or rejected task.
    pub error: Option<Arc<str>>,
    /// The container's exit code, once it exited (0 is not reported).
    pub exit_code: Option<i64>,
    /// When the task last changed state (RFC 3339).
    pub timestamp: Option<String>,
    /// Fingerprint of the spec the task runs (see [`ServiceRevision::template`]).
    pub template: Option<Arc<str>>,
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
            message: "".into(),
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
    /// Services by name, each shared: the view's snapshots hold the same service, and a
    /// change replaces that one service's `Arc` (copy on write), not the map's other entries.
    pub services: BTreeMap<String, Arc<ObservedService>>,
    /// Networks by name (swarm-scoped and local ones, so references to existing networks
    /// resolve).
    pub networks: BTreeMap<String, ObservedNetwork>,
    /// All tasks, of every service: replaced whole by each task list (shared with the view's
    /// snapshots until then).
    pub tasks: Arc<Vec<ObservedTask>>,
    /// Nodes by id.
    pub nodes: BTreeMap<String, ObservedNode>,
    /// Configs by name (names and labels: the operator never reads their content).
    pub configs: BTreeMap<String, ObservedData>,
    /// Secrets by name (names and labels: the engine never returns their content).
    pub secrets: BTreeMap<String, ObservedData>,
}

impl Observed {
    /// Service `name`, to change: copied first if a snapshot of the view shares it.
    pub fn service_mut(&mut self, name: &str) -> Option<&mut ObservedService> {
        self.services.get_mut(name).map(Arc::make_mut)
    }

    /// The configs or the secrets, by name.
    pub fn data(&self, kind: DataKind) -> &BTreeMap<String, ObservedData> {
        match kind {
            DataKind::Config => &self.configs,
            DataKind::Secret => &self.secrets,
        }
    }

    /// The configs or the secrets, by name, to change.
    pub fn data_mut(&mut self, kind: DataKind) -> &mut BTreeMap<String, ObservedData> {
        match kind {
            DataKind::Config => &mut self.configs,
            DataKind::Secret => &mut self.secrets,
        }
    }

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
    /// A config or secret was created or removed (updates are only ever labels of configs
    /// the operator does not version: the leader lease, the stored specs).
    Data {
        /// Config or secret.
        kind: DataKind,
        /// Its id.
        id: String,
        /// Its name.
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
