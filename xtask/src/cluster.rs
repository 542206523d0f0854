//! The docker-in-docker swarm: a debootstrapped node image, N nodes on a private bridge, swarm init/join, image loading, and teardown that always runs.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cmd::{Cmd, CmdError};
use crate::interrupt::{self, Interrupted};
use crate::timing::phase;

/// The node image: Debian bookworm with Debian's docker.io (and sshd, for reaching a node's
/// engine over `ssh://` as the docker CLI does; and git, whose `git daemon` serves the e2e git
/// scenario's repository from a container on the cluster's bridge), built once and reused. The
/// tag names what is in it, so that an image built with an older package list is rebuilt, not
/// reused.
pub const NODE_IMAGE: &str = "swarm-operator-node:bookworm-sshd-git";
/// The packages debootstrap adds to the minimal base (see [`NODE_IMAGE`]).
const NODE_PACKAGES: &str = "docker.io,iproute2,iptables,ca-certificates,openssh-server,git";
/// Label on every container, volume and network of a cluster; the value is the run's prefix.
pub const LABEL: &str = "swarm-operator.xtask.cluster";
/// Label on a cluster's helper containers that are not nodes (the e2e git server); the value
/// is the run's prefix. The teardown removes them; [`Cluster::attach`] does not list them.
pub const AUX_LABEL: &str = "swarm-operator.xtask.aux";
/// Label carrying a node's swarm role (`manager` / `worker`).
pub const ROLE_LABEL: &str = "swarm-operator.xtask.role";
/// Environment variable through which `cargo xtask` hands an existing cluster's prefix to the e2e tests.
pub const ENV_CLUSTER: &str = "SWARM_E2E_CLUSTER";

/// Why the cluster could not be built, started or found.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A docker (or debootstrap/apt-get/tar) command failed.
    #[error(transparent)]
    Cmd(#[from] CmdError),
    /// Ctrl-C.
    #[error(transparent)]
    Interrupted(#[from] Interrupted),
    /// Local file handling (temp dirs, the image tarball).
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Waiting for something took too long.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long we waited.
        after: Duration,
    },
    /// No cluster with this prefix exists.
    #[error("no cluster with prefix {0:?} (containers labelled {LABEL}={0})")]
    NotFound(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClusterError {
    let what = what.into();
    move |source| ClusterError::Io { what, source }
}

/// One node: a container running its own dockerd.
#[derive(Debug, Clone)]
pub struct Node {
    /// Container name (also its hostname, so it is the swarm node's hostname).
    pub name: String,
    /// Its address on the cluster's bridge network.
    pub ip: String,
    /// Whether it is a swarm manager.
    pub manager: bool,
}

impl Node {
    /// `docker exec NODE docker ARGS...`: the node's own engine.
    pub fn docker<I, S>(&self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        Cmd::docker(["exec", "-i", &self.name, "docker"]).args(args)
    }

    /// `docker exec NODE ARGS...`.
    pub fn exec<I, S>(&self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        Cmd::docker(["exec", "-i", &self.name]).args(args)
    }
}

/// Options for [`Cluster::up`].
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Number of nodes.
    pub nodes: usize,
    /// How many of them are managers (nodes 1..=managers); node 1 initialises the swarm.
    pub managers: usize,
    /// Image tags to load into every node.
    pub images: Vec<String>,
}

/// The managers for a cluster of `nodes`: three from three nodes on (raft keeps working when
/// one is lost, so the operator's own failover can be shown), else one (two managers would
/// tolerate no loss at all while doubling the raft traffic).
pub fn default_managers(nodes: usize) -> usize {
    if nodes >= 3 { 3 } else { 1 }
}

/// A running cluster. Dropping it tears it down unless [`Cluster::keep`] was called (or it was
/// [attached](Cluster::attach) to, in which case its owner tears it down).
#[derive(Debug)]
pub struct Cluster {
    /// Unique per run; prefixes every container, volume and the network.
    pub prefix: String,
    /// The bridge network's name.
    pub network: String,
    /// The nodes, manager first.
    pub nodes: Vec<Node>,
    owned: bool,
}

impl Cluster {
    /// Build the node image if needed, start the nodes, form the swarm, load images. Prints each
    /// phase's duration. On error or Ctrl-C whatever was started is removed again.
    pub fn up(opts: &UpOptions) -> Result<Cluster, ClusterError> {
        interrupt::install();
        phase("cluster: node image", ensure_node_image)?;
        let prefix = unique_prefix();
        let mut cluster = Cluster {
            network: format!("{prefix}-net"),
            prefix,
            nodes: Vec::new(),
            owned: true,
        };
        phase("cluster: start nodes", || {
            cluster.start_nodes(opts.nodes.max(1), opts.managers.clamp(1, opts.nodes.max(1)))
        })?;
        phase("cluster: swarm init + join", || cluster.form_swarm())?;
        if !opts.images.is_empty() {
            let tags: Vec<&str> = opts.images.iter().map(String::as_str).collect();
            phase("cluster: load images", || cluster.load_images(&tags))?;
        }
        Ok(cluster)
    }

    /// Find an existing cluster by prefix (e.g. one `cargo xtask cluster up` left running, handed
    /// over in [`ENV_CLUSTER`]). Dropping the result does not tear it down.
    pub fn attach(prefix: &str) -> Result<Cluster, ClusterError> {
        let network = format!("{prefix}-net");
        let out = Cmd::docker(["ps", "-a", "--filter"])
            .arg(format!("label={LABEL}={prefix}"))
            .args([
                "--format",
                &format!("{{{{.Names}}}} {{{{.Label \"{ROLE_LABEL}\"}}}}"),
            ])
            .output()?;
        let mut nodes = Vec::new();
        for line in out.lines() {
            let mut it = line.split_whitespace();
            let (Some(name), role) = (it.next(), it.next()) else {
                continue;
            };
            let ip = node_ip(name, &network).unwrap_or_default();
            nodes.push(Node {
                name: name.to_string(),
                ip,
                manager: role == Some("manager"),
            });
        }
        if nodes.is_empty() {
            return Err(ClusterError::NotFound(prefix.to_string()));
        }
        nodes.sort_by_key(|n| (!n.manager, n.name.clone()));
        Ok(Cluster {
            prefix: prefix.to_string(),
            network,
            nodes,
            owned: false,
        })
    }

    /// Leave the cluster running when this value is dropped (for `cargo xtask cluster up`).
    pub fn keep(mut self) {
        self.owned = false;
    }

    /// The manager nodes, the one that initialised the swarm first.
    pub fn managers(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.manager)
    }

    /// The node named `name`.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The (first) manager node.
    pub fn manager(&self) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.manager)
            .unwrap_or(&self.nodes[0])
    }

    /// The worker nodes.
    pub fn workers(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| !n.manager)
    }

    fn start_nodes(&mut self, n: usize, managers: usize) -> Result<(), ClusterError> {
        Cmd::docker(["network", "create", "--label"])
            .arg(format!("{LABEL}={}", self.prefix))
            .arg(&self.network)
            .output()?;
        for i in 1..=n {
            interrupt::check()?;
            let name = format!("{}-node{i}", self.prefix);
            let manager = i <= managers;
            let volume = format!("{name}-data");
            Cmd::docker(["volume", "create", "--label"])
                .arg(format!("{LABEL}={}", self.prefix))
                .arg(&volume)
                .output()?;
            Cmd::docker([
                "run",
                "-d",
                "--name",
                &name,
                "--hostname",
                &name,
                "--network",
                &self.network,
            ])
            .args(["--label", &format!("{LABEL}={}", self.prefix)])
            .args([
                "--label",
                &format!(
                    "{ROLE_LABEL}={}",
                    if manager { "manager" } else { "worker" }
                ),
            ])
            .args(node_run_flags(&name, &volume))
            .arg(NODE_IMAGE)
            .args(node_dockerd_args(&name))
            .output()?;
            let ip = node_ip(&name, &self.network)?;
            self.nodes.push(Node { name, ip, manager });
        }
        for node in &self.nodes {
            wait_for(
                &format!("dockerd in {}", node.name),
                Duration::from_secs(90),
                || {
                    Ok(node
                        .docker(["info", "--format", "{{.ServerVersion}}"])
                        .succeeds())
                },
            )?;
        }
        let m = self.manager();
        let driver = m
            .docker(["info", "--format", "{{.Driver}} cgroup v{{.CgroupVersion}}"])
            .output()?;
        eprintln!(
            "{} nodes up; inner engines use storage driver {driver}",
            self.nodes.len()
        );
        Ok(())
    }

    fn form_swarm(&self) -> Result<(), ClusterError> {
        let m = self.manager();
        m.docker(["swarm", "init", "--advertise-addr", &m.ip])
            .output()?;
        let worker_token = m.docker(["swarm", "join-token", "-q", "worker"]).output()?;
        let manager_token = m
            .docker(["swarm", "join-token", "-q", "manager"])
            .output()?;
        for node in self.nodes.iter().filter(|n| n.name != m.name) {
            interrupt::check()?;
            let token = if node.manager {
                &manager_token
            } else {
                &worker_token
            };
            node.docker([
                "swarm",
                "join",
                "--advertise-addr",
                &node.ip,
                "--token",
                token,
            ])
            .arg(format!("{}:2377", m.ip))
            .output()?;
        }
        let want = self.nodes.len();
        wait_for(
            &format!("{want} ready swarm nodes"),
            Duration::from_secs(60),
            || {
                let out = m
                    .docker(["node", "ls", "--format", "{{.Status}}"])
                    .output()?;
                Ok(out.lines().filter(|l| *l == "Ready").count() == want)
            },
        )?;
        let managers = self.managers().count();
        eprintln!(
            "swarm: {managers} manager(s), first {} ({}), {} worker(s)",
            m.name,
            m.ip,
            want - managers
        );
        Ok(())
    }

    /// `docker save` the tags once, `docker load` them into every node (in parallel).
    pub fn load_images(&self, tags: &[&str]) -> Result<(), ClusterError> {
        let dir = tempfile::Builder::new()
            .prefix("xtask-images-")
            .tempdir()
            .map_err(io("temp dir"))?;
        let tar = dir.path().join("images.tar");
        Cmd::docker(["save", "-o"]).arg(&tar).args(tags).output()?;
        let results: Vec<Result<String, CmdError>> = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .nodes
                .iter()
                .map(|node| {
                    let tar = &tar;
                    s.spawn(move || {
                        let f = File::open(tar).map_err(|source| CmdError::Spawn {
                            cmd: "open images.tar".into(),
                            source,
                        })?;
                        node.docker(["load", "-q"]).stdin_file(f).output()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("image load thread panicked"))
                .collect()
        });
        for r in results {
            r?;
        }
        eprintln!(
            "loaded {} into {} node(s)",
            tags.join(", "),
            self.nodes.len()
        );
        Ok(())
    }

    /// Kill a node's container at once (abrupt node loss: nothing in it shuts down).
    pub fn kill_node(&self, node: &Node) -> Result<(), ClusterError> {
        Cmd::docker(["kill", &node.name]).output()?;
        Ok(())
    }

    /// Stop a node's container (simulated node loss).
    pub fn stop_node(&self, node: &Node) -> Result<(), ClusterError> {
        Cmd::docker(["stop", "-t", "5", &node.name]).output()?;
        Ok(())
    }

    /// Start a stopped node again; it rejoins the swarm by itself.
    pub fn start_node(&self, node: &Node) -> Result<(), ClusterError> {
        Cmd::docker(["start", &node.name]).output()?;
        Ok(())
    }

    /// Remove containers, volumes and the network of this cluster (idempotent, best effort).
    pub fn teardown(&mut self) {
        let started = Instant::now();
        remove_prefix(&self.prefix);
        self.nodes.clear();
        eprintln!(
            "cluster {} torn down in {}",
            self.prefix,
            crate::timing::fmt(started.elapsed())
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.owned {
            self.teardown();
        }
    }
}

/// Remove everything labelled with this prefix: containers (nodes and helpers, with their
/// anonymous volumes), named volumes, the network, and the empty cgroups the inner engines left
/// under `/sys/fs/cgroup`.
pub fn remove_prefix(prefix: &str) {
    let filter = format!("label={LABEL}={prefix}");
    let aux = format!("label={AUX_LABEL}={prefix}");
    let ids = [&filter, &aux]
        .iter()
        .filter_map(|f| Cmd::docker(["ps", "-aq", "--filter", f]).output().ok())
        .collect::<Vec<_>>()
        .join("\n");
    let names = Cmd::docker(["ps", "-a", "--format", "{{.Names}}", "--filter", &filter])
        .output()
        .unwrap_or_default();
    if !ids.is_empty() {
        let _ = Cmd::docker(["rm", "-f", "-v"])
            .args(ids.split_whitespace())
            .output();
    }
    let vols = Cmd::docker(["volume", "ls", "-q", "--filter", &filter])
        .output()
        .unwrap_or_default();
    if !vols.is_empty() {
        let _ = Cmd::docker(["volume", "rm", "-f"])
            .args(vols.split_whitespace())
            .output();
    }
    let nets = Cmd::docker(["network", "ls", "-q", "--filter", &filter])
        .output()
        .unwrap_or_default();
    if !nets.is_empty() {
        let _ = Cmd::docker(["network", "rm"])
            .args(nets.split_whitespace())
            .output();
    }
    for name in names.split_whitespace() {
        remove_cgroups(&format!("dind-{name}"));
    }
}

/// Every cluster prefix that has containers, volumes or networks on the local engine.
pub fn list_prefixes() -> Vec<String> {
    let mut out = Vec::new();
    for kind in [
        ["ps", "-a"].as_slice(),
        ["volume", "ls"].as_slice(),
        ["network", "ls"].as_slice(),
    ] {
        let fmt = format!("{{{{.Label \"{LABEL}\"}}}}");
        if let Ok(s) = Cmd::docker(kind)
            .args(["--filter", &format!("label={LABEL}"), "--format", &fmt])
            .output()
        {
            out.extend(s.lines().filter(|l| !l.is_empty()).map(String::from));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Inner engines put their containers under `/sys/fs/cgroup/<controller>/dind-NODE/...` of the
/// host (cgroup v1, shared read-write); once the node is gone those are empty and can be rmdir-ed.
fn remove_cgroups(parent: &str) {
    let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for c in controllers.flatten() {
        let dir = c.path().join(parent);
        if dir.is_dir() {
            remove_cgroup_tree(&dir);
        }
    }
    // cgroup v2 (unified) lays them out directly below the root.
}

fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// `docker run` flags that make a node work without `--privileged` (CAP_SYS_RESOURCE is not in
/// this machine's bounding set, so `--privileged` fails): see docs/architecture.md, measured again here.
pub fn node_run_flags(name: &str, volume: &str) -> Vec<String> {
    [
        "--cap-add=ALL",
        "--cap-drop=SYS_RESOURCE",
        "--security-opt=seccomp=unconfined",
        "--security-opt=apparmor=unconfined",
        "--security-opt=systempaths=unconfined",
        "--device-cgroup-rule=a *:* rwm",
        // cgroup v1 here: the inner engine needs the real hierarchy, writable.
        "--volume=/sys/fs/cgroup:/sys/fs/cgroup:rw",
        "--tmpfs=/run",
    ]
    .iter()
    .map(|s| s.to_string())
    // /var/lib/docker on a volume (ext4 on this host) rather than in the container's own
    // fuse-overlayfs rootfs: overlay2 cannot stack on fuse-overlayfs, but on ext4 it works, so
    // the inner engines get overlay2 instead of the very slow vfs driver.
    .chain([
        format!("--volume={volume}:/var/lib/docker"),
        format!("--label=node={name}"),
    ])
    .collect()
}

/// The inner dockerd's command line.
pub fn node_dockerd_args(name: &str) -> Vec<String> {
    // Each node's containers in their own cgroup subtree: all nodes share the host's hierarchy.
    vec!["dockerd".into(), format!("--cgroup-parent=/dind-{name}")]
}

fn node_ip(name: &str, network: &str) -> Result<String, CmdError> {
    Cmd::docker(["inspect", "--format"])
        .arg(format!(
            "{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"
        ))
        .arg(name)
        .output()
}

/// Unique per run: pid plus time, short enough for container names and hostnames.
fn unique_prefix() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "so{}x{}",
        std::process::id() % 100_000,
        t.as_secs() % 1_000_000
    )
}

/// Poll `check` every 500 ms until it is true, Ctrl-C, or `limit`.
pub fn wait_for(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> Result<bool, ClusterError>,
) -> Result<(), ClusterError> {
    let start = Instant::now();
    loop {
        interrupt::check()?;
        if check()? {
            return Ok(());
        }
        if start.elapsed() > limit {
            return Err(ClusterError::Timeout {
                what: what.to_string(),
                after: limit,
            });
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Build [`NODE_IMAGE`] unless it exists: debootstrap a minimal bookworm with docker.io from the
/// mirror apt already uses, then `tar | docker import`.
pub fn ensure_node_image() -> Result<(), ClusterError> {
    if crate::images::exists(NODE_IMAGE) {
        eprintln!("{NODE_IMAGE} exists: reusing it");
        return Ok(());
    }
    crate::apt::ensure_installed("/usr/sbin/debootstrap", "debootstrap")?;
    let mirror = apt_mirror();
    // Not /tmp: it may be a small tmpfs, and the root file system is ~550 MB.
    let tmp = tempfile::Builder::new()
        .prefix("xtask-node-")
        .tempdir_in("/var/tmp")
        .map_err(io("temp dir"))?;
    let root = tmp.path().join("root");
    eprintln!("debootstrap bookworm from {mirror} (about a minute)");
    Cmd::new("debootstrap")
        .arg("--variant=minbase")
        .arg(format!("--include={NODE_PACKAGES}"))
        .arg("bookworm")
        .arg(&root)
        .arg(&mirror)
        .output()?;
    interrupt::check()?;
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .args(["-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(io("starting tar"))?;
    let tar_out = tar.stdout.take().expect("tar stdout was piped");
    let import = Command::new("docker")
        .args(["import", "-c", r#"CMD ["dockerd"]"#, "-", NODE_IMAGE])
        .stdin(tar_out)
        .output()
        .map_err(io("starting docker import"))?;
    let tar_status = tar.wait().map_err(io("waiting for tar"))?;
    if !tar_status.success() || !import.status.success() {
        return Err(CmdError::Failed {
            cmd: format!(
                "tar -C {} -c . | docker import - {NODE_IMAGE}",
                root.display()
            ),
            status: format!("tar {tar_status}, import {}", import.status),
            stderr: String::from_utf8_lossy(&import.stderr).into_owned(),
        }
        .into());
    }
    eprintln!("built {NODE_IMAGE}");
    Ok(())
}

/// The Debian mirror apt uses for bookworm (not the security archive), from
/// `/etc/apt/sources.list` and `/etc/apt/sources.list.d/*` (one-line and deb822 formats).
pub fn apt_mirror() -> String {
    let mut files = vec![std::path::PathBuf::from("/etc/apt/sources.list")];
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .find_map(|text| mirror_in(&text))
        .unwrap_or_else(|| "http://deb.debian.org/debian".to_string())
}

/// The first URI serving suite `bookworm` in a sources file's text.
fn mirror_in(text: &str) -> Option<String> {
    // One-line format: deb [options] URI SUITE COMPONENTS...
    for line in text.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix("deb ") else {
            continue;
        };
        let rest = match rest.trim_start().strip_prefix('[') {
            Some(r) => r.split_once(']').map(|(_, r)| r).unwrap_or(""),
            None => rest,
        };
        let mut it = rest.split_whitespace();
        if let (Some(uri), Some("bookworm")) = (it.next(), it.next()) {
            return Some(uri.to_string());
        }
    }
    // deb822: paragraphs of "Field: value".
    for para in text.split("\n\n") {
        let field = |name: &str| {
            para.lines()
                .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
                .map(str::trim)
        };
        let types_deb = field("Types").is_some_and(|t| t.split_whitespace().any(|t| t == "deb"));
        let has_suite =
            field("Suites").is_some_and(|s| s.split_whitespace().any(|s| s == "bookworm"));
        if types_deb
            && has_suite
            && let Some(uri) = field("URIs").and_then(|u| u.split_whitespace().next())
        {
            return Some(uri.to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_mirror_in_deb822() {
        let text = "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n\
                    Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n";
        assert_eq!(
            mirror_in(text).as_deref(),
            Some("http://deb.debian.org/debian")
        );
    }

    #[test]
    fn finds_mirror_in_one_line_format() {
        let text = "# comment\ndeb [arch=amd64] http://mirror.example/debian bookworm main\n";
        assert_eq!(
            mirror_in(text).as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(
            mirror_in("deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main\n"),
            None
        );
    }
}
