//! The commit the operator has fully applied, recorded in the swarm so that anyone with access
//! to it (`swarm-operator wait --revision`, `get`, another replica) knows it without reaching
//! the operator.
//!
//! The record is the labels of a swarm config per instance (`swarm-operator-revision-<instance>`,
//! as the lease): the commit the leader *loaded* (is applying) and the last one it *applied*
//! (every object Ready at it, no spec error). Only the leader writes it, and only when one of
//! the two changes: two writes per commit, none in steady state.
//!
//! `wait --revision SHA` knows no ancestry (it runs without the repository): it succeeds once
//! SHA is the applied commit, fails once the operator loaded SHA and then moved on to another
//! commit before applying it, and otherwise waits (the operator may not have fetched SHA yet).

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::desired::definition::{INSTANCE_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use crate::docker::configs::CasOutcome;
use crate::docker::{DockerEngine, DockerError};
use crate::election::Leadership;
use crate::report::status::publisher::Snapshots;
use crate::report::status::{ConditionStatus, ConditionType, StatusFile};
use crate::revision::Revision;

/// Label with the commit the leader loaded and is applying.
pub const LOADED_LABEL: &str = "swarm-operator.io/loaded-revision";
/// Label with the last commit at which every object was Ready.
pub const APPLIED_LABEL: &str = "swarm-operator.io/applied-revision";

/// Label with the commit a follower's push hook asked the leader to fetch (see
/// [`crate::push_hook::pass_on`]): written by followers, kept by the leader's writes.
pub const FETCH_REQUESTED_LABEL: &str = "swarm-operator.io/fetch-requested";

/// How often `wait --revision` reads the record.
pub const WAIT_POLL: Duration = Duration::from_secs(1);

/// Where the operator stands with its commits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// The commit the specs were loaded from.
    pub loaded: Option<Revision>,
    /// The last commit at which every object was Ready.
    pub applied: Option<Revision>,
}

impl Progress {
    /// The progress after `status`, built from the specs of `loaded`: `loaded` is applied
    /// once no spec has an error and every object is Ready on its current spec; before that
    /// the last applied commit stays.
    pub fn after(&self, loaded: Option<&Revision>, status: &StatusFile) -> Progress {
        let ready = |conditions: &[crate::report::status::Condition]| {
            conditions
                .iter()
                .any(|c| c.kind == ConditionType::Ready && c.status == ConditionStatus::True)
        };
        let all_ready = status.errors.is_empty()
            && status.services.values().all(|s| {
                s.spec_hash.is_some() && s.observed_spec_hash == s.spec_hash && ready(&s.conditions)
            })
            && status.networks.values().all(|n| ready(&n.conditions));
        Progress {
            loaded: loaded.cloned(),
            applied: match loaded {
                Some(loaded) if all_ready => Some(loaded.clone()),
                _ => self.applied.clone(),
            },
        }
    }

    fn from_labels(labels: &BTreeMap<String, String>) -> Progress {
        let revision = |key| labels.get(key).and_then(|v| Revision::parse(v).ok());
        Progress {
            loaded: revision(LOADED_LABEL),
            applied: revision(APPLIED_LABEL),
        }
    }
}

impl std::fmt::Display for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let short = |r: &Option<Revision>| r.as_ref().map_or("none", Revision::short).to_owned();
        write!(f, "applied {}", short(&self.applied))?;
        if self.loaded != self.applied {
            write!(f, ", applying {}", short(&self.loaded))?;
        }
        Ok(())
    }
}

/// Why the record cannot be read or written.
#[derive(Debug, thiserror::Error)]
#[error("the revision record {config}: {source}")]
pub struct RecordError {
    /// The config's name.
    config: String,
    /// The engine's error.
    source: DockerError,
}

/// The record of one instance in the swarm.
#[derive(Clone)]
pub struct RevisionRecord {
    api: DockerEngine,
    instance: String,
    name: String,
}

impl RevisionRecord {
    /// The record of `instance`.
    pub fn new(api: DockerEngine, instance: &str) -> Self {
        RevisionRecord {
            api,
            instance: instance.to_owned(),
            name: format!("swarm-operator-revision-{instance}"),
        }
    }

    fn error(&self, source: DockerError) -> RecordError {
        RecordError {
            config: self.name.clone(),
            source,
        }
    }

    /// Config data can not change: it only says what this is.
    fn data(&self) -> Vec<u8> {
        format!(
            "commits of swarm-operator instance {:?}; the state is in the labels\n",
            self.instance
        )
        .into_bytes()
    }

    /// What is recorded (nothing before the first commit was loaded).
    pub async fn read(&self) -> Result<Progress, RecordError> {
        let config = self
            .api
            .inspect_config(&self.name)
            .await
            .map_err(|e| self.error(e))?;
        Ok(config.map_or_else(Progress::default, |c| Progress::from_labels(&c.labels)))
    }

    /// Records `progress` (compare-and-swap on the config's version, re-read on a conflict).
    pub async fn write(&self, progress: &Progress) -> Result<(), RecordError> {
        let mut wanted = self.own_labels();
        for (key, revision) in [
            (LOADED_LABEL, &progress.loaded),
            (APPLIED_LABEL, &progress.applied),
        ] {
            if let Some(revision) = revision {
                wanted.insert(key.to_owned(), revision.to_string());
            }
        }
        // Three lost races in a row: another writer is active (a leader change); the next
        // change writes again.
        self.swap_labels(|current| {
            // A follower's fetch request is not the leader's to erase.
            let mut labels = wanted.clone();
            if let Some(requested) = current.and_then(|c| c.get(FETCH_REQUESTED_LABEL)) {
                labels.insert(FETCH_REQUESTED_LABEL.to_owned(), requested.clone());
            }
            (current != Some(&labels)).then_some(labels)
        })
        .await
        .map(drop)
    }
}

impl RevisionRecord {
    /// The commit a follower last asked the leader to fetch, if any.
    pub async fn fetch_requested(&self) -> Result<Option<Revision>, RecordError> {
        let config = self
            .api
            .inspect_config(&self.name)
            .await
            .map_err(|e| self.error(e))?;
        Ok(config.and_then(|c| {
            c.labels
                .get(FETCH_REQUESTED_LABEL)
                .and_then(|v| Revision::parse(v).ok())
        }))
    }

    /// Asks the leader to fetch `revision`: one compare-and-swap write of the label (none if it
    /// already says so; re-read on a conflict). Whether it was written: after three lost races
    /// (the leader writing progress) it was not, and the leader's poll finds the commit.
    pub async fn request_fetch(&self, revision: &Revision) -> Result<bool, RecordError> {
        self.swap_labels(|current| {
            if current
                .and_then(|c| c.get(FETCH_REQUESTED_LABEL))
                .map(String::as_str)
                == Some(revision.as_str())
            {
                return None;
            }
            let mut labels = current.cloned().unwrap_or_else(|| self.own_labels());
            labels.insert(FETCH_REQUESTED_LABEL.to_owned(), revision.to_string());
            Some(labels)
        })
        .await
    }

    /// The labels that make the record ours.
    fn own_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned()),
            (INSTANCE_LABEL.to_owned(), self.instance.clone()),
        ])
    }

    /// The one compare-and-swap of the record's labels: `wanted` turns the current labels (none
    /// before the config exists) into the labels to store, or `None` when they already say it.
    /// Re-read and retried on a conflict, three times at most. Whether it wrote.
    async fn swap_labels(
        &self,
        wanted: impl Fn(Option<&BTreeMap<String, String>>) -> Option<BTreeMap<String, String>>,
    ) -> Result<bool, RecordError> {
        for _ in 0..3 {
            let current = self
                .api
                .inspect_config(&self.name)
                .await
                .map_err(|e| self.error(e))?;
            let Some(labels) = wanted(current.as_ref().map(|c| &c.labels)) else {
                return Ok(false);
            };
            let outcome = match current {
                Some(config) => {
                    self.api
                        .update_config_labels(
                            &config.id,
                            config.version,
                            &self.name,
                            &labels,
                            &config.data,
                        )
                        .await
                }
                None => {
                    self.api
                        .create_config(&self.name, &labels, &self.data())
                        .await
                }
            }
            .map_err(|e| self.error(e))?;
            if outcome == CasOutcome::Written {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Follows the operator's snapshots into its [`Progress`] (sent only when it changes), until
/// `stop`.
pub async fn follow(
    mut snapshots: Snapshots,
    progress: watch::Sender<Progress>,
    stop: CancellationToken,
) {
    loop {
        {
            let snapshot = snapshots.borrow_and_update().clone();
            let next = progress
                .borrow()
                .after(snapshot.overview().revision.as_ref(), snapshot.status());
            progress.send_if_modified(|current| {
                let changed = *current != next;
                *current = next;
                changed
            });
        }
        tokio::select! {
            () = stop.cancelled() => return,
            changed = snapshots.changed() => if changed.is_err() { return },
        }
    }
}

/// Keeps the record up to date while this replica leads: `progress` is what the operator's
/// snapshots say. A failed write is retried at the next change or after a pause.
pub async fn keep(
    record: RevisionRecord,
    mut progress: watch::Receiver<Progress>,
    leadership: Leadership,
    stop: CancellationToken,
) {
    let mut written: Option<Progress> = None;
    loop {
        let current = progress.borrow_and_update().clone();
        if leadership.is_leader() && current.loaded.is_some() && written.as_ref() != Some(&current)
        {
            // Shutdown does not wait on the engine.
            let written_now = tokio::select! {
                () = stop.cancelled() => return,
                result = record.write(&current) => result,
            };
            match written_now {
                Ok(()) => {
                    if current.applied != written.as_ref().and_then(|w| w.applied.clone())
                        && let Some(applied) = &current.applied
                    {
                        info!(revision = %applied, "every object is ready at this commit");
                    }
                    written = Some(current);
                }
                Err(error) => warn!(%error, "recording the applied commit"),
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            changed = progress.changed() => if changed.is_err() { return },
            // Leadership may come, or a failed write be due again.
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

/// How `wait --revision` ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitVerdict {
    /// The commit is applied.
    Applied,
    /// The operator loaded the commit, then another one before applying it.
    MovedPast(Progress),
    /// Still waiting.
    Pending,
}

/// What the record says about `target`; `seen_loaded` remembers whether the operator was
/// seen applying it.
pub fn judge(target: &Revision, progress: &Progress, seen_loaded: &mut bool) -> WaitVerdict {
    if progress.applied.as_ref() == Some(target) {
        return WaitVerdict::Applied;
    }
    if progress.loaded.as_ref() == Some(target) {
        *seen_loaded = true;
        return WaitVerdict::Pending;
    }
    if *seen_loaded {
        return WaitVerdict::MovedPast(progress.clone());
    }
    WaitVerdict::Pending
}

/// Reads the record every [`WAIT_POLL`] until `target` is applied, the operator moved past
/// it, or `timeout` passed: the verdict (`Pending` on timeout) and the last progress seen.
pub async fn wait(
    record: &RevisionRecord,
    target: &Revision,
    timeout: Duration,
) -> Result<(WaitVerdict, Progress), RecordError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut seen_loaded = false;
    let mut last = Progress::default();
    loop {
        // An engine that does not answer is asked again until the deadline.
        match record.read().await {
            Ok(progress) => {
                let verdict = judge(target, &progress, &mut seen_loaded);
                if verdict != WaitVerdict::Pending {
                    return Ok((verdict, progress));
                }
                last = progress;
            }
            Err(error) if tokio::time::Instant::now() + WAIT_POLL > deadline => return Err(error),
            Err(_) => {}
        }
        if tokio::time::Instant::now() + WAIT_POLL > deadline {
            return Ok((WaitVerdict::Pending, last));
        }
        tokio::time::sleep(WAIT_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::status::{Condition, ConditionReason, NetworkStatus, ServiceStatus};

    fn commit(digit: char) -> Revision {
        Revision::parse(&digit.to_string().repeat(40)).unwrap()
    }

    fn ready(status: ConditionStatus) -> Vec<Condition> {
        vec![Condition {
            kind: ConditionType::Ready,
            status,
            reason: ConditionReason::AllReplicasRunning,
            message: "".into(),
            last_transition_time: "".into(),
        }]
    }

    fn service(hash: &str, observed: &str, status: ConditionStatus) -> ServiceStatus {
        ServiceStatus {
            desired_replicas: Some(1),
            running_replicas: 1,
            updated_replicas: 1,
            spec_hash: Some(hash.into()),
            observed_spec_hash: Some(observed.into()),
            created_at: None,
            conditions: ready(status),
            virtual_ips: vec![],
            endpoints: vec![],
            last_error: None,
            schedule: None,
            stack: None,
        }
    }

    fn status(services: Vec<(&str, ServiceStatus)>) -> StatusFile {
        StatusFile {
            generated_at: String::new(),
            services: services.into_iter().map(|(n, s)| (n.into(), s)).collect(),
            networks: BTreeMap::from([(
                "net".into(),
                NetworkStatus {
                    id: Some("n".into()),
                    conditions: ready(ConditionStatus::True),
                    last_error: None,
                    stack: None,
                },
            )]),
            errors: vec![],
            source: None,
            warnings: vec![],
        }
    }

    #[test]
    fn a_commit_is_applied_once_every_object_is_ready_on_its_spec() {
        let start = Progress::default();
        let (one, two) = (commit('1'), commit('2'));
        let rolling = status(vec![
            ("a", service("h1", "h1", ConditionStatus::True)),
            ("b", service("h2", "h1", ConditionStatus::True)),
        ]);
        let progress = start.after(Some(&one), &rolling);
        assert_eq!(
            progress,
            Progress {
                loaded: Some(one.clone()),
                applied: None
            }
        );
        let done = status(vec![
            ("a", service("h1", "h1", ConditionStatus::True)),
            ("b", service("h2", "h2", ConditionStatus::True)),
        ]);
        let progress = progress.after(Some(&one), &done);
        assert_eq!(progress.applied, Some(one.clone()));
        // The next commit: the previous stays applied until this one is.
        let failing = status(vec![("a", service("h3", "h3", ConditionStatus::False))]);
        let progress = progress.after(Some(&two), &failing);
        assert_eq!(progress.loaded, Some(two.clone()));
        assert_eq!(progress.applied, Some(one));
        assert_eq!(progress.to_string(), "applied 1111111, applying 2222222");
        // A spec error holds the commit too.
        let mut broken = done.clone();
        broken.errors.push(crate::report::status::StatusSpecError {
            file: "a.yaml".into(),
            line: Some(1),
            column: Some(1),
            field: String::new(),
            message: "bad".into(),
        });
        assert_eq!(
            progress.after(Some(&two), &broken).applied,
            progress.applied
        );
        // No commit (not a git source): nothing is ever applied.
        assert_eq!(Progress::default().after(None, &done), Progress::default());
    }

    #[test]
    fn wait_succeeds_at_the_commit_and_fails_once_the_operator_moved_past_it() {
        let (one, two, three) = (commit('1'), commit('2'), commit('3'));
        let mut seen = false;
        let at = |loaded: &Revision, applied: &Revision| Progress {
            loaded: Some(loaded.clone()),
            applied: Some(applied.clone()),
        };
        // Not fetched yet: wait.
        assert_eq!(
            judge(&two, &at(&one, &one), &mut seen),
            WaitVerdict::Pending
        );
        assert_eq!(
            judge(&two, &at(&two, &one), &mut seen),
            WaitVerdict::Pending
        );
        assert_eq!(
            judge(&two, &at(&two, &two), &mut seen),
            WaitVerdict::Applied
        );
        // Loaded, then replaced by a newer push before it was applied.
        let mut seen = false;
        judge(&two, &at(&two, &one), &mut seen);
        assert_eq!(
            judge(&two, &at(&three, &one), &mut seen),
            WaitVerdict::MovedPast(at(&three, &one))
        );
        // Never seen loaded: an operator that went straight to a newer commit can not be told
        // from one that did not fetch yet (no ancestry without the repository): wait.
        let mut seen = false;
        assert_eq!(
            judge(&two, &at(&three, &three), &mut seen),
            WaitVerdict::Pending
        );
    }
}
