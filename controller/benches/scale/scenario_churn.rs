//! A busy swarm: a second client creating and removing unmanaged services and networks, one
//! spec that can never be applied (its published port is held), one owned network whose spec
//! is deleted while an unmanaged service still uses it; then N spec files. The reference is
//! `stack deploy` of the same N services under the same churn.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::churn::Churn;
use crate::report::{ratio, secs};
use crate::swarm::{BENCH_LABEL, TEST_IMAGE, docker};
use crate::wire::{Request, breakdown, failures};
use crate::{Bench, creates_per_service};

/// Settling time after convergence before the steady-state window.
const SETTLE: Duration = Duration::from_secs(5);

/// Writes naming one of `targets` from `since` on, as seconds after it. Earlier ones (the held
/// network's own creation) are not attempts: `Instant::duration_since` would make them 0.0.
fn attempts(requests: &[Request], targets: &[&str], since: Instant) -> Vec<f64> {
    requests
        .iter()
        .filter(|r| r.is_write() && r.at >= since)
        .filter(|r| r.target.as_deref().is_some_and(|t| targets.contains(&t)))
        .map(|r| r.at.duration_since(since).as_secs_f64())
        .collect()
}

fn timeline(at: &[f64]) -> String {
    let mut shown: Vec<String> = at.iter().take(12).map(|t| format!("{t:.1}")).collect();
    if at.len() > 12 {
        shown.push("…".to_owned());
    }
    format!("at {} s", shown.join(", "))
}

impl Bench {
    pub async fn churn(&mut self, n: usize) -> Result<()> {
        let rate = self.cfg.churn_rate;
        self.report.section(format!(
            "busy swarm (churn {rate} objects/s), {n} specs + an impossible spec + a held network"
        ));
        self.churn = Some(Churn::start(self.swarm.engine.clone(), &self.prefix, rate));
        let holder = format!("{}-holder", self.prefix);
        let port = self.hold_a_port(&holder).await?;

        let stack = self
            .stack_deploy(n, &format!("{}stkchurn", self.prefix))
            .await?;

        let instance = format!("{}-c", self.prefix);
        let specs = self.specs(&instance)?;
        let held = format!("{instance}-held");
        specs.write("held.yaml", &specs.network(&held))?;
        let mark = self.operator_wire.log.mark();
        self.start_operator(&specs, &instance).await?;
        let metric_before = self.operator().request_metric().await;
        let start = Instant::now();
        let held_id = loop {
            if let Some(id) = self.swarm.network_id(&held).await {
                break id;
            }
            if start.elapsed() > self.cfg.timeout {
                bail!("the operator did not create the network {held}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let user = format!("{}-user", self.prefix);
        docker(&[
            "service",
            "create",
            "-d",
            "--name",
            &user,
            "--replicas",
            "0",
            "--label",
            &format!("{BENCH_LABEL}={}", self.prefix),
            "--network",
            &held,
            TEST_IMAGE,
            "sleep",
            "3600",
        ])
        .await?;
        let impossible = format!("{instance}-impossible");
        let faults = Instant::now();
        specs.remove("held.yaml")?;
        specs.write("impossible.yaml", &specs.service_on_port(&impossible, port))?;

        let name_prefix = format!("{instance}-svc");
        let names: Vec<String> = (0..n).map(|i| format!("{name_prefix}{i:05}")).collect();
        let created = self.converge(&specs, &names, &name_prefix).await?;
        match created.took {
            Some(took) => self.report.row(
                format!("**operator under churn: {n} files written → all exist**"),
                format!(
                    "**{}**: **{}** stack deploy's (all exist), {} its command",
                    secs(took),
                    ratio(took, stack.all),
                    ratio(took, stack.command)
                ),
            ),
            None => self.report.row(
                format!("**operator under churn: {n} files written → all exist**"),
                format!("**timed out** after {}", secs(self.cfg.timeout)),
            ),
        }
        let requests = &created.requests;
        self.report.row(
            "operator create: Engine API calls until all exist (failed)",
            format!("{} ({})", breakdown(requests), failures(requests)),
        );
        self.report.row(
            "**operator create: creates per service**",
            creates_per_service(requests, &name_prefix, n),
        );

        tokio::time::sleep(SETTLE).await;
        let steady = self.cfg.steady;
        eprintln!("  steady state {steady:?}");
        let window = self.operator_wire.log.mark();
        tokio::time::sleep(steady).await;
        let steady_requests = self.operator_wire.log.since(window);
        // Retries are counted over a fixed span after the faults (default: the first minute, the
        // backoff's busiest), so that runs of any length compare.
        let watch = self.cfg.retry_watch;
        if let Some(rest) = watch.checked_sub(faults.elapsed()) {
            eprintln!("  watching retries for {rest:.0?} more");
            tokio::time::sleep(rest).await;
        }
        let all = self.operator_wire.log.since(mark);

        let held_targets = [held.as_str(), held_id.as_str()];
        let impossible_targets = [impossible.as_str()];
        let minutes = watch.as_secs_f64() / 60.0;
        for (what, targets) in [
            ("the impossible spec (port held)", &impossible_targets[..]),
            ("the held network's removal", &held_targets[..]),
        ] {
            let mut at = attempts(&all, targets, faults);
            let later = at.len();
            at.retain(|t| *t <= watch.as_secs_f64());
            let later = later - at.len();
            self.report.row(
                format!(
                    "**attempts at {what} per minute** (first {} s after the fault)",
                    watch.as_secs()
                ),
                format!(
                    "**{:.1}** ({} in {} s, {}; {later} after)",
                    at.len() as f64 / minutes,
                    at.len(),
                    watch.as_secs(),
                    timeline(&at)
                ),
            );
        }
        let writes: Vec<&Request> = steady_requests.iter().filter(|r| r.is_write()).collect();
        let retries = writes
            .iter()
            .filter(|r| {
                r.target
                    .as_deref()
                    .is_some_and(|t| impossible_targets.contains(&t) || held_targets.contains(&t))
            })
            .count();
        self.report.row(
            format!("**writes in {} s of steady state**", steady.as_secs()),
            format!(
                "**{}** besides {retries} retries of the two ({} calls in all: {})",
                writes.len() - retries,
                steady_requests.len(),
                breakdown(&steady_requests)
            ),
        );
        self.report.row(
            "operator: own metric `swarm_operator_docker_requests_total`, whole scenario",
            crate::operator_process::metric_delta(
                metric_before.as_ref(),
                self.operator().request_metric().await.as_ref(),
            ),
        );
        for name in [&impossible, &held] {
            let status = self
                .operator()
                .status_of(name)
                .map(|s| status_summary(&s))
                .unwrap_or_else(|| "not in the status file".to_owned());
            self.report.row(format!("status of {name}"), status);
        }
        if let Some(memory) = self.operator().memory() {
            self.report.row(
                format!("operator memory with {} services", n + 2),
                memory.to_string(),
            );
        }
        if let Some(churn) = self.churn.take() {
            let stats = churn.stop().await;
            let seconds = Instant::now().duration_since(start).as_secs_f64();
            self.report.row(
                "churn client: objects created / removed / failed",
                format!(
                    "{} / {} / {} (operator phase {seconds:.0} s)",
                    stats.created, stats.removed, stats.failed
                ),
            );
        }
        self.stop_operator().await;
        self.swarm.remove_all(&instance).await;
        self.swarm.remove_all(&self.prefix).await;
        Ok(())
    }

    /// Creates an unmanaged service holding an ingress port; returns the port.
    async fn hold_a_port(&self, holder: &str) -> Result<u16> {
        let base = 20_000 + (std::process::id() % 10_000) as u16;
        let mut last = None;
        for port in base..base + 20 {
            let publish = format!("published={port},target=80");
            match docker(&[
                "service",
                "create",
                "-d",
                "--name",
                holder,
                "--replicas",
                "0",
                "--label",
                &format!("{BENCH_LABEL}={}", self.prefix),
                "--publish",
                &publish,
                TEST_IMAGE,
                "sleep",
                "3600",
            ])
            .await
            {
                Ok(_) => return Ok(port),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("tried a port"))
    }
}

/// `Degraded=True (PortConflict): message; lastError: …` from a status entry.
fn status_summary(status: &serde_json::Value) -> String {
    let mut parts: Vec<String> = status
        .get("conditions")
        .and_then(|c| c.as_array())
        .into_iter()
        .flatten()
        .map(|c| {
            let field = |k: &str| c.get(k).and_then(|v| v.as_str()).unwrap_or("?").to_owned();
            format!(
                "{}={} ({}): {}",
                field("type"),
                field("status"),
                field("reason"),
                crate::clip(&field("message"), 160)
            )
        })
        .collect();
    if let Some(error) = status.get("lastError").and_then(|e| e.as_str()) {
        parts.push(format!("lastError: {}", crate::clip(error, 160)));
    }
    parts.join("; ")
}
