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
    if !is_versioned_by(data, &desired.instance) || desired.data.contains_key(&data.name) {
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

/// The swarm names of the configs or secrets a definition mounts.
pub fn mounts(definition: &ServiceDefinition, kind: DataKind) -> BTreeSet<String> {
    let list = match kind {
        DataKind::Config => &definition.configs,
        DataKind::Secret => &definition.secrets,
    };
    list.iter().map(|m| m.name.clone()).collect()
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
