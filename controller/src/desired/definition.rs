//! The canonical, normalized form of a swarm service or network: what the plan compares.
//!
//! Both sides of a comparison are brought into this form: the desired side from the spec files
//! (`desired`), the observed side from the Docker Engine API (`docker::convert`). Everything that
//! Docker may reorder or re-encode is normalized here (env is a map, durations are nanoseconds,
//! CPUs are nano-CPUs), so "semantically equal" is plain `==`, and a restart of the operator
//! causes zero writes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::desired::data_objects::DataKind;
use crate::labels::Labels;
use crate::redact::{self, Values};

// The spec's closed sets are the canonical ones: they serialize to the engine's wire names, so
// the definition hash and the drift paths read the same as before they were typed.
pub use crate::spec::{
    BindPropagation, EndpointMode, FailureAction, Isolation, MountType, Protocol, PublishMode,
    RestartCondition, UpdateOrder,
};

/// Label on every object the operator owns; it never changes an object without it.
pub const MANAGED_BY_LABEL: &str = "swarm-operator.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY_VALUE: &str = "swarm-operator";
/// Label naming the operator instance that owns an object: several operators (per team, per
/// environment) can share one swarm, and each touches only its own objects.
pub const INSTANCE_LABEL: &str = "swarm-operator.io/instance";
/// The instance name when none is given.
pub const DEFAULT_INSTANCE: &str = "default";
/// Label holding the hash of the desired definition the object was last written from.
pub const SPEC_HASH_LABEL: &str = "swarm-operator.io/spec-hash";
/// Label naming the spec file an object came from, so that a file that fails to parse protects
/// its objects from pruning even across an operator restart.
pub const SOURCE_FILE_LABEL: &str = "swarm-operator.io/source-file";
/// Prefix of labels holding the spec's value of a field under `driftPolicy.ignore`, as last
/// written: a later spec value that differs is a spec change (applied); a swarm value that
/// differs from the spec while this label still matches is someone else's (left alone).
pub const SPEC_VALUE_LABEL_PREFIX: &str = "swarm-operator.io/spec-value.";
/// Label listing a service's `dependsOn` (comma-separated), so that removals can run in
/// reverse order even after the specs are gone.
pub const DEPENDS_ON_LABEL: &str = "swarm-operator.io/depends-on";
/// Label set on a service after swarm rolled an update back (its `failureAction: rollback`, or
/// a `docker service rollback`): the spec hash that was rolled back. Swarm forgets the failed
/// spec (`PreviousSpec` is cleared), so without this mark the operator would write the same
/// failing spec again and fight the rollback; with it, that spec is held until it changes.
pub const ROLLED_BACK_SPEC_LABEL: &str = "swarm-operator.io/rolled-back-spec";
/// Swarm's message when it rolled back, kept next to [`ROLLED_BACK_SPEC_LABEL`]: the write of
/// the mark resets the service's `UpdateStatus`, which held it.
pub const ROLLED_BACK_REASON_LABEL: &str = "swarm-operator.io/rolled-back-reason";
/// Prefix of every label the operator itself sets; user labels with it are rejected/ignored.
pub const OPERATOR_LABEL_PREFIX: &str = "swarm-operator.io/";

/// How many tasks a service runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Mode {
    /// A fixed number of replicas.
    Replicated {
        /// The desired replica count.
        replicas: u64,
    },
    /// One task on every eligible node.
    Global,
    /// Tasks run until `total_completions` completed, `max_concurrent` at a time; once per
    /// spec write (an update runs the job again).
    #[serde(rename_all = "camelCase")]
    ReplicatedJob {
        /// Tasks running at once.
        max_concurrent: u64,
        /// Tasks that must complete.
        total_completions: u64,
    },
    /// One task to completion on every eligible node, once per spec write.
    GlobalJob,
}

impl Mode {
    /// A job runs to completion instead of being kept running.
    pub fn is_job(&self) -> bool {
        matches!(self, Mode::ReplicatedJob { .. } | Mode::GlobalJob)
    }
}

/// A published port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Port {
    /// Port inside the container.
    pub target: u16,
    /// Port on the node or the routing mesh; `None` lets swarm pick one.
    pub published: Option<u16>,
    /// Transport protocol.
    pub protocol: Protocol,
    /// Routing mesh or host port.
    pub mode: PublishMode,
}

/// A container healthcheck; durations in nanoseconds as Docker stores them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Healthcheck {
    /// `["CMD", ...]`, `["CMD-SHELL", "..."]` or `["NONE"]`.
    pub test: Vec<String>,
    /// Time between checks.
    pub interval_ns: Option<i64>,
    /// Time one check may take.
    pub timeout_ns: Option<i64>,
    /// Consecutive failures before the container is unhealthy.
    pub retries: Option<i64>,
    /// Grace period during which failures do not count.
    pub start_period_ns: Option<i64>,
    /// Time between checks during the start period (left out of the JSON when unset, so
    /// that the hash of services written before it existed stays the same).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_interval_ns: Option<i64>,
}

/// Rolling update or rollback policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdatePolicy {
    /// Tasks updated at once.
    pub parallelism: Option<i64>,
    /// Pause between batches.
    pub delay_ns: Option<i64>,
    /// What swarm does when a batch fails.
    pub failure_action: Option<FailureAction>,
    /// How long a new task is watched for failure.
    pub monitor_ns: Option<i64>,
    /// Tolerated failure ratio, 0..=1.
    pub max_failure_ratio: Option<f64>,
    /// Whether old tasks stop before new ones start.
    pub order: Option<UpdateOrder>,
}

/// When swarm restarts a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestartPolicy {
    /// When a task is restarted.
    pub condition: Option<RestartCondition>,
    /// Delay between restart attempts.
    pub delay_ns: Option<i64>,
    /// Attempts before giving up (0 = unlimited).
    pub max_attempts: Option<i64>,
    /// Window used to evaluate the restart policy.
    pub window_ns: Option<i64>,
}

/// Where tasks may be scheduled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    /// Constraints such as `node.role==manager`, in the order given.
    pub constraints: Vec<String>,
    /// Spread descriptors such as `node.labels.zone`.
    pub spread_preferences: Vec<String>,
    /// Maximum tasks per node (0/None = unlimited).
    pub max_replicas: Option<u64>,
}

/// CPU and memory amounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceAmounts {
    /// CPUs in units of 10^-9 CPUs.
    pub nano_cpus: Option<i64>,
    /// Memory in bytes.
    pub memory_bytes: Option<i64>,
    /// Maximum number of processes (limits only).
    pub pids: Option<i64>,
    /// Node-advertised resources reserved (reservations only), in the order given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub generic_resources: Vec<GenericResource>,
}

/// A countable node resource a task reserves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GenericResource {
    /// Its name, e.g. `gpu`.
    pub kind: String,
    /// How many.
    pub value: i64,
}

/// Where a Windows container's gMSA credential spec comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum CredentialSpec {
    /// A file in the node's `CredentialSpecs` directory.
    File(String),
    /// A value under the node's credential spec registry key.
    Registry(String),
    /// A swarm config (its swarm name), which the service gets as a runtime reference.
    Config(String),
}

/// Resource limits and reservations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    /// Hard limits.
    pub limits: Option<ResourceAmounts>,
    /// Amounts the scheduler reserves.
    pub reservations: Option<ResourceAmounts>,
}

/// A mount's kind: one a spec can ask for, or one only the engine reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum MountKind {
    /// `volume`, `bind` or `tmpfs`.
    Spec(MountType),
    /// A kind no spec can ask for, kept so that it shows as drift instead of passing for a
    /// volume.
    EngineOnly(EngineOnlyMountType),
}

/// Mount kinds the engine knows and specs do not offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineOnlyMountType {
    /// A Windows named pipe.
    Npipe,
    /// A cluster (CSI) volume.
    Cluster,
    /// An image's file system.
    Image,
}

impl EngineOnlyMountType {
    /// The engine's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            EngineOnlyMountType::Npipe => "npipe",
            EngineOnlyMountType::Cluster => "cluster",
            EngineOnlyMountType::Image => "image",
        }
    }
}

/// A volume, bind or tmpfs mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Mount {
    /// Volume, bind, tmpfs, or a kind the engine reports that specs cannot express.
    pub kind: MountKind,
    /// Volume name or host path; none for tmpfs.
    pub source: Option<String>,
    /// Path in the container.
    pub target: String,
    /// Mounted read-only.
    pub read_only: bool,
    /// Size of a tmpfs mount in bytes.
    pub tmpfs_size_bytes: Option<i64>,
    /// Mode of a tmpfs mount's root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmpfs_mode: Option<u32>,
    /// Propagation of a bind mount (`rprivate`, `rshared`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_propagation: Option<BindPropagation>,
    /// How a named volume is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<VolumeOptions>,
}

/// How a named volume is created on a node.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeOptions {
    /// Do not copy the image's files into a new volume.
    pub no_copy: bool,
    /// Labels of the volume.
    pub labels: BTreeMap<String, String>,
    /// Volume driver.
    pub driver: Option<String>,
    /// Driver options.
    pub driver_options: BTreeMap<String, String>,
}

/// A soft and a hard resource limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Ulimit {
    /// Soft limit.
    pub soft: i64,
    /// Hard limit.
    pub hard: i64,
}

/// DNS resolver settings of the containers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct DnsConfig {
    /// Name servers.
    pub nameservers: Vec<String>,
    /// Search domains.
    pub search: Vec<String>,
    /// Resolver options.
    pub options: Vec<String>,
}

/// Log driver of the containers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogDriver {
    /// Driver name.
    pub name: String,
    /// Driver options.
    pub options: BTreeMap<String, String>,
}

/// A swarm service as the operator manages it.
///
/// Optional fields are `None` when the spec does not mention them; see [`field_changes`] for
/// how that is treated. Its `Debug` shows env keys, not values.
///
/// The sections most services leave out are boxed: a definition is held for every service
/// (one shared by the desired and the observed side while they are equal, two while they
/// differ): inline they made it 1,264 bytes, boxed it is 672. A box serializes as what it
/// holds, so the spec hash is unchanged.
#[derive(Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceDefinition {
    /// Service name.
    pub name: String,
    /// Image reference as the docker CLI sends it ([`normalize_image`]); nothing is pulled or
    /// resolved to a digest.
    pub image: String,
    /// Replicated or global.
    pub mode: Mode,
    /// Entrypoint override.
    pub command: Option<Vec<String>>,
    /// Arguments to the entrypoint.
    pub args: Option<Vec<String>>,
    /// Environment, sorted by name.
    pub env: BTreeMap<String, String>,
    /// Service labels set by the user (operator labels excluded).
    pub labels: Labels,
    /// Labels on the containers.
    pub container_labels: BTreeMap<String, String>,
    /// Network names, in the order given.
    pub networks: Vec<String>,
    /// VIP or DNS round robin.
    pub endpoint_mode: EndpointMode,
    /// Published ports, sorted.
    pub ports: Vec<Port>,
    /// Container healthcheck.
    pub healthcheck: Option<Box<Healthcheck>>,
    /// Rolling update policy.
    pub update_config: Option<Box<UpdatePolicy>>,
    /// Rollback policy.
    pub rollback_config: Option<Box<UpdatePolicy>>,
    /// Restart policy.
    pub restart_policy: Option<Box<RestartPolicy>>,
    /// Placement constraints and preferences.
    pub placement: Option<Box<Placement>>,
    /// Limits and reservations.
    pub resources: Option<Box<Resources>>,
    /// Mounts, in the order given.
    pub mounts: Vec<Mount>,
    /// Time between SIGTERM and SIGKILL.
    pub stop_grace_period_ns: Option<i64>,
    /// User the container runs as.
    pub user: Option<String>,
    /// Working directory.
    pub workdir: Option<String>,
    // The fields below are left out of the JSON when unset, so that the spec hash of services
    // written before they existed stays the same (no rolling update on upgrade).
    /// Container hostname.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Run an init process as PID 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    /// Stop signal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// Read-only root filesystem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    /// Isolation technology; the engine's `default` is `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<Isolation>,
    /// Windows gMSA credential spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_spec: Option<Box<CredentialSpec>>,
    /// OOM-killer score adjustment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom_score_adj: Option<i64>,
    /// Allocate a TTY.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tty: Option<bool>,
    /// Keep stdin open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_stdin: Option<bool>,
    /// Capabilities added, in the order given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capability_add: Vec<String>,
    /// Capabilities dropped, in the order given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capability_drop: Vec<String>,
    /// Namespaced kernel parameters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    /// Process resource limits by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ulimits: BTreeMap<String, Ulimit>,
    /// `/etc/hosts` entries in Docker's form, `IP hostname`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// DNS settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Box<DnsConfig>>,
    /// Log driver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_driver: Option<Box<LogDriver>>,
    /// Extra DNS names per network name (networks without aliases are absent).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub network_aliases: BTreeMap<String, Vec<String>>,
    /// Configs mounted as files, sorted by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<FileMount>,
    /// Secrets mounted as files, sorted by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<FileMount>,
    /// Swarm's `ForceUpdate` counter, raised by one to run a job again without a spec change.
    /// Neither compared nor hashed (skipped by serde): a counter raised by `docker service
    /// update --force` is no drift; an update carries the swarm's value over.
    #[serde(skip)]
    pub force_update: u64,
}

/// A config or secret mounted into the containers. Only names, never content: a changed
/// secret shows in a diff as a new versioned name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileMount {
    /// The swarm name of the config/secret (a versioned name for the operator's own).
    pub name: String,
    /// File path as swarm stores it (relative paths are under `/` or `/run/secrets/`).
    pub target: String,
    /// Owner uid.
    pub uid: String,
    /// Owner gid.
    pub gid: String,
    /// Permission bits.
    pub mode: u32,
}

impl std::fmt::Debug for ServiceDefinition {
    // Env values are where users keep passwords, and a definition is printed by `{:?}` in
    // logs, `expect` messages and failed assertions.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        redact::debug_redacted("ServiceDefinition", self, f)
    }
}

impl ServiceDefinition {
    /// The swarm names of the configs or secrets the service needs: those mounted as files
    /// and, for configs, the one its credential spec names.
    pub fn data_names(&self, kind: DataKind) -> BTreeSet<String> {
        let list = match kind {
            DataKind::Config => &self.configs,
            DataKind::Secret => &self.secrets,
        };
        let credential_config = match (kind, self.credential_spec.as_deref()) {
            (DataKind::Config, Some(CredentialSpec::Config(name))) => Some(name.clone()),
            _ => None,
        };
        list.iter()
            .map(|m| m.name.clone())
            .chain(credential_config)
            .collect()
    }

    /// A replicated service of one task running `image`-less defaults: the base that
    /// conversions and tests fill in, so adding a field does not touch every constructor.
    pub fn empty(name: &str) -> Self {
        ServiceDefinition {
            name: name.to_owned(),
            image: String::new(),
            mode: Mode::Replicated { replicas: 1 },
            command: None,
            args: None,
            env: BTreeMap::new(),
            labels: Labels::new(),
            container_labels: BTreeMap::new(),
            networks: Vec::new(),
            endpoint_mode: EndpointMode::Vip,
            ports: Vec::new(),
            healthcheck: None,
            update_config: None,
            rollback_config: None,
            restart_policy: None,
            placement: None,
            resources: None,
            mounts: Vec::new(),
            stop_grace_period_ns: None,
            user: None,
            workdir: None,
            hostname: None,
            init: None,
            stop_signal: None,
            read_only: None,
            isolation: None,
            credential_spec: None,
            oom_score_adj: None,
            tty: None,
            open_stdin: None,
            capability_add: Vec::new(),
            capability_drop: Vec::new(),
            sysctls: BTreeMap::new(),
            ulimits: BTreeMap::new(),
            hosts: Vec::new(),
            dns: None,
            log_driver: None,
            network_aliases: BTreeMap::new(),
            configs: Vec::new(),
            secrets: Vec::new(),
            force_update: 0,
        }
    }
}

/// A swarm network as the operator manages it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkDefinition {
    /// Network name.
    pub name: String,
    /// Driver, `overlay` for swarm-scoped networks.
    pub driver: String,
    /// Whether standalone containers may attach.
    pub attachable: bool,
    /// No external connectivity.
    pub internal: bool,
    /// Driver options.
    pub options: BTreeMap<String, String>,
    /// User labels (operator labels excluded).
    pub labels: BTreeMap<String, String>,
    /// Subnet in CIDR notation.
    pub subnet: Option<String>,
    /// Gateway address.
    pub gateway: Option<String>,
}

/// One field that differs between the observed and the desired definition.
///
/// It holds the values (a field diff needs them), but renders them only through
/// [`FieldChange::describe`], which hides the values of fields that hold secrets; its `Debug`
/// does the same.
#[derive(Clone, PartialEq, Eq)]
pub struct FieldChange {
    /// Dotted path, e.g. `mode.replicated.replicas` or `env.RUST_LOG`.
    pub path: String,
    /// Observed value as compact JSON (`null` when absent).
    pub old: String,
    /// Desired value as compact JSON (`null` when absent).
    pub new: String,
}

impl FieldChange {
    /// The change for a message: `replicas: 1 → 3`, but `env.DB_PASSWORD changed` (or
    /// `added`/`removed`) for a field that holds values, unless `values` is
    /// [`Values::Shown`] (only `diff --show-values`).
    pub fn describe(&self, values: Values) -> String {
        if values == Values::Hidden && redact::holds_values(&self.path) {
            let what = match (self.old.as_str(), self.new.as_str()) {
                ("null", _) => "added",
                (_, "null") => "removed",
                _ => "changed",
            };
            format!("{} {what}", self.path)
        } else {
            format!("{}: {} → {}", self.path, self.old, self.new)
        }
    }
}

impl std::fmt::Debug for FieldChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe(Values::Hidden))
    }
}

/// An image reference as `docker stack deploy` and `docker service create` send it: a name
/// without a tag or digest gets `:latest` (`busybox` → `busybox:latest`,
/// `localhost:5000/x` → `localhost:5000/x:latest`); tagged and digested references are kept.
///
/// The engine stores what it is sent, so a service created by the CLI holds `name:latest`
/// where the same image written untagged in a spec would otherwise show as a difference. The
/// CLI adds no `docker.io/library/` (with `--resolve-image never`), so neither does this.
pub fn normalize_image(image: &str) -> String {
    // A `:` in the last path component is a tag; one before it belongs to a registry host's
    // port (`localhost:5000/x`).
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.is_empty() || image.contains('@') || last.contains(':') {
        image.to_owned()
    } else {
        format!("{image}:latest")
    }
}

/// Docker's capability normalisation (`opts.EffectiveCapAddCapDrop`): upper case, `CAP_`
/// prefixed, `ALL` wins over the rest of its list, an added capability is not dropped, both
/// sorted.
pub fn effective_caps(add: &[String], drop: &[String]) -> (Vec<String>, Vec<String>) {
    let normalize = |c: &String| {
        let c = c.trim().to_ascii_uppercase();
        if c == "ALL" || c == "RESET" || c.starts_with("CAP_") {
            c
        } else {
            format!("CAP_{c}")
        }
    };
    let set = |list: &[String]| -> BTreeSet<String> {
        let s: BTreeSet<String> = list.iter().map(normalize).collect();
        if s.contains("ALL") {
            BTreeSet::from(["ALL".to_owned()])
        } else {
            s
        }
    };
    let (add, drop) = (set(add), set(drop));
    let cap_drop = drop
        .iter()
        .filter(|c| !add.contains(*c) && c.as_str() != "RESET")
        .cloned()
        .collect();
    let cap_add = add.into_iter().filter(|c| c != "RESET").collect();
    (cap_add, cap_drop)
}

/// Hash of a definition's canonical JSON: stored in [`SPEC_HASH_LABEL`] to notice spec edits
/// (including fields removed from the spec, which drift detection alone cannot see).
pub fn definition_hash<T: Serialize>(definition: &T) -> String {
    // Serializing plain structs and BTreeMaps cannot fail.
    let json = serde_json::to_vec(definition).expect("definitions serialize to JSON");
    let digest = Sha256::digest(&json);
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Fields where `observed` departs from `desired`.
///
/// With `compare_unset == false` this is drift detection: a field the spec leaves unset is
/// Docker's to default, so only fields the spec sets are compared. With `true` (the spec was
/// edited, its hash changed) every field is compared, so a field removed from the spec shows
/// up as a change back to the default.
pub fn field_changes<T: Serialize>(
    desired: &T,
    observed: &T,
    compare_unset: bool,
) -> Vec<FieldChange> {
    let desired = serde_json::to_value(desired).expect("definitions serialize to JSON");
    let observed = serde_json::to_value(observed).expect("definitions serialize to JSON");
    let mut changes = Vec::new();
    diff_values("", &observed, &desired, compare_unset, &mut changes);
    changes
}

/// Top-level fields whose values are maps: a key missing on the desired side is a removal.
const MAP_FIELDS: &[&str] = &[
    "env",
    "labels",
    "containerLabels",
    "options",
    "sysctls",
    "networkAliases",
];

/// Recursive JSON diff producing one [`FieldChange`] per differing leaf (objects are descended
/// into; arrays and scalars compare whole, since a reordered list is a real change to Docker).
fn diff_values(
    path: &str,
    old: &serde_json::Value,
    new: &serde_json::Value,
    compare_unset: bool,
    out: &mut Vec<FieldChange>,
) {
    use serde_json::Value;
    match (old, new) {
        (_, Value::Null) if !compare_unset => {}
        (Value::Object(old_map), Value::Object(new_map)) => {
            let keys: BTreeSet<&String> = old_map.keys().chain(new_map.keys()).collect();
            for key in keys {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                let old_child = old_map.get(key).unwrap_or(&Value::Null);
                let new_child = new_map.get(key).unwrap_or(&Value::Null);
                // Entries of the map-valued fields (env, labels) absent from the spec are real
                // removals, while unset optional fields inside a policy are Docker's to default.
                let child_compare = compare_unset || MAP_FIELDS.contains(&child.as_str());
                diff_values(&child, old_child, new_child, child_compare, out);
            }
        }
        _ if old == new => {}
        _ => out.push(FieldChange {
            path: path.to_owned(),
            old: old.to_string(),
            new: new.to_string(),
        }),
    }
}

/// The service definitions a caller already holds, looked up by service name and compared with
/// one just read or built: the caller's copy is kept instead (a relist,
/// [`crate::docker::SwarmApi::list_services_sharing`]; a reload,
/// [`crate::desired::DesiredState::build`]), and the new one is freed at once, before the next
/// is made, instead of all of them later around what is kept.
#[derive(Clone, Copy)]
pub struct KnownDefinitions<'a>(
    &'a (dyn Fn(&str, &ServiceDefinition) -> Option<Arc<ServiceDefinition>> + Sync),
);

impl<'a> KnownDefinitions<'a> {
    /// `lookup(name, listed)` answers the held definition of service `name` when it equals
    /// `listed`.
    pub fn new(
        lookup: &'a (dyn Fn(&str, &ServiceDefinition) -> Option<Arc<ServiceDefinition>> + Sync),
    ) -> Self {
        KnownDefinitions(lookup)
    }

    /// Nothing held: every definition stays its own.
    pub fn none() -> Self {
        fn nothing(_: &str, _: &ServiceDefinition) -> Option<Arc<ServiceDefinition>> {
            None
        }
        KnownDefinitions(&nothing)
    }

    /// The held definition equal to `definition`, else `definition` itself.
    pub fn share(self, definition: Arc<ServiceDefinition>) -> Arc<ServiceDefinition> {
        (self.0)(&definition.name, &definition).unwrap_or(definition)
    }

    /// The held definition equal to `definition`, else `definition` made shared.
    pub fn share_new(self, definition: ServiceDefinition) -> Arc<ServiceDefinition> {
        (self.0)(&definition.name, &definition).unwrap_or_else(|| Arc::new(definition))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A definition is held for every service (twice while the swarm differs from the spec):
    /// the sections most services leave out stay boxed. Prints the size so a change shows in
    /// the log.
    #[test]
    fn a_definition_stays_small() {
        let size = std::mem::size_of::<ServiceDefinition>();
        println!("ServiceDefinition: {size} bytes");
        assert!(size <= 720, "ServiceDefinition grew to {size} bytes");
    }

    /// A small, valid definition to vary in tests.
    pub(crate) fn sample_service(name: &str) -> ServiceDefinition {
        ServiceDefinition {
            name: name.to_owned(),
            image: "goblog/quote-service:dev".to_owned(),
            mode: Mode::Replicated { replicas: 3 },
            command: None,
            args: None,
            env: BTreeMap::from([("RUST_LOG".to_owned(), "info".to_owned())]),
            labels: Labels::new(),
            container_labels: BTreeMap::new(),
            networks: vec!["my_network".to_owned()],
            endpoint_mode: EndpointMode::Dnsrr,
            ports: vec![],
            healthcheck: None,
            update_config: None,
            rollback_config: None,
            restart_policy: None,
            placement: None,
            resources: None,
            mounts: vec![],
            stop_grace_period_ns: None,
            user: None,
            workdir: None,
            ..ServiceDefinition::empty(name)
        }
    }

    /// An attachable overlay network to vary in tests.
    pub(crate) fn sample_network(name: &str) -> NetworkDefinition {
        NetworkDefinition {
            name: name.to_owned(),
            driver: "overlay".into(),
            attachable: true,
            internal: false,
            options: BTreeMap::new(),
            labels: BTreeMap::new(),
            subnet: None,
            gateway: None,
        }
    }

    /// The update policy Docker reports for a service whose spec set none.
    pub(crate) fn docker_default_update_policy() -> UpdatePolicy {
        UpdatePolicy {
            parallelism: Some(1),
            delay_ns: None,
            failure_action: Some(FailureAction::Pause),
            monitor_ns: None,
            max_failure_ratio: Some(0.0),
            order: Some(UpdateOrder::StopFirst),
        }
    }

    #[test]
    fn images_are_normalized_like_the_docker_cli() {
        for (written, sent) in [
            ("busybox", "busybox:latest"),
            (
                "swarm-operator-test/busybox",
                "swarm-operator-test/busybox:latest",
            ),
            ("localhost:5000/x", "localhost:5000/x:latest"),
            ("localhost:5000/x:1.2", "localhost:5000/x:1.2"),
            ("busybox:1.36", "busybox:1.36"),
            ("busybox:latest", "busybox:latest"),
            ("x@sha256:abcd", "x@sha256:abcd"),
            ("x:1@sha256:abcd", "x:1@sha256:abcd"),
            (
                "localhost:5000/x@sha256:abcd",
                "localhost:5000/x@sha256:abcd",
            ),
        ] {
            assert_eq!(normalize_image(written), sent, "{written}");
        }
    }

    #[test]
    fn capabilities_like_the_docker_cli() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            effective_caps(&s(&["net_admin", "CAP_SYS_TIME"]), &s(&["ALL", "chown"])),
            (s(&["CAP_NET_ADMIN", "CAP_SYS_TIME"]), s(&["ALL"]))
        );
        assert_eq!(
            effective_caps(&s(&["NET_ADMIN"]), &s(&["NET_ADMIN", "MKNOD"])),
            (s(&["CAP_NET_ADMIN"]), s(&["CAP_MKNOD"]))
        );
    }

    #[test]
    fn equal_definitions_have_no_drift_and_equal_hashes() {
        let a = sample_service("quote");
        assert!(field_changes(&a, &a.clone(), true).is_empty());
        assert_eq!(definition_hash(&a), definition_hash(&a.clone()));
    }

    /// The hash label of every service on a swarm is computed from this JSON: a change in how
    /// the typed fields serialize would make the operator rewrite every service once.
    #[test]
    fn typed_fields_serialize_to_the_engine_wire_names() {
        let port = Port {
            target: 53,
            published: Some(5353),
            protocol: Protocol::Udp,
            mode: PublishMode::Host,
        };
        assert_eq!(
            serde_json::to_string(&port).unwrap(),
            r#"{"target":53,"published":5353,"protocol":"udp","mode":"host"}"#
        );
        assert_eq!(serde_json::to_value(EndpointMode::Dnsrr).unwrap(), "dnsrr");
        assert_eq!(serde_json::to_value(EndpointMode::Vip).unwrap(), "vip");
        let policy = docker_default_update_policy();
        let json = serde_json::to_value(&policy).unwrap();
        assert_eq!(json["failureAction"], "pause");
        assert_eq!(json["order"], "stop-first");
        let restart = RestartPolicy {
            condition: Some(RestartCondition::OnFailure),
            delay_ns: None,
            max_attempts: None,
            window_ns: None,
        };
        assert_eq!(
            serde_json::to_value(&restart).unwrap()["condition"],
            "on-failure"
        );
        for (kind, wire) in [
            (MountKind::Spec(MountType::Volume), "volume"),
            (MountKind::Spec(MountType::Bind), "bind"),
            (MountKind::Spec(MountType::Tmpfs), "tmpfs"),
            (MountKind::EngineOnly(EngineOnlyMountType::Npipe), "npipe"),
            (
                MountKind::EngineOnly(EngineOnlyMountType::Cluster),
                "cluster",
            ),
            (MountKind::EngineOnly(EngineOnlyMountType::Image), "image"),
        ] {
            assert_eq!(serde_json::to_value(kind).unwrap(), wire);
            if let MountKind::EngineOnly(engine_only) = kind {
                assert_eq!(engine_only.as_str(), wire);
            }
        }
    }

    #[test]
    fn replica_change_is_reported_with_its_path() {
        let desired = sample_service("quote");
        let mut observed = desired.clone();
        observed.mode = Mode::Replicated { replicas: 1 };
        let changes = field_changes(&desired, &observed, false);
        assert_eq!(
            changes,
            vec![FieldChange {
                path: "mode.replicated.replicas".into(),
                old: "1".into(),
                new: "3".into()
            }]
        );
        assert_ne!(definition_hash(&desired), definition_hash(&observed));
    }

    #[test]
    fn unset_fields_are_docker_defaults_unless_the_spec_changed() {
        let desired = sample_service("quote");
        let mut observed = desired.clone();
        observed.update_config = Some(Box::new(docker_default_update_policy()));
        assert!(field_changes(&desired, &observed, false).is_empty());
        let changes = field_changes(&desired, &observed, true);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].path, "updateConfig");
        assert_eq!(changes[0].new, "null");
    }

    #[test]
    fn an_env_entry_added_by_hand_is_drift() {
        let desired = sample_service("quote");
        let mut observed = desired.clone();
        observed.env.insert("DEBUG".into(), "1".into());
        let changes = field_changes(&desired, &observed, false);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].path, "env.DEBUG");
        assert_eq!(changes[0].old, "\"1\"");
        assert_eq!(changes[0].new, "null");
    }

    #[test]
    fn env_changes_are_described_by_key_unless_values_are_asked_for() {
        let desired = sample_service("quote");
        let mut observed = desired.clone();
        observed.env.insert("RUST_LOG".into(), "s3cr3t-old".into());
        observed
            .env
            .insert("DB_PASSWORD".into(), "s3cr3t-added".into());
        observed.mode = Mode::Replicated { replicas: 1 };
        let changes = field_changes(&desired, &observed, false);
        let hidden: Vec<String> = changes.iter().map(|c| c.describe(Values::Hidden)).collect();
        assert_eq!(
            hidden,
            [
                "env.DB_PASSWORD removed",
                "env.RUST_LOG changed",
                "mode.replicated.replicas: 1 → 3"
            ]
        );
        let debug = format!("{changes:?} {observed:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(debug.contains("DB_PASSWORD"), "keys stay visible: {debug}");
        let shown = changes[1].describe(Values::Shown);
        assert_eq!(shown, "env.RUST_LOG: \"s3cr3t-old\" → \"info\"");
    }
}
