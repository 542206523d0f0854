//! `cargo xtask demo`: images, a swarm (local or docker-in-docker), the operator, the manifests, and a look at the result.

use std::path::Path;
use std::time::Duration;

use crate::cluster::{Cluster, ClusterError, UpOptions, default_managers};
use crate::cmd::CmdError;
use crate::docker::{self, DockerError};
use crate::images::{self, ImagesError};
use crate::operator::{Deployment, PublishedPage};
use crate::swarm::Manager;
use crate::timing::phase;
use crate::{operator, state};

/// Why the demo stopped.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// No Docker engine.
    #[error(transparent)]
    Docker(#[from] DockerError),
    /// Image build.
    #[error(transparent)]
    Images(#[from] ImagesError),
    /// The dind cluster or a wait.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// A docker command.
    #[error(transparent)]
    Cmd(#[from] CmdError),
    /// The status page could not be published or does not answer as it should.
    #[error("the status page: {0}")]
    Page(String),
}

/// Where the manifests live on a dind manager node.
pub const NODE_SPECS_DIR: &str = "/srv/swarm-operator/specs";
/// The app services the manifests declare.
pub const APP_SERVICES: [&str; 2] = ["quote-service", "account-service"];
/// The overlay network they share.
pub const APP_NETWORK: &str = "my_network";

/// The user of the demo's status page.
const PAGE_USER: &str = "demo";

/// How the demo's status page is reached.
struct PageAccess {
    /// `http://HOST:PORT/`.
    url: String,
    /// The password of [`PAGE_USER`], made for this demo.
    password: String,
    /// The secret and port the operator is deployed with.
    published: PublishedPage,
}

/// A random password and its web configuration (basic auth; plain HTTP, as the page is
/// reached on this machine only: put TLS in the same file for anything else, see
/// manifests/operator/README.md).
fn page_access(host: &str, port: u16) -> Result<PageAccess, DemoError> {
    use std::io::Read as _;
    let mut bytes = [0u8; 12];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| DemoError::Page(format!("reading /dev/urandom: {e}")))?;
    let password: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let hash = bcrypt::hash(&password, 10).map_err(|e| DemoError::Page(e.to_string()))?;
    Ok(PageAccess {
        url: format!("http://{host}:{port}/"),
        password,
        published: PublishedPage {
            port,
            web_config: format!("basic_auth_users:\n  {PAGE_USER}: '{hash}'\n"),
        },
    })
}

/// The first port from 9090 that nothing on this machine listens on (a local Prometheus
/// takes 9090 itself).
fn free_local_port() -> u16 {
    (9090..9190)
        .find(|p| std::net::TcpListener::bind(("0.0.0.0", *p)).is_ok())
        .unwrap_or(9090)
}

/// GET `path` of the page with (or without) the demo's credentials: the status code.
fn page_status(access: &PageAccess, path: &str, authorized: bool) -> Option<u16> {
    use base64::Engine as _;
    use std::io::{Read as _, Write as _};
    let authority = access
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let addr: std::net::SocketAddr = authority.parse().ok()?;
    let mut conn = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut request = format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\n");
    if authorized {
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("{PAGE_USER}:{}", access.password));
        request.push_str(&format!("Authorization: Basic {token}\r\n"));
    }
    request.push_str("\r\n");
    conn.write_all(request.as_bytes()).ok()?;
    let mut head = [0u8; 12];
    conn.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// Run the demo on `nodes` nodes (1 = the local engine).
pub fn run(root: &Path, nodes: usize) -> Result<(), DemoError> {
    phase("docker: engine + local swarm", || {
        docker::ensure_docker()?;
        if nodes <= 1 {
            docker::ensure_local_swarm()
        } else {
            Ok(())
        }
    })?;
    let all = images::ALL.to_vec();
    phase("images", || images::build(root, &all))?;
    let tags: Vec<String> = all.iter().map(|i| i.tag.to_string()).collect();
    let (manager, cluster, access) = if nodes > 1 {
        let cluster = Cluster::up(&UpOptions {
            nodes,
            managers: default_managers(nodes),
            images: tags,
        })?;
        let m = Manager::Node(cluster.manager().name.clone());
        // Every manager runs a replica and publishes the port on its own address.
        let access = page_access(&cluster.manager().ip, crate::operator::METRICS_PORT)?;
        phase("copy manifests to the manager", || {
            m.put_specs(&root.join("manifests"), NODE_SPECS_DIR)
        })?;
        // The high-availability form: a replica on every manager, specs stored in the swarm.
        phase("deploy the operator on every manager", || {
            operator::deploy_with(&m, Deployment::HighAvailability, Some(&access.published))
        })?;
        phase("swarm-operator apply manifests/", || {
            let printed = operator::apply_specs(&m, NODE_SPECS_DIR)?;
            eprintln!("{printed}");
            Ok::<_, CmdError>(())
        })?;
        (m, Some(cluster), access)
    } else {
        let m = Manager::Local;
        let specs_dir = root.join("manifests").display().to_string();
        let access = page_access("127.0.0.1", free_local_port())?;
        phase("deploy the operator", || {
            operator::deploy_with(
                &m,
                Deployment::Directory {
                    specs_dir: &specs_dir,
                    node: None,
                },
                Some(&access.published),
            )
        })?;
        (m, None, access)
    };
    phase("converge: operator + app services", || {
        manager.wait_converged(&[operator::SERVICE], 1, Duration::from_secs(120))?;
        manager.wait_converged(&APP_SERVICES, 1, Duration::from_secs(300))
    })?;
    show(&manager)?;
    phase("the status page answers, behind basic auth", || {
        crate::cluster::wait_for("the status page", Duration::from_secs(60), || {
            Ok(page_status(&access, "/api/v1/status", true) == Some(200))
        })?;
        match page_status(&access, "/api/v1/status", false) {
            Some(401) => Ok(()),
            other => Err(DemoError::Page(format!(
                "answered {other:?} without credentials, expected 401"
            ))),
        }
    })?;
    print_next_steps(&manager, &access);
    if let Some(c) = cluster {
        state::remember(root, &c.prefix);
        eprintln!(
            "\nthe cluster {} stays up; remove it with: cargo xtask cluster down",
            c.prefix
        );
        c.keep();
    }
    Ok(())
}

/// Where the page is and what to try next.
fn print_next_steps(manager: &Manager, access: &PageAccess) {
    println!(
        "\nstatus page: {}  (user {PAGE_USER}, password {}; /healthz and /readyz need none)",
        access.url, access.password
    );
    let cli = "docker run --rm -v /var/run/docker.sock:/var/run/docker.sock";
    let image = operator::IMAGE;
    let specs = match manager {
        Manager::Local => "-v \"$PWD/manifests:/specs:ro\"".to_owned(),
        Manager::Node(_) => format!("-v {NODE_SPECS_DIR}:/specs:ro"),
    };
    let prefix = match manager {
        Manager::Local => String::new(),
        Manager::Node(n) => format!("docker exec {n} "),
    };
    println!(
        "\ntry (the CLI from the operator's image; or `cargo install --path controller --locked`):"
    );
    println!("  {prefix}{cli} {image} get");
    println!("  {prefix}{cli} {specs} {image} wait --all --for ready --specs /specs --timeout 2m");
    println!(
        "  {prefix}docker service scale account-service=1   # drift: reverted within a second"
    );
}

/// Removes the local demo: the operator first (so it does not recreate what follows), then the
/// services and the network it created, and the status volume. Missing pieces are fine.
pub fn down() -> Result<(), DemoError> {
    let manager = Manager::Local;
    let _ = manager
        .docker(["service", "rm", operator::SERVICE])
        .succeeds();
    // Its task stops gracefully after the service is gone; until then it would recreate what
    // the next steps remove.
    let operator_filter = format!("label=com.docker.swarm.service.name={}", operator::SERVICE);
    let _ = crate::cluster::wait_for("the operator to stop", Duration::from_secs(60), || {
        Ok(manager
            .docker(["ps", "-q", "--filter", operator_filter.as_str()])
            .output()
            .is_ok_and(|out| out.trim().is_empty()))
    });
    let steps: [&[&str]; 3] = [
        &["service", "rm", APP_SERVICES[0], APP_SERVICES[1]],
        &["network", "rm", APP_NETWORK],
        &["volume", "rm", operator::STATUS_VOLUME],
    ];
    let _ = manager
        .docker(["secret", "rm", operator::WEB_CONFIG_SECRET])
        .succeeds();
    for (i, args) in steps.into_iter().enumerate() {
        // The network and the volume stay busy until the tasks using them are gone.
        let tries = if i >= 1 { 30 } else { 1 };
        for attempt in 1..=tries {
            if manager.docker(args).succeeds() || attempt == tries {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    eprintln!("local demo removed");
    Ok(())
}

/// `n` × `GET /accounts/10000` from a probe container on the app network (one JSON line each).
fn probe_accounts(manager: &Manager, n: usize, extra: &[&str]) -> Result<String, CmdError> {
    let n = n.to_string();
    manager
        .docker([
            "run",
            "--rm",
            "--network",
            APP_NETWORK,
            "goblog/e2e-probe:dev",
        ])
        .args(["get", "-n", n.as_str()])
        .args(extra)
        .arg("http://account-service:6767/accounts/10000")
        .output()
}

/// Print a few account responses from the probe and the endpoints from the status file.
pub fn show(manager: &Manager) -> Result<(), DemoError> {
    // Account replicas re-resolve the quote service every few seconds; right after convergence
    // some still answer with the fallback quote. Give them up to 30 s before showing the rotation.
    let _ = crate::cluster::wait_for(
        "quotes from every account replica",
        std::time::Duration::from_secs(30),
        || {
            let out = probe_accounts(manager, 6, &[]).unwrap_or_default();
            Ok(!out.is_empty() && !out.contains("\"ipAddress\":\"fallback\""))
        },
    );
    let out = probe_accounts(manager, 9, &["--resolve-wait-ms", "10000"])?;
    println!(
        "\nGET /accounts/10000 from a client container on {APP_NETWORK} (client-side round robin over dnsrr):"
    );
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
        let body = &v["body"];
        println!(
            "  via {:<16} servedBy={:<12} quote.ipAddress={:<12} name={} quote={:?}",
            v["addr"].as_str().unwrap_or("?"),
            body["servedBy"].as_str().unwrap_or("?"),
            body["quote"]["ipAddress"].as_str().unwrap_or("?"),
            body["name"].as_str().unwrap_or("?"),
            body["quote"]["quote"]
                .as_str()
                .unwrap_or(v["error"].as_str().unwrap_or("?")),
        );
    }
    println!(
        "\ndiscovered endpoints (status file, volume {}):",
        operator::STATUS_VOLUME
    );
    match operator::read_status(manager)? {
        None => println!("  (no status file yet)"),
        Some(text) => {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            let empty = serde_json::Map::new();
            for (name, s) in v["services"].as_object().unwrap_or(&empty) {
                println!(
                    "  {name}: {}/{} running",
                    s["runningReplicas"].as_u64().unwrap_or(0),
                    s["desiredReplicas"].as_u64().unwrap_or(0)
                );
                for e in s["endpoints"].as_array().into_iter().flatten() {
                    let addrs: Vec<String> = e["addresses"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|a| {
                            format!(
                                "{}={}",
                                a["network"].as_str().unwrap_or("?"),
                                a["ip"].as_str().unwrap_or("?")
                            )
                        })
                        .collect();
                    println!(
                        "    slot {:<2} {:<8} node {:<12} {}",
                        e["slot"].as_u64().unwrap_or(0),
                        e["state"].as_str().unwrap_or("?"),
                        e["node"].as_str().unwrap_or("?"),
                        addrs.join(" ")
                    );
                }
            }
            for err in v["errors"].as_array().into_iter().flatten() {
                println!("  spec error: {err}");
            }
        }
    }
    Ok(())
}
