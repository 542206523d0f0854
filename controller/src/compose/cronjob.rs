//! swarm-cronjob's `swarm.cronjob.*` labels on a compose service turned into a scheduled job.
//!
//! swarm-cronjob runs a service again at each time of `swarm.cronjob.schedule` by writing it
//! (`ForceUpdate`, and the replica count of `swarm.cronjob.replicas`), as the operator does for
//! a `schedule`. So its labels map onto `mode: replicated-job | global-job`, `schedule`,
//! `timeZone`, `concurrencyPolicy` and `replicas`/`maxConcurrent`; what has no counterpart is
//! reported, located. The labels themselves are not kept: a swarm-cronjob still running beside
//! the operator would fire the job too (and each of its writes would be drift the operator
//! reverts, running the job once more).

use std::collections::BTreeMap;

use super::model::{Deploy, Dropped, Invalid};
use crate::spec::{ConcurrencyPolicy, ServiceMode, ServiceSpec};
use crate::yaml::Origin;

/// The prefix of swarm-cronjob's labels.
pub const PREFIX: &str = "swarm.cronjob.";

const ENABLE: &str = "swarm.cronjob.enable";
const SCHEDULE: &str = "swarm.cronjob.schedule";
const SKIP_RUNNING: &str = "swarm.cronjob.skip-running";
const REPLICAS: &str = "swarm.cronjob.replicas";

/// Where the conversion reports to.
pub(super) struct Reports<'a> {
    /// The service's origin, for a key whose own origin is unknown.
    pub origin: &'a Origin,
    /// `services.NAME`.
    pub path: &'a str,
    /// Keys left out.
    pub dropped: &'a mut Vec<Dropped>,
    /// Values that cannot be converted: the import fails.
    pub invalid: &'a mut Vec<Invalid>,
}

impl Reports<'_> {
    fn origin(&self, deploy: &Deploy, key: &str) -> Origin {
        deploy.origins.get(key).unwrap_or(self.origin).clone()
    }

    fn drop(&mut self, deploy: &Deploy, key: &str, reason: String) {
        self.dropped.push(Dropped {
            origin: self.origin(deploy, key),
            path: format!("{}.deploy.{key}", self.path),
            reason,
        });
    }

    fn invalid(&mut self, deploy: &Deploy, key: &str, message: String) {
        self.invalid.push(Invalid {
            origin: self.origin(deploy, key),
            path: format!("{}.deploy.{key}", self.path),
            message,
        });
    }
}

/// Converts the swarm-cronjob labels among `deploy.labels` (if any) into `spec`'s schedule,
/// and takes them out of the service's `labels`.
pub(super) fn convert(
    deploy: &Deploy,
    spec: &mut ServiceSpec,
    labels: &mut crate::labels::Labels,
    reports: &mut Reports<'_>,
) {
    if is_scheduler(&spec.image) {
        reports.dropped.push(Dropped {
            origin: reports.origin.clone(),
            path: format!("{}.image", reports.path),
            reason: "swarm-cronjob's own scheduler: not needed once its jobs are converted (the operator runs them); remove this service".into(),
        });
    }
    let ours: BTreeMap<&str, &str> = deploy
        .labels
        .iter()
        .filter(|(k, _)| k.starts_with(PREFIX))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let Some(first) = ours.keys().next() else {
        return;
    };
    let label = |key: &str| format!("labels.{key}");
    let enabled = match ours.get(ENABLE) {
        None => false,
        Some(v) => match go_bool(v) {
            Some(b) => b,
            None => {
                reports.invalid(
                    deploy,
                    &label(ENABLE),
                    "not a boolean: give `true` or `false`".into(),
                );
                return;
            }
        },
    };
    if !enabled {
        // swarm-cronjob leaves such a service alone: so does the import (labels kept as they are).
        let at = if ours.contains_key(ENABLE) {
            ENABLE
        } else {
            first
        };
        reports.drop(
            deploy,
            &label(at),
            format!(
                "swarm-cronjob labels without `{ENABLE}=true`: not scheduled by swarm-cronjob, so not converted to a scheduled job"
            ),
        );
        return;
    }
    let Some(text) = ours.get(SCHEDULE) else {
        reports.invalid(
            deploy,
            &label(ENABLE),
            format!("`{ENABLE}=true` needs `{SCHEDULE}`: swarm-cronjob cannot schedule it either"),
        );
        return;
    };
    let (pattern, time_zone) = match schedule(text) {
        Ok(converted) => converted,
        Err(message) => {
            reports.invalid(deploy, &label(SCHEDULE), message);
            return;
        }
    };
    if let Err(e) = crate::control::schedule::JobSchedule::parse(&pattern, time_zone.as_deref()) {
        reports.invalid(deploy, &label(SCHEDULE), e.to_string());
        return;
    }
    // swarm-cronjob's default is to start a run whatever runs: its write replaces the running
    // tasks, which is `Replace` here.
    let policy = match ours.get(SKIP_RUNNING).map(|v| go_bool(v)) {
        None | Some(Some(false)) => ConcurrencyPolicy::Replace,
        Some(Some(true)) => ConcurrencyPolicy::Forbid,
        Some(None) => {
            reports.invalid(
                deploy,
                &label(SKIP_RUNNING),
                "not a boolean: give `true` or `false`".into(),
            );
            return;
        }
    };
    let replicas = match ours.get(REPLICAS).map(|v| v.trim().parse::<u64>()) {
        None => None,
        Some(Ok(n)) if n >= 1 => Some(n),
        Some(_) => {
            reports.invalid(
                deploy,
                &label(REPLICAS),
                "not a whole number of at least 1".into(),
            );
            return;
        }
    };

    match spec.mode {
        // swarm-cronjob's usual form: `replicated` (often with `replicas: 0`, idle between
        // runs), scaled to `swarm.cronjob.replicas` (default 1) at each time.
        ServiceMode::Replicated => {
            if let Some(n) = deploy.replicas {
                reports.drop(
                    deploy,
                    "replicas",
                    format!(
                        "`replicas: {n}` with swarm-cronjob: as a `replicated-job` the service runs `{REPLICAS}` ({}) tasks when created and at each scheduled time, none in between",
                        replicas.unwrap_or(1)
                    ),
                );
            }
            spec.mode = ServiceMode::ReplicatedJob;
            spec.replicas = Some(replicas.unwrap_or(1));
        }
        // swarm-cronjob sets a replicated job's MaxConcurrent (default 1) at each time.
        ServiceMode::ReplicatedJob => {
            let max = replicas.unwrap_or(1);
            spec.max_concurrent = (max != spec.replicas.unwrap_or(1)).then_some(max);
        }
        ServiceMode::Global | ServiceMode::GlobalJob => {
            spec.mode = ServiceMode::GlobalJob;
            if replicas.is_some() {
                reports.drop(
                    deploy,
                    &label(REPLICAS),
                    "a global service runs one task per node: swarm-cronjob ignores it too".into(),
                );
            }
        }
    }
    spec.schedule = Some(pattern);
    spec.time_zone = time_zone;
    spec.concurrency_policy = Some(policy);

    for key in ours.keys() {
        let reason = match *key {
            ENABLE | SCHEDULE | SKIP_RUNNING | REPLICAS => continue,
            "swarm.cronjob.registry-auth" => {
                "not converted: the operator sends no registry credentials with a run (log the nodes in to the registry)"
            }
            "swarm.cronjob.query-registry" => {
                "not converted: a run never asks the registry (the image stays as the spec names it)"
            }
            "swarm.cronjob.run-once" => {
                "not converted: a job without `swarm.cronjob.schedule` runs once, when created or changed"
            }
            "swarm.cronjob.scaledown" => "swarm-cronjob's own marker: not converted",
            _ => "not a swarm-cronjob label: not converted",
        };
        reports.drop(deploy, &label(key), reason.into());
    }
    labels.retain(|k, _| !k.starts_with(PREFIX));
}

/// Whether `image` is swarm-cronjob itself (`crazymax/swarm-cronjob[:tag][@digest]`, from any
/// registry).
fn is_scheduler(image: &str) -> bool {
    let name = image.split('@').next().unwrap_or(image);
    let last = name.rsplit('/').next().unwrap_or(name);
    last.split(':').next() == Some("swarm-cronjob")
}

/// Go's `strconv.ParseBool`, which swarm-cronjob reads its labels with.
fn go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// swarm-cronjob's schedule (robfig/cron: 5 fields or 6 with seconds first, `?`, `@daily`-style
/// names, `@every DURATION`, a `CRON_TZ=`/`TZ=` prefix) as a `schedule` and `timeZone`.
fn schedule(text: &str) -> Result<(String, Option<String>), String> {
    let text = text.trim();
    let (zone, rest) = match text
        .strip_prefix("CRON_TZ=")
        .or_else(|| text.strip_prefix("TZ="))
    {
        Some(prefixed) => match prefixed.split_once(char::is_whitespace) {
            Some((zone, rest)) => (Some(zone.to_owned()), rest.trim()),
            None => return Err("a `CRON_TZ=` prefix needs a schedule after it".into()),
        },
        None => (None, text),
    };
    let pattern = if let Some(every) = rest.strip_prefix("@every") {
        every_pattern(every.trim())?
    } else if rest.eq_ignore_ascii_case("@midnight") {
        "@daily".to_owned()
    } else {
        rest.to_owned()
    };
    Ok((pattern, zone))
}

/// `@every DURATION` as the cron pattern with the same period on the clock. swarm-cronjob
/// counts it from its own start; a period that does not divide a minute, an hour or a day has
/// no such pattern.
fn every_pattern(duration: &str) -> Result<String, String> {
    let unusable = || {
        format!(
            "`@every {duration}` has no cron pattern: the period must divide a minute, an hour or a day evenly (e.g. `@every 15m`); give a cron pattern instead"
        )
    };
    // swarm-cronjob reads the period with Go's `time.ParseDuration`.
    let period = crate::spec::quantity::parse_duration(duration).map_err(|_| unusable())?;
    if period.subsec_nanos() != 0 || period.is_zero() {
        return Err(unusable());
    }
    let secs = period.as_secs();
    let divides = |whole: u64, part: u64| part < whole && whole.is_multiple_of(part);
    Ok(match secs {
        1 => "* * * * * *".to_owned(),
        s if divides(60, s) => format!("*/{s} * * * * *"),
        60 => "0 * * * * *".to_owned(),
        s if s.is_multiple_of(60) && divides(60, s / 60) => format!("0 */{} * * * *", s / 60),
        3600 => "0 0 * * * *".to_owned(),
        s if s.is_multiple_of(3600) && divides(24, s / 3600) => format!("0 0 */{} * * *", s / 3600),
        86_400 => "@daily".to_owned(),
        _ => return Err(unusable()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::ServiceMode;

    fn convert_file(text: &str) -> super::super::stack::Stack {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s.yml");
        std::fs::write(&file, text).unwrap();
        super::super::convert(&[file], "st", &|_: &str| None)
            .unwrap()
            .0
    }

    fn spec<'a>(
        stack: &'a super::super::stack::Stack,
        name: &str,
    ) -> &'a crate::spec::SwarmService {
        stack
            .services
            .iter()
            .find(|s| s.metadata.name == name)
            .unwrap()
    }

    #[test]
    fn schedules_convert_from_robfig_cron() {
        let ok = |text: &str| schedule(text).unwrap();
        assert_eq!(ok("0 */5 * * * *"), ("0 */5 * * * *".into(), None));
        assert_eq!(ok(" */10 * * * * "), ("*/10 * * * *".into(), None));
        assert_eq!(ok("@midnight"), ("@daily".into(), None));
        assert_eq!(ok("@hourly"), ("@hourly".into(), None));
        assert_eq!(
            ok("CRON_TZ=Europe/Berlin 0 3 * * *"),
            ("0 3 * * *".into(), Some("Europe/Berlin".into()))
        );
        assert_eq!(
            ok("TZ=Asia/Tokyo @daily"),
            ("@daily".into(), Some("Asia/Tokyo".into()))
        );
        assert_eq!(ok("@every 1s"), ("* * * * * *".into(), None));
        assert_eq!(ok("@every 20s"), ("*/20 * * * * *".into(), None));
        assert_eq!(ok("@every 1m"), ("0 * * * * *".into(), None));
        assert_eq!(ok("@every 15m"), ("0 */15 * * * *".into(), None));
        assert_eq!(ok("@every 1h"), ("0 0 * * * *".into(), None));
        assert_eq!(ok("@every 6h"), ("0 0 */6 * * *".into(), None));
        assert_eq!(ok("@every 24h"), ("@daily".into(), None));
        for bad in [
            "@every 7m",
            "@every 90s",
            "@every 5h",
            "@every 1.5h",
            "@every",
            "@every 0s",
        ] {
            let e = schedule(bad).unwrap_err();
            assert!(e.contains("has no cron pattern"), "{bad}: {e}");
        }
        assert!(schedule("CRON_TZ=UTC").is_err());
        // What robfig/cron accepts, croner reads the same way (`?` is "any").
        for pattern in [
            "0 0 12 ? * MON-FRI",
            "0 30 * * * *",
            "@weekly",
            "@every 30s",
        ] {
            let (p, zone) = schedule(pattern).unwrap();
            crate::control::schedule::JobSchedule::parse(&p, zone.as_deref()).unwrap();
        }
    }

    #[test]
    fn go_booleans_as_strconv_reads_them() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(go_bool(t), Some(true), "{t}");
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(go_bool(f), Some(false), "{f}");
        }
        for bad in ["yes", "tRUE", "", " true"] {
            assert_eq!(go_bool(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn labels_become_a_schedule_per_mode_and_are_not_kept() {
        let stack = convert_file(
            "services:\n\
             \x20 idle:\n    image: x\n    deploy:\n      replicas: 0\n      labels:\n        - swarm.cronjob.enable=true\n        - swarm.cronjob.schedule=*/30 * * * * *\n        - swarm.cronjob.skip-running=true\n        - team=data\n\
             \x20 fanout:\n    image: x\n    deploy:\n      labels: {swarm.cronjob.enable: \"1\", swarm.cronjob.schedule: \"@every 6h\", swarm.cronjob.replicas: \"3\"}\n\
             \x20 jobs:\n    image: x\n    deploy:\n      mode: replicated-job\n      replicas: 4\n      labels: {swarm.cronjob.enable: \"true\", swarm.cronjob.schedule: \"CRON_TZ=Europe/Berlin 0 3 * * *\", swarm.cronjob.replicas: \"2\"}\n\
             \x20 each:\n    image: x\n    deploy:\n      mode: global\n      labels: {swarm.cronjob.enable: \"true\", swarm.cronjob.schedule: \"@daily\", swarm.cronjob.replicas: \"2\"}\n\
             \x20 disabled:\n    image: x\n    deploy:\n      labels: {swarm.cronjob.enable: \"false\", swarm.cronjob.schedule: \"@daily\"}\n",
        );
        assert!(stack.invalid.is_empty(), "{:?}", stack.invalid);

        let idle = spec(&stack, "st_idle");
        assert_eq!(idle.spec.mode, ServiceMode::ReplicatedJob);
        assert_eq!(idle.spec.replicas, Some(1));
        assert_eq!(idle.spec.schedule.as_deref(), Some("*/30 * * * * *"));
        assert_eq!(
            idle.spec.concurrency_policy,
            Some(ConcurrencyPolicy::Forbid)
        );
        assert_eq!(idle.spec.time_zone, None);
        assert!(
            !idle.metadata.labels.keys().any(|k| k.starts_with(PREFIX)),
            "{:?}",
            idle.metadata.labels
        );
        assert_eq!(idle.metadata.labels.get("team").unwrap(), "data");

        let fanout = spec(&stack, "st_fanout");
        assert_eq!(
            (
                fanout.spec.mode,
                fanout.spec.replicas,
                fanout.spec.max_concurrent
            ),
            (ServiceMode::ReplicatedJob, Some(3), None)
        );
        assert_eq!(fanout.spec.schedule.as_deref(), Some("0 0 */6 * * *"));
        // swarm-cronjob's default: a run replaces whatever still runs.
        assert_eq!(
            fanout.spec.concurrency_policy,
            Some(ConcurrencyPolicy::Replace)
        );

        let jobs = spec(&stack, "st_jobs");
        assert_eq!(
            (jobs.spec.mode, jobs.spec.replicas, jobs.spec.max_concurrent),
            (ServiceMode::ReplicatedJob, Some(4), Some(2))
        );
        assert_eq!(jobs.spec.time_zone.as_deref(), Some("Europe/Berlin"));
        assert_eq!(jobs.spec.schedule.as_deref(), Some("0 3 * * *"));

        let each = spec(&stack, "st_each");
        assert_eq!(each.spec.mode, ServiceMode::GlobalJob);
        assert_eq!(each.spec.replicas, None);

        let disabled = spec(&stack, "st_disabled");
        assert_eq!(disabled.spec.mode, ServiceMode::Replicated);
        assert_eq!(disabled.spec.schedule, None);
        assert_eq!(
            disabled
                .metadata
                .labels
                .get("swarm.cronjob.enable")
                .unwrap(),
            "false"
        );

        let dropped: Vec<(usize, &str)> = stack
            .dropped
            .iter()
            .map(|d| (d.origin.line, d.path.as_str()))
            .collect();
        assert_eq!(
            dropped,
            [
                (29, "services.disabled.deploy.labels.swarm.cronjob.enable"),
                (25, "services.each.deploy.labels.swarm.cronjob.replicas"),
                (5, "services.idle.deploy.replicas"),
            ]
        );
        assert!(stack.dropped[2].reason.contains("`replicas: 0`"));
    }

    #[test]
    fn what_does_not_map_is_reported_where_it_is_written() {
        let stack = convert_file(
            "services:\n  a:\n    image: x\n    deploy:\n      labels:\n        swarm.cronjob.enable: \"true\"\n        swarm.cronjob.schedule: \"@daily\"\n        swarm.cronjob.registry-auth: \"true\"\n        swarm.cronjob.query-registry: \"false\"\n        swarm.cronjob.run-once: \"true\"\n        swarm.cronjob.colour: blue\n",
        );
        let dropped: Vec<(usize, usize, &str)> = stack
            .dropped
            .iter()
            .map(|d| (d.origin.line, d.origin.column, d.path.as_str()))
            .collect();
        assert_eq!(
            dropped,
            [
                (11, 9, "services.a.deploy.labels.swarm.cronjob.colour"),
                (
                    9,
                    9,
                    "services.a.deploy.labels.swarm.cronjob.query-registry"
                ),
                (8, 9, "services.a.deploy.labels.swarm.cronjob.registry-auth"),
                (10, 9, "services.a.deploy.labels.swarm.cronjob.run-once"),
            ]
        );
        assert!(stack.dropped[2].reason.contains("registry credentials"));
        assert!(
            spec(&stack, "st_a").metadata.labels.is_empty()
                || !spec(&stack, "st_a")
                    .metadata
                    .labels
                    .keys()
                    .any(|k| k.starts_with(PREFIX))
        );
    }

    #[test]
    fn values_swarm_cronjob_cannot_use_are_invalid_and_located() {
        let stack = convert_file(
            "services:\n  a:\n    image: x\n    deploy:\n      labels: [swarm.cronjob.enable=yes]\n  b:\n    image: x\n    deploy:\n      labels: [swarm.cronjob.enable=true]\n  c:\n    image: x\n    deploy:\n      labels: [swarm.cronjob.enable=true, \"swarm.cronjob.schedule=@every 7m\"]\n  d:\n    image: x\n    deploy:\n      labels: [swarm.cronjob.enable=true, swarm.cronjob.schedule=@daily, swarm.cronjob.replicas=0]\n  e:\n    image: x\n    deploy:\n      labels: [swarm.cronjob.enable=true, \"swarm.cronjob.schedule=61 * * * *\"]\n",
        );
        let invalid: Vec<(usize, &str)> = stack
            .invalid
            .iter()
            .map(|i| (i.origin.line, i.path.as_str()))
            .collect();
        assert_eq!(
            invalid,
            [
                (5, "services.a.deploy.labels.swarm.cronjob.enable"),
                (9, "services.b.deploy.labels.swarm.cronjob.enable"),
                (13, "services.c.deploy.labels.swarm.cronjob.schedule"),
                (17, "services.d.deploy.labels.swarm.cronjob.replicas"),
                (21, "services.e.deploy.labels.swarm.cronjob.schedule"),
            ]
        );
        assert!(
            stack.invalid[1]
                .message
                .contains("needs `swarm.cronjob.schedule`")
        );
        assert!(stack.invalid[2].message.contains("has no cron pattern"));
        assert!(stack.invalid[4].message.contains("5 fields"));
    }
}
