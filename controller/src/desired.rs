//! The desired state: loaded spec objects turned into canonical definitions, with what the
//! plan needs to know about the spec directory's health (errors, failed files, prune safety).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Serialize;

use crate::definition::{
    self, DEFAULT_INSTANCE, EndpointMode, Healthcheck, Mode, Mount, MountKind, NetworkDefinition,
    Placement, Port, ResourceAmounts, Resources, RestartPolicy, ServiceDefinition, UpdatePolicy,
};
use crate::docker::Ownership;
use crate::spec::{self, LoadDirError, Located, Object, SpecError, SpecStore};

/// A desired object with its identity in the operator's labels.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredObject<T> {
    /// The canonical definition.
    pub definition: T,
    /// Hash of the definition, written as the spec-hash label.
    pub hash: String,
    /// File name (not path) of the spec it came from, written as the source-file label.
    pub source_file: String,
    /// The operator instance that owns it.
    pub instance: String,
}

impl<T: Serialize> DesiredObject<T> {
    /// A desired object, hashed.
    pub fn new(definition: T, source_file: String, instance: &str) -> Self {
        DesiredObject {
            hash: definition::definition_hash(&definition),
            definition,
            source_file,
            instance: instance.to_owned(),
        }
    }
}

impl<T> DesiredObject<T> {
    /// The operator's labels to write on the object.
    pub fn owner_labels(&self) -> BTreeMap<String, String> {
        Ownership::labels(&self.hash, &self.source_file, &self.instance)
    }
}

/// Everything the operator wants, plus what it must not do because the specs are incomplete.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredState {
    /// The operator instance: only objects it owns are updated or removed.
    pub instance: String,
    /// Services by name.
    pub services: BTreeMap<String, DesiredObject<ServiceDefinition>>,
    /// Networks by name.
    pub networks: BTreeMap<String, DesiredObject<NetworkDefinition>>,
    /// Every problem found while loading and validating, located.
    pub errors: Vec<SpecError>,
    /// File names of spec files that failed to load: objects that carry one of them as their
    /// source-file label are neither updated nor removed until the file loads again.
    pub failed_files: BTreeSet<String>,
    /// Whether owned objects that are not desired may be removed. False when the directory
    /// held no spec at all (an empty or unmounted directory must not wipe the swarm) unless
    /// the user allowed it.
    pub prune_allowed: bool,
}

impl Default for DesiredState {
    fn default() -> Self {
        DesiredState {
            instance: DEFAULT_INSTANCE.to_owned(),
            services: BTreeMap::new(),
            networks: BTreeMap::new(),
            errors: Vec::new(),
            failed_files: BTreeSet::new(),
            prune_allowed: false,
        }
    }
}

/// File name (not path) of a spec path, as written to the source-file label.
pub fn source_file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

impl DesiredState {
    /// Builds the desired state from loaded objects.
    ///
    /// `objects` should contain, for a file that failed, its last good objects (see the spec
    /// store); `failed_files` names the files that failed now. Duplicate names keep the first
    /// object (validation reports the duplicate).
    pub fn build(
        objects: &[Located<Object>],
        errors: Vec<SpecError>,
        failed_files: BTreeSet<String>,
        allow_empty_prune: bool,
        instance: &str,
    ) -> Self {
        let mut state = DesiredState {
            instance: instance.to_owned(),
            errors,
            failed_files,
            ..Default::default()
        };
        for located in objects {
            let source_file = source_file_name(&located.file);
            match &located.value {
                Object::Service(service) => {
                    let definition = service_definition(service);
                    insert_first(&mut state.services, definition.name.clone(), || {
                        DesiredObject::new(definition, source_file, instance)
                    });
                }
                Object::Network(network) => {
                    let definition = network_definition(network);
                    insert_first(&mut state.networks, definition.name.clone(), || {
                        DesiredObject::new(definition, source_file, instance)
                    });
                }
            }
        }
        let has_objects = !state.services.is_empty() || !state.networks.is_empty();
        state.prune_allowed = has_objects || allow_empty_prune;
        state
    }
}

/// Keeps the first object of a name (validation reports the duplicate).
fn insert_first<T>(map: &mut BTreeMap<String, T>, name: String, make: impl FnOnce() -> T) {
    map.entry(name).or_insert_with(make);
}

impl DesiredState {
    /// Re-reads the spec directory through `store` (which keeps the last good objects of files
    /// that fail) and builds the desired state. `existing_networks` are the networks already on
    /// the swarm, which services may reference without a `SwarmNetwork` spec.
    pub fn load(
        store: &mut SpecStore,
        dir: &Path,
        existing_networks: &BTreeSet<String>,
        allow_empty_prune: bool,
        instance: &str,
    ) -> Result<Self, LoadDirError> {
        let loaded = store.reload_validated(dir, existing_networks)?;
        let failed_files = loaded
            .failed_files
            .iter()
            .map(|p| source_file_name(p))
            .collect();
        Ok(DesiredState::build(
            &loaded.objects,
            loaded.errors,
            failed_files,
            allow_empty_prune,
            instance,
        ))
    }
}

fn nanos(duration: Option<&spec::DurationStr>) -> Option<i64> {
    duration.map(spec::DurationStr::as_nanos_i64)
}

fn update_policy(policy: &spec::UpdatePolicy) -> UpdatePolicy {
    UpdatePolicy {
        parallelism: policy.parallelism.map(|p| p as i64),
        delay_ns: nanos(policy.delay.as_ref()),
        failure_action: policy.failure_action,
        monitor_ns: nanos(policy.monitor.as_ref()),
        max_failure_ratio: policy.max_failure_ratio,
        order: policy.order,
    }
}

fn amounts(amounts: &spec::ResourceAmounts) -> ResourceAmounts {
    ResourceAmounts {
        nano_cpus: amounts.cpus.map(|c| (c * 1e9).round() as i64),
        memory_bytes: amounts.memory.as_ref().map(|m| m.bytes() as i64),
        pids: amounts.pids,
    }
}

/// The canonical definition of a `SwarmService`.
pub fn service_definition(service: &spec::SwarmService) -> ServiceDefinition {
    let spec = &service.spec;
    let mut ports: Vec<Port> = spec
        .ports
        .iter()
        .map(|p| Port {
            target: p.target,
            published: p.published,
            protocol: p.protocol,
            mode: p.mode,
        })
        .collect();
    ports.sort();
    ServiceDefinition {
        name: service.metadata.name.clone(),
        image: spec.image.clone(),
        mode: match spec.effective_replicas() {
            Some(replicas) => Mode::Replicated { replicas },
            None => Mode::Global,
        },
        command: spec.command.clone(),
        args: spec.args.clone(),
        env: spec.env.clone(),
        labels: service.metadata.labels.clone(),
        container_labels: spec.container_labels.clone(),
        networks: spec.networks.clone(),
        endpoint_mode: match spec.endpoint_mode {
            spec::EndpointMode::Vip => EndpointMode::Vip,
            spec::EndpointMode::Dnsrr => EndpointMode::Dnsrr,
        },
        ports,
        healthcheck: spec.healthcheck.as_ref().map(|h| Healthcheck {
            test: h.test.clone(),
            interval_ns: nanos(h.interval.as_ref()),
            timeout_ns: nanos(h.timeout.as_ref()),
            retries: h.retries.map(|r| r as i64),
            start_period_ns: nanos(h.start_period.as_ref()),
        }),
        update_config: spec.update_config.as_ref().map(update_policy),
        rollback_config: spec.rollback_config.as_ref().map(update_policy),
        restart_policy: spec.restart_policy.as_ref().map(|p| RestartPolicy {
            condition: p.condition,
            delay_ns: nanos(p.delay.as_ref()),
            max_attempts: p.max_attempts.map(|m| m as i64),
            window_ns: nanos(p.window.as_ref()),
        }),
        placement: spec.placement.as_ref().map(|p| Placement {
            constraints: p.constraints.clone(),
            spread_preferences: p.preferences.iter().map(|p| p.spread.clone()).collect(),
            max_replicas: p.max_replicas.filter(|m| *m > 0),
        }),
        resources: spec.resources.as_ref().map(|r| Resources {
            limits: r.limits.as_ref().map(amounts),
            reservations: r.reservations.as_ref().map(|a| ResourceAmounts {
                pids: None,
                ..amounts(a)
            }),
        }),
        mounts: spec
            .mounts
            .iter()
            .map(|m| Mount {
                kind: MountKind::Spec(m.r#type),
                source: m.source.clone(),
                target: m.target.clone(),
                read_only: m.read_only,
                tmpfs_size_bytes: m.tmpfs_size.as_ref().map(|s| s.bytes() as i64),
            })
            .collect(),
        stop_grace_period_ns: nanos(spec.stop_grace_period.as_ref()),
        user: spec.user.clone(),
        workdir: spec.workdir.clone(),
    }
}

/// The canonical definition of a `SwarmNetwork`.
fn network_definition(network: &spec::SwarmNetwork) -> NetworkDefinition {
    let spec = &network.spec;
    NetworkDefinition {
        name: network.metadata.name.clone(),
        driver: spec.driver.clone(),
        attachable: spec.attachable,
        internal: spec.internal,
        options: spec.options.clone(),
        labels: network.metadata.labels.clone(),
        subnet: spec.ipam.as_ref().and_then(|i| i.subnet.clone()),
        gateway: spec.ipam.as_ref().and_then(|i| i.gateway.clone()),
    }
}
