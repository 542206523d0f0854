//! Semantic checks over loaded specs: names, ranges, references and cross-object conflicts,
//! each reported at the offending field.

use std::collections::{BTreeMap, BTreeSet};

use super::located::{Located, SpecError, field_path};
use super::types::{
    EndpointMode, FailureAction, FileReference, HealthcheckSpec, MountSpec, MountType, NetworkSpec,
    Object, PublishMode, SUSPEND_ANNOTATION, ServiceMode, ServiceSpec, UpdatePolicy,
};

/// More replicas than this is almost certainly a typo.
pub const MAX_REPLICAS: u64 = 10_000;

/// Longest name Docker accepts for a service (it becomes a DNS label).
const MAX_NAME_LEN: usize = 63;

/// Every problem in `objects` (as loaded from all files): per-object checks plus duplicate
/// names, conflicting published ports and dangling network references.
///
/// `existing_networks` are names of networks already on the swarm that services may attach to
/// without a `SwarmNetwork` spec (e.g. `ingress` or networks made by hand).
pub fn validate(
    objects: &[Located<Object>],
    existing_networks: &BTreeSet<String>,
) -> Vec<SpecError> {
    let mut errors: Vec<SpecError> = objects.iter().flat_map(validate_object).collect();
    errors.extend(duplicate_names(objects));
    errors.extend(port_conflicts(objects));
    errors.extend(network_references(objects, existing_networks));
    errors.extend(file_references(objects));
    errors.extend(dependency_references(objects));
    errors
}

/// `dependsOn` names: declared services, and no cycle (a cycle could never start).
fn dependency_references(objects: &[Located<Object>]) -> Vec<SpecError> {
    let services: BTreeMap<&str, (&Located<Object>, &[String])> = objects
        .iter()
        .filter_map(|o| match &o.value {
            Object::Service(s) => {
                Some((s.metadata.name.as_str(), (o, s.spec.depends_on.as_slice())))
            }
            _ => None,
        })
        .collect();
    let mut errors = Vec::new();
    for (name, (o, deps)) in &services {
        for (i, dep) in deps.iter().enumerate() {
            if services.contains_key(dep.as_str()) {
                continue;
            }
            let known: Vec<&str> = services.keys().copied().filter(|n| n != name).collect();
            errors.push(o.error_at(
                field_path::index("spec.dependsOn", i),
                format!(
                    "`{dep}` is not a SwarmService in the spec directory (known services: {})",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
        }
    }
    // A path from `start` back to itself, if any (depth-first over known names).
    fn cycle_from<'a>(
        start: &'a str,
        at: &'a str,
        services: &BTreeMap<&'a str, (&Located<Object>, &'a [String])>,
        path: &mut Vec<&'a str>,
        seen: &mut BTreeSet<&'a str>,
    ) -> bool {
        let Some((_, deps)) = services.get(at) else {
            return false;
        };
        for dep in deps.iter() {
            if dep == start {
                return true;
            }
            if services.contains_key(dep.as_str()) && seen.insert(dep.as_str()) {
                path.push(dep.as_str());
                if cycle_from(start, dep.as_str(), services, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    for (name, (o, deps)) in &services {
        let mut path = vec![*name];
        if !cycle_from(name, name, &services, &mut path, &mut BTreeSet::new()) {
            continue;
        }
        path.push(name);
        // Point at the entry that starts the cycle.
        let next = path[1];
        let i = deps.iter().position(|d| d == next).unwrap_or(0);
        errors.push(o.error_at(
            field_path::index("spec.dependsOn", i),
            format!(
                "dependency cycle: {}; services in a cycle could never start, remove one of these dependsOn entries",
                path.join(" → ")
            ),
        ));
    }
    errors
}

/// Where a config or secret reference puts its file in the container: configs default to
/// `/<name>`, secrets to `/run/secrets/<name>`, and relative targets are relative to those
/// directories (as `docker service create --config/--secret` does it).
pub fn effective_target(reference: &FileReference, secret: bool) -> String {
    let base = if secret { "/run/secrets/" } else { "/" };
    match reference.target.as_deref() {
        Some(t) if t.starts_with('/') => t.to_owned(),
        Some(t) => format!("{base}{t}"),
        None => format!("{base}{}", reference.name),
    }
}

/// Service references to configs and secrets: known names (or `external`), and one file per
/// container path.
fn file_references(objects: &[Located<Object>]) -> Vec<SpecError> {
    let declared = |kind: &str| -> BTreeSet<&str> {
        objects
            .iter()
            .filter(|o| o.value.kind() == kind)
            .map(|o| o.value.name())
            .collect()
    };
    let (configs, secrets) = (declared("SwarmConfig"), declared("SwarmSecret"));
    let mut errors = Vec::new();
    for o in objects {
        let Object::Service(s) = &o.value else {
            continue;
        };
        let mut targets: BTreeMap<String, String> = BTreeMap::new();
        for (list, refs, known, kind, secret) in [
            (
                "spec.configs",
                &s.spec.configs,
                &configs,
                "SwarmConfig",
                false,
            ),
            (
                "spec.secrets",
                &s.spec.secrets,
                &secrets,
                "SwarmSecret",
                true,
            ),
        ] {
            for (i, reference) in refs.iter().enumerate() {
                let field = field_path::index(list, i);
                if !reference.external && !known.contains(reference.name.as_str()) {
                    let names = declared_list(known);
                    errors.push(o.error_at(
                        format!("{field}.name"),
                        format!(
                            "no {kind} named `{}` (declared: {names}); for one that exists on the swarm already, add `external: true`",
                            reference.name
                        ),
                    ));
                }
                let target = effective_target(reference, secret);
                if let Some(first) = targets.get(&target) {
                    errors.push(o.error_at(
                        format!("{field}.target"),
                        format!(
                            "`{target}` is also the target of {first}: each file path in the container may be used once"
                        ),
                    ));
                } else {
                    targets.insert(target, field);
                }
            }
        }
        if let Some(credential_spec) = &s.spec.credential_spec
            && let Some(name) = &credential_spec.config
            && !credential_spec.external
            && !configs.contains(name.as_str())
        {
            errors.push(o.error_at(
                "spec.credentialSpec.config",
                format!(
                    "no SwarmConfig named `{name}` (declared: {}); for one that exists on the swarm already, add `external: true`",
                    declared_list(&configs)
                ),
            ));
        }
    }
    errors
}

/// The names a reference may use, for an error message.
fn declared_list(known: &BTreeSet<&str>) -> String {
    if known.is_empty() {
        "none".to_owned()
    } else {
        known.iter().copied().collect::<Vec<_>>().join(", ")
    }
}

/// Checks of one object on its own.
pub fn validate_object(object: &Located<Object>) -> Vec<SpecError> {
    let mut errors = Vec::new();
    let kind = object.value.kind();
    if let Some(message) = name_problem(object.value.name()) {
        errors.push(object.error_at("metadata.name", format!("invalid {kind} name: {message}")));
    }
    for key in object.value.metadata().labels.keys() {
        if key.is_empty() {
            errors.push(object.error_at("metadata.labels", "label keys must not be empty"));
        }
    }
    if let Some(value) = object.value.metadata().annotations.get(SUSPEND_ANNOTATION) {
        let field = field_path::key("metadata.annotations", SUSPEND_ANNOTATION);
        if value != "true" && value != "false" {
            errors.push(object.error_at(
                &field,
                format!("`{value}`: the suspend annotation is \"true\" or \"false\""),
            ));
        } else if matches!(object.value, Object::Config(_) | Object::Secret(_)) {
            errors.push(object.error_at(
                &field,
                format!(
                    "a {kind} can not be suspended on its own: its versions are written only along with the services that mount it, so suspend those services (or the whole directory with a .suspend file)"
                ),
            ));
        }
    }
    match &object.value {
        Object::Service(s) => service(object, &s.spec, &mut errors),
        Object::Network(n) => network(object, &n.spec, &mut errors),
        Object::Config(_) | Object::Secret(_) => {
            if let Object::Secret(secret) = &object.value
                && secret.spec.sensitive
            {
                errors.push(object.error_at(
                    "spec.sensitive",
                    "`sensitive` is for a SwarmConfig: a secret's content is always handled as sensitive, so remove it".to_owned(),
                ));
            }
            let name = object.value.name();
            if name.len() > MAX_DATA_NAME_LEN {
                errors.push(object.error_at(
                    "metadata.name",
                    format!(
                        "{kind} name `{name}` has {} characters: at most {MAX_DATA_NAME_LEN}, since the operator appends `-` and 10 hex digits of the content hash (swarm allows 64)",
                        name.len()
                    ),
                ));
            }
        }
    }
    errors
}

/// Longest logical name of a config or secret: swarm allows 64 characters, and the versioned
/// name adds `-` and 10 hex digits.
pub const MAX_DATA_NAME_LEN: usize = 64 - 11;

/// Why `name` is not a valid swarm service or network name, if it is not.
pub fn name_problem(name: &str) -> Option<String> {
    const ALLOWED: &str = "names start with a letter or digit, continue with letters, digits, \
                           `_`, `.` or `-`, and have at most 63 characters";
    let mut chars = name.chars();
    let problem = match chars.next() {
        None => "the name is empty".to_owned(),
        Some(c) if !c.is_ascii_alphanumeric() => {
            format!("`{name}` starts with `{c}`")
        }
        _ => match name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
        {
            Some(c) => format!("`{name}` contains `{c}`"),
            None if name.len() > MAX_NAME_LEN => {
                format!("`{name}` has {} characters", name.len())
            }
            None => return None,
        },
    };
    Some(format!("{problem}: {ALLOWED}"))
}

fn service(object: &Located<Object>, spec: &ServiceSpec, errors: &mut Vec<SpecError>) {
    let mut err = |field: String, message: String| errors.push(object.error_at(field, message));
    if spec.image.trim().is_empty() {
        err(
            "spec.image".into(),
            "image must not be empty: give an image reference like `name:tag`".into(),
        );
    }
    match (spec.mode, spec.replicas) {
        (ServiceMode::Global, Some(_)) => err(
            "spec.replicas".into(),
            "replicas cannot be set with `mode: global` (one task runs per node); remove it or use `mode: replicated`".into(),
        ),
        (ServiceMode::GlobalJob, Some(_)) => err(
            "spec.replicas".into(),
            "replicas cannot be set with `mode: global-job` (one task runs per node); remove it or use `mode: replicated-job`".into(),
        ),
        (ServiceMode::Replicated | ServiceMode::ReplicatedJob, Some(n)) if n > MAX_REPLICAS => err(
            "spec.replicas".into(),
            format!("replicas {n} is absurdly large: allowed 0-{MAX_REPLICAS}"),
        ),
        _ => {}
    }
    match &spec.schedule {
        Some(_) if !spec.mode.is_job() => err(
            "spec.schedule".into(),
            "schedule is only for jobs: set `mode: replicated-job` or `mode: global-job`".into(),
        ),
        Some(schedule) => {
            match crate::control::schedule::JobSchedule::parse(schedule, spec.time_zone.as_deref())
            {
                Err(e @ crate::control::schedule::ScheduleError::TimeZone(_)) => {
                    err("spec.timeZone".into(), e.to_string());
                }
                Err(e) => err("spec.schedule".into(), e.to_string()),
                Ok(_) => {}
            }
        }
        None => {
            for (set, field) in [
                (spec.time_zone.is_some(), "spec.timeZone"),
                (spec.concurrency_policy.is_some(), "spec.concurrencyPolicy"),
                (spec.starting_deadline.is_some(), "spec.startingDeadline"),
            ] {
                if set {
                    err(
                        field.into(),
                        format!(
                            "{} only applies with `schedule`; remove it or add a schedule",
                            &field[5..]
                        ),
                    );
                }
            }
        }
    }
    if spec.concurrency_policy == Some(crate::spec::ConcurrencyPolicy::Allow) {
        err(
            "spec.concurrencyPolicy".into(),
            "Allow cannot be honoured: a job service has one run at a time (a run is a service update, and swarm stops the running tasks of the previous run when it starts the next); use Forbid (default: the next run waits for the running one) or Replace (it stops the running one), or a second service for runs that must overlap".into(),
        );
    }
    if spec.max_concurrent.is_some() && spec.mode != ServiceMode::ReplicatedJob {
        err(
            "spec.maxConcurrent".into(),
            "maxConcurrent is only for `mode: replicated-job`; remove it or change the mode".into(),
        );
    }
    if spec
        .progress_deadline
        .as_ref()
        .is_some_and(|d| d.as_duration().is_zero())
    {
        err(
            "spec.progressDeadline".into(),
            "progressDeadline must be longer than 0s (every rollout would be overdue at once): give e.g. `10m`, or leave it out for the default 10m".into(),
        );
    }
    for (key, _) in spec.env.iter() {
        let field = field_path::key("spec.env", key);
        if key.is_empty() {
            err(field, "environment variable names must not be empty".into());
        } else if key.contains('=') {
            err(
                field,
                format!(
                    "environment variable name `{key}` contains `=`: names may not contain `=`"
                ),
            );
        }
    }
    let mut seen_networks = BTreeSet::new();
    for (i, net) in spec.networks.iter().enumerate() {
        let field = field_path::index("spec.networks", i);
        if net.trim().is_empty() {
            err(field, "network names must not be empty".into());
        } else if !seen_networks.insert(net) {
            err(
                field,
                format!("network `{net}` is listed twice: attach to each network once"),
            );
        }
    }
    for (i, port) in spec.ports.iter().enumerate() {
        let field = field_path::index("spec.ports", i);
        if port.target == 0 {
            err(
                format!("{field}.target"),
                "port 0 is out of range: allowed 1-65535".into(),
            );
        }
        if port.published == Some(0) {
            err(
                format!("{field}.published"),
                "port 0 is out of range: allowed 1-65535 (omit `published` to let swarm choose)"
                    .into(),
            );
        }
        // Swarm refuses it: the routing mesh balances over a virtual IP, which dnsrr has none of.
        if spec.endpoint_mode == EndpointMode::Dnsrr && port.mode == PublishMode::Ingress {
            err(
                format!("{field}.mode"),
                "a port published through the routing mesh (`mode: ingress`, the default) needs a virtual IP, and `endpointMode: dnsrr` has none: set `mode: host` on this port or use `endpointMode: vip`".into(),
            );
        }
    }
    if let Some(hc) = &spec.healthcheck {
        healthcheck(hc, &mut err);
    }
    for (name, policy) in [
        ("spec.updateConfig", &spec.update_config),
        ("spec.rollbackConfig", &spec.rollback_config),
    ] {
        if let Some(policy) = policy {
            update_policy(name, policy, &mut err);
        }
    }
    if let Some(FailureAction::Rollback) =
        spec.rollback_config.as_ref().and_then(|p| p.failure_action)
    {
        err(
            "spec.rollbackConfig.failureAction".into(),
            "failureAction `rollback` is not possible for a rollback (swarm would ignore it): allowed `pause` or `continue`".into(),
        );
    }
    if let Some(resources) = &spec.resources {
        for (name, amounts) in [
            ("spec.resources.limits", &resources.limits),
            ("spec.resources.reservations", &resources.reservations),
        ] {
            if let Some(cpus) = amounts.as_ref().and_then(|a| a.cpus)
                && !(cpus.is_finite() && cpus >= 0.0)
            {
                err(
                    format!("{name}.cpus"),
                    format!("cpus {cpus} is invalid: allowed a non-negative number like 0.5 or 2"),
                );
            }
        }
        if resources
            .limits
            .as_ref()
            .is_some_and(|l| !l.generic_resources.is_empty())
        {
            err(
                "spec.resources.limits.genericResources".into(),
                "generic resources can only be reserved, not limited: move them to `reservations`"
                    .into(),
            );
        }
        for (i, g) in resources
            .reservations
            .iter()
            .flat_map(|r| r.generic_resources.iter())
            .enumerate()
        {
            let field = field_path::index("spec.resources.reservations.genericResources", i);
            if g.kind.trim().is_empty() {
                err(
                    format!("{field}.kind"),
                    "kind must name a resource like `gpu`".into(),
                );
            }
            if g.value < 1 {
                err(
                    format!("{field}.value"),
                    format!("value {} reserves nothing: give 1 or more", g.value),
                );
            }
        }
        if let Some(pids) = resources.reservations.as_ref().and_then(|r| r.pids) {
            err(
                "spec.resources.reservations.pids".into(),
                format!("pids ({pids}) can only be limited, not reserved: move it to `limits`"),
            );
        }
    }
    for (i, mount) in spec.mounts.iter().enumerate() {
        self::mount(&field_path::index("spec.mounts", i), mount, &mut err);
    }
    stack_fields(spec, &mut err);
    if let Some(c) = &spec.credential_spec {
        let given = [c.file.is_some(), c.registry.is_some(), c.config.is_some()];
        if given.into_iter().filter(|g| *g).count() != 1 {
            err(
                "spec.credentialSpec".into(),
                "give exactly one of `file`, `registry` or `config`".into(),
            );
        } else if c.external && c.config.is_none() {
            err(
                "spec.credentialSpec.external".into(),
                "`external` only applies to a `config`".into(),
            );
        }
    }
    if let Some(placement) = &spec.placement {
        for (i, c) in placement.constraints.iter().enumerate() {
            if !["==", "!="].iter().any(|op| c.contains(op)) {
                err(
                    field_path::index("spec.placement.constraints", i),
                    format!(
                        "constraint `{c}` has no operator: write `attribute == value` or `attribute != value`"
                    ),
                );
            }
        }
        for (i, p) in placement.preferences.iter().enumerate() {
            if p.spread.trim().is_empty() {
                err(
                    format!(
                        "{}.spread",
                        field_path::index("spec.placement.preferences", i)
                    ),
                    "spread must name a node attribute like `node.labels.zone`".into(),
                );
            }
        }
    }
}

/// The container options `docker stack deploy` covers beyond the basics.
fn stack_fields(spec: &ServiceSpec, err: &mut impl FnMut(String, String)) {
    for network in spec.network_aliases.keys() {
        if !spec.networks.contains(network) {
            err(
                field_path::key("spec.networkAliases", network),
                format!(
                    "aliases for network `{network}`, which is not in `networks`: attach to it there, or remove the aliases"
                ),
            );
        }
    }
    for (i, entry) in spec.extra_hosts.iter().enumerate() {
        let ok = entry
            .split_once(':')
            .is_some_and(|(host, ip)| !host.trim().is_empty() && !ip.trim().is_empty());
        if !ok {
            err(
                field_path::index("spec.extraHosts", i),
                format!(
                    "extra host `{entry}` must be written `hostname:ip`, e.g. `db.local:10.0.0.5`"
                ),
            );
        }
    }
    for (name, limit) in &spec.ulimits {
        if limit.soft > limit.hard {
            err(
                field_path::key("spec.ulimits", name),
                format!(
                    "ulimit `{name}`: soft limit {} is above hard limit {}: soft must be at most hard",
                    limit.soft, limit.hard
                ),
            );
        }
    }
    if let Some(logging) = &spec.logging
        && logging.driver.trim().is_empty()
    {
        err(
            "spec.logging.driver".into(),
            "the log driver must not be empty: e.g. `json-file`, `local` or `syslog`".into(),
        );
    }
    for (list, items) in [
        ("spec.capAdd", &spec.cap_add),
        ("spec.capDrop", &spec.cap_drop),
    ] {
        for (i, cap) in items.iter().enumerate() {
            if cap.trim().is_empty() || cap.contains(char::is_whitespace) {
                err(
                    field_path::index(list, i),
                    format!("`{cap}` is not a capability name like `NET_ADMIN` or `ALL`"),
                );
            }
        }
    }
    for (i, path) in spec.env_file.iter().enumerate() {
        if path.trim().is_empty() {
            err(
                field_path::index("spec.envFile", i),
                "env file paths must not be empty".into(),
            );
        }
    }
}

fn healthcheck(hc: &HealthcheckSpec, err: &mut impl FnMut(String, String)) {
    const ALLOWED: &str =
        "test must be [\"CMD\", program, args...], [\"CMD-SHELL\", command] or [\"NONE\"]";
    // An empty test inherits the image's HEALTHCHECK command (Docker semantics).
    let Some(first) = hc.test.first() else {
        return;
    };
    let problem = match (first.as_str(), hc.test.len()) {
        ("CMD", 1) => Some("`CMD` needs a program to run".to_owned()),
        ("CMD-SHELL", n) if n != 2 => Some(format!(
            "`CMD-SHELL` takes exactly one command string, got {}",
            n - 1
        )),
        ("NONE", n) if n != 1 => Some("`NONE` takes no arguments".to_owned()),
        ("CMD" | "CMD-SHELL" | "NONE", _) => None,
        (other, _) => Some(format!("test starts with `{other}`")),
    };
    if let Some(problem) = problem {
        let field = if hc.test.len() == 1 || first.as_str() != "CMD-SHELL" {
            "spec.healthcheck.test[0]"
        } else {
            "spec.healthcheck.test"
        };
        err(field.into(), format!("{problem}: {ALLOWED}"));
    }
}

fn update_policy(name: &str, policy: &UpdatePolicy, err: &mut impl FnMut(String, String)) {
    if let Some(ratio) = policy.max_failure_ratio
        && !(0.0..=1.0).contains(&ratio)
    {
        err(
            format!("{name}.maxFailureRatio"),
            format!(
                "maxFailureRatio {ratio} is out of range: allowed 0 to 1 (a fraction of tasks)"
            ),
        );
    }
}

fn mount(field: &str, mount: &MountSpec, err: &mut impl FnMut(String, String)) {
    if !mount.target.starts_with('/') {
        err(
            format!("{field}.target"),
            format!(
                "mount target `{}` must be an absolute path inside the container",
                mount.target
            ),
        );
    }
    match mount.r#type {
        MountType::Bind => match mount.source.as_deref() {
            None | Some("") => err(
                format!("{field}.source"),
                "a bind mount needs `source`: an absolute path on the host".into(),
            ),
            Some(s) if !s.starts_with('/') => err(
                format!("{field}.source"),
                format!("bind mount source `{s}` must be an absolute path on the host"),
            ),
            Some(_) => {}
        },
        MountType::Tmpfs => {
            if mount.source.is_some() {
                err(
                    format!("{field}.source"),
                    "a tmpfs mount has no `source`: remove it".into(),
                );
            }
        }
        MountType::Volume => {}
    }
    let only_with = [
        ("tmpfsSize", mount.tmpfs_size.is_some(), MountType::Tmpfs),
        ("tmpfsMode", mount.tmpfs_mode.is_some(), MountType::Tmpfs),
        (
            "bindPropagation",
            mount.bind_propagation.is_some(),
            MountType::Bind,
        ),
        ("volume", mount.volume.is_some(), MountType::Volume),
    ];
    for (name, set, kind) in only_with {
        if set && mount.r#type != kind {
            let kind = match kind {
                MountType::Tmpfs => "tmpfs",
                MountType::Bind => "bind",
                MountType::Volume => "volume",
            };
            err(
                format!("{field}.{name}"),
                format!("{name} is only allowed with `type: {kind}`"),
            );
        }
    }
    if let Some(volume) = &mount.volume
        && mount.source.as_deref().is_none_or(str::is_empty)
        && (volume.driver.is_some() || !volume.driver_options.is_empty())
    {
        err(
            format!("{field}.source"),
            "a volume with driver settings needs a `source` (the volume name)".into(),
        );
    }
}

fn network(object: &Located<Object>, spec: &NetworkSpec, errors: &mut Vec<SpecError>) {
    if spec.external {
        let configured = NetworkSpec {
            external: true,
            ..NetworkSpec::default()
        };
        if *spec != configured {
            errors.push(object.error_at(
                "spec.external",
                "an external network is only referenced, never created: remove driver, attachable, internal, options and ipam, or remove `external`",
            ));
        }
        return;
    }
    if spec.driver.trim().is_empty() {
        errors.push(object.error_at(
            "spec.driver",
            "driver must not be empty: use `overlay` (the default) for swarm networks",
        ));
    }
}

fn location(o: &Located<Object>) -> String {
    format!("{}:{}:{}", o.file.display(), o.line, o.column)
}

fn duplicate_names(objects: &[Located<Object>]) -> Vec<SpecError> {
    let mut by_name: BTreeMap<(&str, &str), Vec<&Located<Object>>> = BTreeMap::new();
    for o in objects {
        by_name
            .entry((o.value.kind(), o.value.name()))
            .or_default()
            .push(o);
    }
    let mut errors = Vec::new();
    for ((kind, name), group) in by_name.into_iter().filter(|(_, g)| g.len() > 1) {
        for (i, o) in group.iter().enumerate() {
            let others: Vec<String> = group
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, other)| location(other))
                .collect();
            errors.push(o.error_at(
                "metadata.name",
                format!(
                    "duplicate {kind} name `{name}`: also defined at {}; names must be unique per kind",
                    others.join(", ")
                ),
            ));
        }
    }
    errors
}

/// A service and the index of one of its ports.
type PortUse<'a> = (&'a Located<Object>, usize);

fn port_conflicts(objects: &[Located<Object>]) -> Vec<SpecError> {
    // (published port, protocol) -> every (object, port index) publishing it.
    let mut by_port: BTreeMap<(u16, &str), Vec<PortUse<'_>>> = BTreeMap::new();
    for o in objects {
        if let Object::Service(s) = &o.value {
            for (i, p) in s.spec.ports.iter().enumerate() {
                if let Some(published) = p.published.filter(|p| *p != 0) {
                    by_port
                        .entry((published, p.protocol.as_str()))
                        .or_default()
                        .push((o, i));
                }
            }
        }
    }
    let mut errors = Vec::new();
    for ((port, protocol), users) in by_port.into_iter().filter(|(_, u)| u.len() > 1) {
        for (k, (o, i)) in users.iter().enumerate() {
            let others: Vec<String> = users
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != k)
                .map(|(_, (other, oi))| {
                    format!(
                        "service `{}` (spec.ports[{oi}], {})",
                        other.value.name(),
                        location(other)
                    )
                })
                .collect();
            errors.push(o.error_at(
                format!("{}.published", field_path::index("spec.ports", *i)),
                format!(
                    "published port {port}/{protocol} is also published by {}: each published port and protocol may be used once",
                    others.join(", ")
                ),
            ));
        }
    }
    errors
}

fn network_references(
    objects: &[Located<Object>],
    existing_networks: &BTreeSet<String>,
) -> Vec<SpecError> {
    let declared: BTreeSet<&str> = objects
        .iter()
        .filter(|o| matches!(&o.value, Object::Network(n) if !n.spec.external))
        .map(|o| o.value.name())
        .collect();
    let mut errors = Vec::new();
    for o in objects {
        if let Object::Network(n) = &o.value
            && n.spec.external
            && !existing_networks.contains(&n.metadata.name)
        {
            errors.push(o.error_at(
                "spec.external",
                format!(
                    "external network `{}` does not exist on the swarm: create it (`docker network create --driver overlay {}`) or drop `external: true` to let the operator create it",
                    n.metadata.name, n.metadata.name
                ),
            ));
        }
    }
    for o in objects {
        let Object::Service(s) = &o.value else {
            continue;
        };
        for (i, net) in s.spec.networks.iter().enumerate() {
            if net.trim().is_empty()
                || declared.contains(net.as_str())
                || existing_networks.contains(net)
            {
                continue;
            }
            let known: Vec<&str> = declared
                .iter()
                .copied()
                .chain(existing_networks.iter().map(String::as_str))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let known = if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            };
            errors.push(o.error_at(
                field_path::index("spec.networks", i),
                format!(
                    "network `{net}` is neither declared by a SwarmNetwork spec nor an existing swarm network (known networks: {known})"
                ),
            ));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::spec::load::{FileLoad, load_str};

    fn objects(file: &str, text: &str) -> Vec<Located<Object>> {
        match load_str(Path::new(file), text) {
            FileLoad::Ok(o) => o.to_vec(),
            FileLoad::Failed(e) => panic!("{e:#?}"),
        }
    }

    fn svc(name: &str, spec: &str) -> String {
        format!(
            "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata:\n  name: {name}\nspec:\n  image: x\n{spec}"
        )
    }

    fn net(name: &str) -> String {
        format!(
            "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmNetwork\nmetadata:\n  name: {name}\nspec: {{}}\n"
        )
    }

    fn check(text: &str) -> Vec<SpecError> {
        validate(&objects("t.yaml", text), &BTreeSet::new())
    }

    /// (line, column, field) of each error.
    fn places(errors: &[SpecError]) -> Vec<(usize, usize, &str)> {
        errors
            .iter()
            .map(|e| (e.line.unwrap(), e.column.unwrap(), e.field.as_str()))
            .collect()
    }

    #[test]
    fn valid_objects_have_no_errors() {
        let text = format!(
            "{}---\n{}",
            net("my_network"),
            svc(
                "quote-service",
                "  networks: [my_network, ingress]\n  ports: [{target: 80, published: 8080}]\n  healthcheck: {test: [CMD-SHELL, \"true\"]}\n"
            )
        );
        let existing = ["ingress".to_owned()].into();
        assert_eq!(validate(&objects("t.yaml", &text), &existing), []);
    }

    #[test]
    fn a_zero_progress_deadline_is_located() {
        let e = check(&svc("api", "  progressDeadline: 0s\n"));
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].field, "spec.progressDeadline");
        assert!(e[0].message.contains("longer than 0s"), "{}", e[0].message);
        assert_eq!(e[0].line, Some(7), "the line of the field");
        assert!(check(&svc("api", "  progressDeadline: 90s\n")).is_empty());
    }

    #[test]
    fn invalid_names() {
        let e = check(&svc("-bad", ""));
        assert_eq!(places(&e), [(4, 9, "metadata.name")]);
        assert!(
            e[0].message.contains("starts with `-`") && e[0].message.contains("at most 63"),
            "{}",
            e[0].message
        );
        let e = check(&svc("a/b", ""));
        assert!(e[0].message.contains("contains `/`"), "{}", e[0].message);
        let long = "a".repeat(64);
        let e = check(&svc(&long, ""));
        assert!(
            e[0].message.contains("has 64 characters"),
            "{}",
            e[0].message
        );
        assert!(check(&svc(&"a".repeat(63), "")).is_empty());
        let e = check(&net("bad name"));
        assert_eq!(e.len(), 1);
        assert!(e[0].message.starts_with("invalid SwarmNetwork name"));
    }

    #[test]
    fn replicas_checks() {
        let e = check(&svc("a", "  replicas: 10001\n"));
        assert_eq!(places(&e), [(7, 13, "spec.replicas")]);
        assert!(e[0].message.contains("absurdly large: allowed 0-10000"));
        assert!(check(&svc("a", "  replicas: 10000\n")).is_empty());
        let e = check(&svc("a", "  mode: global\n  replicas: 2\n"));
        assert_eq!(places(&e), [(8, 13, "spec.replicas")]);
        assert!(e[0].message.contains("mode: global"));
    }

    #[test]
    fn job_modes_take_replicas_and_max_concurrent_where_they_mean_something() {
        assert!(
            check(&svc(
                "a",
                "  mode: replicated-job\n  replicas: 3\n  maxConcurrent: 2\n"
            ))
            .is_empty()
        );
        assert!(check(&svc("a", "  mode: global-job\n")).is_empty());
        let e = check(&svc("a", "  mode: global-job\n  replicas: 2\n"));
        assert_eq!(places(&e), [(8, 13, "spec.replicas")]);
        let e = check(&svc("a", "  replicas: 2\n  maxConcurrent: 2\n"));
        assert_eq!(places(&e), [(8, 18, "spec.maxConcurrent")]);
        assert!(e[0].message.contains("replicated-job"), "{}", e[0].message);
    }

    #[test]
    fn schedules_are_checked_where_they_are_written() {
        assert!(check(&svc("a", "  mode: replicated-job\n  schedule: \"*/5 * * * *\"\n  timeZone: Europe/Berlin\n  concurrencyPolicy: Replace\n")).is_empty());
        let e = check(&svc("a", "  schedule: \"@hourly\"\n"));
        assert_eq!(places(&e), [(7, 13, "spec.schedule")]);
        let e = check(&svc("a", "  mode: global-job\n  schedule: \"* * *\"\n"));
        assert_eq!(places(&e), [(8, 13, "spec.schedule")]);
        assert!(e[0].message.contains("5 fields"), "{}", e[0].message);
        let e = check(&svc(
            "a",
            "  mode: global-job\n  schedule: \"@daily\"\n  timeZone: Nowhere/Land\n",
        ));
        assert_eq!(places(&e), [(9, 13, "spec.timeZone")]);
        let e = check(&svc(
            "a",
            "  mode: global-job\n  schedule: \"@daily\"\n  concurrencyPolicy: Allow\n",
        ));
        assert_eq!(places(&e), [(9, 22, "spec.concurrencyPolicy")]);
        let e = check(&svc("a", "  mode: global-job\n  timeZone: UTC\n"));
        assert_eq!(places(&e), [(8, 13, "spec.timeZone")]);
        let e = check(&svc("a", "  mode: global-job\n  startingDeadline: 30m\n"));
        assert_eq!(places(&e), [(8, 21, "spec.startingDeadline")]);
    }

    #[test]
    fn every_problem_of_one_object_is_reported() {
        let e = check(&svc(
            "a",
            "  env: {\"\": x, \"A=B\": y}\n  healthcheck:\n    test: [curl, localhost]\n  updateConfig: {maxFailureRatio: 1.5}\n  rollbackConfig: {maxFailureRatio: -0.1}\n",
        ));
        let fields: Vec<&str> = e.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                r#"spec.env[""]"#,
                r#"spec.env["A=B"]"#,
                "spec.healthcheck.test[0]",
                "spec.updateConfig.maxFailureRatio",
                "spec.rollbackConfig.maxFailureRatio",
            ]
        );
        assert_eq!((e[2].line, e[2].column), (Some(9), Some(12)));
        assert!(e[2].message.contains("starts with `curl`") && e[2].message.contains("CMD-SHELL"));
        assert_eq!((e[3].line, e[3].column), (Some(10), Some(35)));
        assert!(e[3].message.contains("allowed 0 to 1"));
        assert!(e[1].message.contains("contains `=`"));
    }

    #[test]
    fn a_rollback_can_not_roll_back() {
        let e = check(&svc(
            "a",
            "  updateConfig: {failureAction: rollback}\n  rollbackConfig:\n    failureAction: rollback\n",
        ));
        assert_eq!(places(&e), [(9, 20, "spec.rollbackConfig.failureAction")]);
        assert!(
            e[0].message.contains("allowed `pause` or `continue`"),
            "{}",
            e[0].message
        );
        assert!(check(&svc("a", "  rollbackConfig: {failureAction: continue}\n")).is_empty());
    }

    #[test]
    fn dnsrr_only_takes_host_mode_ports() {
        let e = check(&svc(
            "a",
            "  endpointMode: dnsrr\n  ports:\n  - {target: 80, published: 8080}\n  - target: 81\n    mode: ingress\n  - {target: 82, published: 8082, mode: host}\n",
        ));
        // The first port has no `mode` key: the error points at the port itself.
        assert_eq!(
            places(&e),
            [(9, 5, "spec.ports[0].mode"), (11, 11, "spec.ports[1].mode")]
        );
        assert!(
            e[0].message.contains("set `mode: host`"),
            "{}",
            e[0].message
        );
        assert!(
            check(&svc("a", "  ports: [{target: 80, published: 8080}]\n")).is_empty(),
            "ingress is fine with a virtual IP"
        );
    }

    #[test]
    fn healthcheck_forms() {
        for ok in ["[CMD, /hc]", "[CMD-SHELL, \"curl -f x\"]", "[NONE]", "[]"] {
            assert!(
                check(&svc("a", &format!("  healthcheck: {{test: {ok}}}\n"))).is_empty(),
                "{ok}"
            );
        }
        for bad in ["[CMD]", "[CMD-SHELL, a, b]", "[NONE, x]", "[cmd, x]"] {
            assert_eq!(
                check(&svc("a", &format!("  healthcheck: {{test: {bad}}}\n"))).len(),
                1,
                "{bad}"
            );
        }
    }

    #[test]
    fn port_zero_is_rejected_in_values_built_in_code() {
        let mut o = objects(
            "t.yaml",
            &svc("a", "  ports: [{target: 80, published: 81}]\n"),
        );
        if let Object::Service(s) = &mut o[0].value {
            let s = std::sync::Arc::make_mut(s);
            s.spec.ports[0].target = 0;
            s.spec.ports[0].published = Some(0);
        }
        let e = validate(&o, &BTreeSet::new());
        let fields: Vec<&str> = e.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["spec.ports[0].target", "spec.ports[0].published"]);
        assert!(e[0].message.contains("allowed 1-65535"));
    }

    #[test]
    fn mounts() {
        let e = check(&svc(
            "a",
            "  mounts:\n  - {type: bind, target: data}\n  - {type: tmpfs, source: x, target: /t}\n  - {type: volume, target: /v, tmpfsSize: 1Mi}\n",
        ));
        let fields: Vec<&str> = e.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.mounts[0].target",
                "spec.mounts[0].source",
                "spec.mounts[1].source",
                "spec.mounts[2].tmpfsSize",
            ]
        );
    }

    #[test]
    fn duplicate_names_across_files_report_both_locations() {
        let mut all = objects("a.yaml", &svc("same", ""));
        all.extend(objects(
            "b.yaml",
            &format!("{}---\n{}", net("same"), svc("same", "")),
        ));
        let e = validate(&all, &BTreeSet::new());
        assert_eq!(e.len(), 2, "a network may share a service's name: {e:#?}");
        assert_eq!(e[0].file, Path::new("a.yaml"));
        assert_eq!((e[0].line, e[0].column), (Some(4), Some(9)));
        assert!(
            e[0].message.contains("also defined at b.yaml:10:9"),
            "{}",
            e[0].message
        );
        assert_eq!(e[1].file, Path::new("b.yaml"));
        assert!(
            e[1].message.contains("also defined at a.yaml:4:9"),
            "{}",
            e[1].message
        );
    }

    #[test]
    fn published_port_conflicts() {
        let mut all = objects(
            "a.yaml",
            &svc(
                "a",
                "  ports:\n  - {target: 80, published: 8080}\n  - {target: 81, published: 8080, protocol: udp}\n",
            ),
        );
        all.extend(objects(
            "b.yaml",
            &svc(
                "b",
                "  ports:\n  - {target: 90, published: 9090}\n  - {target: 80, published: 8080}\n",
            ),
        ));
        let e = validate(&all, &BTreeSet::new());
        assert_eq!(
            places(&e),
            [
                (8, 29, "spec.ports[0].published"),
                (9, 29, "spec.ports[1].published")
            ]
        );
        assert_eq!(e[0].file, Path::new("a.yaml"));
        assert!(
            e[0].message
                .contains("8080/tcp is also published by service `b`"),
            "{}",
            e[0].message
        );
        assert_eq!(e[1].file, Path::new("b.yaml"));
    }

    #[test]
    fn depends_on_names_known_services_without_cycles() {
        let text = format!(
            "{}---\n{}---\n{}",
            svc("db", ""),
            svc("api", "  dependsOn: [db, cache]\n"),
            svc("web", "  dependsOn: [api]\n")
        );
        let e = check(&text);
        assert_eq!(places(&e), [(14, 19, "spec.dependsOn[1]")], "{e:#?}");
        assert!(
            e[0].message.contains("`cache` is not a SwarmService")
                && e[0].message.contains("known services: db, web"),
            "{}",
            e[0].message
        );
        let text = format!(
            "{}---\n{}---\n{}",
            svc("a", "  dependsOn: [b]\n"),
            svc("b", "  dependsOn: [c]\n"),
            svc("c", "  dependsOn: [a]\n")
        );
        let e = check(&text);
        assert_eq!(
            e.len(),
            3,
            "each service in the cycle is pointed at: {e:#?}"
        );
        assert!(
            e[0].message.contains("dependency cycle: a → b → c → a"),
            "{}",
            e[0].message
        );
        assert_eq!(e[0].line, Some(7));
        let e = check(&svc("self", "  dependsOn: [self]\n"));
        assert!(e[0].message.contains("self → self"), "{e:#?}");
        let fine = format!(
            "{}---\n{}",
            svc("db", ""),
            svc("api", "  dependsOn: [db]\n")
        );
        assert_eq!(check(&fine), []);
    }

    #[test]
    fn the_suspend_annotation_is_true_or_false_on_services_and_networks() {
        let annotated = |kind: &str, value: &str| {
            format!(
                "apiVersion: swarm-operator.io/v1alpha1\nkind: {kind}\nmetadata:\n  name: x\n  annotations:\n    swarm-operator.io/suspend: \"{value}\"\nspec: {{data: a}}\n"
            )
        };
        let e = check(&annotated("SwarmConfig", "true"));
        assert_eq!(
            places(&e),
            [(6, 32, "metadata.annotations[\"swarm-operator.io/suspend\"]")]
        );
        assert!(e[0].message.contains("suspend those services"), "{e:#?}");
        let e = check(&svc("x", "").replace(
            "  name: x\n",
            "  name: x\n  annotations: {swarm-operator.io/suspend: \"yes\"}\n",
        ));
        assert!(e[0].message.contains("`yes`"), "{e:#?}");
        let ok = svc("x", "").replace(
            "  name: x\n",
            "  annotations: {swarm-operator.io/suspend: \"true\", note: free text}\n  name: x\n",
        );
        assert_eq!(check(&ok), []);
    }

    #[test]
    fn network_references() {
        let text = format!(
            "{}---\n{}",
            net("declared"),
            svc(
                "a",
                "  networks:\n  - declared\n  - existing\n  - missing\n"
            )
        );
        let existing = ["existing".to_owned()].into();
        let e = validate(&objects("t.yaml", &text), &existing);
        assert_eq!(places(&e), [(16, 5, "spec.networks[2]")]);
        assert!(e[0].message.contains("`missing` is neither declared by a SwarmNetwork spec nor an existing swarm network (known networks: declared, existing)"), "{}", e[0].message);
    }

    #[test]
    fn located_new_falls_back_to_the_document() {
        let o = objects("t.yaml", &svc("a", "  replicas: 20000\n"));
        let bare = Located::new(o[0].value.clone(), "x.yaml", 3, 1);
        let e = validate_object(&bare);
        assert_eq!(
            e[0].to_string(),
            format!("x.yaml:3:1: spec.replicas: {}", e[0].message)
        );
    }

    #[test]
    fn stack_field_checks() {
        let e = check(&svc(
            "a",
            "  networks: [front]\n  networkAliases: {back: [x]}\n  extraHosts: [nocolon]\n  ulimits: {nofile: {soft: 2, hard: 1}}\n  logging: {driver: \"\"}\n  capAdd: [\"NET ADMIN\"]\n  mounts:\n  - {type: volume, target: /v, bindPropagation: shared, volume: {driver: local}}\n",
        ));
        let fields: Vec<&str> = e.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.mounts[0].bindPropagation",
                "spec.mounts[0].source",
                "spec.networkAliases.back",
                "spec.extraHosts[0]",
                "spec.ulimits.nofile",
                "spec.logging.driver",
                "spec.capAdd[0]",
                "spec.networks[0]",
            ]
        );
        assert!(
            e[2].message.contains("not in `networks`"),
            "{}",
            e[2].message
        );
        assert!(e[4].message.contains("soft limit 2 is above hard limit 1"));
    }

    #[test]
    fn external_networks_are_only_referenced() {
        let external = "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmNetwork\nmetadata: {name: shared}\nspec: {external: true}\n";
        let text = format!("{external}---\n{}", svc("a", "  networks: [shared]\n"));
        let e = validate(&objects("t.yaml", &text), &BTreeSet::new());
        let fields: Vec<&str> = e.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["spec.external", "spec.networks[0]"], "{e:#?}");
        assert!(e[0].message.contains("does not exist on the swarm"));
        let existing = ["shared".to_owned()].into();
        assert!(validate(&objects("t.yaml", &text), &existing).is_empty());
        let e = validate(
            &objects(
                "t.yaml",
                &external.replace("{external: true}", "{external: true, internal: true}"),
            ),
            &existing,
        );
        assert_eq!(e.len(), 1);
        assert!(e[0].message.contains("only referenced"), "{}", e[0].message);
    }

    /// `credentialSpec.config` names a SwarmConfig (or, `external`, a config on the swarm);
    /// exactly one source; `external` only with a config.
    #[test]
    fn a_credential_spec_config_is_a_known_config() {
        let config = "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmConfig\nmetadata: {name: gmsa}\nspec: {data: x}\n";
        let with = |spec: &str| format!("{config}---\n{}", svc("a", spec));
        assert!(check(&with("  credentialSpec: {config: gmsa}\n")).is_empty());
        assert!(
            check(&with(
                "  credentialSpec: {config: theirs, external: true}\n"
            ))
            .is_empty()
        );
        let e = check(&with("  credentialSpec: {config: nope}\n"));
        assert_eq!(e.len(), 1, "{e:#?}");
        assert_eq!(e[0].field, "spec.credentialSpec.config");
        assert!(
            e[0].message
                .contains("no SwarmConfig named `nope` (declared: gmsa)"),
            "{}",
            e[0].message
        );
        let e = check(&with("  credentialSpec: {config: gmsa, file: spec.json}\n"));
        assert_eq!(e.len(), 1, "{e:#?}");
        assert!(
            e[0].message
                .contains("exactly one of `file`, `registry` or `config`")
        );
        let e = check(&with(
            "  credentialSpec: {file: spec.json, external: true}\n",
        ));
        assert_eq!(e.len(), 1, "{e:#?}");
        assert_eq!(e[0].field, "spec.credentialSpec.external");
    }

    #[test]
    fn config_and_secret_references() {
        let config = "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmConfig\nmetadata: {name: app_conf}\nspec: {data: x}\n";
        let secret = "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmSecret\nmetadata: {name: db_pass}\nspec: {data: x}\n";
        let service = svc(
            "a",
            "  configs:\n  - {name: app_conf, target: /etc/app.conf, mode: 0440}\n  - {name: nope}\n  - {name: other, external: true, target: etc/app.conf}\n  secrets:\n  - {name: db_pass}\n  - {name: ext, external: true, target: /run/secrets/db_pass}\n",
        );
        let text = format!("{config}---\n{secret}---\n{service}");
        let e = check(&text);
        let fields: Vec<&str> = e.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.configs[1].name",
                "spec.configs[2].target",
                "spec.secrets[1].target"
            ],
            "{e:#?}"
        );
        assert!(
            e[0].message
                .contains("no SwarmConfig named `nope` (declared: app_conf)")
        );
        assert!(
            e[1].message
                .contains("`/etc/app.conf` is also the target of spec.configs[0]")
        );
        assert_eq!(e[0].line, Some(19));
        let o = objects("t.yaml", &text);
        let s = o[2].value.as_service().unwrap();
        assert_eq!(s.spec.configs[0].mode, Some(crate::spec::FileMode(0o440)));
    }

    #[test]
    fn data_names_leave_room_for_the_hash_suffix() {
        let doc = |n: &str| {
            format!(
                "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmConfig\nmetadata: {{name: {n}}}\nspec: {{data: x}}\n"
            )
        };
        assert!(check(&doc(&"a".repeat(53))).is_empty());
        let e = check(&doc(&"a".repeat(54)));
        assert_eq!(e.len(), 1);
        assert!(e[0].message.contains("at most 53"), "{}", e[0].message);
    }
}
