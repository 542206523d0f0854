//! Errors of the Engine API, classified once (by status and message) into variants that
//! everything above decides by.

use super::request::{Op, Resource};

/// Errors talking to the Docker Engine API, classified once, here, so that everything above
/// decides by variant and never by matching message text.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The engine could not be reached or did not answer (connection refused or reset, timeout,
    /// a broken stream). Transient: retried with backoff.
    #[error("{op}: the Docker engine did not answer ({message}); retrying with backoff")]
    Transport {
        /// The request.
        op: Op,
        /// What the HTTP layer said.
        message: String,
    },
    /// The engine did not answer within the request's deadline (see [`Deadlines`](super::Deadlines)): it is
    /// hung or overloaded. Transient: retried with backoff.
    #[error(
        "{op}: the Docker engine did not answer within {}; retrying with backoff",
        humantime::format_duration(*after)
    )]
    Timeout {
        /// The request.
        op: Op,
        /// The deadline it missed.
        after: std::time::Duration,
    },
    /// The engine refused the request for a reason not classified below.
    #[error("{op}: the Docker engine refused it (HTTP {status}): {message}")]
    Refused {
        /// The request.
        op: Op,
        /// HTTP status code.
        status: u16,
        /// The engine's message.
        message: String,
    },
    /// The engine answered something we could not decode.
    #[error("{op}: undecodable reply from the Docker engine: {message}")]
    Undecodable {
        /// The request.
        op: Op,
        /// What did not fit.
        message: String,
    },
    /// An object with this name already exists (a create raced with another writer).
    #[error("{kind} {name:?} already exists")]
    AlreadyExists {
        /// Service or network.
        kind: Resource,
        /// The object's name.
        name: String,
    },
    /// The object does not exist (any form: 404, or a 500 whose message says "not found").
    #[error("{kind} {name:?} not found")]
    NotFound {
        /// Service or network.
        kind: Resource,
        /// The object's name or id.
        name: String,
    },
    /// A network can not be removed while services are attached to it.
    #[error("network {name:?} is still used by services {users:?}")]
    InUse {
        /// The network's name or id.
        name: String,
        /// Ids (or names) of the services attached to it, as the engine named them.
        users: Vec<String>,
    },
    /// A published port is already held by another service.
    #[error("service {name:?}: published port {port} is already used by service {holder:?}")]
    PortConflict {
        /// The service that wanted the port.
        name: String,
        /// The port.
        port: u16,
        /// The service holding it.
        holder: String,
    },
    /// A service update was based on a version that is no longer current: somebody else wrote
    /// in between. Re-read and plan again.
    #[error("service {name:?}: update out of sequence (the service changed meanwhile)")]
    OutOfSequence {
        /// Service name.
        name: String,
    },
    /// A write was not sent: this replica no longer holds the leader lease (or too little of
    /// it is left to finish the write), so another replica may lead by now.
    #[error("{op}: not sent: this replica no longer holds the leader lease")]
    NotLeader {
        /// The write.
        op: Op,
    },
    /// This node is not a swarm manager, so it can not manage services.
    #[error(
        "this Docker engine is not a swarm manager: run `docker swarm init` or point DOCKER_HOST at a manager"
    )]
    NotAManager,
}

impl DockerError {
    /// Classifies an engine answer with an error status. `kind` and `name` say which object
    /// the request was about, for the typed variants.
    pub fn from_response(
        op: Op,
        kind: Resource,
        name: &str,
        status: u16,
        message: &str,
    ) -> DockerError {
        let lower = message.to_ascii_lowercase();
        // On a create, "not found" is about something the new object refers to (a network),
        // not the object itself.
        let creates = matches!(op, Op::CreateService | Op::CreateNetwork);
        if !creates && (status == 404 || lower.contains("not found")) {
            return DockerError::NotFound {
                kind,
                name: name.to_owned(),
            };
        }
        if status == 409 || lower.contains("already exists") {
            return DockerError::AlreadyExists {
                kind,
                name: name.to_owned(),
            };
        }
        if lower.contains("update out of sequence") {
            return DockerError::OutOfSequence {
                name: name.to_owned(),
            };
        }
        if let Some(users) = network_users(message) {
            return DockerError::InUse {
                name: name.to_owned(),
                users,
            };
        }
        if let Some((port, holder)) = port_holder(message) {
            return DockerError::PortConflict {
                name: name.to_owned(),
                port,
                holder,
            };
        }
        DockerError::Refused {
            op,
            status,
            message: message.to_owned(),
        }
    }
}

/// `network X is in use by service Y` (swarm) or `network X has active endpoints` (local):
/// the services named, possibly none.
fn network_users(message: &str) -> Option<Vec<String>> {
    if let Some((_, rest)) = message.split_once("is in use by service ") {
        let users = rest
            .split([',', ' '])
            .map(|s| s.trim_matches(|c: char| c == '\'' || c == '"' || c == '.'))
            .filter(|s| !s.is_empty() && *s != "and")
            .map(str::to_owned)
            .collect();
        return Some(users);
    }
    message.contains("has active endpoints").then(Vec::new)
}

/// `port '8080' is already in use by service 'name' (id) as an ingress port`.
fn port_holder(message: &str) -> Option<(u16, String)> {
    let (_, rest) = message.split_once("port '")?;
    let (port, rest) = rest.split_once('\'')?;
    let (_, rest) = rest.split_once("already in use by service '")?;
    let (holder, _) = rest.split_once('\'')?;
    Some((port.parse().ok()?, holder.to_owned()))
}
