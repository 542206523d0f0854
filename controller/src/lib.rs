//! swarm-operator: a Kubernetes-style operator for Docker Swarm.
//!
//! The flow runs one way: spec files are loaded and validated ([`spec`]), turned into canonical
//! definitions ([`desired`]), compared with what the swarm reports ([`docker`]) into a
//! [`plan`], applied by the [`reconcile`]r under the [`runtime`]'s scheduling, and reported in
//! the [`status`] file.

pub mod activity;
pub mod allocator;
pub mod applied_secrets;
pub mod atomic_file;
pub mod commands;
pub mod compose;
pub mod data_objects;
pub mod definition;
pub mod desired;
pub mod docker;
pub mod election;
pub mod file_sd;
pub mod live_status;
pub mod metrics;
pub mod notify;
pub mod object_table;
pub mod operator;
pub mod overview;
pub mod page;
pub mod pem;
pub mod plan;
pub mod push_hook;
pub mod reconcile;
pub mod redact;
pub mod revision;
pub mod runtime;
pub mod schedule;
pub mod spec;
pub mod status;
pub mod stored_specs;
pub mod swarm_watch;
pub mod triggers;
pub mod wait;
pub mod web;
pub mod world;

#[cfg(test)]
mod loop_tests;
