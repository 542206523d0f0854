//! Cron schedules of job services: when the next run is due, and whether it may start.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use crate::docker::{ObservedTask, TaskState};
pub use crate::spec::ConcurrencyPolicy;

/// Where the scheduler reads the time: the system clock, or a test's paused one.
#[derive(Clone)]
pub struct Clock(std::sync::Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>);

impl Clock {
    /// The system's clock.
    pub fn system() -> Self {
        Clock(std::sync::Arc::new(Utc::now))
    }

    /// A clock reading `now`.
    pub fn new(now: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        Clock(std::sync::Arc::new(now))
    }

    /// The time now.
    pub fn now(&self) -> DateTime<Utc> {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

/// A schedule or time zone that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The cron pattern does not parse.
    #[error(
        "`{schedule}` is not a cron schedule ({reason}): give 5 fields (`*/15 * * * *`), 6 with seconds first (`0 */15 * * * *`), or a name like `@hourly`"
    )]
    Pattern {
        /// The pattern as written.
        schedule: String,
        /// croner's reason.
        reason: String,
    },
    /// The time zone is not in the IANA database.
    #[error("`{0}` is not an IANA time zone: give one like `UTC` or `Europe/Berlin`")]
    TimeZone(String),
}

/// A parsed schedule in its time zone.
#[derive(Debug, Clone)]
pub struct JobSchedule {
    cron: Cron,
    zone: Tz,
}

impl JobSchedule {
    /// Parses `schedule` (5 fields, 6 with seconds, or `@hourly`, `@daily`, …) evaluated in
    /// `time_zone` (default UTC).
    pub fn parse(schedule: &str, time_zone: Option<&str>) -> Result<Self, ScheduleError> {
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(schedule)
            .map_err(|e| ScheduleError::Pattern {
                schedule: schedule.to_owned(),
                reason: e.to_string(),
            })?;
        let zone = match time_zone {
            None => Tz::UTC,
            Some(name) => {
                Tz::from_str(name).map_err(|_| ScheduleError::TimeZone(name.to_owned()))?
            }
        };
        Ok(JobSchedule { cron, zone })
    }

    /// The first scheduled time strictly after `after`; `None` if there is none (a pattern
    /// like `0 0 30 2 *` never matches).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.zone);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The latest scheduled time at or before `at`.
    pub fn last_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = at.with_timezone(&self.zone);
        self.cron
            .find_previous_occurrence(&local, true)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// What to do about a scheduled job now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Start a run (the scheduled time `due` has passed since the last run).
    Fire {
        /// The scheduled time being run.
        due: DateTime<Utc>,
    },
    /// Nothing until then.
    WaitUntil(DateTime<Utc>),
    /// A run is due, but the previous one still runs and the policy is `Forbid`: look again
    /// once it ended.
    WaitForRun,
    /// The schedule never fires again.
    Never,
}

/// Whether a run of `schedule` is due at `now`, the last run having started at `last_run`
/// (the service's last write: each write of a job runs it). A run missed while no operator
/// was leader fires once, late; several missed times are one run, as a Kubernetes CronJob
/// without a starting deadline.
///
/// With a `starting_deadline`, a time missed by more than that is skipped: the job waits for
/// the next one (e.g. a nightly job that should not start at noon after an outage).
pub fn decide(
    schedule: &JobSchedule,
    policy: ConcurrencyPolicy,
    starting_deadline: Option<std::time::Duration>,
    last_run: DateTime<Utc>,
    now: DateTime<Utc>,
    run_active: bool,
) -> Decision {
    let Some(first) = schedule.next_after(last_run) else {
        return Decision::Never;
    };
    if first > now {
        return Decision::WaitUntil(first);
    }
    // The latest time that passed is the one run (several missed times are one run).
    let due = schedule.last_at_or_before(now).unwrap_or(first).max(first);
    let late = (now - due).to_std().unwrap_or_default();
    if starting_deadline.is_some_and(|deadline| late > deadline) {
        return schedule
            .next_after(now)
            .map_or(Decision::Never, Decision::WaitUntil);
    }
    if run_active && policy == ConcurrencyPolicy::Forbid {
        return Decision::WaitForRun;
    }
    Decision::Fire { due }
}

/// Whether a task of a job's current run is still to finish.
pub fn run_active<'a>(tasks: impl IntoIterator<Item = &'a ObservedTask>) -> bool {
    tasks.into_iter().any(|t| {
        let ended = [
            TaskState::COMPLETE,
            TaskState::FAILED,
            TaskState::REJECTED,
            TaskState::SHUTDOWN,
            TaskState::REMOVE,
            TaskState::ORPHANED,
        ]
        .iter()
        .any(|s| t.state.is(s));
        !ended
            && !t.desired_state.is(&TaskState::SHUTDOWN)
            && !t.desired_state.is(&TaskState::REMOVE)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn five_or_six_fields_and_names_parse_and_other_forms_are_refused() {
        for ok in [
            "*/15 * * * *",
            "*/2 * * * * *",
            "@hourly",
            "@daily",
            "0 3 * * MON",
        ] {
            assert!(JobSchedule::parse(ok, None).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "* * * *",
            "0 0 0 1 1 * 2030",
            "61 * * * *",
            "every hour",
        ] {
            let e = JobSchedule::parse(bad, None).unwrap_err();
            assert!(e.to_string().contains("5 fields"), "{bad}: {e}");
        }
        let e = JobSchedule::parse("@hourly", Some("Mars/Olympus")).unwrap_err();
        assert_eq!(e, ScheduleError::TimeZone("Mars/Olympus".into()));
    }

    #[test]
    fn times_are_evaluated_in_the_time_zone() {
        let utc = JobSchedule::parse("0 3 * * *", None).unwrap();
        assert_eq!(
            utc.next_after(at("2026-07-01T00:00:00Z")),
            Some(at("2026-07-01T03:00:00Z"))
        );
        // 03:00 in Berlin in summer (UTC+2) is 01:00 UTC.
        let berlin = JobSchedule::parse("0 3 * * *", Some("Europe/Berlin")).unwrap();
        assert_eq!(
            berlin.next_after(at("2026-07-01T00:00:00Z")),
            Some(at("2026-07-01T01:00:00Z"))
        );
        let seconds = JobSchedule::parse("*/2 * * * * *", None).unwrap();
        assert_eq!(
            seconds.next_after(at("2026-07-01T00:00:00Z")),
            Some(at("2026-07-01T00:00:02Z"))
        );
    }

    #[test]
    fn a_run_is_due_once_its_time_passed_and_missed_times_are_one_run() {
        let hourly = JobSchedule::parse("@hourly", None).unwrap();
        let last = at("2026-07-01T10:00:00Z");
        let forbid = ConcurrencyPolicy::Forbid;
        assert_eq!(
            decide(
                &hourly,
                forbid,
                None,
                last,
                at("2026-07-01T10:30:00Z"),
                false
            ),
            Decision::WaitUntil(at("2026-07-01T11:00:00Z"))
        );
        assert_eq!(
            decide(
                &hourly,
                forbid,
                None,
                last,
                at("2026-07-01T11:00:00Z"),
                false
            ),
            Decision::Fire {
                due: at("2026-07-01T11:00:00Z")
            }
        );
        // Down for three hours: one run, for the latest time.
        assert_eq!(
            decide(
                &hourly,
                forbid,
                None,
                last,
                at("2026-07-01T13:20:00Z"),
                false
            ),
            Decision::Fire {
                due: at("2026-07-01T13:00:00Z")
            }
        );
        // The previous run still runs: Forbid waits for it, Replace fires.
        assert_eq!(
            decide(
                &hourly,
                forbid,
                None,
                last,
                at("2026-07-01T11:00:01Z"),
                true
            ),
            Decision::WaitForRun
        );
        assert!(matches!(
            decide(
                &hourly,
                ConcurrencyPolicy::Replace,
                None,
                last,
                at("2026-07-01T11:00:01Z"),
                true
            ),
            Decision::Fire { .. }
        ));
        // Missed by 2h20m with a 30 min starting deadline: skipped, the next time is waited for.
        let deadline = Some(std::time::Duration::from_secs(30 * 60));
        assert_eq!(
            decide(
                &hourly,
                forbid,
                deadline,
                last,
                at("2026-07-01T13:40:00Z"),
                false
            ),
            Decision::WaitUntil(at("2026-07-01T14:00:00Z"))
        );
        assert_eq!(
            decide(
                &hourly,
                forbid,
                deadline,
                last,
                at("2026-07-01T13:20:00Z"),
                false
            ),
            Decision::Fire {
                due: at("2026-07-01T13:00:00Z")
            }
        );
        let never = JobSchedule::parse("0 0 30 2 *", None).unwrap();
        assert_eq!(
            decide(
                &never,
                forbid,
                None,
                last,
                at("2026-07-01T11:00:00Z"),
                false
            ),
            Decision::Never
        );
    }
}
