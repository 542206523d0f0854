//! The part of the compose file format that `docker stack deploy` honours, read from an
//! interpolated tree (every key it does not honour is recorded as dropped, with its origin),
//! and merged across several files with the docker CLI's rules. Derived sections
//! (`sections`, `decls`) are read through `Reader::section`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::node_de::{self, key_path};
use super::{decls, fields, sections};
use crate::spec::engine_api::Feature;
use crate::spec::{
    CredentialSpecSpec, DurationStr, FileReference, Isolation, PlacementSpec, PortSpec, Protocol,
    PublishMode, ResourceAmounts, ResourcesSpec, RestartPolicySpec, UlimitSpec, UpdatePolicy,
};
use crate::yaml::{Entry, Node, Origin, Value};

/// A key of the compose files that the import leaves out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// Where it was written.
    pub origin: Origin,
    /// Its path, like `services.web.build`.
    pub path: String,
    /// Why it is left out.
    pub reason: String,
}

/// A value of the wrong shape or out of range: the import fails (docker would refuse it too).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {}: {message}", super::names::shown(path))]
pub struct Invalid {
    /// Where it was written.
    pub origin: Origin,
    /// Its path.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// A key that older engines do not know, where it was written: refused when the engine's
/// Engine API version is known to be older (see [`crate::spec::engine_api`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gated {
    /// Where it was written.
    pub origin: Origin,
    /// Its path, like `services.web.oom_score_adj`.
    pub path: String,
    /// What it needs.
    pub feature: Feature,
}

/// One compose file (or several, merged).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Compose {
    /// Services by compose name.
    pub services: BTreeMap<String, Service>,
    /// Top-level networks by compose name.
    pub networks: BTreeMap<String, NetworkDecl>,
    /// Top-level volumes by compose name.
    pub volumes: BTreeMap<String, VolumeDecl>,
    /// Top-level configs by compose name.
    pub configs: BTreeMap<String, FileObjectDecl>,
    /// Top-level secrets by compose name.
    pub secrets: BTreeMap<String, FileObjectDecl>,
}

/// A service as far as stack deploy converts it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Service {
    /// Where the service was declared (first file).
    pub origin: Option<Origin>,
    pub image: Option<String>,
    pub entrypoint: Option<Vec<String>>,
    pub command: Option<Vec<String>>,
    /// `None` values: a name without value, taken from the environment at import.
    pub environment: BTreeMap<String, Option<String>>,
    /// Env files, resolved inside the compose file's directory.
    pub env_file: Vec<SourceFile>,
    pub labels: BTreeMap<String, String>,
    pub ports: Vec<PortSpec>,
    /// Networks and their aliases (`None`: no aliases given).
    pub networks: BTreeMap<String, Option<Vec<String>>>,
    pub volumes: Vec<VolumeMount>,
    pub configs: Vec<FileReference>,
    pub secrets: Vec<FileReference>,
    pub healthcheck: Option<Healthcheck>,
    pub stop_grace_period: Option<DurationStr>,
    pub stop_signal: Option<String>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub hostname: Option<String>,
    pub init: Option<bool>,
    pub read_only: Option<bool>,
    pub isolation: Option<Isolation>,
    pub credential_spec: Option<CredentialSpecSpec>,
    pub oom_score_adj: Option<i64>,
    pub tty: Option<bool>,
    pub stdin_open: Option<bool>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub sysctls: BTreeMap<String, String>,
    pub ulimits: BTreeMap<String, UlimitSpec>,
    pub extra_hosts: Vec<String>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub logging: Option<Logging>,
    /// Legacy `restart:`, used when `deploy.restart_policy` is absent.
    pub restart: Option<String>,
    pub deploy: Deploy,
    /// `depends_on`, in the order written.
    pub depends_on: Vec<Dependency>,
}

/// One `depends_on` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Dependency {
    /// The compose name of the service depended on.
    pub service: String,
    /// When the dependency counts as met.
    pub condition: DependencyCondition,
    /// Where it was written.
    pub origin: Origin,
}

/// `depends_on.<service>.condition`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DependencyCondition {
    /// `service_started`, and the list form.
    Started,
    /// `service_healthy`.
    Healthy,
    /// `service_completed_successfully`: the dependency is a job that must have exited 0.
    CompletedSuccessfully,
}

impl DependencyCondition {
    /// The compose word.
    pub fn as_str(self) -> &'static str {
        match self {
            DependencyCondition::Started => "service_started",
            DependencyCondition::Healthy => "service_healthy",
            DependencyCondition::CompletedSuccessfully => "service_completed_successfully",
        }
    }

    fn parse(word: &str) -> Option<Self> {
        [
            DependencyCondition::Started,
            DependencyCondition::Healthy,
            DependencyCondition::CompletedSuccessfully,
        ]
        .into_iter()
        .find(|c| c.as_str() == word)
    }
}

/// `logging:`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Logging {
    pub driver: Option<String>,
    #[serde(deserialize_with = "fields::string_map")]
    pub options: BTreeMap<String, String>,
}

/// `healthcheck:`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Healthcheck {
    #[serde(deserialize_with = "fields::healthcheck_test")]
    pub test: Vec<String>,
    #[serde(deserialize_with = "fields::duration")]
    pub interval: Option<DurationStr>,
    #[serde(deserialize_with = "fields::duration")]
    pub timeout: Option<DurationStr>,
    pub retries: Option<u64>,
    #[serde(deserialize_with = "fields::duration")]
    pub start_period: Option<DurationStr>,
    /// Needs Engine API 1.44: gated where the section is read.
    #[serde(deserialize_with = "fields::duration")]
    pub start_interval: Option<DurationStr>,
    pub disable: bool,
}

/// `deploy:`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Deploy {
    pub mode: Option<String>,
    pub replicas: Option<u64>,
    pub endpoint_mode: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub resources: ResourcesSpec,
    pub restart_policy: Option<RestartPolicySpec>,
    pub update_config: Option<UpdatePolicy>,
    pub rollback_config: Option<UpdatePolicy>,
    pub placement: PlacementSpec,
    /// Where each key was written (`replicas`, `labels.KEY`, …), for reports about them.
    pub origins: BTreeMap<String, Origin>,
}

/// A service volume entry, short or long syntax.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VolumeMount {
    /// `volume`, `bind` or `tmpfs`.
    pub kind: String,
    pub source: Option<String>,
    pub target: String,
    pub read_only: bool,
    pub bind_propagation: Option<String>,
    pub no_copy: Option<bool>,
    pub tmpfs_size: Option<u64>,
    pub origin: Option<Origin>,
}

/// A file that a compose file points at, found inside its directory (see [`super::source`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Its canonical path.
    pub path: PathBuf,
    /// Where the path was written.
    pub origin: Origin,
    /// The field that names it, like `services.web.env_file[0]`.
    pub field: String,
}

/// A top-level network.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetworkDecl {
    /// Where its key was written.
    pub origin: Option<Origin>,
    /// Where `name:` was written.
    pub name_origin: Option<Origin>,
    pub name: Option<String>,
    pub driver: Option<String>,
    pub driver_opts: BTreeMap<String, String>,
    pub attachable: bool,
    pub internal: bool,
    pub external: bool,
    pub labels: BTreeMap<String, String>,
    pub ipam_driver: Option<String>,
    pub subnets: Vec<String>,
}

/// A top-level volume.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VolumeDecl {
    /// Where its key was written.
    pub origin: Option<Origin>,
    /// Where `name:` was written.
    pub name_origin: Option<Origin>,
    pub name: Option<String>,
    pub driver: Option<String>,
    pub driver_opts: Option<BTreeMap<String, String>>,
    pub external: bool,
    pub labels: BTreeMap<String, String>,
}

/// A top-level config or secret.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileObjectDecl {
    /// Where `name:` was written.
    pub name_origin: Option<Origin>,
    pub name: Option<String>,
    /// The file, found inside the compose file's directory.
    pub file: Option<SourceFile>,
    pub external: bool,
    pub labels: BTreeMap<String, String>,
    pub origin: Option<Origin>,
}

/// Keys swarm ignores (stack deploy prints "Ignoring unsupported options") or that only
/// `docker compose` uses.
const IGNORED_BY_SWARM: &[&str] = &[
    "build",
    "cgroup_parent",
    "container_name",
    "devices",
    "external_links",
    "links",
    "network_mode",
    "privileged",
    "security_opt",
    "userns_mode",
    "expose",
    "profiles",
    "pull_policy",
    "platform",
    "tmpfs",
    "volumes_from",
    "mem_limit",
    "memswap_limit",
    "cpus",
    "cpu_shares",
    "cpu_quota",
    "shm_size",
    "ipc",
    "pid",
    "domainname",
    "mac_address",
    "scale",
];

/// Reads and records what one file says.
pub struct Reader<'a> {
    /// Directory relative paths (env files, config files, bind sources) resolve against.
    pub base_dir: &'a Path,
    /// The environment, for `environment` entries without a value.
    pub lookup: &'a dyn Fn(&str) -> Option<String>,
    /// Keys left out.
    pub dropped: Vec<Dropped>,
    /// Values that make the import fail.
    pub invalid: Vec<Invalid>,
    /// Keys older engines do not know.
    pub gated: Vec<Gated>,
}

type Fields<'n> = Vec<&'n Entry>;

/// Why a key of a derived section is left out, from the keys of its path inside the section
/// (`["limits", "foo"]` for `deploy.resources.limits.foo`).
type Reason = fn(&[&str]) -> &'static str;

/// One step of a path inside a section, as `serde_ignored` reports it.
enum Step {
    Key(String),
    Index(usize),
}

fn steps(path: &serde_ignored::Path<'_>, out: &mut Vec<Step>) {
    use serde_ignored::Path;
    match path {
        Path::Root => {}
        Path::Seq { parent, index } => {
            steps(parent, out);
            out.push(Step::Index(*index));
        }
        Path::Map { parent, key } => {
            steps(parent, out);
            out.push(Step::Key(key.clone()));
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => {
            steps(parent, out);
        }
    }
}

/// The entry of mapping `node` with key `key`.
fn entry<'n>(node: &'n Node, key: &str) -> Option<&'n Entry> {
    node.entries()?.iter().find(|e| e.key == key)
}

impl<'a> Reader<'a> {
    fn drop_key(&mut self, entry: &Entry, path: &str, reason: &str) {
        self.dropped.push(Dropped {
            origin: entry.origin.clone(),
            path: path.to_owned(),
            reason: reason.to_owned(),
        });
    }

    fn gate(&mut self, entry: &Entry, path: &str, feature: Feature) {
        self.gated.push(Gated {
            origin: entry.origin.clone(),
            path: path.to_owned(),
            feature,
        });
    }

    fn bad(&mut self, node: &Node, path: &str, message: impl Into<String>) {
        self.invalid.push(Invalid {
            origin: node.origin.clone(),
            path: path.to_owned(),
            message: message.into(),
        });
    }

    /// Reads the derived section `T` at `node`: every key its types do not declare is recorded
    /// as dropped, where it was written, with `reason`; a value that does not fit is recorded
    /// as invalid (the first of the section: serde stops there), and the section is `None`.
    fn section<T: DeserializeOwned>(
        &mut self,
        node: &Node,
        path: &str,
        reason: Reason,
    ) -> Option<T> {
        let mut ignored = Vec::new();
        let result: Result<T, _> =
            serde_ignored::deserialize(node_de::NodeDeserializer::new(node, path), |p| {
                let mut found = Vec::new();
                steps(&p, &mut found);
                ignored.push(found);
            });
        for found in ignored {
            self.drop_ignored(node, path, &found, reason);
        }
        match result {
            Ok(section) => Some(section),
            Err(e) => {
                let message = e.message();
                let (origin, path) =
                    e.at.unwrap_or_else(|| (node.origin.clone(), path.to_owned()));
                self.invalid.push(Invalid {
                    origin,
                    path,
                    message,
                });
                None
            }
        }
    }

    /// Records the key that `serde_ignored` found at `found` below `node`, located in the tree.
    fn drop_ignored(&mut self, node: &Node, path: &str, found: &[Step], reason: Reason) {
        let mut at = node;
        let mut origin = node.origin.clone();
        let mut path = path.to_owned();
        let mut keys = Vec::new();
        for step in found {
            match step {
                Step::Key(key) => {
                    if let Some(e) = entry(at, key) {
                        origin = e.origin.clone();
                        at = &e.value;
                    }
                    path = key_path(&path, key);
                    keys.push(key.as_str());
                }
                Step::Index(i) => {
                    if let Value::Seq(items) = &at.value
                        && let Some(item) = items.get(*i)
                    {
                        origin = item.origin.clone();
                        at = item;
                    }
                    path = format!("{path}[{i}]");
                }
            }
        }
        self.dropped.push(Dropped {
            origin,
            path,
            reason: reason(&keys).to_owned(),
        });
    }

    /// The entries of a mapping, or an error if it is something else (null: none).
    fn map<'n>(&mut self, node: &'n Node, path: &str) -> Fields<'n> {
        match &node.value {
            Value::Map(entries) => entries.iter().collect(),
            Value::Null => Vec::new(),
            _ => {
                self.bad(
                    node,
                    path,
                    format!("expected a mapping, found {}", node.describe()),
                );
                Vec::new()
            }
        }
    }

    fn string(&mut self, node: &Node, path: &str) -> Option<String> {
        let s = node.scalar();
        if s.is_none() && !matches!(node.value, Value::Null) {
            self.bad(
                node,
                path,
                format!("expected a string, found {}", node.describe()),
            );
        }
        s
    }

    fn bool(&mut self, node: &Node, path: &str) -> Option<bool> {
        match &node.value {
            Value::Bool(b) => Some(*b),
            // Interpolated values are strings; the docker CLI casts them by the schema.
            Value::Str(s) => match s.to_ascii_lowercase().as_str() {
                "true" | "yes" | "y" | "on" => Some(true),
                "false" | "no" | "n" | "off" => Some(false),
                _ => {
                    self.bad(node, path, "not a boolean: write true or false");
                    None
                }
            },
            _ => {
                self.bad(
                    node,
                    path,
                    format!("expected a boolean, found {}", node.describe()),
                );
                None
            }
        }
    }

    fn u64(&mut self, node: &Node, path: &str) -> Option<u64> {
        match &node.value {
            Value::Int(i) if u64::try_from(*i).is_ok() => u64::try_from(*i).ok(),
            Value::Str(s) if s.trim().parse::<u64>().is_ok() => s.trim().parse().ok(),
            _ => {
                self.bad(node, path, "expected a non-negative integer");
                None
            }
        }
    }

    fn i64(&mut self, node: &Node, path: &str) -> Option<i64> {
        match &node.value {
            Value::Int(i) if i64::try_from(*i).is_ok() => i64::try_from(*i).ok(),
            Value::Str(s) if s.trim().parse::<i64>().is_ok() => s.trim().parse().ok(),
            _ => {
                self.bad(node, path, "expected an integer");
                None
            }
        }
    }

    fn duration(&mut self, node: &Node, path: &str) -> Option<DurationStr> {
        let text = self.string(node, path)?;
        match crate::spec::quantity::parse_duration(text.trim()) {
            Ok(d) => Some(DurationStr(d)),
            Err(_) => {
                self.bad(node, path, "not a duration like `10s`, `1m30s`, `1.5s`");
                None
            }
        }
    }

    fn strings(&mut self, node: &Node, path: &str) -> Vec<String> {
        match &node.value {
            Value::Seq(items) => items.iter().filter_map(|i| self.string(i, path)).collect(),
            Value::Null => Vec::new(),
            _ => self.string(node, path).into_iter().collect(),
        }
    }

    /// A command: a list, or a string split like a shell would (quotes, no expansion).
    fn command(&mut self, node: &Node, path: &str) -> Option<Vec<String>> {
        match &node.value {
            Value::Seq(_) => Some(self.strings(node, path)),
            Value::Null => None,
            _ => {
                let text = self.string(node, path)?;
                match shell_split(&text) {
                    Some(words) => Some(words),
                    None => {
                        self.bad(node, path, "unbalanced quotes");
                        None
                    }
                }
            }
        }
    }

    /// A mapping or a list of `KEY=VALUE` (the compose "list or dict" form); it leaves no key
    /// out.
    fn key_values(&mut self, node: &Node, path: &str) -> BTreeMap<String, Option<String>> {
        let pairs = self.section(node, path, |_| "not a KEY=VALUE entry");
        pairs.map(|p: fields::KeyValues| p.0).unwrap_or_default()
    }

    fn labels(&mut self, node: &Node, path: &str) -> BTreeMap<String, String> {
        self.key_values(node, path)
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect()
    }

    /// The file `node` names, if it is inside the compose file's directory (and exists);
    /// otherwise the problem is recorded at `node`, without the path as written (it may come
    /// from the environment).
    fn source_file(&mut self, node: &Node, path: &str) -> Option<SourceFile> {
        let written = self.string(node, path)?;
        self.resolve_file(&written, node, path)
    }

    /// The file `written` at `node` names, as [`Reader::source_file`] finds it.
    fn resolve_file(&mut self, written: &str, node: &Node, path: &str) -> Option<SourceFile> {
        match super::source::resolve_inside(self.base_dir, written) {
            Ok(resolved) => Some(SourceFile {
                path: resolved,
                origin: node.origin.clone(),
                field: path.to_owned(),
            }),
            Err(problem) => {
                self.bad(node, path, problem.to_string());
                None
            }
        }
    }

    fn resolve(&self, relative: &str) -> PathBuf {
        let p = Path::new(relative);
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.base_dir.join(p)
        }
    }

    /// Reads one (interpolated) compose file.
    pub fn read(&mut self, root: &Node) -> Compose {
        let mut compose = Compose::default();
        for e in self.map(root, "") {
            let key = e.key.as_str();
            match key {
                "version" | "name" => {}
                k if k.starts_with("x-") => {}
                "services" => {
                    for s in self.map(&e.value, "services") {
                        let path = format!("services.{}", s.key);
                        let service = self.service(&s.value, &path);
                        compose.services.insert(
                            s.key.clone(),
                            Service {
                                origin: Some(s.origin.clone()),
                                ..service
                            },
                        );
                    }
                }
                "networks" => {
                    for n in self.map(&e.value, "networks") {
                        let path = format!("networks.{}", n.key);
                        let network: Option<decls::Network> =
                            self.section(&n.value, &path, decls::network_dropped);
                        let mut network = NetworkDecl::from(network.unwrap_or_default());
                        network.origin = Some(n.origin.clone());
                        network.name_origin = name_origin(&n.value);
                        // An external object is called by its key unless named (loader rule).
                        if network.external && network.name.is_none() {
                            network.name = Some(n.key.clone());
                        }
                        compose.networks.insert(n.key.clone(), network);
                    }
                }
                "volumes" => {
                    for v in self.map(&e.value, "volumes") {
                        let path = format!("volumes.{}", v.key);
                        let volume: Option<decls::Volume> =
                            self.section(&v.value, &path, decls::volume_dropped);
                        let mut volume = VolumeDecl::from(volume.unwrap_or_default());
                        volume.origin = Some(v.origin.clone());
                        volume.name_origin = name_origin(&v.value);
                        if volume.external && volume.name.is_none() {
                            volume.name = Some(v.key.clone());
                        }
                        compose.volumes.insert(v.key.clone(), volume);
                    }
                }
                "configs" | "secrets" => {
                    for o in self.map(&e.value, key) {
                        let path = format!("{key}.{}", o.key);
                        let decl = self.file_object(&o.value, &path);
                        let mut decl = FileObjectDecl {
                            origin: Some(o.origin.clone()),
                            ..decl
                        };
                        if decl.external && decl.name.is_none() {
                            decl.name = Some(o.key.clone());
                        }
                        let target = if key == "configs" {
                            &mut compose.configs
                        } else {
                            &mut compose.secrets
                        };
                        target.insert(o.key.clone(), decl);
                    }
                }
                _ => self.drop_key(e, key, "not a top-level key of the compose format"),
            }
        }
        compose
    }

    fn service(&mut self, node: &Node, path: &str) -> Service {
        let mut s = Service::default();
        for e in self.map(node, path) {
            let key = e.key.as_str();
            let p = format!("{path}.{key}");
            let v = &e.value;
            match key {
                "image" => s.image = self.string(v, &p),
                "entrypoint" => s.entrypoint = self.command(v, &p),
                "command" => s.command = self.command(v, &p),
                "environment" => s.environment = self.key_values(v, &p),
                "env_file" => {
                    let nodes: Vec<(&Node, String)> = match &v.value {
                        Value::Seq(items) => items
                            .iter()
                            .enumerate()
                            .filter_map(|(i, item)| match &item.value {
                                Value::Map(_) => {
                                    item.get("path").map(|n| (n, format!("{p}[{i}].path")))
                                }
                                _ => Some((item, format!("{p}[{i}]"))),
                            })
                            .collect(),
                        _ => vec![(v, p.clone())],
                    };
                    s.env_file = nodes
                        .into_iter()
                        .filter_map(|(n, field)| self.source_file(n, &field))
                        .collect();
                }
                "labels" => s.labels = self.labels(v, &p),
                "ports" => {
                    if let Value::Seq(items) = &v.value {
                        for (i, item) in items.iter().enumerate() {
                            let ip = format!("{p}[{i}]");
                            s.ports.extend(self.port(item, &ip));
                        }
                    }
                }
                "networks" => {
                    let networks = self.section(v, &p, sections::networks_dropped);
                    s.networks = networks
                        .map(|n: sections::Networks| n.0)
                        .unwrap_or_default();
                }
                "volumes" => {
                    if let Value::Seq(items) = &v.value {
                        for (i, item) in items.iter().enumerate() {
                            if let Some(m) = self.volume_mount(item, &format!("{p}[{i}]")) {
                                s.volumes.push(m);
                            }
                        }
                    }
                }
                "configs" | "secrets" => {
                    let refs = self.section(v, &p, sections::file_refs_dropped);
                    let refs = refs.map(|r: sections::FileRefs| r.0.into_iter().map(|r| r.0));
                    let refs = refs.map(Iterator::collect).unwrap_or_default();
                    if key == "configs" {
                        s.configs = refs;
                    } else {
                        s.secrets = refs;
                    }
                }
                "healthcheck" => {
                    if let Some(e) = entry(v, "start_interval") {
                        let ep = format!("{p}.start_interval");
                        self.gate(e, &ep, Feature::HealthcheckStartInterval);
                    }
                    let healthcheck = self.section(v, &p, |_| "not supported by the spec kinds");
                    s.healthcheck = Some(healthcheck.unwrap_or_default());
                }
                "stop_grace_period" => s.stop_grace_period = self.duration(v, &p),
                "stop_signal" => s.stop_signal = self.string(v, &p),
                "user" => s.user = self.string(v, &p),
                "working_dir" => s.working_dir = self.string(v, &p),
                "hostname" => s.hostname = self.string(v, &p),
                "init" => s.init = self.bool(v, &p),
                "read_only" => s.read_only = self.bool(v, &p),
                "isolation" => {
                    s.isolation = match self.string(v, &p).as_deref() {
                        Some("default") => Some(Isolation::Default),
                        Some("process") => Some(Isolation::Process),
                        Some("hyperv") => Some(Isolation::Hyperv),
                        Some(_) => {
                            self.bad(v, &p, "unknown isolation: default, process or hyperv");
                            None
                        }
                        None => None,
                    }
                }
                "credential_spec" => {
                    if let Some(config) = entry(v, "config") {
                        let cp = format!("{p}.config");
                        self.gate(config, &cp, Feature::CredentialSpecConfig);
                    }
                    let spec = self.section(v, &p, sections::credential_spec_dropped);
                    s.credential_spec = spec.map(|c: sections::CredentialSpec| c.0);
                }
                "oom_score_adj" => {
                    self.gate(e, &p, Feature::OomScoreAdj);
                    s.oom_score_adj = self.i64(v, &p);
                    if s.oom_score_adj
                        .is_some_and(|o| !(-1000..=1000).contains(&o))
                    {
                        self.bad(v, &p, "out of range: -1000 to 1000");
                    }
                }
                "tty" => s.tty = self.bool(v, &p),
                "stdin_open" => s.stdin_open = self.bool(v, &p),
                "cap_add" => {
                    self.gate(e, &p, Feature::CapAdd);
                    s.cap_add = self.strings(v, &p);
                }
                "cap_drop" => {
                    self.gate(e, &p, Feature::CapDrop);
                    s.cap_drop = self.strings(v, &p);
                }
                "sysctls" => {
                    self.gate(e, &p, Feature::Sysctls);
                    s.sysctls = self.labels(v, &p);
                }
                "ulimits" => {
                    self.gate(e, &p, Feature::Ulimits);
                    let ulimits = self.section(v, &p, sections::ulimits_dropped);
                    s.ulimits = ulimits
                        .map(|u: sections::Ulimits| {
                            u.0.into_iter().map(|(k, u)| (k, u.0)).collect()
                        })
                        .unwrap_or_default();
                }
                "extra_hosts" => {
                    s.extra_hosts = match &v.value {
                        Value::Map(entries) => entries
                            .iter()
                            .map(|e| format!("{}:{}", e.key, e.value.scalar().unwrap_or_default()))
                            .collect(),
                        _ => self.strings(v, &p).into_iter().map(host_colon_ip).collect(),
                    }
                }
                "dns" => s.dns = self.strings(v, &p),
                "dns_search" => s.dns_search = self.strings(v, &p),
                "logging" => {
                    let logging = self.section(v, &p, |_| "not a logging option");
                    s.logging = Some(logging.unwrap_or_default());
                }
                "restart" => s.restart = self.string(v, &p),
                "deploy" => s.deploy = self.deploy(v, &p),
                "depends_on" => s.depends_on = self.depends_on(v, &p),
                k if k.starts_with("x-") => {}
                k if IGNORED_BY_SWARM.contains(&k) => self.drop_key(
                    e,
                    &p,
                    "ignored by docker stack deploy (swarm has no such setting)",
                ),
                _ => self.drop_key(e, &p, "not supported by the spec kinds"),
            }
        }
        s
    }

    /// `depends_on`: a list of service names, or a mapping of service name to `condition`
    /// (`required` is read and needs no handling: an entry naming no service of the stack is
    /// left out, with or without it).
    fn depends_on(&mut self, node: &Node, path: &str) -> Vec<Dependency> {
        let started = |service: String, origin: &Origin| Dependency {
            service,
            condition: DependencyCondition::Started,
            origin: origin.clone(),
        };
        match &node.value {
            Value::Seq(items) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| {
                    let name = self.string(item, &format!("{path}[{i}]"))?;
                    Some(started(name, &item.origin))
                })
                .collect(),
            Value::Map(entries) => {
                let mut dependencies = Vec::new();
                for e in entries {
                    let ep = format!("{path}.{}", e.key);
                    let mut dependency = started(e.key.clone(), &e.origin);
                    for f in self.map(&e.value, &ep) {
                        let fp = format!("{ep}.{}", f.key);
                        match f.key.as_str() {
                            "condition" => {
                                let Some(word) = self.string(&f.value, &fp) else {
                                    continue;
                                };
                                match DependencyCondition::parse(&word) {
                                    Some(condition) => dependency.condition = condition,
                                    None => self.bad(
                                        &f.value,
                                        &fp,
                                        "unknown condition: service_started, \
                                         service_healthy or service_completed_successfully",
                                    ),
                                }
                            }
                            "required" => {
                                self.bool(&f.value, &fp);
                            }
                            "restart" => {
                                if self.bool(&f.value, &fp) == Some(true) {
                                    self.drop_key(
                                        f,
                                        &fp,
                                        "the operator does not restart a service when one it \
                                         depends on is updated",
                                    );
                                }
                            }
                            _ => self.drop_key(f, &fp, "not a depends_on option"),
                        }
                    }
                    dependencies.push(dependency);
                }
                dependencies
            }
            Value::Null => Vec::new(),
            _ => {
                self.bad(
                    node,
                    path,
                    format!(
                        "expected a list of services or a mapping, found {}",
                        node.describe()
                    ),
                );
                Vec::new()
            }
        }
    }

    fn port(&mut self, node: &Node, path: &str) -> Vec<PortSpec> {
        match &node.value {
            Value::Map(_) => {
                let long = self.section(node, path, sections::port_dropped);
                let Some(long): Option<sections::LongPort> = long else {
                    return Vec::new();
                };
                let Some(target) = long.target.filter(|t| *t != 0) else {
                    self.bad(node, path, "a port needs `target` (1-65535)");
                    return Vec::new();
                };
                vec![PortSpec {
                    target,
                    published: long.published.filter(|p| *p != 0),
                    protocol: long.protocol.unwrap_or_default(),
                    mode: long.mode.unwrap_or_default(),
                }]
            }
            _ => {
                let Some(text) = self.string(node, path) else {
                    return Vec::new();
                };
                match parse_short_port(&text) {
                    Some(ports) => ports,
                    None => {
                        self.bad(
                            node,
                            path,
                            "not a port like `80`, `8080:80`, `8080:80/udp`, `9000-9001:9000-9001`",
                        );
                        Vec::new()
                    }
                }
            }
        }
    }

    fn volume_mount(&mut self, node: &Node, path: &str) -> Option<VolumeMount> {
        let mut m = VolumeMount {
            origin: Some(node.origin.clone()),
            ..Default::default()
        };
        match &node.value {
            Value::Map(_) => {
                let long: sections::LongVolume =
                    self.section(node, path, sections::volume_dropped)?;
                m.kind = long.kind.unwrap_or_default();
                if m.kind.is_empty() {
                    m.kind = "volume".into();
                }
                m.source = long.source;
                m.target = long.target.unwrap_or_default();
                m.read_only = long.read_only;
                m.bind_propagation = long.bind.propagation;
                m.no_copy = long.volume.nocopy;
                m.tmpfs_size = long.tmpfs.size;
            }
            _ => {
                let text = self.string(node, path)?;
                let parts: Vec<&str> = text.split(':').collect();
                let (source, target, mode) = match parts.as_slice() {
                    [target] => (None, *target, None),
                    [source, target] => (Some(*source), *target, None),
                    [source, target, mode] => (Some(*source), *target, Some(*mode)),
                    _ => {
                        self.bad(
                            node,
                            path,
                            format!("`{text}` is not `[SOURCE:]TARGET[:MODE]`"),
                        );
                        return None;
                    }
                };
                m.target = target.to_owned();
                m.kind = match source {
                    None => "volume".into(),
                    Some(s) if s.starts_with(['/', '.', '~']) => "bind".into(),
                    Some(_) => "volume".into(),
                };
                m.source = source.map(str::to_owned);
                for option in mode.into_iter().flat_map(|m| m.split(',')) {
                    match option {
                        "ro" => m.read_only = true,
                        "rw" => m.read_only = false,
                        "nocopy" => m.no_copy = Some(true),
                        "rprivate" | "private" | "rshared" | "shared" | "rslave" | "slave" => {
                            m.bind_propagation = Some(option.to_owned());
                        }
                        "z" | "Z" | "cached" | "delegated" | "consistent" => {}
                        _ => self.bad(
                            node,
                            path,
                            "unknown volume mode: ro, rw, z, Z, nocopy or a bind propagation",
                        ),
                    }
                }
            }
        }
        if m.kind == "bind"
            && let Some(source) = &m.source
        {
            // The docker CLI makes relative bind sources absolute against the compose file.
            let expanded = match source.strip_prefix('~') {
                Some(rest) => std::env::var("HOME")
                    .map(|h| format!("{h}{rest}"))
                    .unwrap_or_else(|_| source.clone()),
                None => source.clone(),
            };
            // An absolute source is sent verbatim (a trailing slash stays, as with
            // `docker stack deploy`); only a relative one is joined and cleaned, as Go's
            // `filepath.Join` does.
            m.source = Some(if Path::new(&expanded).is_absolute() {
                expanded
            } else {
                normalize_path(&self.resolve(&expanded))
            });
        }
        Some(m)
    }

    fn deploy(&mut self, node: &Node, path: &str) -> Deploy {
        let mut d = Deploy::default();
        for e in self.map(node, path) {
            let p = format!("{path}.{}", e.key);
            let v = &e.value;
            d.origins.insert(e.key.clone(), e.origin.clone());
            match e.key.as_str() {
                "mode" => {
                    d.mode = self.string(v, &p);
                    if matches!(d.mode.as_deref(), Some("replicated-job" | "global-job")) {
                        self.gate(e, &p, Feature::JobMode);
                    }
                }
                "replicas" => d.replicas = self.u64(v, &p),
                "endpoint_mode" => d.endpoint_mode = self.string(v, &p),
                "labels" => {
                    d.labels = self.labels(v, &p);
                    d.origins.extend(label_origins(v));
                }
                "resources" => {
                    let pids = entry(v, "limits").and_then(|l| entry(&l.value, "pids"));
                    if let Some(pids) = pids {
                        let pp = format!("{p}.limits.pids");
                        self.gate(pids, &pp, Feature::PidsLimit);
                    }
                    let resources = self.section(v, &p, sections::resources_dropped);
                    d.resources = resources
                        .map(|r: sections::Resources| r.0)
                        .unwrap_or_default();
                }
                "restart_policy" => {
                    let policy = self.section(v, &p, sections::restart_policy_dropped);
                    let policy = policy.map(|r: sections::RestartPolicy| r.0);
                    d.restart_policy = Some(policy.unwrap_or_default());
                }
                "update_config" | "rollback_config" => {
                    let policy = self.section(v, &p, sections::update_config_dropped);
                    let policy = Some(
                        policy
                            .map(|u: sections::UpdateConfig| u.0)
                            .unwrap_or_default(),
                    );
                    if e.key == "update_config" {
                        d.update_config = policy;
                    } else {
                        d.rollback_config = policy;
                    }
                }
                "placement" => {
                    if let Some(max) = entry(v, "max_replicas_per_node") {
                        let mp = format!("{p}.max_replicas_per_node");
                        self.gate(max, &mp, Feature::MaxReplicasPerNode);
                    }
                    let placement = self.section(v, &p, sections::placement_dropped);
                    d.placement = placement
                        .map(|pl: sections::Placement| pl.0)
                        .unwrap_or_default();
                }
                _ => self.drop_key(e, &p, "not supported by the spec kinds"),
            }
        }
        d
    }

    /// A config or secret: the derived declaration, and its file resolved inside the compose
    /// file's directory.
    fn file_object(&mut self, node: &Node, path: &str) -> FileObjectDecl {
        let read: Option<decls::FileObject> = self.section(node, path, decls::file_object_dropped);
        let read = read.unwrap_or_default();
        let written = read.file.clone();
        let mut d = FileObjectDecl::from(read);
        d.name_origin = name_origin(node);
        if let (Some(written), Some(file)) = (written, entry(node, "file")) {
            d.file = self.resolve_file(&written, &file.value, &key_path(path, "file"));
        }
        if d.file.is_none() && !d.external && node.get("file").is_none() {
            self.bad(node, path, "needs `file:` (or `external: true`)");
        }
        d
    }
}

/// Where the `name:` of a declaration was written (its value), if it has one.
fn name_origin(node: &Node) -> Option<Origin> {
    entry(node, "name").map(|e| e.value.origin.clone())
}

/// `host=ip` (newer compose syntax) → `host:ip`; `host:ip` as it is. The address may contain
/// colons (IPv6), so `=` separates only when it comes before the first colon.
/// `labels.KEY` → where each label of a mapping or `KEY=VALUE` list was written.
fn label_origins(node: &Node) -> Vec<(String, Origin)> {
    match &node.value {
        Value::Map(entries) => entries
            .iter()
            .map(|e| (format!("labels.{}", e.key), e.origin.clone()))
            .collect(),
        Value::Seq(items) => items
            .iter()
            .filter_map(|item| {
                let text = item.scalar()?;
                let key = text.split_once('=').map_or(text.as_str(), |(k, _)| k);
                Some((format!("labels.{key}"), item.origin.clone()))
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn host_colon_ip(entry: String) -> String {
    match (entry.find('='), entry.find(':')) {
        (Some(eq), colon) if colon.is_none_or(|c| eq < c) => {
            format!("{}:{}", &entry[..eq], &entry[eq + 1..])
        }
        _ => entry,
    }
}

/// `a/./b/../c` → `a/c`, without touching the file system (the path need not exist here).
fn normalize_path(path: &Path) -> String {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out.display().to_string()
}

/// docker's `units.RAMInBytes`: a number with an optional binary unit, case-insensitive
/// (`512m`, `1G`, `64kb`, `2GiB`): powers of 1024, as stack deploy reads `memory:`.
pub fn parse_ram_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let number_len = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let number: f64 = text[..number_len].parse().ok()?;
    let unit = text[number_len..].trim().to_ascii_lowercase();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(&unit);
    let factor: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        "p" => 1 << 50,
        _ => return None,
    };
    Some((number * factor as f64) as u64)
}

/// Short port syntax: `[HOST_IP:][PUBLISHED[-END]:]TARGET[-END][/PROTOCOL]`; ranges expand
/// to one port each. Published through the routing mesh, as stack deploy does.
pub fn parse_short_port(text: &str) -> Option<Vec<PortSpec>> {
    let (spec, protocol) = match text.rsplit_once('/') {
        Some((spec, "tcp")) => (spec, Protocol::Tcp),
        Some((spec, "udp")) => (spec, Protocol::Udp),
        Some((spec, "sctp")) => (spec, Protocol::Sctp),
        Some(_) => return None,
        None => (text, Protocol::Tcp),
    };
    let parts: Vec<&str> = spec.rsplitn(3, ':').collect();
    let (target, published) = match parts.as_slice() {
        [target] => (*target, None),
        [target, published] => (*target, Some(*published)),
        [target, published, _host_ip] => (*target, Some(*published).filter(|p| !p.is_empty())),
        _ => return None,
    };
    let range = |r: &str| -> Option<(u16, u16)> {
        match r.split_once('-') {
            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
            None => {
                let p = r.parse().ok()?;
                Some((p, p))
            }
        }
    };
    let (t0, t1) = range(target)?;
    let published = match published {
        Some(p) => Some(range(p)?),
        None => None,
    };
    if t0 == 0 || t1 < t0 {
        return None;
    }
    let count = t1 - t0;
    if let Some((p0, p1)) = published
        && p1 - p0 != count
        && p0 != p1
    {
        return None;
    }
    Some(
        (0..=count)
            .map(|i| PortSpec {
                target: t0 + i,
                published: published
                    .map(|(p0, p1)| if p0 == p1 { p0 } else { p0 + i })
                    .filter(|p| *p != 0),
                protocol,
                mode: PublishMode::Ingress,
            })
            .collect(),
    )
}

/// Splits a command string like a POSIX shell would split words (quotes and backslashes; no
/// expansion), which is what the compose loader does with string commands.
pub fn shell_split(text: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => word.push(c),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => match chars.next()? {
                            c @ ('"' | '\\' | '$' | '`') => word.push(c),
                            c => {
                                word.push('\\');
                                word.push(c);
                            }
                        },
                        c => word.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.push(chars.next()?);
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Some(words)
}

/// Merges `over` into `base` with the docker CLI's rules for `-c a.yml -c b.yml`: services
/// field by field (scalars replaced when set, maps merged by key, lists appended, ports /
/// volumes / configs / secrets merged by key, commands replaced); top-level networks,
/// volumes, configs and secrets replaced whole by name.
pub fn merge(base: &mut Compose, over: Compose) {
    for (name, service) in over.services {
        match base.services.get_mut(&name) {
            Some(existing) => merge_service(existing, service),
            None => {
                base.services.insert(name, service);
            }
        }
    }
    base.networks.extend(over.networks);
    base.volumes.extend(over.volumes);
    base.configs.extend(over.configs);
    base.secrets.extend(over.secrets);
}

fn set<T>(base: &mut Option<T>, over: Option<T>) {
    if over.is_some() {
        *base = over;
    }
}

fn merge_service(b: &mut Service, o: Service) {
    set(&mut b.image, o.image);
    if o.entrypoint.as_ref().is_some_and(|c| !c.is_empty()) {
        b.entrypoint = o.entrypoint;
    }
    if o.command.as_ref().is_some_and(|c| !c.is_empty()) {
        b.command = o.command;
    }
    b.environment.extend(o.environment);
    b.env_file.extend(o.env_file);
    b.labels.extend(o.labels);
    // Ports are merged as a set, ordered by published port.
    for p in o.ports {
        if !b.ports.contains(&p) {
            b.ports.push(p);
        }
    }
    b.ports.sort_by_key(|p| p.published.unwrap_or(0));
    for (net, aliases) in o.networks {
        let entry = b.networks.entry(net).or_default();
        if aliases.as_ref().is_some_and(|a| !a.is_empty()) {
            *entry = aliases;
        }
    }
    let mut volumes: BTreeMap<String, VolumeMount> =
        b.volumes.drain(..).map(|v| (v.target.clone(), v)).collect();
    volumes.extend(o.volumes.into_iter().map(|v| (v.target.clone(), v)));
    b.volumes = volumes.into_values().collect();
    for (base_refs, over_refs) in [(&mut b.configs, o.configs), (&mut b.secrets, o.secrets)] {
        let mut by_name: BTreeMap<String, FileReference> =
            base_refs.drain(..).map(|r| (r.name.clone(), r)).collect();
        by_name.extend(over_refs.into_iter().map(|r| (r.name.clone(), r)));
        *base_refs = by_name.into_values().collect();
    }
    if let Some(oh) = o.healthcheck {
        let bh = b.healthcheck.get_or_insert_with(Healthcheck::default);
        bh.test.extend(oh.test);
        set(&mut bh.interval, oh.interval);
        set(&mut bh.timeout, oh.timeout);
        set(&mut bh.retries, oh.retries);
        set(&mut bh.start_period, oh.start_period);
        set(&mut bh.start_interval, oh.start_interval);
        bh.disable |= oh.disable;
    }
    set(&mut b.stop_grace_period, o.stop_grace_period);
    set(&mut b.stop_signal, o.stop_signal);
    set(&mut b.user, o.user);
    set(&mut b.working_dir, o.working_dir);
    set(&mut b.hostname, o.hostname);
    set(&mut b.init, o.init);
    set(&mut b.read_only, o.read_only.filter(|r| *r));
    set(&mut b.isolation, o.isolation);
    set(&mut b.credential_spec, o.credential_spec);
    set(&mut b.oom_score_adj, o.oom_score_adj);
    set(&mut b.tty, o.tty.filter(|r| *r));
    set(&mut b.stdin_open, o.stdin_open.filter(|r| *r));
    b.cap_add.extend(o.cap_add);
    b.cap_drop.extend(o.cap_drop);
    b.sysctls.extend(o.sysctls);
    b.ulimits.extend(o.ulimits);
    b.extra_hosts.extend(o.extra_hosts);
    b.dns.extend(o.dns);
    b.dns_search.extend(o.dns_search);
    match (&mut b.logging, o.logging) {
        (Some(bl), Some(ol))
            if bl.driver.is_none() || ol.driver.is_none() || bl.driver == ol.driver =>
        {
            set(&mut bl.driver, ol.driver);
            bl.options.extend(ol.options);
        }
        (bl, Some(ol)) => *bl = Some(ol),
        (_, None) => {}
    }
    set(&mut b.restart, o.restart);
    // By service name, like compose: a later file's entry replaces the earlier one's.
    for dependency in o.depends_on {
        match b
            .depends_on
            .iter_mut()
            .find(|d| d.service == dependency.service)
        {
            Some(existing) => *existing = dependency,
            None => b.depends_on.push(dependency),
        }
    }
    let (bd, od) = (&mut b.deploy, o.deploy);
    set(&mut bd.mode, od.mode);
    set(&mut bd.replicas, od.replicas);
    set(&mut bd.endpoint_mode, od.endpoint_mode);
    bd.labels.extend(od.labels);
    bd.origins.extend(od.origins);
    for (ba, oa) in [
        (&mut bd.resources.limits, od.resources.limits),
        (&mut bd.resources.reservations, od.resources.reservations),
    ] {
        if let Some(oa) = oa {
            let ba = ba.get_or_insert_with(ResourceAmounts::default);
            set(&mut ba.cpus, oa.cpus);
            set(&mut ba.memory, oa.memory);
            set(&mut ba.pids, oa.pids);
            if !oa.generic_resources.is_empty() {
                ba.generic_resources = oa.generic_resources;
            }
        }
    }
    if let Some(or) = od.restart_policy {
        let br = bd
            .restart_policy
            .get_or_insert_with(RestartPolicySpec::default);
        set(&mut br.condition, or.condition);
        set(&mut br.delay, or.delay);
        set(&mut br.max_attempts, or.max_attempts);
        set(&mut br.window, or.window);
    }
    for (bu, ou) in [
        (&mut bd.update_config, od.update_config),
        (&mut bd.rollback_config, od.rollback_config),
    ] {
        if let Some(ou) = ou {
            let bu = bu.get_or_insert_with(UpdatePolicy::default);
            set(&mut bu.parallelism, ou.parallelism);
            set(&mut bu.delay, ou.delay);
            set(&mut bu.failure_action, ou.failure_action);
            set(&mut bu.monitor, ou.monitor);
            set(&mut bu.max_failure_ratio, ou.max_failure_ratio);
            set(&mut bu.order, ou.order);
        }
    }
    bd.placement.constraints.extend(od.placement.constraints);
    bd.placement.preferences.extend(od.placement.preferences);
    set(&mut bd.placement.max_replicas, od.placement.max_replicas);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_sizes_are_binary_like_docker() {
        assert_eq!(parse_ram_bytes("512M"), Some(512 << 20));
        assert_eq!(parse_ram_bytes("1g"), Some(1 << 30));
        assert_eq!(parse_ram_bytes("64kb"), Some(64 << 10));
        assert_eq!(parse_ram_bytes("2GiB"), Some(2 << 30));
        assert_eq!(parse_ram_bytes("1024"), Some(1024));
        assert_eq!(parse_ram_bytes("1x"), None);
    }

    #[test]
    fn short_ports() {
        let p = |t, pubd: Option<u16>, proto| PortSpec {
            target: t,
            published: pubd,
            protocol: proto,
            mode: PublishMode::Ingress,
        };
        assert_eq!(
            parse_short_port("80"),
            Some(vec![p(80, None, Protocol::Tcp)])
        );
        assert_eq!(
            parse_short_port("8080:80/udp"),
            Some(vec![p(80, Some(8080), Protocol::Udp)])
        );
        assert_eq!(
            parse_short_port("127.0.0.1:8080:80"),
            Some(vec![p(80, Some(8080), Protocol::Tcp)])
        );
        assert_eq!(
            parse_short_port("9000-9001:8000-8001"),
            Some(vec![
                p(8000, Some(9000), Protocol::Tcp),
                p(8001, Some(9001), Protocol::Tcp)
            ])
        );
        assert_eq!(parse_short_port("80/http"), None);
        assert_eq!(parse_short_port("x:80"), None);
    }

    #[test]
    fn extra_host_forms() {
        assert_eq!(host_colon_ip("db:10.0.0.1".into()), "db:10.0.0.1");
        assert_eq!(host_colon_ip("db=10.0.0.1".into()), "db:10.0.0.1");
        assert_eq!(host_colon_ip("db=::1".into()), "db:::1");
        assert_eq!(host_colon_ip("db:::1".into()), "db:::1");
    }

    #[test]
    fn shell_words() {
        assert_eq!(
            shell_split(r#"sh -c "echo 'hi there' \"x\"" a\ b"#).unwrap(),
            ["sh", "-c", "echo 'hi there' \"x\"", "a b"]
        );
        assert!(shell_split("a 'b").is_none());
    }
}
