//! Scaling on a quiet swarm: N spec files against `stack deploy` of N services in the same run,
//! then the operator idle, a no-op resync, and the prune.

use std::time::Instant;

use anyhow::Result;
use swarm_operator::cli::diff::diff_dir;
use swarm_operator::docker::DockerEngine;

use crate::report::{median, ms, ratio, secs, spread};
use crate::wire::{breakdown, failures};
use crate::{Bench, creates_per_service};

impl Bench {
    pub async fn quiet(&mut self, n: usize) -> Result<()> {
        self.report.section(format!("quiet swarm, {n} specs"));
        let stack = self
            .stack_deploy(n, &format!("{}stk{n}", self.prefix))
            .await?;

        let instance = format!("{}-q{n}", self.prefix);
        let specs = self.specs(&instance)?;
        self.start_operator(&specs, &instance).await?;
        let metric_before = self.operator().request_metric().await;
        let cpu_before = self.operator().cpu();
        let name_prefix = format!("{instance}-svc");
        let names: Vec<String> = (0..n).map(|i| format!("{name_prefix}{i:05}")).collect();
        let created = self.converge(&specs, &names, &name_prefix).await?;
        let Some(took) = created.took else {
            self.report.row(
                format!("**operator: {n} files written → all exist**"),
                format!("timed out after {}", secs(self.cfg.timeout)),
            );
            self.stop_operator().await;
            self.swarm.remove_all(&instance).await;
            return Ok(());
        };
        self.report.row(
            format!("**operator: {n} files written → all exist**"),
            format!(
                "**{}**: **{}** stack deploy's (all exist), {} its command",
                secs(took),
                ratio(took, stack.all),
                ratio(took, stack.command)
            ),
        );
        if let (Some(before), Some(after)) = (cpu_before, self.operator().cpu()) {
            self.report.row(
                "operator CPU time (user + system) until all exist",
                secs(after.saturating_sub(before)),
            );
        }
        let requests = &created.requests;
        self.report.row(
            "operator create: Engine API calls until all exist (failed)",
            format!("{} ({})", breakdown(requests), failures(requests)),
        );
        self.report.row(
            "operator create: creates per service",
            creates_per_service(requests, &name_prefix, n),
        );
        self.report.row(
            "operator create: own metric `swarm_operator_docker_requests_total`",
            crate::operator_process::metric_delta(
                metric_before.as_ref(),
                self.operator().request_metric().await.as_ref(),
            ),
        );
        if let Some(memory) = self.operator().memory() {
            self.report.row(
                format!("operator memory with {} services", n + 1),
                memory.to_string(),
            );
        }

        // Idle: nothing changes; one 30 s resync falls in a 35 s window.
        let idle = self.cfg.idle;
        eprintln!("  idle {idle:?}");
        let mark = self.operator_wire.log.mark();
        tokio::time::sleep(idle).await;
        let idle_requests = self.operator_wire.log.since(mark);
        let idle_writes = idle_requests.iter().filter(|r| r.is_write()).count();
        self.report.row(
            format!(
                "operator idle {} s (resync 30 s): Engine API calls / writes",
                idle.as_secs()
            ),
            format!("{} / {idle_writes}", breakdown(&idle_requests)),
        );
        if let Some(memory) = self.operator().memory() {
            self.report
                .row("operator memory after the idle window", memory.to_string());
        }

        // No-op resync: observe + plan over the directory, in this process.
        let api = DockerEngine::connect().await?; // DOCKER_HOST: the diff proxy
        let (mut times, mut calls, mut writes) = (Vec::new(), Vec::new(), 0);
        for run in 0..=self.cfg.resync_samples {
            let mark = self.diff_wire.log.mark();
            let start = Instant::now();
            let (plan, _errors) =
                diff_dir(&api, &specs.path, false, &instance, &Default::default()).await?;
            let elapsed = start.elapsed();
            if run > 0 {
                // run 0 warms the connection pool
                times.push(elapsed);
                calls.push(self.diff_wire.log.since(mark));
                writes += plan.actions.len();
            }
        }
        self.report.row(
            format!(
                "no-op resync (diff_dir: observe + plan, {} specs), median of {}",
                n + 1,
                times.len()
            ),
            format!("{} ({})", ms(median(times.clone())), spread(&times)),
        );
        self.report.row(
            "no-op resync: Engine API calls per run / planned writes (all runs)",
            format!(
                "{} / {writes}",
                calls.first().map(|c| breakdown(c)).unwrap_or_default()
            ),
        );

        // Prune: all N files deleted.
        let start = Instant::now();
        for name in &names {
            specs.remove(&format!("{name}.yaml"))?;
        }
        let pruned = self.swarm.wait_count(&name_prefix, 0, start).await?;
        self.report.row(
            format!("operator prune: {n} files deleted → all gone"),
            secs(pruned),
        );
        self.stop_operator().await;
        self.swarm.remove_all(&instance).await;
        Ok(())
    }
}
