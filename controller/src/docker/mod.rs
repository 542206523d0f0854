//! The Docker adapter: what the operator reads from and writes to a swarm, behind a trait.
//!
//! Everything above this module speaks in [`crate::desired::definition`] types and the
//! `Observed*` types of `model`; only [`engine`] knows about bollard. The trait
//! ([`SwarmApi`], in `api`) has one method per Engine API request; `request` names those
//! requests for the metrics, `error` classifies what the engine answers, `ownership` reads and
//! writes the labels that make an object the operator's. Tests of the reconciler substitute the
//! trait (`memory`).

mod api;
pub mod configs;
mod convert;
pub mod deadlines;
pub mod endpoint;
pub mod engine;
mod engine_value;
mod error;
#[cfg(test)]
pub(crate) mod memory;
pub mod metered;
mod model;
mod ownership;
mod raw;
mod request;
pub mod transport;

pub use api::SwarmApi;
pub use bollard::models::{ServiceUpdateStatusStateEnum as UpdateState, TaskState};
pub use deadlines::Deadlines;
pub use engine::DockerEngine;
pub use engine_value::EngineValue;
pub use error::DockerError;
pub use metered::Metered;
pub use model::{
    EventAction, NodeAvailability, NodeRole, Observed, ObservedNetwork, ObservedNode,
    ObservedService, ObservedTask, ServiceRevision, SwarmEvent, TaskAddress, UNREAD_TEMPLATE,
    UpdateStatus, VirtualIp,
};
pub use ownership::{Ownership, RolledBack};
pub use request::{DataOp, Op, RequestObserver, RequestOutcome, Resource, data_op};
