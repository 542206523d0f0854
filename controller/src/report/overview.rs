//! The live overview that `/api/v1/status` serves and the status page shows: the status file's
//! content, plus every node with the tasks it runs and the recent operator activity.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::control::world::WorldState;
use crate::docker::{NodeAvailability, NodeRole, ObservedTask, TaskState};
use crate::report::activity::ActivityEvent;
use crate::report::status::{StatusAddress, StatusFile};

/// Everything the page shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Overview {
    /// The operator instance whose services these are.
    pub instance: String,
    /// Whether this replica leads (acts); a follower only watches, so its activity log stays
    /// empty and the leader's page is the one to look at.
    pub leader: bool,
    /// Exactly what the status file holds (services, conditions, endpoints, spec errors).
    #[serde(flatten)]
    pub status: StatusFile,
    /// Every swarm node, managers first, each with the tasks it runs.
    pub nodes: Vec<NodeView>,
    /// Tasks the scheduler has not placed on a node yet.
    pub unassigned: Vec<TaskCard>,
    /// The last operator events, newest first.
    pub activity: Vec<ActivityEvent>,
    /// The commit the specs were loaded from (`--source git`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<crate::revision::Revision>,
}

/// One node and its tasks.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeView {
    /// Node id.
    pub id: String,
    /// Hostname (the id when the engine reports none).
    pub hostname: String,
    /// Manager or worker.
    pub role: NodeRole,
    /// Active, pause or drain.
    pub availability: NodeAvailability,
    /// `ready`, `down`, …
    pub state: String,
    /// The tasks of the operator's services placed here, by service and slot.
    pub tasks: Vec<TaskCard>,
}

/// One task (a replica's current incarnation) of a service the operator manages.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskCard {
    /// Task id.
    pub task: String,
    /// Service name.
    pub service: String,
    /// Replica slot (replicated services).
    pub slot: Option<u64>,
    /// `running`, `starting`, `preparing`, …
    pub state: String,
    /// The image's tag (`latest` when the reference has none).
    pub image_tag: String,
    /// Address per network.
    pub addresses: Vec<StatusAddress>,
}

/// Builds the overview from the shared view, the status built from it, the activity log and
/// whether this replica leads.
/// Only tasks of the services in `status` (this instance's) are shown, the same live tasks
/// (desired state `running`) the status lists as endpoints.
pub fn build(
    world: &WorldState,
    status: StatusFile,
    activity: Vec<ActivityEvent>,
    leader: bool,
) -> Overview {
    let live_tasks = live_tasks_by_service(world);
    let mut by_node: BTreeMap<&str, Vec<TaskCard>> = BTreeMap::new();
    let mut unassigned = Vec::new();
    for name in status.services.keys() {
        let Some(service) = world.observed.services.get(name) else {
            continue;
        };
        if !service.ownership.is_owned_by(&world.desired.instance) {
            continue;
        }
        let image_tag = image_tag(&service.definition.image).to_owned();
        for task in live_tasks.get(service.id.as_str()).into_iter().flatten() {
            let card = card(task, name, &image_tag);
            match &task.node_id {
                Some(node) => by_node.entry(node.as_str()).or_default().push(card),
                None => unassigned.push(card),
            }
        }
    }
    let mut nodes: Vec<NodeView> = world
        .observed
        .nodes
        .values()
        .map(|node| NodeView {
            id: node.id.clone(),
            hostname: world.observed.node_name(&node.id),
            role: node.role,
            availability: node.availability,
            state: node.state.clone(),
            tasks: by_node.remove(node.id.as_str()).unwrap_or_default(),
        })
        .collect();
    // Tasks on a node the last node list did not have yet (it just joined): show it anyway.
    nodes.extend(by_node.into_iter().map(|(id, tasks)| NodeView {
        id: id.to_owned(),
        hostname: world.observed.node_name(id),
        role: NodeRole::Unknown,
        availability: NodeAvailability::Unknown,
        state: "unknown".to_owned(),
        tasks,
    }));
    nodes.sort_by(|a, b| {
        (a.role != NodeRole::Manager, &a.hostname).cmp(&(b.role != NodeRole::Manager, &b.hostname))
    });
    // The overview is kept until the next pass: without the slack the lists grew with (up to
    // half of each, 0.4 MB of cards at 5,000 tasks).
    for node in &mut nodes {
        node.tasks
            .sort_by(|a, b| (&a.service, a.slot).cmp(&(&b.service, b.slot)));
        node.tasks.shrink_to_fit();
    }
    unassigned.sort_by(|a, b| (&a.service, a.slot).cmp(&(&b.service, b.slot)));
    unassigned.shrink_to_fit();
    Overview {
        instance: world.desired.instance.to_string(),
        leader,
        status,
        nodes,
        unassigned,
        activity,
        revision: world.desired.revision.clone(),
    }
}

/// The tasks swarm wants running (a service's current replicas; old ones shut down and failed
/// ones are history), by service id: one pass over the task list rather than one per service.
pub fn live_tasks_by_service(world: &WorldState) -> HashMap<&str, Vec<&ObservedTask>> {
    let mut by_service: HashMap<&str, Vec<&ObservedTask>> = HashMap::new();
    for task in world.observed.tasks.iter() {
        if task.desired_state.is(&TaskState::RUNNING) {
            by_service.entry(&task.service_id).or_default().push(task);
        }
    }
    by_service
}

fn card(task: &ObservedTask, service: &str, image_tag: &str) -> TaskCard {
    TaskCard {
        task: task.id.clone(),
        service: service.to_owned(),
        slot: task.slot,
        state: task.state.to_string(),
        image_tag: image_tag.to_owned(),
        addresses: task.addresses.iter().map(StatusAddress::from).collect(),
    }
}

/// The tag of an image reference: `registry:5000/team/app:1.2@sha256:…` → `1.2`; no tag →
/// `latest`, as Docker reads it.
pub fn image_tag(image: &str) -> &str {
    let without_digest = image.split_once('@').map_or(image, |(name, _)| name);
    // A colon before the last slash belongs to a registry port, not to a tag.
    let last_segment = without_digest.rsplit('/').next().unwrap_or(without_digest);
    match last_segment.rsplit_once(':') {
        Some((_, tag)) if !tag.is_empty() => tag,
        _ => "latest",
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::desired::DesiredObject;
    use crate::desired::definition::DEFAULT_INSTANCE;
    use crate::desired::definition::tests::sample_service;
    use crate::docker::{EngineValue, ObservedNode, ObservedService, Ownership, TaskAddress};

    pub(crate) fn task(
        id: &str,
        service: &str,
        slot: u64,
        node: &str,
        state: &str,
    ) -> ObservedTask {
        let last = id.chars().last().unwrap_or('0');
        ObservedTask {
            id: id.into(),
            service_id: service.into(),
            slot: Some(slot),
            node_id: (!node.is_empty()).then(|| node.to_owned()),
            state: EngineValue::parse("state", state),
            desired_state: EngineValue::parse(
                "desired",
                if state == "shutdown" {
                    "shutdown"
                } else {
                    "running"
                },
            ),
            message: "".into(),
            error: None,
            exit_code: None,
            timestamp: None,
            template: None,
            addresses: vec![
                TaskAddress {
                    network: "my_network".into(),
                    ip: format!("10.0.1.{last}"),
                },
                TaskAddress {
                    network: "ingress".into(),
                    ip: format!("10.255.0.{last}"),
                },
            ],
        }
    }

    fn node(
        id: &str,
        hostname: &str,
        role: NodeRole,
        availability: NodeAvailability,
    ) -> ObservedNode {
        ObservedNode {
            id: id.into(),
            hostname: hostname.into(),
            state: "ready".into(),
            role,
            availability,
        }
    }

    /// This instance's service `web` (3 replicas wanted: two running on two nodes, one starting,
    /// one old task shut down), someone else's service `other` with a running task, a manager
    /// and a drained worker.
    pub(crate) fn sample_world() -> WorldState {
        let mut web = sample_service("web");
        web.image = "registry:5000/team/web:1.4".into();
        web.labels = crate::labels::Labels::from_iter([
            ("prometheus.io/port".to_owned(), "9100".to_owned()),
            ("app.kubernetes.io/name".to_owned(), "web".to_owned()),
        ]);
        let desired = DesiredObject::new(web.clone(), "web.yaml".into(), DEFAULT_INSTANCE);
        let mut world = WorldState::default();
        Arc::make_mut(&mut world.desired).instance = DEFAULT_INSTANCE.into();
        Arc::make_mut(&mut world.desired)
            .services
            .insert("web".into(), desired.clone());
        world.observed.services.insert(
            "web".into(),
            Arc::new(ObservedService {
                id: "svc-web".into(),
                version: 7,
                definition: web.into(),
                ownership: Ownership::from_labels(&desired.owner_labels()),
                virtual_ips: vec![],
                update_status: None,
                revision: Default::default(),
            }),
        );
        world.observed.services.insert(
            "other".into(),
            Arc::new(ObservedService {
                id: "svc-other".into(),
                version: 1,
                definition: sample_service("other").into(),
                ownership: Ownership::default(),
                virtual_ips: vec![],
                update_status: None,
                revision: Default::default(),
            }),
        );
        for n in [
            node("n2", "worker-1", NodeRole::Worker, NodeAvailability::Drain),
            node(
                "n1",
                "manager-1",
                NodeRole::Manager,
                NodeAvailability::Active,
            ),
        ] {
            world.observed.nodes.insert(n.id.clone(), n);
        }
        world.observed.tasks = Arc::new(vec![
            task("t3", "svc-web", 3, "n2", "starting"),
            task("t1", "svc-web", 1, "n1", "running"),
            task("t2", "svc-web", 2, "n2", "running"),
            task("t0", "svc-web", 1, "n1", "shutdown"),
            task("t9", "svc-other", 1, "n1", "running"),
        ]);
        world.specs_loaded = true;
        world.swarm_observed = true;
        world
    }

    pub(crate) fn sample_overview(world: &WorldState) -> Overview {
        let status =
            crate::report::status::build(world, Path::new("/specs"), None, "2026-01-01T00:00:00Z");
        build(world, status, vec![], true)
    }

    #[test]
    fn tasks_of_this_instance_are_grouped_by_node_managers_first() {
        let overview = sample_overview(&sample_world());
        let columns: Vec<(&str, NodeRole, NodeAvailability, Vec<&str>)> = overview
            .nodes
            .iter()
            .map(|n| {
                let tasks = n.tasks.iter().map(|t| t.task.as_str()).collect();
                (n.hostname.as_str(), n.role, n.availability, tasks)
            })
            .collect();
        assert_eq!(
            columns,
            [
                (
                    "manager-1",
                    NodeRole::Manager,
                    NodeAvailability::Active,
                    vec!["t1"]
                ),
                (
                    "worker-1",
                    NodeRole::Worker,
                    NodeAvailability::Drain,
                    vec!["t2", "t3"]
                ),
            ],
            "the old task and the other instance's task are not shown"
        );
        let card = &overview.nodes[1].tasks[1];
        assert_eq!(
            (
                card.service.as_str(),
                card.slot,
                card.state.as_str(),
                card.image_tag.as_str()
            ),
            ("web", Some(3), "starting", "1.4")
        );
        assert!(overview.unassigned.is_empty());
    }

    #[test]
    fn a_task_not_placed_yet_is_unassigned() {
        let mut world = sample_world();
        Arc::make_mut(&mut world.observed.tasks).push(task("t4", "svc-web", 4, "", "pending"));
        let overview = sample_overview(&world);
        assert_eq!(overview.unassigned.len(), 1);
        assert_eq!(
            overview.unassigned.capacity(),
            1,
            "kept until the next pass: no slack"
        );
        assert_eq!(overview.unassigned[0].task, "t4");
    }

    #[test]
    fn the_json_is_the_status_file_plus_nodes_and_activity() {
        let overview = sample_overview(&sample_world());
        let json = serde_json::to_value(&overview).unwrap();
        let status = serde_json::to_value(&overview.status).unwrap();
        for (key, value) in status.as_object().unwrap() {
            assert_eq!(&json[key], value, "{key}");
        }
        assert_eq!(json["nodes"][0]["role"], "manager");
        assert_eq!(json["nodes"][1]["availability"], "drain");
        assert_eq!(json["nodes"][1]["tasks"][0]["imageTag"], "1.4");
        assert!(json["activity"].is_array());
    }

    #[test]
    fn image_tags_are_read_like_docker_reads_them() {
        assert_eq!(image_tag("goblog/quote-service:dev"), "dev");
        assert_eq!(image_tag("busybox"), "latest");
        assert_eq!(image_tag("registry:5000/team/app"), "latest");
        assert_eq!(image_tag("registry:5000/team/app:1.2@sha256:abc"), "1.2");
    }
}
