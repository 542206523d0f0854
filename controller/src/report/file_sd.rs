//! Prometheus file-based service discovery (`--file-sd FILE`): every running task endpoint of
//! the operator's services as `file_sd_configs` JSON, built purely from the shared view and
//! written atomically, only when it changes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::control::world::{World, WorldState};
use crate::desired::definition::ServiceDefinition;
use crate::docker::TaskState;
use crate::report::status::publisher::Snapshots;
use crate::report::status::{ConditionStatus, ConditionType, StatusFile};

/// The spec label naming the port Prometheus should scrape (else the first target port).
pub const PORT_LABEL: &str = "prometheus.io/port";

/// Prefix of every label this discovery attaches (Prometheus drops `__meta_*` labels after
/// relabelling unless a rule keeps them).
const META: &str = "__meta_swarm_operator_";

/// How often the file is looked at again while it cannot be brought up to date (the view not
/// read yet, or a failed write); otherwise only a new status snapshot wakes the writer.
const RETRY: Duration = Duration::from_secs(1);

/// Errors writing the file.
#[derive(Debug, thiserror::Error)]
pub enum FileSdError {
    /// Writing, syncing or renaming the file failed.
    #[error("writing the Prometheus file_sd file {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// One `file_sd_configs` target group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetGroup {
    /// `ip:port` addresses.
    pub targets: Vec<String>,
    /// Labels of every target in the group.
    pub labels: BTreeMap<String, String>,
}

/// What discovery found: the target groups, and the services left out for want of a port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovery {
    /// Ordered by service, network, slot and task.
    pub groups: Vec<TargetGroup>,
    /// Service name → why it has no targets.
    pub skipped: BTreeMap<String, String>,
}

/// Builds the target groups: for every service of this instance with a port, one group per
/// running task and network the spec names (slot, node and state are per task, and Prometheus
/// labels are per group), ordered by service and network.
pub fn build(world: &WorldState) -> Discovery {
    build_from(
        world,
        &crate::report::status::build(world, Path::new(""), None, ""),
    )
}

/// [`build`] with readiness taken from `status`, the status built from `world` already (the
/// publisher's snapshot), rather than building it again.
pub fn build_from(world: &WorldState, status: &StatusFile) -> Discovery {
    let mut discovery = Discovery::default();
    let live_tasks = crate::report::overview::live_tasks_by_service(world);
    for (name, service_status) in &status.services {
        let Some(service) = world
            .observed
            .services
            .get(name)
            .filter(|s| s.ownership.is_owned_by(&world.desired.instance))
        else {
            continue;
        };
        let port = match scrape_port(&service.definition) {
            Ok(Some(port)) => port,
            Ok(None) => {
                discovery.skipped.insert(
                    name.clone(),
                    format!("no {PORT_LABEL} label and no ports in its spec"),
                );
                continue;
            }
            Err(reason) => {
                discovery.skipped.insert(name.clone(), reason);
                continue;
            }
        };
        let ready = service_status
            .conditions
            .iter()
            .any(|c| c.kind == ConditionType::Ready && c.status == ConditionStatus::True);
        let mut common = BTreeMap::from([
            (format!("{META}service"), name.clone()),
            (format!("{META}ready"), ready.to_string()),
        ]);
        for (label, value) in &service.definition.labels {
            common.insert(format!("{META}label_{}", label_name(label)), value.clone());
        }
        let mut tasks: Vec<_> = live_tasks
            .get(service.id.as_str())
            .into_iter()
            .flatten()
            .filter(|t| t.state.is(&TaskState::RUNNING))
            .collect();
        tasks.sort_by(|a, b| (a.slot, &a.id).cmp(&(b.slot, &b.id)));
        for network in &service.definition.networks {
            for task in &tasks {
                let Some(address) = task.addresses.iter().find(|a| &a.network == network) else {
                    continue;
                };
                let node = task
                    .node_id
                    .as_deref()
                    .map(|id| world.observed.node_name(id));
                let mut labels = common.clone();
                labels.insert(format!("{META}network"), network.clone());
                labels.insert(format!("{META}task"), task.id.clone());
                labels.insert(format!("{META}task_state"), task.state.to_string());
                labels.insert(format!("{META}node"), node.unwrap_or_default());
                labels.insert(
                    format!("{META}slot"),
                    task.slot.map(|s| s.to_string()).unwrap_or_default(),
                );
                discovery.groups.push(TargetGroup {
                    targets: vec![format!("{}:{port}", address.ip)],
                    labels,
                });
            }
        }
    }
    discovery
}

/// The port to scrape: the `prometheus.io/port` label, else the first target port.
fn scrape_port(service: &ServiceDefinition) -> Result<Option<u16>, String> {
    match service.labels.get(PORT_LABEL) {
        Some(value) => match value.trim().parse::<u16>() {
            Ok(port) if port > 0 => Ok(Some(port)),
            _ => Err(format!(
                "label {PORT_LABEL}={value:?} is not a port number (1-65535)"
            )),
        },
        None => Ok(service.ports.first().map(|p| p.target)),
    }
}

/// A spec label name as a Prometheus label name: every character outside `[A-Za-z0-9_]`
/// becomes `_` (as Prometheus's own discoveries do), so `app.kubernetes.io/name` becomes
/// `app_kubernetes_io_name`.
pub fn label_name(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// The file's bytes.
pub fn render(groups: &[TargetGroup]) -> Vec<u8> {
    let mut json = serde_json::to_vec_pretty(groups).expect("target groups serialize to JSON");
    json.push(b'\n');
    json
}

/// Replaces `path` with `bytes` atomically (temporary file in the same directory, fsync,
/// rename), mode 0644: Prometheus watches the file, must never read half of it, and usually
/// runs as another user.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FileSdError> {
    // The temporary name must not end in .json: Prometheus would try to read it.
    crate::atomic_file::replace(path, ".file-sd-", bytes).map_err(|source| FileSdError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Keeps `path` equal to [`build`] of the world until `shutdown`: looks once per status
/// snapshot (published when the services, their tasks or the nodes changed; the status inside
/// gives readiness), once the specs and the swarm have been read (an empty file before that
/// would drop every target), and writes only when the content differs from the file. A failed
/// write is logged and retried every second.
pub async fn writer(
    world: World,
    mut snapshots: Snapshots,
    path: PathBuf,
    shutdown: CancellationToken,
) {
    let mut written = std::fs::read(&path).ok();
    let mut skipped = BTreeMap::new();
    let mut failing = false;
    let mut waiting_for_view = false;
    let mut first = true;
    loop {
        if !std::mem::take(&mut first) {
            let retry = failing || waiting_for_view;
            tokio::select! {
                changed = snapshots.changed() => {
                    // The publisher ended: the operator is stopping.
                    if changed.is_err() {
                        return;
                    }
                }
                () = tokio::time::sleep(RETRY), if retry => {}
                () = shutdown.cancelled() => return,
            }
        }
        waiting_for_view = !world.is_ready();
        if waiting_for_view {
            continue;
        }
        let snapshot = snapshots.borrow_and_update().clone();
        let discovery = build_from(&world.snapshot(), snapshot.status());
        if discovery.skipped != skipped {
            for (service, why) in &discovery.skipped {
                if skipped.get(service) != Some(why) {
                    warn!(%service, reason = %why, "no Prometheus targets for this service; set the {PORT_LABEL} label or a port in its spec");
                }
            }
            skipped = discovery.skipped;
        }
        let bytes = render(&discovery.groups);
        if written.as_ref() == Some(&bytes) {
            continue;
        }
        match write_atomic(&path, &bytes) {
            Ok(()) => {
                if std::mem::take(&mut failing) {
                    info!(path = %path.display(), "file_sd file written again");
                }
                info!(path = %path.display(), targets = discovery.groups.len(), "file_sd targets updated");
                written = Some(bytes);
            }
            Err(error) => {
                if !std::mem::replace(&mut failing, true) {
                    warn!(%error, "retrying every second");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::desired::definition::Port;
    use crate::report::overview::tests::{sample_world, task};
    use crate::spec::types::{Protocol, PublishMode};

    fn label<'a>(group: &'a TargetGroup, name: &str) -> &'a str {
        group.labels[&format!("{META}{name}")].as_str()
    }

    #[test]
    fn one_group_per_running_task_on_the_spec_networks_with_its_labels() {
        let discovery = build(&sample_world());
        // t1 and t2 run; t3 is starting, t0 shut down, t9 belongs to someone else; the
        // ingress addresses are not on a network the spec names.
        let targets: Vec<&str> = discovery
            .groups
            .iter()
            .map(|g| g.targets[0].as_str())
            .collect();
        assert_eq!(targets, ["10.0.1.1:9100", "10.0.1.2:9100"]);
        let first = &discovery.groups[0];
        assert_eq!(label(first, "service"), "web");
        assert_eq!(label(first, "slot"), "1");
        assert_eq!(label(first, "node"), "manager-1");
        assert_eq!(label(first, "network"), "my_network");
        assert_eq!(label(first, "task"), "t1");
        assert_eq!(label(first, "task_state"), "running");
        // Two of three replicas run: not ready.
        assert_eq!(label(first, "ready"), "false");
        assert_eq!(label(first, "label_app_kubernetes_io_name"), "web");
        assert_eq!(label(&discovery.groups[1], "node"), "worker-1");
        assert!(discovery.skipped.is_empty());
    }

    #[test]
    fn ready_follows_the_status_condition() {
        let mut world = sample_world();
        Arc::make_mut(&mut world.observed.tasks).push(task("t5", "svc-web", 3, "n1", "running"));
        Arc::make_mut(&mut world.observed.tasks).retain(|t| t.id != "t3");
        let discovery = build(&world);
        assert_eq!(discovery.groups.len(), 3);
        assert!(discovery.groups.iter().all(|g| label(g, "ready") == "true"));
    }

    #[test]
    fn the_port_comes_from_the_label_else_the_first_target_port() {
        let mut world = sample_world();
        let web = world.observed.service_mut("web").unwrap();
        Arc::make_mut(&mut web.definition).labels.remove(PORT_LABEL);
        Arc::make_mut(&mut web.definition).ports = vec![Port {
            target: 8080,
            published: Some(80),
            protocol: Protocol::Tcp,
            mode: PublishMode::Ingress,
        }];
        assert_eq!(build(&world).groups[0].targets, ["10.0.1.1:8080"]);

        let web = world.observed.service_mut("web").unwrap();
        Arc::make_mut(&mut web.definition).ports.clear();
        let discovery = build(&world);
        assert!(discovery.groups.is_empty());
        assert!(
            discovery.skipped["web"].contains(PORT_LABEL),
            "{discovery:?}"
        );

        let web = world.observed.service_mut("web").unwrap();
        Arc::make_mut(&mut web.definition)
            .labels
            .insert(PORT_LABEL.into(), "http".into());
        let discovery = build(&world);
        assert!(discovery.groups.is_empty());
        assert!(
            discovery.skipped["web"].contains("\"http\""),
            "{discovery:?}"
        );
    }

    #[test]
    fn label_names_are_made_valid_for_prometheus() {
        assert_eq!(
            label_name("app.kubernetes.io/name"),
            "app_kubernetes_io_name"
        );
        assert_eq!(label_name("team-Blue_2"), "team_Blue_2");
    }

    #[test]
    fn the_file_is_replaced_whole_and_parses_as_file_sd() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sd").join("swarm.json");
        let groups = build(&sample_world()).groups;
        write_atomic(&path, &render(&groups)).unwrap();
        write_atomic(&path, &render(&groups)).unwrap();
        let parsed: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(parsed[1]["targets"][0], "10.0.1.2:9100");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["swarm.json"]);
        // Prometheus runs as another user: the file must be readable by it.
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "file_sd mode {mode:o}");
    }

    /// The writer looks when a snapshot is published, and takes readiness from it: written
    /// from the first snapshot, and again when the next one says the service became ready.
    #[tokio::test(start_paused = true)]
    async fn the_writer_follows_the_snapshots() {
        use crate::report::overview::tests::sample_overview;
        use crate::report::status::publisher::Snapshot;
        use std::sync::Arc;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("swarm.json");
        let state = sample_world();
        let mut overview = sample_overview(&state);
        let (sender, snapshots) =
            tokio::sync::watch::channel(Arc::new(Snapshot::new(overview.clone())));
        let stop = CancellationToken::new();
        let writer = tokio::spawn(writer(
            World::from_state(state),
            snapshots,
            path.clone(),
            stop.clone(),
        ));
        tokio::time::sleep(Duration::from_secs(1)).await;
        let first = String::from_utf8(std::fs::read(&path).expect("written")).unwrap();
        assert!(first.contains("10.0.1.1:9100"), "{first}");
        assert!(
            first.contains(&format!("\"{META}ready\": \"false\"")),
            "{first}"
        );

        let web = overview.status.services.get_mut("web").unwrap();
        for condition in &mut web.conditions {
            if condition.kind == ConditionType::Ready {
                condition.status = ConditionStatus::True;
            }
        }
        sender.send_replace(Arc::new(Snapshot::new(overview)));
        tokio::time::sleep(Duration::from_secs(1)).await;
        let second = String::from_utf8(std::fs::read(&path).unwrap()).unwrap();
        assert!(
            !second.contains(&format!("\"{META}ready\": \"false\"")),
            "{second}"
        );
        assert!(
            second.contains(&format!("\"{META}ready\": \"true\"")),
            "{second}"
        );
        stop.cancel();
        writer.await.unwrap();
    }
}
