//! How a job service's current run stands (running, completed, failed), from its tasks.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::desired::definition::Mode;
use crate::docker::{ObservedService, ObservedTask, TaskState};

use super::{latest_failure, runs_current_spec};

/// The current run of a job: the tasks of the spec the swarm holds now (each write of a job's
/// spec starts a new run, and its tasks carry the new template).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum JobRun {
    /// Tasks still run or wait to.
    Running {
        /// Tasks of this run that completed.
        completed: u64,
        /// Completions the run needs (`None`: one per eligible node).
        target: Option<u64>,
        /// Tasks running now.
        running: u64,
    },
    /// Every task the run needs completed, none is left.
    Completed {
        /// Tasks that completed.
        completed: u64,
    },
    /// A task of this run failed: its error, as for services.
    Failed(String),
}

/// Task states after which a task does nothing more.
fn finished(task: &ObservedTask) -> bool {
    [
        TaskState::COMPLETE,
        TaskState::FAILED,
        TaskState::REJECTED,
        TaskState::SHUTDOWN,
        TaskState::REMOVE,
        TaskState::ORPHANED,
    ]
    .iter()
    .any(|s| task.state.is(s))
        || task.desired_state.is(&TaskState::SHUTDOWN)
        || task.desired_state.is(&TaskState::REMOVE)
}

impl JobRun {
    /// The run of `service` (a job of `mode`) as `tasks` (its own) show it.
    pub(super) fn observe(mode: &Mode, service: &ObservedService, tasks: &[&ObservedTask]) -> Self {
        let current: Vec<&ObservedTask> = tasks
            .iter()
            .copied()
            .filter(|t| runs_current_spec(service, t))
            .collect();
        let completed = current
            .iter()
            .filter(|t| t.state.is(&TaskState::COMPLETE))
            .count() as u64;
        let active = current.iter().filter(|t| !finished(t)).count();
        let target = match mode {
            Mode::ReplicatedJob {
                total_completions, ..
            } => Some(*total_completions),
            _ => None,
        };
        // A global job is done when each node's task completed: none is left to run.
        let enough = target.map_or(completed > 0, |t| completed >= t);
        if active == 0 && enough {
            return JobRun::Completed { completed };
        }
        if let Some(failure) = latest_failure(current.iter().copied()) {
            return JobRun::Failed(failure);
        }
        JobRun::Running {
            completed,
            target,
            running: current
                .iter()
                .filter(|t| t.state.is(&TaskState::RUNNING))
                .count() as u64,
        }
    }

    /// `completed/target completed, running running`.
    pub(super) fn counts(&self) -> String {
        match self {
            JobRun::Running {
                completed,
                target,
                running,
            } => match target {
                Some(target) => format!("{completed}/{target} completed, {running} running"),
                None => format!("{completed} completed, {running} running"),
            },
            JobRun::Completed { completed } => format!("{completed} completed"),
            JobRun::Failed(_) => "a task failed".to_owned(),
        }
    }
}

/// How one run of a job ended, as the status lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunOutcome {
    /// Its tasks still run.
    Running,
    /// Every task completed.
    Completed,
    /// A task failed.
    Failed,
}

/// One run of a job in the status: its tasks share one task template (each run is one write
/// of the service, which changes the template).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    /// When its last task changed state (RFC 3339).
    pub at: Option<String>,
    /// How it ended.
    pub outcome: RunOutcome,
}

/// The schedule part of a scheduled job's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleStatus {
    /// When the last run started: the service's last write (RFC 3339).
    pub last_schedule_time: Option<String>,
    /// When the newest run that completed ended.
    pub last_successful_time: Option<String>,
    /// The last runs the swarm still has tasks of (at most 5), newest first.
    pub runs: Vec<RunRecord>,
}

/// The last (at most 5) runs in `tasks` (a service's own), newest first. Swarm keeps a few
/// old tasks per slot (its task history limit), so older runs fall off.
pub(super) fn history(tasks: &[&ObservedTask]) -> Vec<RunRecord> {
    let mut runs: BTreeMap<Option<&str>, Vec<&ObservedTask>> = BTreeMap::new();
    for task in tasks {
        runs.entry(task.template.as_deref()).or_default().push(task);
    }
    let mut records: Vec<RunRecord> = runs
        .values()
        .map(|tasks| {
            let outcome = if tasks.iter().any(|t| !finished(t)) {
                RunOutcome::Running
            } else if tasks
                .iter()
                .any(|t| t.state.is(&TaskState::FAILED) || t.state.is(&TaskState::REJECTED))
            {
                RunOutcome::Failed
            } else {
                RunOutcome::Completed
            };
            RunRecord {
                at: tasks.iter().filter_map(|t| t.timestamp.clone()).max(),
                outcome,
            }
        })
        .collect();
    records.sort_by(|a, b| b.at.cmp(&a.at));
    records.truncate(5);
    records
}
