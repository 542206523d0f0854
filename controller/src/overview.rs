//! The live overview that `/api/v1/status` serves and the status page shows: the status file's
//! content, plus every node with the tasks it runs and the recent operator activity.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::activity::ActivityEvent;
use crate::docker::{NodeAvailability, NodeRole, ObservedTask};
use crate::status::{StatusAddress, StatusFile};
use crate::world::WorldState;

/// Everything the page shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Overview {
    /// The operator instance whose services these are.
    pub instance: String,
    /// Exactly what the status file holds (services, conditions, endpoints, spec errors).
    #[serde(flatten)]
    pub status: StatusFile,
    /// Every swarm node, managers first, each with the tasks it runs.
    pub nodes: Vec<NodeView>,
    /// Tasks the scheduler has not placed on a node yet.
    pub unassigned: Vec<TaskCard>,
    /// The last operator events, newest first.
    pub activity: Vec<ActivityEvent>,
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

/// Builds the overview from the shared view, the status built from it and the activity log.
/// Only tasks of the services in `status` (this instance's) are shown, the same live tasks
/// (desired state `running`) the status lists as endpoints.
pub fn build(world: &WorldState, status: StatusFile, activity: Vec<ActivityEvent>) -> Overview {
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
        let live = world
            .observed
            .tasks
            .iter()
            .filter(|t| t.service_id == service.id && t.desired_state == "running");
        for task in live {
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
            hostname: if node.hostname.is_empty() {
                node.id.clone()
            } else {
                node.hostname.clone()
            },
            role: node.role,
            availability: node.availability,
            state: node.state.clone(),
            tasks: by_node.remove(node.id.as_str()).unwrap_or_default(),
        })
        .collect();
    // Tasks on a node the last node list did not have yet (it just joined): show it anyway.
    nodes.extend(by_node.into_iter().map(|(id, tasks)| NodeView {
        id: id.to_owned(),
        hostname: id.to_owned(),
        role: NodeRole::Unknown,
        availability: NodeAvailability::Unknown,
        state: "unknown".to_owned(),
        tasks,
    }));
    nodes.sort_by(|a, b| {
        (a.role != NodeRole::Manager, &a.hostname).cmp(&(b.role != NodeRole::Manager, &b.hostname))
    });
    for node in &mut nodes {
        node.tasks
            .sort_by(|a, b| (&a.service, a.slot).cmp(&(&b.service, b.slot)));
    }
    unassigned.sort_by(|a, b| (&a.service, a.slot).cmp(&(&b.service, b.slot)));
    Overview {
        instance: world.desired.instance.clone(),
        status,
        nodes,
        unassigned,
        activity,
    }
}

fn card(task: &ObservedTask, service: &str, image_tag: &str) -> TaskCard {
    TaskCard {
        task: task.id.clone(),
        service: service.to_owned(),
        slot: task.slot,
        state: task.state.clone(),
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
mod tests {
    use super::*;

    #[test]
    fn image_tags_are_read_like_docker_reads_them() {
        assert_eq!(image_tag("goblog/quote-service:dev"), "dev");
        assert_eq!(image_tag("busybox"), "latest");
        assert_eq!(image_tag("registry:5000/team/app"), "latest");
        assert_eq!(image_tag("registry:5000/team/app:1.2@sha256:abc"), "1.2");
    }
}
