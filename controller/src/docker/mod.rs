//! The Docker adapter: what the operator reads from and writes to a swarm, behind a trait.
//!
//! Everything above this module speaks in [`crate::definition`] types and the `Observed*` types
//! below; only [`engine`] knows about bollard. Tests of the reconciler can substitute the trait.

pub mod configs;
mod convert;
pub mod engine;
mod raw;

use std::collections::BTreeMap;
use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::definition::{
    DEFAULT_INSTANCE, INSTANCE_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE, NetworkDefinition,
    SOURCE_FILE_LABEL, SPEC_HASH_LABEL, ServiceDefinition,
};

pub use engine::DockerEngine;

/// Errors talking to the Docker Engine API.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The daemon could not be reached or answered with an error.
    #[error("Docker Engine API: {0}")]
    Api(#[from] bollard::errors::Error),
    /// A raw API call (one bollard has no model for) failed.
    #[error("Docker Engine API {path}: {message}")]
    Raw {
        /// Request path.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// An object with this name already exists (a create raced with another writer).
    #[error("{kind} {name:?} already exists")]
    AlreadyExists {
        /// `service` or `network`.
        kind: &'static str,
        /// The object's name.
        name: String,
    },
    /// The object was not found (removed behind our back).
    #[error("{kind} {name:?} not found")]
    NotFound {
        /// `service` or `network`.
        kind: &'static str,
        /// The object's name or id.
        name: String,
    },
    /// A service update kept losing the race on the service version.
    #[error("service {name:?}: update out of sequence after {attempts} attempts")]
    OutOfSequence {
        /// Service name.
        name: String,
        /// How many times we re-read and retried.
        attempts: u32,
    },
    /// This node is not a swarm manager, so it can not manage services.
    #[error(
        "this Docker engine is not a swarm manager: run `docker swarm init` or point DOCKER_HOST at a manager"
    )]
    NotAManager,
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
}

impl Ownership {
    /// Reads the operator's labels out of an object's labels.
    pub fn from_labels(labels: &BTreeMap<String, String>) -> Self {
        Ownership {
            managed: labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY_VALUE),
            instance: labels.get(INSTANCE_LABEL).cloned(),
            spec_hash: labels.get(SPEC_HASH_LABEL).cloned(),
            source_file: labels.get(SOURCE_FILE_LABEL).cloned(),
        }
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
    /// `updating`, `paused`, `completed`, `rollback_started`, `rollback_paused`,
    /// `rollback_completed`.
    pub state: String,
    /// Swarm's explanation.
    pub message: String,
}

/// A service as read from the swarm.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedService {
    /// Service id.
    pub id: String,
    /// The version to send with an update.
    pub version: u64,
    /// Its spec in canonical form.
    pub definition: ServiceDefinition,
    /// The operator's labels.
    pub ownership: Ownership,
    /// Virtual IPs per network (VIP mode only).
    pub virtual_ips: Vec<VirtualIp>,
    /// Swarm's rolling-update state, if an update ever ran.
    pub update_status: Option<UpdateStatus>,
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
    pub state: String,
    /// What swarm wants it to be: `running`, `shutdown`, …
    pub desired_state: String,
    /// Swarm's status message.
    pub message: String,
    /// Error of a failed or rejected task.
    pub error: Option<String>,
    /// Addresses per network, from the task's `NetworksAttachments`.
    pub addresses: Vec<TaskAddress>,
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

/// What changed on the swarm, as reported by the engine's event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwarmEvent {
    /// A service was created, updated or removed.
    Service {
        /// Service name.
        name: String,
    },
    /// A network or node changed: anything may need a look.
    Other,
}

/// The operations the operator needs from a swarm. [`DockerEngine`] implements them over
/// the Docker Engine API.
pub trait SwarmApi: Send + Sync + 'static {
    /// Lists services, networks, tasks and nodes (a handful of list calls, never one per object).
    fn observe(&self) -> impl Future<Output = Result<Observed, DockerError>> + Send;

    /// Lists only tasks (swarm has no task events, so they are polled).
    fn list_tasks(&self) -> impl Future<Output = Result<Vec<ObservedTask>, DockerError>> + Send;

    /// Reads one service by name; `None` if it does not exist.
    fn inspect_service(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<ObservedService>, DockerError>> + Send;

    /// Creates a network with the given operator labels; returns what was created.
    fn create_network(
        &self,
        definition: &NetworkDefinition,
        owner_labels: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<ObservedNetwork, DockerError>> + Send;

    /// Removes a network by id.
    fn remove_network(&self, id: &str) -> impl Future<Output = Result<(), DockerError>> + Send;

    /// Creates a service with the given operator labels.
    fn create_service(
        &self,
        definition: &ServiceDefinition,
        owner_labels: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<(), DockerError>> + Send;

    /// Replaces a service's spec. `version` is the one last read; on "update out of sequence"
    /// the implementation re-reads the version and retries a few times.
    fn update_service(
        &self,
        id: &str,
        version: u64,
        definition: &ServiceDefinition,
        owner_labels: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<(), DockerError>> + Send;

    /// Removes a service by id.
    fn remove_service(&self, id: &str) -> impl Future<Output = Result<(), DockerError>> + Send;
}
