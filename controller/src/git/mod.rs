//! `run --source git`: the desired state read from a git repository.

pub mod credentials;
