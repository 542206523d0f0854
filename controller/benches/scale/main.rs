//! Scale benchmark of the operator against `docker stack deploy` on the local single-node
//! swarm (see `controller/BENCHMARK.md` for what it measures and how to run it).

mod churn;
mod env;
mod operator_process;
// Shared with the arrival bench, which uses all of it.
#[allow(dead_code)]
mod process;
mod report;
mod scenario_churn;
mod scenario_edit;
mod scenario_quiet;
mod specs;
mod stack;
mod swarm;
mod wire;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bollard::Docker;

use crate::env::{env_num, env_text};
use crate::operator_process::OperatorProcess;
use crate::report::Report;
use crate::specs::SpecDir;
use crate::swarm::{ENGINE_SOCKET, Swarm, docker, ensure_test_image, load_average};
use crate::wire::{Request, Wire};

/// The parts of a run, selected with `BENCH_SCENARIOS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// Quiet swarm, each of `BENCH_SIZES`: convergence vs stack deploy, API calls, idle and
    /// no-op resync cost, memory, prune.
    Quiet,
    /// One edited file → update applied, p50/p99, with `BENCH_SERVICES` services.
    Edit,
    /// A busy swarm with an impossible spec and a held network, `BENCH_SERVICES` services.
    Churn,
}

impl Scenario {
    fn parse(name: &str) -> Result<Scenario> {
        match name.trim() {
            "quiet" => Ok(Scenario::Quiet),
            "edit" => Ok(Scenario::Edit),
            "churn" => Ok(Scenario::Churn),
            other => bail!("unknown scenario {other:?} in BENCH_SCENARIOS (quiet, edit, churn)"),
        }
    }
}

pub struct Config {
    scenarios: Vec<Scenario>,
    /// Spec counts of the quiet scenario.
    sizes: Vec<usize>,
    /// Services of the edit and churn scenarios.
    services: usize,
    edits: usize,
    resync_samples: usize,
    idle: Duration,
    steady: Duration,
    /// Span after the churn scenario's faults over which their retries are counted.
    retry_watch: Duration,
    churn_rate: f64,
    timeout: Duration,
}

impl Config {
    fn from_env() -> Result<Config> {
        let services: usize = env_num("BENCH_SERVICES", 500)?;
        let sizes = match env_text("BENCH_SIZES") {
            Some(list) => list
                .split(',')
                .map(|s| {
                    s.trim()
                        .parse()
                        .map_err(|_| anyhow!("BENCH_SIZES: {s:?} is not a number"))
                })
                .collect::<Result<Vec<usize>>>()?,
            None if env_text("BENCH_SERVICES").is_some() => vec![services],
            None => vec![500, 2000, 5000],
        };
        let scenarios = env_text("BENCH_SCENARIOS")
            .unwrap_or_else(|| "quiet,edit,churn".to_owned())
            .split(',')
            .map(Scenario::parse)
            .collect::<Result<Vec<_>>>()?;
        Ok(Config {
            scenarios,
            sizes,
            services,
            edits: env_num("BENCH_EDITS", 20usize)?.max(1),
            resync_samples: env_num("BENCH_RESYNC_SAMPLES", 5usize)?.max(1),
            idle: Duration::from_secs(env_num("BENCH_IDLE_SECS", 35)?),
            steady: Duration::from_secs(env_num("BENCH_STEADY_SECS", 30)?),
            retry_watch: Duration::from_secs(env_num("BENCH_RETRY_WATCH_SECS", 60)?.max(1)),
            churn_rate: env_num("BENCH_CHURN_RATE", 4.0)?,
            timeout: Duration::from_secs(env_num("BENCH_TIMEOUT_SECS", 600)?),
        })
    }
}

/// One run: its prefix, the counting proxies, the running operator, the results.
pub struct Bench {
    cfg: Config,
    swarm: Swarm,
    /// `sobench<pid>`: every name the run creates starts with it.
    prefix: String,
    work: tempfile::TempDir,
    /// The operator's connection to the engine.
    operator_wire: Wire,
    /// `docker stack deploy/rm`.
    cli_wire: Wire,
    /// The in-process `diff_dir` client (`DOCKER_HOST`).
    diff_wire: Wire,
    operator: Option<OperatorProcess>,
    churn: Option<churn::Churn>,
    report: Report,
}

/// How an operator converged on a set of new spec files.
pub struct Convergence {
    /// From the first file written until all services exist; `None` if it timed out.
    pub took: Option<Duration>,
    /// The operator's requests meanwhile.
    pub requests: Vec<Request>,
}

impl Bench {
    fn specs(&self, name: &str) -> Result<SpecDir> {
        SpecDir::create(self.work.path().join(name), &self.prefix)
    }

    /// Starts an operator (instance `instance`, so it owns nothing of anyone else's) on
    /// `specs`, which holds a sentinel service, and waits for the sentinel.
    async fn start_operator(&mut self, specs: &SpecDir, instance: &str) -> Result<()> {
        let sentinel = format!("{instance}-sentinel");
        specs.write("sentinel.yaml", &specs.service(&sentinel, "1"))?;
        let operator = OperatorProcess::start(
            &specs.path,
            self.work.path(),
            instance,
            instance,
            &self.operator_wire.host,
        )?;
        self.operator = Some(operator);
        self.swarm.wait_count(&sentinel, 1, Instant::now()).await?;
        Ok(())
    }

    fn operator(&self) -> &OperatorProcess {
        self.operator.as_ref().expect("an operator runs")
    }

    /// Stops the operator and reports its WARN/ERROR lines.
    async fn stop_operator(&mut self) {
        let Some(mut operator) = self.operator.take() else {
            return;
        };
        let clean = operator.stop().await;
        let problems = operator.problems();
        self.report
            .row("operator log: WARN/ERROR lines", problems.len().to_string());
        for line in problems.iter().take(3) {
            self.report
                .note(format!("operator log: {}", clip(line, 240)));
        }
        if !clean {
            self.report.note("the operator did not exit cleanly");
        }
    }

    /// Writes one spec file per name and waits until all those services exist.
    async fn converge(
        &self,
        specs: &SpecDir,
        names: &[String],
        name_prefix: &str,
    ) -> Result<Convergence> {
        let texts: Vec<(String, String)> = names
            .iter()
            .map(|name| (format!("{name}.yaml"), specs.service(name, "1")))
            .collect();
        let mark = self.operator_wire.log.mark();
        let start = Instant::now();
        for (file, text) in &texts {
            specs.write(file, text)?;
        }
        let took = match self.swarm.wait_count(name_prefix, names.len(), start).await {
            Ok(took) => Some(took),
            Err(e) => {
                eprintln!("  {e:#}");
                None
            }
        };
        let end = self.operator_wire.log.mark();
        // The last responses (e.g. a duplicate create's 409) may still be on their way.
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok(Convergence {
            took,
            requests: self.operator_wire.log.between(mark, end),
        })
    }

    async fn run(&mut self) -> Result<()> {
        for scenario in self.cfg.scenarios.clone() {
            let load = load_average();
            match scenario {
                Scenario::Quiet => {
                    for n in self.cfg.sizes.clone() {
                        self.quiet(n).await?;
                        self.report.note(format!(
                            "load average 1 min: {load} before, {} after",
                            load_average()
                        ));
                    }
                }
                Scenario::Edit => {
                    self.edit(self.cfg.services).await?;
                    self.report.note(format!(
                        "load average 1 min: {load} before, {} after",
                        load_average()
                    ));
                }
                Scenario::Churn => {
                    self.churn(self.cfg.services).await?;
                    self.report.note(format!(
                        "load average 1 min: {load} before, {} after",
                        load_average()
                    ));
                }
            }
        }
        Ok(())
    }

    /// Stops whatever still runs and removes everything named with the run's prefix.
    async fn cleanup(&mut self) {
        if let Some(churn) = self.churn.take() {
            churn.stop().await;
        }
        // An operator still running here means a scenario failed: its log says why.
        if let Some(mut operator) = self.operator.take() {
            operator.stop().await;
            eprintln!("operator log (last lines):\n{}", operator.log_tail(20));
        }
        self.swarm.remove_all(&self.prefix).await;
    }
}

/// The first `max` characters of `text`, marked when cut.
pub fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// Creates per service: `creates / services` as `1.00`.
pub fn creates_per_service(requests: &[Request], name_prefix: &str, services: usize) -> String {
    let creates = requests
        .iter()
        .filter(|r| r.is_service_create())
        .filter(|r| {
            r.target
                .as_deref()
                .is_some_and(|t| t.starts_with(name_prefix))
        })
        .count();
    format!(
        "{:.2} ({creates} creates for {services} services)",
        creates as f64 / services as f64
    )
}

fn main() -> Result<()> {
    let cfg = Config::from_env()?;
    if std::env::var("DOCKER_HOST").is_ok_and(|h| h != format!("unix://{ENGINE_SOCKET}")) {
        bail!("this bench talks to {ENGINE_SOCKET}; unset DOCKER_HOST");
    }
    let work = tempfile::Builder::new()
        .prefix("swarm-operator-bench")
        .tempdir()?;
    let diff_socket = work.path().join("diff.sock");
    // SAFETY: no other thread exists yet. `DockerEngine::connect` (the diff_dir client) reads
    // DOCKER_HOST, so it goes through its counting proxy.
    unsafe { std::env::set_var("DOCKER_HOST", format!("unix://{}", diff_socket.display())) };

    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let engine = Docker::connect_with_unix(ENGINE_SOCKET, 120, bollard::API_DEFAULT_VERSION)?
            .negotiate_version()
            .await?;
        let state = docker(&["info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}"])
            .await
            .context("no Docker engine answers")?;
        if state != "active true" {
            bail!("the local engine is not a swarm manager ({state}); run `docker swarm init --advertise-addr 127.0.0.1`");
        }
        ensure_test_image().await?;
        let prefix = format!("sobench{}", std::process::id() % 100_000);
        let header = format!(
            "swarm-operator scale bench {prefix}: scenarios {:?}, quiet sizes {:?}, edit/churn {} services, {} edits, churn {}/s, load average {} at start",
            cfg.scenarios, cfg.sizes, cfg.services, cfg.edits, cfg.churn_rate, load_average()
        );
        eprintln!("{header}");
        let mut bench = Bench {
            swarm: Swarm {
                engine,
                prefix: prefix.clone(),
                timeout: cfg.timeout,
            },
            cfg,
            prefix,
            operator_wire: Wire::start(&work.path().join("operator.sock"))?,
            cli_wire: Wire::start(&work.path().join("cli.sock"))?,
            diff_wire: Wire::start(&diff_socket)?,
            work,
            operator: None,
            churn: None,
            report: Report::default(),
        };
        let result = tokio::select! {
            r = bench.run() => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
        };
        eprintln!("cleaning up {}*", bench.prefix);
        bench.cleanup().await;
        bench.report.print(&header);
        if let Err(e) = &result {
            eprintln!("bench failed: {e:#}");
        }
        result
    })
}
