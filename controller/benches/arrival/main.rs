//! Scale as a user meets it: N spec files arrive in the operator's directory (bulk copy,
//! renames, or a writing loop), or the same N services go to `docker stack deploy`, and a
//! poller outside both times until `docker service ls` shows them all. See
//! `controller/BENCHMARK.md`, "Round 3".

mod cleanup;
#[path = "../scale/env.rs"]
mod env;
mod files;
mod operator;
mod poller;
// Shared with the scale bench, which uses all of it.
#[allow(dead_code)]
#[path = "../scale/process.rs"]
mod process;
// The scale bench's Docker CLI helpers, test image and load average; not all of it is used.
#[allow(dead_code)]
#[path = "../scale/swarm.rs"]
mod swarm;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use bollard::Docker;

use crate::env::{env_num, env_text};
use crate::files::{Arrival, ServiceShape};
use crate::poller::Seen;
use crate::swarm::{ENGINE_SOCKET, docker, ensure_test_image, load_average};

/// What every bench service, network and label value starts with (then the bench's process id).
const PREFIX: &str = "sobench";

struct Config {
    /// Spec files (services) per run.
    n: usize,
    runs: usize,
    arrivals: Vec<Arrival>,
    /// `--concurrency` values to try; `None` is the operator's default (no flag).
    concurrencies: Vec<Option<usize>>,
    replicas: u32,
    /// `BENCH_PLACEMENT=nowhere`: tasks that no node can take (see [`ServiceShape`]).
    unplaceable: bool,
    /// Whether to run `docker stack deploy` too.
    stack: bool,
    /// The operator's `RUST_LOG`.
    log_filter: String,
    /// Where to keep the operators' logs (for their timestamps); dropped with the temp dir
    /// otherwise.
    keep_logs: Option<std::path::PathBuf>,
    timeout: Duration,
}

impl Config {
    fn from_env() -> Result<Config> {
        let arrivals = env_text("BENCH_ARRIVALS")
            .unwrap_or_else(|| "copy,loop".to_owned())
            .split(',')
            .map(Arrival::parse)
            .collect::<Result<Vec<_>>>()?;
        let concurrencies = match env_text("BENCH_CONCURRENCY") {
            None => vec![None],
            Some(list) => list
                .split(',')
                .map(|c| match c.trim() {
                    "default" => Ok(None),
                    c => c
                        .parse()
                        .map(Some)
                        .map_err(|_| anyhow!("BENCH_CONCURRENCY: {c:?} is not a number")),
                })
                .collect::<Result<Vec<_>>>()?,
        };
        Ok(Config {
            n: env_num("BENCH_N", 500usize)?.max(1),
            runs: env_num("BENCH_RUNS", 3usize)?.max(1),
            arrivals,
            concurrencies,
            replicas: env_num("BENCH_REPLICAS", 1u32)?,
            unplaceable: match env_text("BENCH_PLACEMENT").as_deref() {
                None | Some("node") => false,
                Some("nowhere") => true,
                Some(other) => bail!("BENCH_PLACEMENT={other:?}: node (default) or nowhere"),
            },
            stack: env_num("BENCH_STACK", 1u8)? != 0,
            log_filter: env_text("BENCH_OPERATOR_LOG").unwrap_or_else(|| "info".to_owned()),
            keep_logs: env_text("BENCH_KEEP_LOGS").map(Into::into),
            timeout: Duration::from_secs(env_num("BENCH_TIMEOUT_SECS", 1200)?),
        })
    }
}

/// One contender's way of deploying: `docker stack deploy`, or an operator with a way of
/// arrival and a concurrency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Contender {
    Stack,
    Operator {
        arrival: ArrivalKey,
        concurrency: Option<usize>,
    },
}

/// [`Arrival`] ordered, for the summary's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct ArrivalKey(u8);

impl From<Arrival> for ArrivalKey {
    fn from(a: Arrival) -> Self {
        ArrivalKey(a as u8)
    }
}

impl ArrivalKey {
    fn arrival(self) -> Arrival {
        [Arrival::Copy, Arrival::Rename, Arrival::Loop][self.0 as usize]
    }
}

impl std::fmt::Display for Contender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Contender::Stack => write!(f, "stack deploy"),
            Contender::Operator {
                arrival,
                concurrency,
            } => {
                write!(f, "operator, {}", arrival.arrival().name())?;
                match concurrency {
                    Some(c) => write!(f, ", --concurrency {c}"),
                    None => write!(f, ", default concurrency"),
                }
            }
        }
    }
}

/// One timed deployment.
struct Attempt {
    /// Until the last file was written / `stack deploy` returned.
    landed: Duration,
    seen: Seen,
    load: String,
    /// The operator's memory after converging, after 5 s more, and its CPU.
    memory: Option<(process::Memory, process::Memory, Duration)>,
    /// The Docker engine's CPU time from the start of the stopwatch until all were seen: the
    /// work a contender costs the manager (the poller's lists are the same for both).
    engine_cpu: Option<Duration>,
    removal: cleanup::Emptied,
}

struct Bench {
    cfg: Config,
    engine: Docker,
    /// `sobenchPID`: every service, network and label value starts with it.
    prefix: String,
    work: tempfile::TempDir,
    shape: ServiceShape,
    results: BTreeMap<Contender, Vec<Attempt>>,
    /// `dockerd`'s process id, when this machine runs it (for its CPU time).
    engine_pid: Option<u32>,
}

/// The process id of the local `dockerd`, found by name among `/proc`'s processes.
fn engine_pid() -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid = entry.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
            (comm.trim_end() == "dockerd").then_some(pid)
        })
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn utc_now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

impl Bench {
    /// Deploys N services with `contender`, timed from outside, then empties the swarm.
    async fn attempt(&mut self, run: usize, contender: Contender) -> Result<()> {
        let n = self.cfg.n;
        // One tag per attempt: a directory, a sentinel or a label used twice would let one
        // attempt find what the last one left.
        let attempt = self.results.values().map(Vec::len).sum::<usize>();
        let tag = format!("{}r{run}x{attempt}", self.prefix);
        let label = format!("{tag}-all");
        let load = load_average();
        eprintln!("-- run {run}: {contender} ({n} services, {tag}), load {load}");
        let mut operator = None;
        let engine_cpu_at_start;
        let (landed, seen) = match contender {
            Contender::Stack => {
                let compose = self.work.path().join(format!("{tag}.yml"));
                std::fs::write(&compose, self.shape.compose(n, &label))?;
                eprintln!("   stopwatch starts {}", utc_now());
                engine_cpu_at_start = self.engine_cpu();
                let start = Instant::now();
                let args = [
                    "stack",
                    "deploy",
                    "--detach=true",
                    "--resolve-image",
                    "never",
                    "-c",
                    compose.to_str().context("compose path")?,
                    &tag,
                ];
                let deploy = docker(&args);
                let poll = poller::wait_for(&self.engine, &label, n, start, self.cfg.timeout);
                let (deployed, seen) = tokio::join!(
                    async {
                        let r = deploy.await;
                        (r, start.elapsed())
                    },
                    poll
                );
                deployed.0?;
                (deployed.1, seen?)
            }
            Contender::Operator {
                arrival,
                concurrency,
            } => {
                let specs = self.work.path().join(format!("{tag}-specs"));
                std::fs::create_dir_all(&specs)?;
                // A sentinel first: the operator is up and has listed the swarm before the
                // stopwatch starts, as a running operator would be.
                let sentinel = format!("{tag}-sentinel");
                std::fs::write(
                    specs.join("sentinel.yaml"),
                    self.shape.spec(&sentinel, &sentinel, None),
                )?;
                let prepared = self.shape.prepare(
                    &self.work.path().join(format!("{tag}-prepared")),
                    n,
                    &format!("{tag}-"),
                    &label,
                )?;
                let process = operator::start(
                    &specs,
                    self.work.path(),
                    &tag,
                    concurrency,
                    &self.cfg.log_filter,
                )?;
                let process = operator.insert(process);
                let sentinel_seen =
                    poller::wait_for(&self.engine, &sentinel, 1, Instant::now(), self.cfg.timeout);
                tokio::select! {
                    seen = sentinel_seen => {
                        seen.context("waiting for the operator's sentinel service")?;
                    }
                    status = process.exited() => bail!(
                        "the operator exited ({status}) before its sentinel service appeared; see {}",
                        process.log.display()
                    ),
                }
                eprintln!("   stopwatch starts {}", utc_now());
                engine_cpu_at_start = self.engine_cpu();
                let start = Instant::now();
                let land = async {
                    let r = prepared.land(arrival.arrival(), &specs).await;
                    (r, start.elapsed())
                };
                let poll = poller::wait_for(&self.engine, &label, n, start, self.cfg.timeout);
                let (landed, seen) = tokio::join!(land, poll);
                landed.0?;
                (landed.1, seen?)
            }
        };
        let engine_cpu = self
            .engine_cpu()
            .zip(engine_cpu_at_start)
            .map(|(end, start)| end.saturating_sub(start));
        eprintln!(
            "   landed {}, first seen {}, all seen {} (slowest list {}), engine CPU {}",
            secs(landed),
            secs(seen.first),
            secs(seen.all),
            secs(seen.slowest_poll),
            engine_cpu.map_or("?".to_owned(), secs)
        );
        let memory = match &mut operator {
            None => None,
            Some(process) => {
                let at_convergence = process.memory();
                tokio::time::sleep(Duration::from_secs(5)).await;
                let later = process.memory();
                let cpu = process.cpu();
                let clean = process.stop(Duration::from_secs(30)).await;
                let problems = process.problems();
                if !clean || !problems.is_empty() {
                    eprintln!(
                        "   operator: exited cleanly {clean}, {} WARN/ERROR lines, e.g. {:?}",
                        problems.len(),
                        problems.first()
                    );
                }
                if let Some(dir) = &self.cfg.keep_logs {
                    std::fs::create_dir_all(dir)?;
                    let kept = dir.join(format!("{tag}.log"));
                    std::fs::copy(&process.log, &kept)?;
                    eprintln!("   log kept at {}", kept.display());
                }
                at_convergence
                    .zip(later)
                    .zip(cpu)
                    .map(|((a, b), c)| (a, b, c))
            }
        };
        if let Some((a, b, cpu)) = memory {
            eprintln!(
                "   operator RSS {:.1} MB at convergence (RssAnon {:.1} MB), {:.1} MB 5 s later, peak {:.1} MB, CPU {}",
                a.rss_mb(),
                a.anon_mb(),
                b.rss_mb(),
                b.peak_mb(),
                secs(cpu)
            );
        }
        let removal = cleanup::empty_swarm(&self.engine, &self.prefix, self.cfg.timeout).await?;
        eprintln!(
            "   removed {} services: listed none after {}, no container after {}, no task after {}",
            removal.services_removed,
            secs(removal.services_gone),
            secs(removal.containers_gone),
            secs(removal.tasks_gone)
        );
        self.results.entry(contender).or_default().push(Attempt {
            landed,
            seen,
            load,
            memory,
            engine_cpu,
            removal,
        });
        Ok(())
    }

    fn engine_cpu(&self) -> Option<Duration> {
        process::cpu_of(self.engine_pid?)
    }

    async fn run(&mut self) -> Result<()> {
        let mut operators = Vec::new();
        for &arrival in &self.cfg.arrivals {
            for &concurrency in &self.cfg.concurrencies {
                operators.push(Contender::Operator {
                    arrival: arrival.into(),
                    concurrency,
                });
            }
        }
        for run in 0..self.cfg.runs {
            // Alternate who goes first, so that a trend in the machine's load favours no one.
            let mut order = operators.clone();
            if self.cfg.stack {
                if run % 2 == 0 {
                    order.insert(0, Contender::Stack);
                } else {
                    order.push(Contender::Stack);
                }
            }
            for contender in order {
                self.attempt(run, contender).await?;
            }
        }
        Ok(())
    }

    /// Median and spread per contender, as markdown.
    fn summary(&self) -> String {
        let median = |mut v: Vec<f64>| -> (f64, f64, f64) {
            v.sort_by(f64::total_cmp);
            let mid = v.len() / 2;
            let median = if v.len() % 2 == 1 {
                v[mid]
            } else {
                (v[mid - 1] + v[mid]) / 2.0
            };
            (median, v[0], v[v.len() - 1])
        };
        let fmt = |(m, lo, hi): (f64, f64, f64)| format!("{m:.2} s ({lo:.2}–{hi:.2})");
        let stack_median = self
            .results
            .get(&Contender::Stack)
            .map(|a| median(a.iter().map(|a| a.seen.all.as_secs_f64()).collect()).0);
        let mut out = format!(
            "{} services, replicas {}{}, {} runs each; median (min–max)\n\n| contender | all seen | ratio to stack deploy | first seen | first seen after landing | landed | operator RSS (of it RssAnon) at convergence / +5 s / peak (MB) | operator CPU | engine CPU until all seen | removal: services / containers gone | load (1 min) |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
            self.cfg.n,
            self.cfg.replicas,
            if self.cfg.unplaceable {
                " (placed nowhere: tasks pending)"
            } else {
                ""
            },
            self.cfg.runs
        );
        for (contender, attempts) in &self.results {
            let all = median(attempts.iter().map(|a| a.seen.all.as_secs_f64()).collect());
            let ratio = stack_median.map_or("–".to_owned(), |s| format!("{:.2}×", all.0 / s));
            let first = median(
                attempts
                    .iter()
                    .map(|a| a.seen.first.as_secs_f64())
                    .collect(),
            );
            let after_landing = median(
                attempts
                    .iter()
                    .map(|a| a.seen.first.as_secs_f64() - a.landed.as_secs_f64())
                    .collect(),
            );
            let landed = median(attempts.iter().map(|a| a.landed.as_secs_f64()).collect());
            let memory: Vec<_> = attempts.iter().filter_map(|a| a.memory).collect();
            let (rss, cpu) = if memory.is_empty() {
                ("–".to_owned(), "–".to_owned())
            } else {
                (
                    format!(
                        "{:.1} ({:.1}) / {:.1} / {:.1}",
                        median(memory.iter().map(|m| m.0.rss_mb()).collect()).0,
                        median(memory.iter().map(|m| m.0.anon_mb()).collect()).0,
                        median(memory.iter().map(|m| m.1.rss_mb()).collect()).0,
                        median(memory.iter().map(|m| m.1.peak_mb()).collect()).0
                    ),
                    fmt(median(memory.iter().map(|m| m.2.as_secs_f64()).collect())),
                )
            };
            let removal = format!(
                "{} / {}",
                fmt(median(
                    attempts
                        .iter()
                        .map(|a| a.removal.services_gone.as_secs_f64())
                        .collect()
                )),
                fmt(median(
                    attempts
                        .iter()
                        .map(|a| a.removal.containers_gone.as_secs_f64())
                        .collect()
                ))
            );
            let engine_cpus: Vec<f64> = attempts
                .iter()
                .filter_map(|a| a.engine_cpu.map(|c| c.as_secs_f64()))
                .collect();
            let engine_cpu = if engine_cpus.is_empty() {
                "–".to_owned()
            } else {
                fmt(median(engine_cpus))
            };
            let loads: Vec<&str> = attempts.iter().map(|a| a.load.as_str()).collect();
            out.push_str(&format!(
                "| {contender} | **{}** | {ratio} | {} | {} | {} | {rss} | {cpu} | {engine_cpu} | {removal} | {} |\n",
                fmt(all),
                fmt(first),
                fmt(after_landing),
                fmt(landed),
                loads.join(", ")
            ));
        }
        out
    }
}

fn main() -> Result<()> {
    let cfg = Config::from_env()?;
    if std::env::var("DOCKER_HOST").is_ok_and(|h| h != format!("unix://{ENGINE_SOCKET}")) {
        bail!("this bench talks to {ENGINE_SOCKET}; unset DOCKER_HOST");
    }
    let work = tempfile::Builder::new()
        .prefix("swarm-operator-arrival")
        .tempdir()?;
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
        // An earlier bench that was interrupted may have left its services and networks: they
        // would share the manager with every run (347 tasks left unallocated on an old network
        // made every run of an afternoon 1.5–2x slower, measured).
        let leftovers = cleanup::empty_swarm(&engine, PREFIX, cfg.timeout).await?;
        if leftovers.services_removed > 0 {
            eprintln!("removed {} services an earlier bench left", leftovers.services_removed);
        }
        let others = cleanup::other_services(&engine, PREFIX).await?;
        if others > 0 {
            eprintln!(
                "WARNING: the swarm holds {others} services besides the bench's; they share the manager and move every figure"
            );
        }
        let prefix = format!("{PREFIX}{}", std::process::id() % 100_000);
        eprintln!(
            "swarm-operator arrival bench {prefix}: {} services, {} runs, arrivals {:?}, concurrency {:?}, replicas {}{}, load {} at {}",
            cfg.n,
            cfg.runs,
            cfg.arrivals,
            cfg.concurrencies,
            cfg.replicas,
            if cfg.unplaceable { " placed nowhere" } else { "" },
            load_average(),
            utc_now()
        );
        let mut bench = Bench {
            shape: ServiceShape {
                replicas: cfg.replicas,
                unplaceable: cfg.unplaceable,
            },
            cfg,
            engine,
            prefix,
            work,
            results: BTreeMap::new(),
            engine_pid: engine_pid(),
        };
        let result = tokio::select! {
            r = bench.run() => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
        };
        println!("\n{}", bench.summary());
        eprintln!("cleaning up {}*", bench.prefix);
        if let Err(e) = cleanup::empty_swarm(&bench.engine, &bench.prefix, bench.cfg.timeout).await {
            eprintln!("cleanup: {e:#}");
        }
        if let Err(e) = &result {
            eprintln!("bench failed: {e:#}");
        }
        result
    })
}
