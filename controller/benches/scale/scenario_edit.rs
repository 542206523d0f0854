//! Edit latency: one spec file edited → the update visible on the swarm, p50 and p99.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::Bench;
use crate::report::{ms, percentile, secs};

impl Bench {
    pub async fn edit(&mut self, n: usize) -> Result<()> {
        let samples = self.cfg.edits;
        self.report
            .section(format!("edit latency, {n} services, {samples} edits"));
        let instance = format!("{}-e{n}", self.prefix);
        let specs = self.specs(&instance)?;
        self.start_operator(&specs, &instance).await?;
        let name_prefix = format!("{instance}-svc");
        let names: Vec<String> = (0..n).map(|i| format!("{name_prefix}{i:05}")).collect();
        let created = self.converge(&specs, &names, &name_prefix).await?;
        match created.took {
            Some(took) => self.report.row(
                format!("operator: {n} files written → all exist"),
                secs(took),
            ),
            None => bail!("the operator did not create {n} services"),
        }
        // Let the burst settle (status writes, task polls) first.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let mark = self.operator_wire.log.mark();
        let mut latencies = Vec::new();
        for k in 0..samples {
            let name = &names[k * n / samples];
            let value = format!("edit-{k}");
            let want = format!("BENCH={value}");
            let start = Instant::now();
            specs.write(&format!("{name}.yaml"), &specs.service(name, &value))?;
            loop {
                if self.swarm.service_env(name).await?.contains(&want) {
                    latencies.push(start.elapsed());
                    break;
                }
                if start.elapsed() > self.cfg.timeout {
                    bail!(
                        "the edit of {name} was not applied after {:?}",
                        self.cfg.timeout
                    );
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            // Edits a person makes are apart; do not measure a burst.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let updates = self
            .operator_wire
            .log
            .since(mark)
            .iter()
            .filter(|r| r.key == "POST /services/{id}/update")
            .count();
        let mut sorted = latencies.clone();
        sorted.sort();
        self.report.row(
            "**edit (env) → update applied: p50 / p99**",
            format!(
                "**{} / {}** (min {}, max {})",
                ms(percentile(&sorted, 50)),
                ms(percentile(&sorted, 99)),
                ms(sorted[0]),
                ms(sorted[sorted.len() - 1])
            ),
        );
        self.report.row(
            "edits: service updates on the wire",
            format!("{updates} for {samples} edits"),
        );
        if let Some(memory) = self.operator().memory() {
            self.report.row(
                format!("**operator memory with {} services**", n + 1),
                memory.to_string(),
            );
        }
        self.stop_operator().await;
        self.swarm.remove_all(&instance).await;
        Ok(())
    }
}
