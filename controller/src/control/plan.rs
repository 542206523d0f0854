//! The plan: desired state + observed swarm → the ordered writes that make them agree.
//!
//! Pure and deterministic. Equal inputs give an empty plan, so a restart or a resync writes
//! nothing. Objects without the operator's label are never written; they show up as conflicts.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::desired::data_objects::{DataKind, DesiredData, describe_secret_changes};
use crate::desired::definition::{
    DEFAULT_INSTANCE, FieldChange, Mode, NetworkDefinition, SPEC_VALUE_LABEL_PREFIX,
    ServiceDefinition, field_changes,
};
use crate::desired::{DesiredObject, DesiredState, SUSPEND_FILE, drift_value};
use crate::docker::{
    Observed, ObservedNetwork, ObservedService, Ownership, RolledBack, TaskState, UpdateState,
};
use crate::redact::Values;
use crate::spec::{DriftField, SUSPEND_ANNOTATION};

/// The kind of object a key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum ObjectKind {
    /// A `SwarmNetwork`.
    Network,
    /// A `SwarmService`.
    Service,
    /// A version of a `SwarmConfig`.
    Config,
    /// A version of a `SwarmSecret`.
    Secret,
}

impl ObjectKind {
    /// The data kind of a config or secret key.
    pub fn data_kind(self) -> Option<DataKind> {
        match self {
            ObjectKind::Config => Some(DataKind::Config),
            ObjectKind::Secret => Some(DataKind::Secret),
            ObjectKind::Network | ObjectKind::Service => None,
        }
    }

    /// How the kind is written in keys, messages and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Network => "network",
            ObjectKind::Service => "service",
            ObjectKind::Config => "config",
            ObjectKind::Secret => "secret",
        }
    }
}

impl From<DataKind> for ObjectKind {
    fn from(kind: DataKind) -> Self {
        match kind {
            DataKind::Config => ObjectKind::Config,
            DataKind::Secret => ObjectKind::Secret,
        }
    }
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

impl ObjectKey {
    /// Key of a config or secret version (by its swarm name).
    pub fn data(kind: DataKind, name: impl Into<String>) -> Self {
        ObjectKey {
            kind: kind.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind.as_str(), self.name)
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
    /// Mark a service whose update swarm rolled back with the spec that was rolled back, so
    /// that the operator holds that spec instead of writing it again (see
    /// [`crate::desired::definition::ROLLED_BACK_SPEC_LABEL`]). The service's spec is written as it is,
    /// with the mark added to its labels: no task is replaced.
    MarkRolledBack {
        /// Service id.
        id: String,
        /// The version the write is based on.
        version: u64,
        /// The service's name.
        name: String,
        /// The service as it is on the swarm (boxed: the other actions hold theirs boxed).
        current: Box<ServiceDefinition>,
        /// Its operator labels with the mark added.
        labels: BTreeMap<String, String>,
        /// The mark.
        mark: RolledBack,
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
    /// Create a config or secret version (its content never shows in messages).
    CreateData {
        /// What to create.
        desired: DesiredData,
    },
    /// Remove a config or secret version the operator created that nothing uses any more.
    RemoveData {
        /// Config or secret.
        kind: DataKind,
        /// Its swarm name.
        name: String,
        /// Its id.
        id: String,
        /// Whether `apply` created it: removed only once no stored spec names it (see
        /// [`crate::control::data_plan`]).
        applied: bool,
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
            Action::RemoveService { name, .. } | Action::MarkRolledBack { name, .. } => {
                ObjectKey::service(name)
            }
            Action::RemoveNetwork { name, .. } => ObjectKey::network(name),
            Action::CreateData { desired } => ObjectKey::data(desired.kind, &desired.name),
            Action::RemoveData { kind, name, .. } => ObjectKey::data(*kind, name),
        }
    }

    /// What the action does, for messages: `create`, `update: spec changed`, `remove`, ….
    pub fn verb(&self) -> &'static str {
        match self {
            Action::CreateNetwork { .. }
            | Action::CreateService { .. }
            | Action::CreateData { .. } => "create",
            Action::UpdateService {
                cause: UpdateCause::SpecChanged,
                ..
            } => "update: spec changed",
            Action::UpdateService {
                cause: UpdateCause::Drift,
                ..
            } => "update: drift",
            Action::MarkRolledBack { .. } => "mark rolled back",
            Action::RemoveService { .. } | Action::RemoveNetwork { .. } => "remove",
            Action::RemoveData { .. } => "remove: no longer used",
        }
    }

    /// Order in which actions run: networks, configs and secrets exist before the services
    /// that use them, and services are gone before what they used.
    fn rank(&self) -> u8 {
        match self {
            Action::CreateNetwork { .. } | Action::CreateData { .. } => 0,
            Action::CreateService { .. } => 1,
            Action::UpdateService { .. } | Action::MarkRolledBack { .. } => 2,
            Action::RemoveService { .. } => 3,
            Action::RemoveNetwork { .. } | Action::RemoveData { .. } => 4,
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
    /// The object (annotation) or the whole spec directory (`.suspend`) is suspended.
    Suspended,
    /// A field under `driftPolicy.ignore` differs on the swarm; it is left as it is. Not a
    /// refusal: other writes still happen.
    ExternallyManaged,
    /// A service in `dependsOn` is not ready yet (or, for a removal, a dependent still exists).
    WaitingForDependencies,
    /// Swarm rolled the service's update back (or is rolling it back): the rolled-back spec is
    /// held until the spec changes, instead of being written again.
    RolledBack,
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
        .chain(crate::control::data_plan::data_keys(desired, observed))
        .collect()
}

/// Plans every object. A service whose network, config or secret does not exist yet is written
/// after the create of that object in the same plan (the order of [`Plan::actions`]).
pub fn plan(desired: &DesiredState, observed: &Observed) -> Plan {
    let keys = all_keys(desired, observed);
    let objects: Vec<Ordered> = keys
        .iter()
        .map(|key| plan_ordered(key, desired, observed))
        .collect();
    let created: BTreeSet<ObjectKey> = objects
        .iter()
        .filter_map(|o| match &o.plan.action {
            Some(a @ (Action::CreateNetwork { .. } | Action::CreateData { .. })) => Some(a.key()),
            _ => None,
        })
        .collect();
    let mut plan = Plan::default();
    for (key, object) in keys.iter().zip(objects) {
        let object = match object.waits_for.iter().find(|d| !created.contains(*d)) {
            Some(missing) => waiting_for(key, missing),
            None => object.plan,
        };
        plan.actions.extend(object.action);
        plan.conflicts.extend(object.conflict);
    }
    plan.actions.sort_by_key(|a| (a.rank(), a.key()));
    plan
}

/// Plans one object: the unit of work of the reconciler. A write that needs a network, config
/// or secret the operator creates and that does not exist yet waits for it (the conflict
/// [`ConflictReason::WaitingForDependencies`]); that object's own reconcile creates it, and its
/// appearance triggers the waiting object again.
pub fn plan_object(key: &ObjectKey, desired: &DesiredState, observed: &Observed) -> ObjectPlan {
    let object = plan_ordered(key, desired, observed);
    match object.waits_for.first() {
        Some(missing) => waiting_for(key, missing),
        None => object.plan,
    }
}

/// One object's plan, and the objects it must wait for.
struct Ordered {
    plan: ObjectPlan,
    /// Networks, configs and secrets the operator creates that the write needs and that do
    /// not exist yet.
    waits_for: Vec<ObjectKey>,
}

fn plan_ordered(key: &ObjectKey, desired: &DesiredState, observed: &Observed) -> Ordered {
    let plan = plan_suspended(key, desired, observed);
    let waits_for = match &plan.action {
        Some(Action::CreateService { desired: d } | Action::UpdateService { desired: d, .. }) => {
            crate::control::data_plan::missing_dependencies(&d.definition, desired, observed)
        }
        _ => Vec::new(),
    };
    Ordered { plan, waits_for }
}

fn waiting_for(key: &ObjectKey, missing: &ObjectKey) -> ObjectPlan {
    conflict(
        key,
        ConflictReason::WaitingForDependencies,
        format!("waiting for dependencies: {missing} is being created"),
    )
}

/// Plans one object, with its suspension applied.
fn plan_suspended(key: &ObjectKey, desired: &DesiredState, observed: &Observed) -> ObjectPlan {
    let plan = plan_unsuspended(key, desired, observed);
    match suspension(key, desired) {
        Some(why)
            if plan.action.is_some() || plan.conflict.is_some() || is_present(key, observed) =>
        {
            let held = plan
                .action
                .as_ref()
                .map(|a| format!(" (held: {})", a.verb()))
                .unwrap_or_default();
            conflict(key, ConflictReason::Suspended, format!("{why}{held}"))
        }
        Some(_) => ObjectPlan::default(),
        None => plan,
    }
}

/// Why `key` is suspended, if it is.
fn suspension(key: &ObjectKey, desired: &DesiredState) -> Option<String> {
    if desired.all_suspended {
        return Some(format!(
            "suspended: the spec directory holds a {SUSPEND_FILE} file; remove it to reconcile again"
        ));
    }
    let (suspended, file) = match key.kind {
        ObjectKind::Service => desired
            .services
            .get(&key.name)
            .map(|d| (d.policy.suspended, &d.source_file)),
        ObjectKind::Network => desired
            .networks
            .get(&key.name)
            .map(|d| (d.policy.suspended, &d.source_file)),
        // A version follows the services that mount it; only `.suspend` holds it.
        ObjectKind::Config | ObjectKind::Secret => None,
    }?;
    suspended.then(|| {
        format!(
            "suspended by the annotation {SUSPEND_ANNOTATION}: \"true\" in {file}; remove it to \
             reconcile again"
        )
    })
}

fn is_present(key: &ObjectKey, observed: &Observed) -> bool {
    match key.kind {
        ObjectKind::Service => observed.services.contains_key(&key.name),
        ObjectKind::Network => observed.networks.contains_key(&key.name),
        ObjectKind::Config => observed.configs.contains_key(&key.name),
        ObjectKind::Secret => observed.secrets.contains_key(&key.name),
    }
}

fn plan_unsuspended(key: &ObjectKey, desired: &DesiredState, observed: &Observed) -> ObjectPlan {
    let plan = plan_by_kind(key, desired, observed);
    match &plan.action {
        Some(Action::CreateService { desired: d })
        | Some(Action::UpdateService {
            desired: d,
            cause: UpdateCause::SpecChanged,
            ..
        }) => match unready_dependency(&d.policy.depends_on, desired, observed) {
            Some(message) => conflict(key, ConflictReason::WaitingForDependencies, message),
            None => plan,
        },
        Some(Action::RemoveService { name, .. }) => match remaining_dependent(name, observed) {
            Some(message) => conflict(key, ConflictReason::WaitingForDependencies, message),
            None => plan,
        },
        _ => plan,
    }
}

/// The first service of `depends_on` that is not ready, described; `None` when all are.
/// Ready: it runs the current spec (its spec-hash label matches) with no rolling update under
/// way, and every expected replica runs (global: every task swarm wants running).
fn unready_dependency(
    depends_on: &[String],
    desired: &DesiredState,
    observed: &Observed,
) -> Option<String> {
    depends_on.iter().find_map(|name| {
        let waiting = |why: String| Some(format!("waiting for dependency {name}: {why}"));
        let Some(service) = observed.services.get(name) else {
            return waiting("it does not exist yet".to_owned());
        };
        if let Some(spec) = desired.services.get(name)
            && service.ownership.spec_hash.as_deref() != Some(&*spec.hash)
        {
            return waiting("its spec change is not rolled out yet".to_owned());
        }
        if service.update_status.as_ref().is_some_and(|u| {
            matches!(
                u.state,
                UpdateState::UPDATING | UpdateState::ROLLBACK_STARTED | UpdateState::PAUSED
            )
        }) {
            return waiting("a rolling update is under way".to_owned());
        }
        let live: Vec<_> = observed
            .tasks
            .iter()
            .filter(|t| t.service_id == service.id && t.desired_state.is(&TaskState::RUNNING))
            .collect();
        let running = live
            .iter()
            .filter(|t| t.state.is(&TaskState::RUNNING))
            .count() as u64;
        let expected = match service.definition.mode {
            Mode::Replicated { replicas } => replicas,
            Mode::Global => (live.len() as u64).max(1),
            // A job's tasks end by design: nothing must keep running for its dependents.
            Mode::ReplicatedJob { .. } | Mode::GlobalJob => 0,
        };
        (running < expected).then(|| {
            format!("waiting for dependency {name}: {running}/{expected} replicas running")
        })
    })
}

/// An owned service, other than `name`, recorded as depending on `name`: a removal waits until
/// it is gone (removal in reverse order).
fn remaining_dependent(name: &str, observed: &Observed) -> Option<String> {
    observed
        .services
        .values()
        .find(|s| s.definition.name != name && s.ownership.depends_on().iter().any(|d| d == name))
        .map(|s| {
            format!(
                "{} depends on it; it is removed after {} is gone",
                s.definition.name, s.definition.name
            )
        })
}

fn plan_by_kind(key: &ObjectKey, desired: &DesiredState, observed: &Observed) -> ObjectPlan {
    match key.kind {
        ObjectKind::Service => plan_service(
            key,
            desired.services.get(&key.name),
            observed.services.get(&key.name).map(Arc::as_ref),
            desired,
        ),
        ObjectKind::Network => plan_network(
            key,
            desired.networks.get(&key.name),
            observed.networks.get(&key.name),
            desired,
        ),
        ObjectKind::Config | ObjectKind::Secret => {
            crate::control::data_plan::plan_data(key, desired, observed)
        }
    }
}

pub(crate) fn conflict(key: &ObjectKey, reason: ConflictReason, message: String) -> ObjectPlan {
    ObjectPlan {
        action: None,
        conflict: Some(Conflict {
            key: key.clone(),
            reason,
            message,
        }),
    }
}

pub(crate) fn action(action: Action) -> ObjectPlan {
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
    if desired.partial {
        // Its spec may be in a file of the burst not read yet: nothing to do, nothing to
        // report; the whole read that follows decides.
        return Some(ObjectPlan::default());
    }
    if let Some(file) = ownership
        .source_file
        .as_ref()
        .filter(|f| desired.failed_files.contains(&***f))
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
            if let Some(held) = rollback_hold(key, desired, observed) {
                return held;
            }
            let (written, external) = apply_drift_policy(desired, observed);
            let note = (!external.is_empty()).then(|| Conflict {
                key: key.clone(),
                reason: ConflictReason::ExternallyManaged,
                message: format!(
                    "{} (driftPolicy.ignore: changed by someone else, left alone)",
                    external.join(", ")
                ),
            });
            let spec_changed = observed.ownership.spec_hash.as_deref() != Some(&*desired.hash)
                || observed.ownership.source_file.as_deref() != Some(&desired.source_file)
                || observed.ownership.policy != desired.policy.labels();
            let changes = field_changes(&*written.definition, &observed.definition, spec_changed);
            if !spec_changed && changes.is_empty() {
                return ObjectPlan {
                    action: None,
                    conflict: note,
                };
            }
            ObjectPlan {
                action: Some(Action::UpdateService {
                    id: observed.id.clone(),
                    version: observed.version,
                    desired: written,
                    changes,
                    cause: if spec_changed {
                        UpdateCause::SpecChanged
                    } else {
                        UpdateCause::Drift
                    },
                }),
                conflict: note,
            }
        }
    }
}

/// What the plan does about a service whose update swarm rolled back, `None` when there was no
/// rollback (or the spec changed since).
///
/// Swarm's rollback puts the previous spec back and forgets the failed one, so the operator
/// would see "spec differs" and write the failing spec again: a loop of update, failure and
/// rollback on the managers. Instead the rolled-back hash is marked on the service once the
/// rollback ended, and that spec is held (no write) until the spec changes; during the
/// rollback nothing is written at all.
fn rollback_hold(
    key: &ObjectKey,
    desired: &DesiredObject<ServiceDefinition>,
    observed: &ObservedService,
) -> Option<ObjectPlan> {
    let held = |hash: &str, reason: &str| {
        format!(
            "swarm rolled back spec {hash} ({reason}); held: edit the spec to try again, or to \
             retry the same spec remove the mark (docker service update --label-rm {} {})",
            crate::desired::definition::ROLLED_BACK_SPEC_LABEL,
            key.name
        )
    };
    if let Some(mark) = &observed.ownership.rolled_back
        && *mark.spec_hash == *desired.hash
    {
        return Some(conflict(
            key,
            ConflictReason::RolledBack,
            held(&mark.spec_hash, &mark.reason),
        ));
    }
    if observed.ownership.spec_hash.as_deref() == Some(&*desired.hash) {
        return None;
    }
    let update = observed.update_status.as_ref()?;
    match update.state {
        UpdateState::ROLLBACK_STARTED => Some(conflict(
            key,
            ConflictReason::RolledBack,
            format!(
                "swarm is rolling the update back ({}); nothing is written until it ends",
                update.message
            ),
        )),
        UpdateState::ROLLBACK_COMPLETED | UpdateState::ROLLBACK_PAUSED => {
            let mark = RolledBack {
                spec_hash: desired.hash.to_string(),
                reason: update.message.clone(),
            };
            let mut ownership = observed.ownership.clone();
            ownership.rolled_back = Some(Box::new(mark.clone()));
            Some(ObjectPlan {
                conflict: Some(Conflict {
                    key: key.clone(),
                    reason: ConflictReason::RolledBack,
                    message: held(&mark.spec_hash, &mark.reason),
                }),
                action: Some(Action::MarkRolledBack {
                    id: observed.id.clone(),
                    version: observed.version,
                    name: key.name.clone(),
                    current: Box::new((*observed.definition).clone()),
                    labels: ownership.to_labels(),
                    mark,
                }),
            })
        }
        UpdateState::EMPTY
        | UpdateState::UPDATING
        | UpdateState::PAUSED
        | UpdateState::COMPLETED => None,
    }
}

/// What to write for a service under its drift policy: the desired object with the swarm's
/// value kept for each ignored field that someone else changed (the spec's value recorded on
/// the service still matches the spec), and those fields described.
fn apply_drift_policy(
    desired: &DesiredObject<ServiceDefinition>,
    observed: &ObservedService,
) -> (DesiredObject<ServiceDefinition>, Vec<String>) {
    let mut written = desired.clone();
    let mut external = Vec::new();
    for field in &desired.policy.drift_ignore {
        let label = format!("{SPEC_VALUE_LABEL_PREFIX}{}", field.as_str());
        let recorded = observed.ownership.policy.get(&label);
        let spec_value = desired.policy.spec_values.get(field);
        // The spec's value moved since the last write: that is a spec change, applied. With no
        // record (the policy is new) the swarm's value is kept: that is what the policy is for.
        if recorded.is_some() && recorded != spec_value {
            continue;
        }
        let (Some(swarm_value), Some(spec_value)) =
            (drift_value(&observed.definition, *field), spec_value)
        else {
            continue;
        };
        if swarm_value == *spec_value {
            continue;
        }
        match field {
            DriftField::Replicas => {
                Arc::make_mut(&mut written.definition).mode = observed.definition.mode.clone();
            }
            DriftField::Image => {
                Arc::make_mut(&mut written.definition).image = observed.definition.image.clone();
            }
        }
        external.push(format!(
            "{}: {swarm_value} on the swarm, {spec_value} in the spec",
            field.as_str()
        ));
    }
    (written, external)
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
            let changes = field_changes(&*desired.definition, &observed.definition, false);
            if changes.is_empty() {
                return ObjectPlan::default();
            }
            let fields: Vec<String> = changes.iter().map(|c| c.describe(Values::Hidden)).collect();
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

/// Renders a plan the way `swarm-operator diff` prints it: env values only with
/// [`Values::Shown`] (`diff --show-values`).
pub struct PlanDisplay<'a>(pub &'a Plan, pub Values);

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
                            writeln!(f, "    {}", change.describe(self.1))?;
                        }
                    }
                    if changes.is_empty() {
                        writeln!(f, "    (operator labels only)")?;
                    }
                }
                Action::MarkRolledBack { name, mark, .. } => writeln!(
                    f,
                    "~ service/{name} (mark spec {} as rolled back; tasks untouched)",
                    mark.spec_hash
                )?,
                Action::RemoveService { name, .. } => writeln!(f, "- service/{name} (remove)")?,
                Action::RemoveNetwork { name, .. } => writeln!(f, "- network/{name} (remove)")?,
                // The name carries the content's hash prefix, never the content.
                Action::CreateData { desired } => {
                    writeln!(f, "+ {}/{} (create)", desired.kind, desired.name)?;
                }
                Action::RemoveData { kind, name, .. } => {
                    writeln!(f, "- {kind}/{name} (no longer used)")?;
                }
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
    use crate::desired::definition::Mode;
    use crate::desired::definition::tests::{
        docker_default_update_policy, sample_network, sample_service,
    };
    use crate::docker::{ObservedTask, Ownership};

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
                Arc::new(ObservedService {
                    id: format!("id-{name}"),
                    version: 10,
                    definition: Arc::clone(&d.definition),
                    ownership: Ownership::from_labels(&d.owner_labels()),
                    virtual_ips: vec![],
                    update_status: None,
                    revision: Default::default(),
                }),
            );
        }
        for (name, d) in &desired.networks {
            let mut definition = (*d.definition).clone();
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
        Arc::make_mut(&mut observed.service_mut("quote").unwrap().definition).mode =
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
        Arc::make_mut(&mut svc.definition).image = "goblog/quote-service:v2".into();
        svc.hash = crate::desired::definition::definition_hash(&svc.definition).into();
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
        Arc::make_mut(&mut observed.service_mut("quote").unwrap().definition).update_config =
            Some(Box::new(docker_default_update_policy()));
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

    /// The first files of a burst create and update; an owned object they do not declare may
    /// be in a file not read yet: no removal, and no conflict to report either.
    #[test]
    fn a_first_read_of_a_burst_creates_and_updates_but_removes_nothing() {
        let before = state(
            &[("quote", "a.yaml"), ("account", "b.yaml")],
            &[("net", "a.yaml")],
        );
        let observed = converged(&before);
        let mut first = state(&[("account", "b.yaml"), ("new", "c.yaml")], &[]);
        Arc::make_mut(&mut first.services.get_mut("account").unwrap().definition).image =
            "account:2".into();
        first.partial = true;
        let plan_first = plan(&first, &observed);
        let keys: Vec<String> = plan_first
            .actions
            .iter()
            .map(|a| a.key().to_string())
            .collect();
        assert_eq!(keys, ["service/new", "service/account"], "{plan_first:?}");
        assert!(plan_first.conflicts.is_empty(), "{plan_first:?}");
        first.partial = false;
        let removals = plan(&first, &observed)
            .actions
            .iter()
            .filter(|a| {
                matches!(
                    a,
                    Action::RemoveService { .. } | Action::RemoveNetwork { .. }
                )
            })
            .count();
        assert_eq!(
            removals, 2,
            "the whole read removes what it does not declare"
        );
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
        for service in observed.services.values_mut().map(Arc::make_mut) {
            service.ownership = Ownership::default();
            Arc::make_mut(&mut service.definition).mode = Mode::Replicated { replicas: 7 };
        }
        observed.services.insert(
            "someone-elses".into(),
            Arc::new(ObservedService {
                ownership: Ownership::default(),
                ..(*observed.services["quote"]).clone()
            }),
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
        Arc::make_mut(&mut observed.service_mut("quote").unwrap().definition).mode =
            Mode::Replicated { replicas: 1 };
        let text = PlanDisplay(&plan(&desired, &observed), Values::Hidden).to_string();
        assert_eq!(
            text,
            "~ service/quote (update: drift)\n    mode.replicated.replicas: 1 → 3\n"
        );
    }

    fn suspend(desired: &mut DesiredState, name: &str) {
        desired.services.get_mut(name).unwrap().policy.suspended = true;
    }

    #[test]
    fn a_suspended_service_is_neither_created_updated_nor_removed() {
        let mut desired = state(&[("quote", "a.yaml"), ("new", "a.yaml")], &[]);
        let mut observed = converged(&desired);
        observed.services.remove("new");
        Arc::make_mut(&mut observed.service_mut("quote").unwrap().definition).mode =
            Mode::Replicated { replicas: 1 };
        suspend(&mut desired, "quote");
        suspend(&mut desired, "new");
        let p = plan(&desired, &observed);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(p.conflicts.len(), 2);
        assert!(
            p.conflicts
                .iter()
                .all(|c| c.reason == ConflictReason::Suspended)
        );
        let text = PlanDisplay(&p, Values::Hidden).to_string();
        assert!(
            text.contains("! service/quote: suspended by the annotation swarm-operator.io/suspend: \"true\" in a.yaml; remove it to reconcile again (held: update: drift)"),
            "{text}"
        );
        assert!(
            text.contains("service/new") && text.contains("(held: create)"),
            "{text}"
        );
    }

    #[test]
    fn a_suspend_file_holds_everything_prune_included() {
        let before = state(
            &[("quote", "a.yaml"), ("account", "b.yaml")],
            &[("net", "a.yaml")],
        );
        let observed = converged(&before);
        let mut after = state(&[("account", "b.yaml")], &[]);
        after.all_suspended = true;
        let p = plan(&after, &observed);
        assert!(p.is_empty(), "{p:?}");
        // In sync objects are reported too, so that the status says why nothing moves.
        let keys: Vec<String> = p.conflicts.iter().map(|c| c.key.to_string()).collect();
        assert_eq!(keys, ["network/net", "service/account", "service/quote"]);
        assert!(p.conflicts[0].message.contains(".suspend file"));
        after.all_suspended = false;
        assert_eq!(
            plan(&after, &observed).actions.len(),
            2,
            "removals once resumed"
        );
    }

    fn ignore(desired: &mut DesiredState, name: &str, fields: &[DriftField]) {
        let d = desired.services.get_mut(name).unwrap();
        d.policy.drift_ignore = fields.iter().copied().collect();
        d.policy.spec_values = fields
            .iter()
            .filter_map(|f| Some((*f, drift_value(&d.definition, *f)?)))
            .collect();
    }

    fn scaled(observed: &mut Observed, name: &str, replicas: u64) {
        Arc::make_mut(&mut observed.service_mut(name).unwrap().definition).mode =
            Mode::Replicated { replicas };
    }

    #[test]
    fn ignored_replicas_scaled_by_someone_else_are_left_alone() {
        let mut desired = state(&[("quote", "a.yaml")], &[]);
        ignore(&mut desired, "quote", &[DriftField::Replicas]);
        let mut observed = converged(&desired);
        assert!(
            observed.services["quote"]
                .ownership
                .policy
                .contains_key("swarm-operator.io/spec-value.replicas"),
            "the spec value is recorded on the service"
        );
        scaled(&mut observed, "quote", 0);
        let p = plan(&desired, &observed);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(p.conflicts[0].reason, ConflictReason::ExternallyManaged);
        assert!(
            p.conflicts[0]
                .message
                .starts_with("replicas: 0 on the swarm, 3 in the spec"),
            "{}",
            p.conflicts[0].message
        );
        // Without the policy the same difference is drift, corrected.
        let plain = state(&[("quote", "a.yaml")], &[]);
        let mut observed_plain = converged(&plain);
        scaled(&mut observed_plain, "quote", 0);
        assert!(matches!(
            plan(&plain, &observed_plain).actions[..],
            [Action::UpdateService {
                cause: UpdateCause::Drift,
                ..
            }]
        ));
    }

    #[test]
    fn other_spec_changes_keep_the_external_replicas_and_a_new_spec_value_wins() {
        let mut desired = state(&[("quote", "a.yaml")], &[]);
        ignore(&mut desired, "quote", &[DriftField::Replicas]);
        let mut observed = converged(&desired);
        scaled(&mut observed, "quote", 7);
        // An image change in the spec: written, with the swarm's 7 replicas kept.
        let mut edited = desired.clone();
        let svc = edited.services.get_mut("quote").unwrap();
        Arc::make_mut(&mut svc.definition).image = "goblog/quote-service:v2".into();
        svc.hash = crate::desired::definition::definition_hash(&svc.definition).into();
        let p = plan(&edited, &observed);
        match &p.actions[..] {
            [
                Action::UpdateService {
                    desired,
                    changes,
                    cause: UpdateCause::SpecChanged,
                    ..
                },
            ] => {
                assert_eq!(desired.definition.image, "goblog/quote-service:v2");
                assert_eq!(desired.definition.mode, Mode::Replicated { replicas: 7 });
                let paths: Vec<&str> = changes.iter().map(|c| c.path.as_str()).collect();
                assert_eq!(paths, ["image"]);
            }
            other => panic!("expected one update, got {other:?}"),
        }
        // The spec's replicas change 3 → 5: the new spec value is applied.
        let mut rescaled = desired.clone();
        let svc = rescaled.services.get_mut("quote").unwrap();
        Arc::make_mut(&mut svc.definition).mode = Mode::Replicated { replicas: 5 };
        svc.hash = crate::desired::definition::definition_hash(&svc.definition).into();
        ignore(&mut rescaled, "quote", &[DriftField::Replicas]);
        let p = plan(&rescaled, &observed);
        match &p.actions[..] {
            [Action::UpdateService { desired, .. }] => {
                assert_eq!(desired.definition.mode, Mode::Replicated { replicas: 5 });
                assert_eq!(
                    desired.owner_labels()["swarm-operator.io/spec-value.replicas"],
                    "5"
                );
            }
            other => panic!("expected one update, got {other:?}"),
        }
        assert!(p.conflicts.is_empty(), "{p:?}");
    }

    #[test]
    fn an_ignored_image_changed_by_an_updater_is_left_alone() {
        let mut desired = state(&[("quote", "a.yaml")], &[]);
        ignore(&mut desired, "quote", &[DriftField::Image]);
        let mut observed = converged(&desired);
        Arc::make_mut(&mut observed.service_mut("quote").unwrap().definition).image =
            "quote:sha-updated".into();
        let p = plan(&desired, &observed);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(p.conflicts[0].reason, ConflictReason::ExternallyManaged);
    }

    /// `quote` as swarm left it after rolling back an update to `desired`'s spec: the old
    /// spec is back, with `state`.
    fn rolled_back(desired: &DesiredState, state: UpdateState) -> Observed {
        let mut observed = converged(desired);
        let service = observed.service_mut("quote").unwrap();
        service.ownership.spec_hash = Some("before".into());
        Arc::make_mut(&mut service.definition).image = "before:1".into();
        service.update_status = Some(Box::new(crate::docker::UpdateStatus {
            state,
            message: "update rolled back due to failure".into(),
            started_at: None,
        }));
        observed
    }

    #[test]
    fn a_rolled_back_spec_is_marked_once_then_held() {
        let desired = state(&[("quote", "quote.yaml")], &[]);
        let observed = rolled_back(&desired, UpdateState::ROLLBACK_COMPLETED);
        let plan = plan_object(&ObjectKey::service("quote"), &desired, &observed);
        let Some(Action::MarkRolledBack {
            current,
            labels,
            mark,
            ..
        }) = &plan.action
        else {
            panic!("expected the mark, got {plan:?}");
        };
        // The service is written as it is: the old spec, its own labels, plus the mark.
        assert_eq!(current.image, "before:1");
        assert_eq!(
            labels[crate::desired::definition::SPEC_HASH_LABEL],
            "before"
        );
        assert_eq!(*mark.spec_hash, *desired.services["quote"].hash);
        assert_eq!(plan.conflict.unwrap().reason, ConflictReason::RolledBack);

        // Marked: held, whatever swarm's update status says now.
        let mut marked = rolled_back(&desired, UpdateState::ROLLBACK_COMPLETED);
        let service = marked.service_mut("quote").unwrap();
        service.ownership.rolled_back = Some(Box::new(mark.clone()));
        service.update_status = None;
        let plan = plan_object(&ObjectKey::service("quote"), &desired, &marked);
        assert_eq!(plan.action, None);
        let conflict = plan.conflict.unwrap();
        assert_eq!(conflict.reason, ConflictReason::RolledBack);
        assert!(
            conflict.message.contains("--label-rm"),
            "{}",
            conflict.message
        );

        // A new spec is written (without the mark).
        let mut edited = desired;
        let svc = edited.services.get_mut("quote").unwrap();
        Arc::make_mut(&mut svc.definition).image = "fixed:2".into();
        svc.hash = crate::desired::definition::definition_hash(&svc.definition).into();
        let plan = plan_object(&ObjectKey::service("quote"), &edited, &marked);
        assert!(
            matches!(
                plan.action,
                Some(Action::UpdateService {
                    cause: UpdateCause::SpecChanged,
                    ..
                })
            ),
            "{plan:?}"
        );
    }

    #[test]
    fn nothing_is_written_while_swarm_rolls_back() {
        let desired = state(&[("quote", "quote.yaml")], &[]);
        let observed = rolled_back(&desired, UpdateState::ROLLBACK_STARTED);
        let plan = plan_object(&ObjectKey::service("quote"), &desired, &observed);
        assert_eq!(plan.action, None);
        assert_eq!(plan.conflict.unwrap().reason, ConflictReason::RolledBack);
        // An update that swarm merely paused is no rollback: the plan is as before.
        let paused = rolled_back(&desired, UpdateState::PAUSED);
        let plan = plan_object(&ObjectKey::service("quote"), &desired, &paused);
        assert!(
            matches!(plan.action, Some(Action::UpdateService { .. })),
            "{plan:?}"
        );
    }

    fn task(service: &str, state: &str) -> ObservedTask {
        ObservedTask::for_test(
            format!("t-{service}-{state}"),
            format!("id-{service}"),
            state,
        )
    }

    #[test]
    fn a_dependent_is_created_only_once_its_dependency_is_ready() {
        let mut desired = state(&[("db", "a.yaml"), ("api", "a.yaml")], &[]);
        desired.services.get_mut("api").unwrap().policy.depends_on = vec!["db".into()];
        // Nothing exists: db is created, api waits naming db.
        let p = plan(&desired, &Observed::default());
        let keys: Vec<String> = p.actions.iter().map(|a| a.key().to_string()).collect();
        assert_eq!(keys, ["service/db"]);
        assert_eq!(
            p.conflicts[0].reason,
            ConflictReason::WaitingForDependencies
        );
        assert_eq!(
            p.conflicts[0].message,
            "waiting for dependency db: it does not exist yet"
        );
        // db exists with 2 of 3 replicas running: still waiting.
        let mut observed = converged(&desired);
        observed.services.remove("api");
        observed.tasks = Arc::new(vec![
            task("db", "running"),
            task("db", "running"),
            task("db", "starting"),
        ]);
        let p = plan(&desired, &observed);
        assert!(p.is_empty(), "{p:?}");
        assert!(
            p.conflicts[0].message.ends_with("db: 2/3 replicas running"),
            "{p:?}"
        );
        // All running: api is created.
        Arc::make_mut(&mut observed.tasks)[2] = task("db", "running");
        let p = plan(&desired, &observed);
        assert!(
            matches!(&p.actions[..], [Action::CreateService { desired }] if desired.definition.name == "api")
        );
        if let Action::CreateService { desired } = &p.actions[0] {
            assert_eq!(desired.owner_labels()["swarm-operator.io/depends-on"], "db");
        }
    }

    #[test]
    fn a_dependent_spec_change_waits_for_the_dependency_rollout() {
        let mut desired = state(&[("db", "a.yaml"), ("api", "a.yaml")], &[]);
        desired.services.get_mut("api").unwrap().policy.depends_on = vec!["db".into()];
        let observed = converged(&desired);
        let mut edited = desired.clone();
        for name in ["db", "api"] {
            let svc = edited.services.get_mut(name).unwrap();
            Arc::make_mut(&mut svc.definition).image = "v2".into();
            svc.hash = crate::desired::definition::definition_hash(&svc.definition).into();
        }
        let p = plan(&edited, &observed);
        let keys: Vec<String> = p.actions.iter().map(|a| a.key().to_string()).collect();
        assert_eq!(keys, ["service/db"]);
        assert_eq!(
            p.conflicts[0].message,
            "waiting for dependency db: its spec change is not rolled out yet"
        );
    }

    #[test]
    fn removal_goes_in_reverse_dependency_order() {
        let mut before = state(&[("db", "a.yaml"), ("api", "a.yaml")], &[]);
        before.services.get_mut("api").unwrap().policy.depends_on = vec!["db".into()];
        let mut observed = converged(&before);
        let after = DesiredState {
            prune_allowed: true,
            ..Default::default()
        };
        let p = plan(&after, &observed);
        let keys: Vec<String> = p.actions.iter().map(|a| a.key().to_string()).collect();
        assert_eq!(keys, ["service/api"], "db waits for api: {p:?}");
        assert_eq!(p.conflicts[0].key, ObjectKey::service("db"));
        assert_eq!(
            p.conflicts[0].reason,
            ConflictReason::WaitingForDependencies
        );
        observed.services.remove("api");
        assert_eq!(plan(&after, &observed).actions.len(), 1);
    }
}
