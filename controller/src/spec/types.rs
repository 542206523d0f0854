//! The spec types users write: `SwarmService` and `SwarmNetwork` documents (serde + JSON Schema).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, de};

use super::quantity::{DurationStr, MemoryQuantity};
use crate::labels::Labels;

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

/// The `kind` of a config document: always `SwarmConfig`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
pub enum ConfigKind {
    /// A Docker Swarm config: a file (up to 500 KiB) mounted into services' containers.
    #[default]
    SwarmConfig,
}

/// The `kind` of a secret document: always `SwarmSecret`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
pub enum SecretKind {
    /// A Docker Swarm secret: like a config, but encrypted at rest and kept in memory on nodes.
    #[default]
    SwarmSecret,
}

/// The kinds of document a spec directory may hold.
pub const KINDS: [&str; 5] = [
    "SwarmService",
    "SwarmNetwork",
    "SwarmConfig",
    "SwarmSecret",
    "SwarmStack",
];

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
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
    /// Notes for the operator, never written to the swarm. `swarm-operator.io/suspend: "true"`
    /// stops reconciling the object (nothing is created, updated or removed).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The annotation that suspends an object when its value is `"true"`.
pub const SUSPEND_ANNOTATION: &str = "swarm-operator.io/suspend";

impl ObjectMeta {
    /// Whether the object carries `swarm-operator.io/suspend: "true"`.
    pub fn is_suspended(&self) -> bool {
        self.annotations
            .get(SUSPEND_ANNOTATION)
            .is_some_and(|v| v == "true")
    }
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

/// A Docker Swarm config, declared. Created on the swarm as `<name>-<10 hex of sha256>`, so a
/// content change makes a new version instead of failing (swarm configs are immutable).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SwarmConfig {
    /// Always `swarm-operator.io/v1alpha1`.
    pub api_version: ApiVersion,
    /// Always `SwarmConfig`.
    pub kind: ConfigKind,
    /// The logical name services refer to, and labels.
    pub metadata: ObjectMeta,
    /// Where the content comes from.
    pub spec: DataSpec,
}

/// A Docker Swarm secret, declared. Named and rotated like [`SwarmConfig`]; its content never
/// appears in logs, errors, the status file or `diff` output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SwarmSecret {
    /// Always `swarm-operator.io/v1alpha1`.
    pub api_version: ApiVersion,
    /// Always `SwarmSecret`.
    pub kind: SecretKind,
    /// The logical name services refer to, and labels.
    pub metadata: ObjectMeta,
    /// Where the content comes from.
    pub spec: DataSpec,
}

/// The content of a config or secret: exactly one of `file`, `data`, `dataBase64` (or, for a
/// secret stored by `apply`, `appliedSecret`).
#[derive(Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DataSpec {
    /// A file relative to this spec file, inside the spec directory (at most 500 KiB). A name
    /// ending in `.age` is decrypted in memory with the operator's `--age-identity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Inline text content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// Inline binary content, base64-encoded (standard alphabet, padded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_base64: Option<String>,
    /// `SwarmConfig` only: the content is confidential (a config file with a password in it)
    /// and is handled like a secret's: never logged, shown in any output, or quoted in an
    /// error. A secret always is. Swarm itself still stores a config readable through its API:
    /// use a `SwarmSecret` where that matters.
    #[serde(default, skip_serializing_if = "is_default")]
    pub sensitive: bool,
    /// SwarmSecret only, written by `apply` in the copy it stores in the swarm instead of the
    /// content: the swarm secret `apply` created with it, `<metadata.name>-<10 hex of its
    /// sha256>`. The operator mounts that secret as it is (it cannot read a secret back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_secret: Option<String>,
    /// The content itself, filled in by the loader from whichever source is given.
    #[serde(skip)]
    pub content: Content,
}

impl fmt::Debug for DataSpec {
    // Inline data is left out: for a secret it is the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataSpec")
            .field("file", &self.file)
            .field("data", &self.data.as_ref().map(|_| "<inline>"))
            .field(
                "data_base64",
                &self.data_base64.as_ref().map(|_| "<inline>"),
            )
            .field("sensitive", &self.sensitive)
            .field("applied_secret", &self.applied_secret)
            .field("content", &self.content)
            .finish()
    }
}

/// The bytes of a config or secret. Its `Debug` shows only the size and a hash prefix, so the
/// content of a secret can not end up in a log line through `{:?}`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Content(pub Vec<u8>);

impl Content {
    /// Lower-case hex SHA-256 of the bytes.
    pub fn sha256_hex(&self) -> String {
        use sha2::{Digest, Sha256};
        Sha256::digest(&self.0)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

impl fmt::Debug for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "<{} bytes, sha256 {}…>",
            self.0.len(),
            &self.sha256_hex()[..12]
        )
    }
}

/// Any object a spec document may declare.
///
/// Untagged: each variant carries its own `kind` field. The loader does not go through this
/// impl: it dispatches on `kind` itself so that errors keep their locations.
///
/// Shared (`Arc`): a loaded object is held by the load cache and by the spec store's last good
/// objects, and handed to validation and to the desired state on every reload; sharing keeps
/// one copy of each (a clone is a reference count) instead of re-allocating every spec on
/// every reload, which left the heap fragmented after each resync.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Object {
    /// A `SwarmService` document.
    Service(Arc<SwarmService>),
    /// A `SwarmNetwork` document.
    Network(Arc<SwarmNetwork>),
    /// A `SwarmConfig` document.
    Config(Arc<SwarmConfig>),
    /// A `SwarmSecret` document.
    Secret(Arc<SwarmSecret>),
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
            Object::Config(_) => "SwarmConfig",
            Object::Secret(_) => "SwarmSecret",
        }
    }

    /// The object's metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Object::Service(s) => &s.metadata,
            Object::Network(n) => &n.metadata,
            Object::Config(c) => &c.metadata,
            Object::Secret(s) => &s.metadata,
        }
    }

    /// The service, if this is one.
    pub fn as_service(&self) -> Option<&SwarmService> {
        match self {
            Object::Service(s) => Some(s),
            _ => None,
        }
    }

    /// The network, if this is one.
    pub fn as_network(&self) -> Option<&SwarmNetwork> {
        match self {
            Object::Network(n) => Some(n),
            _ => None,
        }
    }
}

impl From<SwarmConfig> for Object {
    fn from(c: SwarmConfig) -> Self {
        Object::Config(Arc::new(c))
    }
}

impl From<SwarmSecret> for Object {
    fn from(s: SwarmSecret) -> Self {
        Object::Secret(Arc::new(s))
    }
}

impl From<SwarmService> for Object {
    fn from(s: SwarmService) -> Self {
        Object::Service(Arc::new(s))
    }
}

impl From<SwarmNetwork> for Object {
    fn from(n: SwarmNetwork) -> Self {
        Object::Network(Arc::new(n))
    }
}

/// The desired state of a swarm service.
// Its `Debug` (below) shows env keys, not values.
#[derive(Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceSpec {
    /// Image to run, e.g. `goblog/quote-service:dev`. Never pulled by the operator itself.
    #[schemars(length(min = 1))]
    pub image: String,
    /// `replicated` (default: run `replicas` tasks), `global` (one task per eligible node), or
    /// a job: `replicated-job` (run until `replicas` tasks completed) or `global-job` (one
    /// completed task per eligible node). A job runs again only when its spec changes.
    #[serde(default, skip_serializing_if = "is_default")]
    pub mode: ServiceMode,
    /// Number of tasks when `mode` is `replicated` (default 1), or of tasks that must complete
    /// when it is `replicated-job` (default 1). Not allowed with `global` or `global-job`.
    #[serde(
        default,
        deserialize_with = "de_opt_count",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(max = 10000))]
    pub replicas: Option<u64>,
    /// Tasks of a `replicated-job` run at once (default: `replicas`, as `docker stack deploy`
    /// maps compose's `deploy.replicas`). Only with `mode: replicated-job`.
    #[serde(
        default,
        deserialize_with = "de_opt_count",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 1, max = 10000))]
    pub max_concurrent: Option<u64>,
    /// Run the job again at these times: a cron pattern of 5 fields, 6 with seconds first, or
    /// a name like `@hourly`. Only for job modes. Each run is one service update (a forced
    /// one), made by the leader only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// IANA time zone the `schedule` is read in (default `UTC`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// What a scheduled time does while the previous run still runs: `Forbid` (default: the
    /// run starts once the previous one ended) or `Replace` (the running tasks are replaced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_policy: Option<ConcurrencyPolicy>,
    /// A scheduled time missed by more than this (the operator was down, or no leader) is
    /// skipped instead of run late, e.g. `30m`. Default: a missed time runs once, late.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_deadline: Option<DurationStr>,
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
    pub healthcheck: Option<Box<HealthcheckSpec>>,
    /// How rolling updates are done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_config: Option<Box<UpdatePolicy>>,
    /// How automatic rollbacks are done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_config: Option<Box<UpdatePolicy>>,
    /// When swarm restarts tasks that exit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<Box<RestartPolicySpec>>,
    /// Where tasks may run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Box<PlacementSpec>>,
    /// CPU, memory and pids limits and reservations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Box<ResourcesSpec>>,
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
    /// Files of `NAME=value` lines (compose `env_file` syntax), relative to this spec file and
    /// inside its directory; read in order, later files win, and `env` wins over all of them.
    /// A name ending in `.age` is decrypted in memory with the operator's `--age-identity`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_file: Vec<String>,
    /// How long a rollout (creation, update, scaling) may take before the status reports it
    /// `Degraded` with reason `ProgressDeadlineExceeded` (default `10m`). Only the operator
    /// reads it: it is not part of the swarm service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline: Option<DurationStr>,
    /// Container hostname (defaults to the container id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Run an init process (tini) as PID 1 that reaps zombies and forwards signals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    /// Signal sent to stop a container (default `SIGTERM`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// Mount the container's root filesystem read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    /// Isolation technology of the containers: `default`, `process` or `hyperv` (the last
    /// two only on Windows nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<Isolation>,
    /// Windows gMSA credential spec of the containers: exactly one of `file`, `registry` or
    /// `config`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_spec: Option<Box<CredentialSpecSpec>>,
    /// Adjustment of the containers' OOM-killer score (-1000 to 1000). Needs Engine API 1.46
    /// (Docker 27).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -1000, max = 1000))]
    pub oom_score_adj: Option<i64>,
    /// Allocate a pseudo-TTY.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tty: Option<bool>,
    /// Keep stdin open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin_open: Option<bool>,
    /// Linux capabilities to add, e.g. `NET_ADMIN`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    /// Linux capabilities to drop, e.g. `ALL`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    /// Namespaced kernel parameters, e.g. `net.core.somaxconn: "1024"`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    /// Resource limits of the containers' processes by name, e.g. `nofile: {soft: 1024, hard:
    /// 4096}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ulimits: BTreeMap<String, UlimitSpec>,
    /// Extra `/etc/hosts` entries as `hostname:ip` (compose `extra_hosts` syntax).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<String>,
    /// DNS settings of the containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Box<DnsSpec>>,
    /// Log driver of the containers and its options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<Box<LoggingSpec>>,
    /// Extra DNS names of the service on its networks, by network name (as listed in
    /// `networks`): e.g. `{backend: [db, postgres]}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub network_aliases: BTreeMap<String, Vec<String>>,
    /// `SwarmConfig`s (or, with `external`, existing swarm configs) mounted as files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<FileReference>,
    /// `SwarmSecret`s (or, with `external`, existing swarm secrets) mounted as files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<FileReference>,
    /// Fields another controller (an autoscaler, an image updater) may change: set at creation
    /// and when the spec value changes, but a difference made by someone else is left alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_policy: Option<DriftPolicy>,
    /// Names of `SwarmService`s that must be ready (all replicas running) before this one is
    /// created or its spec changes are rolled out. Removal goes in reverse order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
}

/// Which differences the operator leaves to someone else.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DriftPolicy {
    /// Fields whose drift is not corrected.
    #[serde(default)]
    pub ignore: Vec<DriftField>,
}

/// A service field an external controller may own.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum DriftField {
    /// The replica count (autoscalers, scale-to-zero).
    Replicas,
    /// The image (image updaters).
    Image,
}

impl DriftField {
    /// The spec field's name.
    pub fn as_str(self) -> &'static str {
        match self {
            DriftField::Replicas => "replicas",
            DriftField::Image => "image",
        }
    }
}

impl fmt::Debug for ServiceSpec {
    // Env values (and log driver options) are where passwords live; `{:?}` of a spec ends up
    // in logs and panic messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::redact::debug_redacted("ServiceSpec", self, f)
    }
}

/// A soft and a hard limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UlimitSpec {
    /// The limit a process starts with and may raise up to `hard`.
    pub soft: i64,
    /// The ceiling.
    pub hard: i64,
}

/// DNS resolver settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DnsSpec {
    /// Name server addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    /// Search domains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// Resolver options, e.g. `ndots:2`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// Log driver settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoggingSpec {
    /// Driver name, e.g. `json-file`, `local`, `syslog`.
    pub driver: String,
    /// Driver options, e.g. `max-size: 10m`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// A config or secret mounted into a service's containers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileReference {
    /// `metadata.name` of a `SwarmConfig`/`SwarmSecret` spec, or with `external: true` the
    /// name of a config/secret that already exists on the swarm (used as it is, never changed).
    pub name: String,
    /// Path of the file in the container: absolute, or relative to `/` for configs and to
    /// `/run/secrets/` for secrets. Defaults to the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Owner user id of the file (default `0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Owner group id of the file (default `0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<String>,
    /// File mode in octal, as a string (`"0440"`) or a number (`0440`, `440`); default `0444`.
    #[serde(
        default,
        deserialize_with = "de_opt_mode",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<ModeSchema>")]
    pub mode: Option<FileMode>,
    /// The config/secret is not declared by a spec but exists on the swarm already.
    #[serde(default, skip_serializing_if = "is_default")]
    pub external: bool,
}

/// A Unix file mode (permission bits), written in octal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FileMode(pub u32);

impl Serialize for FileMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{:04o}", self.0))
    }
}

/// Schema of a file mode: an octal string or a number whose digits are read as octal.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code, reason = "only its schema is used")]
enum ModeSchema {
    /// Octal digits, e.g. `"0440"`.
    Octal(#[schemars(regex(pattern = r"^0?[0-7]{1,4}$"))] String),
    /// A number whose decimal digits are read as octal (YAML `0440` and `440` both mean 0o440).
    Number(#[schemars(range(min = 0, max = 7777))] u32),
}

impl FileMode {
    /// Parses octal digits (an optional leading `0` or `0o`), at most `0o7777`.
    pub fn parse_octal(text: &str) -> Option<FileMode> {
        let digits = text.strip_prefix("0o").unwrap_or(text);
        if digits.is_empty()
            || digits.len() > 5
            || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
        {
            return None;
        }
        u32::from_str_radix(digits, 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .map(FileMode)
    }
}

fn de_opt_mode<'de, D: Deserializer<'de>>(d: D) -> Result<Option<FileMode>, D::Error> {
    struct V;
    const FORMS: &str = "an octal file mode like `\"0440\"` or `0440`";
    impl de::Visitor<'_> for V {
        type Value = FileMode;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(FORMS)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<FileMode, E> {
            FileMode::parse_octal(v).ok_or_else(|| {
                E::custom(format!("`{v}` is not {FORMS} (digits 0-7, at most 7777)"))
            })
        }
        // YAML 1.2 reads `0440` as the decimal number 440: its digits are the octal mode the
        // user meant, which is how the compose file format treats numeric modes too.
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<FileMode, E> {
            self.visit_str(&v.to_string())
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<FileMode, E> {
            self.visit_str(&v.to_string())
        }
        // The YAML parser reads a leading-zero number like `0440` as a float.
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<FileMode, E> {
            if v.fract() == 0.0 && (0.0..1e6).contains(&v) {
                self.visit_u64(v as u64)
            } else {
                Err(E::custom(format!("`{v}` is not {FORMS}")))
            }
        }
    }
    d.deserialize_any(V).map(Some)
}

impl ServiceSpec {
    /// The number of tasks swarm should run (or, for a `replicated-job`, complete): `replicas`
    /// (default 1), `None` for global services and jobs.
    pub fn effective_replicas(&self) -> Option<u64> {
        match self.mode {
            ServiceMode::Replicated | ServiceMode::ReplicatedJob => {
                Some(self.replicas.unwrap_or(1))
            }
            ServiceMode::Global | ServiceMode::GlobalJob => None,
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
    /// Run tasks until `replicas` of them completed (`maxConcurrent` at a time), once per
    /// spec change.
    #[serde(rename = "replicated-job")]
    ReplicatedJob,
    /// Run one task to completion on every eligible node, once per spec change.
    #[serde(rename = "global-job")]
    GlobalJob,
}

/// What a scheduled time does while the job's previous run still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
pub enum ConcurrencyPolicy {
    /// The run starts once the previous one ended (late, and once for any number of times).
    #[default]
    Forbid,
    /// The previous run's tasks are replaced by the new run's.
    Replace,
    /// Refused by validation: a run is a service update, and swarm stops the previous run's
    /// tasks when it starts the next, so runs of one job service cannot overlap.
    Allow,
}

impl ServiceMode {
    /// A job runs to completion instead of being kept running.
    pub fn is_job(self) -> bool {
        matches!(self, ServiceMode::ReplicatedJob | ServiceMode::GlobalJob)
    }
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
    /// Time between checks during the start period. Needs Engine API 1.44 (Docker 25).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<DurationStr>,
}

/// Rolling update (or rollback) policy.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdatePolicy {
    /// Tasks updated at once (0 = all at once; default 1, what the docker CLI sends).
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
    /// Node-advertised resources a task needs (reservations only), e.g. `[{kind: gpu,
    /// value: 2}]`; nodes advertise them in their engine's `node-generic-resources`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub generic_resources: Vec<GenericResourceSpec>,
}

/// A countable resource a node advertises (compose's `discrete_resource_spec`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GenericResourceSpec {
    /// The resource's name, e.g. `gpu`.
    #[schemars(length(min = 1))]
    pub kind: String,
    /// How many of it a task reserves.
    pub value: i64,
}

/// Isolation technology of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// The daemon's default (`process` on Linux).
    Default,
    /// Namespaces of the host kernel (Windows: process isolation).
    Process,
    /// A Hyper-V utility VM per container (Windows only).
    Hyperv,
}

impl Isolation {
    /// The engine's (and compose's) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::Default => "default",
            Isolation::Process => "process",
            Isolation::Hyperv => "hyperv",
        }
    }
}

/// Where a Windows container's gMSA credential spec comes from: exactly one of `file`,
/// `registry` and `config`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CredentialSpecSpec {
    /// A file under the node's `CredentialSpecs` directory of the docker data root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// A value under the node's `HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion\
    /// Virtualization\Containers\CredentialSpecs` registry key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    /// `metadata.name` of a `SwarmConfig` holding the credential spec (or, with `external`, the
    /// name of a config that exists on the swarm already). As `docker stack deploy` does, the
    /// service gets the config as a runtime reference (not mounted as a file) and the
    /// credential spec names the config's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// The `config` is not declared by a spec but exists on the swarm already.
    #[serde(default, skip_serializing_if = "is_default")]
    pub external: bool,
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
    /// File mode of a `tmpfs` mount's root, in octal (e.g. `"1777"`).
    #[serde(
        default,
        deserialize_with = "de_opt_mode",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<ModeSchema>")]
    pub tmpfs_mode: Option<FileMode>,
    /// Propagation of a `bind` mount: `rprivate` (Docker's default), `private`, `rshared`,
    /// `shared`, `rslave` or `slave`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_propagation: Option<BindPropagation>,
    /// Options of a `volume` mount: how the volume is created on each node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<VolumeOptionsSpec>,
}

/// Propagation of a bind mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BindPropagation {
    /// Mounts do not propagate, recursively (Docker's default).
    Rprivate,
    /// Mounts do not propagate.
    Private,
    /// Mounts propagate both ways, recursively.
    Rshared,
    /// Mounts propagate both ways.
    Shared,
    /// Host mounts propagate into the container, recursively.
    Rslave,
    /// Host mounts propagate into the container.
    Slave,
}

/// How a named volume is created on the node that runs a task (when it does not exist yet).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeOptionsSpec {
    /// Do not copy the image's files at the target into a new, empty volume.
    #[serde(default, skip_serializing_if = "is_default")]
    pub no_copy: bool,
    /// Labels of the created volume.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Volume driver (default `local`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// Options of the volume driver, e.g. `type: nfs`, `o: addr=10.0.0.1`, `device: :/export`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub driver_options: BTreeMap<String, String>,
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
    /// The network exists already and is not the operator's: it is never created, changed or
    /// removed, only checked to exist (like compose `external: true`). The other fields must
    /// then be left out.
    #[serde(default, skip_serializing_if = "is_default")]
    pub external: bool,
}

impl Default for NetworkSpec {
    fn default() -> Self {
        NetworkSpec {
            driver: default_driver(),
            attachable: false,
            internal: false,
            options: BTreeMap::new(),
            ipam: None,
            external: false,
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
