//! A [`SwarmApi`] decorator that lets a write through only while this replica may write.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::Stream;

use super::Leadership;
use crate::desired::data_objects::{DataKind, DesiredData, ObservedData};
use crate::desired::definition::{KnownDefinitions, NetworkDefinition, ServiceDefinition};
use crate::docker::{
    DataOp, DockerError, ObservedNetwork, ObservedNode, ObservedService, ObservedTask, Op,
    SwarmApi, SwarmEvent, data_op,
};

/// Checks [`Leadership::may_write`] immediately before every write and refuses the write with
/// [`DockerError::NotLeader`] (never sending it) once the lease is lost or about to lapse.
/// Checking only at the start of a reconcile is not enough: a reconcile reads between its
/// plan and its writes, and a replica paused or cut off there would write as an ex-leader.
/// Reads pass through: followers keep their view warm.
pub struct LeaderGate<A> {
    inner: Arc<A>,
    leadership: Leadership,
}

impl<A> LeaderGate<A> {
    /// Gates `inner`'s writes on `leadership`.
    pub fn new(inner: Arc<A>, leadership: Leadership) -> Self {
        LeaderGate { inner, leadership }
    }

    fn check(&self, op: Op) -> Result<(), DockerError> {
        if self.leadership.may_write() {
            Ok(())
        } else {
            Err(DockerError::NotLeader { op })
        }
    }
}

impl<A: SwarmApi> SwarmApi for LeaderGate<A> {
    fn engine_api_version(&self) -> Option<crate::spec::EngineApiVersion> {
        self.inner.engine_api_version()
    }

    async fn ensure_manager(&self) -> Result<(), DockerError> {
        self.inner.ensure_manager().await
    }

    fn events(&self) -> impl Stream<Item = Result<SwarmEvent, DockerError>> + Send + 'static {
        self.inner.events()
    }

    async fn list_services(&self) -> Result<Vec<ObservedService>, DockerError> {
        self.inner.list_services().await
    }

    async fn list_services_sharing(
        &self,
        known: KnownDefinitions<'_>,
    ) -> Result<Vec<ObservedService>, DockerError> {
        self.inner.list_services_sharing(known).await
    }

    async fn list_networks(&self) -> Result<Vec<ObservedNetwork>, DockerError> {
        self.inner.list_networks().await
    }

    async fn list_tasks(&self) -> Result<Vec<ObservedTask>, DockerError> {
        self.inner.list_tasks().await
    }

    async fn list_nodes(&self) -> Result<Vec<ObservedNode>, DockerError> {
        self.inner.list_nodes().await
    }

    async fn inspect_service(&self, name: &str) -> Result<Option<ObservedService>, DockerError> {
        self.inner.inspect_service(name).await
    }

    async fn inspect_network(&self, name: &str) -> Result<Option<ObservedNetwork>, DockerError> {
        self.inner.inspect_network(name).await
    }

    async fn create_network(
        &self,
        definition: &NetworkDefinition,
        owner_labels: &BTreeMap<String, String>,
    ) -> Result<ObservedNetwork, DockerError> {
        self.check(Op::CreateNetwork)?;
        self.inner.create_network(definition, owner_labels).await
    }

    async fn remove_network(&self, id: &str) -> Result<(), DockerError> {
        self.check(Op::RemoveNetwork)?;
        self.inner.remove_network(id).await
    }

    async fn create_service(
        &self,
        definition: &ServiceDefinition,
        owner_labels: &BTreeMap<String, String>,
    ) -> Result<String, DockerError> {
        self.check(Op::CreateService)?;
        self.inner.create_service(definition, owner_labels).await
    }

    async fn update_service(
        &self,
        id: &str,
        version: u64,
        definition: &ServiceDefinition,
        owner_labels: &BTreeMap<String, String>,
    ) -> Result<(), DockerError> {
        self.check(Op::UpdateService)?;
        self.inner
            .update_service(id, version, definition, owner_labels)
            .await
    }

    async fn remove_service(&self, id: &str) -> Result<(), DockerError> {
        self.check(Op::RemoveService)?;
        self.inner.remove_service(id).await
    }

    async fn list_data(&self, kind: DataKind) -> Result<Vec<ObservedData>, DockerError> {
        self.inner.list_data(kind).await
    }

    async fn create_data(
        &self,
        data: &DesiredData,
        labels: &BTreeMap<String, String>,
    ) -> Result<String, DockerError> {
        self.check(data_op(data.kind, DataOp::Create))?;
        self.inner.create_data(data, labels).await
    }

    async fn remove_data(&self, kind: DataKind, id: &str) -> Result<(), DockerError> {
        self.check(data_op(kind, DataOp::Remove))?;
        self.inner.remove_data(kind, id).await
    }
}
