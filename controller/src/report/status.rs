//! The status file: what the operator found (replicas, conditions, virtual IPs, every task's
//! address) built purely from the shared view, and written atomically.

mod job;
pub mod publisher;
mod reason;
pub mod source;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::control::plan::{Conflict, ConflictReason, ObjectKey, ObjectKind};
use crate::desired::definition::Mode;
use crate::docker::{
    ObservedService, ObservedTask, TaskAddress, TaskState, UpdateState, VirtualIp,
};
use crate::spec::DriftField;

use crate::control::world::{Blocker, WorldState};
use crate::shared_text::TextPool;
use crate::spec::SpecError;
use job::JobRun;
pub use job::{RunOutcome, RunRecord, ScheduleStatus};
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
    /// Where the specs come from, with `--source git` (absent for `dir` and `swarm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<source::SourceStatus>,
    /// What loaded with a warning: keys of a SwarmStack's compose files that stack deploy
    /// would ignore too, located in the compose file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<StatusSpecError>,
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
    /// Running tasks of the current spec (`UP-TO-DATE`).
    #[serde(default)]
    pub updated_replicas: u64,
    /// Hash of the spec the spec directory asks for (`None`: no spec, e.g. read without one).
    #[serde(default)]
    pub spec_hash: Option<Arc<str>>,
    /// Hash of the spec the swarm has, from the service's label: the conditions describe the
    /// rollout of this spec; it equals `specHash` once the operator wrote the current one.
    #[serde(default)]
    pub observed_spec_hash: Option<Arc<str>>,
    /// When the service was created (RFC 3339).
    #[serde(default)]
    pub created_at: Option<String>,
    /// `Ready`, `Progressing`, `Degraded`.
    pub conditions: Vec<Condition>,
    /// Virtual IPs per network (VIP mode).
    #[serde(rename = "virtualIPs")]
    pub virtual_ips: Vec<VirtualIp>,
    /// Every task that should be running, with its addresses.
    pub endpoints: Vec<Endpoint>,
    /// The last error writing this service, or why it is left alone.
    pub last_error: Option<String>,
    /// A scheduled job's runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Box<ScheduleStatus>>,
    /// The stack the service belongs to (its `com.docker.stack.namespace` label, as
    /// `docker stack services` sees it): a SwarmStack's, or an imported stack's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
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
    /// The stack the network belongs to (its `com.docker.stack.namespace` label).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
}

/// The stack an object belongs to, from the value of its namespace label (as `docker stack`
/// tells it): none when unset or empty.
fn stack_of(namespace: Option<&String>) -> Option<String> {
    namespace.filter(|s| !s.is_empty()).cloned()
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
    /// For humans. Shared: every condition of one build with the same message holds one text
    /// (thousands of services are "nothing in progress").
    pub message: Arc<str>,
    /// When `status` last changed (RFC 3339). Shared: every condition that changes in one
    /// build, and every later status that keeps it, holds the same text (three conditions on
    /// each of thousands of services).
    pub last_transition_time: Arc<str>,
}

/// One task of a service, where it runs and how to reach it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Task id.
    pub task: String,
    /// Replica slot (replicated services).
    pub slot: Option<u64>,
    /// Node hostname (or id when unknown). Shared within a status, as is the state.
    pub node: Option<Arc<str>>,
    /// Task state: `running`, `starting`, `preparing`, …
    pub state: Arc<str>,
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

/// The texts one status build shares between its services: the time it stamps on new
/// transitions, and one allocation per distinct condition message, task state and node.
struct SharedTexts {
    now: Arc<str>,
    pool: TextPool,
}

impl SharedTexts {
    fn new(now: &str) -> Self {
        SharedTexts {
            now: Arc::from(now),
            pool: TextPool::new(),
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
    let mut texts = SharedTexts::new(now);
    // Every object the operator reconciles: desired, or owned by this instance. Gathered in
    // vectors and made maps at once: a map built from sorted entries has full nodes, one built
    // by inserting them in order leaves every node about half empty (a service's status is
    // 296 bytes, inline in the map's nodes: 1.3 MB of empty slots at 5,000 services).
    let mut services = Vec::new();
    let mut networks = Vec::new();
    // One pass over the tasks, not one per service: a large swarm has tens of thousands.
    let mut tasks_by_service: HashMap<&str, Vec<&ObservedTask>> = HashMap::new();
    for task in world.observed.tasks.iter() {
        tasks_by_service
            .entry(task.service_id.as_str())
            .or_default()
            .push(task);
    }
    for key in crate::control::plan::all_keys(&world.desired, &world.observed) {
        match key.kind {
            ObjectKind::Service => {
                let previous = previous.and_then(|p| p.services.get(&key.name));
                let tasks = world
                    .observed
                    .services
                    .get(&key.name)
                    .and_then(|s| tasks_by_service.get(s.id.as_str()))
                    .map_or(&[][..], Vec::as_slice);
                let status = service_status(world, &key.name, tasks, previous, &mut texts);
                services.push((key.name, status));
            }
            ObjectKind::Network => {
                let previous = previous.and_then(|p| p.networks.get(&key.name));
                let status = network_status(world, &key.name, previous, &mut texts);
                networks.push((key.name, status));
            }
            // Versions show through the services that mount them (a failure to create one
            // is the reconcile's error, in the activity log and the metrics).
            ObjectKind::Config | ObjectKind::Secret => {}
        }
    }
    StatusFile {
        generated_at: now.to_owned(),
        services: BTreeMap::from_iter(services),
        networks: BTreeMap::from_iter(networks),
        errors: world
            .desired
            .errors
            .iter()
            .map(|e| status_error(e, spec_dir))
            .collect(),
        source: world.source.clone(),
        warnings: world
            .desired
            .warnings
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

/// Of a service's tasks, those swarm wants running, i.e. its current replicas (old ones shut
/// down and failed ones are history).
fn live_tasks<'a>(own: &'a [&'a ObservedTask]) -> impl Iterator<Item = &'a ObservedTask> {
    own.iter()
        .copied()
        .filter(|t| t.desired_state.is(&TaskState::RUNNING))
}

/// Whether a task runs the service's current spec. Unknown on either side (the in-memory
/// swarm, our own write not read back yet) counts as current: nothing tells them apart.
fn runs_current_spec(service: &ObservedService, task: &ObservedTask) -> bool {
    match (&service.revision.template, &task.template) {
        (Some(service), Some(task)) => **service == **task,
        _ => true,
    }
}

/// A failed task in a line: its own error (e.g. `No such image: …`), its exit code, its id.
fn describe_failure(task: &ObservedTask) -> String {
    let error = task
        .error
        .clone()
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| task.message.clone());
    let short_id: String = task.id.chars().take(12).collect();
    let mut about = format!("task {short_id}");
    if let Some(code) = task
        .exit_code
        .filter(|code| !error.contains(&format!("({code})")))
    {
        about.push_str(&format!(", exit code {code}"));
    }
    // When it failed: the last restart, for a task swarm keeps restarting.
    if let Some(time) = &task.timestamp {
        about.push_str(&format!(", at {time}"));
    }
    format!("{error} ({about})")
}

/// The latest failed or rejected task among `tasks`, described.
fn latest_failure<'a>(tasks: impl Iterator<Item = &'a ObservedTask>) -> Option<String> {
    tasks
        .filter(|t| t.state.is(&TaskState::FAILED) || t.state.is(&TaskState::REJECTED))
        .max_by(|a, b| a.timestamp.cmp(&b.timestamp))
        .map(describe_failure)
}

/// Seconds between two RFC 3339 times (`None` if either does not parse).
fn seconds_between(since: &str, now: &str) -> Option<u64> {
    let since = humantime::parse_rfc3339_weak(since).ok()?;
    let now = humantime::parse_rfc3339_weak(now).ok()?;
    Some(now.duration_since(since).map_or(0, |d| d.as_secs()))
}

/// How far a service's rollout got, from its tasks and swarm's update state: what the three
/// conditions are computed from.
#[derive(Debug, Clone, PartialEq)]
struct Rollout {
    /// Tasks that should run.
    expected: u64,
    /// Tasks running (and healthy, where there is a healthcheck: swarm holds them in
    /// `starting` until it passed).
    running: u64,
    /// Running tasks of the current spec.
    updated: u64,
    /// Swarm runs a rolling update or rollback now.
    updating: bool,
    /// Swarm's verdict on an update that failed: paused, rollback paused, rolled back; with
    /// its message.
    stuck: Option<(ConditionReason, String)>,
    /// The swarm has another spec than the spec directory's (the operator has not written the
    /// current one yet): `(swarm's, spec's)` hashes.
    spec_pending: Option<(String, String)>,
    /// The latest failure of a task of the current spec.
    failing: Option<String>,
    /// The latest failure of any task (the cause of a paused or rolled-back update).
    last_failure: Option<String>,
    /// The rollout runs for longer than its deadline: `(deadline, since)`.
    overdue: Option<(std::time::Duration, String)>,
}

impl Rollout {
    fn observe(
        world: &WorldState,
        name: &str,
        service: &ObservedService,
        tasks: &[&ObservedTask],
        expected: Option<u64>,
        progressing_since: Option<&str>,
        now: &str,
    ) -> Rollout {
        let live: Vec<&ObservedTask> = live_tasks(tasks).collect();
        let running: Vec<&&ObservedTask> = live
            .iter()
            .filter(|t| t.state.is(&TaskState::RUNNING))
            .collect();
        let updated = running
            .iter()
            .filter(|t| runs_current_spec(service, t))
            .count() as u64;
        // Global services expect one task per eligible node: whatever swarm scheduled.
        let expected = expected.unwrap_or(live.len() as u64);
        let own_tasks = || tasks.iter().copied();
        let update = service.update_status.as_ref();
        let updating = update.is_some_and(|u| {
            matches!(
                u.state,
                UpdateState::UPDATING | UpdateState::ROLLBACK_STARTED
            )
        });
        let stuck = update.and_then(|u| {
            let reason = match u.state {
                UpdateState::PAUSED => ConditionReason::UpdatePaused,
                UpdateState::ROLLBACK_PAUSED => ConditionReason::RollbackPaused,
                UpdateState::ROLLBACK_COMPLETED => ConditionReason::RolledBack,
                UpdateState::EMPTY
                | UpdateState::UPDATING
                | UpdateState::COMPLETED
                | UpdateState::ROLLBACK_STARTED => return None,
            };
            Some((reason, u.message.clone()))
        });
        // The operator's mark outlives swarm's UpdateStatus (writing the mark resets it).
        let desired_hash = world.desired.services.get(name).map(|d| &*d.hash);
        let stuck = match &service.ownership.rolled_back {
            Some(mark) if desired_hash == Some(mark.spec_hash.as_str()) => Some((
                ConditionReason::RolledBack,
                format!(
                    "swarm rolled back spec {}: {}; held until the spec changes",
                    mark.spec_hash, mark.reason
                ),
            )),
            _ => stuck,
        };
        let spec_pending = world.desired.services.get(name).and_then(|desired| {
            let running = service.ownership.spec_hash.clone().unwrap_or_default();
            (running != desired.hash).then(|| (running.to_string(), desired.hash.to_string()))
        });
        let mut rollout = Rollout {
            expected,
            running: running.len() as u64,
            updated,
            updating,
            stuck,
            spec_pending,
            failing: latest_failure(own_tasks().filter(|t| runs_current_spec(service, t))),
            last_failure: latest_failure(own_tasks()),
            overdue: None,
        };
        let deadline = world
            .desired
            .progress_deadlines
            .get(name)
            .copied()
            .unwrap_or(DEFAULT_PROGRESS_DEADLINE);
        // The rollout started with swarm's update, else when `Progressing` last became true
        // (a crashed task being replaced counts from its crash, not from the last spec
        // change long ago; the first look at a rollout starts the clock).
        let since = update
            .filter(|_| updating)
            .and_then(|u| u.started_at.clone())
            .or_else(|| progressing_since.map(str::to_owned));
        if !rollout.is_complete()
            && rollout.stuck.is_none()
            && rollout.spec_pending.is_none()
            && let Some(since) = since
            && seconds_between(&since, now).is_some_and(|s| s > deadline.as_secs())
        {
            rollout.overdue = Some((deadline, since));
        }
        rollout
    }

    /// Every expected task runs the current spec and no update is under way.
    fn is_complete(&self) -> bool {
        self.updated >= self.expected
            && !self.updating
            && self.spec_pending.is_none()
            && !matches!(self.stuck, Some((ConditionReason::RolledBack, _)))
    }

    fn counts(&self) -> String {
        format!(
            "{}/{} updated, {} running",
            self.updated, self.expected, self.running
        )
    }

    fn ready(&self) -> (bool, ConditionReason, String) {
        if self.is_complete() {
            (
                true,
                ConditionReason::AllReplicasRunning,
                format!("{}/{} replicas running", self.updated, self.expected),
            )
        } else if self.running < self.expected {
            (
                false,
                ConditionReason::ReplicasUnavailable,
                format!("{}/{} replicas running", self.running, self.expected),
            )
        } else if let Some((ConditionReason::RolledBack, _)) = self.stuck {
            (
                false,
                ConditionReason::ReplicasOutdated,
                "the update was rolled back: the tasks run the previous spec".to_owned(),
            )
        } else if self.updating && self.updated >= self.expected {
            (
                false,
                ConditionReason::ReplicasOutdated,
                format!(
                    "{}/{} replicas run the current spec; swarm is still monitoring the update",
                    self.updated, self.expected
                ),
            )
        } else if let Some((running, wanted)) = &self.spec_pending {
            (
                false,
                ConditionReason::ReplicasOutdated,
                format!("the swarm runs spec {running}, the spec asks for {wanted}"),
            )
        } else {
            (
                false,
                ConditionReason::ReplicasOutdated,
                format!(
                    "{}/{} replicas run the current spec",
                    self.updated, self.expected
                ),
            )
        }
    }

    /// `None` when nothing is under way.
    fn progressing(&self) -> Option<(ConditionReason, String)> {
        if self.stuck.is_some() {
            None
        } else if let Some((_, wanted)) = &self.spec_pending {
            Some((
                ConditionReason::RollingUpdate,
                format!("spec {wanted} is not written to the swarm yet"),
            ))
        } else if self.updating || (self.updated < self.expected && self.running >= self.expected) {
            Some((ConditionReason::RollingUpdate, self.counts()))
        } else if self.running != self.expected {
            Some((
                ConditionReason::Scaling,
                format!("{}/{} replicas running", self.running, self.expected),
            ))
        } else {
            None
        }
    }

    /// `None` when the rollout has no problem.
    fn degraded(&self) -> Option<(ConditionReason, String)> {
        let with_cause = |message: String, cause: Option<&String>| match cause {
            Some(cause) if !message.contains(cause.as_str()) => {
                format!("{message}; last task error: {cause}")
            }
            _ => message,
        };
        if let Some((reason, message)) = &self.stuck {
            Some((
                *reason,
                with_cause(message.clone(), self.last_failure.as_ref()),
            ))
        } else if let Some((deadline, since)) = &self.overdue {
            Some((
                ConditionReason::ProgressDeadlineExceeded,
                with_cause(
                    format!(
                        "the rollout has not finished within {} (since {since}): {}",
                        humantime::format_duration(*deadline),
                        self.counts()
                    ),
                    self.failing.as_ref(),
                ),
            ))
        } else if self.updated < self.expected
            && let Some(failure) = &self.failing
        {
            Some((ConditionReason::TasksFailing, failure.clone()))
        } else {
            None
        }
    }
}

/// How long a rollout may take when its spec does not say (`spec.progressDeadline`).
pub const DEFAULT_PROGRESS_DEADLINE: std::time::Duration = std::time::Duration::from_secs(600);

fn service_status(
    world: &WorldState,
    name: &str,
    tasks: &[&ObservedTask],
    previous: Option<&ServiceStatus>,
    texts: &mut SharedTexts,
) -> ServiceStatus {
    let now = &Arc::clone(&texts.now);
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
        // A replicated job's count is of completions, shown with `job` below.
        Some(Mode::ReplicatedJob {
            total_completions, ..
        }) => Some(*total_completions),
        Some(Mode::Global | Mode::GlobalJob) => None,
        None => match observed.map(|o| &o.definition.mode) {
            Some(Mode::Replicated { replicas }) => Some(*replicas),
            _ => None,
        },
    };
    let owned = observed.filter(|o| o.ownership.is_owned_by(&world.desired.instance));
    let rollout = owned.map(|service| {
        let progressing_since = previous
            .and_then(|p| {
                p.conditions.iter().find(|c| {
                    c.kind == ConditionType::Progressing && c.status == ConditionStatus::True
                })
            })
            .map(|c| &*c.last_transition_time);
        Rollout::observe(
            world,
            name,
            service,
            tasks,
            desired_replicas,
            progressing_since,
            now,
        )
    });
    // A job is judged by its run, not by running replicas: its tasks end by design. While the
    // spec is not written yet (or swarm rolled it back), the generic conditions say so.
    let job = owned
        .filter(|service| service.definition.mode.is_job())
        .filter(|_| {
            rollout
                .as_ref()
                .is_some_and(|r| r.spec_pending.is_none() && r.stuck.is_none())
        })
        .map(|service| JobRun::observe(&service.definition.mode, service, tasks));
    let endpoints = owned
        .map(|_| {
            let mut endpoints: Vec<Endpoint> = live_tasks(tasks)
                .map(|t| Endpoint {
                    task: t.id.clone(),
                    slot: t.slot,
                    node: t
                        .node_id
                        .as_deref()
                        .map(|id| texts.pool.share(&world.observed.node_name(id))),
                    state: texts.pool.share(&t.state.to_string()),
                    addresses: t.addresses.iter().map(StatusAddress::from).collect(),
                })
                .collect();
            // Kept until the next pass; collected from a filter, the list has room for at least
            // four 112-byte endpoints (1.7 MB of empty slots at 5,000 one-replica services).
            endpoints.shrink_to_fit();
            endpoints
        })
        .unwrap_or_default();
    let last_error = outcome.and_then(|o| {
        o.last_error().map(str::to_owned).or_else(|| {
            o.conflict
                .as_ref()
                .filter(|c| is_problem(c))
                .map(|c| c.message.clone())
        })
    });
    let conflict = outcome.and_then(|o| o.conflict.as_ref()).map(|c| &c.reason);

    let (ready, ready_reason, ready_message) = match (&job, &rollout) {
        (Some(run @ JobRun::Completed { .. }), _) => (
            true,
            ConditionReason::Completed,
            format!("the job's run completed: {}", run.counts()),
        ),
        (Some(JobRun::Failed(_)), _) => (
            false,
            ConditionReason::ReplicasUnavailable,
            "a task of the job's run failed".to_owned(),
        ),
        (Some(run @ JobRun::Running { .. }), _) => (
            false,
            ConditionReason::JobRunning,
            format!("the job runs: {}", run.counts()),
        ),
        (None, Some(rollout)) => rollout.ready(),
        (None, None) => match conflict {
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
        },
    };
    let plan_conflict = outcome.and_then(|o| o.conflict.as_ref());
    let (progressing, progressing_reason, progressing_message) =
        if let Some(note) = condition_from_plan(plan_conflict, ConditionType::Progressing) {
            note
        } else if let Some((Blocker::WaitingForNetwork { .. }, message)) =
            outcome.and_then(|o| o.error.as_ref())
        {
            (true, ConditionReason::WaitingForNetwork, message.clone())
        } else if let Some(run @ JobRun::Running { .. }) = &job {
            (true, ConditionReason::JobRunning, run.counts())
        } else if job.is_some() {
            (
                false,
                ConditionReason::Converged,
                "nothing in progress".to_owned(),
            )
        } else if let Some((reason, message)) = rollout.as_ref().and_then(Rollout::progressing) {
            (true, reason, message)
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
    let (degraded, degraded_reason, degraded_message) = if let Some(JobRun::Failed(failure)) = &job
    {
        (true, ConditionReason::TasksFailing, failure.clone())
    } else if let Some((reason, message)) = rollout
        .as_ref()
        .filter(|_| job.is_none())
        .and_then(Rollout::degraded)
    {
        (true, reason, message)
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
    let mut condition = |kind, holds, reason, message: String| {
        make_condition(previous_conditions, texts, kind, holds, reason, &message)
    };
    ServiceStatus {
        desired_replicas,
        running_replicas: rollout.as_ref().map_or(0, |r| r.running),
        updated_replicas: rollout.as_ref().map_or(0, |r| r.updated),
        spec_hash: desired.map(|d| d.hash.clone()),
        observed_spec_hash: owned.and_then(|s| s.ownership.spec_hash.clone()),
        created_at: owned.and_then(|s| s.revision.created_at.clone()),
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
        schedule: owned
            .filter(|_| desired.is_some_and(|d| d.policy.schedule.is_some()))
            .map(|service| {
                let runs = job::history(tasks);
                Box::new(ScheduleStatus {
                    last_schedule_time: service.revision.updated_at.clone(),
                    last_successful_time: runs
                        .iter()
                        .find(|r| r.outcome == RunOutcome::Completed)
                        .and_then(|r| r.at.clone()),
                    runs,
                })
            }),
        stack: desired
            .map(|d| &*d.definition)
            .or(observed.map(|o| &*o.definition))
            .and_then(|d| stack_of(d.labels.get(crate::compose::stack::NAMESPACE_LABEL))),
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
    texts: &mut SharedTexts,
    kind: ConditionType,
    holds: bool,
    reason: ConditionReason,
    message: &str,
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
        .unwrap_or_else(|| Arc::clone(&texts.now));
    Condition {
        kind,
        status,
        reason,
        message: texts.pool.share(message),
        last_transition_time,
    }
}

fn network_status(
    world: &WorldState,
    name: &str,
    previous: Option<&NetworkStatus>,
    texts: &mut SharedTexts,
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
    // Gone from the specs is not the same as being removed: the plan holds what an empty or
    // broken spec directory no longer lists (and `get` without `--specs` lists nothing).
    let removing = !desired
        && matches!(
            crate::control::plan::plan_object(
                &ObjectKey::network(name),
                &world.desired,
                &world.observed
            )
            .action,
            Some(crate::control::plan::Action::RemoveNetwork { .. })
        );
    let (ready, ready_reason, ready_message) = match (desired, observed) {
        (_, Some(_)) if !removing => (
            true,
            ConditionReason::Exists,
            "the network exists".to_owned(),
        ),
        (true, _) => (
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
        (_, false, Some(_)) if removing => (
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
    let mut condition = |kind, holds, reason, message: String| {
        make_condition(previous_conditions, texts, kind, holds, reason, &message)
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
        stack: world
            .desired
            .networks
            .get(name)
            .map(|d| &*d.definition)
            .or(observed.map(|o| &o.definition))
            .and_then(|d| stack_of(d.labels.get(crate::compose::stack::NAMESPACE_LABEL))),
    }
}

/// Whether two status files differ in anything but `generatedAt` (no rewrite needed if not).
pub fn same_content(a: &StatusFile, b: &StatusFile) -> bool {
    a.services == b.services
        && a.networks == b.networks
        && a.errors == b.errors
        && a.source == b.source
        && a.warnings == b.warnings
}

/// Replaces `path` atomically: write a temporary file in the same directory, fsync it, rename
/// it over the old one, fsync the directory. Readers see the old or the new file, never half.
pub fn write_atomic(path: &Path, status: &StatusFile) -> Result<(), StatusError> {
    crate::atomic_file::replace_with(path, ".status-", |out| {
        serde_json::to_writer_pretty(&mut *out, status)?;
        out.write_all(b"\n")
    })
    .map_err(|source| StatusError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Reads a status file written before (to keep condition transition times across restarts).
pub fn read(path: &Path) -> Option<StatusFile> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::desired::DesiredObject;
    use crate::desired::definition::{definition_hash, tests::sample_service};
    use crate::docker::{EngineValue, ObservedNode, Ownership};

    fn task(id: &str, slot: u64, state: &str, desired: &str, ip: &str) -> ObservedTask {
        ObservedTask {
            id: id.into(),
            service_id: "svc".into(),
            slot: Some(slot),
            node_id: Some("n1".into()),
            state: EngineValue::parse("state", state),
            desired_state: EngineValue::parse("desired", desired),
            message: "".into(),
            error: (state == "failed").then(|| "exit 1".into()),
            exit_code: None,
            timestamp: None,
            template: None,
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
        Arc::make_mut(&mut world.desired).services.insert(
            "quote".into(),
            DesiredObject {
                definition: Arc::new(definition.clone()),
                hash: hash.as_str().into(),
                source_file: "a.yaml".into(),
                instance: crate::desired::definition::DEFAULT_INSTANCE.into(),
                policy: Default::default(),
                revision: None,
            },
        );
        world.observed.services.insert(
            "quote".into(),
            Arc::new(ObservedService {
                id: "svc".into(),
                version: 1,
                definition: definition.into(),
                ownership: Ownership::from_labels(&Ownership::labels(
                    &hash,
                    "a.yaml",
                    crate::desired::definition::DEFAULT_INSTANCE,
                )),
                virtual_ips: vec![],
                update_status: None,
                revision: Default::default(),
            }),
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
        world.observed.tasks = Arc::new(tasks);
        world
    }

    fn condition(status: &ServiceStatus, kind: ConditionType) -> &Condition {
        status.conditions.iter().find(|c| c.kind == kind).unwrap()
    }

    /// [`world`] with `quote` a replicated job of 2 completions.
    fn job_world(tasks: Vec<ObservedTask>) -> WorldState {
        let mut w = world(tasks);
        let mode = Mode::ReplicatedJob {
            max_concurrent: 2,
            total_completions: 2,
        };
        let desired = Arc::make_mut(&mut w.desired)
            .services
            .get_mut("quote")
            .unwrap();
        Arc::make_mut(&mut desired.definition).mode = mode.clone();
        Arc::make_mut(&mut w.observed.service_mut("quote").unwrap().definition).mode = mode;
        w
    }

    fn reasons(status: &ServiceStatus) -> Vec<(ConditionType, ConditionStatus, ConditionReason)> {
        status
            .conditions
            .iter()
            .map(|c| (c.kind, c.status, c.reason))
            .collect()
    }

    #[test]
    fn a_job_is_running_then_completed_or_failed_never_unavailable() {
        use ConditionStatus::{False, True};
        use ConditionType::{Degraded, Progressing, Ready};
        let now = "2026-01-01T00:00:00Z";
        let running = job_world(vec![
            task("t1", 1, "complete", "complete", "10.0.1.7"),
            task("t2", 2, "running", "complete", "10.0.1.8"),
        ]);
        let status = build(&running, Path::new("/specs"), None, now);
        assert_eq!(
            reasons(&status.services["quote"]),
            [
                (Ready, False, ConditionReason::JobRunning),
                (Progressing, True, ConditionReason::JobRunning),
                (Degraded, False, ConditionReason::AsExpected),
            ]
        );
        assert_eq!(
            &*condition(&status.services["quote"], Progressing).message,
            "1/2 completed, 1 running"
        );
        let done = job_world(vec![
            task("t1", 1, "complete", "complete", "10.0.1.7"),
            task("t2", 2, "complete", "complete", "10.0.1.8"),
        ]);
        let status = build(&done, Path::new("/specs"), None, now);
        assert_eq!(
            reasons(&status.services["quote"]),
            [
                (Ready, True, ConditionReason::Completed),
                (Progressing, False, ConditionReason::Converged),
                (Degraded, False, ConditionReason::AsExpected),
            ]
        );
        let failed = job_world(vec![
            task("t1", 1, "complete", "complete", "10.0.1.7"),
            task("t2", 2, "failed", "shutdown", "10.0.1.8"),
            task("t3", 2, "ready", "complete", "10.0.1.9"),
        ]);
        let status = build(&failed, Path::new("/specs"), None, now);
        let quote = &status.services["quote"];
        assert_eq!(
            (
                condition(quote, Ready).status,
                condition(quote, Ready).reason
            ),
            (False, ConditionReason::ReplicasUnavailable)
        );
        assert_eq!(
            (
                condition(quote, Degraded).status,
                condition(quote, Degraded).reason
            ),
            (True, ConditionReason::TasksFailing)
        );
        assert!(
            condition(quote, Degraded)
                .message
                .starts_with("exit 1 (task t2"),
            "{}",
            condition(quote, Degraded).message
        );
    }

    #[test]
    fn a_scheduled_job_lists_its_last_runs_newest_first() {
        let run = |id: &str, state: &str, desired: &str, template: &str, at: &str| ObservedTask {
            template: Some(template.into()),
            timestamp: Some(at.into()),
            ..task(id, 1, state, desired, "10.0.1.7")
        };
        let mut tasks = vec![
            run("a", "complete", "complete", "r1", "2026-01-01T00:00:01Z"),
            run("b", "failed", "shutdown", "r2", "2026-01-01T00:01:01Z"),
            run("c", "complete", "complete", "r3", "2026-01-01T00:02:01Z"),
            run("d", "running", "complete", "r4", "2026-01-01T00:03:01Z"),
        ];
        for i in 0..4 {
            tasks.push(run(
                &format!("old{i}"),
                "complete",
                "complete",
                &format!("r0{i}"),
                "2025-12-31T00:00:00Z",
            ));
        }
        let mut w = job_world(tasks);
        let desired = Arc::make_mut(&mut w.desired)
            .services
            .get_mut("quote")
            .unwrap();
        desired.policy.schedule = Some(Box::new(crate::desired::ScheduleSpec {
            schedule: "@hourly".into(),
            time_zone: None,
            concurrency: Default::default(),
            starting_deadline: None,
        }));
        w.observed.service_mut("quote").unwrap().revision.updated_at =
            Some("2026-01-01T00:03:00Z".into());
        let status = build(&w, Path::new("/specs"), None, "2026-01-01T00:03:02Z");
        let schedule = status.services["quote"].schedule.clone().unwrap();
        assert_eq!(
            schedule.last_schedule_time.as_deref(),
            Some("2026-01-01T00:03:00Z")
        );
        assert_eq!(
            schedule.last_successful_time.as_deref(),
            Some("2026-01-01T00:02:01Z")
        );
        let outcomes: Vec<RunOutcome> = schedule.runs.iter().map(|r| r.outcome).collect();
        assert_eq!(
            outcomes,
            [
                RunOutcome::Running,
                RunOutcome::Completed,
                RunOutcome::Failed,
                RunOutcome::Completed,
                RunOutcome::Completed,
            ],
            "the last 5 of 8 runs"
        );
        // A job without a schedule has no such part.
        let plain = build(
            &job_world(vec![]),
            Path::new("/specs"),
            None,
            "2026-01-01T00:00:00Z",
        );
        assert_eq!(plain.services["quote"].schedule, None);
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
        assert_eq!(
            quote.endpoints.capacity(),
            3,
            "room for the live tasks only: the status is kept until the next pass"
        );
        assert_eq!(quote.endpoints[0].node.as_deref(), Some("node-1"));
        assert_eq!(quote.endpoints[0].addresses[0].ip, "10.0.1.7");
        let (first, second) = (&quote.endpoints[0], &quote.endpoints[1]);
        assert!(
            Arc::ptr_eq(&first.state, &second.state)
                && Arc::ptr_eq(first.node.as_ref().unwrap(), second.node.as_ref().unwrap()),
            "one text per state and node within a status"
        );
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
    fn services_in_the_same_condition_share_its_message() {
        let mut w = world(vec![task("t1", 1, "running", "running", "10.0.1.7")]);
        let quote = w.desired.services["quote"].clone();
        Arc::make_mut(&mut w.desired)
            .services
            .insert("quote-2".into(), quote);
        let observed = Arc::clone(&w.observed.services["quote"]);
        w.observed.services.insert("quote-2".into(), observed);
        let status = build(&w, Path::new("/specs"), None, "2026-01-01T00:00:00Z");
        let (a, b) = (&status.services["quote"], &status.services["quote-2"]);
        for kind in [
            ConditionType::Ready,
            ConditionType::Progressing,
            ConditionType::Degraded,
        ] {
            let (a, b) = (condition(a, kind), condition(b, kind));
            assert_eq!(a.message, b.message);
            assert!(Arc::ptr_eq(&a.message, &b.message), "{kind:?}: one text");
        }
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
        assert_eq!(&*degraded.message, "exit 1 (task t2)");
    }

    /// A task of the given spec fingerprint, for the rollout tests.
    fn versioned(id: &str, slot: u64, state: &str, desired: &str, spec: &str) -> ObservedTask {
        ObservedTask {
            template: Some(spec.into()),
            timestamp: Some(format!("2026-01-01T00:00:0{slot}Z")),
            ..task(id, slot, state, desired, "10.0.1.1")
        }
    }

    /// The service of [`world`], its template at fingerprint `spec`, last changed at `since`,
    /// with swarm's update state.
    fn rolling(
        tasks: Vec<ObservedTask>,
        spec: &str,
        since: &str,
        update: Option<(UpdateState, &str)>,
    ) -> WorldState {
        let mut w = world(tasks);
        let service = w.observed.service_mut("quote").unwrap();
        service.revision = crate::docker::ServiceRevision {
            template: Some(spec.to_owned()),
            created_at: Some("2025-12-31T00:00:00Z".into()),
            updated_at: Some(since.to_owned()),
            previous_mounts: Vec::new(),
        };
        service.update_status = update.map(|(state, message)| {
            Box::new(crate::docker::UpdateStatus {
                state,
                message: message.to_owned(),
                started_at: Some(since.to_owned()),
            })
        });
        w
    }

    fn conditions(
        status: &ServiceStatus,
    ) -> Vec<(ConditionType, ConditionStatus, ConditionReason)> {
        status
            .conditions
            .iter()
            .map(|c| (c.kind, c.status, c.reason))
            .collect()
    }

    use ConditionStatus::{False, True};
    use ConditionType::{Degraded, Progressing, Ready};

    #[test]
    fn a_rolling_update_is_progressing_with_counts_until_every_task_runs_the_new_spec() {
        let now = "2026-01-01T00:01:00Z";
        let since = "2026-01-01T00:00:00Z";
        // One task replaced, one starting (its healthcheck has not passed), one old.
        let w = rolling(
            vec![
                versioned("n1", 1, "running", "running", "new"),
                versioned("n2", 2, "starting", "running", "new"),
                versioned("o2", 2, "shutdown", "shutdown", "old"),
                versioned("o3", 3, "running", "running", "old"),
            ],
            "new",
            since,
            Some((UpdateState::UPDATING, "update in progress")),
        );
        let status = build(&w, Path::new("/specs"), None, now);
        let quote = &status.services["quote"];
        assert_eq!(
            conditions(quote),
            [
                (Ready, False, ConditionReason::ReplicasUnavailable),
                (Progressing, True, ConditionReason::RollingUpdate),
                (Degraded, False, ConditionReason::AsExpected),
            ]
        );
        assert_eq!(
            &*condition(quote, Progressing).message,
            "1/3 updated, 2 running"
        );
        assert_eq!((quote.running_replicas, quote.updated_replicas), (2, 1));

        // Three tasks run, but one is the old spec's: not ready, still rolling.
        let w = rolling(
            vec![
                versioned("n1", 1, "running", "running", "new"),
                versioned("n2", 2, "running", "running", "new"),
                versioned("o3", 3, "running", "running", "old"),
            ],
            "new",
            since,
            Some((UpdateState::UPDATING, "update in progress")),
        );
        let quote = &build(&w, Path::new("/specs"), None, now).services["quote"];
        assert_eq!(
            conditions(quote)[..2],
            [
                (Ready, False, ConditionReason::ReplicasOutdated),
                (Progressing, True, ConditionReason::RollingUpdate),
            ]
        );
        assert_eq!(
            &*condition(quote, Ready).message,
            "2/3 replicas run the current spec"
        );

        // Swarm says completed and every task is the new spec's: ready.
        let w = rolling(
            vec![
                versioned("n1", 1, "running", "running", "new"),
                versioned("n2", 2, "running", "running", "new"),
                versioned("n3", 3, "running", "running", "new"),
                versioned("o3", 3, "shutdown", "shutdown", "old"),
            ],
            "new",
            since,
            Some((UpdateState::COMPLETED, "update completed")),
        );
        let quote = &build(&w, Path::new("/specs"), None, now).services["quote"];
        assert_eq!(
            conditions(quote),
            [
                (Ready, True, ConditionReason::AllReplicasRunning),
                (Progressing, False, ConditionReason::Converged),
                (Degraded, False, ConditionReason::AsExpected),
            ]
        );
    }

    #[test]
    fn a_paused_update_is_degraded_with_the_failing_tasks_own_error() {
        let mut failed = versioned("n1failedtask0", 1, "rejected", "shutdown", "new");
        failed.error = Some("No such image: quote:missing".into());
        let w = rolling(
            vec![
                failed,
                versioned("o1", 1, "running", "running", "old"),
                versioned("o2", 2, "running", "running", "old"),
                versioned("o3", 3, "running", "running", "old"),
            ],
            "new",
            "2026-01-01T00:00:00Z",
            Some((
                UpdateState::PAUSED,
                "update paused due to failure or early termination of task n1failedtask0",
            )),
        );
        let quote = &build(&w, Path::new("/specs"), None, "2026-01-01T00:01:00Z").services["quote"];
        assert_eq!(
            conditions(quote),
            [
                (Ready, False, ConditionReason::ReplicasOutdated),
                (Progressing, False, ConditionReason::Converged),
                (Degraded, True, ConditionReason::UpdatePaused),
            ]
        );
        assert_eq!(
            &*condition(quote, Degraded).message,
            "update paused due to failure or early termination of task n1failedtask0; \
             last task error: No such image: quote:missing (task n1failedtask, \
             at 2026-01-01T00:00:01Z)"
        );
    }

    #[test]
    fn a_rolled_back_update_is_degraded_and_not_ready_although_the_old_tasks_run() {
        let mut failed = versioned("n1", 1, "failed", "shutdown", "new");
        failed.error = Some("task: non-zero exit (1)".into());
        failed.exit_code = Some(1);
        let w = rolling(
            vec![
                failed,
                versioned("o1", 1, "running", "running", "old"),
                versioned("o2", 2, "running", "running", "old"),
                versioned("o3", 3, "running", "running", "old"),
            ],
            // After a rollback the service's template is the previous one again.
            "old",
            "2026-01-01T00:00:00Z",
            Some((UpdateState::ROLLBACK_COMPLETED, "rollback completed")),
        );
        let quote = &build(&w, Path::new("/specs"), None, "2026-01-01T00:01:00Z").services["quote"];
        assert_eq!(
            conditions(quote),
            [
                (Ready, False, ConditionReason::ReplicasOutdated),
                (Progressing, False, ConditionReason::Converged),
                (Degraded, True, ConditionReason::RolledBack),
            ]
        );
        // The exit code is already in the error: not repeated.
        assert_eq!(
            &*condition(quote, Degraded).message,
            "rollback completed; last task error: task: non-zero exit (1) \
             (task n1, at 2026-01-01T00:00:01Z)"
        );
    }

    #[test]
    fn failures_of_an_older_spec_are_history() {
        let mut failed = versioned("f1", 1, "failed", "shutdown", "old");
        failed.error = Some("No such image: quote:missing".into());
        let w = rolling(
            vec![
                failed,
                versioned("n1", 1, "running", "running", "new"),
                versioned("n2", 2, "running", "running", "new"),
            ],
            "new",
            "2026-01-01T00:00:00Z",
            None,
        );
        let quote = &build(&w, Path::new("/specs"), None, "2026-01-01T00:01:00Z").services["quote"];
        // Two of three run: scaling, but the failure is not this spec's.
        assert_eq!(
            conditions(quote),
            [
                (Ready, False, ConditionReason::ReplicasUnavailable),
                (Progressing, True, ConditionReason::Scaling),
                (Degraded, False, ConditionReason::AsExpected),
            ]
        );
    }

    #[test]
    fn a_rollout_past_its_deadline_is_degraded_and_the_spec_can_extend_the_deadline() {
        let mut failing = versioned("n1", 1, "failed", "shutdown", "new");
        failing.error = Some("task: non-zero exit (3)".into());
        let tasks = vec![failing, versioned("n2", 2, "starting", "running", "new")];
        // The spec changed long ago: the clock starts when Progressing became true.
        let w = rolling(tasks.clone(), "new", "2025-06-01T00:00:00Z", None);
        let build_at = |w: &WorldState, previous: &StatusFile, now: &str| {
            build(w, Path::new("/specs"), Some(previous), now)
        };
        let first = build(&w, Path::new("/specs"), None, "2026-01-01T00:00:00Z");
        assert_eq!(
            condition(&first.services["quote"], Degraded).reason,
            ConditionReason::TasksFailing
        );
        // Within the default ten minutes: failing tasks, not yet overdue.
        let later = build_at(&w, &first, "2026-01-01T00:09:00Z");
        assert_eq!(
            condition(&later.services["quote"], Degraded).reason,
            ConditionReason::TasksFailing
        );
        let overdue = build_at(&w, &later, "2026-01-01T00:10:01Z");
        let degraded = condition(&overdue.services["quote"], Degraded);
        assert_eq!(degraded.reason, ConditionReason::ProgressDeadlineExceeded);
        assert_eq!(
            &*degraded.message,
            "the rollout has not finished within 10m (since 2026-01-01T00:00:00Z): \
             0/3 updated, 0 running; last task error: task: non-zero exit (3) \
             (task n1, at 2026-01-01T00:00:01Z)"
        );
        let mut w = rolling(tasks, "new", "2025-06-01T00:00:00Z", None);
        Arc::make_mut(&mut w.desired)
            .progress_deadlines
            .insert("quote".into(), std::time::Duration::from_secs(3600));
        let extended = build_at(&w, &later, "2026-01-01T00:10:01Z");
        assert_eq!(
            condition(&extended.services["quote"], Degraded).reason,
            ConditionReason::TasksFailing
        );
        // Swarm's own update start counts even on the first look.
        let w = rolling(
            vec![versioned("o1", 1, "running", "running", "old")],
            "new",
            "2026-01-01T00:00:00Z",
            Some((UpdateState::UPDATING, "update in progress")),
        );
        let first_look = build(&w, Path::new("/specs"), None, "2026-01-01T00:11:00Z");
        assert_eq!(
            condition(&first_look.services["quote"], Degraded).reason,
            ConditionReason::ProgressDeadlineExceeded
        );
    }

    #[test]
    fn right_after_our_own_update_the_old_tasks_are_not_called_ready() {
        // What the cache holds between our update and reading the service back.
        let w = rolling(
            vec![
                versioned("o1", 1, "running", "running", "old"),
                versioned("o2", 2, "running", "running", "old"),
                versioned("o3", 3, "running", "running", "old"),
            ],
            crate::docker::UNREAD_TEMPLATE,
            "2026-01-01T00:00:00Z",
            None,
        );
        let quote = &build(&w, Path::new("/specs"), None, "2026-01-01T00:00:01Z").services["quote"];
        assert_eq!(
            conditions(quote)[..2],
            [
                (Ready, False, ConditionReason::ReplicasOutdated),
                (Progressing, True, ConditionReason::RollingUpdate),
            ]
        );
    }

    #[test]
    fn a_spec_not_yet_written_is_not_ready_whatever_runs() {
        let mut w = rolling(
            vec![
                versioned("o1", 1, "running", "running", "old"),
                versioned("o2", 2, "running", "running", "old"),
                versioned("o3", 3, "running", "running", "old"),
            ],
            "old",
            "2026-01-01T00:00:00Z",
            Some((UpdateState::COMPLETED, "update completed")),
        );
        w.observed.service_mut("quote").unwrap().ownership.spec_hash = Some("0ld".into());
        let quote = &build(&w, Path::new("/specs"), None, "2026-01-01T00:30:00Z").services["quote"];
        assert_eq!(
            conditions(quote),
            [
                (Ready, False, ConditionReason::ReplicasOutdated),
                (Progressing, True, ConditionReason::RollingUpdate),
                // Nothing started yet: the deadline does not run.
                (Degraded, False, ConditionReason::AsExpected),
            ]
        );
        assert_eq!(quote.observed_spec_hash.as_deref(), Some("0ld"));
        assert_ne!(quote.spec_hash, quote.observed_spec_hash);
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
            "2026-01-01T00:00:00Z".into()
        );
        // One text for every condition of a build, kept by reference, not copied.
        let times = |status: &StatusFile| -> Vec<Arc<str>> {
            status.services["quote"]
                .conditions
                .iter()
                .map(|c| c.last_transition_time.clone())
                .collect()
        };
        let (before, after) = (times(&first), times(&second));
        assert!(before.iter().all(|t| Arc::ptr_eq(t, &before[0])));
        assert!(before.iter().zip(&after).all(|(b, a)| Arc::ptr_eq(b, a)));
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
            "2026-01-01T00:09:00Z".into()
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
                crate::control::world::ObjectOutcome {
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
            assert_eq!(&*degraded.message, "what blocks it");
        }

        // A network whose spec is gone waits for the services still attached to it.
        let mut w = world(vec![]);
        // The directory holds specs (the service's), so what it no longer lists is removed.
        Arc::make_mut(&mut w.desired).prune_allowed = true;
        w.observed.networks.insert(
            "old_net".into(),
            crate::docker::ObservedNetwork::owned_for_test("old_net", "net.yaml"),
        );
        w.outcomes.insert(
            ObjectKey::network("old_net"),
            crate::control::world::ObjectOutcome {
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

    /// Without specs to compare with (`get` without `--specs`, an empty directory) an owned
    /// network is held, not being removed: it shows as existing.
    #[test]
    fn a_network_that_nothing_removes_is_not_reported_as_being_removed() {
        let mut w = world(vec![]);
        w.desired = Arc::default();
        w.observed.networks.insert(
            "kept_net".into(),
            crate::docker::ObservedNetwork::owned_for_test("kept_net", "net.yaml"),
        );
        let status = build(&w, Path::new("/specs"), None, "2026-01-01T00:00:00Z");
        let reasons: Vec<_> = status.networks["kept_net"]
            .conditions
            .iter()
            .map(|c| (c.kind, c.status, c.reason))
            .collect();
        assert_eq!(
            reasons,
            [
                (
                    ConditionType::Ready,
                    ConditionStatus::True,
                    ConditionReason::Exists
                ),
                (
                    ConditionType::Progressing,
                    ConditionStatus::False,
                    ConditionReason::Converged
                ),
                (
                    ConditionType::Degraded,
                    ConditionStatus::False,
                    ConditionReason::AsExpected
                ),
            ]
        );
        // With specs present, the same network is being removed.
        Arc::make_mut(&mut w.desired).prune_allowed = true;
        let status = build(&w, Path::new("/specs"), None, "2026-01-01T00:00:00Z");
        assert_eq!(
            status.networks["kept_net"].conditions[1].reason,
            ConditionReason::Removing
        );
    }
}
