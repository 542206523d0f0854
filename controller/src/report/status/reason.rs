//! The closed set of condition types, statuses and reasons the status file reports.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::control::plan::ConflictReason;

/// Which aspect of an object a condition describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConditionType {
    /// The object is there and serving (all expected replicas run, the network exists).
    Ready,
    /// Something is under way (creating, scaling, rolling out, waiting, removing).
    Progressing,
    /// Something needs the user's attention.
    Degraded,
}

/// Whether a condition holds, spelled as Kubernetes does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// It does not.
    False,
}

impl From<bool> for ConditionStatus {
    fn from(holds: bool) -> Self {
        if holds {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        }
    }
}

/// Why a condition has its status: a machine-readable CamelCase word whose [`fmt::Display`]
/// (and JSON form) is the wire string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConditionReason {
    /// Ready (services): every expected replica runs.
    AllReplicasRunning,
    /// Ready (networks): the network exists.
    Exists,
    /// Ready: fewer replicas run than expected, or an update is under way.
    ReplicasUnavailable,
    /// Ready: enough replicas run, but not all of them run the current spec (a rolling update
    /// under way or rolled back, or the spec not written yet).
    ReplicasOutdated,
    /// Ready: the object does not exist yet.
    NotCreated,
    /// Ready (networks): its spec is gone, so the network is being removed.
    SpecRemoved,
    /// Ready and Degraded: an object of that name exists that the operator does not own.
    NotOwned,
    /// Progressing: swarm is rolling out a new spec.
    RollingUpdate,
    /// Progressing: swarm is starting or stopping replicas.
    Scaling,
    /// Progressing: the operator is creating the object.
    Creating,
    /// Progressing (networks): the operator is removing the network.
    Removing,
    /// Progressing (networks): the removal waits for the services still attached.
    WaitingForUsers,
    /// Progressing: nothing is under way.
    Converged,
    /// Degraded: swarm paused a rolling update after failures.
    UpdatePaused,
    /// Degraded: swarm paused a rollback after failures.
    RollbackPaused,
    /// Degraded: swarm rolled an update back.
    RolledBack,
    /// Degraded: tasks fail and fewer replicas run than expected.
    TasksFailing,
    /// Degraded: the rollout did not finish within `spec.progressDeadline`.
    ProgressDeadlineExceeded,
    /// Degraded: the operator's last write failed.
    ReconcileError,
    /// Degraded: a network's configuration differs from its spec (networks are immutable).
    NetworkImmutable,
    /// Degraded: the object's spec file fails to load, so the object is held as it is.
    SpecFileFailed,
    /// Degraded: the spec directory is empty, so nothing is pruned.
    PruneWithheld,
    /// Degraded: a published port is held by another service.
    PortConflict,
    /// Degraded: the service can not be written until a network it uses exists.
    WaitingForNetwork,
    /// Degraded: no problem found.
    AsExpected,
    /// Progressing (False): the object or the spec directory is suspended; nothing is written.
    Suspended,
    /// Degraded (False): a field under `driftPolicy.ignore` was changed by someone else and is
    /// left as it is.
    ExternallyManaged,
    /// Progressing: the service waits for a `dependsOn` service to be ready (or, for a
    /// removal, for a dependent to be gone).
    WaitingForDependencies,
    /// Ready (jobs): the job's current run completed.
    Completed,
    /// Ready (False) and Progressing (jobs): the job's current run is under way.
    JobRunning,
}

impl ConditionReason {
    /// Every reason, for exhaustive tests.
    pub const ALL: [ConditionReason; 30] = [
        ConditionReason::AllReplicasRunning,
        ConditionReason::Exists,
        ConditionReason::ReplicasUnavailable,
        ConditionReason::ReplicasOutdated,
        ConditionReason::NotCreated,
        ConditionReason::SpecRemoved,
        ConditionReason::NotOwned,
        ConditionReason::RollingUpdate,
        ConditionReason::Scaling,
        ConditionReason::Creating,
        ConditionReason::Removing,
        ConditionReason::WaitingForUsers,
        ConditionReason::Converged,
        ConditionReason::UpdatePaused,
        ConditionReason::RollbackPaused,
        ConditionReason::RolledBack,
        ConditionReason::TasksFailing,
        ConditionReason::ProgressDeadlineExceeded,
        ConditionReason::ReconcileError,
        ConditionReason::NetworkImmutable,
        ConditionReason::SpecFileFailed,
        ConditionReason::PruneWithheld,
        ConditionReason::PortConflict,
        ConditionReason::WaitingForNetwork,
        ConditionReason::AsExpected,
        ConditionReason::Suspended,
        ConditionReason::ExternallyManaged,
        ConditionReason::WaitingForDependencies,
        ConditionReason::Completed,
        ConditionReason::JobRunning,
    ];

    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionReason::AllReplicasRunning => "AllReplicasRunning",
            ConditionReason::Exists => "Exists",
            ConditionReason::ReplicasUnavailable => "ReplicasUnavailable",
            ConditionReason::ReplicasOutdated => "ReplicasOutdated",
            ConditionReason::NotCreated => "NotCreated",
            ConditionReason::SpecRemoved => "SpecRemoved",
            ConditionReason::NotOwned => "NotOwned",
            ConditionReason::RollingUpdate => "RollingUpdate",
            ConditionReason::Scaling => "Scaling",
            ConditionReason::Creating => "Creating",
            ConditionReason::Removing => "Removing",
            ConditionReason::WaitingForUsers => "WaitingForUsers",
            ConditionReason::Converged => "Converged",
            ConditionReason::UpdatePaused => "UpdatePaused",
            ConditionReason::RollbackPaused => "RollbackPaused",
            ConditionReason::RolledBack => "RolledBack",
            ConditionReason::TasksFailing => "TasksFailing",
            ConditionReason::ProgressDeadlineExceeded => "ProgressDeadlineExceeded",
            ConditionReason::ReconcileError => "ReconcileError",
            ConditionReason::NetworkImmutable => "NetworkImmutable",
            ConditionReason::SpecFileFailed => "SpecFileFailed",
            ConditionReason::PruneWithheld => "PruneWithheld",
            ConditionReason::PortConflict => "PortConflict",
            ConditionReason::WaitingForNetwork => "WaitingForNetwork",
            ConditionReason::AsExpected => "AsExpected",
            ConditionReason::Suspended => "Suspended",
            ConditionReason::ExternallyManaged => "ExternallyManaged",
            ConditionReason::WaitingForDependencies => "WaitingForDependencies",
            ConditionReason::Completed => "Completed",
            ConditionReason::JobRunning => "JobRunning",
        }
    }

    /// The conditions (type and status) this reason explains.
    pub fn explains(self) -> &'static [(ConditionType, ConditionStatus)] {
        use ConditionStatus::{False, True};
        use ConditionType::{Degraded, Progressing, Ready};
        match self {
            ConditionReason::AllReplicasRunning
            | ConditionReason::Exists
            | ConditionReason::Completed => &[(Ready, True)],
            ConditionReason::JobRunning => &[(Ready, False), (Progressing, True)],
            ConditionReason::ReplicasUnavailable
            | ConditionReason::ReplicasOutdated
            | ConditionReason::NotCreated
            | ConditionReason::SpecRemoved => &[(Ready, False)],
            ConditionReason::NotOwned => &[(Ready, False), (Degraded, True)],
            ConditionReason::RollingUpdate
            | ConditionReason::Scaling
            | ConditionReason::Creating
            | ConditionReason::Removing
            | ConditionReason::WaitingForUsers
            | ConditionReason::WaitingForNetwork
            | ConditionReason::WaitingForDependencies => &[(Progressing, True)],
            ConditionReason::Converged | ConditionReason::Suspended => &[(Progressing, False)],
            ConditionReason::UpdatePaused
            | ConditionReason::RollbackPaused
            | ConditionReason::RolledBack
            | ConditionReason::TasksFailing
            | ConditionReason::ProgressDeadlineExceeded
            | ConditionReason::ReconcileError
            | ConditionReason::NetworkImmutable
            | ConditionReason::SpecFileFailed
            | ConditionReason::PruneWithheld
            | ConditionReason::PortConflict => &[(Degraded, True)],
            ConditionReason::AsExpected | ConditionReason::ExternallyManaged => {
                &[(Degraded, False)]
            }
        }
    }
}

impl fmt::Display for ConditionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&ConflictReason> for ConditionReason {
    fn from(reason: &ConflictReason) -> Self {
        match reason {
            ConflictReason::NotOwned => ConditionReason::NotOwned,
            ConflictReason::NetworkImmutable => ConditionReason::NetworkImmutable,
            ConflictReason::SpecFileFailed => ConditionReason::SpecFileFailed,
            ConflictReason::PruneWithheld => ConditionReason::PruneWithheld,
            ConflictReason::Suspended => ConditionReason::Suspended,
            ConflictReason::ExternallyManaged => ConditionReason::ExternallyManaged,
            ConflictReason::WaitingForDependencies => ConditionReason::WaitingForDependencies,
            ConflictReason::RolledBack => ConditionReason::RolledBack,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ConditionStatus::{False, True};
    use super::ConditionType::{Degraded, Progressing, Ready};
    use super::*;

    /// A condition: its type and status.
    type Explained = &'static [(ConditionType, ConditionStatus)];

    /// Every reason with its wire string and the conditions it explains, written out by hand:
    /// the status file's readers (dashboards, scripts, the e2e tests) match on these strings.
    #[rustfmt::skip]
    const TABLE: &[(ConditionReason, &str, Explained)] = &[
        (ConditionReason::AllReplicasRunning, "AllReplicasRunning", &[(Ready, True)]),
        (ConditionReason::Exists, "Exists", &[(Ready, True)]),
        (ConditionReason::ReplicasUnavailable, "ReplicasUnavailable", &[(Ready, False)]),
        (ConditionReason::ReplicasOutdated, "ReplicasOutdated", &[(Ready, False)]),
        (ConditionReason::NotCreated, "NotCreated", &[(Ready, False)]),
        (ConditionReason::SpecRemoved, "SpecRemoved", &[(Ready, False)]),
        (ConditionReason::NotOwned, "NotOwned", &[(Ready, False), (Degraded, True)]),
        (ConditionReason::RollingUpdate, "RollingUpdate", &[(Progressing, True)]),
        (ConditionReason::Scaling, "Scaling", &[(Progressing, True)]),
        (ConditionReason::Creating, "Creating", &[(Progressing, True)]),
        (ConditionReason::Removing, "Removing", &[(Progressing, True)]),
        (ConditionReason::WaitingForUsers, "WaitingForUsers", &[(Progressing, True)]),
        (ConditionReason::Converged, "Converged", &[(Progressing, False)]),
        (ConditionReason::UpdatePaused, "UpdatePaused", &[(Degraded, True)]),
        (ConditionReason::RollbackPaused, "RollbackPaused", &[(Degraded, True)]),
        (ConditionReason::RolledBack, "RolledBack", &[(Degraded, True)]),
        (ConditionReason::TasksFailing, "TasksFailing", &[(Degraded, True)]),
        (ConditionReason::ProgressDeadlineExceeded, "ProgressDeadlineExceeded", &[(Degraded, True)]),
        (ConditionReason::ReconcileError, "ReconcileError", &[(Degraded, True)]),
        (ConditionReason::NetworkImmutable, "NetworkImmutable", &[(Degraded, True)]),
        (ConditionReason::SpecFileFailed, "SpecFileFailed", &[(Degraded, True)]),
        (ConditionReason::PruneWithheld, "PruneWithheld", &[(Degraded, True)]),
        (ConditionReason::PortConflict, "PortConflict", &[(Degraded, True)]),
        (ConditionReason::WaitingForNetwork, "WaitingForNetwork", &[(Progressing, True)]),
        (ConditionReason::AsExpected, "AsExpected", &[(Degraded, False)]),
        (ConditionReason::Suspended, "Suspended", &[(Progressing, False)]),
        (ConditionReason::ExternallyManaged, "ExternallyManaged", &[(Degraded, False)]),
        (ConditionReason::WaitingForDependencies, "WaitingForDependencies", &[(Progressing, True)]),
        (ConditionReason::Completed, "Completed", &[(Ready, True)]),
        (ConditionReason::JobRunning, "JobRunning", &[(Ready, False), (Progressing, True)]),
    ];

    #[test]
    fn every_reason_has_its_wire_string_and_conditions() {
        assert_eq!(TABLE.len(), ConditionReason::ALL.len());
        for (reason, (listed, wire, explains)) in ConditionReason::ALL.iter().zip(TABLE) {
            assert_eq!(
                reason, listed,
                "ALL and the table list reasons in the same order"
            );
            assert_eq!(reason.to_string(), *wire);
            assert_eq!(serde_json::to_value(reason).unwrap(), *wire);
            let read: ConditionReason = serde_json::from_value((*wire).into()).unwrap();
            assert_eq!(read, *reason);
            assert_eq!(reason.explains(), *explains, "{wire}");
        }
    }

    #[test]
    fn every_condition_has_a_reason_for_each_status() {
        for kind in [Ready, Progressing, Degraded] {
            for status in [True, False] {
                assert!(
                    ConditionReason::ALL
                        .iter()
                        .any(|r| r.explains().contains(&(kind, status))),
                    "no reason explains {kind:?}={status:?}"
                );
            }
        }
    }

    #[test]
    fn types_and_statuses_use_the_kubernetes_spelling() {
        assert_eq!(serde_json::to_value(Progressing).unwrap(), "Progressing");
        assert_eq!(serde_json::to_value(True).unwrap(), "True");
        assert_eq!(ConditionStatus::from(false), False);
    }

    #[test]
    fn every_plan_refusal_maps_to_a_degraded_reason() {
        for conflict in [
            ConflictReason::NotOwned,
            ConflictReason::NetworkImmutable,
            ConflictReason::SpecFileFailed,
            ConflictReason::PruneWithheld,
            ConflictReason::RolledBack,
        ] {
            let reason = ConditionReason::from(&conflict);
            assert!(reason.explains().contains(&(Degraded, True)), "{reason}");
        }
    }

    #[test]
    fn policy_notes_are_not_problems() {
        // Holding an object on purpose is not a degradation: the user asked for it.
        for (conflict, condition) in [
            (ConflictReason::Suspended, (Progressing, False)),
            (ConflictReason::WaitingForDependencies, (Progressing, True)),
            (ConflictReason::ExternallyManaged, (Degraded, False)),
        ] {
            let reason = ConditionReason::from(&conflict);
            assert_eq!(reason.explains(), [condition], "{reason}");
        }
    }
}
