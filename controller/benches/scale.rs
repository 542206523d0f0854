//! Scale benchmark against the local single-node swarm (see `controller/BENCHMARK.md`).
//!
//! `cargo bench -p swarm-operator --bench scale` (env: `BENCH_SERVICES`, default 500;
//! `BENCH_SAMPLES`, default 5; `BENCH_IDLE_SECS`, default 35; `BENCH_TIMEOUT_SECS`, default 600;
//! `BENCH_MAX_WAIT_SECS`, default 1800).
//!
//! In one run, with N services of the static busybox test image and `replicas: 0` (so no
//! container starts):
//! 1. `docker stack deploy -d --resolve-image never` of N services: the command, then until all
//!    exist; `docker stack rm` until all are gone;
//! 2. `swarm-operator run`: from the first of N spec files written until all N services exist;
//! 3. latency from one spec edit (env) to the new value in `docker service inspect`;
//! 4. the operator's Engine API calls while idle;
//! 5. a no-op resync (`commands::diff_dir`: observe + plan) over the N-spec directory: time,
//!    Engine API calls and plan size;
//! 6. the operator's prune: all N spec files deleted until all N services are gone.
//!
//! Engine API calls are counted by a small Unix-socket proxy in front of the engine socket
//! (request lines of the client → engine stream); the operator, the `diff_dir` engine client
//! and `docker stack deploy/rm` talk through it. Polling by the bench goes to the engine
//! directly.
//!
//! The operator prunes every owned service that is not in its spec directory, so the bench
//! waits until no other `swarm-operator` process runs and no other owned service exists.
//! Everything it creates carries the prefix `sobench<pid>` and is removed at the end, also on
//! error or Ctrl-C.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bollard::Docker;
use bollard::query_parameters::ListServicesOptions;
use swarm_operator::commands::diff_dir;
use swarm_operator::docker::DockerEngine;
use swarm_operator::plan::Action;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::process::{Child, Command};

const TEST_IMAGE: &str = "swarm-operator-test/busybox:dev";
const ENGINE_SOCKET: &str = "/var/run/docker.sock";
const OWNER_LABEL: &str = "swarm-operator.io/managed-by=swarm-operator";
const BENCH_LABEL: &str = "swarm-operator-bench";
const POLL: Duration = Duration::from_millis(20);

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Config {
    n: usize,
    samples: usize,
    idle: Duration,
    timeout: Duration,
    max_wait: Duration,
}

/// Engine API requests seen by the proxy, by `METHOD /path` (ids replaced by `{id}`).
type Counts = Arc<Mutex<BTreeMap<String, u64>>>;

fn snapshot(counts: &Counts) -> BTreeMap<String, u64> {
    counts.lock().expect("counts lock").clone()
}

fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

fn total(counts: &BTreeMap<String, u64>) -> u64 {
    counts.values().sum()
}

fn breakdown(counts: &BTreeMap<String, u64>) -> String {
    let mut by: Vec<_> = counts.iter().collect();
    by.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    by.iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `GET /v1.41/services/abc/update?version=3 HTTP/1.1` → `GET /services/{id}/update`.
fn request_key(line: &str) -> Option<String> {
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if !version.starts_with("HTTP/1") || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let path = target.split('?').next()?;
    let mut segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segments.first().is_some_and(|s| s.starts_with('v')) && segments.len() > 1 {
        segments.remove(0);
    }
    if segments.len() >= 2 && !matches!(segments[1], "create" | "prune") {
        segments[1] = "{id}";
    }
    Some(format!("{method} /{}", segments.join("/")))
}

async fn proxy_connection(client: UnixStream, counts: Counts) -> std::io::Result<()> {
    let engine = UnixStream::connect(ENGINE_SOCKET).await?;
    let (mut client_read, mut client_write) = client.into_split();
    let (mut engine_read, mut engine_write) = engine.into_split();
    let upstream = async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut line: Vec<u8> = Vec::new();
        loop {
            let n = client_read.read(&mut buf).await?;
            if n == 0 {
                engine_write.shutdown().await?;
                return Ok::<_, std::io::Error>(());
            }
            for &b in &buf[..n] {
                if b == b'\n' {
                    let text = String::from_utf8_lossy(&line);
                    if let Some(key) = request_key(text.trim_end()) {
                        *counts.lock().expect("counts lock").entry(key).or_default() += 1;
                    }
                    line.clear();
                } else if line.len() < 4096 {
                    line.push(b);
                }
            }
            engine_write.write_all(&buf[..n]).await?;
        }
    };
    let downstream = async move {
        tokio::io::copy(&mut engine_read, &mut client_write).await?;
        client_write.shutdown().await
    };
    let _ = tokio::try_join!(upstream, downstream);
    Ok(())
}

async fn run_proxy(listener: UnixListener, counts: Counts) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(proxy_connection(stream, counts.clone()));
    }
}

/// Runs `docker` (against the engine directly, or through the counting proxy).
async fn docker_via(host: &str, args: &[&str]) -> Result<String> {
    let out = Command::new("docker")
        .args(args)
        .env("DOCKER_HOST", host)
        .stdin(Stdio::null())
        .output()
        .await
        .context("running the docker CLI")?;
    if !out.status.success() {
        bail!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

async fn docker(args: &[&str]) -> Result<String> {
    docker_via(&format!("unix://{ENGINE_SOCKET}"), args).await
}

/// Everything the bench created, removed by [`Bench::cleanup`].
struct Bench {
    cfg: Config,
    prefix: String,
    stack: String,
    dir: tempfile::TempDir,
    proxy_host: String,
    counts: Counts,
    engine: Docker,
    operator: Option<Child>,
    report: Report,
}

#[derive(Default)]
struct Report {
    rows: Vec<(String, String)>,
    notes: Vec<String>,
}

impl Report {
    fn row(&mut self, what: impl Into<String>, value: impl Into<String>) {
        let (what, value) = (what.into(), value.into());
        eprintln!("  {what}: {value}");
        self.rows.push((what, value));
    }

    fn note(&mut self, note: impl Into<String>) {
        let note = note.into();
        eprintln!("  note: {note}");
        self.notes.push(note);
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn spread(v: &[Duration]) -> String {
    v.iter().map(|d| ms(*d)).collect::<Vec<_>>().join(", ")
}

impl Bench {
    fn op_name(&self, i: usize) -> String {
        format!("{}-op-{i:04}", self.prefix)
    }

    fn specs(&self) -> PathBuf {
        self.dir.path().join("specs")
    }

    fn service_spec(&self, name: &str, env: &str) -> String {
        format!(
            "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata:\n  name: {name}\n  labels: {{{BENCH_LABEL}: {}}}\nspec:\n  image: {TEST_IMAGE}\n  replicas: 0\n  args: [sleep, \"3600\"]\n  endpointMode: dnsrr\n  stopGracePeriod: 1s\n  env: {{BENCH: \"{env}\"}}\n",
            self.prefix
        )
    }

    /// Writes a spec file atomically (temp file + rename, like an editor's save).
    fn write_spec(&self, file: &str, text: &str) -> Result<()> {
        let dir = self.specs();
        let tmp = dir.join(format!(".{file}.tmp"));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, dir.join(file))?;
        Ok(())
    }

    /// Number of services carrying this run's label with the given name prefix.
    async fn count(&self, name_prefix: &str) -> Result<usize> {
        let label = format!("{BENCH_LABEL}={}", self.prefix);
        let filters = HashMap::from([("label".to_owned(), vec![label])]);
        let services = self
            .engine
            .list_services(Some(ListServicesOptions {
                filters: Some(filters),
                status: None,
            }))
            .await?;
        Ok(services
            .iter()
            .filter_map(|s| s.spec.as_ref()?.name.as_deref())
            .filter(|n| n.starts_with(name_prefix))
            .count())
    }

    /// Polls until `count(name_prefix) == want`; returns the time since `start`.
    async fn wait_count(&self, name_prefix: &str, want: usize, start: Instant) -> Result<Duration> {
        loop {
            let have = self.count(name_prefix).await?;
            if have == want {
                return Ok(start.elapsed());
            }
            if start.elapsed() > self.cfg.timeout {
                bail!(
                    "timed out after {:?}: {have} services {name_prefix}*, waiting for {want}",
                    self.cfg.timeout
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn service_env(&self, name: &str) -> Result<Vec<String>> {
        let service = self.engine.inspect_service(name, None).await?;
        Ok(service
            .spec
            .and_then(|s| s.task_template)
            .and_then(|t| t.container_spec)
            .and_then(|c| c.env)
            .unwrap_or_default())
    }

    /// Waits until no other operator runs and no owned service exists (ours would prune
    /// theirs, theirs ours).
    async fn wait_for_quiet_swarm(&self) -> Result<()> {
        let start = Instant::now();
        loop {
            let operators = other_operators();
            let owned = docker(&[
                "service",
                "ls",
                "--filter",
                &format!("label={OWNER_LABEL}"),
                "--format",
                "{{.Name}}",
            ])
            .await?;
            let owned: Vec<&str> = owned.lines().filter(|l| !l.is_empty()).collect();
            if operators.is_empty() && owned.is_empty() {
                return Ok(());
            }
            if start.elapsed() > self.cfg.max_wait {
                bail!(
                    "the swarm stayed busy for {:?}: operators {operators:?}, owned services {owned:?}",
                    self.cfg.max_wait
                );
            }
            eprintln!(
                "waiting 30 s: {} other swarm-operator process(es) {operators:?}, {} owned service(s) {:?}",
                operators.len(),
                owned.len(),
                &owned[..owned.len().min(5)]
            );
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
    }

    fn start_operator(&mut self) -> Result<()> {
        let log = std::fs::File::create(self.dir.path().join("operator.log"))?;
        let child = Command::new(env!("CARGO_BIN_EXE_swarm-operator"))
            .args(["run", "--specs"])
            .arg(self.specs())
            .arg("--status")
            .arg(self.dir.path().join("status.json"))
            .args(["--resync", "30s"])
            .env("DOCKER_HOST", &self.proxy_host)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("starting swarm-operator")?;
        self.operator = Some(child);
        Ok(())
    }

    /// SIGTERM, then SIGKILL after 20 s.
    async fn stop_operator(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.operator.take()?;
        if let Some(pid) = child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        match tokio::time::timeout(Duration::from_secs(20), child.wait()).await {
            Ok(status) => status.ok(),
            Err(_) => {
                let _ = child.kill().await;
                None
            }
        }
    }

    fn operator_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("operator.log")).unwrap_or_default()
    }

    /// Removes the operator, the stack, and every service and network with this run's prefix.
    async fn cleanup(&mut self) {
        self.stop_operator().await;
        let _ = docker(&["stack", "rm", &self.stack]).await;
        for kind in ["service", "network"] {
            let filter = format!("name={}", self.prefix);
            let Ok(names) =
                docker(&[kind, "ls", "--filter", &filter, "--format", "{{.Name}}"]).await
            else {
                continue;
            };
            let mine: Vec<&str> = names
                .lines()
                .filter(|n| n.starts_with(&self.prefix))
                .collect();
            for chunk in mine.chunks(100) {
                let mut args = vec![kind, "rm"];
                args.extend(chunk);
                if let Err(e) = docker(&args).await {
                    eprintln!("cleanup: {e}");
                }
            }
            if kind == "service" && !mine.is_empty() {
                // Services hold their networks until they are gone.
                let start = Instant::now();
                while self.count(&self.prefix).await.unwrap_or(0) > 0
                    && start.elapsed() < Duration::from_secs(60)
                {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    async fn run(&mut self) -> Result<()> {
        let n = self.cfg.n;
        self.wait_for_quiet_swarm().await?;

        // 1. docker stack deploy.
        eprintln!("[1/6] docker stack deploy of {n} services");
        let compose = self.dir.path().join("compose.yml");
        let mut text = String::from("version: \"3.8\"\nservices:\n");
        for i in 0..n {
            write!(
                text,
                "  s{i:04}:\n    image: {TEST_IMAGE}\n    command: [sleep, \"3600\"]\n    environment: {{BENCH: \"1\"}}\n    stop_grace_period: 1s\n    deploy:\n      replicas: 0\n      endpoint_mode: dnsrr\n      labels: {{{BENCH_LABEL}: {}}}\n",
                self.prefix
            )?;
        }
        std::fs::write(&compose, text)?;
        let stack_prefix = format!("{}_", self.stack);
        let before = snapshot(&self.counts);
        let start = Instant::now();
        docker_via(
            &self.proxy_host,
            &[
                "stack",
                "deploy",
                "-d",
                "--resolve-image",
                "never",
                "-c",
                compose.to_str().context("compose path")?,
                &self.stack,
            ],
        )
        .await?;
        let stack_cmd = start.elapsed();
        let stack_all = self.wait_count(&stack_prefix, n, start).await?;
        let stack_calls = delta(&before, &snapshot(&self.counts));
        self.report.row(
            format!("stack deploy -d --resolve-image never: command returns ({n} services)"),
            secs(stack_cmd),
        );
        self.report.row(
            format!("stack deploy: all {n} services exist"),
            secs(stack_all),
        );
        self.report.row(
            "stack deploy: Engine API calls",
            format!("{} ({})", total(&stack_calls), breakdown(&stack_calls)),
        );
        let start = Instant::now();
        docker_via(&self.proxy_host, &["stack", "rm", &self.stack]).await?;
        let rm_cmd = start.elapsed();
        let rm_all = self.wait_count(&stack_prefix, 0, start).await?;
        self.report.row(
            format!("stack rm: command returns / all {n} gone"),
            format!("{} / {}", secs(rm_cmd), secs(rm_all)),
        );
        // The stack's default network goes once its services are gone.
        let network = format!("{}_default", self.stack);
        let start = Instant::now();
        while docker(&["network", "inspect", &network]).await.is_ok()
            && start.elapsed() < Duration::from_secs(60)
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        // 2. The operator creates N services from N new spec files.
        eprintln!("[2/6] swarm-operator: {n} spec files → {n} services");
        std::fs::create_dir(self.specs())?;
        let sentinel = format!("{}-sentinel", self.prefix);
        self.write_spec("sentinel.yaml", &self.service_spec(&sentinel, "1"))?;
        self.start_operator()?;
        self.wait_count(&sentinel, 1, Instant::now()).await?;
        let texts: Vec<(String, String)> = (0..n)
            .map(|i| {
                let name = self.op_name(i);
                (format!("{name}.yaml"), self.service_spec(&name, "1"))
            })
            .collect();
        let op_prefix = format!("{}-op-", self.prefix);
        let before = snapshot(&self.counts);
        let start = Instant::now();
        for (file, text) in &texts {
            self.write_spec(file, text)?;
        }
        let written = start.elapsed();
        let op_all = self.wait_count(&op_prefix, n, start).await?;
        let op_calls = delta(&before, &snapshot(&self.counts));
        self.report.row(
            format!("operator: first of {n} files written → all {n} services exist"),
            format!("{} (writing the files: {})", secs(op_all), ms(written)),
        );
        self.report.row(
            "ratio operator / stack deploy (command) | (all exist)",
            format!(
                "{:.1}x | {:.1}x",
                op_all.as_secs_f64() / stack_cmd.as_secs_f64(),
                op_all.as_secs_f64() / stack_all.as_secs_f64()
            ),
        );
        self.report.row(
            "operator create: Engine API calls until all exist",
            format!("{} ({})", total(&op_calls), breakdown(&op_calls)),
        );

        // 3. Edit → applied.
        eprintln!("[3/6] edit one spec → update applied");
        // Let the operator settle (status writes, task polls of the burst) first.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut latencies = Vec::new();
        for k in 0..self.cfg.samples {
            let i = k * n / self.cfg.samples;
            let name = self.op_name(i);
            let value = format!("edit-{k}");
            let want = format!("BENCH={value}");
            let text = self.service_spec(&name, &value);
            let start = Instant::now();
            self.write_spec(&format!("{name}.yaml"), &text)?;
            loop {
                if self.service_env(&name).await?.contains(&want) {
                    latencies.push(start.elapsed());
                    break;
                }
                if start.elapsed() > self.cfg.timeout {
                    bail!("edit of {name} not applied after {:?}", self.cfg.timeout);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        self.report.row(
            format!(
                "edit one spec (env) → applied, median of {}",
                latencies.len()
            ),
            format!("{} ({})", ms(median(latencies.clone())), spread(&latencies)),
        );

        // 4. The operator's calls while nothing changes.
        let idle = self.cfg.idle;
        eprintln!("[4/6] operator idle for {idle:?}");
        let before = snapshot(&self.counts);
        tokio::time::sleep(idle).await;
        let idle_calls = delta(&before, &snapshot(&self.counts));
        self.report.row(
            format!(
                "operator idle {} s with {} services (resync 30s): Engine API calls",
                idle.as_secs(),
                n + 1
            ),
            format!("{} ({})", total(&idle_calls), breakdown(&idle_calls)),
        );

        // 5. No-op resync: observe + plan over the N-spec directory.
        eprintln!("[5/6] no-op resync (diff_dir)");
        let api = DockerEngine::connect().await?; // DOCKER_HOST is the proxy
        let mut times = Vec::new();
        let mut calls = Vec::new();
        let mut writes = 0;
        let mut foreign = 0;
        let mut errors = 0;
        for run in 0..=self.cfg.samples.max(5) {
            let before = snapshot(&self.counts);
            let start = Instant::now();
            let (plan, spec_errors) = diff_dir(
                &api,
                &self.specs(),
                false,
                swarm_operator::definition::DEFAULT_INSTANCE,
            )
            .await?;
            let elapsed = start.elapsed();
            let used = delta(&before, &snapshot(&self.counts));
            let ours = plan
                .actions
                .iter()
                .filter(|a| a.key().name.starts_with(&self.prefix))
                .count();
            foreign += plan.actions.len() - ours;
            writes += ours;
            errors += spec_errors.len();
            for action in &plan.actions {
                let kind = match action {
                    Action::CreateNetwork { .. } => "create network",
                    Action::CreateService { .. } => "create service",
                    Action::UpdateService { .. } => "update service",
                    Action::RemoveService { .. } => "remove service",
                    Action::RemoveNetwork { .. } => "remove network",
                };
                eprintln!("  plan not empty: {kind} {}", action.key());
            }
            if run > 0 {
                // run 0 warms the connection pool
                times.push(elapsed);
                calls.push(used);
            }
        }
        let per_run: Vec<u64> = calls.iter().map(total).collect();
        self.report.row(
            format!(
                "no-op resync (diff_dir = observe + plan, {} specs), median of {}",
                n + 1,
                times.len()
            ),
            format!("{} ({})", ms(median(times.clone())), spread(&times)),
        );
        self.report.row(
            "no-op resync: Engine API calls per run",
            format!(
                "{} ({})",
                per_run
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                calls.first().map(breakdown).unwrap_or_default()
            ),
        );
        self.report.row(
            "no-op resync: plan actions (writes) / spec errors",
            format!("{writes} / {errors}"),
        );
        if foreign > 0 {
            self.report.note(format!(
                "the plans also held {foreign} action(s) on objects of someone else (another run's owned services appeared)"
            ));
        }

        // 6. Prune: delete the N files.
        eprintln!("[6/6] operator prune: delete {n} spec files");
        let start = Instant::now();
        for i in 0..n {
            std::fs::remove_file(self.specs().join(format!("{}.yaml", self.op_name(i))))?;
        }
        let pruned = self.wait_count(&op_prefix, 0, start).await?;
        self.report.row(
            format!("operator prune: {n} files deleted → all {n} services gone"),
            secs(pruned),
        );

        let status = self.stop_operator().await;
        if !status.is_some_and(|s| s.success()) {
            self.report
                .note(format!("the operator did not exit cleanly: {status:?}"));
        }
        let log = self.operator_log();
        let bad: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("ERROR") || l.contains("WARN"))
            .collect();
        self.report
            .row("operator log: WARN/ERROR lines", bad.len().to_string());
        for line in bad.iter().take(10) {
            self.report.note(format!("operator log: {line}"));
        }
        if !other_operators().is_empty() {
            self.report
                .note("another swarm-operator process started during the run");
        }
        Ok(())
    }

    fn print(&self) {
        let info = format!(
            "N = {} services (replicas 0, image {TEST_IMAGE}), {} samples",
            self.cfg.n, self.cfg.samples
        );
        let width = self
            .report
            .rows
            .iter()
            .map(|r| r.0.len())
            .max()
            .unwrap_or(0);
        println!("\nswarm-operator scale bench: {info}");
        for (what, value) in &self.report.rows {
            println!("  {what:<width$}  {value}");
        }
        for note in &self.report.notes {
            println!("  note: {note}");
        }
    }
}

/// Pids and command lines of `swarm-operator run` processes other than ours.
fn other_operators() -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    let me = std::process::id().to_string();
    for entry in entries.flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if pid == me || !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_operator = args.first().is_some_and(|a| {
            Path::new(a)
                .file_name()
                .is_some_and(|f| f == "swarm-operator")
        });
        if is_operator && args.get(1).is_some_and(|a| a == "run") && !under_nested_engine(&pid) {
            found.push(format!("{pid}: {}", args.join(" ")));
        }
    }
    found
}

/// Whether a process runs under a `dockerd` in another mount namespace: a docker-in-docker
/// node's engine, whose operator does not talk to our swarm.
fn under_nested_engine(pid: &str) -> bool {
    let ours = std::fs::read_link("/proc/self/ns/mnt").ok();
    let mut pid = pid.to_owned();
    for _ in 0..64 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        // pid (comm) state ppid ...
        let Some((head, tail)) = stat.rsplit_once(") ") else {
            return false;
        };
        let comm = head.split_once(" (").map(|(_, c)| c).unwrap_or_default();
        if comm == "dockerd" {
            let theirs = std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
            return theirs.is_some() && theirs != ours;
        }
        let Some(ppid) = tail.split(' ').nth(1) else {
            return false;
        };
        if ppid == "0" || ppid == "1" {
            return false;
        }
        pid = ppid.to_owned();
    }
    false
}

async fn ensure_test_image() -> Result<()> {
    if docker(&["image", "inspect", TEST_IMAGE]).await.is_ok() {
        return Ok(());
    }
    let busybox = Path::new("/bin/busybox");
    if !busybox.exists() {
        bail!(
            "the test image needs a static busybox at /bin/busybox: apt-get install busybox-static"
        );
    }
    let dir = tempfile::tempdir()?;
    std::fs::copy(busybox, dir.path().join("busybox"))?;
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nENTRYPOINT [\"/bin/busybox\"]\nCMD [\"sleep\", \"3600\"]\n",
    )?;
    docker(&[
        "build",
        "-q",
        "-t",
        TEST_IMAGE,
        dir.path().to_str().context("path")?,
    ])
    .await?;
    Ok(())
}

fn main() -> Result<()> {
    let cfg = Config {
        n: env_num("BENCH_SERVICES", 500) as usize,
        samples: env_num("BENCH_SAMPLES", 5).max(1) as usize,
        idle: Duration::from_secs(env_num("BENCH_IDLE_SECS", 35)),
        timeout: Duration::from_secs(env_num("BENCH_TIMEOUT_SECS", 600)),
        max_wait: Duration::from_secs(env_num("BENCH_MAX_WAIT_SECS", 1800)),
    };
    if std::env::var("DOCKER_HOST").is_ok_and(|h| h != format!("unix://{ENGINE_SOCKET}")) {
        bail!("this bench talks to {ENGINE_SOCKET}; unset DOCKER_HOST");
    }
    let dir = tempfile::Builder::new()
        .prefix("swarm-operator-bench")
        .tempdir()?;
    let proxy_socket = dir.path().join("engine.sock");
    let proxy_host = format!("unix://{}", proxy_socket.display());
    // SAFETY: no other thread exists yet. `DockerEngine::connect` (the diff_dir client) reads
    // DOCKER_HOST, so it goes through the counting proxy.
    unsafe { std::env::set_var("DOCKER_HOST", &proxy_host) };

    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let counts = Counts::default();
        let listener = UnixListener::bind(&proxy_socket)?;
        tokio::spawn(run_proxy(listener, counts.clone()));
        let engine = Docker::connect_with_unix(ENGINE_SOCKET, 60, bollard::API_DEFAULT_VERSION)?
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
        let mut bench = Bench {
            cfg,
            stack: format!("{prefix}stk"),
            prefix,
            dir,
            proxy_host,
            counts,
            engine,
            operator: None,
            report: Report::default(),
        };
        let result = tokio::select! {
            r = bench.run() => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
        };
        eprintln!("cleaning up {}*", bench.prefix);
        bench.cleanup().await;
        bench.print();
        if let Err(e) = &result {
            let log = bench.operator_log();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            eprintln!("operator log (last lines, newest first):\n{}", tail.join("\n"));
            eprintln!("bench failed: {e:#}");
        }
        result
    })
}
