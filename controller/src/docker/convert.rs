//! Conversions between the canonical definitions and bollard's Engine API models.
//!
//! `to_*` renders what we send; `from_*` normalizes what the engine returns so that a service
//! created from a definition reads back as the same definition (tested against a real swarm).

use std::collections::{BTreeMap, HashMap};

use bollard::models::{
    EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum,
    EndpointSpec, EndpointSpecModeEnum, GenericResourcesInner,
    GenericResourcesInnerDiscreteResourceSpec, HealthConfig, Ipam, IpamConfig, Limit,
    Mount as DockerMount, MountBindOptions, MountBindOptionsPropagationEnum, MountTmpfsOptions,
    MountType as DockerMountType, MountVolumeOptions, MountVolumeOptionsDriverConfig, Network,
    NetworkAttachmentConfig, NetworkCreateRequest, ResourceObject, ResourcesUlimits, Service,
    ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, ServiceSpecModeReplicatedJob,
    ServiceSpecRollbackConfig, ServiceSpecRollbackConfigFailureActionEnum,
    ServiceSpecRollbackConfigOrderEnum, ServiceSpecUpdateConfig,
    ServiceSpecUpdateConfigFailureActionEnum, ServiceSpecUpdateConfigOrderEnum, TaskSpec,
    TaskSpecContainerSpec, TaskSpecContainerSpecConfigs, TaskSpecContainerSpecDnsConfig,
    TaskSpecContainerSpecFile, TaskSpecContainerSpecFile1, TaskSpecContainerSpecIsolationEnum,
    TaskSpecContainerSpecPrivileges, TaskSpecContainerSpecPrivilegesCredentialSpec,
    TaskSpecContainerSpecSecrets, TaskSpecLogDriver, TaskSpecPlacement,
    TaskSpecPlacementPreferences, TaskSpecPlacementSpread, TaskSpecResources,
    TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum,
};

use super::engine_value::report_unsupported;
use super::{
    ObservedNetwork, ObservedService, Ownership, ServiceRevision, UpdateState, UpdateStatus,
    VirtualIp,
};
use crate::desired::definition::{
    BindPropagation, CredentialSpec, DnsConfig, EndpointMode, EngineOnlyMountType, FailureAction,
    FileMount, GenericResource, Healthcheck, Isolation, LogDriver, Mode, Mount, MountKind,
    MountType, NetworkDefinition, OPERATOR_LABEL_PREFIX, Placement, Port, Protocol, PublishMode,
    ResourceAmounts, Resources, RestartCondition, RestartPolicy, ServiceDefinition, Ulimit,
    UpdateOrder, UpdatePolicy, VolumeOptions, normalize_image,
};

fn to_hash_map<'a>(
    map: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> HashMap<String, String> {
    map.into_iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// User labels: everything but the operator's own.
fn user_labels<M: FromIterator<(String, String)>>(labels: Option<&HashMap<String, String>>) -> M {
    labels
        .into_iter()
        .flatten()
        .filter(|(k, _)| !k.starts_with(OPERATOR_LABEL_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn all_labels(labels: Option<&HashMap<String, String>>) -> BTreeMap<String, String> {
    labels
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Zero means "unset" for Docker's durations and counters.
fn non_zero(value: Option<i64>) -> Option<i64> {
    value.filter(|v| *v != 0)
}

fn to_update_config(p: &UpdatePolicy) -> ServiceSpecUpdateConfig {
    use ServiceSpecUpdateConfigFailureActionEnum as Action;
    use ServiceSpecUpdateConfigOrderEnum as Order;
    ServiceSpecUpdateConfig {
        parallelism: p.parallelism,
        delay: p.delay_ns,
        failure_action: p.failure_action.map(|a| match a {
            FailureAction::Pause => Action::PAUSE,
            FailureAction::Continue => Action::CONTINUE,
            FailureAction::Rollback => Action::ROLLBACK,
        }),
        monitor: p.monitor_ns,
        max_failure_ratio: p.max_failure_ratio,
        order: p.order.map(|o| match o {
            UpdateOrder::StopFirst => Order::STOP_FIRST,
            UpdateOrder::StartFirst => Order::START_FIRST,
        }),
    }
}

fn to_rollback_config(p: &UpdatePolicy) -> ServiceSpecRollbackConfig {
    use ServiceSpecRollbackConfigFailureActionEnum as Action;
    use ServiceSpecRollbackConfigOrderEnum as Order;
    ServiceSpecRollbackConfig {
        parallelism: p.parallelism,
        delay: p.delay_ns,
        failure_action: p.failure_action.and_then(|a| match a {
            FailureAction::Pause => Some(Action::PAUSE),
            FailureAction::Continue => Some(Action::CONTINUE),
            // A rollback can not roll back; validation rejects it in `rollbackConfig`, and
            // the engine's default applies should a definition carry it anyway.
            FailureAction::Rollback => None,
        }),
        monitor: p.monitor_ns,
        max_failure_ratio: p.max_failure_ratio,
        order: p.order.map(|o| match o {
            UpdateOrder::StopFirst => Order::STOP_FIRST,
            UpdateOrder::StartFirst => Order::START_FIRST,
        }),
    }
}

fn from_update_config(p: &ServiceSpecUpdateConfig) -> UpdatePolicy {
    use ServiceSpecUpdateConfigFailureActionEnum as Action;
    use ServiceSpecUpdateConfigOrderEnum as Order;
    UpdatePolicy {
        parallelism: p.parallelism,
        delay_ns: non_zero(p.delay),
        failure_action: p.failure_action.and_then(|a| match a {
            Action::EMPTY => None,
            Action::PAUSE => Some(FailureAction::Pause),
            Action::CONTINUE => Some(FailureAction::Continue),
            Action::ROLLBACK => Some(FailureAction::Rollback),
        }),
        monitor_ns: non_zero(p.monitor),
        max_failure_ratio: p.max_failure_ratio,
        order: p.order.and_then(|o| match o {
            Order::EMPTY => None,
            Order::STOP_FIRST => Some(UpdateOrder::StopFirst),
            Order::START_FIRST => Some(UpdateOrder::StartFirst),
        }),
    }
}

fn from_rollback_config(p: &ServiceSpecRollbackConfig) -> UpdatePolicy {
    use ServiceSpecRollbackConfigFailureActionEnum as Action;
    use ServiceSpecRollbackConfigOrderEnum as Order;
    UpdatePolicy {
        parallelism: p.parallelism,
        delay_ns: non_zero(p.delay),
        failure_action: p.failure_action.and_then(|a| match a {
            Action::EMPTY => None,
            Action::PAUSE => Some(FailureAction::Pause),
            Action::CONTINUE => Some(FailureAction::Continue),
        }),
        monitor_ns: non_zero(p.monitor),
        max_failure_ratio: p.max_failure_ratio,
        order: p.order.and_then(|o| match o {
            Order::EMPTY => None,
            Order::STOP_FIRST => Some(UpdateOrder::StopFirst),
            Order::START_FIRST => Some(UpdateOrder::StartFirst),
        }),
    }
}

/// Renders the full service spec to send on create and update.
///
/// `network_ids` maps network names to ids; names that are not in it are sent as they are
/// (Docker accepts either).
pub(crate) fn to_service_spec(
    definition: &ServiceDefinition,
    owner_labels: &BTreeMap<String, String>,
) -> ServiceSpec {
    let mut labels = to_hash_map(&definition.labels);
    labels.extend(owner_labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    let env: Vec<String> = definition
        .env
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let container_spec = TaskSpecContainerSpec {
        image: Some(definition.image.clone()),
        labels: Some(to_hash_map(&definition.container_labels)),
        command: definition.command.clone(),
        args: definition.args.clone(),
        env: Some(env),
        dir: definition.workdir.clone(),
        user: definition.user.clone(),
        mounts: Some(definition.mounts.iter().map(to_mount).collect()),
        stop_grace_period: definition.stop_grace_period_ns,
        health_check: definition.healthcheck.as_ref().map(|h| HealthConfig {
            test: Some(h.test.clone()),
            interval: h.interval_ns,
            timeout: h.timeout_ns,
            retries: h.retries,
            start_period: h.start_period_ns,
            start_interval: h.start_interval_ns,
        }),
        hostname: definition.hostname.clone(),
        init: definition.init,
        stop_signal: definition.stop_signal.clone(),
        read_only: definition.read_only,
        isolation: definition.isolation.map(|i| match i {
            Isolation::Default => TaskSpecContainerSpecIsolationEnum::DEFAULT,
            Isolation::Process => TaskSpecContainerSpecIsolationEnum::PROCESS,
            Isolation::Hyperv => TaskSpecContainerSpecIsolationEnum::HYPERV,
        }),
        oom_score_adj: definition.oom_score_adj,
        tty: definition.tty,
        open_stdin: definition.open_stdin,
        capability_add: non_empty(&definition.capability_add),
        capability_drop: non_empty(&definition.capability_drop),
        sysctls: (!definition.sysctls.is_empty()).then(|| to_hash_map(&definition.sysctls)),
        ulimits: (!definition.ulimits.is_empty()).then(|| {
            definition
                .ulimits
                .iter()
                .map(|(name, u)| ResourcesUlimits {
                    name: Some(name.clone()),
                    soft: Some(u.soft),
                    hard: Some(u.hard),
                })
                .collect()
        }),
        hosts: non_empty(&definition.hosts),
        dns_config: definition
            .dns
            .as_ref()
            .map(|d| TaskSpecContainerSpecDnsConfig {
                nameservers: non_empty(&d.nameservers),
                search: non_empty(&d.search),
                options: non_empty(&d.options),
            }),
        // What `docker service create` and `docker stack deploy` send too, so that a service
        // inspects the same whichever wrote it.
        privileges: Some(TaskSpecContainerSpecPrivileges {
            credential_spec: definition.credential_spec.as_deref().map(|c| match c {
                CredentialSpec::File(file) => TaskSpecContainerSpecPrivilegesCredentialSpec {
                    file: Some(file.clone()),
                    ..Default::default()
                },
                CredentialSpec::Registry(value) => TaskSpecContainerSpecPrivilegesCredentialSpec {
                    registry: Some(value.clone()),
                    ..Default::default()
                },
                // The name for now: `fill_data_ids` puts the config's id in its place, which
                // is what the engine expects.
                CredentialSpec::Config(name) => TaskSpecContainerSpecPrivilegesCredentialSpec {
                    config: Some(name.clone()),
                    ..Default::default()
                },
            }),
            ..Default::default()
        }),
        // The ids are filled in by the engine adapter, which resolves the names (swarm wants
        // both and checks that they match).
        configs: config_references(definition),
        secrets: (!definition.secrets.is_empty()).then(|| {
            definition
                .secrets
                .iter()
                .map(|c| TaskSpecContainerSpecSecrets {
                    file: Some(TaskSpecContainerSpecFile {
                        name: Some(c.target.clone()),
                        uid: Some(c.uid.clone()),
                        gid: Some(c.gid.clone()),
                        mode: Some(c.mode),
                    }),
                    secret_name: Some(c.name.clone()),
                    ..Default::default()
                })
                .collect()
        }),
        ..Default::default()
    };
    let task_template = TaskSpec {
        container_spec: Some(container_spec),
        force_update: Some(definition.force_update),
        resources: definition.resources.as_ref().map(|r| TaskSpecResources {
            limits: r.limits.as_ref().map(|l| Limit {
                nano_cpus: l.nano_cpus,
                memory_bytes: l.memory_bytes,
                pids: l.pids,
            }),
            reservations: r.reservations.as_ref().map(|l| ResourceObject {
                nano_cpus: l.nano_cpus,
                memory_bytes: l.memory_bytes,
                generic_resources: (!l.generic_resources.is_empty()).then(|| {
                    l.generic_resources
                        .iter()
                        .map(|g| GenericResourcesInner {
                            discrete_resource_spec: Some(
                                GenericResourcesInnerDiscreteResourceSpec {
                                    kind: Some(g.kind.clone()),
                                    value: Some(g.value),
                                },
                            ),
                            named_resource_spec: None,
                        })
                        .collect()
                }),
            }),
            ..Default::default()
        }),
        restart_policy: definition
            .restart_policy
            .as_ref()
            .map(|p| TaskSpecRestartPolicy {
                condition: p.condition.map(|c| match c {
                    RestartCondition::None => TaskSpecRestartPolicyConditionEnum::NONE,
                    RestartCondition::OnFailure => TaskSpecRestartPolicyConditionEnum::ON_FAILURE,
                    RestartCondition::Any => TaskSpecRestartPolicyConditionEnum::ANY,
                }),
                delay: p.delay_ns,
                max_attempts: p.max_attempts,
                window: p.window_ns,
            }),
        placement: definition.placement.as_ref().map(|p| TaskSpecPlacement {
            constraints: Some(p.constraints.clone()),
            preferences: Some(
                p.spread_preferences
                    .iter()
                    .map(|d| TaskSpecPlacementPreferences {
                        spread: Some(TaskSpecPlacementSpread {
                            spread_descriptor: Some(d.clone()),
                        }),
                    })
                    .collect(),
            ),
            max_replicas: p.max_replicas.map(|m| m as i64),
            platforms: None,
        }),
        networks: Some(
            definition
                .networks
                .iter()
                .map(|name| NetworkAttachmentConfig {
                    target: Some(name.clone()),
                    aliases: definition.network_aliases.get(name).cloned(),
                    ..Default::default()
                })
                .collect(),
        ),
        log_driver: definition.log_driver.as_ref().map(|l| TaskSpecLogDriver {
            name: Some(l.name.clone()),
            options: (!l.options.is_empty()).then(|| to_hash_map(&l.options)),
        }),
        ..Default::default()
    };
    let mode = match definition.mode {
        Mode::Replicated { replicas } => ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated {
                replicas: Some(replicas as i64),
            }),
            ..Default::default()
        },
        Mode::Global => ServiceSpecMode {
            global: Some(HashMap::new()),
            ..Default::default()
        },
        Mode::ReplicatedJob {
            max_concurrent,
            total_completions,
        } => ServiceSpecMode {
            replicated_job: Some(ServiceSpecModeReplicatedJob {
                max_concurrent: Some(max_concurrent as i64),
                total_completions: Some(total_completions as i64),
            }),
            ..Default::default()
        },
        Mode::GlobalJob => ServiceSpecMode {
            global_job: Some(HashMap::new()),
            ..Default::default()
        },
    };
    ServiceSpec {
        name: Some(definition.name.clone()),
        labels: Some(labels),
        task_template: Some(task_template),
        mode: Some(mode),
        update_config: definition.update_config.as_deref().map(to_update_config),
        rollback_config: definition
            .rollback_config
            .as_deref()
            .map(to_rollback_config),
        networks: None,
        endpoint_spec: Some(EndpointSpec {
            mode: Some(match definition.endpoint_mode {
                EndpointMode::Vip => EndpointSpecModeEnum::VIP,
                EndpointMode::Dnsrr => EndpointSpecModeEnum::DNSRR,
            }),
            ports: Some(
                wire_port_order(&definition.ports)
                    .into_iter()
                    .map(|p| EndpointPortConfig {
                        name: None,
                        protocol: Some(match p.protocol {
                            Protocol::Tcp => EndpointPortConfigProtocolEnum::TCP,
                            Protocol::Udp => EndpointPortConfigProtocolEnum::UDP,
                            Protocol::Sctp => EndpointPortConfigProtocolEnum::SCTP,
                        }),
                        target_port: Some(i64::from(p.target)),
                        published_port: p.published.map(i64::from),
                        publish_mode: Some(match p.mode {
                            PublishMode::Ingress => EndpointPortConfigPublishModeEnum::INGRESS,
                            PublishMode::Host => EndpointPortConfigPublishModeEnum::HOST,
                        }),
                    })
                    .collect(),
            ),
        }),
    }
}

/// Ports in the order `docker stack deploy` sends them: by published port (unpublished
/// first), then by target port. The engine keeps the order it is sent, so a service moved
/// between the tools would otherwise inspect differently. The definition keeps its own sorted
/// order (its hash does not change); only the wire order follows the CLI.
fn wire_port_order(ports: &[Port]) -> Vec<&Port> {
    let mut ordered: Vec<&Port> = ports.iter().collect();
    ordered.sort_by_key(|p| (p.published.unwrap_or(0), p.target, p.protocol, p.mode));
    ordered
}

fn to_mount(mount: &Mount) -> DockerMount {
    DockerMount {
        target: Some(mount.target.clone()),
        source: mount.source.clone(),
        typ: match &mount.kind {
            MountKind::Spec(MountType::Volume) => Some(DockerMountType::VOLUME),
            MountKind::Spec(MountType::Bind) => Some(DockerMountType::BIND),
            MountKind::Spec(MountType::Tmpfs) => Some(DockerMountType::TMPFS),
            MountKind::EngineOnly(EngineOnlyMountType::Npipe) => Some(DockerMountType::NPIPE),
            MountKind::EngineOnly(EngineOnlyMountType::Cluster) => Some(DockerMountType::CLUSTER),
            MountKind::EngineOnly(EngineOnlyMountType::Image) => Some(DockerMountType::IMAGE),
        },
        read_only: Some(mount.read_only),
        tmpfs_options: (mount.tmpfs_size_bytes.is_some() || mount.tmpfs_mode.is_some()).then(
            || MountTmpfsOptions {
                size_bytes: mount.tmpfs_size_bytes,
                mode: mount.tmpfs_mode.map(i64::from),
                ..Default::default()
            },
        ),
        bind_options: mount.bind_propagation.map(|p| MountBindOptions {
            propagation: Some(match p {
                BindPropagation::Rprivate => MountBindOptionsPropagationEnum::RPRIVATE,
                BindPropagation::Private => MountBindOptionsPropagationEnum::PRIVATE,
                BindPropagation::Rshared => MountBindOptionsPropagationEnum::RSHARED,
                BindPropagation::Shared => MountBindOptionsPropagationEnum::SHARED,
                BindPropagation::Rslave => MountBindOptionsPropagationEnum::RSLAVE,
                BindPropagation::Slave => MountBindOptionsPropagationEnum::SLAVE,
            }),
            ..Default::default()
        }),
        volume_options: mount.volume.as_ref().map(|v| MountVolumeOptions {
            no_copy: Some(v.no_copy),
            labels: (!v.labels.is_empty()).then(|| to_hash_map(&v.labels)),
            driver_config: (v.driver.is_some() || !v.driver_options.is_empty()).then(|| {
                MountVolumeOptionsDriverConfig {
                    name: v.driver.clone(),
                    options: (!v.driver_options.is_empty()).then(|| to_hash_map(&v.driver_options)),
                }
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn sorted<T: Ord>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut items: Vec<T> = items.collect();
    items.sort();
    items
}

/// The config references of a service: its file mounts and, as `docker stack deploy` adds it,
/// a runtime reference (no file) to the config its credential spec names; sorted by name
/// (stably, so a file mount of the same config comes first), as the CLI sorts them.
fn config_references(definition: &ServiceDefinition) -> Option<Vec<TaskSpecContainerSpecConfigs>> {
    let files = definition
        .configs
        .iter()
        .map(|c| TaskSpecContainerSpecConfigs {
            file: Some(TaskSpecContainerSpecFile1 {
                name: Some(c.target.clone()),
                uid: Some(c.uid.clone()),
                gid: Some(c.gid.clone()),
                mode: Some(c.mode),
            }),
            config_name: Some(c.name.clone()),
            ..Default::default()
        });
    let runtime = match definition.credential_spec.as_deref() {
        Some(CredentialSpec::Config(name)) => Some(TaskSpecContainerSpecConfigs {
            runtime: Some(HashMap::new()),
            config_name: Some(name.clone()),
            ..Default::default()
        }),
        _ => None,
    };
    let mut references: Vec<_> = files.chain(runtime).collect();
    references.sort_by(|a, b| a.config_name.cmp(&b.config_name));
    (!references.is_empty()).then_some(references)
}

/// Fills in the config and secret ids of a rendered service spec from `ids` (swarm name →
/// id), and the id of the config a credential spec names; returns the first name that has no
/// id.
pub(crate) fn fill_data_ids(
    spec: &mut ServiceSpec,
    config_ids: &HashMap<String, String>,
    secret_ids: &HashMap<String, String>,
) -> Result<(), String> {
    let Some(container) = spec
        .task_template
        .as_mut()
        .and_then(|t| t.container_spec.as_mut())
    else {
        return Ok(());
    };
    for c in container.configs.iter_mut().flatten() {
        let name = c.config_name.clone().unwrap_or_default();
        c.config_id = Some(config_ids.get(&name).cloned().ok_or(name)?);
    }
    if let Some(config) = container
        .privileges
        .as_mut()
        .and_then(|p| p.credential_spec.as_mut())
        .and_then(|c| c.config.as_mut())
    {
        *config = config_ids.get(config).cloned().ok_or(config.clone())?;
    }
    for s in container.secrets.iter_mut().flatten() {
        let name = s.secret_name.clone().unwrap_or_default();
        s.secret_id = Some(secret_ids.get(&name).cloned().ok_or(name)?);
    }
    Ok(())
}

fn non_empty(items: &[String]) -> Option<Vec<String>> {
    (!items.is_empty()).then(|| items.to_vec())
}

/// A volume mount's options as the canonical form has them; `None` when they say nothing.
fn from_volume_options(options: &MountVolumeOptions) -> Option<VolumeOptions> {
    let driver = options.driver_config.as_ref();
    let read = VolumeOptions {
        no_copy: options.no_copy.unwrap_or(false),
        labels: all_labels(options.labels.as_ref()),
        driver: driver
            .and_then(|d| d.name.clone())
            .filter(|n| !n.is_empty()),
        driver_options: all_labels(driver.and_then(|d| d.options.as_ref())),
    };
    (read != VolumeOptions::default()).then_some(read)
}

/// Normalizes a service read from the engine. `network_names` maps network ids to names.
pub(crate) fn from_service(
    service: &Service,
    network_names: &HashMap<String, String>,
) -> Option<ObservedService> {
    let spec = service.spec.as_ref()?;
    let name = spec.name.clone()?;
    let task = spec.task_template.clone().unwrap_or_default();
    let container = task.container_spec.clone().unwrap_or_default();
    let network_name = |id: &str| {
        network_names
            .get(id)
            .cloned()
            .unwrap_or_else(|| id.to_owned())
    };
    // Older clients put networks on the service spec; the engine keeps whichever was used.
    let attachments = task.networks.as_ref().or(spec.networks.as_ref());
    let networks = attachments
        .into_iter()
        .flatten()
        .filter_map(|n| n.target.as_deref().map(network_name))
        .collect();
    let network_aliases = attachments
        .into_iter()
        .flatten()
        .filter_map(|n| {
            let aliases = n.aliases.clone().filter(|a| !a.is_empty())?;
            Some((network_name(n.target.as_deref()?), aliases))
        })
        .collect();
    let mode = match &spec.mode {
        Some(ServiceSpecMode {
            global: Some(_), ..
        }) => Mode::Global,
        Some(ServiceSpecMode {
            replicated: Some(r),
            ..
        }) => Mode::Replicated {
            replicas: r.replicas.unwrap_or(1).max(0) as u64,
        },
        Some(ServiceSpecMode {
            replicated_job: Some(j),
            ..
        }) => {
            // The engine's defaults: MaxConcurrent 1, TotalCompletions = MaxConcurrent.
            let max_concurrent = j.max_concurrent.unwrap_or(1).max(0) as u64;
            Mode::ReplicatedJob {
                max_concurrent,
                total_completions: j
                    .total_completions
                    .map_or(max_concurrent, |t| t.max(0) as u64),
            }
        }
        Some(ServiceSpecMode {
            global_job: Some(_),
            ..
        }) => Mode::GlobalJob,
        _ => Mode::Replicated { replicas: 1 },
    };
    let endpoint_spec = spec.endpoint_spec.clone().unwrap_or_default();
    let mut ports: Vec<Port> = endpoint_spec
        .ports
        .iter()
        .flatten()
        .map(|p| Port {
            target: p.target_port.unwrap_or(0) as u16,
            published: p.published_port.filter(|p| *p != 0).map(|p| p as u16),
            // Unset means the engine's default: TCP through the routing mesh.
            protocol: match p.protocol {
                Some(EndpointPortConfigProtocolEnum::UDP) => Protocol::Udp,
                Some(EndpointPortConfigProtocolEnum::SCTP) => Protocol::Sctp,
                Some(
                    EndpointPortConfigProtocolEnum::TCP | EndpointPortConfigProtocolEnum::EMPTY,
                )
                | None => Protocol::Tcp,
            },
            mode: match p.publish_mode {
                Some(EndpointPortConfigPublishModeEnum::HOST) => PublishMode::Host,
                Some(
                    EndpointPortConfigPublishModeEnum::INGRESS
                    | EndpointPortConfigPublishModeEnum::EMPTY,
                )
                | None => PublishMode::Ingress,
            },
        })
        .collect();
    ports.sort();
    let labels = all_labels(spec.labels.as_ref());
    let mounts = container
        .mounts
        .iter()
        .flatten()
        .map(|m| Mount {
            kind: mount_kind(m.typ),
            source: m.source.clone().filter(|s| !s.is_empty()),
            target: m.target.clone().unwrap_or_default(),
            read_only: m.read_only.unwrap_or(false),
            tmpfs_size_bytes: m
                .tmpfs_options
                .as_ref()
                .and_then(|t| non_zero(t.size_bytes)),
            tmpfs_mode: m
                .tmpfs_options
                .as_ref()
                .and_then(|t| non_zero(t.mode))
                .map(|m| m as u32),
            bind_propagation: m.bind_options.as_ref().and_then(|b| match b.propagation? {
                MountBindOptionsPropagationEnum::RPRIVATE => Some(BindPropagation::Rprivate),
                MountBindOptionsPropagationEnum::PRIVATE => Some(BindPropagation::Private),
                MountBindOptionsPropagationEnum::RSHARED => Some(BindPropagation::Rshared),
                MountBindOptionsPropagationEnum::SHARED => Some(BindPropagation::Shared),
                MountBindOptionsPropagationEnum::RSLAVE => Some(BindPropagation::Rslave),
                MountBindOptionsPropagationEnum::SLAVE => Some(BindPropagation::Slave),
                MountBindOptionsPropagationEnum::EMPTY => None,
            }),
            volume: m.volume_options.as_ref().and_then(from_volume_options),
        })
        .collect();
    let definition = ServiceDefinition {
        name,
        // Services created before images were normalized hold `name`: read as the CLI's
        // `name:latest`, they compare equal to the same spec (the engine pulls the same image).
        image: normalize_image(container.image.as_deref().unwrap_or_default()),
        mode,
        command: container.command.clone().filter(|c| !c.is_empty()),
        args: container.args.clone().filter(|a| !a.is_empty()),
        env: container
            .env
            .iter()
            .flatten()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (kv.clone(), String::new()),
            })
            .collect(),
        labels: user_labels(spec.labels.as_ref()),
        container_labels: all_labels(container.labels.as_ref()),
        networks,
        // Unset means the engine's default, a virtual IP.
        endpoint_mode: match endpoint_spec.mode {
            Some(EndpointSpecModeEnum::DNSRR) => EndpointMode::Dnsrr,
            Some(EndpointSpecModeEnum::VIP | EndpointSpecModeEnum::EMPTY) | None => {
                EndpointMode::Vip
            }
        },
        ports,
        healthcheck: container
            .health_check
            .as_ref()
            .map(|h| Healthcheck {
                test: h.test.clone().unwrap_or_default(),
                interval_ns: non_zero(h.interval),
                timeout_ns: non_zero(h.timeout),
                retries: non_zero(h.retries),
                start_period_ns: non_zero(h.start_period),
                start_interval_ns: non_zero(h.start_interval),
            })
            .map(Box::new),
        update_config: spec
            .update_config
            .as_ref()
            .map(from_update_config)
            .map(Box::new),
        rollback_config: spec
            .rollback_config
            .as_ref()
            .map(from_rollback_config)
            .map(Box::new),
        restart_policy: task
            .restart_policy
            .as_ref()
            .map(|p| RestartPolicy {
                condition: p.condition.and_then(|c| match c {
                    TaskSpecRestartPolicyConditionEnum::EMPTY => None,
                    TaskSpecRestartPolicyConditionEnum::NONE => Some(RestartCondition::None),
                    TaskSpecRestartPolicyConditionEnum::ON_FAILURE => {
                        Some(RestartCondition::OnFailure)
                    }
                    TaskSpecRestartPolicyConditionEnum::ANY => Some(RestartCondition::Any),
                }),
                delay_ns: non_zero(p.delay),
                max_attempts: p.max_attempts,
                window_ns: non_zero(p.window),
            })
            .map(Box::new),
        placement: task
            .placement
            .as_ref()
            .map(|p| Placement {
                constraints: p.constraints.clone().unwrap_or_default(),
                spread_preferences: p
                    .preferences
                    .iter()
                    .flatten()
                    .filter_map(|pref| pref.spread.as_ref()?.spread_descriptor.clone())
                    .collect(),
                max_replicas: p.max_replicas.filter(|m| *m > 0).map(|m| m as u64),
            })
            .map(Box::new),
        resources: task
            .resources
            .as_ref()
            .map(|r| Resources {
                limits: r.limits.as_ref().map(|l| ResourceAmounts {
                    nano_cpus: non_zero(l.nano_cpus),
                    memory_bytes: non_zero(l.memory_bytes),
                    pids: non_zero(l.pids),
                    generic_resources: Vec::new(),
                }),
                reservations: r.reservations.as_ref().map(|l| ResourceAmounts {
                    nano_cpus: non_zero(l.nano_cpus),
                    memory_bytes: non_zero(l.memory_bytes),
                    pids: None,
                    // Named resources (`GPU=UUID`) no spec can ask for: kept with an empty kind,
                    // so that they show as drift instead of vanishing.
                    generic_resources: l
                        .generic_resources
                        .iter()
                        .flatten()
                        .map(|g| match &g.discrete_resource_spec {
                            Some(d) => GenericResource {
                                kind: d.kind.clone().unwrap_or_default(),
                                value: d.value.unwrap_or(0),
                            },
                            None => GenericResource {
                                kind: String::new(),
                                value: 0,
                            },
                        })
                        .collect(),
                }),
            })
            .map(Box::new),
        mounts,
        stop_grace_period_ns: container.stop_grace_period,
        user: container.user.clone().filter(|u| !u.is_empty()),
        workdir: container.dir.clone().filter(|d| !d.is_empty()),
        hostname: container.hostname.clone().filter(|h| !h.is_empty()),
        init: container.init,
        stop_signal: container.stop_signal.clone().filter(|s| !s.is_empty()),
        read_only: container.read_only.filter(|r| *r),
        isolation: container.isolation.and_then(|i| match i {
            TaskSpecContainerSpecIsolationEnum::PROCESS => Some(Isolation::Process),
            TaskSpecContainerSpecIsolationEnum::HYPERV => Some(Isolation::Hyperv),
            // The engine's default, which it stores for an unset isolation.
            TaskSpecContainerSpecIsolationEnum::DEFAULT
            | TaskSpecContainerSpecIsolationEnum::EMPTY => None,
        }),
        credential_spec: container
            .privileges
            .as_ref()
            .and_then(|p| p.credential_spec.as_ref())
            .and_then(|c| {
                let set = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
                set(&c.file)
                    .map(CredentialSpec::File)
                    .or_else(|| set(&c.registry).map(CredentialSpec::Registry))
                    .or_else(|| {
                        // The engine stores the config's id: named by the reference that has
                        // it, as a spec names it (an id no reference has is kept, as drift).
                        let id = set(&c.config)?;
                        let name = container
                            .configs
                            .iter()
                            .flatten()
                            .find(|r| r.config_id.as_deref() == Some(id.as_str()))
                            .and_then(|r| r.config_name.clone());
                        Some(CredentialSpec::Config(name.unwrap_or(id)))
                    })
            })
            .map(Box::new),
        oom_score_adj: non_zero(container.oom_score_adj),
        tty: container.tty.filter(|t| *t),
        open_stdin: container.open_stdin.filter(|o| *o),
        capability_add: container.capability_add.clone().unwrap_or_default(),
        capability_drop: container.capability_drop.clone().unwrap_or_default(),
        sysctls: all_labels(container.sysctls.as_ref()),
        ulimits: container
            .ulimits
            .iter()
            .flatten()
            .filter_map(|u| {
                Some((
                    u.name.clone()?,
                    Ulimit {
                        soft: u.soft.unwrap_or(0),
                        hard: u.hard.unwrap_or(0),
                    },
                ))
            })
            .collect(),
        hosts: container.hosts.clone().unwrap_or_default(),
        dns: container
            .dns_config
            .as_ref()
            .map(|d| DnsConfig {
                nameservers: d.nameservers.clone().unwrap_or_default(),
                search: d.search.clone().unwrap_or_default(),
                options: d.options.clone().unwrap_or_default(),
            })
            .map(Box::new),
        log_driver: task
            .log_driver
            .as_ref()
            .and_then(|l| {
                Some(LogDriver {
                    name: l.name.clone().filter(|n| !n.is_empty())?,
                    options: all_labels(l.options.as_ref()),
                })
            })
            .map(Box::new),
        network_aliases,
        configs: sorted(container.configs.iter().flatten().filter_map(|c| {
            let file = c.file.as_ref()?;
            Some(FileMount {
                name: c.config_name.clone()?,
                target: file.name.clone().unwrap_or_default(),
                uid: file.uid.clone().unwrap_or_default(),
                gid: file.gid.clone().unwrap_or_default(),
                mode: file.mode.unwrap_or(0),
            })
        })),
        secrets: sorted(container.secrets.iter().flatten().filter_map(|c| {
            let file = c.file.as_ref()?;
            Some(FileMount {
                name: c.secret_name.clone()?,
                target: file.name.clone().unwrap_or_default(),
                uid: file.uid.clone().unwrap_or_default(),
                gid: file.gid.clone().unwrap_or_default(),
                mode: file.mode.unwrap_or(0),
            })
        })),
        force_update: task.force_update.unwrap_or(0),
    };
    let virtual_ips = service
        .endpoint
        .as_ref()
        .and_then(|e| e.virtual_ips.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|vip| {
            let network = network_name(vip.network_id.as_deref()?);
            let address = vip.addr.as_deref()?;
            Some(VirtualIp {
                network,
                address: strip_prefix_len(address).to_owned(),
            })
        })
        .collect();
    Some(ObservedService {
        id: service.id.clone()?,
        version: service.version.as_ref()?.index?,
        definition: definition.into(),
        ownership: Ownership::from_labels(&labels),
        virtual_ips,
        update_status: service.update_status.as_ref().map(|u| {
            Box::new(UpdateStatus {
                state: u.state.unwrap_or(UpdateState::EMPTY),
                message: u.message.clone().unwrap_or_default(),
                started_at: u.started_at.clone(),
            })
        }),
        revision: ServiceRevision {
            template: spec.task_template.as_ref().map(template_fingerprint),
            created_at: service.created_at.clone(),
            updated_at: service.updated_at.clone(),
            // Not in bollard's model: the raw read fills it in.
            previous_mounts: Vec::new(),
        },
    })
}

/// A fingerprint of a task template, equal for a service's `Spec.TaskTemplate` and the
/// `Spec` of every task created from it (swarm copies the template into the task).
///
/// `Runtime` is left out: the engine fills it in on the service but not on its tasks. Object
/// keys are sorted first, since the model's maps (labels, options) serialize in hash order.
pub(crate) fn template_fingerprint(template: &TaskSpec) -> String {
    let mut template = template.clone();
    template.runtime = None;
    // Serializing the engine's own model cannot fail.
    let value = serde_json::to_value(&template).expect("task specs serialize to JSON");
    crate::desired::definition::definition_hash(&sorted_keys(value))
}

fn sorted_keys(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let sorted: BTreeMap<String, serde_json::Value> =
                map.into_iter().map(|(k, v)| (k, sorted_keys(v))).collect();
            serde_json::Value::Object(sorted.into_iter().collect())
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(sorted_keys).collect())
        }
        other => other,
    }
}

/// A mount kind no spec can express: reported, and kept as drift.
fn engine_only(kind: EngineOnlyMountType) -> MountKind {
    report_unsupported(
        "Service.Spec.TaskTemplate.ContainerSpec.Mounts.Type",
        kind.as_str(),
    );
    MountKind::EngineOnly(kind)
}

/// A mount's kind as the definition holds it; unset is the engine's default, a volume.
fn mount_kind(kind: Option<DockerMountType>) -> MountKind {
    match kind {
        None | Some(DockerMountType::VOLUME) => MountKind::Spec(MountType::Volume),
        Some(DockerMountType::BIND) => MountKind::Spec(MountType::Bind),
        Some(DockerMountType::TMPFS) => MountKind::Spec(MountType::Tmpfs),
        Some(DockerMountType::NPIPE) => engine_only(EngineOnlyMountType::Npipe),
        Some(DockerMountType::CLUSTER) => engine_only(EngineOnlyMountType::Cluster),
        Some(DockerMountType::IMAGE) => engine_only(EngineOnlyMountType::Image),
    }
}

/// `10.0.1.5/24` → `10.0.1.5`.
pub(crate) fn strip_prefix_len(cidr: &str) -> &str {
    cidr.split_once('/').map_or(cidr, |(ip, _)| ip)
}

/// Renders the request that creates a network.
pub(crate) fn to_network_create(
    definition: &NetworkDefinition,
    owner_labels: &BTreeMap<String, String>,
) -> NetworkCreateRequest {
    let mut labels = to_hash_map(&definition.labels);
    labels.extend(owner_labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    let ipam = (definition.subnet.is_some() || definition.gateway.is_some()).then(|| Ipam {
        driver: Some("default".into()),
        config: Some(vec![IpamConfig {
            subnet: definition.subnet.clone(),
            gateway: definition.gateway.clone(),
            ..Default::default()
        }]),
        options: None,
    });
    NetworkCreateRequest {
        name: definition.name.clone(),
        driver: Some(definition.driver.clone()),
        scope: None,
        internal: Some(definition.internal),
        attachable: Some(definition.attachable),
        ipam,
        options: Some(to_hash_map(&definition.options)),
        labels: Some(labels),
        ..Default::default()
    }
}

/// Normalizes a network read from the engine.
pub(crate) fn from_network(network: &Network) -> Option<ObservedNetwork> {
    let labels = all_labels(network.labels.as_ref());
    let ipam_config = network
        .ipam
        .as_ref()
        .and_then(|i| i.config.as_ref())
        .and_then(|c| c.first());
    // The overlay driver reports its VXLAN id as an option it added itself; it is not user
    // configuration, so it must not count as drift.
    let options = network
        .options
        .iter()
        .flatten()
        .filter(|(k, _)| k.as_str() != "com.docker.network.driver.overlay.vxlanid_list")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Some(ObservedNetwork {
        id: network.id.clone()?,
        scope: network.scope.clone().unwrap_or_default(),
        definition: NetworkDefinition {
            name: network.name.clone()?,
            driver: network.driver.clone().unwrap_or_default(),
            attachable: network.attachable.unwrap_or(false),
            internal: network.internal.unwrap_or(false),
            options,
            labels: user_labels(network.labels.as_ref()),
            subnet: ipam_config.and_then(|c| c.subnet.clone()),
            gateway: ipam_config.and_then(|c| c.gateway.clone()),
        },
        ownership: Ownership::from_labels(&labels),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::definition::tests::sample_service;

    /// What the engine would hand back for a spec we sent: same spec, ids for networks.
    fn echo(spec: ServiceSpec) -> Service {
        let mut spec = spec;
        if let Some(task) = spec.task_template.as_mut() {
            for n in task.networks.iter_mut().flatten() {
                n.target = Some(format!("id-{}", n.target.as_deref().unwrap()));
            }
        }
        Service {
            id: Some("svc-id".into()),
            version: Some(bollard::models::ObjectVersion { index: Some(7) }),
            spec: Some(spec),
            ..Default::default()
        }
    }

    #[test]
    fn a_rendered_service_reads_back_as_the_same_definition() {
        let mut definition = sample_service("quote");
        definition.ports = vec![Port {
            target: 8080,
            published: Some(8080),
            protocol: Protocol::Udp,
            mode: PublishMode::Host,
        }];
        definition.healthcheck = Some(Box::new(Healthcheck {
            test: vec!["CMD".into(), "/healthcheck".into()],
            interval_ns: Some(3_000_000_000),
            timeout_ns: Some(3_000_000_000),
            retries: Some(3),
            start_period_ns: None,
            start_interval_ns: Some(1_000_000_000),
        }));
        definition.placement = Some(Box::new(Placement {
            constraints: vec!["node.role==manager".into()],
            spread_preferences: vec!["node.labels.zone".into()],
            max_replicas: Some(2),
        }));
        definition.mounts = vec![Mount {
            kind: MountKind::Spec(MountType::Tmpfs),
            source: None,
            target: "/tmp".into(),
            read_only: false,
            tmpfs_size_bytes: Some(1 << 20),
            tmpfs_mode: Some(0o1777),
            bind_propagation: None,
            volume: None,
        }];
        definition.update_config = Some(Box::new(UpdatePolicy {
            parallelism: Some(2),
            delay_ns: Some(1_000_000_000),
            failure_action: Some(FailureAction::Rollback),
            monitor_ns: None,
            max_failure_ratio: Some(0.5),
            order: Some(UpdateOrder::StartFirst),
        }));
        definition.rollback_config = Some(Box::new(UpdatePolicy {
            parallelism: None,
            delay_ns: None,
            failure_action: Some(FailureAction::Continue),
            monitor_ns: None,
            max_failure_ratio: None,
            order: Some(UpdateOrder::StopFirst),
        }));
        definition.restart_policy = Some(Box::new(RestartPolicy {
            condition: Some(RestartCondition::OnFailure),
            delay_ns: None,
            max_attempts: Some(3),
            window_ns: None,
        }));
        let owner = Ownership::labels("abc", "quote.yaml", "team-a");
        let networks = HashMap::from([("id-my_network".to_owned(), "my_network".to_owned())]);
        let observed = from_service(&echo(to_service_spec(&definition, &owner)), &networks)
            .expect("a complete service converts");
        assert_eq!(*observed.definition, definition);
        assert_eq!(observed.version, 7);
        assert!(observed.ownership.is_owned_by("team-a"));
        assert!(!observed.ownership.is_owned_by("default"));
        assert_eq!(observed.ownership.spec_hash.as_deref(), Some("abc"));
        assert_eq!(
            observed.ownership.source_file.as_deref(),
            Some("quote.yaml")
        );
    }

    #[test]
    fn job_modes_read_back_as_written_and_engine_defaults_as_the_engine_fills_them() {
        let owner = Ownership::labels("abc", "job.yaml", "default");
        for mode in [
            Mode::ReplicatedJob {
                max_concurrent: 2,
                total_completions: 5,
            },
            Mode::GlobalJob,
        ] {
            let definition = ServiceDefinition {
                mode: mode.clone(),
                ..sample_service("job")
            };
            let read = from_service(&echo(to_service_spec(&definition, &owner)), &HashMap::new())
                .expect("converts");
            assert_eq!(read.definition.mode, mode);
        }
        // `ReplicatedJob: {}` (another client): MaxConcurrent 1, TotalCompletions = it.
        let mut spec = to_service_spec(&sample_service("job"), &owner);
        spec.mode = Some(ServiceSpecMode {
            replicated_job: Some(ServiceSpecModeReplicatedJob::default()),
            ..Default::default()
        });
        let read = from_service(&echo(spec), &HashMap::new()).expect("converts");
        assert_eq!(
            read.definition.mode,
            Mode::ReplicatedJob {
                max_concurrent: 1,
                total_completions: 1
            }
        );
    }

    #[test]
    fn stack_deploy_fields_read_back_as_the_same_definition() {
        let mut definition = sample_service("stack_web");
        definition.hostname = Some("web-1".into());
        definition.init = Some(false);
        definition.stop_signal = Some("SIGQUIT".into());
        definition.read_only = Some(true);
        definition.isolation = Some(Isolation::Process);
        definition.credential_spec = Some(Box::new(CredentialSpec::Registry("gmsa-web".into())));
        definition.oom_score_adj = Some(-500);
        definition.resources = Some(Box::new(Resources {
            limits: None,
            reservations: Some(ResourceAmounts {
                nano_cpus: None,
                memory_bytes: None,
                pids: None,
                generic_resources: vec![GenericResource {
                    kind: "gpu".into(),
                    value: 2,
                }],
            }),
        }));
        definition.tty = Some(true);
        definition.open_stdin = Some(true);
        definition.capability_add = vec!["NET_ADMIN".into(), "SYS_TIME".into()];
        definition.capability_drop = vec!["ALL".into()];
        definition.sysctls = BTreeMap::from([("net.core.somaxconn".into(), "1024".into())]);
        definition.ulimits = BTreeMap::from([(
            "nofile".into(),
            Ulimit {
                soft: 1024,
                hard: 4096,
            },
        )]);
        definition.hosts = vec!["10.0.0.5 db.local".into()];
        definition.dns = Some(Box::new(DnsConfig {
            nameservers: vec!["10.0.0.2".into()],
            search: vec!["example.org".into()],
            options: vec!["ndots:2".into()],
        }));
        definition.log_driver = Some(Box::new(LogDriver {
            name: "json-file".into(),
            options: BTreeMap::from([("max-size".into(), "10m".into())]),
        }));
        definition.network_aliases =
            BTreeMap::from([("my_network".into(), vec!["web".into(), "www".into()])]);
        definition.mounts = vec![
            Mount {
                kind: MountKind::Spec(MountType::Bind),
                source: Some("/srv/www".into()),
                target: "/www".into(),
                read_only: true,
                tmpfs_size_bytes: None,
                tmpfs_mode: None,
                bind_propagation: Some(BindPropagation::Rslave),
                volume: None,
            },
            Mount {
                kind: MountKind::Spec(MountType::Volume),
                source: Some("stack_data".into()),
                target: "/data".into(),
                read_only: false,
                tmpfs_size_bytes: None,
                tmpfs_mode: None,
                bind_propagation: None,
                volume: Some(VolumeOptions {
                    no_copy: true,
                    labels: BTreeMap::from([("com.docker.stack.namespace".into(), "stack".into())]),
                    driver: Some("local".into()),
                    driver_options: BTreeMap::from([("type".into(), "tmpfs".into())]),
                }),
            },
        ];
        let networks = HashMap::from([("id-my_network".to_owned(), "my_network".to_owned())]);
        let observed = from_service(
            &echo(to_service_spec(&definition, &BTreeMap::new())),
            &networks,
        )
        .expect("a complete service converts");
        assert_eq!(*observed.definition, definition);
        // Unset, the new fields stay out of the hash input: services written by an older
        // operator keep their spec hash.
        let json = serde_json::to_string(&sample_service("a")).unwrap();
        for absent in [
            "isolation",
            "credentialSpec",
            "oomScoreAdj",
            "genericResources",
            "startIntervalNs",
            "hostname",
            "ulimits",
            "networkAliases",
            "logDriver",
            "tmpfsMode",
        ] {
            assert!(!json.contains(absent), "{absent} in {json}");
        }
    }

    /// As `docker stack deploy`: a credential spec from a config gets a runtime reference to
    /// that config (sorted among the file mounts by name), and names the config's id; it reads
    /// back as the config's name.
    #[test]
    fn a_credential_spec_config_is_a_runtime_reference_named_by_id() {
        let mut definition = sample_service("gmsa");
        definition.credential_spec =
            Some(Box::new(CredentialSpec::Config("b_spec-0123456789".into())));
        definition.configs = ["a_conf", "c_conf"]
            .map(|name| crate::desired::definition::FileMount {
                name: name.into(),
                target: format!("/{name}"),
                uid: "0".into(),
                gid: "0".into(),
                mode: 0o444,
            })
            .to_vec();
        let mut spec = to_service_spec(&definition, &BTreeMap::new());
        let ids: HashMap<String, String> = ["a_conf", "b_spec-0123456789", "c_conf"]
            .map(|n| (n.to_owned(), format!("id-{n}")))
            .into();
        fill_data_ids(&mut spec, &ids, &HashMap::new()).expect("every id is known");
        let container = spec
            .task_template
            .as_ref()
            .and_then(|t| t.container_spec.as_ref())
            .unwrap();
        let references: Vec<(String, bool, bool)> = container
            .configs
            .iter()
            .flatten()
            .map(|c| {
                (
                    c.config_name.clone().unwrap(),
                    c.file.is_some(),
                    c.runtime.is_some(),
                )
            })
            .collect();
        assert_eq!(
            references,
            [
                ("a_conf".to_owned(), true, false),
                ("b_spec-0123456789".to_owned(), false, true),
                ("c_conf".to_owned(), true, false),
            ]
        );
        let credential = container
            .privileges
            .as_ref()
            .and_then(|p| p.credential_spec.as_ref())
            .unwrap();
        assert_eq!(credential.config.as_deref(), Some("id-b_spec-0123456789"));
        assert_eq!(
            (credential.file.clone(), credential.registry.clone()),
            (None, None)
        );
        // The runtime reference is serialized as swarm wants it: `"Runtime": {}`.
        let json = serde_json::to_value(&container.configs).unwrap();
        assert_eq!(json[1]["Runtime"], serde_json::json!({}));
        assert!(json[1].get("File").is_none());
        let read = from_service(&echo(spec), &HashMap::new()).expect("converts");
        assert_eq!(read.definition.credential_spec, definition.credential_spec);
        assert_eq!(read.definition.configs, definition.configs);
        assert_eq!(
            read.definition
                .data_names(crate::desired::data_objects::DataKind::Config)
                .into_iter()
                .collect::<Vec<_>>(),
            ["a_conf", "b_spec-0123456789", "c_conf"]
        );
        // A config the swarm does not have is named, as for a mount.
        let mut spec = to_service_spec(&definition, &BTreeMap::new());
        let without: HashMap<String, String> = [("a_conf", "1"), ("c_conf", "2")]
            .map(|(n, i)| (n.to_owned(), i.to_owned()))
            .into();
        assert_eq!(
            fill_data_ids(&mut spec, &without, &HashMap::new()),
            Err("b_spec-0123456789".to_owned())
        );
    }

    #[test]
    fn ports_go_out_in_the_order_stack_deploy_sends_them() {
        let port = |target, published, protocol| Port {
            target,
            published,
            protocol,
            mode: PublishMode::Ingress,
        };
        let mut definition = sample_service("ports");
        definition.ports = vec![
            port(8080, Some(29080), Protocol::Tcp),
            port(8081, Some(29081), Protocol::Udp),
            port(8082, Some(29082), Protocol::Tcp),
            port(8083, None, Protocol::Tcp),
        ];
        let spec = to_service_spec(&definition, &BTreeMap::new());
        let sent: Vec<i64> = spec
            .endpoint_spec
            .unwrap()
            .ports
            .unwrap()
            .iter()
            .map(|p| p.target_port.unwrap())
            .collect();
        assert_eq!(sent, [8083, 8080, 8081, 8082]);
    }

    #[test]
    fn a_service_without_operator_labels_is_not_owned() {
        let definition = sample_service("foreign");
        let observed = from_service(
            &echo(to_service_spec(&definition, &BTreeMap::new())),
            &HashMap::new(),
        )
        .unwrap();
        assert!(!observed.ownership.managed);
    }

    #[test]
    fn a_mount_kind_no_spec_can_express_is_kept_as_drift() {
        let mut definition = sample_service("pipes");
        definition.mounts = vec![Mount {
            kind: MountKind::EngineOnly(EngineOnlyMountType::Npipe),
            source: Some(r"\\.\pipe\docker_engine".into()),
            target: r"\\.\pipe\docker_engine".into(),
            read_only: false,
            tmpfs_size_bytes: None,
            tmpfs_mode: None,
            bind_propagation: None,
            volume: None,
        }];
        let rendered = to_service_spec(&definition, &BTreeMap::new());
        let observed = from_service(&echo(rendered), &HashMap::new()).unwrap();
        assert_eq!(
            observed.definition.mounts[0].kind,
            MountKind::EngineOnly(EngineOnlyMountType::Npipe)
        );
        let mut desired = definition;
        desired.mounts[0].kind = MountKind::Spec(MountType::Volume);
        assert_ne!(*observed.definition, desired);
    }

    #[test]
    fn cidr_prefix_is_stripped() {
        assert_eq!(strip_prefix_len("10.0.1.9/24"), "10.0.1.9");
        assert_eq!(strip_prefix_len("10.0.1.9"), "10.0.1.9");
    }
}
