//! Deploying the operator itself as a swarm service (it cannot create itself): the flags of manifests/operator/README.md, in its two forms.

use crate::cmd::CmdError;
use crate::swarm::Manager;

/// The operator's service name.
pub const SERVICE: &str = "swarm-operator";
/// The named volume holding the status file.
pub const STATUS_VOLUME: &str = "swarm-operator-status";
/// The status file's name inside that volume (mounted at `/status`).
pub const STATUS_FILE: &str = "status.json";
/// The image.
pub const IMAGE: &str = "swarm-operator:dev";
/// The port of `/metrics`, `/healthz` and `/readyz` inside the operator's container.
pub const METRICS_PORT: u16 = 9090;

/// The docker secret holding the web configuration (`--web-config`) of a published page.
pub const WEB_CONFIG_SECRET: &str = "swarm-operator-web-config";
/// Where that secret is mounted in the operator's container.
const WEB_CONFIG_TARGET: &str = "/run/secrets/web-config.yml";

/// The docker secret holding the push webhook's secret (`--git-webhook-secret-file`).
pub const GIT_HOOK_SECRET: &str = "swarm-operator-git-hook";
/// Where that secret is mounted in the operator's container.
const GIT_HOOK_TARGET: &str = "/run/secrets/git-hook";

/// The operator reading its specs from a git repository (`--source git`), as
/// manifests/operator/README.md deploys it, with push webhooks reachable on a node port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GitDeployment<'a> {
    /// `--git-url`: a URL the operator's container reaches.
    pub url: &'a str,
    /// `--instance`: whose lease, revision record and objects these are.
    pub instance: &'a str,
    /// The manager (hostname) the one replica runs on.
    pub node: &'a str,
    /// The node port `/hooks/git` (the metrics address) is published on, in host mode: no
    /// routing mesh is needed, and none routes without IPVS.
    pub hook_port: u16,
}

/// The status page published outside the swarm, behind basic auth (the demo's form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedPage {
    /// The node port (host mode: no routing mesh is needed, and none routes without IPVS).
    pub port: u16,
    /// The web configuration (exporter-toolkit format) stored as [`WEB_CONFIG_SECRET`].
    pub web_config: String,
}

/// How the operator is deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deployment<'a> {
    /// One replica reading a spec directory on a manager node: the local single-node demo,
    /// and the e2e scenarios that edit spec files.
    Directory {
        /// The spec directory on the node.
        specs_dir: &'a str,
        /// Pin to this node's hostname (where the directory is) when there are several
        /// managers.
        node: Option<&'a str>,
    },
    /// The high-availability form: a replica on every manager, one leader elected through a
    /// lease in the swarm, the specs read from the swarm (stored there by `apply`).
    HighAvailability,
    /// One replica following a git repository, with leader election (so the revision record
    /// is written the way several replicas write it) and the push hook's secret as
    /// [`GIT_HOOK_SECRET`]; deployed with [`deploy_git`].
    Git(GitDeployment<'a>),
}

/// The `docker service create` arguments. Keep in sync with manifests/operator/README.md.
pub fn create_args(deployment: Deployment<'_>, page: Option<&PublishedPage>) -> Vec<String> {
    let mut args: Vec<String> = [
        "service",
        "create",
        "--detach",
        "--name",
        SERVICE,
        // Swarm services can only be managed through a manager's API.
        "--constraint",
        "node.role==manager",
        "--mount",
        "type=bind,source=/var/run/docker.sock,target=/var/run/docker.sock",
        "--mount",
        &format!("type=volume,source={STATUS_VOLUME},target=/status"),
        // `any`, not `on-failure`: a task stopped for being unhealthy (or by a node drain) exits 0
        // on SIGTERM and would otherwise never come back.
        "--restart-condition",
        "any",
        "--restart-delay",
        "2s",
        // No --health-cmd: the CLI wraps it in CMD-SHELL and the image has no shell. The image's
        // own exec-form HEALTHCHECK (/healthcheck --port 9090 --path /healthz) applies.
        "--env",
        "RUST_LOG=info",
        "--label",
        "app=swarm-operator",
        // No registry here: do not ask one for the image digest.
        "--no-resolve-image",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let metrics_addr = format!("0.0.0.0:{METRICS_PORT}");
    if let Some(page) = page {
        args.push("--publish".into());
        args.push(format!(
            "mode=host,published={},target={METRICS_PORT}",
            page.port
        ));
        args.push("--secret".into());
        args.push(format!(
            "source={WEB_CONFIG_SECRET},target={}",
            WEB_CONFIG_TARGET.trim_start_matches("/run/secrets/")
        ));
    }
    match deployment {
        Deployment::Directory { specs_dir, node } => {
            args.extend(["--replicas", "1"].map(String::from));
            if let Some(node) = node {
                args.push("--constraint".into());
                args.push(format!("node.hostname=={node}"));
            }
            args.push("--mount".into());
            args.push(format!(
                "type=bind,source={specs_dir},target=/specs,readonly"
            ));
            args.push(IMAGE.into());
            args.extend(["run", "--specs", "/specs"].map(String::from));
        }
        Deployment::HighAvailability => {
            args.extend(
                [
                    // One replica per manager: whichever manager is left runs one.
                    "--mode",
                    "global",
                    // Unique per task, readable per node: `docker config inspect
                    // swarm-operator-lease-default` then says which node leads.
                    "--env",
                    "SWARM_OPERATOR_IDENTITY={{.Node.Hostname}}/{{.Task.ID}}",
                    IMAGE,
                    "run",
                    "--source",
                    "swarm",
                    "--leader-election",
                ]
                .map(String::from),
            );
        }
        Deployment::Git(git) => {
            args.extend(["--replicas", "1"].map(String::from));
            args.push("--constraint".into());
            args.push(format!("node.hostname=={}", git.node));
            args.push("--publish".into());
            args.push(format!(
                "mode=host,published={},target={METRICS_PORT}",
                git.hook_port
            ));
            args.push("--secret".into());
            args.push(format!(
                "source={GIT_HOOK_SECRET},target={}",
                GIT_HOOK_TARGET.trim_start_matches("/run/secrets/")
            ));
            args.push(IMAGE.into());
            args.extend(
                [
                    "run",
                    "--source",
                    "git",
                    "--instance",
                    git.instance,
                    "--git-url",
                    git.url,
                    // The push hook fetches: the poll is only the safety net.
                    "--git-poll",
                    "1h",
                    "--git-webhook-secret-file",
                    GIT_HOOK_TARGET,
                    "--leader-election",
                ]
                .map(String::from),
            );
        }
    }
    args.extend(
        [
            "--status",
            "/status/status.json",
            "--metrics-addr",
            &metrics_addr,
        ]
        .map(String::from),
    );
    if page.is_some() {
        args.extend(["--web-config", WEB_CONFIG_TARGET].map(String::from));
    }
    args
}

/// (Re)deploy the operator through `manager`: an existing operator service is removed first, so
/// the new image and flags take effect; the app services it manages are left alone.
pub fn deploy(manager: &Manager, deployment: Deployment<'_>) -> Result<(), CmdError> {
    deploy_with(manager, deployment, None)
}

/// [`deploy`], with the status page published on a node port behind `page`'s web
/// configuration, which replaces the [`WEB_CONFIG_SECRET`] secret (a secret in use cannot be
/// changed, so this happens after the old operator service is gone).
pub fn deploy_with(
    manager: &Manager,
    deployment: Deployment<'_>,
    page: Option<&PublishedPage>,
) -> Result<(), CmdError> {
    if manager.docker(["service", "inspect", SERVICE]).succeeds() {
        manager.docker(["service", "rm", SERVICE]).output()?;
    }
    if let Some(page) = page {
        replace_secret(manager, WEB_CONFIG_SECRET, page.web_config.as_bytes())?;
    }
    manager.docker(create_args(deployment, page)).output()?;
    Ok(())
}

/// (Re)deploy the operator in its [`Deployment::Git`] form, with `hook_secret` as the push
/// webhook's secret (replacing [`GIT_HOOK_SECRET`] once the old operator service is gone).
pub fn deploy_git(
    manager: &Manager,
    git: GitDeployment<'_>,
    hook_secret: &[u8],
) -> Result<(), CmdError> {
    if manager.docker(["service", "inspect", SERVICE]).succeeds() {
        manager.docker(["service", "rm", SERVICE]).output()?;
    }
    replace_secret(manager, GIT_HOOK_SECRET, hook_secret)?;
    manager
        .docker(create_args(Deployment::Git(git), None))
        .output()?;
    Ok(())
}

/// Creates the secret `name` with `value`, removing an older one first (a secret in use cannot
/// be changed, so this runs after the old operator service is gone).
fn replace_secret(manager: &Manager, name: &str, value: &[u8]) -> Result<(), CmdError> {
    // The removed service's tasks may hold the secret for a moment after `service rm`.
    let _ = crate::cluster::wait_for(
        &format!("the old secret {name} to be free"),
        std::time::Duration::from_secs(30),
        || {
            Ok(manager.docker(["secret", "rm", name]).succeeds()
                || !manager.docker(["secret", "inspect", name]).succeeds())
        },
    );
    manager
        .docker(["secret", "create", name, "-"])
        .stdin_bytes(value.to_vec())
        .output()?;
    Ok(())
}

/// `swarm-operator apply /specs` in a one-off container on `manager`, with `specs_dir` (a
/// directory on that node) mounted as `/specs`: validates the specs and stores them in the
/// swarm for the high-availability form. Returns what it printed.
pub fn apply_specs(manager: &Manager, specs_dir: &str) -> Result<String, CmdError> {
    manager
        .docker([
            "run",
            "--rm",
            "--volume",
            "/var/run/docker.sock:/var/run/docker.sock",
            "--volume",
            &format!("{specs_dir}:/specs:ro"),
            IMAGE,
            "apply",
            "/specs",
        ])
        .output()
}

/// The status file's text, if the operator has written one.
pub fn read_status(manager: &Manager) -> Result<Option<String>, CmdError> {
    manager.read_volume_file(STATUS_VOLUME, STATUS_FILE)
}
