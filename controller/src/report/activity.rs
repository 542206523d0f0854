//! The activity log: the last operator events (created, updated, drift corrected, pruned,
//! errors) kept in memory for the status page.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;

use crate::control::plan::ObjectKey;
use crate::report::notify::{Event, EventKind, Notifier};

/// How many events the log keeps; older ones are dropped.
pub const CAPACITY: usize = 50;

/// What the operator did, or failed to do, to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ActivityKind {
    /// Created because a spec asks for it.
    Created,
    /// Updated because its spec changed.
    Updated,
    /// Rewritten because it was changed behind the operator's back.
    DriftCorrected,
    /// Removed because its spec is gone.
    Pruned,
    /// Swarm rolled its update back; the operator marked the spec as held.
    RolledBack,
    /// A reconcile failed (retried with backoff).
    Error,
}

impl ActivityKind {
    /// The lower-case word the page shows and styles by.
    pub fn as_str(self) -> &'static str {
        match self {
            ActivityKind::Created => "created",
            ActivityKind::Updated => "updated",
            ActivityKind::DriftCorrected => "drift corrected",
            ActivityKind::Pruned => "pruned",
            ActivityKind::RolledBack => "rolled back",
            ActivityKind::Error => "error",
        }
    }
}

/// One entry of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActivityEvent {
    /// When it (last) happened, RFC 3339 UTC.
    pub at: String,
    /// What happened.
    pub kind: ActivityKind,
    /// The object, e.g. `service/quote`.
    pub object: String,
    /// Details: the changed fields, or the error.
    pub message: String,
    /// How many times in a row this same event happened (a failing object is retried with
    /// backoff: one entry with a count, rather than fifty copies pushing everything else out).
    pub count: u32,
}

/// The shared log; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct ActivityLog {
    events: Arc<Mutex<VecDeque<ActivityEvent>>>,
    /// Where drift corrections and prunes are also announced.
    notifier: Notifier,
    /// Wakes the status publisher, which shows the log on the page.
    changed: Arc<tokio::sync::Notify>,
}

impl ActivityLog {
    /// A log that also sends drift corrections and prunes to `notifier`.
    pub fn with_notifier(notifier: Notifier) -> Self {
        ActivityLog {
            notifier,
            ..ActivityLog::default()
        }
    }

    /// Records an event that happens now.
    pub fn record(&self, kind: ActivityKind, key: &ObjectKey, message: impl Into<String>) {
        self.record_for_spec(kind, key, message, None);
    }

    /// Records an event that happens now to an object written from the spec with `spec_hash`.
    pub fn record_for_spec(
        &self,
        kind: ActivityKind,
        key: &ObjectKey,
        message: impl Into<String>,
        spec_hash: Option<&str>,
    ) {
        let at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        let message = message.into();
        // Rollouts and errors are announced from the status (when they succeed or fail), not
        // when the write is made.
        let notify = match kind {
            ActivityKind::DriftCorrected => Some((EventKind::DriftCorrected, "Drift")),
            ActivityKind::Pruned => Some((EventKind::Pruned, "SpecRemoved")),
            // A rollback is announced from the status (`rolledBack`) when swarm does it.
            ActivityKind::Created
            | ActivityKind::Updated
            | ActivityKind::RolledBack
            | ActivityKind::Error => None,
        };
        if let Some((event, reason)) = notify {
            self.notifier.send(Event::new(
                event,
                key.to_string(),
                reason,
                &message,
                spec_hash.map(str::to_owned),
            ));
        }
        self.record_at(kind, key, message, at);
    }

    fn record_at(&self, kind: ActivityKind, key: &ObjectKey, message: String, at: String) {
        let object = key.to_string();
        // Errors name their object already; the entry shows it once.
        let message = match message.strip_prefix(&object) {
            Some(rest) if rest.starts_with(": ") => rest[2..].to_owned(),
            _ => message,
        };
        let mut events = self.events.lock().expect("activity lock poisoned");
        if let Some(last) = events
            .back_mut()
            .filter(|last| last.kind == kind && last.object == object && last.message == message)
        {
            last.count += 1;
            last.at = at;
            drop(events);
            self.changed.notify_one();
            return;
        }
        if events.len() == CAPACITY {
            events.pop_front();
        }
        events.push_back(ActivityEvent {
            at,
            kind,
            object,
            message,
            count: 1,
        });
        drop(events);
        self.changed.notify_one();
    }

    /// Waits until an event was recorded since the last wait (one waiter: the publisher).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// The events, newest first.
    pub fn recent(&self) -> Vec<ActivityEvent> {
        let events = self.events.lock().expect("activity lock poisoned");
        events.iter().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_fifty_newest_first() {
        let log = ActivityLog::default();
        for i in 0..(CAPACITY + 7) {
            log.record_at(
                ActivityKind::Created,
                &ObjectKey::service(format!("s{i}")),
                String::new(),
                format!("t{i}"),
            );
        }
        let recent = log.recent();
        assert_eq!(recent.len(), CAPACITY);
        assert_eq!(recent[0].object, format!("service/s{}", CAPACITY + 6));
        assert_eq!(recent[CAPACITY - 1].object, "service/s7");
    }

    #[test]
    fn a_repeated_error_is_one_entry_with_a_count() {
        let log = ActivityLog::default();
        let key = ObjectKey::service("web");
        for at in ["t1", "t2", "t3"] {
            log.record_at(ActivityKind::Error, &key, "port taken".into(), at.into());
        }
        log.record_at(
            ActivityKind::Error,
            &key,
            "service/web: other".into(),
            "t4".into(),
        );
        let recent = log.recent();
        assert_eq!(recent.len(), 2);
        assert_eq!(
            (recent[1].count, recent[1].at.as_str()),
            (3, "t3"),
            "{recent:?}"
        );
        assert_eq!(recent[0].message, "other");
    }

    #[tokio::test]
    async fn drift_corrections_and_prunes_are_announced_other_writes_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let (notifier, _delivery) = Notifier::start(
            crate::report::notify::NotifyConfig {
                urls: vec![],
                events_log: Some(path.clone()),
                ..Default::default()
            },
            std::sync::Arc::new(crate::report::metrics::Metrics::new()),
        )
        .await
        .unwrap();
        let log = ActivityLog::with_notifier(notifier);
        let key = ObjectKey::service("web");
        log.record_for_spec(ActivityKind::Updated, &key, "image: a → b", Some("h1"));
        log.record_for_spec(
            ActivityKind::DriftCorrected,
            &key,
            "replicas: 1 → 3",
            Some("h1"),
        );
        log.record(ActivityKind::Error, &key, "port taken");
        log.record(ActivityKind::Pruned, &key, "its spec is gone");
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        let lines = loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.lines().count() >= 2 || tokio::time::Instant::now() > deadline {
                break text;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        };
        let events: Vec<serde_json::Value> = lines
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["driftCorrected", "pruned"]);
        assert_eq!(events[0]["specHash"], "h1");
        assert_eq!(events[0]["message"], "replicas: 1 → 3");
        assert_eq!(log.recent().len(), 4, "the page still lists every event");
    }
}
