//! The plan: desired state + observed swarm → the ordered writes that make them agree.
//!
//! Pure and deterministic. Equal inputs give an empty plan, so a restart or a resync writes
//! nothing. Objects without the operator's label are never written; they show up as conflicts.

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;

use crate::data_objects::describe_secret_changes;
use crate::definition::{
    DEFAULT_INSTANCE, FieldChange, NetworkDefinition, ServiceDefinition, field_changes,
};
use crate::desired::{DesiredObject, DesiredState};
use crate::docker::{Observed, ObservedNetwork, ObservedService, Ownership};

/// The kind of object a key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum ObjectKind {
    /// A `SwarmNetwork`.
    Network,
    /// A `SwarmService`.
    Service,
}

/// Identifies one object the operator reconciles.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ObjectKey {
    pub kind: ObjectKind,
    pub name: String,
}

impl ObjectKey {
    /// Key of a service.
    pub fn service(name: impl Into<String>) -> Self {
        ObjectKey {
            kind: ObjectKind::Service,
            name: name.into(),
        }
    }

    /// Key of a network.
    pub fn network(name: impl Into<String>) -> Self {
        ObjectKey {
            kind: ObjectKind::Network,
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ObjectKind::Network => write!(f, "network/{}", self.name),
            ObjectKind::Service => write!(f, "service/{}", self.name),
        }
    }
}

/// Why a service is updated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum UpdateCause {
    /// The spec (its hash or source file) changed.
    SpecChanged,
    /// The spec did not change, but the service was changed behind the operator's back.
    Drift,
}

/// One write to the swarm.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create a network.
    CreateNetwork {
        /// What to create.
        desired: DesiredObject<NetworkDefinition>,
    },
    /// Create a service.
    CreateService {
        /// What to create.
        desired: DesiredObject<ServiceDefinition>,
    },
    /// Replace a service's spec.
    UpdateService {
        /// Service id.
        id: String,
        /// The version the update is based on.
        version: u64,
        /// What to write.
        desired: DesiredObject<ServiceDefinition>,
        /// What differs, observed → desired.
        changes: Vec<FieldChange>,
        /// Spec edit or drift.
        cause: UpdateCause,
    },
    /// Remove a service whose spec is gone.
    RemoveService {
        /// Service name.
        name: String,
        /// Service id.
        id: String,
    },
    /// Remove a network whose spec is gone.
    RemoveNetwork {
        /// Network name.
        name: String,
        /// Network id.
        id: String,
    },
}

impl Action {
    /// The object this action writes.
    pub fn key(&self) -> ObjectKey {
        match self {
            Action::CreateNetwork { desired } => ObjectKey::network(&desired.definition.name),
            Action::CreateService { desired } | Action::UpdateService { desired, .. } => {
                ObjectKey::service(&desired.definition.name)
            }
            Action::RemoveService { name, .. } => ObjectKey::service(name),
            Action::RemoveNetwork { name, .. } => ObjectKey::network(name),
        }
    }

    /// Order in which actions run: networks exist before the services that use them, and
    /// services are gone before the networks they used.
    fn rank(&self) -> u8 {
        match self {
            Action::CreateNetwork { .. } => 0,
            Action::CreateService { .. } => 1,
            Action::UpdateService { .. } => 2,
            Action::RemoveService { .. } => 3,
            Action::RemoveNetwork { .. } => 4,
        }
    }
}

/// Why the plan leaves an object alone although it differs from its spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ConflictReason {
    /// An object of that name exists without the operator's label.
    NotOwned,
    /// A network's configuration differs from its spec; Docker networks are immutable.
    NetworkImmutable,
    /// The object's spec file failed to load; it is held as it is until the file loads again.
    SpecFileFailed,
    /// The spec directory is empty, and pruning from an empty directory is not allowed.
    PruneWithheld,
}

/// An object the plan refuses or is unable to act on, with the reason and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    pub key: ObjectKey,
    pub reason: ConflictReason,
    /// For humans: what is wrong and what to do.
    pub message: String,
}

/// What one object needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObjectPlan {
    /// The write, if any.
    pub action: Option<Action>,
    /// The reason for not writing, if any.
    pub conflict: Option<Conflict>,
}

/// The plan for the whole swarm.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Writes, in the order they must run.
    pub actions: Vec<Action>,
    /// Objects left alone, and why.
    pub conflicts: Vec<Conflict>,
}

impl Plan {
    /// True when nothing needs to be written.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }
}

/// Every key that the desired or the observed state mentions (observed: owned objects only,
/// plus unowned ones that clash with a desired name, which the desired side already lists).
pub fn all_keys(desired: &DesiredState, observed: &Observed) -> BTreeSet<ObjectKey> {
    let networks = desired.networks.keys().cloned().chain(
        observed
            .networks
            .values()
            .filter(|n| n.ownership.is_owned_by(&desired.instance))
            .map(|n| n.definition.name.clone()),
    );
    let services = desired.services.keys().cloned().chain(
        observed
            .services
            .values()
            .filter(|s| s.ownership.is_owned_by(&desired.instance))
            .map(|s| s.definition.name.clone()),
    );
    networks
        .map(ObjectKey::network)
        .chain(services.map(ObjectKey::service))
        .collect()
}

/// Plans every object.
pub fn plan(desired: &DesiredState, observed: &Observed) -> Plan {
    let mut plan = Plan::default();
    for key in all_keys(desired, observed) {
        let object = plan_object(&key, desired, observed);
        plan.actions.extend(object.action);
        plan.conflicts.extend(object.conflict);
    }
    plan.actions.sort_by_key(|a| (a.rank(), a.key()));
    plan
}

/// Plans one object: the unit of work of the reconciler.
pub fn plan_object(key: &ObjectKey, desired: &DesiredState, observed: &Observed) -> ObjectPlan {
    match key.kind {
        ObjectKind::Service => plan_service(
            key,
            desired.services.get(&key.name),
            observed.services.get(&key.name),
            desired,
        ),
        ObjectKind::Network => plan_network(
            key,
            desired.networks.get(&key.name),
            observed.networks.get(&key.name),
            desired,
        ),
    }
}

fn conflict(key: &ObjectKey, reason: ConflictReason, message: String) -> ObjectPlan {
    ObjectPlan {
        action: None,
        conflict: Some(Conflict {
            key: key.clone(),
            reason,
            message,
        }),
    }
}

fn action(action: Action) -> ObjectPlan {
    ObjectPlan {
        action: Some(action),
        conflict: None,
    }
}

/// Whether an owned object that is no longer desired may be removed now; a conflict if not.
fn prune_blocker(
    key: &ObjectKey,
    ownership: &Ownership,
    desired: &DesiredState,
) -> Option<ObjectPlan> {
    if let Some(file) = ownership
        .source_file
        .as_ref()
        .filter(|f| desired.failed_files.contains(*f))
    {
        return Some(conflict(
            key,
            ConflictReason::SpecFileFailed,
            format!("its spec file {file} failed to load; fix the file to manage it again"),
        ));
    }
    if !desired.prune_allowed {
        return Some(conflict(
            key,
            ConflictReason::PruneWithheld,
            "the spec directory holds no specs; not removing anything (run with \
             --allow-empty-prune to allow it)"
                .to_owned(),
        ));
    }
    None
}

fn plan_service(
    key: &ObjectKey,
    desired: Option<&DesiredObject<ServiceDefinition>>,
    observed: Option<&ObservedService>,
    state: &DesiredState,
) -> ObjectPlan {
    match (desired, observed) {
        (None, None) => ObjectPlan::default(),
        (Some(desired), None) => action(Action::CreateService {
            desired: desired.clone(),
        }),
        (_, Some(observed)) if !observed.ownership.is_owned_by(&state.instance) => {
            if desired.is_some() {
                let owner = if observed.ownership.managed {
                    format!(
                        "is managed by swarm-operator instance {:?}, not {:?}",
                        observed
                            .ownership
                            .instance
                            .as_deref()
                            .unwrap_or(DEFAULT_INSTANCE),
                        state.instance
                    )
                } else {
                    "is not managed by swarm-operator".to_owned()
                };
                conflict(
                    key,
                    ConflictReason::NotOwned,
                    format!(
                        "a service named {} exists but {owner}; remove it or rename the spec",
                        key.name
                    ),
                )
            } else {
                ObjectPlan::default()
            }
        }
        (None, Some(observed)) => {
            prune_blocker(key, &observed.ownership, state).unwrap_or_else(|| {
                action(Action::RemoveService {
                    name: key.name.clone(),
                    id: observed.id.clone(),
                })
            })
        }
        (Some(desired), Some(observed)) => {
            let spec_changed = observed.ownership.spec_hash.as_deref()
                != Some(desired.hash.as_str())
                || observed.ownership.source_file.as_deref() != Some(&desired.source_file);
            let changes = field_changes(&desired.definition, &observed.definition, spec_changed);
            if !spec_changed && changes.is_empty() {
                return ObjectPlan::default();
            }
            action(Action::UpdateService {
                id: observed.id.clone(),
                version: observed.version,
                desired: desired.clone(),
                changes,
                cause: if spec_changed {
                    UpdateCause::SpecChanged
                } else {
                    UpdateCause::Drift
                },
            })
        }
    }
}

fn plan_network(
    key: &ObjectKey,
    desired: Option<&DesiredObject<NetworkDefinition>>,
    observed: Option<&ObservedNetwork>,
    state: &DesiredState,
) -> ObjectPlan {
    match (desired, observed) {
        (None, None) => ObjectPlan::default(),
        (Some(desired), None) => action(Action::CreateNetwork {
            desired: desired.clone(),
        }),
        // A network that already exists without our label (created by hand or by a stack)
        // serves the services that reference it just as well; it is only never changed.
        (_, Some(observed)) if !observed.ownership.is_owned_by(&state.instance) => {
            ObjectPlan::default()
        }
        (None, Some(observed)) => {
            prune_blocker(key, &observed.ownership, state).unwrap_or_else(|| {
                action(Action::RemoveNetwork {
                    name: key.name.clone(),
                    id: observed.id.clone(),
                })
            })
        }
        (Some(desired), Some(observed)) => {
            let changes = field_changes(&desired.definition, &observed.definition, false);
            if changes.is_empty() {
                return ObjectPlan::default();
            }
            let fields: Vec<String> = changes
                .iter()
                .map(|c| format!("{}: {} → {}", c.path, c.old, c.new))
                .collect();
            conflict(
                key,
                ConflictReason::NetworkImmutable,
                format!(
                    "network {} differs from its spec ({}); Docker networks can not be changed \
                     in place: remove the services using it and the network, or rename it",
                    key.name,
                    fields.join(", ")
                ),
            )
        }
    }
}

/// Renders a plan the way `swarm-operator diff` prints it.
pub struct PlanDisplay<'a>(pub &'a Plan);

impl fmt::Display for PlanDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plan = self.0;
        if plan.actions.is_empty() && plan.conflicts.is_empty() {
            return writeln!(f, "in sync: no changes");
        }
        for action in &plan.actions {
            match action {
                Action::CreateNetwork { desired } => {
                    writeln!(f, "+ network/{} (create)", desired.definition.name)?;
                }
                Action::CreateService { desired } => {
                    writeln!(f, "+ service/{} (create)", desired.definition.name)?;
                }
                Action::UpdateService {
                    desired,
                    changes,
                    cause,
                    ..
                } => {
                    let why = match cause {
                        UpdateCause::SpecChanged => "spec changed",
                        UpdateCause::Drift => "drift",
                    };
                    writeln!(f, "~ service/{} (update: {why})", desired.definition.name)?;
                    for change in changes {
                        if change.path == "secrets" {
                            let what = describe_secret_changes(&change.old, &change.new);
                            writeln!(f, "    secrets: {what}")?;
                        } else {
                            writeln!(f, "    {}: {} → {}", change.path, change.old, change.new)?;
                        }
                    }
                    if changes.is_empty() {
                        writeln!(f, "    (operator labels only)")?;
                    }
                }
                Action::RemoveService { name, .. } => writeln!(f, "- service/{name} (remove)")?,
                Action::RemoveNetwork { name, .. } => writeln!(f, "- network/{name} (remove)")?,
            }
        }
        for conflict in &plan.conflicts {
            writeln!(f, "! {}: {}", conflict.key, conflict.message)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::Mode;
    use crate::definition::tests::{docker_default_update_policy, sample_network, sample_service};
    use crate::docker::Ownership;

    fn desired_service(name: &str, file: &str) -> DesiredObject<ServiceDefinition> {
        DesiredObject::new(sample_service(name), file.to_owned(), DEFAULT_INSTANCE)
    }

    fn network(name: &str, file: &str) -> DesiredObject<NetworkDefinition> {
        DesiredObject::new(sample_network(name), file.to_owned(), DEFAULT_INSTANCE)
    }

    /// The swarm as it looks right after the operator applied `desired`.
    fn converged(desired: &DesiredState) -> Observed {
        let mut observed = Observed::default();
        for (name, d) in &desired.services {
            observed.services.insert(
                name.clone(),
                ObservedService {
                    id: format!("id-{name}"),
                    version: 10,
                    definition: d.definition.clone(),
                    ownership: Ownership::from_labels(&d.owner_labels()),
                    virtual_ips: vec![],
                    update_status: None,
                    revision: Default::default(),
                },
            );
        }
        for (name, d) in &desired.networks {
            let mut definition = d.definition.clone();
            // Docker allocates a subnet when the spec names none: not a difference.
            definition.subnet = Some("10.0.1.0/24".into());
            observed.networks.insert(
                name.clone(),
                ObservedNetwork {
                    id: format!("net-{name}"),
                    scope: "swarm".into(),
                    definition,
                    ownership: Ownership::from_labels(&d.owner_labels()),
                },
            );
        }
        observed
    }

    fn state(services: &[(&str, &str)], networks: &[(&str, &str)]) -> DesiredState {
        DesiredState {
            services: services
                .iter()
                .map(|(n, f)| (n.to_string(), desired_service(n, f)))
                .collect(),
            networks: networks
                .iter()
                .map(|(n, f)| (n.to_string(), network(n, f)))
                .collect(),
            prune_allowed: true,
            ..Default::default()
        }
    }

    #[test]
    fn empty_swarm_creates_networks_before_services() {
        let desired = state(
            &[("quote", "a.yaml"), ("account", "a.yaml")],
            &[("net", "a.yaml")],
        );
        let plan = plan(&desired, &Observed::default());
        let keys: Vec<String> = plan.actions.iter().map(|a| a.key().to_string()).collect();
        assert_eq!(keys, ["network/net", "service/account", "service/quote"]);
        assert!(matches!(plan.actions[0], Action::CreateNetwork { .. }));
        assert!(plan.conflicts.is_empty());
    }

    #[test]
    fn converged_swarm_needs_no_action() {
        let desired = state(
            &[("quote", "a.yaml"), ("account", "b.yaml")],
            &[("net", "a.yaml")],
        );
        let plan = plan(&desired, &converged(&desired));
        assert!(plan.is_empty(), "{plan:?}");
        assert!(plan.conflicts.is_empty());
    }

    #[test]
    fn replicas_scaled_by_hand_are_drift() {
        let desired = state(&[("quote", "a.yaml")], &[]);
        let mut observed = converged(&desired);
        observed.services.get_mut("quote").unwrap().definition.mode =
            Mode::Replicated { replicas: 1 };
        let plan = plan(&desired, &observed);
        match &plan.actions[..] {
            [
                Action::UpdateService {
                    cause,
                    changes,
                    version,
                    ..
                },
            ] => {
                assert_eq!(*cause, UpdateCause::Drift);
                assert_eq!(*version, 10);
                assert_eq!(changes[0].path, "mode.replicated.replicas");
            }
            other => panic!("expected one update, got {other:?}"),
        }
    }

    #[test]
    fn spec_edit_is_an_update_with_the_new_definition() {
        let desired = state(&[("quote", "a.yaml")], &[]);
        let observed = converged(&desired);
        let mut edited = desired;
        let svc = edited.services.get_mut("quote").unwrap();
        svc.definition.image = "goblog/quote-service:v2".into();
        svc.hash = crate::definition::definition_hash(&svc.definition);
        let plan = plan(&edited, &observed);
        match &plan.actions[..] {
            [
                Action::UpdateService {
                    cause,
                    changes,
                    desired,
                    ..
                },
            ] => {
                assert_eq!(*cause, UpdateCause::SpecChanged);
                assert_eq!(desired.definition.image, "goblog/quote-service:v2");
                assert_eq!(changes.len(), 1);
                assert_eq!(changes[0].path, "image");
            }
            other => panic!("expected one update, got {other:?}"),
        }
    }

    #[test]
    fn docker_defaults_for_unset_fields_are_not_drift() {
        let desired = state(&[("quote", "a.yaml")], &[]);
        let mut observed = converged(&desired);
        observed
            .services
            .get_mut("quote")
            .unwrap()
            .definition
            .update_config = Some(docker_default_update_policy());
        assert!(plan(&desired, &observed).is_empty());
    }

    #[test]
    fn removed_spec_removes_service_then_network() {
        let before = state(
            &[("quote", "a.yaml"), ("account", "b.yaml")],
            &[("net", "a.yaml")],
        );
        let observed = converged(&before);
        let after = state(&[("account", "b.yaml")], &[]);
        let plan = plan(&after, &observed);
        let keys: Vec<String> = plan.actions.iter().map(|a| a.key().to_string()).collect();
        assert_eq!(keys, ["service/quote", "network/net"]);
        assert!(matches!(plan.actions[0], Action::RemoveService { .. }));
        assert!(matches!(plan.actions[1], Action::RemoveNetwork { .. }));
    }

    #[test]
    fn objects_of_a_failed_file_are_never_removed() {
        let before = state(&[("quote", "broken.yaml"), ("account", "b.yaml")], &[]);
        let observed = converged(&before);
        let mut after = state(&[("account", "b.yaml")], &[]);
        after.failed_files.insert("broken.yaml".into());
        let plan = plan(&after, &observed);
        assert!(plan.is_empty(), "{plan:?}");
        assert_eq!(plan.conflicts.len(), 1);
        assert_eq!(plan.conflicts[0].reason, ConflictReason::SpecFileFailed);
        assert_eq!(plan.conflicts[0].key, ObjectKey::service("quote"));
    }

    #[test]
    fn an_empty_directory_prunes_nothing_unless_allowed() {
        let before = state(&[("quote", "a.yaml")], &[("net", "a.yaml")]);
        let observed = converged(&before);
        let empty = DesiredState::default();
        let plan_withheld = plan(&empty, &observed);
        assert!(plan_withheld.is_empty());
        assert_eq!(plan_withheld.conflicts.len(), 2);
        assert!(
            plan_withheld
                .conflicts
                .iter()
                .all(|c| c.reason == ConflictReason::PruneWithheld)
        );
        let allowed = DesiredState {
            prune_allowed: true,
            ..Default::default()
        };
        assert_eq!(plan(&allowed, &observed).actions.len(), 2);
    }

    #[test]
    fn unowned_services_are_never_touched() {
        let desired = state(&[("quote", "a.yaml")], &[]);
        let mut observed = converged(&desired);
        for service in observed.services.values_mut() {
            service.ownership = Ownership::default();
            service.definition.mode = Mode::Replicated { replicas: 7 };
        }
        observed.services.insert(
            "someone-elses".into(),
            ObservedService {
                ownership: Ownership::default(),
                ..observed.services["quote"].clone()
            },
        );
        let plan = plan(&desired, &observed);
        assert!(plan.is_empty(), "{plan:?}");
        assert_eq!(plan.conflicts.len(), 1);
        assert_eq!(plan.conflicts[0].reason, ConflictReason::NotOwned);
        // Not desired and not owned: not even a key.
        let empty = DesiredState {
            prune_allowed: true,
            ..Default::default()
        };
        assert!(all_keys(&empty, &observed).is_empty());
    }

    #[test]
    fn another_instances_objects_are_left_alone() {
        let theirs = state(
            &[("quote", "a.yaml"), ("shared", "a.yaml")],
            &[("net", "a.yaml")],
        );
        let observed = converged(&theirs);
        // This operator is instance "team-b" and wants only "shared".
        let mut ours = state(&[("shared", "b.yaml")], &[]);
        ours.instance = "team-b".into();
        ours.services.get_mut("shared").unwrap().instance = "team-b".into();
        let plan = plan(&ours, &observed);
        assert!(
            plan.is_empty(),
            "nothing of instance default is removed: {plan:?}"
        );
        assert_eq!(plan.conflicts.len(), 1);
        assert_eq!(plan.conflicts[0].key, ObjectKey::service("shared"));
        assert!(
            plan.conflicts[0]
                .message
                .contains("managed by swarm-operator instance \"default\", not \"team-b\""),
            "{}",
            plan.conflicts[0].message
        );
    }

    #[test]
    fn a_changed_network_is_a_conflict_not_a_write() {
        let desired = state(&[], &[("net", "a.yaml")]);
        let mut observed = converged(&desired);
        observed
            .networks
            .get_mut("net")
            .unwrap()
            .definition
            .attachable = false;
        let plan = plan(&desired, &observed);
        assert!(plan.is_empty());
        assert_eq!(plan.conflicts[0].reason, ConflictReason::NetworkImmutable);
        assert!(plan.conflicts[0].message.contains("attachable"));
    }

    #[test]
    fn moving_a_spec_to_another_file_rewrites_the_labels() {
        let desired = state(&[("quote", "a.yaml")], &[]);
        let observed = converged(&desired);
        let moved = state(&[("quote", "b.yaml")], &[]);
        let plan = plan(&moved, &observed);
        assert!(matches!(
            plan.actions[..],
            [Action::UpdateService {
                cause: UpdateCause::SpecChanged,
                ..
            }]
        ));
    }

    #[test]
    fn plan_display_shows_field_changes() {
        let desired = state(&[("quote", "a.yaml")], &[]);
        let mut observed = converged(&desired);
        observed.services.get_mut("quote").unwrap().definition.mode =
            Mode::Replicated { replicas: 1 };
        let text = PlanDisplay(&plan(&desired, &observed)).to_string();
        assert_eq!(
            text,
            "~ service/quote (update: drift)\n    mode.replicated.replicas: 1 → 3\n"
        );
    }
}
