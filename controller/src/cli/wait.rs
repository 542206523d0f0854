//! `swarm-operator wait`: until the named objects are ready (or deleted), with live progress
//! on a terminal and plain lines in a pipe.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::args::{AgeArgs, positive_duration};
use super::{CliError, connect};
use crate::applied_revision::{self, RevisionRecord, WaitVerdict};
use crate::cli::get::summary;
use crate::cli::live_status::{LiveStatus, Snapshot};
use crate::report::status::{Condition, ConditionReason, ConditionStatus, ConditionType};
use crate::revision::Revision;

/// What to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// `Ready` holds.
    Ready,
    /// The object is gone from the swarm.
    Deleted,
    /// A job's current run completed (`Ready`, reason `Completed`).
    Complete,
}

/// Which objects to wait for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    /// These names.
    Named(Vec<String>),
    /// Every object of the status at the first look (the spec directory's and the owned ones).
    /// With a spec directory, an owned object without a spec is waited for until it is
    /// deleted, whatever the goal: the operator removes it, and a CI job that removed its
    /// spec expects it gone.
    All,
}

/// Each object to wait for, with the goal it is waited for, as `snapshot` (the first look)
/// shows them.
pub fn objectives(targets: Targets, goal: Goal, snapshot: &Snapshot) -> Vec<(String, Goal)> {
    match targets {
        Targets::Named(names) => names.into_iter().map(|name| (name, goal)).collect(),
        Targets::All => snapshot
            .status
            .services
            .keys()
            .chain(snapshot.status.networks.keys())
            .map(|name| {
                let spec_gone = snapshot
                    .specs
                    .as_ref()
                    .is_some_and(|specs| !specs.specified.contains(name));
                let goal = if spec_gone { Goal::Deleted } else { goal };
                (name.clone(), goal)
            })
            .collect(),
    }
}

/// Where one object stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It reached the goal.
    Reached,
    /// Not yet.
    Pending(Progress),
    /// It will not get there without help: the reason and what the status says (with the
    /// failing task's error).
    Failed {
        /// The Degraded reason.
        reason: ConditionReason,
        /// Its message.
        message: String,
    },
}

/// How far a pending object got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Tasks expected (0 for networks and unknown objects).
    pub expected: u64,
    /// Running tasks of the current spec.
    pub updated: u64,
    /// Running tasks.
    pub running: u64,
    /// The telling condition's reason (`RollingUpdate`, `Scaling`, …) or what is awaited.
    pub status: String,
}

impl Progress {
    fn line(&self) -> String {
        if self.expected == 0 {
            self.status.clone()
        } else {
            format!(
                "{}/{} updated, {} running ({})",
                self.updated, self.expected, self.running, self.status
            )
        }
    }
}

/// How `name` stands against `goal` in `snapshot`.
pub fn verdict(goal: Goal, name: &str, snapshot: &Snapshot) -> Verdict {
    let pending = |status: &str| {
        Verdict::Pending(Progress {
            expected: 0,
            updated: 0,
            running: 0,
            status: status.to_owned(),
        })
    };
    if goal == Goal::Deleted {
        if !snapshot.existing.contains(name) {
            return Verdict::Reached;
        }
        let Some(specs) = &snapshot.specs else {
            return pending("still exists");
        };
        if let Some((reason, message)) = specs.kept.get(name) {
            // The operator will not remove it: waiting longer would only time out.
            return Verdict::Failed {
                reason: *reason,
                message: message.clone(),
            };
        }
        return if specs.specified.contains(name) {
            pending("still exists (it has a spec)")
        } else {
            pending("being removed")
        };
    }
    let (conditions, progress) = if let Some(service) = snapshot.status.services.get(name) {
        let progress = Progress {
            expected: service
                .desired_replicas
                .unwrap_or(service.endpoints.len() as u64),
            updated: service.updated_replicas,
            running: service.running_replicas,
            status: summary(&service.conditions),
        };
        (&service.conditions, progress)
    } else if let Some(network) = snapshot.status.networks.get(name) {
        let progress = Progress {
            expected: 0,
            updated: 0,
            running: 0,
            status: summary(&network.conditions),
        };
        (&network.conditions, progress)
    } else {
        return pending("not found");
    };
    let holds = |kind| {
        conditions
            .iter()
            .find(|c: &&Condition| c.kind == kind && c.status == ConditionStatus::True)
    };
    if let Some(degraded) = holds(ConditionType::Degraded) {
        // While swarm rolls out, failing tasks are its to handle (its failure action pauses,
        // rolls back or continues): its verdict is awaited.
        let swarm_decides = degraded.reason == ConditionReason::TasksFailing
            && holds(ConditionType::Progressing)
                .is_some_and(|p| p.reason == ConditionReason::RollingUpdate);
        if !swarm_decides {
            return Verdict::Failed {
                reason: degraded.reason,
                message: degraded.message.to_string(),
            };
        }
    }
    match holds(ConditionType::Ready) {
        Some(ready) if goal == Goal::Complete && ready.reason != ConditionReason::Completed => {
            // Ready but not completed: a service that runs on, never completes.
            Verdict::Failed {
                reason: ready.reason,
                message: "not a job (mode replicated-job or global-job): it never completes; wait --for ready".to_owned(),
            }
        }
        Some(_) => Verdict::Reached,
        None => Verdict::Pending(progress),
    }
}

/// How `wait` ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitOutcome {
    /// Every object reached the goal.
    Reached,
    /// These objects failed: name, reason, message.
    Failed(Vec<(String, ConditionReason, String)>),
    /// Time ran out; these objects were still pending: name, where they stood.
    TimedOut(Vec<(String, String)>),
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    /// A bar per object, redrawn in place (a terminal).
    Bars,
    /// A line per change (a pipe, a CI log).
    Lines,
}

impl Display {
    /// Bars on a terminal, lines elsewhere and under CI.
    pub fn detect() -> Display {
        use std::io::IsTerminal as _;
        if std::io::stdout().is_terminal() && std::env::var_os("CI").is_none() {
            Display::Bars
        } else {
            Display::Lines
        }
    }
}

/// Where an object stands against `goal`, in words: what a line or a bar shows.
fn describe(verdict: &Verdict, goal: Goal) -> String {
    match verdict {
        Verdict::Reached => match goal {
            Goal::Ready => "ready".to_owned(),
            Goal::Deleted => "deleted".to_owned(),
            Goal::Complete => "completed".to_owned(),
        },
        Verdict::Pending(progress) => progress.line(),
        Verdict::Failed { reason, message } => format!("failed: {reason}: {message}"),
    }
}

/// Shows each object's progress: bars redrawn in place, or a line whenever it changed.
struct Reporter {
    display: Display,
    bars: MultiProgress,
    bar: BTreeMap<String, ProgressBar>,
    shown: BTreeMap<String, String>,
}

impl Reporter {
    fn new(display: Display) -> Reporter {
        Reporter {
            display,
            bars: MultiProgress::with_draw_target(ProgressDrawTarget::stdout()),
            bar: BTreeMap::new(),
            shown: BTreeMap::new(),
        }
    }

    fn show(&mut self, name: &str, verdict: &Verdict, goal: Goal) {
        let line = describe(verdict, goal);
        if self.shown.get(name) == Some(&line) {
            return;
        }
        self.shown.insert(name.to_owned(), line.clone());
        match self.display {
            Display::Lines => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{name}: {line}");
                let _ = out.flush();
            }
            Display::Bars => {
                let bar = self.bar.entry(name.to_owned()).or_insert_with(|| {
                    let bar = self.bars.add(ProgressBar::new(0));
                    bar.set_style(
                        ProgressStyle::with_template("{prefix:>24} [{bar:30}] {msg}")
                            .expect("the template is valid")
                            .progress_chars("=> "),
                    );
                    bar.set_prefix(name.to_owned());
                    bar
                });
                match verdict {
                    Verdict::Pending(progress) => {
                        bar.set_length(progress.expected.max(1));
                        bar.set_position(progress.updated);
                        bar.set_message(line);
                    }
                    Verdict::Reached => {
                        let length = bar.length().unwrap_or(1).max(1);
                        bar.set_length(length);
                        bar.set_position(length);
                        bar.finish_with_message(line);
                    }
                    Verdict::Failed { .. } => bar.abandon_with_message(line),
                }
            }
        }
    }
}

/// How much longer than one task poll a failure is looked at before it is reported.
const FAILURE_SETTLE_MARGIN: Duration = Duration::from_millis(500);

/// Follows `view` until every target reached its goal (→ `Reached`; see [`objectives`]), one failed (→ `Failed`,
/// with every failure seen at that look), or `timeout` passed (→ `TimedOut`).
pub async fn wait(
    view: &mut LiveStatus,
    targets: Targets,
    goal: Goal,
    timeout: Duration,
    display: Display,
) -> WaitOutcome {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut reporter = Reporter::new(display);
    let objectives = objectives(targets, goal, &view.snapshot());
    if objectives.is_empty() {
        // `--all` over an instance with no objects: nothing can fail.
        println!("nothing to wait for: no services or networks");
        return WaitOutcome::Reached;
    }
    // A failure seen for the first time, and when: it is reported after one more task poll.
    let mut failing_since: Option<tokio::time::Instant> = None;
    loop {
        let snapshot = view.snapshot();
        let verdicts: Vec<(&String, Verdict)> = objectives
            .iter()
            .map(|(name, goal)| (name, verdict(*goal, name, &snapshot)))
            .collect();
        for ((name, verdict), (_, goal)) in verdicts.iter().zip(&objectives) {
            reporter.show(name, verdict, *goal);
        }
        let failed: Vec<(String, ConditionReason, String)> = verdicts
            .iter()
            .filter_map(|(name, v)| match v {
                Verdict::Failed { reason, message } => {
                    Some(((*name).clone(), *reason, message.clone()))
                }
                _ => None,
            })
            .collect();
        if failed.is_empty() {
            failing_since = None;
        } else {
            // Swarm's update state comes with the service's event; the failed task and its
            // own error (`No such image`, an exit code) with the next task poll. Reporting at
            // once would often leave the cause out of the one line a CI log shows.
            let since = *failing_since.get_or_insert_with(tokio::time::Instant::now);
            let settled = since + crate::cli::live_status::TASK_POLL + FAILURE_SETTLE_MARGIN;
            if tokio::time::Instant::now() >= settled.min(deadline) {
                return WaitOutcome::Failed(failed);
            }
            tokio::select! {
                () = view.changed() => {}
                () = tokio::time::sleep_until(settled.min(deadline)) => {}
            }
            continue;
        }
        let pending: Vec<(String, String)> = verdicts
            .iter()
            .filter_map(|(name, v)| match v {
                Verdict::Pending(progress) => Some(((*name).clone(), progress.line())),
                _ => None,
            })
            .collect();
        if pending.is_empty() {
            return WaitOutcome::Reached;
        }
        if tokio::time::Instant::now() >= deadline {
            return WaitOutcome::TimedOut(pending);
        }
        tokio::select! {
            () = view.changed() => {}
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// What `wait` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WaitFor {
    /// The `Ready` condition holds.
    Ready,
    /// The object is gone from the swarm.
    Deleted,
    /// A job's current run completed (exit 1 if it failed).
    Complete,
}

/// The arguments of `wait`.
#[derive(clap::Args)]
pub struct WaitArgs {
    /// Objects to wait for.
    #[arg(required_unless_present_any = ["all", "revision"], conflicts_with = "all")]
    pub names: Vec<String>,
    /// Every object of the instance. With `--specs`, an object whose spec is gone is
    /// waited for until the operator has removed it.
    #[arg(long)]
    pub all: bool,
    /// What to wait for.
    #[arg(long = "for", value_enum, required_unless_present = "revision")]
    pub goal: Option<WaitFor>,
    /// Wait until `run --source git` has applied this commit (40 hex digits): every object
    /// Ready at it, as the operator records it in the swarm. Exit 1 when the operator loaded
    /// it and then moved on to another commit before applying it (a newer push), 2 on
    /// timeout.
    #[arg(long, value_name = "SHA", conflicts_with_all = ["names", "all", "goal", "specs"])]
    pub revision: Option<Revision>,
    /// Give up after this long.
    #[arg(long, default_value = "5m", value_parser = positive_duration)]
    pub timeout: Duration,
    /// Compare the swarm with this spec directory: an object is ready only once the
    /// swarm runs its current spec (how CI waits after writing the specs).
    #[arg(long)]
    pub specs: Option<PathBuf>,
    /// As for `run`.
    #[arg(long, env = "SWARM_OPERATOR_INSTANCE", default_value = "default")]
    pub instance: String,
    #[command(flatten)]
    pub age: AgeArgs,
}

/// Waits; exit 0 reached, 1 an object failed (with its reason), 2 timed out.
pub async fn run(args: WaitArgs, context: Option<&str>) -> Result<ExitCode, CliError> {
    let WaitArgs {
        names,
        all,
        goal,
        revision,
        timeout,
        specs,
        instance,
        age,
    } = args;
    let identities = age.read()?;
    let api = connect(context).await?;
    if let Some(revision) = revision {
        return wait_for_revision(api, &instance, &revision, timeout).await;
    }
    let mut view = LiveStatus::open(api, &instance, specs.as_deref(), &identities).await?;
    let targets = if all {
        Targets::All
    } else {
        Targets::Named(names)
    };
    let goal = match goal.unwrap_or(WaitFor::Ready) {
        WaitFor::Ready => Goal::Ready,
        WaitFor::Deleted => Goal::Deleted,
        WaitFor::Complete => Goal::Complete,
    };
    match wait(&mut view, targets, goal, timeout, Display::detect()).await {
        WaitOutcome::Reached => Ok(ExitCode::SUCCESS),
        WaitOutcome::Failed(failed) => {
            for (name, reason, message) in failed {
                eprintln!("{name}: {reason}: {message}");
            }
            Ok(ExitCode::from(1))
        }
        WaitOutcome::TimedOut(pending) => {
            for (name, line) in pending {
                eprintln!(
                    "{name}: timed out after {}: {line}",
                    humantime::format_duration(timeout)
                );
            }
            Ok(ExitCode::from(2))
        }
    }
}

/// `wait --revision`: exit 0 applied, 1 moved past, 2 timed out.
async fn wait_for_revision(
    api: crate::docker::DockerEngine,
    instance: &str,
    revision: &Revision,
    timeout: Duration,
) -> Result<ExitCode, CliError> {
    let record = RevisionRecord::new(api, instance);
    let (verdict, last) = applied_revision::wait(&record, revision, timeout).await?;
    Ok(match verdict {
        WaitVerdict::Applied => {
            println!("{} applied: every object is ready at it", revision.short());
            ExitCode::SUCCESS
        }
        WaitVerdict::MovedPast(progress) => {
            eprintln!(
                "{}: the operator moved on to another commit before applying it ({progress})",
                revision.short()
            );
            ExitCode::from(1)
        }
        WaitVerdict::Pending => {
            let seen = if last.loaded.is_none() {
                format!(
                    "instance {instance:?} has recorded no commit (is it run with --source git?)"
                )
            } else {
                format!("{last}; a commit the operator skipped for a newer one is never applied")
            };
            eprintln!(
                "{}: not applied after {}: {seen}",
                revision.short(),
                humantime::format_duration(timeout)
            );
            ExitCode::from(2)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::live_status::SpecView;
    use crate::report::status::{ServiceStatus, StatusFile};
    use std::collections::BTreeSet;

    fn snapshot(conditions: &[(ConditionType, bool, ConditionReason)]) -> Snapshot {
        let service = ServiceStatus {
            desired_replicas: Some(3),
            running_replicas: 3,
            updated_replicas: 1,
            spec_hash: None,
            observed_spec_hash: None,
            created_at: None,
            conditions: conditions
                .iter()
                .map(|(kind, holds, reason)| Condition {
                    kind: *kind,
                    status: (*holds).into(),
                    reason: *reason,
                    message: format!("{reason} message").into(),
                    last_transition_time: "".into(),
                })
                .collect(),
            virtual_ips: vec![],
            endpoints: vec![],
            last_error: None,
            schedule: None,
            stack: None,
        };
        Snapshot {
            status: StatusFile {
                generated_at: String::new(),
                services: [("api".to_owned(), service)].into(),
                networks: BTreeMap::new(),
                errors: vec![],
                source: None,
                warnings: vec![],
            },
            existing: BTreeSet::from(["api".to_owned()]),
            specs: None,
        }
    }

    use ConditionReason as R;
    use ConditionType::{Degraded, Progressing, Ready};

    #[test]
    fn ready_is_reached_degraded_fails_and_a_rollout_is_pending_with_counts() {
        let ready = snapshot(&[
            (Ready, true, R::AllReplicasRunning),
            (Progressing, false, R::Converged),
            (Degraded, false, R::AsExpected),
        ]);
        assert_eq!(verdict(Goal::Ready, "api", &ready), Verdict::Reached);
        let rolling = snapshot(&[
            (Ready, false, R::ReplicasOutdated),
            (Progressing, true, R::RollingUpdate),
            (Degraded, false, R::AsExpected),
        ]);
        let Verdict::Pending(progress) = verdict(Goal::Ready, "api", &rolling) else {
            panic!("a rollout is pending");
        };
        assert_eq!(progress.line(), "1/3 updated, 3 running (RollingUpdate)");
        let paused = snapshot(&[
            (Ready, false, R::ReplicasOutdated),
            (Progressing, false, R::Converged),
            (Degraded, true, R::UpdatePaused),
        ]);
        assert_eq!(
            verdict(Goal::Ready, "api", &paused),
            Verdict::Failed {
                reason: R::UpdatePaused,
                message: "UpdatePaused message".into()
            }
        );
    }

    #[test]
    fn failing_tasks_during_a_rollout_wait_for_swarms_verdict_but_fail_otherwise() {
        let rolling = snapshot(&[
            (Ready, false, R::ReplicasUnavailable),
            (Progressing, true, R::RollingUpdate),
            (Degraded, true, R::TasksFailing),
        ]);
        assert!(matches!(
            verdict(Goal::Ready, "api", &rolling),
            Verdict::Pending(_)
        ));
        let settled = snapshot(&[
            (Ready, false, R::ReplicasUnavailable),
            (Progressing, true, R::Scaling),
            (Degraded, true, R::TasksFailing),
        ]);
        assert!(matches!(
            verdict(Goal::Ready, "api", &settled),
            Verdict::Failed {
                reason: R::TasksFailing,
                ..
            }
        ));
    }

    #[test]
    fn complete_is_reached_by_a_completed_job_and_fails_for_a_failed_one_or_a_service() {
        use ConditionReason::{
            AllReplicasRunning, AsExpected, Completed, JobRunning, TasksFailing,
        };
        use ConditionType::{Degraded, Progressing, Ready};
        let running = snapshot(&[
            (Ready, false, JobRunning),
            (Progressing, true, JobRunning),
            (Degraded, false, AsExpected),
        ]);
        assert!(matches!(
            verdict(Goal::Complete, "api", &running),
            Verdict::Pending(_)
        ));
        let done = snapshot(&[(Ready, true, Completed), (Degraded, false, AsExpected)]);
        assert_eq!(verdict(Goal::Complete, "api", &done), Verdict::Reached);
        let failed = snapshot(&[(Ready, false, TasksFailing), (Degraded, true, TasksFailing)]);
        assert!(matches!(
            verdict(Goal::Complete, "api", &failed),
            Verdict::Failed {
                reason: TasksFailing,
                ..
            }
        ));
        let service = snapshot(&[(Ready, true, AllReplicasRunning)]);
        assert!(matches!(
            verdict(Goal::Complete, "api", &service),
            Verdict::Failed { .. }
        ));
        assert_eq!(verdict(Goal::Ready, "api", &service), Verdict::Reached);
    }

    #[test]
    fn deleted_is_reached_once_the_swarm_has_no_such_object() {
        let mut gone = snapshot(&[]);
        assert!(matches!(
            verdict(Goal::Deleted, "api", &gone),
            Verdict::Pending(_)
        ));
        gone.existing.clear();
        assert_eq!(verdict(Goal::Deleted, "api", &gone), Verdict::Reached);
        assert!(matches!(
            verdict(Goal::Ready, "nothing", &gone),
            Verdict::Pending(_)
        ));
    }

    /// `api` (ready) has a spec; `old`, owned and running, has none any more.
    fn with_old_spec_removed() -> Snapshot {
        let mut look = snapshot(&[
            (Ready, true, R::AllReplicasRunning),
            (Progressing, false, R::Converged),
            (Degraded, false, R::AsExpected),
        ]);
        let api = look.status.services["api"].clone();
        look.status.services.insert("old".to_owned(), api);
        look.existing.insert("old".to_owned());
        look.specs = Some(SpecView {
            specified: BTreeSet::from(["api".to_owned()]),
            kept: BTreeMap::new(),
        });
        look
    }

    #[test]
    fn all_waits_for_the_objects_whose_spec_is_gone_to_be_deleted() {
        let mut look = with_old_spec_removed();
        let objectives = objectives(Targets::All, Goal::Ready, &look);
        assert_eq!(
            objectives,
            [
                ("api".to_owned(), Goal::Ready),
                ("old".to_owned(), Goal::Deleted)
            ]
        );
        // Still running (its status reads ready): not done while it exists.
        let removing = verdict(Goal::Deleted, "old", &look);
        assert_eq!(describe(&removing, Goal::Deleted), "being removed");
        // Gone: done, although no status is left to read as ready.
        look.status.services.remove("old");
        look.existing.remove("old");
        let gone = verdict(Goal::Deleted, "old", &look);
        assert_eq!(gone, Verdict::Reached);
        assert_eq!(describe(&gone, Goal::Deleted), "deleted");
        assert_eq!(verdict(Goal::Ready, "api", &look), Verdict::Reached);
    }

    #[test]
    fn without_a_spec_directory_all_waits_for_every_object_to_be_ready() {
        let mut look = with_old_spec_removed();
        look.specs = None;
        assert_eq!(
            objectives(Targets::All, Goal::Ready, &look),
            [
                ("api".to_owned(), Goal::Ready),
                ("old".to_owned(), Goal::Ready)
            ]
        );
        assert_eq!(
            objectives(Targets::Named(vec!["old".into()]), Goal::Ready, &look),
            [("old".to_owned(), Goal::Ready)]
        );
    }

    #[test]
    fn an_object_the_operator_keeps_fails_the_wait_for_its_deletion() {
        let mut look = with_old_spec_removed();
        let message = "its spec file old.yaml failed to load; fix the file to manage it again";
        look.specs
            .as_mut()
            .expect("with specs")
            .kept
            .insert("old".into(), (R::SpecFileFailed, message.into()));
        assert_eq!(
            verdict(Goal::Deleted, "old", &look),
            Verdict::Failed {
                reason: R::SpecFileFailed,
                message: message.into()
            }
        );
    }
}
