//! The `SwarmApi` trait: one method per Engine API request the operator makes, so that every
//! request is counted; the engine and the in-memory swarm implement it.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use futures_util::Stream;

use super::error::DockerError;
use super::model::{
    Observed, ObservedNetwork, ObservedNode, ObservedService, ObservedTask, SwarmEvent,
};
use super::request::{DataOp, data_op};
use crate::desired::data_objects::{DataKind, DesiredData, ObservedData};
use crate::desired::definition::{KnownDefinitions, NetworkDefinition, ServiceDefinition};

/// The operations the operator needs from a swarm: one method per Engine API request, so
/// that every request can be counted. [`DockerEngine`](super::DockerEngine) implements them
/// over the Docker Engine API; tests use an in-memory swarm.
pub trait SwarmApi: Send + Sync + 'static {
    /// The negotiated Engine API version, when known: spec fields it does not know are
    /// refused at validation. `None` (the default, for engines that are not a real daemon)
    /// skips that check.
    fn engine_api_version(&self) -> Option<crate::spec::EngineApiVersion> {
        None
    }

    /// Fails with [`DockerError::NotAManager`] unless the engine manages a swarm.
    fn ensure_manager(&self) -> impl Future<Output = Result<(), DockerError>> + Send;

    /// Service, network, config, secret and node events from now on. The stream ends when the
    /// engine closes it; the caller reconnects and lists again (events may have been missed).
    fn events(&self) -> impl Stream<Item = Result<SwarmEvent, DockerError>> + Send + 'static;

    /// Lists every service.
    fn list_services(
        &self,
    ) -> impl Future<Output = Result<Vec<ObservedService>, DockerError>> + Send;

    /// Lists every service like [`SwarmApi::list_services`], each listed definition replaced by
    /// the equal one `known` holds, if any. The engine does it as each service is decoded: a
    /// relist's copies are then freed one by one amid the answer, instead of all at once after
    /// it, when what the view keeps from the list (ids, timestamps) lies between them and holds
    /// their pages (6 MB more resident at 5,000 services after the first resync).
    fn list_services_sharing(
        &self,
        known: KnownDefinitions<'_>,
    ) -> impl Future<Output = Result<Vec<ObservedService>, DockerError>> + Send {
        async move {
            let services = self.list_services().await?;
            Ok(services.into_iter().map(|s| s.sharing(known)).collect())
        }
    }

    /// Lists every network (swarm-scoped and local ones, so references to existing networks
    /// resolve).
    fn list_networks(
        &self,
    ) -> impl Future<Output = Result<Vec<ObservedNetwork>, DockerError>> + Send;

    /// Lists every task (swarm has no task events, so they are polled).
    fn list_tasks(&self) -> impl Future<Output = Result<Vec<ObservedTask>, DockerError>> + Send;

    /// Lists the swarm's nodes.
    fn list_nodes(&self) -> impl Future<Output = Result<Vec<ObservedNode>, DockerError>> + Send;

    /// Reads one service by name or id; `None` if it does not exist.
    fn inspect_service(
        &self,
        name_or_id: &str,
    ) -> impl Future<Output = Result<Option<ObservedService>, DockerError>> + Send;

    /// Reads one network by name or id; `None` if it does not exist.
    fn inspect_network(
        &self,
        name_or_id: &str,
    ) -> impl Future<Output = Result<Option<ObservedNetwork>, DockerError>> + Send;

    /// Creates a network with the given operator labels; returns what was created.
    fn create_network(
        &self,
        definition: &NetworkDefinition,
        owner_labels: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<ObservedNetwork, DockerError>> + Send;

    /// Removes a network by id.
    fn remove_network(&self, id: &str) -> impl Future<Output = Result<(), DockerError>> + Send;

    /// Creates a service with the given operator labels; returns its id.
    fn create_service(
        &self,
        definition: &ServiceDefinition,
        owner_labels: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<String, DockerError>> + Send;

    /// Replaces a service's spec, based on `version` (compare-and-swap: a stale version fails
    /// with [`DockerError::OutOfSequence`]; the caller re-reads and plans again).
    fn update_service(
        &self,
        id: &str,
        version: u64,
        definition: &ServiceDefinition,
        owner_labels: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<(), DockerError>> + Send;

    /// Removes a service by id.
    fn remove_service(&self, id: &str) -> impl Future<Output = Result<(), DockerError>> + Send;

    /// Lists the configs or the secrets: names and labels, never contents. The default is an
    /// API without configs and secrets (the in-memory test swarm).
    fn list_data(
        &self,
        kind: DataKind,
    ) -> impl Future<Output = Result<Vec<ObservedData>, DockerError>> + Send {
        let _ = kind;
        async { Ok(Vec::new()) }
    }

    /// Creates a config or secret; returns its id.
    fn create_data(
        &self,
        data: &DesiredData,
        labels: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<String, DockerError>> + Send {
        let (kind, name) = (data.kind, data.name.clone());
        let _ = labels;
        async move {
            Err(DockerError::Refused {
                op: data_op(kind, DataOp::Create),
                status: 501,
                message: format!("{kind} {name:?}: this swarm API has no configs and secrets"),
            })
        }
    }

    /// Removes a config or secret by id.
    fn remove_data(
        &self,
        kind: DataKind,
        id: &str,
    ) -> impl Future<Output = Result<(), DockerError>> + Send {
        let id = id.to_owned();
        async move {
            Err(DockerError::Refused {
                op: data_op(kind, DataOp::Remove),
                status: 501,
                message: format!("{kind} {id:?}: this swarm API has no configs and secrets"),
            })
        }
    }

    /// Lists the whole swarm: six list calls, never one per object. Networks first, since
    /// services name them by id.
    fn observe(&self) -> impl Future<Output = Result<Observed, DockerError>> + Send {
        async move {
            let networks = self.list_networks().await?;
            let (services, tasks, nodes, configs, secrets) = tokio::try_join!(
                self.list_services(),
                self.list_tasks(),
                self.list_nodes(),
                self.list_data(DataKind::Config),
                self.list_data(DataKind::Secret)
            )?;
            let by_name = |list: Vec<ObservedData>| -> BTreeMap<String, ObservedData> {
                list.into_iter().map(|d| (d.name.clone(), d)).collect()
            };
            Ok(Observed {
                services: services
                    .into_iter()
                    .map(|s| (s.definition.name.clone(), Arc::new(s)))
                    .collect(),
                networks: networks
                    .into_iter()
                    .map(|n| (n.definition.name.clone(), n))
                    .collect(),
                tasks: Arc::new(tasks),
                nodes: nodes.into_iter().map(|n| (n.id.clone(), n)).collect(),
                configs: by_name(configs),
                secrets: by_name(secrets),
            })
        }
    }
}
