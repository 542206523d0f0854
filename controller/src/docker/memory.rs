//! An in-memory swarm for deterministic tests of the reconcile step, the reflector and the
//! whole loop: versioned services, networks, events, and knobs to delay and reorder answers,
//! inject failures, restart the event stream, and act as another client.
//!
//! Answers are computed when a request arrives and delivered after the configured latency
//! (tokio time, so paused-time tests are exact): a slow list therefore races the writes made
//! meanwhile, as on a busy manager.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use tokio::sync::broadcast;

use super::{
    DockerError, EventAction, ObservedNetwork, ObservedNode, ObservedService, ObservedTask, Op,
    Ownership, Resource, SwarmApi, SwarmEvent,
};
use crate::desired::data_objects::{DataKind, DesiredData, ObservedData};
use crate::desired::definition::{NetworkDefinition, ServiceDefinition};

/// A failure to inject: requests of `op` (about `name`, if given) fail `times` times (or
/// always) with the error `make` builds from the object's name.
pub(crate) struct FailRule {
    pub op: Op,
    pub name: Option<String>,
    pub times: Option<usize>,
    pub make: fn(&str) -> DockerError,
}

#[derive(Default)]
struct State {
    /// The raft-like index: every write bumps it, and a service's version is the index of
    /// its last write.
    index: u64,
    services: BTreeMap<String, ObservedService>,
    networks: BTreeMap<String, ObservedNetwork>,
    tasks: Vec<ObservedTask>,
    nodes: Vec<ObservedNode>,
    /// Every request, in arrival order.
    calls: Vec<(Op, String)>,
    latency: BTreeMap<Op, Duration>,
    failures: Vec<FailRule>,
    next_id: u64,
    /// Events of the write being answered: sent when the write happens, before its answer
    /// arrives (as the engine does).
    pending_events: Vec<SwarmEvent>,
    /// Each service's spec before the operator's last update: what a rollback restores.
    previous: BTreeMap<String, ObservedService>,
    /// Alters what an update stores, to imitate an engine that normalizes a field otherwise
    /// than the operator compares it.
    mangle: Option<fn(&mut ServiceDefinition)>,
    /// Configs and secrets: names and labels (the content is never read back).
    data: Vec<ObservedData>,
    /// The time written as a service's `UpdatedAt`.
    clock: crate::control::schedule::Clock,
}

/// The in-memory swarm; clones share it.
#[derive(Clone)]
pub(crate) struct MemorySwarm {
    state: Arc<Mutex<State>>,
    events: Arc<Mutex<broadcast::Sender<SwarmEvent>>>,
}

impl Default for MemorySwarm {
    fn default() -> Self {
        MemorySwarm {
            state: Arc::default(),
            events: Arc::new(Mutex::new(broadcast::channel(65_536).0)),
        }
    }
}

fn ingress_ports(definition: &ServiceDefinition) -> impl Iterator<Item = u16> + '_ {
    definition
        .ports
        .iter()
        .filter(|p| p.mode != crate::spec::PublishMode::Host)
        .filter_map(|p| p.published)
}

impl MemorySwarm {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("memory swarm lock poisoned")
    }

    fn emit(&self, event: SwarmEvent) {
        let _ = self.events.lock().expect("events lock").send(event);
    }

    /// Answers of `op` arrive `latency` after the request (computed at arrival).
    pub(crate) fn set_latency(&self, op: Op, latency: Duration) {
        self.state().latency.insert(op, latency);
    }

    /// Updates store their definition altered by `mangle`.
    pub(crate) fn mangle_updates(&self, mangle: fn(&mut ServiceDefinition)) {
        self.state().mangle = Some(mangle);
    }

    /// Reads `UpdatedAt` times from `clock` (a test's paused one).
    pub(crate) fn set_clock(&self, clock: crate::control::schedule::Clock) {
        self.state().clock = clock;
    }

    /// Injects a failure.
    pub(crate) fn fail(&self, rule: FailRule) {
        self.state().failures.push(rule);
    }

    /// Ends every open event stream, as a daemon restart does.
    pub(crate) fn restart_events(&self) {
        *self.events.lock().expect("events lock") = broadcast::channel(65_536).0;
    }

    /// Every request so far.
    pub(crate) fn calls(&self) -> Vec<(Op, String)> {
        self.state().calls.clone()
    }

    /// How many requests of `op` were made.
    pub(crate) fn count(&self, op: Op) -> usize {
        self.state().calls.iter().filter(|(o, _)| *o == op).count()
    }

    /// How many write requests were made.
    pub(crate) fn writes(&self) -> usize {
        self.state()
            .calls
            .iter()
            .filter(|(o, _)| o.is_write())
            .count()
    }

    /// Replaces the tasks the swarm reports (swarm schedules them; the in-memory one does not).
    pub(crate) fn set_tasks(&self, tasks: Vec<ObservedTask>) {
        self.state().tasks = tasks;
    }

    /// The services as stored.
    pub(crate) fn services(&self) -> BTreeMap<String, ObservedService> {
        self.state().services.clone()
    }

    /// The networks as stored.
    pub(crate) fn networks(&self) -> BTreeMap<String, ObservedNetwork> {
        self.state().networks.clone()
    }

    /// Another client creates a service (no operator labels unless given).
    pub(crate) fn external_create_service(
        &self,
        definition: ServiceDefinition,
        labels: &BTreeMap<String, String>,
    ) -> String {
        let (id, name) = {
            let mut state = self.state();
            let id = store_service(&mut state, None, definition, labels);
            (
                id.clone(),
                state
                    .services
                    .values()
                    .find(|s| s.id == id)
                    .map(|s| s.definition.name.clone())
                    .unwrap_or_default(),
            )
        };
        self.emit(SwarmEvent::Service {
            id: id.clone(),
            name,
            action: EventAction::Create,
        });
        id
    }

    /// Another client changes a service (keeping its labels).
    pub(crate) fn external_update_service(
        &self,
        name: &str,
        change: impl FnOnce(&mut ServiceDefinition),
    ) {
        let id = {
            let mut state = self.state();
            let Some(current) = state.services.get(name).cloned() else {
                return;
            };
            let mut definition = (*current.definition).clone();
            change(&mut definition);
            let labels = current.ownership.to_labels();
            store_service(&mut state, Some(current.id), definition, &labels)
        };
        self.emit(SwarmEvent::Service {
            id,
            name: name.to_owned(),
            action: EventAction::Update,
        });
    }

    /// Swarm starts rolling the service's last update back (its `failureAction: rollback`):
    /// the spec before the operator's last update is restored, and `UpdateStatus` says
    /// `rollback_started`; [`MemorySwarm::set_update_state`] ends it.
    pub(crate) fn roll_back(&self, name: &str, message: &str) {
        let id = {
            let mut state = self.state();
            let Some(previous) = state.previous.remove(name) else {
                return;
            };
            let labels = previous.ownership.to_labels();
            let id = store_service(
                &mut state,
                Some(previous.id),
                Arc::unwrap_or_clone(previous.definition),
                &labels,
            );
            if let Some(service) = state.services.get_mut(name) {
                service.update_status = Some(Box::new(super::UpdateStatus {
                    state: super::UpdateState::ROLLBACK_STARTED,
                    message: message.to_owned(),
                    started_at: None,
                }));
            }
            id
        };
        self.emit(SwarmEvent::Service {
            id,
            name: name.to_owned(),
            action: EventAction::Update,
        });
    }

    /// Swarm moves the service's update to `update_state` (e.g. a rollback completes, an
    /// update pauses): a new version, the spec unchanged.
    pub(crate) fn set_update_state(&self, name: &str, update_state: super::UpdateState) {
        let id = {
            let mut state = self.state();
            state.index += 1;
            let index = state.index;
            let Some(service) = state.services.get_mut(name) else {
                return;
            };
            service.version = index;
            service
                .update_status
                .get_or_insert_with(|| {
                    Box::new(super::UpdateStatus {
                        state: update_state,
                        message: format!("update {update_state}"),
                        started_at: None,
                    })
                })
                .state = update_state;
            service.id.clone()
        };
        self.emit(SwarmEvent::Service {
            id,
            name: name.to_owned(),
            action: EventAction::Update,
        });
    }

    /// Another client removes a service.
    pub(crate) fn external_remove_service(&self, name: &str) {
        let removed = self.state().services.remove(name);
        if let Some(service) = removed {
            self.state().index += 1;
            self.emit(SwarmEvent::Service {
                id: service.id,
                name: name.to_owned(),
                action: EventAction::Remove,
            });
        }
    }

    /// Another client creates a network.
    pub(crate) fn external_create_network(&self, definition: NetworkDefinition) -> String {
        self.external_create_network_with_labels(definition, &BTreeMap::new())
    }

    /// Another client (or an earlier operator) creates a network with these labels.
    pub(crate) fn external_create_network_with_labels(
        &self,
        definition: NetworkDefinition,
        labels: &BTreeMap<String, String>,
    ) -> String {
        let network = {
            let mut state = self.state();
            state.next_id += 1;
            let network = ObservedNetwork {
                id: format!("net{}", state.next_id),
                scope: "swarm".into(),
                definition,
                ownership: Ownership::from_labels(labels),
            };
            state
                .networks
                .insert(network.definition.name.clone(), network.clone());
            network
        };
        self.emit(SwarmEvent::Network {
            id: network.id.clone(),
            name: network.definition.name.clone(),
            action: EventAction::Create,
        });
        network.id
    }

    /// Another client removes a network.
    pub(crate) fn external_remove_network(&self, name: &str) {
        let removed = self.state().networks.remove(name);
        if let Some(network) = removed {
            self.emit(SwarmEvent::Network {
                id: network.id,
                name: name.to_owned(),
                action: EventAction::Remove,
            });
        }
    }

    /// Adds a config or secret, as another client (or `apply`) would.
    pub(crate) fn external_create_data(
        &self,
        kind: DataKind,
        name: &str,
        labels: BTreeMap<String, String>,
    ) {
        let mut state = self.state();
        state.next_id += 1;
        state.index += 1;
        let id = format!("data{}", state.next_id);
        state.data.push(ObservedData {
            kind,
            id: id.clone(),
            name: name.to_owned(),
            labels,
        });
        drop(state);
        self.emit(SwarmEvent::Data {
            kind,
            id,
            name: name.to_owned(),
            action: EventAction::Create,
        });
    }

    /// The names of the configs or secrets.
    pub(crate) fn data_names(&self, kind: DataKind) -> Vec<String> {
        let state = self.state();
        state
            .data
            .iter()
            .filter(|d| d.kind == kind)
            .map(|d| d.name.clone())
            .collect()
    }

    /// Records the request, applies injected failures and returns the answer's latency.
    fn arrive(&self, op: Op, name: &str) -> Result<Duration, DockerError> {
        let mut state = self.state();
        state.calls.push((op, name.to_owned()));
        let latency = state.latency.get(&op).copied().unwrap_or_default();
        let rule = state.failures.iter_mut().find(|rule| {
            rule.op == op && rule.name.as_deref().is_none_or(|n| n == name) && rule.times != Some(0)
        });
        if let Some(rule) = rule {
            if let Some(times) = rule.times.as_mut() {
                *times -= 1;
            }
            return Err((rule.make)(name));
        }
        Ok(latency)
    }

    async fn answer<T>(
        &self,
        op: Op,
        name: &str,
        compute: impl FnOnce(&mut State) -> Result<T, DockerError>,
    ) -> Result<T, DockerError> {
        let latency = match self.arrive(op, name) {
            Ok(latency) => latency,
            Err(error) => return Err(error),
        };
        let (answer, events) = {
            let mut state = self.state();
            let answer = compute(&mut state);
            (answer, std::mem::take(&mut state.pending_events))
        };
        for event in events {
            self.emit(event);
        }
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        answer
    }
}

/// Stores a service (new when `id` is `None`) at a new index; returns its id.
fn store_service(
    state: &mut State,
    id: Option<String>,
    definition: ServiceDefinition,
    labels: &BTreeMap<String, String>,
) -> String {
    state.index += 1;
    let id = id.unwrap_or_else(|| {
        state.next_id += 1;
        format!("svc{}", state.next_id)
    });
    let service = ObservedService {
        id: id.clone(),
        version: state.index,
        ownership: Ownership::from_labels(labels),
        definition: definition.into(),
        virtual_ips: Vec::new(),
        update_status: None,
        revision: crate::docker::ServiceRevision {
            updated_at: Some(state.clock.now().to_rfc3339()),
            ..Default::default()
        },
    };
    state
        .services
        .insert(service.definition.name.clone(), service);
    id
}

/// The swarm names of the configs or secrets of one kind that `definition` references.
fn mounts(definition: &ServiceDefinition, kind: DataKind) -> impl Iterator<Item = String> {
    definition.data_names(kind).into_iter()
}

fn data_resource(kind: DataKind) -> Resource {
    match kind {
        DataKind::Config => Resource::Config,
        DataKind::Secret => Resource::Secret,
    }
}

/// As the engine: a service that mounts a config or secret that does not exist is refused.
fn missing_data(state: &State, definition: &ServiceDefinition) -> Result<(), DockerError> {
    for kind in [DataKind::Config, DataKind::Secret] {
        for mount in mounts(definition, kind) {
            if !state.data.iter().any(|d| d.kind == kind && d.name == mount) {
                return Err(DockerError::NotFound {
                    kind: data_resource(kind),
                    name: mount,
                });
            }
        }
    }
    Ok(())
}

fn port_holder(state: &State, definition: &ServiceDefinition) -> Option<(u16, String)> {
    ingress_ports(definition).find_map(|port| {
        state
            .services
            .values()
            .filter(|s| s.definition.name != definition.name)
            .find(|s| ingress_ports(&s.definition).any(|p| p == port))
            .map(|s| (port, s.definition.name.clone()))
    })
}

impl SwarmApi for MemorySwarm {
    async fn ensure_manager(&self) -> Result<(), DockerError> {
        self.answer(Op::Info, "", |_| Ok(())).await
    }

    fn events(&self) -> impl Stream<Item = Result<SwarmEvent, DockerError>> + Send + 'static {
        self.state().calls.push((Op::Events, String::new()));
        let rx = self.events.lock().expect("events lock").subscribe();
        futures_util::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(event) => return Some((Ok(event), rx)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
        .boxed()
    }

    async fn list_services(&self) -> Result<Vec<ObservedService>, DockerError> {
        self.answer(Op::ListServices, "", |s| {
            Ok(s.services.values().cloned().collect())
        })
        .await
    }

    async fn list_networks(&self) -> Result<Vec<ObservedNetwork>, DockerError> {
        self.answer(Op::ListNetworks, "", |s| {
            Ok(s.networks.values().cloned().collect())
        })
        .await
    }

    async fn list_tasks(&self) -> Result<Vec<ObservedTask>, DockerError> {
        self.answer(Op::ListTasks, "", |s| Ok(s.tasks.clone()))
            .await
    }

    async fn list_nodes(&self) -> Result<Vec<ObservedNode>, DockerError> {
        self.answer(Op::ListNodes, "", |s| Ok(s.nodes.clone()))
            .await
    }

    async fn inspect_service(&self, name: &str) -> Result<Option<ObservedService>, DockerError> {
        self.answer(Op::InspectService, name, |s| {
            Ok(s.services
                .get(name)
                .or_else(|| s.services.values().find(|x| x.id == name))
                .cloned())
        })
        .await
    }

    async fn inspect_network(&self, name: &str) -> Result<Option<ObservedNetwork>, DockerError> {
        self.answer(Op::InspectNetwork, name, |s| {
            Ok(s.networks
                .get(name)
                .or_else(|| s.networks.values().find(|x| x.id == name))
                .cloned())
        })
        .await
    }

    async fn create_network(
        &self,
        definition: &NetworkDefinition,
        owner_labels: &BTreeMap<String, String>,
    ) -> Result<ObservedNetwork, DockerError> {
        self.answer(Op::CreateNetwork, &definition.name, |s| {
            if s.networks.contains_key(&definition.name) {
                return Err(DockerError::AlreadyExists {
                    kind: Resource::Network,
                    name: definition.name.clone(),
                });
            }
            s.index += 1;
            s.next_id += 1;
            let network = ObservedNetwork {
                id: format!("net{}", s.next_id),
                scope: "swarm".into(),
                definition: definition.clone(),
                ownership: Ownership::from_labels(owner_labels),
            };
            s.networks.insert(definition.name.clone(), network.clone());
            s.pending_events.push(SwarmEvent::Network {
                id: network.id.clone(),
                name: network.definition.name.clone(),
                action: EventAction::Create,
            });
            Ok(network)
        })
        .await
    }

    async fn remove_network(&self, id: &str) -> Result<(), DockerError> {
        self.answer(Op::RemoveNetwork, id, |s| {
            let Some(name) = s
                .networks
                .values()
                .find(|n| n.id == id)
                .map(|n| n.definition.name.clone())
            else {
                return Err(DockerError::NotFound {
                    kind: Resource::Network,
                    name: id.to_owned(),
                });
            };
            let users: Vec<String> = s
                .services
                .values()
                .filter(|svc| svc.definition.networks.contains(&name))
                .map(|svc| svc.id.clone())
                .collect();
            if !users.is_empty() {
                return Err(DockerError::InUse {
                    name: id.to_owned(),
                    users,
                });
            }
            s.index += 1;
            s.networks.remove(&name);
            s.pending_events.push(SwarmEvent::Network {
                id: id.to_owned(),
                name,
                action: EventAction::Remove,
            });
            Ok(())
        })
        .await
    }

    async fn create_service(
        &self,
        definition: &ServiceDefinition,
        owner_labels: &BTreeMap<String, String>,
    ) -> Result<String, DockerError> {
        self.answer(Op::CreateService, &definition.name, |s| {
            if s.services.contains_key(&definition.name) {
                return Err(DockerError::AlreadyExists {
                    kind: Resource::Service,
                    name: definition.name.clone(),
                });
            }
            if let Some((port, holder)) = port_holder(s, definition) {
                return Err(DockerError::PortConflict {
                    name: definition.name.clone(),
                    port,
                    holder,
                });
            }
            missing_data(s, definition)?;
            let id = store_service(s, None, definition.clone(), owner_labels);
            s.pending_events.push(SwarmEvent::Service {
                id: id.clone(),
                name: definition.name.clone(),
                action: EventAction::Create,
            });
            Ok(id)
        })
        .await
    }

    async fn update_service(
        &self,
        id: &str,
        version: u64,
        definition: &ServiceDefinition,
        owner_labels: &BTreeMap<String, String>,
    ) -> Result<(), DockerError> {
        self.answer(Op::UpdateService, &definition.name, |s| {
            let Some(current) = s.services.values().find(|x| x.id == id) else {
                return Err(DockerError::NotFound {
                    kind: Resource::Service,
                    name: id.to_owned(),
                });
            };
            if current.version != version {
                return Err(DockerError::OutOfSequence {
                    name: definition.name.clone(),
                });
            }
            let before = current.clone();
            missing_data(s, definition)?;
            s.previous.insert(definition.name.clone(), before.clone());
            let mut stored = definition.clone();
            if let Some(mangle) = s.mangle {
                mangle(&mut stored);
            }
            store_service(s, Some(id.to_owned()), stored, owner_labels);
            if let Some(service) = s.services.get_mut(&definition.name) {
                service.revision.previous_mounts = [DataKind::Config, DataKind::Secret]
                    .into_iter()
                    .flat_map(|kind| mounts(&before.definition, kind))
                    .collect();
            }
            s.pending_events.push(SwarmEvent::Service {
                id: id.to_owned(),
                name: definition.name.clone(),
                action: EventAction::Update,
            });
            Ok(())
        })
        .await
    }

    async fn list_data(&self, kind: DataKind) -> Result<Vec<ObservedData>, DockerError> {
        let op = super::data_op(kind, super::DataOp::List);
        self.answer(op, "", |s| {
            Ok(s.data.iter().filter(|d| d.kind == kind).cloned().collect())
        })
        .await
    }

    async fn create_data(
        &self,
        data: &DesiredData,
        labels: &BTreeMap<String, String>,
    ) -> Result<String, DockerError> {
        let op = super::data_op(data.kind, super::DataOp::Create);
        self.answer(op, &data.name, |s| {
            let resource = match data.kind {
                DataKind::Config => Resource::Config,
                DataKind::Secret => Resource::Secret,
            };
            if s.data
                .iter()
                .any(|d| d.kind == data.kind && d.name == data.name)
            {
                return Err(DockerError::AlreadyExists {
                    kind: resource,
                    name: data.name.clone(),
                });
            }
            s.next_id += 1;
            s.index += 1;
            let id = format!("data{}", s.next_id);
            s.data.push(ObservedData {
                kind: data.kind,
                id: id.clone(),
                name: data.name.clone(),
                labels: labels.clone(),
            });
            s.pending_events.push(SwarmEvent::Data {
                kind: data.kind,
                id: id.clone(),
                name: data.name.clone(),
                action: EventAction::Create,
            });
            Ok(id)
        })
        .await
    }

    async fn remove_data(&self, kind: DataKind, id: &str) -> Result<(), DockerError> {
        let op = super::data_op(kind, super::DataOp::Remove);
        self.answer(op, id, |s| {
            let Some(at) = s.data.iter().position(|d| d.kind == kind && d.id == id) else {
                return Err(DockerError::NotFound {
                    kind: data_resource(kind),
                    name: id.to_owned(),
                });
            };
            // As the engine: a version a service mounts can not be removed.
            let name = s.data[at].name.clone();
            if s.services
                .values()
                .any(|svc| mounts(&svc.definition, kind).any(|m| m == name))
            {
                return Err(DockerError::Refused {
                    op: super::data_op(kind, super::DataOp::Remove),
                    status: 400,
                    message: format!("{kind} {name:?} is in use by a service"),
                });
            }
            s.index += 1;
            s.data.remove(at);
            s.pending_events.push(SwarmEvent::Data {
                kind,
                id: id.to_owned(),
                name,
                action: EventAction::Remove,
            });
            Ok(())
        })
        .await
    }

    async fn remove_service(&self, id: &str) -> Result<(), DockerError> {
        self.answer(Op::RemoveService, id, |s| {
            let Some(name) = s
                .services
                .values()
                .find(|x| x.id == id)
                .map(|x| x.definition.name.clone())
            else {
                return Err(DockerError::NotFound {
                    kind: Resource::Service,
                    name: id.to_owned(),
                });
            };
            s.index += 1;
            s.services.remove(&name);
            s.pending_events.push(SwarmEvent::Service {
                id: id.to_owned(),
                name,
                action: EventAction::Remove,
            });
            Ok(())
        })
        .await
    }
}
