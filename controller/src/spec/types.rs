//! The spec types users write: `SwarmService` and `SwarmNetwork` documents (serde + JSON Schema).

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, de};

use super::quantity::{DurationStr, MemoryQuantity};

/// The only `apiVersion` this operator understands.
pub const API_VERSION: &str = "swarm-operator.io/v1alpha1";

/// The `apiVersion` of every spec document: always `swarm-operator.io/v1alpha1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
pub enum ApiVersion {
    /// `swarm-operator.io/v1alpha1`, the first (and only) version of the spec format.
    #[default]
    #[serde(rename = "swarm-operator.io/v1alpha1")]
    V1Alpha1,
}

impl ApiVersion {
    /// The string form, as written in documents.
    pub fn as_str(&self) -> &'static str {
        API_VERSION
    }
}

/// The `kind` of a service document: always `SwarmService`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
pub enum ServiceKind {
    /// A Docker Swarm service.
    #[default]
    SwarmService,
}

/// The `kind` of a network document: always `SwarmNetwork`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
pub enum NetworkKind {
    /// A Docker Swarm (usually overlay) network.
    #[default]
    SwarmNetwork,
}

/// The kinds of document a spec directory may hold.
pub const KINDS: [&str; 2] = ["SwarmService", "SwarmNetwork"];

/// Name and labels of an object.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMeta {
    /// Name of the swarm object: starts with a letter or digit, then letters, digits, `_`, `.`
    /// or `-`; at most 63 characters.
    #[schemars(
        regex(pattern = r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$"),
        length(min = 1, max = 63)
    )]
    pub name: String,
    /// Labels put on the swarm service or network itself (not on its containers).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A Docker Swarm service, declared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SwarmService {
    /// Always `swarm-operator.io/v1alpha1`.
    pub api_version: ApiVersion,
    /// Always `SwarmService`.
    pub kind: ServiceKind,
    /// The service name and its labels.
    pub metadata: ObjectMeta,
    /// The desired state of the service.
    pub spec: ServiceSpec,
}

/// A Docker Swarm network, declared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SwarmNetwork {
    /// Always `swarm-operator.io/v1alpha1`.
    pub api_version: ApiVersion,
    /// Always `SwarmNetwork`.
    pub kind: NetworkKind,
    /// The network name and its labels.
    pub metadata: ObjectMeta,
    /// The desired state of the network.
    pub spec: NetworkSpec,
}

/// Any object a spec document may declare.
///
/// Untagged: each variant carries its own `kind` field. The loader does not go through this
/// impl: it dispatches on `kind` itself so that errors keep their locations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
#[allow(
    clippy::large_enum_variant,
    reason = "objects are few and matched on everywhere; boxing would only add noise"
)]
pub enum Object {
    /// A `SwarmService` document.
    Service(SwarmService),
    /// A `SwarmNetwork` document.
    Network(SwarmNetwork),
}

impl Object {
    /// `metadata.name`.
    pub fn name(&self) -> &str {
        &self.metadata().name
    }

    /// `SwarmService` or `SwarmNetwork`.
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Service(_) => "SwarmService",
            Object::Network(_) => "SwarmNetwork",
        }
    }

    /// The object's metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Object::Service(s) => &s.metadata,
            Object::Network(n) => &n.metadata,
        }
    }

    /// The service, if this is one.
    pub fn as_service(&self) -> Option<&SwarmService> {
        match self {
            Object::Service(s) => Some(s),
            Object::Network(_) => None,
        }
    }

    /// The network, if this is one.
    pub fn as_network(&self) -> Option<&SwarmNetwork> {
        match self {
            Object::Network(n) => Some(n),
            Object::Service(_) => None,
        }
    }
}

impl From<SwarmService> for Object {
    fn from(s: SwarmService) -> Self {
        Object::Service(s)
    }
}

impl From<SwarmNetwork> for Object {
    fn from(n: SwarmNetwork) -> Self {
        Object::Network(n)
    }
}

/// The desired state of a swarm service.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceSpec {
    /// Image to run, e.g. `goblog/quote-service:dev`. Never pulled by the operator itself.
    #[schemars(length(min = 1))]
    pub image: String,
    /// `replicated` (default: run `replicas` tasks) or `global` (one task per eligible node).
    #[serde(default, skip_serializing_if = "is_default")]
    pub mode: ServiceMode,
    /// Number of tasks when `mode` is `replicated` (default 1). Not allowed with `global`.
    #[serde(
        default,
        deserialize_with = "de_opt_count",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(max = 10000))]
    pub replicas: Option<u64>,
    /// Overrides the image's entrypoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Overrides the image's command (arguments to the entrypoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// Environment variables of the containers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Labels put on the containers (tasks), as opposed to `metadata.labels` on the service.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub container_labels: BTreeMap<String, String>,
    /// Networks to attach to: names of `SwarmNetwork` specs or of existing swarm networks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<String>,
    /// How the service is reached by name: `vip` (default, one virtual IP) or `dnsrr` (DNS
    /// round robin over the task IPs).
    #[serde(default, skip_serializing_if = "is_default")]
    pub endpoint_mode: EndpointMode,
    /// Published ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSpec>,
    /// Container health check (overrides the image's `HEALTHCHECK`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthcheckSpec>,
    /// How rolling updates are done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_config: Option<UpdatePolicy>,
    /// How automatic rollbacks are done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_config: Option<UpdatePolicy>,
    /// When swarm restarts tasks that exit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicySpec>,
    /// Where tasks may run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<PlacementSpec>,
    /// CPU, memory and pids limits and reservations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourcesSpec>,
    /// Volumes, bind mounts and tmpfs mounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<MountSpec>,
    /// Time to wait after SIGTERM before killing a container, e.g. `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_grace_period: Option<DurationStr>,
    /// User (name or uid[:gid]) the containers run as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Working directory inside the containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
}

impl ServiceSpec {
    /// The number of tasks swarm should run: `replicas` (default 1) for replicated services,
    /// `None` for global ones.
    pub fn effective_replicas(&self) -> Option<u64> {
        match self.mode {
            ServiceMode::Replicated => Some(self.replicas.unwrap_or(1)),
            ServiceMode::Global => None,
        }
    }
}

/// Scheduling mode of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ServiceMode {
    /// Run a fixed number of tasks (`replicas`).
    #[default]
    Replicated,
    /// Run one task on every eligible node.
    Global,
}

/// How other services reach this one by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EndpointMode {
    /// One virtual IP, load-balanced by IPVS.
    #[default]
    Vip,
    /// DNS round robin: the name resolves to every task's IP.
    Dnsrr,
}

/// A published port.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortSpec {
    /// Port inside the container (1-65535).
    #[serde(deserialize_with = "de_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub target: u16,
    /// Port published on the swarm (1-65535); swarm picks one when absent.
    #[serde(
        default,
        deserialize_with = "de_opt_port",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 1, max = 65535))]
    pub published: Option<u16>,
    /// `tcp` (default), `udp` or `sctp`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub protocol: Protocol,
    /// `ingress` (default, routing mesh on every node) or `host` (only on nodes running a task).
    #[serde(default, skip_serializing_if = "is_default")]
    pub mode: PublishMode,
}

/// Transport protocol of a port.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Default,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    #[default]
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// Lower-case name, as in specs and the Docker API.
    pub fn as_str(&self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a port is published.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Default,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum PublishMode {
    /// Through the swarm routing mesh, on every node.
    #[default]
    Ingress,
    /// Directly on the node running the task.
    Host,
}

/// A container health check.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthcheckSpec {
    /// The check: `["CMD", prog, args...]`, `["CMD-SHELL", "command"]` or `["NONE"]` (disable).
    #[serde(default)]
    pub test: Vec<String>,
    /// Time between checks, e.g. `3s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<DurationStr>,
    /// Time a check may take before it counts as failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationStr>,
    /// Consecutive failures before the container is unhealthy.
    #[serde(
        default,
        deserialize_with = "de_opt_count",
        skip_serializing_if = "Option::is_none"
    )]
    pub retries: Option<u64>,
    /// Grace period after start during which failures do not count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<DurationStr>,
}

/// Rolling update (or rollback) policy.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdatePolicy {
    /// Tasks updated at once (0 = all at once).
    #[serde(
        default,
        deserialize_with = "de_opt_count",
        skip_serializing_if = "Option::is_none"
    )]
    pub parallelism: Option<u64>,
    /// Wait between batches, e.g. `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<DurationStr>,
    /// What to do when an update fails: `pause`, `continue` or `rollback`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_action: Option<FailureAction>,
    /// How long to watch each task for failure after updating it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<DurationStr>,
    /// Fraction (0 to 1) of tasks that may fail during an update before `failureAction` runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_failure_ratio: Option<f64>,
    /// `stop-first` (stop the old task, then start the new) or `start-first` (overlap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<UpdateOrder>,
}

/// What swarm does when an update fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FailureAction {
    /// Stop updating; the service stays half-updated until the next change.
    Pause,
    /// Keep updating the remaining tasks.
    Continue,
    /// Roll back to the previous spec.
    Rollback,
}

/// Order of stopping old and starting new tasks during an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateOrder {
    /// Stop the old task before starting the new one.
    StopFirst,
    /// Start the new task first; they briefly overlap.
    StartFirst,
}

/// When swarm restarts a task's container.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestartPolicySpec {
    /// `none`, `on-failure` or `any` (swarm's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<RestartCondition>,
    /// Wait between restart attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<DurationStr>,
    /// Restarts attempted before giving up (0 = unlimited).
    #[serde(
        default,
        deserialize_with = "de_opt_count",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_attempts: Option<u64>,
    /// Window used to decide whether a restart succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<DurationStr>,
}

/// Condition for restarting a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RestartCondition {
    /// Never restart.
    None,
    /// Restart when the container exits with a non-zero code.
    OnFailure,
    /// Always restart.
    Any,
}

/// Where tasks may be scheduled.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlacementSpec {
    /// Constraints such as `node.role == manager` or `node.labels.zone != east`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
    /// Spread preferences, applied in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferences: Vec<PlacementPreference>,
    /// Maximum tasks per node (0 = unlimited).
    #[serde(
        default,
        deserialize_with = "de_opt_count",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_replicas: Option<u64>,
}

/// A placement preference.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlacementPreference {
    /// Spread tasks evenly over the values of this node attribute, e.g. `node.labels.zone`.
    pub spread: String,
}

/// Resource limits and reservations.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourcesSpec {
    /// Hard caps per task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ResourceAmounts>,
    /// Amounts a node must have free to run a task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservations: Option<ResourceAmounts>,
}

/// Amounts of CPU, memory and processes.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceAmounts {
    /// CPUs, possibly fractional (`0.5` = half a CPU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub cpus: Option<f64>,
    /// Memory, e.g. `128Mi`, `1Gi`, `512M` or a number of bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryQuantity>,
    /// Maximum number of processes (limits only; 0 or -1 = unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<i64>,
}

/// A mount into the containers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MountSpec {
    /// `volume`, `bind` or `tmpfs`.
    pub r#type: MountType,
    /// Volume name or host path (not used for `tmpfs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Absolute path inside the container.
    pub target: String,
    /// Mount read-only.
    #[serde(default, skip_serializing_if = "is_default")]
    pub read_only: bool,
    /// Size of a `tmpfs` mount, e.g. `64Mi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmpfs_size: Option<MemoryQuantity>,
}

/// Kind of mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    /// A named (or anonymous) volume.
    #[default]
    Volume,
    /// A host path.
    Bind,
    /// An in-memory filesystem.
    Tmpfs,
}

/// The desired state of a swarm network. Its labels come from `metadata.labels`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkSpec {
    /// Network driver; `overlay` (default) for networks spanning the swarm.
    #[serde(default = "default_driver")]
    pub driver: String,
    /// Whether standalone containers may attach too.
    #[serde(default)]
    pub attachable: bool,
    /// Whether the network is cut off from the outside world.
    #[serde(default)]
    pub internal: bool,
    /// Driver options, e.g. `encrypted: ""`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// Address management; swarm picks a subnet when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam: Option<IpamSpec>,
}

impl Default for NetworkSpec {
    fn default() -> Self {
        NetworkSpec {
            driver: default_driver(),
            attachable: false,
            internal: false,
            options: BTreeMap::new(),
            ipam: None,
        }
    }
}

/// IP address management of a network.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IpamSpec {
    /// Subnet in CIDR form, e.g. `10.20.0.0/24`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    /// Gateway address inside the subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
}

fn default_driver() -> String {
    "overlay".to_owned()
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// Accepts any integer and reports out-of-range ports with the allowed range, which a plain
/// `u16` would only describe as "expected u16".
fn de_port<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    let n = d.deserialize_any(IntVisitor("a port number (an integer in 1-65535)"))?;
    match u16::try_from(n) {
        Ok(p) if p >= 1 => Ok(p),
        _ => Err(de::Error::custom(format!(
            "port {n} is out of range: allowed 1-65535"
        ))),
    }
}

fn de_opt_port<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    de_port(d).map(Some)
}

fn de_opt_count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let n = d.deserialize_any(IntVisitor("a non-negative integer"))?;
    u64::try_from(n)
        .map(Some)
        .map_err(|_| de::Error::custom(format!("{n} is negative: expected a non-negative integer")))
}

/// Reads any integer as `i128` so range errors can be phrased by the caller.
struct IntVisitor(&'static str);

impl de::Visitor<'_> for IntVisitor {
    type Value = i128;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i128, E> {
        Ok(v.into())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i128, E> {
        Ok(v.into())
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<i128, E> {
        Ok(v)
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<i128, E> {
        Ok(i128::try_from(v).unwrap_or(i128::MAX))
    }
}
