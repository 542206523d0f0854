//! The reference: `docker stack deploy` of the same services, through its own counting proxy.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::report::secs;
use crate::swarm::{BENCH_LABEL, TEST_IMAGE, docker_via};
use crate::wire::{breakdown, failures};
use crate::{Bench, creates_per_service};

/// How long `stack deploy` took for N services.
pub struct StackDeploy {
    /// Until the command returned.
    pub command: Duration,
    /// Until all services existed.
    pub all: Duration,
}

impl Bench {
    /// Deploys a stack of `n` services like the operator's specs (same image, args, env,
    /// `dnsrr`, `replicas: 0`), reports it, and removes it again.
    pub async fn stack_deploy(&mut self, n: usize, stack: &str) -> Result<StackDeploy> {
        let compose = self.work.path().join(format!("{stack}.yml"));
        let mut text = String::from("version: \"3.8\"\nservices:\n");
        for i in 0..n {
            write!(
                text,
                "  s{i:05}:\n    image: {TEST_IMAGE}\n    command: [sleep, \"3600\"]\n    environment: {{BENCH: \"1\"}}\n    stop_grace_period: 1s\n    deploy:\n      replicas: 0\n      endpoint_mode: dnsrr\n      labels: {{{BENCH_LABEL}: {}}}\n",
                self.prefix
            )?;
        }
        std::fs::write(&compose, text)?;
        let name_prefix = format!("{stack}_");
        let mark = self.cli_wire.log.mark();
        let start = Instant::now();
        docker_via(
            &self.cli_wire.host,
            &[
                "stack",
                "deploy",
                "-d",
                "--resolve-image",
                "never",
                "-c",
                compose.to_str().context("compose path")?,
                stack,
            ],
        )
        .await?;
        let command = start.elapsed();
        let all = self.swarm.wait_count(&name_prefix, n, start).await?;
        let end = self.cli_wire.log.mark();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let requests = self.cli_wire.log.between(mark, end);
        self.report.row(
            format!("stack deploy of {n}: command returns / all {n} exist"),
            format!("{} / **{}**", secs(command), secs(all)),
        );
        self.report.row(
            "stack deploy: Engine API calls (failed)",
            format!("{} ({})", breakdown(&requests), failures(&requests)),
        );
        self.report.row(
            "stack deploy: creates per service",
            creates_per_service(&requests, &name_prefix, n),
        );
        let start = Instant::now();
        docker_via(&self.cli_wire.host, &["stack", "rm", stack]).await?;
        let removed = self.swarm.wait_count(&name_prefix, 0, start).await?;
        self.report
            .row(format!("stack rm: all {n} gone"), secs(removed));
        // The stack's default network goes once its services are gone.
        self.swarm
            .wait_network_gone(&format!("{stack}_default"))
            .await;
        Ok(StackDeploy { command, all })
    }
}
