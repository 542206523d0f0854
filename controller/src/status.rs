//! The status file: what the operator found (replicas, conditions, virtual IPs, every task's
//! address) built purely from the shared view, and written atomically.

mod reason;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::definition::Mode;
use crate::docker::{
    ObservedService, ObservedTask, TaskAddress, TaskState, UpdateState, VirtualIp,
};
use crate::plan::{Conflict, ConflictReason, ObjectKey};
use crate::spec::DriftField;

use crate::spec::SpecError;
use crate::world::{Blocker, WorldState};
pub use reason::{ConditionReason, ConditionStatus, ConditionType};

/// Errors writing the status file.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// Writing, syncing or renaming the file failed.
    #[error("writing status file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The whole status file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusFile {
    /// When it was written (RFC 3339, UTC).
    pub generated_at: String,
    /// Per desired or managed service.
    pub services: BTreeMap<String, ServiceStatus>,
    /// Per desired or managed network.
    #[serde(default)]
    pub networks: BTreeMap<String, NetworkStatus>,
    /// Problems in the spec directory.
    pub errors: Vec<StatusSpecError>,
}

/// A spec problem as the status file shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusSpecError {
    /// File name relative to the spec directory.
    pub file: String,
    /// 1-based line.
    pub line: Option<usize>,
    /// 1-based column.
    pub column: Option<usize>,
    /// Field path, empty when not about one field.
    pub field: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

/// One service's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    /// Replicas the spec asks for (`null` for global services).
    pub desired_replicas: Option<u64>,
    /// Tasks running now.
    pub running_replicas: u64,
    /// `Ready`, `Progressing`, `Degraded`.
    pub conditions: Vec<Condition>,
    /// Virtual IPs per network (VIP mode).
    #[serde(rename = "virtualIPs")]
    pub virtual_ips: Vec<VirtualIp>,
    /// Every task that should be running, with its addresses.
    pub endpoints: Vec<Endpoint>,
    /// The last error writing this service, or why it is left alone.
    pub last_error: Option<String>,
}

/// One network's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkStatus {
    /// Its id, once it exists.
    pub id: Option<String>,
    /// `Ready`, `Progressing`, `Degraded`.
    pub conditions: Vec<Condition>,
    /// The last error writing this network, or why it is left alone.
    pub last_error: Option<String>,
}

/// A Kubernetes-style condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`, `Progressing` or `Degraded`.
    #[serde(rename = "type")]
    pub kind: ConditionType,
    /// `True` or `False`.
    pub status: ConditionStatus,
    /// CamelCase machine-readable reason.
    pub reason: ConditionReason,
    /// For humans.
    pub message: String,
    /// When `status` last changed (RFC 3339).
    pub last_transition_time: String,
}

/// One task of a service, where it runs and how to reach it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Task id.
    pub task: String,
    /// Replica slot (replicated services).
    pub slot: Option<u64>,
    /// Node hostname (or id when unknown).
    pub node: Option<String>,
    /// Task state: `running`, `starting`, `preparing`, …
    pub state: String,
    /// Address per network.
    pub addresses: Vec<StatusAddress>,
}

/// An address on one network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusAddress {
    /// Network name.
    pub network: String,
    /// IP address.
    pub ip: String,
}

impl From<&TaskAddress> for StatusAddress {
    fn from(a: &TaskAddress) -> Self {
        StatusAddress {
            network: a.network.clone(),
            ip: a.ip.clone(),
        }
    }
}

/// Builds the status from the shared view. `previous` keeps condition transition times;
/// `now` is the RFC 3339 timestamp to use for new transitions and `generatedAt`.
pub fn build(
    world: &WorldState,
    spec_dir: &Path,
    previous: Option<&StatusFile>,
    now: &str,
) -> StatusFile {
    let mut names: Vec<&String> = world.desired.services.keys().collect();
    names.extend(
        world
            .observed
            .services
            .values()
            .filter(|s| s.ownership.is_owned_by(&world.desired.instance))
            .map(|s| &s.definition.name),
    );
    names.sort();
    names.dedup();
    let services = names
        .into_iter()
        .map(|name| {
            let previous = previous.and_then(|p| p.services.get(name));
            (name.clone(), service_status(world, name, previous, now))
        })
        .collect();
    let mut network_names: Vec<&String> = world.desired.networks.keys().collect();
    network_names.extend(
        world
            .observed
            .networks
            .values()
            .filter(|n| n.ownership.is_owned_by(&world.desired.instance))
            .map(|n| &n.definition.name),
    );
    network_names.sort();
    network_names.dedup();
    let networks = network_names
        .into_iter()
        .map(|name| {
            let previous = previous.and_then(|p| p.networks.get(name));
            (name.clone(), network_status(world, name, previous, now))
        })
        .collect();
    StatusFile {
        generated_at: now.to_owned(),
        services,
        networks,
        errors: world
            .desired
            .errors
            .iter()
            .map(|e| status_error(e, spec_dir))
            .collect(),
    }
}

fn status_error(error: &SpecError, spec_dir: &Path) -> StatusSpecError {
    StatusSpecError {
        file: error
            .file
            .strip_prefix(spec_dir)
            .unwrap_or(&error.file)
            .display()
            .to_string(),
        line: error.line,
        column: error.column,
        field: error.field.clone(),
        message: error.message.clone(),
    }
}

/// Tasks swarm wants running, i.e. the service's current replicas (old ones shut down and
/// failed ones are history).
fn live_tasks<'a>(
    service: &'a ObservedService,
    tasks: &'a [ObservedTask],
) -> impl Iterator<Item = &'a ObservedTask> {
    tasks
        .iter()
        .filter(move |t| t.service_id == service.id && t.desired_state.is(&TaskState::RUNNING))
}

fn service_status(
    world: &WorldState,
    name: &str,
    previous: Option<&ServiceStatus>,
    now: &str,
) -> ServiceStatus {
    let desired = world.desired.services.get(name);
    let observed = world.observed.services.get(name);
    let outcome = world.outcomes.get(&ObjectKey::service(name));
    // With `driftPolicy.ignore: [replicas]` the count someone else set is the one expected.
    let replicas_external = desired
        .is_some_and(|d| d.policy.drift_ignore.contains(&DriftField::Replicas))
        && observed.is_some_and(|o| matches!(o.definition.mode, Mode::Replicated { .. }));
    let desired_replicas = match desired.map(|d| &d.definition.mode) {
        Some(Mode::Replicated { .. }) if replicas_external => {
            match observed.map(|o| &o.definition.mode) {
                Some(Mode::Replicated { replicas }) => Some(*replicas),
                _ => None,
            }
        }
        Some(Mode::Replicated { replicas }) => Some(*replicas),
        Some(Mode::Global) => None,
        None => match observed.map(|o| &o.definition.mode) {
            Some(Mode::Replicated { replicas }) => Some(*replicas),
            _ => None,
        },
    };
    let owned = observed.filter(|o| o.ownership.is_owned_by(&world.desired.instance));
    let (endpoints, running, expected, failures) = match owned {
        Some(service) => {
            let live: Vec<&ObservedTask> = live_tasks(service, &world.observed.tasks).collect();
            let running = live
                .iter()
                .filter(|t| t.state.is(&TaskState::RUNNING))
                .count() as u64;
            let endpoints = live
                .iter()
                .map(|t| Endpoint {
                    task: t.id.clone(),
                    slot: t.slot,
                    node: t.node_id.as_ref().map(|id| {
                        world
                            .observed
                            .nodes
                            .get(id)
                            .map(|n| n.hostname.clone())
                            .filter(|h| !h.is_empty())
                            .unwrap_or_else(|| id.clone())
                    }),
                    state: t.state.to_string(),
                    addresses: t.addresses.iter().map(StatusAddress::from).collect(),
                })
                .collect();
            // Global services expect one task per eligible node: whatever swarm scheduled.
            let expected = desired_replicas.unwrap_or(live.len() as u64);
            let failures: Vec<String> = world
                .observed
                .tasks
                .iter()
                .filter(|t| t.service_id == service.id)
                .filter(|t| t.state.is(&TaskState::FAILED) || t.state.is(&TaskState::REJECTED))
                .filter_map(|t| t.error.clone().or_else(|| Some(t.message.clone())))
                .collect();
            (endpoints, running, expected, failures)
        }
        None => (Vec::new(), 0, desired_replicas.unwrap_or(0), Vec::new()),
    };
    let last_error = outcome.and_then(|o| {
        o.last_error().map(str::to_owned).or_else(|| {
            o.conflict
                .as_ref()
                .filter(|c| is_problem(c))
                .map(|c| c.message.clone())
        })
    });
    let conflict = outcome.and_then(|o| o.conflict.as_ref()).map(|c| &c.reason);
    let update = owned.and_then(|s| s.update_status.as_ref());
    let updating = update.is_some_and(|u| {
        matches!(
            u.state,
            UpdateState::UPDATING | UpdateState::ROLLBACK_STARTED
        )
    });
    let update_stuck = update.and_then(|u| {
        let reason = match u.state {
            UpdateState::PAUSED => ConditionReason::UpdatePaused,
            UpdateState::ROLLBACK_PAUSED => ConditionReason::RollbackPaused,
            UpdateState::ROLLBACK_COMPLETED => ConditionReason::RolledBack,
            UpdateState::EMPTY
            | UpdateState::UPDATING
            | UpdateState::COMPLETED
            | UpdateState::ROLLBACK_STARTED => return None,
        };
        Some((reason, u))
    });

    let (ready, ready_reason, ready_message) = if owned.is_none() {
        match conflict {
            Some(ConflictReason::NotOwned) => (
                false,
                ConditionReason::NotOwned,
                last_error.clone().unwrap_or_default(),
            ),
            _ => (
                false,
                ConditionReason::NotCreated,
                "the service does not exist yet".to_owned(),
            ),
        }
    } else if running >= expected && !updating {
        (
            true,
            ConditionReason::AllReplicasRunning,
            format!("{running}/{expected} replicas running"),
        )
    } else {
        (
            false,
            ConditionReason::ReplicasUnavailable,
            format!("{running}/{expected} replicas running"),
        )
    };
    let plan_conflict = outcome.and_then(|o| o.conflict.as_ref());
    let (progressing, progressing_reason, progressing_message) =
        if let Some(note) = condition_from_plan(plan_conflict, ConditionType::Progressing) {
            note
        } else if let Some((Blocker::WaitingForNetwork { .. }, message)) =
            outcome.and_then(|o| o.error.as_ref())
        {
            (true, ConditionReason::WaitingForNetwork, message.clone())
        } else if updating {
            (
                true,
                ConditionReason::RollingUpdate,
                update.map(|u| u.message.clone()).unwrap_or_default(),
            )
        } else if owned.is_some() && running != expected && update_stuck.is_none() {
            (
                true,
                ConditionReason::Scaling,
                format!("{running}/{expected} replicas running"),
            )
        } else if desired.is_some() && owned.is_none() && conflict.is_none() {
            (
                true,
                ConditionReason::Creating,
                "the service is being created".to_owned(),
            )
        } else {
            (
                false,
                ConditionReason::Converged,
                "nothing in progress".to_owned(),
            )
        };
    let (degraded, degraded_reason, degraded_message) = if let Some((reason, update)) = update_stuck
    {
        (true, reason, update.message.clone())
    } else if running < expected && !failures.is_empty() {
        (
            true,
            ConditionReason::TasksFailing,
            failures.last().cloned().unwrap_or_default(),
        )
    } else if let Some((blocker, error)) = outcome
        .and_then(|o| o.error.clone())
        .filter(|(blocker, _)| !matches!(blocker, Blocker::WaitingForNetwork { .. }))
    {
        // Waiting for a network is progress (above), not a problem.
        let reason = match blocker {
            Blocker::PortConflict { .. } => ConditionReason::PortConflict,
            _ => ConditionReason::ReconcileError,
        };
        (true, reason, error)
    } else if let Some(note) = condition_from_plan(plan_conflict, ConditionType::Degraded) {
        note
    } else {
        (
            false,
            ConditionReason::AsExpected,
            "no problems found".to_owned(),
        )
    };

    let previous_conditions = previous.map(|p| p.conditions.as_slice()).unwrap_or(&[]);
    let condition = |kind, holds, reason, message| {
        make_condition(previous_conditions, now, kind, holds, reason, message)
    };
    ServiceStatus {
        desired_replicas,
        running_replicas: running,
        conditions: vec![
            condition(ConditionType::Ready, ready, ready_reason, ready_message),
            condition(
                ConditionType::Progressing,
                progressing,
                progressing_reason,
                progressing_message,
            ),
            condition(
                ConditionType::Degraded,
                degraded,
                degraded_reason,
                degraded_message,
            ),
        ],
        virtual_ips: owned.map(|s| s.virtual_ips.clone()).unwrap_or_default(),
        endpoints,
        last_error,
    }
}

/// Whether a plan conflict is a problem (an error to show) rather than a policy note.
fn is_problem(conflict: &Conflict) -> bool {
    ConditionReason::from(&conflict.reason)
        .explains()
        .contains(&(ConditionType::Degraded, ConditionStatus::True))
}

/// The condition of type `kind` that the plan's conflict or note sets, if its reason is about
/// that type (a suspension is about progress, a refusal about degradation).
fn condition_from_plan(
    conflict: Option<&Conflict>,
    kind: ConditionType,
) -> Option<(bool, ConditionReason, String)> {
    let conflict = conflict?;
    let reason = ConditionReason::from(&conflict.reason);
    let (_, status) = reason.explains().iter().find(|(k, _)| *k == kind)?;
    Some((
        *status == ConditionStatus::True,
        reason,
        conflict.message.clone(),
    ))
}

/// A condition that keeps its previous transition time while its status stays the same.
fn make_condition(
    previous: &[Condition],
    now: &str,
    kind: ConditionType,
    holds: bool,
    reason: ConditionReason,
    message: String,
) -> Condition {
    let status = ConditionStatus::from(holds);
    debug_assert!(
        reason.explains().contains(&(kind, status)),
        "{reason} does not explain {kind:?}={status:?}"
    );
    let last_transition_time = previous
        .iter()
        .find(|c| c.kind == kind && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.to_owned());
    Condition {
        kind,
        status,
        reason,
        message,
        last_transition_time,
    }
}

fn network_status(
    world: &WorldState,
    name: &str,
    previous: Option<&NetworkStatus>,
    now: &str,
) -> NetworkStatus {
    let desired = world.desired.networks.contains_key(name);
    let observed = world
        .observed
        .networks
        .get(name)
        .filter(|n| n.ownership.is_owned_by(&world.desired.instance) || desired);
    let outcome = world.outcomes.get(&ObjectKey::network(name));
    let error = outcome.and_then(|o| o.error.clone());
    let conflict = outcome.and_then(|o| o.conflict.clone());
    let (ready, ready_reason, ready_message) = match (desired, observed) {
        (true, Some(_)) => (
            true,
            ConditionReason::Exists,
            "the network exists".to_owned(),
        ),
        (true, None) => (
            false,
            ConditionReason::NotCreated,
            "the network does not exist yet".to_owned(),
        ),
        (false, _) => (
            false,
            ConditionReason::SpecRemoved,
            "its spec is gone; it is being removed".to_owned(),
        ),
    };
    let progressing_note = condition_from_plan(conflict.as_ref(), ConditionType::Progressing);
    let (progressing, progressing_reason, progressing_message) = match (&error, desired, observed) {
        _ if progressing_note.is_some() => progressing_note.expect("checked"),
        (Some((Blocker::WaitingForUsers { .. }, message)), _, _) => {
            (true, ConditionReason::WaitingForUsers, message.clone())
        }
        (_, true, None) => (
            true,
            ConditionReason::Creating,
            "the network is being created".to_owned(),
        ),
        (_, false, Some(_)) if conflict.is_none() => (
            true,
            ConditionReason::Removing,
            "the network is being removed".to_owned(),
        ),
        _ => (
            false,
            ConditionReason::Converged,
            "nothing in progress".to_owned(),
        ),
    };
    let (degraded, degraded_reason, degraded_message) = match (&error, &conflict) {
        (Some((Blocker::Failed, message)), _) => {
            (true, ConditionReason::ReconcileError, message.clone())
        }
        (_, Some(conflict))
            if condition_from_plan(Some(conflict), ConditionType::Degraded).is_some() =>
        {
            condition_from_plan(Some(conflict), ConditionType::Degraded).expect("checked")
        }
        _ => (
            false,
            ConditionReason::AsExpected,
            "no problems found".to_owned(),
        ),
    };
    let previous_conditions = previous.map(|p| p.conditions.as_slice()).unwrap_or(&[]);
    let condition = |kind, holds, reason, message| {
        make_condition(previous_conditions, now, kind, holds, reason, message)
    };
    NetworkStatus {
        id: observed.map(|n| n.id.clone()),
        conditions: vec![
            condition(ConditionType::Ready, ready, ready_reason, ready_message),
            condition(
                ConditionType::Progressing,
                progressing,
                progressing_reason,
                progressing_message,
            ),
            condition(
                ConditionType::Degraded,
                degraded,
                degraded_reason,
                degraded_message,
            ),
        ],
        last_error: error
            .map(|(_, message)| message)
            .or_else(|| conflict.filter(is_problem).map(|c| c.message)),
    }
}

/// Whether two status files differ in anything but `generatedAt` (no rewrite needed if not).
pub fn same_content(a: &StatusFile, b: &StatusFile) -> bool {
    a.services == b.services && a.networks == b.networks && a.errors == b.errors
}

/// Replaces `path` atomically: write a temporary file in the same directory, fsync it, rename
/// it over the old one, fsync the directory. Readers see the old or the new file, never half.
pub fn write_atomic(path: &Path, status: &StatusFile) -> Result<(), StatusError> {
    let error = |source| StatusError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(error)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".status-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(error)?;
    let json = serde_json::to_vec_pretty(status).expect("status serializes to JSON");
    tmp.write_all(&json).map_err(error)?;
    tmp.write_all(b"\n").map_err(error)?;
    tmp.as_file().sync_all().map_err(error)?;
    tmp.persist(path).map_err(|e| error(e.error))?;
    // The rename is durable only once the directory entry is.
    if let Ok(dir) = std::fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Reads a status file written before (to keep condition transition times across restarts).
pub fn read(path: &Path) -> Option<StatusFile> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::{definition_hash, tests::sample_service};
    use crate::desired::DesiredObject;
    use crate::docker::{EngineValue, ObservedNode, Ownership};

    fn task(id: &str, slot: u64, state: &str, desired: &str, ip: &str) -> ObservedTask {
        ObservedTask {
            id: id.into(),
            service_id: "svc".into(),
            slot: Some(slot),
            node_id: Some("n1".into()),
            state: EngineValue::parse("state", state),
            desired_state: EngineValue::parse("desired", desired),
            message: String::new(),
            error: (state == "failed").then(|| "exit 1".to_owned()),
            addresses: vec![TaskAddress {
                network: "my_network".into(),
                ip: ip.into(),
            }],
        }
    }

    fn world(tasks: Vec<ObservedTask>) -> WorldState {
        let definition = sample_service("quote");
        let hash = definition_hash(&definition);
        let mut world = WorldState::default();
        world.desired.services.insert(
            "quote".into(),
            DesiredObject {
                definition: definition.clone(),
                hash: hash.clone(),
                source_file: "a.yaml".into(),
                instance: crate::definition::DEFAULT_INSTANCE.into(),
                policy: Default::default(),
            },
        );
        world.observed.services.insert(
            "quote".into(),
            ObservedService {
                id: "svc".into(),
                version: 1,
                definition,
                ownership: Ownership::from_labels(&Ownership::labels(
                    &hash,
                    "a.yaml",
                    crate::definition::DEFAULT_INSTANCE,
                )),
                virtual_ips: vec![],
                update_status: None,
            },
        );
        world.observed.nodes.insert(
            "n1".into(),
            ObservedNode {
                id: "n1".into(),
                hostname: "node-1".into(),
                state: "ready".into(),
                role: crate::docker::NodeRole::Manager,
                availability: crate::docker::NodeAvailability::Active,
            },
        );
        world.observed.tasks = tasks;
        world
    }

    fn condition(status: &ServiceStatus, kind: ConditionType) -> &Condition {
        status.conditions.iter().find(|c| c.kind == kind).unwrap()
    }

    #[test]
    fn all_replicas_running_is_ready_with_endpoints() {
        let w = world(vec![
            task("t1", 1, "running", "running", "10.0.1.7"),
            task("t2", 2, "running", "running", "10.0.1.8"),
            task("t3", 3, "running", "running", "10.0.1.9"),
            task("old", 1, "shutdown", "shutdown", "10.0.1.3"),
        ]);
        let status = build(&w, Path::new("/specs"), None, "2026-01-01T00:00:00Z");
        let quote = &status.services["quote"];
        assert_eq!(quote.desired_replicas, Some(3));
        assert_eq!(quote.running_replicas, 3);
        assert_eq!(quote.endpoints.len(), 3);
        assert_eq!(quote.endpoints[0].node.as_deref(), Some("node-1"));
        assert_eq!(quote.endpoints[0].addresses[0].ip, "10.0.1.7");
        assert_eq!(
            condition(quote, ConditionType::Ready).status,
            ConditionStatus::True
        );
        assert_eq!(
            condition(quote, ConditionType::Progressing).status,
            ConditionStatus::False
        );
        assert_eq!(
            condition(quote, ConditionType::Degraded).status,
            ConditionStatus::False
        );
    }

    #[test]
    fn failing_tasks_make_the_service_degraded_with_their_error() {
        let w = world(vec![
            task("t1", 1, "running", "running", "10.0.1.7"),
            task("t2", 2, "failed", "shutdown", "10.0.1.8"),
        ]);
        let status = build(&w, Path::new("/specs"), None, "2026-01-01T00:00:00Z");
        let quote = &status.services["quote"];
        assert_eq!(
            condition(quote, ConditionType::Ready).status,
            ConditionStatus::False
        );
        let degraded = condition(quote, ConditionType::Degraded);
        assert_eq!(degraded.status, ConditionStatus::True);
        assert_eq!(degraded.reason, ConditionReason::TasksFailing);
        assert_eq!(degraded.message, "exit 1");
    }

    #[test]
    fn transition_times_are_kept_while_the_status_holds() {
        let w = world(vec![task("t1", 1, "running", "running", "10.0.1.7")]);
        let first = build(&w, Path::new("/specs"), None, "2026-01-01T00:00:00Z");
        let second = build(
            &w,
            Path::new("/specs"),
            Some(&first),
            "2026-01-01T00:05:00Z",
        );
        assert_eq!(
            condition(&second.services["quote"], ConditionType::Ready).last_transition_time,
            "2026-01-01T00:00:00Z"
        );
        assert!(same_content(&first, &second));
        let w = world(vec![
            task("t1", 1, "running", "running", "10.0.1.7"),
            task("t2", 2, "running", "running", "10.0.1.8"),
            task("t3", 3, "running", "running", "10.0.1.9"),
        ]);
        let third = build(
            &w,
            Path::new("/specs"),
            Some(&second),
            "2026-01-01T00:09:00Z",
        );
        assert_eq!(
            condition(&third.services["quote"], ConditionType::Ready).last_transition_time,
            "2026-01-01T00:09:00Z"
        );
    }

    #[test]
    fn atomic_write_replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.json");
        let w = world(vec![]);
        let status = build(&w, Path::new("/specs"), None, "2026-01-01T00:00:00Z");
        write_atomic(&path, &status).unwrap();
        write_atomic(&path, &status).unwrap();
        assert_eq!(read(&path).unwrap(), status);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["status.json"]);
    }

    /// Every blocker the reconciler reports gives a condition whose reason explains it (the
    /// debug check in `make_condition` panics otherwise) and says what blocks the object.
    #[test]
    fn every_blocker_shows_as_a_condition_its_reason_explains() {
        let cases = [
            (
                Blocker::PortConflict {
                    port: 8080,
                    holder: "other".into(),
                },
                ConditionReason::PortConflict,
            ),
            (
                Blocker::WaitingForNetwork {
                    network: "my_network".into(),
                },
                ConditionReason::WaitingForNetwork,
            ),
            (Blocker::Failed, ConditionReason::ReconcileError),
        ];
        for (blocker, reason) in cases {
            let kind = if reason == ConditionReason::WaitingForNetwork {
                ConditionType::Progressing
            } else {
                ConditionType::Degraded
            };
            let mut w = world(vec![]);
            w.outcomes.insert(
                ObjectKey::service("quote"),
                crate::world::ObjectOutcome {
                    error: Some((blocker, "what blocks it".into())),
                    conflict: None,
                },
            );
            let status = build(&w, Path::new("/specs"), None, "2026-01-01T00:00:00Z");
            let degraded = condition(&status.services["quote"], kind);
            assert_eq!(
                (degraded.status, degraded.reason),
                (ConditionStatus::True, reason)
            );
            assert_eq!(degraded.message, "what blocks it");
        }

        // A network whose spec is gone waits for the services still attached to it.
        let mut w = world(vec![]);
        w.observed.networks.insert(
            "old_net".into(),
            crate::docker::ObservedNetwork {
                id: "net-id".into(),
                scope: "swarm".into(),
                definition: crate::definition::tests::sample_network("old_net"),
                ownership: Ownership::from_labels(&Ownership::labels(
                    "h",
                    "net.yaml",
                    crate::definition::DEFAULT_INSTANCE,
                )),
            },
        );
        w.outcomes.insert(
            ObjectKey::network("old_net"),
            crate::world::ObjectOutcome {
                error: Some((
                    Blocker::WaitingForUsers {
                        users: vec!["bystander".into()],
                    },
                    "still used by bystander".into(),
                )),
                conflict: None,
            },
        );
        let status = build(&w, Path::new("/specs"), None, "2026-01-01T00:00:00Z");
        let net = &status.networks["old_net"];
        let reasons: Vec<_> = net
            .conditions
            .iter()
            .map(|c| (c.kind, c.status, c.reason))
            .collect();
        assert_eq!(
            reasons,
            [
                (
                    ConditionType::Ready,
                    ConditionStatus::False,
                    ConditionReason::SpecRemoved
                ),
                (
                    ConditionType::Progressing,
                    ConditionStatus::True,
                    ConditionReason::WaitingForUsers
                ),
                (
                    ConditionType::Degraded,
                    ConditionStatus::False,
                    ConditionReason::AsExpected
                ),
            ]
        );
    }
}
