//! The Engine API requests the operator makes, as the labels of its request metrics: the
//! operation, the kind of object, how it ended, and who counts them.

use std::fmt;

use super::error::DockerError;
use crate::desired::data_objects::DataKind;

/// The kind of swarm object an error or an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    /// A swarm service.
    Service,
    /// A network.
    Network,
    /// A swarm config.
    Config,
    /// A swarm secret.
    Secret,
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Resource::Service => "service",
            Resource::Network => "network",
            Resource::Config => "config",
            Resource::Secret => "secret",
        })
    }
}

/// One kind of Engine API request the operator makes: the `op` label of
/// `swarm_operator_docker_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// `GET /info`.
    Info,
    /// `GET /events` (one per connection).
    Events,
    /// `GET /services`.
    ListServices,
    /// `GET /networks`.
    ListNetworks,
    /// `GET /tasks`.
    ListTasks,
    /// `GET /nodes`.
    ListNodes,
    /// `GET /services/{id}`.
    InspectService,
    /// `GET /networks/{id}`.
    InspectNetwork,
    /// `POST /services/create`.
    CreateService,
    /// `POST /services/{id}/update`.
    UpdateService,
    /// `DELETE /services/{id}`.
    RemoveService,
    /// `POST /networks/create`.
    CreateNetwork,
    /// `DELETE /networks/{id}`.
    RemoveNetwork,
    /// `GET /configs`.
    ListConfigs,
    /// `GET /secrets`.
    ListSecrets,
    /// `POST /configs/create`.
    CreateConfig,
    /// `POST /secrets/create`.
    CreateSecret,
    /// `DELETE /configs/{id}`.
    RemoveConfig,
    /// `DELETE /secrets/{id}`.
    RemoveSecret,
    /// `GET /configs/{id}` (the leader lease, the stored specs).
    InspectConfig,
    /// `POST /configs/{id}/update` (the leader lease's labels).
    UpdateConfig,
}

impl Op {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Info => "info",
            Op::Events => "events",
            Op::ListServices => "list_services",
            Op::ListNetworks => "list_networks",
            Op::ListTasks => "list_tasks",
            Op::ListNodes => "list_nodes",
            Op::InspectService => "inspect_service",
            Op::InspectNetwork => "inspect_network",
            Op::CreateService => "create_service",
            Op::UpdateService => "update_service",
            Op::RemoveService => "remove_service",
            Op::CreateNetwork => "create_network",
            Op::RemoveNetwork => "remove_network",
            Op::ListConfigs => "list_configs",
            Op::ListSecrets => "list_secrets",
            Op::CreateConfig => "create_config",
            Op::CreateSecret => "create_secret",
            Op::RemoveConfig => "remove_config",
            Op::RemoveSecret => "remove_secret",
            Op::InspectConfig => "inspect_config",
            Op::UpdateConfig => "update_config",
        }
    }

    /// Whether the request changes the swarm (a raft proposal on the managers).
    pub fn is_write(self) -> bool {
        matches!(
            self,
            Op::CreateService
                | Op::UpdateService
                | Op::RemoveService
                | Op::CreateNetwork
                | Op::RemoveNetwork
                | Op::CreateConfig
                | Op::CreateSecret
                | Op::RemoveConfig
                | Op::RemoveSecret
                | Op::UpdateConfig
        )
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a request ended: the `outcome` label of `swarm_operator_docker_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestOutcome {
    /// It succeeded.
    Ok,
    /// The object was not there.
    NotFound,
    /// It lost a race or collided with another object (exists, out of sequence, in use, port).
    Conflict,
    /// The engine refused it otherwise.
    Refused,
    /// The engine could not be reached.
    Transport,
    /// The engine did not answer within the deadline.
    Timeout,
}

impl RequestOutcome {
    /// The outcome of a request's result.
    pub fn of<T>(result: &Result<T, DockerError>) -> Self {
        result
            .as_ref()
            .map_or_else(Self::of_error, |_| RequestOutcome::Ok)
    }

    /// The outcome of a failed request.
    pub fn of_error(error: &DockerError) -> Self {
        match error {
            DockerError::NotFound { .. } => RequestOutcome::NotFound,
            DockerError::AlreadyExists { .. }
            | DockerError::OutOfSequence { .. }
            | DockerError::InUse { .. }
            | DockerError::PortConflict { .. } => RequestOutcome::Conflict,
            DockerError::Transport { .. } => RequestOutcome::Transport,
            DockerError::Timeout { .. } => RequestOutcome::Timeout,
            _ => RequestOutcome::Refused,
        }
    }

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestOutcome::Ok => "ok",
            RequestOutcome::NotFound => "not_found",
            RequestOutcome::Conflict => "conflict",
            RequestOutcome::Refused => "refused",
            RequestOutcome::Transport => "transport",
            RequestOutcome::Timeout => "timeout",
        }
    }

    /// Whether the engine answered at all (with success or with an error of its own), as
    /// opposed to being unreachable or hung.
    pub fn engine_answered(self) -> bool {
        !matches!(self, RequestOutcome::Transport | RequestOutcome::Timeout)
    }
}

/// Counts the requests an [`SwarmApi`](super::SwarmApi) implementation makes (the operator's metrics).
pub trait RequestObserver: Send + Sync {
    /// One request finished.
    fn on_request(&self, op: Op, outcome: RequestOutcome);
}

/// The three requests on configs and secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataOp {
    /// List.
    List,
    /// Create.
    Create,
    /// Remove.
    Remove,
}

/// The [`Op`] of a request on configs or secrets.
pub fn data_op(kind: DataKind, op: DataOp) -> Op {
    match (kind, op) {
        (DataKind::Config, DataOp::List) => Op::ListConfigs,
        (DataKind::Config, DataOp::Create) => Op::CreateConfig,
        (DataKind::Config, DataOp::Remove) => Op::RemoveConfig,
        (DataKind::Secret, DataOp::List) => Op::ListSecrets,
        (DataKind::Secret, DataOp::Create) => Op::CreateSecret,
        (DataKind::Secret, DataOp::Remove) => Op::RemoveSecret,
    }
}
