//! swarm-operator: a Kubernetes-style operator for Docker Swarm.
//!
//! The flow runs one way: spec files are loaded and validated ([`spec`]), turned into canonical
//! definitions ([`desired`]), compared with what the swarm reports ([`docker`]) into a plan,
//! applied by the reconciler under the [`runtime`]'s scheduling ([`control`]), and reported
//! ([`report`]).

pub mod allocator;
pub mod atomic_file;
pub mod cli;
pub mod compose;
pub mod control;
pub mod desired;
pub mod docker;
pub mod election;
pub mod pem;
pub mod redact;
pub mod report;
pub mod runtime;
pub mod spec;
pub mod web;
