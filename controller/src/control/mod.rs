//! The core loop: triggers and the swarm watcher feed the shared view, the planner compares, the reconciler writes.

pub mod operator;
pub mod plan;
pub mod reconcile;
pub mod schedule;
pub mod swarm_watch;
pub mod triggers;
pub mod world;

#[cfg(test)]
mod loop_tests;
