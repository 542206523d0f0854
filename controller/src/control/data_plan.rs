//! The plan for configs and secrets: create the versions the specs name, collect the operator's
//! versions nothing uses any more, and say which of them a service's write waits for.
//!
//! Versions are immutable and content-addressed ([`crate::desired::data_objects`]), so a version that
//! exists under its name is the right content: it is only ever created or removed. A version
//! is collected once it is not desired and no service mounts it (the operator's or anyone's),
//! neither in its spec nor in its previous spec, which swarm's rollback restores. So at most
//! the current and the previous version of each config or secret stay.

use std::collections::BTreeSet;

use crate::control::plan::{Action, ObjectKey, ObjectPlan, action};
use crate::desired::DesiredState;
use crate::desired::data_objects::{DataKind, DataOrigin, ObservedData};
use crate::desired::definition::ServiceDefinition;
use crate::docker::{Observed, Ownership};

/// The config and secret keys the operator reconciles: every desired version, and every
/// version it created (the logical-name label) for this instance.
pub fn data_keys<'a>(
    desired: &'a DesiredState,
    observed: &'a Observed,
) -> impl Iterator<Item = ObjectKey> + 'a {
    let wanted = desired
        .data
        .values()
        .map(|d| ObjectKey::data(d.kind, &d.name));
    let owned = [DataKind::Config, DataKind::Secret]
        .into_iter()
        .flat_map(move |kind| observed.data(kind).values())
        .filter(|d| is_versioned_by(d, &desired.instance))
        .map(|d| ObjectKey::data(d.kind, &d.name));
    wanted.chain(owned)
}

/// Whether `data` is a version the operator `instance` created (not one of its other configs:
/// the stored specs and the leader lease carry no logical name and are never collected here).
pub fn is_versioned_by(data: &ObservedData, instance: &str) -> bool {
    data.logical_name().is_some() && Ownership::from_labels(&data.labels).is_owned_by(instance)
}

/// Plans one config or secret version.
pub fn plan_data(key: &ObjectKey, desired: &DesiredState, observed: &Observed) -> ObjectPlan {
    let Some(kind) = key.kind.data_kind() else {
        return ObjectPlan::default();
    };
    let wanted = desired
        .data
        .get(&key.name)
        .filter(|d| d.kind == kind && d.origin == DataOrigin::Spec);
    let existing = observed.data(kind).get(&key.name);
    match (wanted, existing) {
        (Some(wanted), None) => action(Action::CreateData {
            desired: wanted.clone(),
        }),
        (_, Some(existing)) if is_collectable(existing, desired, observed) => {
            action(Action::RemoveData {
                kind,
                name: existing.name.clone(),
                id: existing.id.clone(),
                applied: existing.is_applied(),
            })
        }
        // A secret `apply` created that the swarm lacks is the mounting service's error: only
        // `apply` has its content.
        _ => ObjectPlan::default(),
    }
}

/// Whether the operator may remove `data` now (see the module's rules).
fn is_collectable(data: &ObservedData, desired: &DesiredState, observed: &Observed) -> bool {
    let Some(logical) = data.logical_name() else {
        return false;
    };
    if !is_versioned_by(data, &desired.instance)
        || desired.data.contains_key(&data.name)
        // A service not read yet may mount it.
        || desired.partial
    {
        return false;
    }
    let mounted =
        |definition: &ServiceDefinition| mounts(definition, data.kind).contains(&data.name);
    if observed
        .services
        .values()
        .any(|s| mounted(&s.definition) || s.revision.previous_mounts.contains(&data.name))
        || desired.services.values().any(|s| mounted(&s.definition))
    {
        return false;
    }
    // `apply` stores the spec naming a secret before it creates it: a stored spec that names
    // it keeps it, even before this replica's copy of the specs does.
    if data.is_applied()
        && crate::spec::in_swarm::applied_secrets_named(
            observed.configs.values(),
            &desired.instance,
        )
        .contains(&data.name)
    {
        return false;
    }
    let still_specified = desired
        .data
        .values()
        .any(|d| d.kind == data.kind && d.logical_name == logical);
    if !still_specified {
        // The config or secret's spec is gone: its versions go with it, under the same rules
        // as any removal (not from an empty directory, not while a file fails to load).
        return desired.prune_allowed && desired.failed_files.is_empty() && !desired.all_suspended;
    }
    // Still specified, and no service mounts it, now or in its previous spec: an old version.
    true
}

/// The swarm names of the configs or secrets a definition mounts (or, for a credential spec,
/// references).
pub fn mounts(definition: &ServiceDefinition, kind: DataKind) -> BTreeSet<String> {
    definition.data_names(kind)
}

/// The networks, configs and secrets that `definition` needs, that the operator creates from
/// the specs, and that do not exist yet: a write of the service waits for them.
pub fn missing_dependencies(
    definition: &ServiceDefinition,
    desired: &DesiredState,
    observed: &Observed,
) -> Vec<ObjectKey> {
    let networks = definition
        .networks
        .iter()
        .filter(|n| desired.networks.contains_key(*n) && !observed.networks.contains_key(*n))
        .map(ObjectKey::network);
    let data = [DataKind::Config, DataKind::Secret]
        .into_iter()
        .flat_map(|kind| mounts(definition, kind).into_iter().map(move |n| (kind, n)))
        .filter(|(kind, name)| {
            desired
                .data
                .get(name)
                .is_some_and(|d| d.kind == *kind && d.origin == DataOrigin::Spec)
                && !observed.data(*kind).contains_key(name)
        })
        .map(|(kind, name)| ObjectKey::data(kind, name));
    networks.chain(data).collect()
}

/// The keys of the operator's versions of the logical configs and secrets whose versions
/// `names` (of `kind`) are: a change to one of them (created, mounted, unmounted, removed) may
/// change which of the others may be collected.
pub fn siblings(
    observed: &Observed,
    instance: &str,
    kind: DataKind,
    names: &BTreeSet<String>,
) -> Vec<ObjectKey> {
    let logical: BTreeSet<&str> = names
        .iter()
        .filter_map(|n| observed.data(kind).get(n))
        .filter_map(ObservedData::logical_name)
        .collect();
    if logical.is_empty() {
        return Vec::new();
    }
    observed
        .data(kind)
        .values()
        .filter(|d| is_versioned_by(d, instance))
        .filter(|d| d.logical_name().is_some_and(|l| logical.contains(l)))
        .map(|d| ObjectKey::data(kind, &d.name))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::control::plan::{PlanDisplay, plan};
    use crate::desired::data_objects::{DesiredData, LOGICAL_NAME_LABEL};
    use crate::desired::definition::tests::sample_service;
    use crate::desired::definition::{DEFAULT_INSTANCE, FileMount};
    use crate::docker::ObservedService;
    use crate::redact::Values;
    use crate::spec::Content;

    fn desired_conf(content: &str) -> DesiredData {
        let content = Content(content.as_bytes().to_vec());
        DesiredData {
            kind: DataKind::Config,
            logical_name: "conf".into(),
            name: crate::desired::data_objects::versioned_name("conf", &content),
            content,
            labels: BTreeMap::new(),
            origin: DataOrigin::Spec,
        }
    }

    fn observed(data: &DesiredData, instance: &str) -> ObservedData {
        ObservedData {
            kind: data.kind,
            id: format!("id-{}", data.name),
            name: data.name.clone(),
            labels: data.labels(instance),
        }
    }

    fn mounting(name: &str, previous: &[&str]) -> ObservedService {
        let mut definition = sample_service("web");
        definition.configs = vec![FileMount {
            name: name.into(),
            target: "/etc/conf".into(),
            uid: "0".into(),
            gid: "0".into(),
            mode: 0o444,
        }];
        ObservedService {
            id: "s1".into(),
            version: 3,
            definition: definition.into(),
            ownership: Ownership::default(),
            virtual_ips: Vec::new(),
            update_status: None,
            revision: crate::docker::ServiceRevision {
                previous_mounts: previous.iter().map(|p| (*p).to_owned()).collect(),
                ..Default::default()
            },
        }
    }

    #[test]
    fn old_versions_go_unless_mounted_now_or_by_a_previous_spec() {
        let [v1, v2, v3] = ["a", "b", "c"].map(desired_conf);
        let mut desired = DesiredState {
            prune_allowed: true,
            ..DesiredState::default()
        };
        desired.data.insert(v3.name.clone(), v3.clone());
        let mut swarm = Observed::default();
        for v in [&v1, &v2, &v3] {
            swarm
                .configs
                .insert(v.name.clone(), observed(v, DEFAULT_INSTANCE));
        }
        // Someone else's config and the stored specs are never the operator's to collect.
        let mut foreign = observed(&desired_conf("x"), "other");
        foreign.name = "foreign".into();
        swarm.configs.insert(foreign.name.clone(), foreign);
        swarm
            .services
            .insert("web".into(), Arc::new(mounting(&v3.name, &[&v2.name])));
        let p = plan(&desired, &swarm);
        let removed: Vec<String> = p.actions.iter().map(|a| a.key().to_string()).collect();
        assert_eq!(removed, [format!("config/{}", v1.name)], "{p:?}");
        assert_eq!(
            PlanDisplay(&p, Values::Hidden).to_string(),
            format!("- config/{} (no longer used)\n", v1.name)
        );
        // Without the rollback's spec, v2 goes too.
        swarm
            .services
            .insert("web".into(), Arc::new(mounting(&v3.name, &[])));
        assert_eq!(plan(&desired, &swarm).actions.len(), 2);
    }

    #[test]
    fn versions_whose_spec_is_gone_follow_the_prune_rules() {
        let v1 = desired_conf("a");
        let mut swarm = Observed::default();
        swarm
            .configs
            .insert(v1.name.clone(), observed(&v1, DEFAULT_INSTANCE));
        let mut desired = DesiredState::default();
        assert!(
            plan(&desired, &swarm).is_empty(),
            "an empty directory prunes nothing"
        );
        desired.prune_allowed = true;
        desired.failed_files.insert("broken.yaml".into());
        assert!(plan(&desired, &swarm).is_empty(), "nor does a failing file");
        desired.failed_files.clear();
        desired.partial = true;
        assert!(
            plan(&desired, &swarm).is_empty(),
            "nor a first read of a burst"
        );
        desired.partial = false;
        assert_eq!(plan(&desired, &swarm).actions.len(), 1);
        // The label without the operator's ownership is not enough.
        let mut unowned = observed(&v1, DEFAULT_INSTANCE);
        unowned.labels.retain(|k, _| k == LOGICAL_NAME_LABEL);
        swarm.configs.insert(v1.name, unowned);
        assert!(plan(&desired, &swarm).is_empty());
    }

    #[test]
    fn a_new_version_is_created_before_the_service_and_never_shown() {
        let v1 = desired_conf("secret-looking content");
        let mut desired = DesiredState {
            prune_allowed: true,
            ..DesiredState::default()
        };
        desired.data.insert(v1.name.clone(), v1.clone());
        let service = mounting(&v1.name, &[]);
        desired.services.insert(
            "web".into(),
            crate::desired::DesiredObject::new(
                std::sync::Arc::unwrap_or_clone(service.definition),
                "a.yaml".into(),
                DEFAULT_INSTANCE,
            ),
        );
        let swarm = Observed::default();
        let p = plan(&desired, &swarm);
        let text = PlanDisplay(&p, Values::Shown).to_string();
        assert_eq!(
            text,
            format!("+ config/{} (create)\n+ service/web (create)\n", v1.name)
        );
        assert!(!text.contains("secret-looking"));
        // Reconciled alone, the service waits for the version instead.
        let one = crate::control::plan::plan_object(&ObjectKey::service("web"), &desired, &swarm);
        assert_eq!(one.action, None);
        let conflict = one.conflict.unwrap();
        assert_eq!(
            conflict.reason,
            crate::control::plan::ConflictReason::WaitingForDependencies
        );
        assert!(conflict.message.contains(&format!("config/{}", v1.name)));
    }
}
