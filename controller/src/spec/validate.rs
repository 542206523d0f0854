//! Semantic checks over loaded specs: names, ranges, references and cross-object conflicts,
//! each reported at the offending field.

use std::collections::{BTreeMap, BTreeSet};

use super::located::{Located, SpecError, field_path};
use super::types::{
    HealthcheckSpec, MountSpec, MountType, NetworkSpec, Object, ServiceMode, ServiceSpec,
    UpdatePolicy,
};

/// More replicas than this is almost certainly a typo.
pub const MAX_REPLICAS: u64 = 10_000;

/// Longest name Docker accepts for a service (it becomes a DNS label).
pub const MAX_NAME_LEN: usize = 63;

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
    errors
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
    match &object.value {
        Object::Service(s) => service(object, &s.spec, &mut errors),
        Object::Network(n) => network(object, &n.spec, &mut errors),
    }
    errors
}

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
        (ServiceMode::Replicated, Some(n)) if n > MAX_REPLICAS => err(
            "spec.replicas".into(),
            format!("replicas {n} is absurdly large: allowed 0-{MAX_REPLICAS}"),
        ),
        _ => {}
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
    if mount.tmpfs_size.is_some() && mount.r#type != MountType::Tmpfs {
        err(
            format!("{field}.tmpfsSize"),
            "tmpfsSize is only allowed with `type: tmpfs`".into(),
        );
    }
}

fn network(object: &Located<Object>, spec: &NetworkSpec, errors: &mut Vec<SpecError>) {
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

fn port_conflicts(objects: &[Located<Object>]) -> Vec<SpecError> {
    // (published port, protocol) -> every (object, port index) publishing it.
    let mut by_port: BTreeMap<(u16, &str), Vec<(&Located<Object>, usize)>> = BTreeMap::new();
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
        .filter(|o| matches!(o.value, Object::Network(_)))
        .map(|o| o.value.name())
        .collect();
    let mut errors = Vec::new();
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
