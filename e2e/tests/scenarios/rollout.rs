//! Scenarios 10–12: rollouts waited on with the operator's own `wait` and `get`, run on a
//! manager of the 3-manager + 1-worker cluster: a good rolling update shows its counts and gets
//! ready; an update to an image no node has is Degraded with the task's error; a healthcheck
//! that never passes is rolled back by swarm, and the operator holds the rolled-back spec.
//! They share a service of their own, so the app the other scenarios use is left alone; the
//! last one removes it.

use std::collections::BTreeSet;
use std::time::Duration;

use e2e::status::{ServiceStatus, Status};
use xtask::operator_cli::{self, Goal, Targets, WaitExit, WaitReport};

use super::{Env, Outcome, PROBE, SPECS, ensure};

/// The scenarios' service: the probe serving HTTP, a task on every node.
pub(crate) const SERVICE: &str = "rollout-probe";
const FILE: &str = "rollout-probe.yaml";
const REPLICAS: u64 = 4;
/// An image that no node has, and no registry to pull it from.
const MISSING_IMAGE: &str = "goblog/missing:none";
/// The environment value of the spec the scenarios start from and restore (s10 rolls out to
/// it from version 1).
const GOOD_VERSION: u32 = 2;
/// A rollout of the 4 tasks here takes about 20 s (one at a time, a 1 s delay and a 2 s
/// monitor each); a failing one adds swarm's verdict and, for a rollback, putting back 4 tasks.
const ROLLOUT: Duration = Duration::from_secs(120);
/// How long nothing may be written after the operator marked a rolled-back spec: several
/// update-fail-rollback rounds, had the operator re-applied the failing spec.
const HOLD: Duration = Duration::from_secs(20);
/// The label that marks a service whose spec swarm rolled back.
const ROLLED_BACK_LABEL: &str = "swarm-operator.io/rolled-back-spec";

/// What swarm does when an updated task fails (`updateConfig.failureAction`).
#[derive(Debug, Clone, Copy)]
enum FailureAction {
    /// Stop the update where it is: the service is Degraded, `UpdatePaused`.
    Pause,
    /// Put the previous spec back: Degraded, `RolledBack`.
    Rollback,
}

impl FailureAction {
    fn as_str(self) -> &'static str {
        match self {
            FailureAction::Pause => "pause",
            FailureAction::Rollback => "rollback",
        }
    }
}

/// The service's spec file: `VERSION` in its environment (a new value replaces every task),
/// its image, what a failed update does, and further `spec:` lines (indented by two).
fn spec(version: u32, image: &str, failure: FailureAction, extra: &str) -> String {
    let failure = failure.as_str();
    format!(
        "apiVersion: swarm-operator.io/v1alpha1
kind: SwarmService
metadata: {{name: {SERVICE}}}
spec:
  image: {image}
  args: [serve, --port, \"8080\"]
  replicas: {REPLICAS}
  env: {{VERSION: \"{version}\"}}
  placement:
    preferences:
      - spread: node.id
  # One task at a time, short pauses: a rollout takes seconds yet can be seen under way.
  updateConfig: {{parallelism: 1, delay: 1s, monitor: 2s, failureAction: {failure}}}
  rollbackConfig: {{parallelism: 0, monitor: 1s}}
  stopGracePeriod: 1s
{extra}"
    )
}

/// The spec the scenarios start from and restore.
fn good_spec(failure: FailureAction) -> String {
    spec(GOOD_VERSION, PROBE, failure, "")
}

fn write_spec(e: &Env, text: &str) -> Outcome {
    e.m.write_file(&e.spec_path(FILE), text)
        .map_err(|x| x.to_string())
}

/// The operator's `wait rollout-probe --for ready`.
fn wait_ready(e: &Env) -> Result<WaitReport, String> {
    e.operator_wait(Targets::Named(&[SERVICE]), Goal::Ready, ROLLOUT)
}

/// Write `text` and wait until the swarm runs it, every task up.
fn apply_and_wait(e: &Env, text: &str) -> Outcome {
    write_spec(e, text)?;
    let report = wait_ready(e)?;
    ensure(report.exit == WaitExit::Reached, || report.to_string())
}

/// The service's status as the operator's `get -o json --specs` shows it.
fn get(e: &Env) -> Result<ServiceStatus, String> {
    let json = operator_cli::get_json(&e.m, &[SERVICE], Some(SPECS)).map_err(|x| x.to_string())?;
    let status: Status =
        serde_json::from_str(&json).map_err(|x| format!("get -o json: {x}: {json}"))?;
    status
        .services
        .get(SERVICE)
        .cloned()
        .ok_or_else(|| format!("get -o json shows no {SERVICE}: {json}"))
}

/// The message of the condition `type_` when it holds with `reason`.
fn holding<'a>(s: &'a ServiceStatus, type_: &str, reason: &str) -> Option<&'a str> {
    s.holds(type_)
        .filter(|c| c.reason.as_deref() == Some(reason))
        .map(|c| c.message.as_deref().unwrap_or_default())
}

/// 10. A rolling update of a service with a task on every node: half-way, `get` shows it
///     `Progressing`, `RollingUpdate`, with `updated/total` counts and not `Ready`; `wait`
///     then exits 0 and every task runs the new spec, still spread over the nodes.
pub(crate) fn rolling_update(e: &Env) -> Outcome {
    apply_and_wait(e, &spec(1, PROBE, FailureAction::Pause, ""))?;
    write_spec(e, &good_spec(FailureAction::Pause))?;
    // Half-way: some tasks run the new spec, some the old one.
    let half_way = |s: &ServiceStatus| {
        s.updated_replicas.is_some_and(|n| 0 < n && n < REPLICAS)
            && holding(s, "Progressing", "RollingUpdate")
                .is_some_and(|m| m.contains(&format!("/{REPLICAS} updated")))
    };
    let mut under_way = None;
    e.wait(
        "get shows the rollout half-way with counts",
        ROLLOUT,
        || match get(e) {
            Ok(s) if half_way(&s) => {
                under_way = Some(s);
                true
            }
            _ => false,
        },
    )?;
    let under_way = under_way.ok_or("the rollout was seen but not kept")?;
    eprintln!(
        "    while rolling: {:?}",
        holding(&under_way, "Progressing", "RollingUpdate")
    );
    ensure(!under_way.is_ready(), || {
        format!("Ready while old tasks run: {under_way:?}")
    })?;

    let report = wait_ready(e)?;
    ensure(report.exit == WaitExit::Reached, || report.to_string())?;
    let done = get(e)?;
    ensure(
        done.is_ready()
            && done.updated_replicas == Some(REPLICAS)
            && done.running_replicas == Some(REPLICAS),
        || format!("after wait exited 0, get shows {done:?}"),
    )?;
    let nodes: BTreeSet<&str> = done
        .endpoints
        .iter()
        .filter(|x| x.state == "running")
        .map(|x| x.node.as_str())
        .collect();
    eprintln!("    {SERVICE}: {REPLICAS} tasks of the new spec on {nodes:?}");
    ensure(nodes.len() > 1, || {
        format!("all of {SERVICE}'s tasks on {nodes:?}")
    })
}

/// 11. An update to an image that no node has: swarm rejects the first new task and pauses;
///     `wait` exits 1 naming the service, `UpdatePaused` and the task's `No such image`, and
///     `get` shows it Degraded. The good spec is then put back and gets ready.
pub(crate) fn missing_image(e: &Env) -> Outcome {
    let good = good_spec(FailureAction::Pause);
    apply_and_wait(e, &good)?;
    write_spec(
        e,
        &spec(GOOD_VERSION, MISSING_IMAGE, FailureAction::Pause, ""),
    )?;
    let result = (|| {
        let report = wait_ready(e)?;
        eprintln!("    {}", report.stderr.trim_end());
        ensure(
            report.exit == WaitExit::Degraded
                && report
                    .stderr
                    .contains(&format!("{SERVICE}: UpdatePaused: "))
                && report.stderr.contains("No such image"),
            || format!("wait: expected {SERVICE}: UpdatePaused with No such image; {report}"),
        )?;
        let s = get(e)?;
        ensure(
            holding(&s, "Degraded", "UpdatePaused").is_some_and(|m| m.contains("No such image"))
                && !s.is_ready(),
            || format!("get: expected Degraded/UpdatePaused with No such image: {s:?}"),
        )
    })();
    // Whatever happened, the next scenario starts from the good spec, ready.
    let restored = apply_and_wait(e, &good);
    result.and(restored)
}

/// The value of the rolled-back mark on the service, empty when unmarked.
fn rolled_back_mark(e: &Env) -> Result<String, String> {
    e.docker(&[
        "service",
        "inspect",
        "--format",
        &format!("{{{{index .Spec.Labels \"{ROLLED_BACK_LABEL}\"}}}}"),
        SERVICE,
    ])
}

/// 12. A healthcheck that never passes with `failureAction: rollback`: swarm rolls the update
///     back, `wait` exits 1 with `RolledBack`, the operator marks the service and then writes
///     nothing for 20 s (no fight with swarm's rollback), `get` saying the spec is held. The
///     service is removed at the end, and `wait --for deleted` follows that.
pub(crate) fn rollback_held(e: &Env) -> Outcome {
    let result = (|| {
        // The failure action is set by a rollout of its own: the failing update then rolls
        // back whatever swarm makes of a spec changing both at once.
        apply_and_wait(e, &good_spec(FailureAction::Rollback))?;
        let unhealthy = spec(
            GOOD_VERSION,
            PROBE,
            FailureAction::Rollback,
            // Port 9: nothing listens, every check fails.
            "  healthcheck:
    test: [CMD, /e2e-probe, get, --timeout-ms, \"500\", \"http://127.0.0.1:9/\"]
    interval: 1s
    timeout: 1s
    retries: 1
",
        );
        write_spec(e, &unhealthy)?;
        let report = wait_ready(e)?;
        ensure(
            report.exit == WaitExit::Degraded
                && report
                    .stderr
                    .starts_with(&format!("{SERVICE}: RolledBack: ")),
            || format!("wait: expected {SERVICE}: RolledBack; {report}"),
        )?;
        eprintln!("    {}", report.stderr.trim_end());
        e.wait("the operator marks the rolled-back spec", ROLLOUT, || {
            rolled_back_mark(e).is_ok_and(|mark| !mark.is_empty())
        })?;
        let version = e.version(SERVICE)?;
        std::thread::sleep(HOLD);
        let after = e.version(SERVICE)?;
        ensure(after == version, || {
            format!(
                "service version {version} -> {after} within {HOLD:?} of the mark: the rolled-back spec was written again"
            )
        })?;
        let s = get(e)?;
        ensure(
            holding(&s, "Degraded", "RolledBack")
                .is_some_and(|m| m.contains("held until the spec changes")),
            || format!("get: expected Degraded/RolledBack, held: {s:?}"),
        )
    })();
    // Whatever happened, the service goes: the later scenarios do not expect it.
    let removed = (|| {
        e.m.remove_file(&e.spec_path(FILE))
            .map_err(|x| x.to_string())?;
        let report = e.operator_wait(Targets::Named(&[SERVICE]), Goal::Deleted, ROLLOUT)?;
        ensure(report.exit == WaitExit::Reached, || report.to_string())
    })();
    result.and(removed)
}
