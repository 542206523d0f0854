//! A [`SwarmApi`] decorator that counts every request by op and outcome, so write
//! amplification shows on a dashboard (`swarm_operator_docker_requests_total`).

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::{Stream, StreamExt};

use super::{
    DataOp, DockerError, ObservedNetwork, ObservedNode, ObservedService, ObservedTask, Op,
    RequestObserver, RequestOutcome, SwarmApi, SwarmEvent, data_op,
};
use crate::desired::data_objects::{DataKind, DesiredData, ObservedData};
use crate::desired::definition::{KnownDefinitions, NetworkDefinition, ServiceDefinition};

/// Wraps an API and reports each request to an observer.
#[derive(Clone)]
pub struct Metered<A> {
    inner: A,
    observer: Arc<dyn RequestObserver>,
}

impl<A> Metered<A> {
    /// Counts `inner`'s requests into `observer`.
    pub fn new(inner: A, observer: Arc<dyn RequestObserver>) -> Self {
        Metered { inner, observer }
    }

    fn count<T>(&self, op: Op, result: Result<T, DockerError>) -> Result<T, DockerError> {
        self.observer.on_request(op, RequestOutcome::of(&result));
        result
    }
}

impl<A: SwarmApi> SwarmApi for Metered<A> {
    async fn ensure_manager(&self) -> Result<(), DockerError> {
        let result = self.inner.ensure_manager().await;
        self.count(Op::Info, result)
    }

    fn events(&self) -> impl Stream<Item = Result<SwarmEvent, DockerError>> + Send + 'static {
        let observer = self.observer.clone();
        let mut first = true;
        // One request per connection: counted when the first item (or the end) arrives.
        self.inner.events().inspect(move |item| {
            if std::mem::take(&mut first) {
                observer.on_request(Op::Events, RequestOutcome::of(item));
            }
        })
    }

    async fn list_services(&self) -> Result<Vec<ObservedService>, DockerError> {
        let result = self.inner.list_services().await;
        self.count(Op::ListServices, result)
    }

    async fn list_services_sharing(
        &self,
        known: KnownDefinitions<'_>,
    ) -> Result<Vec<ObservedService>, DockerError> {
        let result = self.inner.list_services_sharing(known).await;
        self.count(Op::ListServices, result)
    }

    async fn list_networks(&self) -> Result<Vec<ObservedNetwork>, DockerError> {
        let result = self.inner.list_networks().await;
        self.count(Op::ListNetworks, result)
    }

    async fn list_tasks(&self) -> Result<Vec<ObservedTask>, DockerError> {
        let result = self.inner.list_tasks().await;
        self.count(Op::ListTasks, result)
    }

    async fn list_nodes(&self) -> Result<Vec<ObservedNode>, DockerError> {
        let result = self.inner.list_nodes().await;
        self.count(Op::ListNodes, result)
    }

    async fn inspect_service(&self, name: &str) -> Result<Option<ObservedService>, DockerError> {
        let result = self.inner.inspect_service(name).await;
        let outcome = match &result {
            Ok(None) => RequestOutcome::NotFound,
            other => RequestOutcome::of(other),
        };
        self.observer.on_request(Op::InspectService, outcome);
        result
    }

    async fn inspect_network(&self, name: &str) -> Result<Option<ObservedNetwork>, DockerError> {
        let result = self.inner.inspect_network(name).await;
        let outcome = match &result {
            Ok(None) => RequestOutcome::NotFound,
            other => RequestOutcome::of(other),
        };
        self.observer.on_request(Op::InspectNetwork, outcome);
        result
    }

    async fn create_network(
        &self,
        definition: &NetworkDefinition,
        owner_labels: &BTreeMap<String, String>,
    ) -> Result<ObservedNetwork, DockerError> {
        let result = self.inner.create_network(definition, owner_labels).await;
        self.count(Op::CreateNetwork, result)
    }

    async fn remove_network(&self, id: &str) -> Result<(), DockerError> {
        let result = self.inner.remove_network(id).await;
        self.count(Op::RemoveNetwork, result)
    }

    async fn create_service(
        &self,
        definition: &ServiceDefinition,
        owner_labels: &BTreeMap<String, String>,
    ) -> Result<String, DockerError> {
        let result = self.inner.create_service(definition, owner_labels).await;
        self.count(Op::CreateService, result)
    }

    async fn update_service(
        &self,
        id: &str,
        version: u64,
        definition: &ServiceDefinition,
        owner_labels: &BTreeMap<String, String>,
    ) -> Result<(), DockerError> {
        let result = self
            .inner
            .update_service(id, version, definition, owner_labels)
            .await;
        self.count(Op::UpdateService, result)
    }

    async fn remove_service(&self, id: &str) -> Result<(), DockerError> {
        let result = self.inner.remove_service(id).await;
        self.count(Op::RemoveService, result)
    }

    async fn list_data(&self, kind: DataKind) -> Result<Vec<ObservedData>, DockerError> {
        let result = self.inner.list_data(kind).await;
        self.count(data_op(kind, DataOp::List), result)
    }

    async fn create_data(
        &self,
        data: &DesiredData,
        labels: &BTreeMap<String, String>,
    ) -> Result<String, DockerError> {
        let result = self.inner.create_data(data, labels).await;
        self.count(data_op(data.kind, DataOp::Create), result)
    }

    async fn remove_data(&self, kind: DataKind, id: &str) -> Result<(), DockerError> {
        let result = self.inner.remove_data(kind, id).await;
        self.count(data_op(kind, DataOp::Remove), result)
    }
}
