//! The desired state: loaded spec objects turned into canonical definitions, with what the
//! plan needs to know about the spec directory's health (errors, failed files, prune safety).

pub mod applied_secrets;
pub mod data_objects;
pub mod definition;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::desired::data_objects::{DataKind, DataOrigin, DesiredData, versioned_name};
use crate::desired::definition::{
    DEFAULT_INSTANCE, DEPENDS_ON_LABEL, DnsConfig, FileMount, Healthcheck, KnownDefinitions,
    LogDriver, Mode, Mount, MountKind, NetworkDefinition, Placement, Port, ResourceAmounts,
    Resources, RestartPolicy, SPEC_VALUE_LABEL_PREFIX, ServiceDefinition, Ulimit, UpdatePolicy,
    VolumeOptions,
};
use crate::docker::Ownership;
use crate::revision::{REVISION_LABEL, Revision};
use crate::spec::{self, DriftField, LoadDirError, Located, Object, SpecError, SpecStore};

/// A desired object with its identity in the operator's labels.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredObject<T> {
    /// The canonical definition. Behind a pointer: the maps of desired objects hold every
    /// object inline in their nodes, a service's definition is 672 bytes, and a node has room
    /// for eleven (7.4 MB of nodes at 5,000 services, heaptrack). Shared: the view's observed
    /// service holds the same definition while the two are equal.
    pub definition: Arc<T>,
    /// Hash of the definition, written as the spec-hash label. Shared text: the view's observed
    /// service and the status hold this one while they carry the same hash (three copies of
    /// 64 characters a service otherwise).
    pub hash: Arc<str>,
    /// File name (not path) of the spec it came from, written as the source-file label
    /// (shared with the observed service's label while they are the same).
    pub source_file: Arc<str>,
    /// The operator instance that owns it: one text for every object of the desired state.
    pub instance: Arc<str>,
    /// How the operator treats it (suspend, drift policy, dependencies): never written to the
    /// swarm and not part of the hash, so changing it alone causes no write.
    pub policy: ObjectPolicy,
    /// The commit it is written at: `None` in the desired state (a new commit must not make
    /// every object differ), set on the copy a write sends ([`REVISION_LABEL`]).
    ///
    /// [`REVISION_LABEL`]: crate::revision::REVISION_LABEL
    pub revision: Option<Revision>,
}

impl<T: Serialize> DesiredObject<T> {
    /// A desired object, hashed, with the default policy.
    pub fn new(
        definition: impl Into<Arc<T>>,
        source_file: String,
        instance: impl Into<Arc<str>>,
    ) -> Self {
        let definition = definition.into();
        DesiredObject {
            hash: definition::definition_hash(&*definition).into(),
            definition,
            source_file: source_file.into(),
            instance: instance.into(),
            policy: ObjectPolicy::default(),
            revision: None,
        }
    }
}

/// What the spec says about reconciling an object, beside what the object should be.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectPolicy {
    /// `swarm-operator.io/suspend: "true"`: the object is left exactly as it is.
    pub suspended: bool,
    /// Fields whose drift is left to someone else.
    pub drift_ignore: BTreeSet<DriftField>,
    /// The spec's values of the fields in `drift_ignore`, as written to the policy labels.
    pub spec_values: BTreeMap<DriftField, String>,
    /// Services that must be ready before this one is created or updated.
    pub depends_on: Vec<String>,
    /// When a job runs again (changing it alone writes nothing). Boxed: a desired object is
    /// inline in the desired map's nodes, and few services are scheduled jobs.
    pub schedule: Option<Box<ScheduleSpec>>,
}

/// A job's `schedule`, `timeZone` and `concurrencyPolicy`, as validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleSpec {
    /// The cron pattern.
    pub schedule: String,
    /// Its IANA time zone (`None`: UTC).
    pub time_zone: Option<String>,
    /// What a due time does while the previous run still runs.
    pub concurrency: spec::ConcurrencyPolicy,
    /// How late a missed time may still start.
    pub starting_deadline: Option<std::time::Duration>,
}

impl ObjectPolicy {
    fn of_service(service: &spec::SwarmService, definition: &ServiceDefinition) -> Self {
        let drift_ignore: BTreeSet<DriftField> = service
            .spec
            .drift_policy
            .iter()
            .flat_map(|p| p.ignore.iter().copied())
            .collect();
        let spec_values = drift_ignore
            .iter()
            .filter_map(|field| Some((*field, drift_value(definition, *field)?)))
            .collect();
        ObjectPolicy {
            suspended: service.metadata.is_suspended(),
            drift_ignore,
            spec_values,
            depends_on: service.spec.depends_on.clone(),
            schedule: service.spec.schedule.as_ref().map(|schedule| {
                Box::new(ScheduleSpec {
                    schedule: schedule.clone(),
                    time_zone: service.spec.time_zone.clone(),
                    concurrency: service.spec.concurrency_policy.unwrap_or_default(),
                    starting_deadline: service
                        .spec
                        .starting_deadline
                        .as_ref()
                        .map(spec::DurationStr::as_duration),
                })
            }),
        }
    }

    /// The labels that record this policy on the swarm object.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels: BTreeMap<String, String> = self
            .spec_values
            .iter()
            .map(|(field, value)| {
                (
                    format!("{SPEC_VALUE_LABEL_PREFIX}{}", field.as_str()),
                    value.clone(),
                )
            })
            .collect();
        if !self.depends_on.is_empty() {
            labels.insert(DEPENDS_ON_LABEL.to_owned(), self.depends_on.join(","));
        }
        labels
    }
}

/// A definition's value of a drift-policy field, as a label value (`None`: the field does not
/// apply, e.g. replicas of a global service).
pub fn drift_value(definition: &ServiceDefinition, field: DriftField) -> Option<String> {
    match field {
        DriftField::Replicas => match definition.mode {
            Mode::Replicated { replicas } => Some(replicas.to_string()),
            Mode::Global | Mode::ReplicatedJob { .. } | Mode::GlobalJob => None,
        },
        DriftField::Image => Some(definition.image.clone()),
    }
}

/// The file whose presence in the spec directory suspends every object (prune included).
pub const SUSPEND_FILE: &str = ".suspend";

impl<T> DesiredObject<T> {
    /// Its instance, spec hash and source file texts, in [`Ownership::label_texts_mut`]'s
    /// order: what an observed object written from it carries as labels.
    pub fn label_texts_mut(&mut self) -> [&mut Arc<str>; 3] {
        [&mut self.instance, &mut self.hash, &mut self.source_file]
    }

    /// [`DesiredObject::label_texts_mut`], to read.
    pub fn label_texts(&self) -> [&Arc<str>; 3] {
        [&self.instance, &self.hash, &self.source_file]
    }

    /// The operator's labels to write on the object.
    pub fn owner_labels(&self) -> BTreeMap<String, String> {
        let mut labels = Ownership::labels(&self.hash, &self.source_file, &self.instance);
        labels.extend(self.policy.labels());
        if let Some(revision) = &self.revision {
            labels.insert(REVISION_LABEL.to_owned(), revision.to_string());
        }
        labels
    }
}

/// Everything the operator wants, plus what it must not do because the specs are incomplete.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredState {
    /// The operator instance: only objects it owns are updated or removed.
    pub instance: Arc<str>,
    /// Services by name.
    pub services: BTreeMap<String, DesiredObject<ServiceDefinition>>,
    /// Networks by name.
    pub networks: BTreeMap<String, DesiredObject<NetworkDefinition>>,
    /// Config and secret versions by swarm (versioned) name: created before a service that
    /// mounts them is written.
    pub data: BTreeMap<String, DesiredData>,
    /// Services' own rollout deadlines (`spec.progressDeadline`), where set.
    pub progress_deadlines: BTreeMap<String, std::time::Duration>,
    /// Every problem found while loading and validating, located.
    pub errors: Vec<SpecError>,
    /// What loaded with a warning (keys a SwarmStack's compose files hold that stack deploy
    /// ignores too), located.
    pub warnings: Vec<SpecError>,
    /// File names of spec files that failed to load: objects that carry one of them as their
    /// source-file label are neither updated nor removed until the file loads again.
    pub failed_files: BTreeSet<String>,
    /// Whether owned objects that are not desired may be removed. False when the directory
    /// held no spec at all (an empty or unmounted directory must not wipe the swarm) unless
    /// the user allowed it.
    pub prune_allowed: bool,
    /// The spec directory holds a `.suspend` file: nothing is created, updated or removed.
    pub all_suspended: bool,
    /// The commit these specs were read from (`run --source git`; `None` for the other
    /// sources). A new commit whose specs are the same reconciles nothing.
    pub revision: Option<Revision>,
    /// Read from the first files of a burst, the rest still to read
    /// ([`spec::ReadScope::FirstOfBurst`]): what is desired is created and updated, but nothing
    /// is removed and no old config or secret version is collected, since an object not
    /// desired may be declared by a file not read yet.
    pub partial: bool,
}

impl Default for DesiredState {
    fn default() -> Self {
        DesiredState {
            instance: DEFAULT_INSTANCE.into(),
            services: BTreeMap::new(),
            networks: BTreeMap::new(),
            data: BTreeMap::new(),
            progress_deadlines: BTreeMap::new(),
            errors: Vec::new(),
            warnings: Vec::new(),
            failed_files: BTreeSet::new(),
            prune_allowed: false,
            all_suspended: false,
            revision: None,
            partial: false,
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
    ///
    /// `objects` is walked twice (configs and secrets first: services refer to their
    /// versions), each object needed only while it is looked at: the spec store's objects are
    /// decoded one at a time, not all 5,000 at once around what the build keeps. A service's
    /// definition that `known` holds an equal one of is that one (see [`KnownDefinitions`]).
    pub fn build<O: std::borrow::Borrow<Located<Object>>>(
        objects: impl Iterator<Item = O> + Clone,
        errors: Vec<SpecError>,
        failed_files: BTreeSet<String>,
        allow_empty_prune: bool,
        instance: &str,
        known: KnownDefinitions<'_>,
    ) -> Self {
        let mut state = DesiredState {
            instance: instance.into(),
            errors,
            failed_files,
            ..Default::default()
        };
        // Versions first: services refer to them by logical name.
        let mut versions: BTreeMap<(DataKind, String), String> = BTreeMap::new();
        for located in objects.clone() {
            let (kind, meta, spec) = match &located.borrow().value {
                Object::Config(c) => (DataKind::Config, &c.metadata, &c.spec),
                Object::Secret(s) => (DataKind::Secret, &s.metadata, &s.spec),
                _ => continue,
            };
            // A secret stored by `apply` names its version; its content is only in the swarm.
            let (name, origin) = match &spec.applied_secret {
                Some(applied) => (applied.clone(), DataOrigin::Applied),
                None => (versioned_name(&meta.name, &spec.content), DataOrigin::Spec),
            };
            versions
                .entry((kind, meta.name.clone()))
                .or_insert_with(|| name.clone());
            state
                .data
                .entry(name.clone())
                .or_insert_with(|| DesiredData {
                    kind,
                    logical_name: meta.name.clone(),
                    name,
                    content: spec.content.clone(),
                    labels: meta.labels.to_btree_map(),
                    origin,
                });
        }
        for located in objects {
            let located = located.borrow();
            let source_file = source_file_name(&located.file);
            match &located.value {
                Object::Service(service) => {
                    let mut definition = service_definition(service);
                    definition.configs =
                        file_mounts(&service.spec.configs, DataKind::Config, &versions);
                    definition.secrets =
                        file_mounts(&service.spec.secrets, DataKind::Secret, &versions);
                    if let Some(definition::CredentialSpec::Config(name)) =
                        definition.credential_spec.as_deref_mut()
                        && !service
                            .spec
                            .credential_spec
                            .as_ref()
                            .is_some_and(|c| c.external)
                        && let Some(version) = versions.get(&(DataKind::Config, name.clone()))
                    {
                        // A declared config is named by its current version, as a mount is.
                        *name = version.clone();
                    }
                    if let Some(deadline) = &service.spec.progress_deadline {
                        state
                            .progress_deadlines
                            .entry(definition.name.clone())
                            .or_insert(deadline.as_duration());
                    }
                    insert_first(&mut state.services, definition.name.clone(), || {
                        DesiredObject {
                            policy: ObjectPolicy::of_service(service, &definition),
                            ..DesiredObject::new(
                                known.share_new(definition),
                                source_file,
                                state.instance.clone(),
                            )
                        }
                    });
                }
                // Configs and secrets become swarm objects through their own reconciler; the
                // definitions here are services and networks only.
                Object::Config(_) | Object::Secret(_) => {}
                // An external network is only referenced: it is not the operator's to create.
                Object::Network(network) if network.spec.external => {}
                Object::Network(network) => {
                    let definition = network_definition(network);
                    insert_first(&mut state.networks, definition.name.clone(), || {
                        DesiredObject {
                            policy: ObjectPolicy {
                                suspended: network.metadata.is_suspended(),
                                ..ObjectPolicy::default()
                            },
                            ..DesiredObject::new(definition, source_file, state.instance.clone())
                        }
                    });
                }
            }
        }
        state.services = rebuilt(std::mem::take(&mut state.services));
        state.networks = rebuilt(std::mem::take(&mut state.networks));
        state.prune_allowed = state.has_objects() || allow_empty_prune;
        state
    }
}

/// A service's config or secret references in canonical form: versioned names for declared
/// ones, the name as written for external ones, and the docker CLI's defaults (uid/gid 0,
/// mode 0444, target = the logical name), sorted by name.
fn file_mounts(
    references: &[spec::FileReference],
    kind: DataKind,
    versions: &BTreeMap<(DataKind, String), String>,
) -> Vec<FileMount> {
    let mut mounts: Vec<FileMount> = references
        .iter()
        .map(|r| FileMount {
            name: match r.external {
                true => r.name.clone(),
                // Validation rejects unknown names; keep the logical one if it slips through.
                false => versions
                    .get(&(kind, r.name.clone()))
                    .cloned()
                    .unwrap_or_else(|| r.name.clone()),
            },
            target: r.target.clone().unwrap_or_else(|| r.name.clone()),
            uid: r.uid.clone().unwrap_or_else(|| "0".to_owned()),
            gid: r.gid.clone().unwrap_or_else(|| "0".to_owned()),
            mode: r.mode.map_or(0o444, |m| m.0),
        })
        .collect();
    mounts.sort();
    mounts
}

/// The same map with full nodes. Inserting names in order (the files are read in path order)
/// leaves every node of a `BTreeMap` about half empty, and a desired object is 256 bytes
/// inline in its node: built again from its sorted entries, the map of 5,000 services takes
/// 1.1 MB less for as long as the desired state lives (until the next reload).
fn rebuilt<T>(map: BTreeMap<String, T>) -> BTreeMap<String, T> {
    map.into_iter().collect()
}

/// Keeps the first object of a name (validation reports the duplicate).
fn insert_first<T>(map: &mut BTreeMap<String, T>, name: String, make: impl FnOnce() -> T) {
    map.entry(name).or_insert_with(make);
}

/// What the swarm already has, as a reload uses it.
#[derive(Clone, Copy)]
pub struct OnSwarm<'a> {
    /// Its networks: services may refer to them without a `SwarmNetwork` spec.
    pub networks: &'a BTreeSet<String>,
    /// The definitions the view holds: a service built equal to one keeps that one.
    pub definitions: KnownDefinitions<'a>,
}

impl<'a> OnSwarm<'a> {
    /// `networks`, with no definitions to share (no view of the swarm's services).
    pub fn networks_only(networks: &'a BTreeSet<String>) -> Self {
        OnSwarm {
            networks,
            definitions: KnownDefinitions::none(),
        }
    }
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
        let built = Self::load_unless_same(
            store,
            dir,
            OnSwarm::networks_only(existing_networks),
            allow_empty_prune,
            instance,
            spec::ReadScope::Whole,
            None,
        )?;
        Ok(built.expect("built when there is nothing to compare with"))
    }

    /// [`DesiredState::load`] of the `scope` asked for (a first read of a burst is
    /// [`DesiredState::partial`]), or `None` when it would build `previous` again: the
    /// store read exactly what its previous whole read found, `previous` (what that read
    /// built) is whole too, and the suspend file, the instance and the prune rule are as they
    /// were. A quiet directory's periodic reload then builds nothing.
    pub fn load_unless_same(
        store: &mut SpecStore,
        dir: &Path,
        on_swarm: OnSwarm<'_>,
        allow_empty_prune: bool,
        instance: &str,
        scope: spec::ReadScope,
        previous: Option<&DesiredState>,
    ) -> Result<Option<Self>, LoadDirError> {
        let mut loaded = store.reload_validated_scoped(dir, on_swarm.networks, scope)?;
        let all_suspended = dir.join(SUSPEND_FILE).exists();
        if loaded.same_as_last
            && let Some(previous) = previous
            && !previous.partial
            && previous.all_suspended == all_suspended
            && *previous.instance == *instance
            && previous.prune_allowed == (previous.has_objects() || allow_empty_prune)
        {
            return Ok(None);
        }
        let failed_files = loaded
            .failed_files
            .iter()
            .map(|p| source_file_name(p))
            .collect();
        let errors = std::mem::take(&mut loaded.errors);
        let mut state = DesiredState::build(
            loaded.objects_one_by_one(),
            errors,
            failed_files,
            allow_empty_prune,
            instance,
            on_swarm.definitions,
        );
        state.all_suspended = all_suspended;
        state.warnings = loaded.warnings;
        state.partial = loaded.unread_files > 0;
        Ok(Some(state))
    }

    /// Whether it desires any service or network (what lets an empty directory prune only
    /// with `--allow-empty-prune`).
    fn has_objects(&self) -> bool {
        !self.services.is_empty() || !self.networks.is_empty()
    }
}

fn nanos(duration: Option<&spec::DurationStr>) -> Option<i64> {
    duration.map(spec::DurationStr::as_nanos_i64)
}

fn update_policy(policy: &spec::UpdatePolicy) -> UpdatePolicy {
    UpdatePolicy {
        // What the docker CLI sends when it is left out (`docker service create`'s flag
        // default, `docker stack deploy`'s convertUpdateConfig): a service moved between the
        // tools needs no update.
        parallelism: Some(policy.parallelism.map_or(1, |p| p as i64)),
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
        generic_resources: amounts
            .generic_resources
            .iter()
            .map(|g| definition::GenericResource {
                kind: g.kind.clone(),
                value: g.value,
            })
            .collect(),
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
    let caps = definition::effective_caps(&spec.cap_add, &spec.cap_drop);
    ServiceDefinition {
        name: service.metadata.name.clone(),
        image: definition::normalize_image(&spec.image),
        mode: match spec.mode {
            spec::ServiceMode::Replicated => Mode::Replicated {
                replicas: spec.replicas.unwrap_or(1),
            },
            spec::ServiceMode::Global => Mode::Global,
            // Both sent, as `docker stack deploy` does (compose's `replicas` is both); the
            // engine would fill them in anyway, and then they would read back as drift.
            spec::ServiceMode::ReplicatedJob => {
                let total_completions = spec.replicas.unwrap_or(1);
                Mode::ReplicatedJob {
                    max_concurrent: spec.max_concurrent.unwrap_or(total_completions),
                    total_completions,
                }
            }
            spec::ServiceMode::GlobalJob => Mode::GlobalJob,
        },
        command: spec.command.clone(),
        args: spec.args.clone(),
        env: spec.env.clone(),
        labels: service.metadata.labels.clone(),
        container_labels: spec.container_labels.clone(),
        networks: spec.networks.clone(),
        endpoint_mode: spec.endpoint_mode,
        ports,
        healthcheck: spec
            .healthcheck
            .as_ref()
            .map(|h| Healthcheck {
                test: h.test.clone(),
                interval_ns: nanos(h.interval.as_ref()),
                timeout_ns: nanos(h.timeout.as_ref()),
                retries: h.retries.map(|r| r as i64),
                start_period_ns: nanos(h.start_period.as_ref()),
                start_interval_ns: nanos(h.start_interval.as_ref()),
            })
            .map(Box::new),
        update_config: spec
            .update_config
            .as_deref()
            .map(update_policy)
            .map(Box::new),
        rollback_config: spec
            .rollback_config
            .as_deref()
            .map(update_policy)
            .map(Box::new),
        restart_policy: spec
            .restart_policy
            .as_ref()
            .map(|p| RestartPolicy {
                condition: p.condition,
                delay_ns: nanos(p.delay.as_ref()),
                max_attempts: p.max_attempts.map(|m| m as i64),
                window_ns: nanos(p.window.as_ref()),
            })
            .map(Box::new),
        placement: spec
            .placement
            .as_ref()
            .map(|p| Placement {
                constraints: p.constraints.clone(),
                spread_preferences: p.preferences.iter().map(|p| p.spread.clone()).collect(),
                max_replicas: p.max_replicas.filter(|m| *m > 0),
            })
            .map(Box::new),
        resources: spec
            .resources
            .as_ref()
            .map(|r| Resources {
                limits: r.limits.as_ref().map(|a| ResourceAmounts {
                    generic_resources: Vec::new(),
                    ..amounts(a)
                }),
                reservations: r.reservations.as_ref().map(|a| ResourceAmounts {
                    pids: None,
                    ..amounts(a)
                }),
            })
            .map(Box::new),
        mounts: spec
            .mounts
            .iter()
            .map(|m| Mount {
                kind: MountKind::Spec(m.r#type),
                source: m.source.clone(),
                target: m.target.clone(),
                read_only: m.read_only,
                tmpfs_size_bytes: m.tmpfs_size.as_ref().map(|s| s.bytes() as i64),
                tmpfs_mode: m.tmpfs_mode.map(|m| m.0),
                bind_propagation: m.bind_propagation,
                volume: m
                    .volume
                    .as_ref()
                    .map(|v| VolumeOptions {
                        no_copy: v.no_copy,
                        labels: v.labels.clone(),
                        driver: v.driver.clone(),
                        driver_options: v.driver_options.clone(),
                    })
                    .filter(|v| *v != VolumeOptions::default()),
            })
            .collect(),
        stop_grace_period_ns: nanos(spec.stop_grace_period.as_ref()),
        user: spec.user.clone(),
        workdir: spec.workdir.clone(),
        hostname: spec.hostname.clone(),
        init: spec.init,
        stop_signal: spec.stop_signal.clone(),
        // Docker reports `false` for these as absent: the canonical form does the same.
        read_only: spec.read_only.filter(|r| *r),
        // The engine stores an unset isolation as `default`: both read as unset.
        isolation: spec.isolation.filter(|i| *i != spec::Isolation::Default),
        credential_spec: spec
            .credential_spec
            .as_ref()
            .and_then(|c| {
                c.file
                    .clone()
                    .map(definition::CredentialSpec::File)
                    .or_else(|| c.registry.clone().map(definition::CredentialSpec::Registry))
                    .or_else(|| c.config.clone().map(definition::CredentialSpec::Config))
            })
            .map(Box::new),
        oom_score_adj: spec.oom_score_adj,
        tty: spec.tty.filter(|t| *t),
        open_stdin: spec.stdin_open.filter(|o| *o),
        // Normalised as the docker CLI sends them (`net_admin` → `CAP_NET_ADMIN`, sorted).
        capability_add: caps.0,
        capability_drop: caps.1,
        sysctls: spec.sysctls.clone(),
        ulimits: spec
            .ulimits
            .iter()
            .map(|(name, u)| {
                (
                    name.clone(),
                    Ulimit {
                        soft: u.soft,
                        hard: u.hard,
                    },
                )
            })
            .collect(),
        hosts: spec
            .extra_hosts
            .iter()
            .map(|h| docker_host_entry(h))
            .collect(),
        dns: spec
            .dns
            .as_ref()
            .map(|d| DnsConfig {
                nameservers: d.nameservers.clone(),
                search: d.search.clone(),
                options: d.options.clone(),
            })
            .map(Box::new),
        log_driver: spec
            .logging
            .as_ref()
            .map(|l| LogDriver {
                name: l.driver.clone(),
                options: l.options.clone(),
            })
            .map(Box::new),
        network_aliases: spec
            .network_aliases
            .iter()
            .filter(|(_, aliases)| !aliases.is_empty())
            .map(|(n, a)| (n.clone(), a.clone()))
            .collect(),
        // Filled by `DesiredState::build`, which knows the versions.
        configs: Vec::new(),
        secrets: Vec::new(),
        force_update: 0,
    }
}

/// `host:ip` (compose and `docker run --add-host`) → `ip host` (how swarm stores it, as a
/// hosts file line). The address may itself contain colons (IPv6): only the first one splits.
pub fn docker_host_entry(entry: &str) -> String {
    match entry.split_once(':') {
        Some((host, ip)) => format!("{ip} {host}"),
        None => entry.to_owned(),
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
        labels: network.metadata.labels.to_btree_map(),
        subnet: spec.ipam.as_ref().and_then(|i| i.subnet.clone()),
        gateway: spec.ipam.as_ref().and_then(|i| i.gateway.clone()),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::spec::{FileLoad, load_str};

    fn state(conf: &str, token: &str) -> DesiredState {
        let text = format!(
            "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmConfig\nmetadata: {{name: conf}}\nspec: {{data: {conf}}}\n---\napiVersion: swarm-operator.io/v1alpha1\nkind: SwarmSecret\nmetadata: {{name: token}}\nspec: {{data: {token}}}\n---\napiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata: {{name: both}}\nspec:\n  image: x\n  configs: [{{name: conf, target: /etc/c, mode: 0440}}]\n  secrets: [{{name: token}}, {{name: shared, external: true}}]\n---\napiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata: {{name: plain}}\nspec: {{image: x}}\n"
        );
        build_text(&text, KnownDefinitions::none())
    }

    /// The desired state of the spec file `text`, sharing what `known` holds.
    fn build_text(text: &str, known: KnownDefinitions<'_>) -> DesiredState {
        let FileLoad::Ok(objects) = load_str(Path::new("s.yaml"), text) else {
            panic!("loads")
        };
        DesiredState::build(
            objects.iter(),
            Vec::new(),
            BTreeSet::new(),
            false,
            "default",
            known,
        )
    }

    /// A built definition equal to one the view holds is that one (the new copy is dropped at
    /// once); one that differs stays its own, and the hash is the same either way.
    #[test]
    fn a_built_definition_equal_to_a_held_one_is_the_held_one() {
        let built = state("a", "b");
        let held = Arc::new((*built.services["plain"].definition).clone());
        let mut other = (*built.services["both"].definition).clone();
        other.image = "y".into();
        let other = Arc::new(other);
        let lookup = |name: &str, definition: &ServiceDefinition| {
            [&held, &other]
                .into_iter()
                .find(|h| h.name == name && ***h == *definition)
                .cloned()
        };
        let text = "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata: {name: plain}\nspec: {image: x}\n---\napiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata: {name: both}\nspec: {image: x}\n";
        let shared = build_text(text, KnownDefinitions::new(&lookup));
        assert!(Arc::ptr_eq(&shared.services["plain"].definition, &held));
        assert_eq!(shared.services["plain"].hash, built.services["plain"].hash);
        assert!(!Arc::ptr_eq(&shared.services["both"].definition, &other));
        assert_ne!(shared.services["both"].definition, other);
    }

    #[test]
    fn services_mount_versioned_names_with_the_cli_defaults() {
        let s = state("a", "b");
        let both = &s.services["both"].definition;
        let conf = versioned_name("conf", &spec::Content(b"a".to_vec()));
        assert_eq!(
            both.configs,
            [FileMount {
                name: conf.clone(),
                target: "/etc/c".into(),
                uid: "0".into(),
                gid: "0".into(),
                mode: 0o440,
            }]
        );
        let names: Vec<&str> = both.secrets.iter().map(|m| m.name.as_str()).collect();
        let token = versioned_name("token", &spec::Content(b"b".to_vec()));
        assert_eq!(names, ["shared", token.as_str()], "external kept, sorted");
        assert_eq!(both.secrets[1].target, "token");
        assert_eq!(both.secrets[1].mode, 0o444);
        assert_eq!(s.data[&conf].kind, DataKind::Config);
        assert_eq!(s.data.len(), 2, "external ones are not the operator's");
    }

    #[test]
    fn a_replicated_job_sends_both_counts_as_stack_deploy_does() {
        let job = |extra: &str| {
            let text = format!(
                "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata: {{name: j}}\nspec:\n  image: x\n  mode: replicated-job\n{extra}"
            );
            build_text(&text, KnownDefinitions::none()).services["j"]
                .definition
                .mode
                .clone()
        };
        let both = |max_concurrent, total_completions| Mode::ReplicatedJob {
            max_concurrent,
            total_completions,
        };
        assert_eq!(job(""), both(1, 1));
        assert_eq!(job("  replicas: 3\n"), both(3, 3));
        assert_eq!(job("  replicas: 3\n  maxConcurrent: 1\n"), both(1, 3));
    }

    #[test]
    fn a_content_change_changes_only_the_services_that_mount_it() {
        let (before, after) = (state("a", "b"), state("a2", "hunter2-rotated"));
        // One new definition (one update) for the service mounting both changed objects…
        assert_ne!(before.services["both"].hash, after.services["both"].hash);
        // …and nothing for the one mounting neither.
        assert_eq!(before.services["plain"], after.services["plain"]);
        // Unchanged content, unchanged names: no write on a resync.
        assert_eq!(state("a", "b").services["both"], before.services["both"]);
        let text = format!("{:?}", after.data);
        assert!(!text.contains("hunter2"), "secret content in Debug: {text}");
    }

    #[test]
    fn a_reload_that_reads_nothing_new_builds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.yaml"),
            "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata: {name: a}\nspec: {image: img:1}\n",
        )
        .unwrap();
        let mut store = SpecStore::new();
        let mut load = |previous: Option<&DesiredState>| {
            let whole = spec::ReadScope::Whole;
            let none = BTreeSet::new();
            DesiredState::load_unless_same(
                &mut store,
                dir.path(),
                OnSwarm::networks_only(&none),
                false,
                "i",
                whole,
                previous,
            )
            .unwrap()
        };
        let first = load(None).expect("nothing to compare with");
        assert!(load(Some(&first)).is_none(), "nothing read anew");
        // Not in a spec file, and news all the same.
        std::fs::write(dir.path().join(SUSPEND_FILE), "").unwrap();
        let suspended = load(Some(&first)).expect("the suspend file appeared");
        assert!(suspended.all_suspended);
        assert!(load(Some(&suspended)).is_none());
        // A partial state is never taken for the whole one.
        let partial = DesiredState {
            partial: true,
            ..suspended.clone()
        };
        assert_eq!(load(Some(&partial)), Some(suspended));
    }
}
