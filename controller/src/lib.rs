//! swarm-operator: a Kubernetes-style operator for Docker Swarm.
//!
//! The modules are grouped as the architecture is drawn (`docs/architecture.md`), in the order
//! data flows through them:
//!
//! * [`spec`]: where specs come from: the spec files' types, loading with located errors,
//!   validation, and the specs stored in the swarm.
//! * [`git`]: `run --source git`: fetch a ref, check out its tree, follow it; [`push_hook`]
//!   (a forge's push fetches at once), [`revision`] and [`applied_revision`] (the commit
//!   loaded, labelled on writes, and the last one applied, recorded in the swarm).
//! * [`desired`]: the desired state: specs turned into canonical definitions.
//! * [`control`]: the core loop: triggers and the swarm watcher feed the shared view, the
//!   planner compares desired and observed, the reconciler makes one write per run.
//! * [`runtime`]: the scheduler the loop runs under: per-key backoff, concurrency, one run
//!   per key.
//! * [`docker`]: the swarm: the one adapter to the Docker Engine API, behind a trait.
//! * [`report`]: what the operator shows: status file, page, API, activity, file_sd, metrics,
//!   notifications.
//! * [`web`]: the HTTP server that serves them.
//! * [`election`]: high availability: the leader lease and the gate before every write.
//! * [`compose`]: `import-compose`: compose stack files turned into spec files.
//! * [`cli`]: the commands, one module each; the binary only parses and wires.
//! * [`yaml`]: YAML read one way for spec and compose files: limits, positions, typed values.
//! * [`redact`], [`pem`], [`atomic_file`], [`allocator`], [`labels`]: small pieces the groups
//!   share.

pub mod spec;

pub mod applied_revision;
pub mod git;
pub mod push_hook;
pub mod revision;

pub mod desired;

pub mod control;

pub mod runtime;

pub mod docker;

pub mod report;

pub mod web;

pub mod election;

pub mod compose;

pub mod cli;

pub mod allocator;
pub mod atomic_file;
pub mod labels;
pub mod pem;
pub mod redact;
pub mod shared_text;
pub mod yaml;
