//! A merged compose model turned into spec objects exactly as `docker stack deploy -c FILE
//! NAME` would create them: `NAME_service`, `NAME_network`, `NAME_volume`, the
//! `com.docker.stack.namespace` label, and the defaults the docker CLI fills in.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::model::{Compose, DependencyCondition, Dropped, Gated, Invalid, Service, SourceFile};
use crate::labels::Labels;
use crate::spec::{
    ApiVersion, BindPropagation, ConfigKind, DataSpec, DnsSpec, EndpointMode, FileMode,
    FileReference, HealthcheckSpec, IpamSpec, LoggingSpec, MountSpec, MountType, NetworkKind,
    NetworkSpec, ObjectMeta, PlacementSpec, RestartCondition, RestartPolicySpec, SecretKind,
    ServiceKind, ServiceMode, ServiceSpec, SwarmConfig, SwarmNetwork, SwarmSecret, SwarmService,
    UpdatePolicy, VolumeOptionsSpec,
};
use crate::yaml::Origin;

/// The label `docker stack` uses to find a stack's objects.
pub const NAMESPACE_LABEL: &str = "com.docker.stack.namespace";
/// The label stack deploy puts the compose file's image reference in.
pub const IMAGE_LABEL: &str = "com.docker.stack.image";

/// A file the specs read (config/secret data, env files), to be copied next to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopiedFile {
    /// Where it is now (canonical, inside the compose file's directory).
    pub from: PathBuf,
    /// Where the compose file names it.
    pub origin: Origin,
    /// The field that names it.
    pub field: String,
    /// What the file is, for its size limit.
    pub kind: CopiedKind,
    /// Path relative to the output directory (as the spec refers to it).
    pub to: String,
    /// A secret's file: written readable by the owner only.
    pub secret: bool,
}

/// What a copied file is: each has its own size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopiedKind {
    /// A config's or secret's data.
    Data,
    /// An env file.
    Env,
}

/// The spec objects of a stack, with the files they need.
#[derive(Debug, Clone, Default)]
pub struct Stack {
    /// Services, by swarm name.
    pub services: Vec<SwarmService>,
    /// Networks (created and external), by swarm name.
    pub networks: Vec<SwarmNetwork>,
    /// Configs.
    pub configs: Vec<SwarmConfig>,
    /// Secrets.
    pub secrets: Vec<SwarmSecret>,
    /// Files to copy.
    pub files: Vec<CopiedFile>,
    /// What was left out, located.
    pub dropped: Vec<Dropped>,
    /// Values that could not be converted.
    pub invalid: Vec<Invalid>,
    /// Keys older engines do not know, located.
    pub gated: Vec<Gated>,
}

pub(super) fn scope(stack: &str, name: &str) -> String {
    format!("{stack}_{name}")
}

fn with_namespace<M: FromIterator<(String, String)>>(
    stack: &str,
    labels: &BTreeMap<String, String>,
) -> M {
    // Collected maps keep the last of equal keys: the namespace wins over a user's label.
    labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .chain([(NAMESPACE_LABEL.to_owned(), stack.to_owned())])
        .collect()
}

/// Converts the merged compose model of stack `stack`.
pub fn convert(compose: &Compose, stack: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Stack {
    let mut out = Stack::default();
    let mut used_networks = BTreeSet::new();
    for (name, service) in &compose.services {
        let converted = convert_service(compose, stack, name, service, lookup, &mut out);
        used_networks.extend(service.networks.keys().cloned());
        if service.networks.is_empty() {
            used_networks.insert("default".to_owned());
        }
        out.services.push(converted);
    }
    // docker compose refuses a cycle; services in one could never start under the operator.
    let graph: BTreeMap<&str, &[String]> = out
        .services
        .iter()
        .map(|s| (s.metadata.name.as_str(), s.spec.depends_on.as_slice()))
        .collect();
    if let Some(cycle) = dependency_cycle(&graph) {
        let compose_name = |swarm: &str| {
            swarm
                .strip_prefix(stack)
                .and_then(|n| n.strip_prefix('_'))
                .unwrap_or(swarm)
                .to_owned()
        };
        let first = compose_name(cycle[0]);
        let invalid = Invalid {
            origin: compose
                .services
                .get(&first)
                .and_then(|s| s.origin.clone())
                .unwrap_or_else(unknown_origin),
            path: format!("services.{first}.depends_on"),
            message: format!(
                "dependency cycle: {}; services in a cycle could never start",
                cycle
                    .iter()
                    .map(|n| compose_name(n))
                    .collect::<Vec<_>>()
                    .join(" → ")
            ),
        };
        out.invalid.push(invalid);
    }
    // Stack deploy creates only the networks some service uses.
    for name in used_networks {
        let decl = compose.networks.get(&name).cloned().unwrap_or_default();
        let swarm_name = decl.name.clone().unwrap_or_else(|| scope(stack, &name));
        let spec = if decl.external {
            NetworkSpec {
                external: true,
                ..NetworkSpec::default()
            }
        } else {
            NetworkSpec {
                driver: decl.driver.clone().unwrap_or_else(|| "overlay".to_owned()),
                attachable: decl.attachable,
                internal: decl.internal,
                options: decl.driver_opts.clone(),
                ipam: decl.subnets.first().map(|subnet| IpamSpec {
                    subnet: Some(subnet.clone()),
                    gateway: None,
                }),
                external: false,
            }
        };
        out.networks.push(SwarmNetwork {
            api_version: ApiVersion::V1Alpha1,
            kind: NetworkKind::SwarmNetwork,
            metadata: ObjectMeta {
                name: swarm_name,
                labels: if decl.external {
                    Labels::new()
                } else {
                    with_namespace(stack, &decl.labels)
                },
                annotations: BTreeMap::new(),
            },
            spec,
        });
    }
    // Stack deploy creates every declared config and secret, used or not.
    for (name, decl) in &compose.configs {
        if decl.external {
            continue;
        }
        let logical = decl.name.clone().unwrap_or_else(|| scope(stack, name));
        let to = data_file(&mut out, "configs", &logical, decl.file.as_ref(), false);
        out.configs.push(SwarmConfig {
            api_version: ApiVersion::V1Alpha1,
            kind: ConfigKind::SwarmConfig,
            metadata: ObjectMeta {
                name: logical,
                labels: with_namespace(stack, &decl.labels),
                annotations: BTreeMap::new(),
            },
            spec: DataSpec {
                file: to,
                ..DataSpec::default()
            },
        });
    }
    for (name, decl) in &compose.secrets {
        if decl.external {
            continue;
        }
        let logical = decl.name.clone().unwrap_or_else(|| scope(stack, name));
        let to = data_file(&mut out, "secrets", &logical, decl.file.as_ref(), true);
        out.secrets.push(SwarmSecret {
            api_version: ApiVersion::V1Alpha1,
            kind: SecretKind::SwarmSecret,
            metadata: ObjectMeta {
                name: logical,
                labels: with_namespace(stack, &decl.labels),
                annotations: BTreeMap::new(),
            },
            spec: DataSpec {
                file: to,
                ..DataSpec::default()
            },
        });
    }
    out
}

/// A cycle of `graph` (its names, the first repeated at the end), if it has one.
fn dependency_cycle<'a>(graph: &BTreeMap<&'a str, &'a [String]>) -> Option<Vec<&'a str>> {
    fn visit<'a>(
        node: &'a str,
        graph: &BTreeMap<&'a str, &'a [String]>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<&'a str>> {
        if let Some(start) = path.iter().position(|n| *n == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node);
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node);
        for dependency in graph.get(node).copied().unwrap_or_default() {
            if let Some(cycle) = visit(dependency, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node);
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

fn unknown_origin() -> Origin {
    Origin {
        file: Default::default(),
        line: 0,
        column: 0,
    }
}

/// `depends_on` as `dependsOn`, by swarm name. `dependsOn` waits until every replica of the
/// dependency runs its current spec: that covers `service_started`, and `service_healthy` as
/// well (swarm reports a task with a healthcheck as running only once it is healthy). A job
/// that must have exited 0 has no equivalent: waiting for it to be running would hold the
/// dependent back for ever, so that entry is left out, and reported.
fn dependencies(
    compose: &Compose,
    stack: &str,
    name: &str,
    s: &Service,
    out: &mut Stack,
) -> Vec<String> {
    let mut depends_on = Vec::new();
    for d in &s.depends_on {
        let left_out = if d.condition == DependencyCondition::CompletedSuccessfully {
            Some(format!(
                "condition {}: swarm has no run-to-completion ordering, and dependsOn would wait \
                 for `{}` to keep running; the dependency is left out",
                d.condition.as_str(),
                d.service
            ))
        } else if !compose.services.contains_key(&d.service) {
            Some(format!(
                "`{}` is not a service of the stack; the dependency is left out",
                d.service
            ))
        } else {
            None
        };
        match left_out {
            Some(reason) => out.dropped.push(Dropped {
                origin: d.origin.clone(),
                path: format!("services.{name}.depends_on.{}", d.service),
                reason,
            }),
            None => {
                let swarm_name = scope(stack, &d.service);
                if !depends_on.contains(&swarm_name) {
                    depends_on.push(swarm_name);
                }
            }
        }
    }
    depends_on
}

fn data_file(
    out: &mut Stack,
    dir: &str,
    logical: &str,
    from: Option<&SourceFile>,
    secret: bool,
) -> Option<String> {
    let from = from?;
    let base = from
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".to_owned());
    let to = format!("files/{dir}/{logical}/{base}");
    out.files.push(CopiedFile {
        from: from.path.clone(),
        origin: from.origin.clone(),
        field: from.field.clone(),
        kind: CopiedKind::Data,
        to: to.clone(),
        secret,
    });
    Some(format!("./{to}"))
}

fn convert_service(
    compose: &Compose,
    stack: &str,
    name: &str,
    s: &Service,
    lookup: &dyn Fn(&str) -> Option<String>,
    out: &mut Stack,
) -> SwarmService {
    let origin = s.origin.clone().unwrap_or_else(unknown_origin);
    let path = format!("services.{name}");
    let mut invalid = |field: &str, message: String| {
        out.invalid.push(Invalid {
            origin: origin.clone(),
            path: format!("{path}.{field}"),
            message,
        });
    };
    let image = s.image.clone().unwrap_or_default();
    if image.is_empty() {
        invalid(
            "image",
            "a service needs an image (stack deploy does not build)".into(),
        );
    }
    let mut labels: Labels = with_namespace(stack, &s.deploy.labels);
    labels.insert(IMAGE_LABEL.to_owned(), image.clone());

    // Environment: names without a value come from the environment at import time, as
    // stack deploy reads them at deploy time; names still unset are left out.
    let mut env = BTreeMap::new();
    for (k, v) in &s.environment {
        match v.clone().or_else(|| lookup(k)) {
            Some(v) => {
                env.insert(k.clone(), v);
            }
            None => out.dropped.push(Dropped {
                origin: origin.clone(),
                path: format!("{path}.environment.{k}"),
                reason: "has no value and is not set in the environment: left out".into(),
            }),
        }
    }
    let mut env_file = Vec::new();
    for file in &s.env_file {
        let base = file
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "env".to_owned());
        let to = format!("files/env/{}/{base}", scope(stack, name));
        out.files.push(CopiedFile {
            from: file.path.clone(),
            origin: file.origin.clone(),
            field: file.field.clone(),
            kind: CopiedKind::Env,
            to: to.clone(),
            secret: false,
        });
        env_file.push(format!("./{to}"));
    }

    // Networks: sorted by swarm name, each with the service's own name as an alias (stack
    // deploy adds it so `name` resolves inside the stack).
    let mut networks: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let attached: Vec<(String, Option<Vec<String>>)> = if s.networks.is_empty() {
        vec![("default".to_owned(), None)]
    } else {
        s.networks
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    for (net, aliases) in attached {
        let decl = compose.networks.get(&net);
        if decl.is_none() && net != "default" {
            invalid("networks", format!("undefined network `{net}`"));
            continue;
        }
        let target = decl
            .and_then(|d| d.name.clone())
            .unwrap_or_else(|| scope(stack, &net));
        let mut all = aliases.unwrap_or_default();
        if !matches!(target.as_str(), "host" | "bridge" | "none" | "default") {
            all.push(name.to_owned());
        }
        networks.insert(target, all);
    }

    let mut mounts = Vec::new();
    for v in &s.volumes {
        let kind = match v.kind.as_str() {
            "volume" => MountType::Volume,
            "bind" => MountType::Bind,
            "tmpfs" => MountType::Tmpfs,
            other => {
                invalid(
                    "volumes",
                    format!("mount type `{other}` is not supported: volume, bind or tmpfs"),
                );
                continue;
            }
        };
        let mut mount = MountSpec {
            r#type: kind,
            source: v.source.clone(),
            target: v.target.clone(),
            read_only: v.read_only,
            tmpfs_size: v.tmpfs_size.map(crate::spec::MemoryQuantity),
            tmpfs_mode: None,
            bind_propagation: v.bind_propagation.as_deref().and_then(|p| {
                serde_json::from_value::<BindPropagation>(serde_json::Value::String(p.to_owned()))
                    .ok()
            }),
            volume: None,
        };
        if kind == MountType::Volume
            && let Some(source) = &v.source
        {
            let Some(decl) = compose.volumes.get(source) else {
                invalid(
                    "volumes",
                    format!(
                        "undefined volume `{source}`: declare it under the top-level `volumes:`"
                    ),
                );
                continue;
            };
            mount.source = Some(decl.name.clone().unwrap_or_else(|| scope(stack, source)));
            let mut options = VolumeOptionsSpec {
                no_copy: v.no_copy.unwrap_or(false),
                ..Default::default()
            };
            if !decl.external {
                options.labels = with_namespace(stack, &decl.labels);
                if decl.driver.is_some() || decl.driver_opts.is_some() {
                    options.driver = decl.driver.clone().filter(|d| !d.is_empty());
                    options.driver_options = decl.driver_opts.clone().unwrap_or_default();
                }
            }
            mount.volume = Some(options);
        }
        mounts.push(mount);
    }

    let refs = |list: &[FileReference],
                decls: &BTreeMap<String, super::model::FileObjectDecl>,
                kind: &str,
                invalid: &mut dyn FnMut(&str, String)|
     -> Vec<FileReference> {
        let mut converted: Vec<FileReference> = Vec::new();
        for r in list {
            let Some(decl) = decls.get(&r.name) else {
                invalid(
                    kind,
                    format!(
                        "undefined {kind} `{}`: declare it under the top-level `{kind}s:`",
                        r.name
                    ),
                );
                continue;
            };
            let swarm_name = decl.name.clone().unwrap_or_else(|| scope(stack, &r.name));
            // The docker CLI's defaults, written out so the spec says what runs.
            converted.push(FileReference {
                name: swarm_name,
                target: Some(r.target.clone().unwrap_or_else(|| r.name.clone())),
                uid: Some(r.uid.clone().unwrap_or_else(|| "0".into())),
                gid: Some(r.gid.clone().unwrap_or_else(|| "0".into())),
                mode: Some(r.mode.unwrap_or(FileMode(0o444))),
                external: decl.external,
            });
        }
        converted.sort_by(|a, b| a.name.cmp(&b.name));
        converted
    };
    let configs = refs(&s.configs, &compose.configs, "config", &mut invalid);
    let secrets = refs(&s.secrets, &compose.secrets, "secret", &mut invalid);
    // docker/cli's convertCredentialSpec: `config` names a top-level config, which the service
    // then gets by its swarm name (a runtime reference, added when the spec is rendered).
    let credential_spec = s.credential_spec.clone().map(|mut c| {
        if let Some(key) = c.config.take() {
            match compose.configs.get(&key) {
                Some(decl) => {
                    c.config = Some(decl.name.clone().unwrap_or_else(|| scope(stack, &key)));
                    c.external = decl.external;
                }
                None => invalid(
                    "credential_spec.config",
                    format!("undefined config `{key}`: declare it under the top-level `configs:`"),
                ),
            }
        }
        c
    });

    let mode = match s.deploy.mode.as_deref() {
        None | Some("replicated") => ServiceMode::Replicated,
        Some("global") => ServiceMode::Global,
        Some("replicated-job") => ServiceMode::ReplicatedJob,
        Some("global-job") => ServiceMode::GlobalJob,
        Some(other) => {
            invalid(
                "deploy.mode",
                format!(
                    "mode `{other}` is not supported: replicated, global, replicated-job or global-job"
                ),
            );
            ServiceMode::Replicated
        }
    };
    if matches!(mode, ServiceMode::Global | ServiceMode::GlobalJob) && s.deploy.replicas.is_some() {
        // docker/cli's convertDeployMode refuses it too.
        invalid(
            "deploy.replicas",
            "replicas can only be used with replicated or replicated-job mode".to_owned(),
        );
    }
    let endpoint_mode = match s.deploy.endpoint_mode.as_deref() {
        None | Some("vip") => EndpointMode::Vip,
        Some("dnsrr") => EndpointMode::Dnsrr,
        Some(other) => {
            invalid(
                "deploy.endpoint_mode",
                format!("`{other}` is not vip or dnsrr"),
            );
            EndpointMode::Vip
        }
    };
    let restart_policy = s.deploy.restart_policy.clone().or_else(|| {
        let restart = s.restart.as_deref()?;
        let (policy, count) = match restart.split_once(':') {
            Some((p, n)) => (p, n.parse::<u64>().ok().filter(|n| *n > 0)),
            None => (restart, None),
        };
        let condition = match policy {
            "always" | "unless-stopped" => RestartCondition::Any,
            "on-failure" => RestartCondition::OnFailure,
            _ => return None,
        };
        Some(RestartPolicySpec {
            condition: Some(condition),
            max_attempts: count,
            ..Default::default()
        })
    });
    let update_policy = |p: &Option<UpdatePolicy>| {
        p.clone().map(|mut p| {
            // The docker CLI sends parallelism 1 when the file leaves it out.
            p.parallelism.get_or_insert(1);
            p
        })
    };
    let (cap_add, cap_drop) = crate::desired::definition::effective_caps(&s.cap_add, &s.cap_drop);
    let healthcheck = s.healthcheck.as_ref().map(|h| {
        if h.disable {
            HealthcheckSpec {
                test: vec!["NONE".into()],
                ..Default::default()
            }
        } else {
            HealthcheckSpec {
                test: h.test.clone(),
                interval: h.interval,
                timeout: h.timeout,
                retries: h.retries,
                start_period: h.start_period,
                start_interval: h.start_interval,
            }
        }
    });
    let mut spec = ServiceSpec {
        image,
        mode,
        replicas: match mode {
            // docker/cli's convertDeployMode: a replicated job's `replicas` is both its
            // MaxConcurrent and its TotalCompletions (the default maxConcurrent).
            ServiceMode::Replicated | ServiceMode::ReplicatedJob => s.deploy.replicas,
            ServiceMode::Global | ServiceMode::GlobalJob => None,
        },
        max_concurrent: None,
        schedule: None,
        time_zone: None,
        concurrency_policy: None,
        starting_deadline: None,
        command: s.entrypoint.clone().filter(|c| !c.is_empty()),
        args: s.command.clone().filter(|c| !c.is_empty()),
        env,
        container_labels: with_namespace(stack, &s.labels),
        networks: networks.keys().cloned().collect(),
        network_aliases: networks
            .into_iter()
            .filter(|(_, a)| !a.is_empty())
            .collect(),
        endpoint_mode,
        ports: s.ports.clone(),
        healthcheck: healthcheck.map(Box::new),
        update_config: update_policy(&s.deploy.update_config).map(Box::new),
        rollback_config: update_policy(&s.deploy.rollback_config).map(Box::new),
        restart_policy: restart_policy.map(Box::new),
        // Stack deploy always sends a placement and resources (empty when the file has none).
        placement: Some(Box::new(PlacementSpec {
            constraints: s.deploy.placement.constraints.clone(),
            preferences: s.deploy.placement.preferences.clone(),
            max_replicas: s.deploy.placement.max_replicas,
        })),
        resources: Some(Box::new(s.deploy.resources.clone())),
        mounts,
        stop_grace_period: s.stop_grace_period,
        user: s.user.clone(),
        workdir: s.working_dir.clone(),
        env_file,
        progress_deadline: None,
        hostname: s.hostname.clone(),
        init: s.init,
        stop_signal: s.stop_signal.clone(),
        read_only: s.read_only.filter(|r| *r),
        isolation: s.isolation,
        credential_spec: credential_spec.map(Box::new),
        oom_score_adj: s.oom_score_adj,
        tty: s.tty.filter(|t| *t),
        stdin_open: s.stdin_open.filter(|o| *o),
        cap_add,
        cap_drop,
        sysctls: s.sysctls.clone(),
        ulimits: s.ulimits.clone(),
        extra_hosts: s.extra_hosts.clone(),
        dns: (!s.dns.is_empty() || !s.dns_search.is_empty())
            .then(|| DnsSpec {
                nameservers: s.dns.clone(),
                search: s.dns_search.clone(),
                options: Vec::new(),
            })
            .map(Box::new),
        logging: s
            .logging
            .as_ref()
            .map(|l| LoggingSpec {
                driver: l.driver.clone().unwrap_or_default(),
                options: l.options.clone(),
            })
            .map(Box::new),
        configs,
        secrets,
        drift_policy: None,
        depends_on: dependencies(compose, stack, name, s, out),
    };
    super::cronjob::convert(
        &s.deploy,
        &mut spec,
        &mut labels,
        &mut super::cronjob::Reports {
            origin: &origin,
            path: &path,
            dropped: &mut out.dropped,
            invalid: &mut out.invalid,
        },
    );
    SwarmService {
        api_version: ApiVersion::V1Alpha1,
        kind: ServiceKind::SwarmService,
        metadata: ObjectMeta {
            name: scope(stack, name),
            labels,
            annotations: BTreeMap::new(),
        },
        spec,
    }
}
