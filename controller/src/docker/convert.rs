//! Conversions between the canonical definitions and bollard's Engine API models.
//!
//! `to_*` renders what we send; `from_*` normalizes what the engine returns so that a service
//! created from a definition reads back as the same definition (tested against a real swarm).

use std::collections::{BTreeMap, HashMap};

use bollard::models::{
    EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum,
    EndpointSpec, EndpointSpecModeEnum, HealthConfig, Ipam, IpamConfig, Limit,
    Mount as DockerMount, MountTmpfsOptions, MountType as DockerMountType, Network,
    NetworkAttachmentConfig, NetworkCreateRequest, ResourceObject, Service, ServiceSpec,
    ServiceSpecMode, ServiceSpecModeReplicated, ServiceSpecRollbackConfig,
    ServiceSpecRollbackConfigFailureActionEnum, ServiceSpecRollbackConfigOrderEnum,
    ServiceSpecUpdateConfig, ServiceSpecUpdateConfigFailureActionEnum,
    ServiceSpecUpdateConfigOrderEnum, TaskSpec, TaskSpecContainerSpec, TaskSpecPlacement,
    TaskSpecPlacementPreferences, TaskSpecPlacementSpread, TaskSpecResources,
    TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum,
};

use super::{ObservedNetwork, ObservedService, Ownership, UpdateState, UpdateStatus, VirtualIp};
use crate::definition::{
    EndpointMode, FailureAction, Healthcheck, Mode, Mount, MountKind, MountType, NetworkDefinition,
    OPERATOR_LABEL_PREFIX, Placement, Port, Protocol, PublishMode, ResourceAmounts, Resources,
    RestartCondition, RestartPolicy, ServiceDefinition, UpdateOrder, UpdatePolicy,
};

fn to_hash_map(map: &BTreeMap<String, String>) -> HashMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// User labels: everything but the operator's own.
fn user_labels(labels: Option<&HashMap<String, String>>) -> BTreeMap<String, String> {
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
            start_interval: None,
        }),
        ..Default::default()
    };
    let task_template = TaskSpec {
        container_spec: Some(container_spec),
        resources: definition.resources.as_ref().map(|r| TaskSpecResources {
            limits: r.limits.as_ref().map(|l| Limit {
                nano_cpus: l.nano_cpus,
                memory_bytes: l.memory_bytes,
                pids: l.pids,
            }),
            reservations: r.reservations.as_ref().map(|l| ResourceObject {
                nano_cpus: l.nano_cpus,
                memory_bytes: l.memory_bytes,
                generic_resources: None,
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
                    ..Default::default()
                })
                .collect(),
        ),
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
    };
    ServiceSpec {
        name: Some(definition.name.clone()),
        labels: Some(labels),
        task_template: Some(task_template),
        mode: Some(mode),
        update_config: definition.update_config.as_ref().map(to_update_config),
        rollback_config: definition.rollback_config.as_ref().map(to_rollback_config),
        networks: None,
        endpoint_spec: Some(EndpointSpec {
            mode: Some(match definition.endpoint_mode {
                EndpointMode::Vip => EndpointSpecModeEnum::VIP,
                EndpointMode::Dnsrr => EndpointSpecModeEnum::DNSRR,
            }),
            ports: Some(
                definition
                    .ports
                    .iter()
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

fn to_mount(mount: &Mount) -> DockerMount {
    DockerMount {
        target: Some(mount.target.clone()),
        source: mount.source.clone(),
        typ: match &mount.kind {
            MountKind::Spec(MountType::Volume) => Some(DockerMountType::VOLUME),
            MountKind::Spec(MountType::Bind) => Some(DockerMountType::BIND),
            MountKind::Spec(MountType::Tmpfs) => Some(DockerMountType::TMPFS),
            // Only read from the engine, where it came from this same enum.
            MountKind::Unsupported(kind) => kind.parse().ok(),
        },
        read_only: Some(mount.read_only),
        tmpfs_options: mount.tmpfs_size_bytes.map(|size| MountTmpfsOptions {
            size_bytes: Some(size),
            ..Default::default()
        }),
        ..Default::default()
    }
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
            kind: mount_kind(&name, m.typ),
            source: m.source.clone().filter(|s| !s.is_empty()),
            target: m.target.clone().unwrap_or_default(),
            read_only: m.read_only.unwrap_or(false),
            tmpfs_size_bytes: m
                .tmpfs_options
                .as_ref()
                .and_then(|t| non_zero(t.size_bytes)),
        })
        .collect();
    let definition = ServiceDefinition {
        name,
        image: container.image.clone().unwrap_or_default(),
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
        endpoint_mode: match endpoint_spec.mode {
            Some(EndpointSpecModeEnum::DNSRR) => EndpointMode::Dnsrr,
            _ => EndpointMode::Vip,
        },
        ports,
        healthcheck: container.health_check.as_ref().map(|h| Healthcheck {
            test: h.test.clone().unwrap_or_default(),
            interval_ns: non_zero(h.interval),
            timeout_ns: non_zero(h.timeout),
            retries: non_zero(h.retries),
            start_period_ns: non_zero(h.start_period),
        }),
        update_config: spec.update_config.as_ref().map(from_update_config),
        rollback_config: spec.rollback_config.as_ref().map(from_rollback_config),
        restart_policy: task.restart_policy.as_ref().map(|p| RestartPolicy {
            condition: p.condition.and_then(|c| match c {
                TaskSpecRestartPolicyConditionEnum::EMPTY => None,
                TaskSpecRestartPolicyConditionEnum::NONE => Some(RestartCondition::None),
                TaskSpecRestartPolicyConditionEnum::ON_FAILURE => Some(RestartCondition::OnFailure),
                TaskSpecRestartPolicyConditionEnum::ANY => Some(RestartCondition::Any),
            }),
            delay_ns: non_zero(p.delay),
            max_attempts: p.max_attempts,
            window_ns: non_zero(p.window),
        }),
        placement: task.placement.as_ref().map(|p| Placement {
            constraints: p.constraints.clone().unwrap_or_default(),
            spread_preferences: p
                .preferences
                .iter()
                .flatten()
                .filter_map(|pref| pref.spread.as_ref()?.spread_descriptor.clone())
                .collect(),
            max_replicas: p.max_replicas.filter(|m| *m > 0).map(|m| m as u64),
        }),
        resources: task.resources.as_ref().map(|r| Resources {
            limits: r.limits.as_ref().map(|l| ResourceAmounts {
                nano_cpus: non_zero(l.nano_cpus),
                memory_bytes: non_zero(l.memory_bytes),
                pids: non_zero(l.pids),
            }),
            reservations: r.reservations.as_ref().map(|l| ResourceAmounts {
                nano_cpus: non_zero(l.nano_cpus),
                memory_bytes: non_zero(l.memory_bytes),
                pids: None,
            }),
        }),
        mounts,
        stop_grace_period_ns: container.stop_grace_period,
        user: container.user.clone().filter(|u| !u.is_empty()),
        workdir: container.dir.clone().filter(|d| !d.is_empty()),
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
        definition,
        ownership: Ownership::from_labels(&labels),
        virtual_ips,
        update_status: service.update_status.as_ref().map(|u| UpdateStatus {
            state: u.state.unwrap_or(UpdateState::EMPTY),
            message: u.message.clone().unwrap_or_default(),
        }),
    })
}

/// A mount's kind as the definition holds it; unset is the engine's default, a volume.
fn mount_kind(service: &str, kind: Option<DockerMountType>) -> MountKind {
    match kind {
        None | Some(DockerMountType::VOLUME) => MountKind::Spec(MountType::Volume),
        Some(DockerMountType::BIND) => MountKind::Spec(MountType::Bind),
        Some(DockerMountType::TMPFS) => MountKind::Spec(MountType::Tmpfs),
        Some(
            other @ (DockerMountType::CLUSTER | DockerMountType::IMAGE | DockerMountType::NPIPE),
        ) => {
            tracing::warn!(
                service,
                kind = %other,
                "the service has a mount of a kind no spec can express; a managed service \
                 gets it replaced by its spec's mounts"
            );
            MountKind::Unsupported(other.to_string())
        }
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
    use crate::definition::tests::sample_service;

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
        definition.healthcheck = Some(Healthcheck {
            test: vec!["CMD".into(), "/healthcheck".into()],
            interval_ns: Some(3_000_000_000),
            timeout_ns: Some(3_000_000_000),
            retries: Some(3),
            start_period_ns: None,
        });
        definition.placement = Some(Placement {
            constraints: vec!["node.role==manager".into()],
            spread_preferences: vec!["node.labels.zone".into()],
            max_replicas: Some(2),
        });
        definition.mounts = vec![Mount {
            kind: MountKind::Spec(MountType::Tmpfs),
            source: None,
            target: "/tmp".into(),
            read_only: false,
            tmpfs_size_bytes: Some(1 << 20),
        }];
        definition.update_config = Some(UpdatePolicy {
            parallelism: Some(2),
            delay_ns: Some(1_000_000_000),
            failure_action: Some(FailureAction::Rollback),
            monitor_ns: None,
            max_failure_ratio: Some(0.5),
            order: Some(UpdateOrder::StartFirst),
        });
        definition.rollback_config = Some(UpdatePolicy {
            parallelism: None,
            delay_ns: None,
            failure_action: Some(FailureAction::Continue),
            monitor_ns: None,
            max_failure_ratio: None,
            order: Some(UpdateOrder::StopFirst),
        });
        definition.restart_policy = Some(RestartPolicy {
            condition: Some(RestartCondition::OnFailure),
            delay_ns: None,
            max_attempts: Some(3),
            window_ns: None,
        });
        let owner = Ownership::labels("abc", "quote.yaml", "team-a");
        let networks = HashMap::from([("id-my_network".to_owned(), "my_network".to_owned())]);
        let observed = from_service(&echo(to_service_spec(&definition, &owner)), &networks)
            .expect("a complete service converts");
        assert_eq!(observed.definition, definition);
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
            kind: MountKind::Unsupported("npipe".into()),
            source: Some(r"\\.\pipe\docker_engine".into()),
            target: r"\\.\pipe\docker_engine".into(),
            read_only: false,
            tmpfs_size_bytes: None,
        }];
        let rendered = to_service_spec(&definition, &BTreeMap::new());
        let observed = from_service(&echo(rendered), &HashMap::new()).unwrap();
        assert_eq!(
            observed.definition.mounts[0].kind,
            MountKind::Unsupported("npipe".into())
        );
        let mut desired = definition.clone();
        desired.mounts[0].kind = MountKind::Spec(MountType::Volume);
        assert_ne!(observed.definition, desired);
    }

    #[test]
    fn cidr_prefix_is_stripped() {
        assert_eq!(strip_prefix_len("10.0.1.9/24"), "10.0.1.9");
        assert_eq!(strip_prefix_len("10.0.1.9"), "10.0.1.9");
    }
}
