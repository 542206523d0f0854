//! Which objects a change of the view wakes: only keys whose plan may change (a spec, what
//! blocked them, the rules for removing), and only keys the operator reconciles.

use std::collections::{BTreeMap, BTreeSet};

use super::plan::{ConflictReason, ObjectKey, ObjectKind, plan_object};
use super::world::{Blocker, World, WorldState};
use crate::desired::data_objects::{DataKind, ObservedData};
use crate::desired::definition::ServiceDefinition;
use crate::desired::{DesiredObject, DesiredState};
use crate::docker::ObservedService;

/// Whether two reads of a service differ in nothing the plan looks at.
pub(super) fn same_service(a: &ObservedService, b: &ObservedService) -> bool {
    let update_state = |s: &ObservedService| s.update_status.as_ref().map(|u| u.state);
    a.id == b.id
        && a.definition == b.definition
        && a.ownership == b.ownership
        // The plan marks a rolled-back spec once the rollback ended, and holds dependents
        // until an update ended: swarm ends a rollback without touching the spec, so the
        // update's state alone must trigger a look.
        && update_state(a) == update_state(b)
}

/// Keys that a service's change may unblock: the owned networks it stopped using (a removal
/// waiting for its users) and the services whose port it stopped holding. A service that
/// appears or starts using something unblocks nothing, so it triggers nothing: a key in backoff
/// is retried early only when what blocks it went away.
pub(super) fn unblocked_by(
    state: &WorldState,
    previous: &ObservedService,
    current: Option<&ObservedService>,
) -> Vec<ObjectKey> {
    let still_uses =
        |network: &String| current.is_some_and(|c| c.definition.networks.contains(network));
    let networks = previous
        .definition
        .networks
        .iter()
        .filter(|n| !still_uses(n))
        .filter(|n| !state.desired.networks.contains_key(*n))
        .map(ObjectKey::network);
    let ports_changed = current.is_none_or(|c| c.definition.ports != previous.definition.ports);
    // Only a holder that let its ports go can unblock anyone: skip the scan otherwise.
    let outcomes = ports_changed
        .then_some(&state.outcomes)
        .into_iter()
        .flatten();
    let port_waiters = outcomes
        .filter(|(_, outcome)| {
            matches!(&outcome.error, Some((Blocker::PortConflict { holder, .. }, _))
                if *holder == previous.definition.name || *holder == previous.id)
        })
        .map(|(key, _)| key.clone());
    networks
        .chain(port_waiters)
        .chain(unmounted(
            state,
            &previous.definition,
            current.map(|c| &*c.definition),
        ))
        .collect()
}

/// The operator's versions of the configs and secrets whose versions `previous` mounted and
/// `current` does not: one of them may now be collectable.
pub(super) fn unmounted(
    state: &WorldState,
    previous: &ServiceDefinition,
    current: Option<&ServiceDefinition>,
) -> Vec<ObjectKey> {
    let mut keys = Vec::new();
    for kind in [DataKind::Config, DataKind::Secret] {
        let before = crate::control::data_plan::mounts(previous, kind);
        if before.is_empty() {
            continue;
        }
        let after = current
            .map(|c| crate::control::data_plan::mounts(c, kind))
            .unwrap_or_default();
        let gone: BTreeSet<String> = before.difference(&after).cloned().collect();
        keys.extend(crate::control::data_plan::siblings(
            &state.observed,
            &state.desired.instance,
            kind,
            &gone,
        ));
    }
    keys
}

/// The keys a config's or secret's appearance or removal may unblock: the desired services
/// that mount it and do not exist yet (the others wait with a dependency conflict, which any
/// change triggers), and the operator's other versions of the same config or secret.
pub(super) fn data_changed(
    state: &WorldState,
    kind: DataKind,
    name: &str,
    previous: Option<&ObservedData>,
) -> Vec<ObjectKey> {
    let dependents = state
        .desired
        .services
        .iter()
        .filter(|(service, d)| {
            crate::control::data_plan::mounts(&d.definition, kind).contains(name)
                && !state.observed.services.contains_key(*service)
        })
        .map(|(service, _)| ObjectKey::service(service));
    let logical = previous
        .or_else(|| state.observed.data(kind).get(name))
        .and_then(ObservedData::logical_name);
    let siblings = state
        .observed
        .data(kind)
        .values()
        .filter(|d| d.name != name && logical.is_some() && d.logical_name() == logical)
        .filter(|d| crate::control::data_plan::is_versioned_by(d, &state.desired.instance))
        .map(|d| ObjectKey::data(kind, &d.name));
    dependents.chain(siblings).collect()
}

/// Services whose last reconcile waited for a `dependsOn` service (or a dependent's removal).
pub(super) fn waiting_for_dependency(state: &WorldState) -> Vec<ObjectKey> {
    state
        .outcomes
        .iter()
        .filter(|(_, o)| {
            o.conflict
                .as_ref()
                .is_some_and(|c| c.reason == ConflictReason::WaitingForDependencies)
        })
        .map(|(key, _)| key.clone())
        .collect()
}

/// Desired services that wait for network `name` to appear.
pub(super) fn network_dependents(state: &WorldState, name: &str) -> Vec<ObjectKey> {
    state
        .desired
        .services
        .iter()
        .filter(|(service, d)| {
            d.definition.networks.iter().any(|n| n == name)
                && !state.observed.services.contains_key(*service)
        })
        .map(|(service, _)| ObjectKey::service(service))
        .collect()
}

/// The keys whose plan may differ between two desired states, and whether the rules for
/// removing undesired objects changed.
pub(super) fn desired_changes(
    old: &DesiredState,
    new: &DesiredState,
) -> (BTreeSet<ObjectKey>, bool) {
    fn diff<'a, T: PartialEq>(
        old: &'a BTreeMap<String, DesiredObject<T>>,
        new: &'a BTreeMap<String, DesiredObject<T>>,
    ) -> impl Iterator<Item = &'a String> {
        old.keys()
            .chain(new.keys())
            .filter(|name| old.get(*name) != new.get(*name))
    }
    let mut keys: BTreeSet<ObjectKey> = diff(&old.services, &new.services)
        .map(ObjectKey::service)
        .chain(diff(&old.networks, &new.networks).map(ObjectKey::network))
        .collect();
    let suspension_changed = old.all_suspended != new.all_suspended;
    if suspension_changed {
        // A `.suspend` file came or went: every object's plan changes.
        keys.extend(new.services.keys().map(ObjectKey::service));
        keys.extend(new.networks.keys().map(ObjectKey::network));
    }
    let prune_rules_changed = old.prune_allowed != new.prune_allowed
        || old.partial != new.partial
        || old.failed_files != new.failed_files
        || old.instance != new.instance
        || suspension_changed;
    (keys, prune_rules_changed)
}

/// The config and secret keys whose plan a reload may change: versions that became desired or
/// stopped being desired, and every version of their configs and secrets (which one is the
/// previous version may have changed). A `.suspend` file coming or going concerns them all.
pub(super) fn data_spec_changes(old: &DesiredState, state: &WorldState) -> BTreeSet<ObjectKey> {
    let new = &state.desired;
    let suspension_changed = old.all_suspended != new.all_suspended;
    let changed: Vec<&crate::desired::data_objects::DesiredData> = old
        .data
        .iter()
        .chain(&new.data)
        .filter(|(name, _)| suspension_changed || old.data.get(*name) != new.data.get(*name))
        .map(|(_, d)| d)
        .collect();
    let logical: BTreeSet<(DataKind, &str)> = changed
        .iter()
        .map(|d| (d.kind, d.logical_name.as_str()))
        .collect();
    let mut keys: BTreeSet<ObjectKey> = changed
        .iter()
        .map(|d| ObjectKey::data(d.kind, &d.name))
        .collect();
    for kind in [DataKind::Config, DataKind::Secret] {
        keys.extend(
            state
                .observed
                .data(kind)
                .values()
                .filter(|d| crate::control::data_plan::is_versioned_by(d, &new.instance))
                .filter(|d| {
                    suspension_changed
                        || d.logical_name()
                            .is_some_and(|l| logical.contains(&(kind, l)))
                })
                .map(|d| ObjectKey::data(kind, &d.name)),
        );
    }
    keys
}

/// Filters changed keys to the ones the operator reconciles (desired, or owned by this
/// instance).
pub(super) fn relevant_keys(
    state: &WorldState,
    changed: BTreeSet<ObjectKey>,
) -> BTreeSet<ObjectKey> {
    let instance = &state.desired.instance;
    let owned_service = |name: &str| {
        state
            .observed
            .services
            .get(name)
            .is_some_and(|s| s.ownership.is_owned_by(instance))
    };
    let owned_network = |name: &str| {
        state
            .observed
            .networks
            .get(name)
            .is_some_and(|n| n.ownership.is_owned_by(instance))
    };
    let mut relevant = BTreeSet::new();
    for key in changed {
        let wanted =
            match key.kind {
                ObjectKind::Service => {
                    state.desired.services.contains_key(&key.name) || owned_service(&key.name)
                }
                ObjectKind::Network => {
                    state.desired.networks.contains_key(&key.name) || owned_network(&key.name)
                }
                ObjectKind::Config | ObjectKind::Secret => {
                    let kind = key.kind.data_kind().unwrap_or(DataKind::Config);
                    state
                        .desired
                        .data
                        .get(&key.name)
                        .is_some_and(|d| d.kind == kind)
                        || state.observed.data(kind).get(&key.name).is_some_and(|d| {
                            crate::control::data_plan::is_versioned_by(d, instance)
                        })
                }
            };
        if wanted {
            relevant.insert(key);
        }
    }
    relevant
}

/// The objects not desired any more whose plan changes with the rules for removing them
/// (`before` → `state.desired`). Only those: one that fails either way (a network still in use)
/// keeps its backoff, whatever else the reload brought.
pub(super) fn prune_rule_changes(before: &DesiredState, state: &WorldState) -> Vec<ObjectKey> {
    undesired_owned(state)
        .into_iter()
        .filter(|key| {
            plan_object(key, before, &state.observed)
                != plan_object(key, &state.desired, &state.observed)
        })
        .collect()
}

/// Owned objects whose spec is gone.
fn undesired_owned(state: &WorldState) -> Vec<ObjectKey> {
    let instance = &state.desired.instance;
    let services = state
        .observed
        .services
        .values()
        .filter(|s| s.ownership.is_owned_by(instance))
        .filter(|s| !state.desired.services.contains_key(&s.definition.name))
        .map(|s| ObjectKey::service(&s.definition.name));
    let networks = state
        .observed
        .networks
        .values()
        .filter(|n| n.ownership.is_owned_by(instance))
        .filter(|n| !state.desired.networks.contains_key(&n.definition.name))
        .map(|n| ObjectKey::network(&n.definition.name));
    let data = [DataKind::Config, DataKind::Secret]
        .into_iter()
        .flat_map(|kind| state.observed.data(kind).values())
        .filter(|d| crate::control::data_plan::is_versioned_by(d, instance))
        .filter(|d| !state.desired.data.contains_key(&d.name))
        .map(|d| ObjectKey::data(d.kind, &d.name));
    services.chain(networks).chain(data).collect()
}

/// Every key the operator reconciles right now (the initial pass).
pub fn all_keys(world: &World) -> Vec<ObjectKey> {
    let state = world.snapshot();
    crate::control::plan::all_keys(&state.desired, &state.observed)
        .into_iter()
        .collect()
}
