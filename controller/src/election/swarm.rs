//! The lease kept in the labels of a swarm config owned by the operator instance: swarm lets a
//! config's labels change with its version index as compare-and-swap, and raft replicates it
//! to every manager.

use std::collections::BTreeMap;

use super::{LeaseError, LeaseRecord, LeaseStore, VersionedLease};
use crate::desired::definition::{INSTANCE_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use crate::docker::DockerEngine;
use crate::docker::configs::CasOutcome;

/// Label naming the replica that holds the lease.
pub const HOLDER_LABEL: &str = "swarm-operator.io/lease-holder";
/// Label with the holding process's random token (see [`LeaseRecord::token`]).
pub const TOKEN_LABEL: &str = "swarm-operator.io/lease-token";
/// Label with the lease's term.
pub const TERM_LABEL: &str = "swarm-operator.io/lease-term";
/// Label with the time of the last renewal (RFC 3339).
pub const RENEWED_AT_LABEL: &str = "swarm-operator.io/lease-renewed-at";

/// The lease of one operator instance in a swarm config named
/// `swarm-operator-lease-<instance>`.
#[derive(Clone)]
pub struct SwarmLeaseStore {
    api: DockerEngine,
    instance: String,
    name: String,
}

impl SwarmLeaseStore {
    /// The lease of `instance`.
    pub fn new(api: DockerEngine, instance: &str) -> Self {
        SwarmLeaseStore {
            api,
            instance: instance.to_owned(),
            name: Self::config_name(instance),
        }
    }

    /// The config's name for `instance`.
    pub fn config_name(instance: &str) -> String {
        format!("swarm-operator-lease-{instance}")
    }

    /// The config's payload: config data can not change, so it only says what this is.
    fn data(&self) -> Vec<u8> {
        format!(
            "leader lease of swarm-operator instance {:?}; the state is in the labels\n",
            self.instance
        )
        .into_bytes()
    }

    fn labels(&self, record: &LeaseRecord) -> BTreeMap<String, String> {
        BTreeMap::from([
            (MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned()),
            (INSTANCE_LABEL.to_owned(), self.instance.clone()),
            (HOLDER_LABEL.to_owned(), record.holder.clone()),
            (TOKEN_LABEL.to_owned(), record.token.clone()),
            (TERM_LABEL.to_owned(), record.term.to_string()),
            (RENEWED_AT_LABEL.to_owned(), record.renewed_at.clone()),
        ])
    }

    fn error(&self, source: crate::docker::DockerError) -> LeaseError {
        LeaseError::Docker {
            lease: self.name.clone(),
            source,
        }
    }
}

impl LeaseStore for SwarmLeaseStore {
    async fn read(&self) -> Result<Option<VersionedLease>, LeaseError> {
        let Some(config) = self
            .api
            .inspect_config(&self.name)
            .await
            .map_err(|e| self.error(e))?
        else {
            return Ok(None);
        };
        // Labels edited by hand into nonsense read as a released lease: taking it over with
        // the version check is then the way to repair it.
        let label = |key: &str| config.labels.get(key).cloned().unwrap_or_default();
        Ok(Some(VersionedLease {
            version: config.version,
            record: LeaseRecord {
                holder: label(HOLDER_LABEL),
                token: label(TOKEN_LABEL),
                term: label(TERM_LABEL).parse().unwrap_or(0),
                renewed_at: label(RENEWED_AT_LABEL),
            },
        }))
    }

    async fn create(&self, record: &LeaseRecord) -> Result<CasOutcome, LeaseError> {
        self.api
            .create_config(&self.name, &self.labels(record), &self.data())
            .await
            .map_err(|e| self.error(e))
    }

    async fn replace(&self, version: u64, record: &LeaseRecord) -> Result<CasOutcome, LeaseError> {
        // Swarm rejects an update whose payload differs from the stored one.
        self.api
            .update_config_labels(
                &self.name,
                version,
                &self.name,
                &self.labels(record),
                &self.data(),
            )
            .await
            .map_err(|e| self.error(e))
    }
}
