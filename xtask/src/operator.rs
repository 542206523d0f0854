//! Deploying the operator itself as a swarm service on a manager (it cannot create itself): the flags of manifests/operator/README.md.

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

/// The `docker service create` arguments, `specs_dir` being a directory on the manager node.
/// Keep in sync with manifests/operator/README.md.
pub fn create_args(specs_dir: &str) -> Vec<String> {
    let mut args: Vec<String> = [
        "service",
        "create",
        "--detach",
        "--name",
        SERVICE,
        // Swarm services can only be managed through a manager's API.
        "--constraint",
        "node.role==manager",
        "--replicas",
        "1",
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
    args.push("--mount".into());
    args.push(format!(
        "type=bind,source={specs_dir},target=/specs,readonly"
    ));
    args.extend(
        [
            IMAGE,
            "run",
            "--specs",
            "/specs",
            "--status",
            "/status/status.json",
            "--metrics-addr",
            "0.0.0.0:9090",
        ]
        .map(String::from),
    );
    args
}

/// (Re)deploy the operator on `manager`: an existing operator service is removed first, so the new
/// image and flags take effect; the app services it manages are left alone.
pub fn deploy(manager: &Manager, specs_dir: &str) -> Result<(), CmdError> {
    if manager.docker(["service", "inspect", SERVICE]).succeeds() {
        manager.docker(["service", "rm", SERVICE]).output()?;
    }
    manager.docker(create_args(specs_dir)).output()?;
    Ok(())
}

/// The status file's text, if the operator has written one.
pub fn read_status(manager: &Manager) -> Result<Option<String>, CmdError> {
    manager.read_volume_file(STATUS_VOLUME, STATUS_FILE)
}
