//! Swarm configs: small raft-replicated objects the operator keeps for itself (the leader lease,
//! the spec files stored by `apply`), with their version index as compare-and-swap.

use std::collections::{BTreeMap, HashMap};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bollard::errors::Error as BollardError;
use bollard::models::EventMessageTypeEnum;
use bollard::models::{Config, ConfigSpec};
use bollard::query_parameters::{
    EventsOptionsBuilder, ListConfigsOptionsBuilder, UpdateConfigOptionsBuilder,
};
use futures_util::{Stream, StreamExt};

use super::engine::classify;
use super::{DockerEngine, DockerError, Op, Resource};

/// A swarm config as the operator reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredConfig {
    /// Config id.
    pub id: String,
    /// The raft version index: the compare-and-swap token of the next update.
    pub version: u64,
    /// Config name.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// The decoded payload.
    pub data: Vec<u8>,
}

/// Whether a compare-and-swap write went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CasOutcome {
    /// The object was written.
    Written,
    /// Someone else wrote first (version moved on, name taken, or the object is gone).
    Conflict,
}

fn status_code(error: &BollardError) -> Option<u16> {
    match error {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

fn is_out_of_sequence(error: &BollardError) -> bool {
    matches!(error, BollardError::DockerResponseServerError { message, .. }
        if message.contains("update out of sequence"))
}

fn from_config(config: Config) -> Option<StoredConfig> {
    let spec = config.spec?;
    let data = match spec.data.as_deref() {
        Some(text) => BASE64.decode(text).ok()?,
        None => Vec::new(),
    };
    Some(StoredConfig {
        id: config.id?,
        version: config.version.and_then(|v| v.index)?,
        name: spec.name?,
        labels: spec.labels.unwrap_or_default().into_iter().collect(),
        data,
    })
}

fn config_spec(name: &str, labels: &BTreeMap<String, String>, data: &[u8]) -> ConfigSpec {
    ConfigSpec {
        name: Some(name.to_owned()),
        labels: Some(labels.clone().into_iter().collect::<HashMap<_, _>>()),
        data: Some(BASE64.encode(data)),
        templating: None,
    }
}

impl DockerEngine {
    /// Reads one config by name; `None` if there is none.
    pub async fn inspect_config(&self, name: &str) -> Result<Option<StoredConfig>, DockerError> {
        match self
            .bound(Op::InspectConfig, self.client().inspect_config(name))
            .await?
        {
            Ok(config) => Ok(from_config(config)),
            Err(e) if status_code(&e) == Some(404) => Ok(None),
            Err(e) => Err(classify(e, Op::InspectConfig, Resource::Config, name)),
        }
    }

    /// Lists the configs carrying every one of `labels` (`key=value`).
    pub async fn list_configs(
        &self,
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<StoredConfig>, DockerError> {
        let filters = HashMap::from([(
            "label".to_owned(),
            labels.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        )]);
        let options = ListConfigsOptionsBuilder::default()
            .filters(&filters)
            .build();
        let configs = self
            .bound(Op::ListConfigs, self.client().list_configs(Some(options)))
            .await?
            .map_err(|e| classify(e, Op::ListConfigs, Resource::Config, ""))?;
        Ok(configs.into_iter().filter_map(from_config).collect())
    }

    /// Creates a config; [`CasOutcome::Conflict`] if the name is taken.
    pub async fn create_config(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
        data: &[u8],
    ) -> Result<CasOutcome, DockerError> {
        match self
            .bound(
                Op::CreateConfig,
                self.client().create_config(config_spec(name, labels, data)),
            )
            .await?
        {
            Ok(_) => Ok(CasOutcome::Written),
            Err(e) if status_code(&e) == Some(409) => Ok(CasOutcome::Conflict),
            Err(e) => Err(classify(e, Op::CreateConfig, Resource::Config, name)),
        }
    }

    /// Replaces a config's labels if its version is still `version`. Swarm lets only the labels
    /// of a config change; `data` must be the stored payload.
    pub async fn update_config_labels(
        &self,
        id: &str,
        version: u64,
        name: &str,
        labels: &BTreeMap<String, String>,
        data: &[u8],
    ) -> Result<CasOutcome, DockerError> {
        let options = UpdateConfigOptionsBuilder::default()
            .version(version as i64)
            .build();
        match self
            .bound(
                Op::UpdateConfig,
                self.client()
                    .update_config(id, config_spec(name, labels, data), options),
            )
            .await?
        {
            Ok(()) => Ok(CasOutcome::Written),
            Err(e) if is_out_of_sequence(&e) || status_code(&e) == Some(404) => {
                Ok(CasOutcome::Conflict)
            }
            Err(e) => Err(classify(e, Op::UpdateConfig, Resource::Config, id)),
        }
    }

    /// Removes a config by id or name; one that is already gone counts as removed.
    pub async fn remove_config(&self, id: &str) -> Result<(), DockerError> {
        match self
            .bound(Op::RemoveConfig, self.client().delete_config(id))
            .await?
        {
            Ok(()) => Ok(()),
            Err(e) if status_code(&e) == Some(404) => Ok(()),
            Err(e) => Err(classify(e, Op::RemoveConfig, Resource::Config, id)),
        }
    }

    /// One item per config created, updated or removed anywhere in the swarm, as a hint to
    /// list again. The stream ends when the engine closes it; the caller reconnects.
    pub fn config_events(&self) -> impl Stream<Item = Result<(), DockerError>> + Send + 'static {
        let filters = HashMap::from([("type", vec!["config"])]);
        let options = EventsOptionsBuilder::default().filters(&filters).build();
        self.client()
            .events(Some(options))
            .filter_map(|event| async move {
                match event {
                    Ok(event) if event.typ == Some(EventMessageTypeEnum::CONFIG) => Some(Ok(())),
                    Ok(_) => None,
                    Err(e) => Some(Err(classify(e, Op::Events, Resource::Config, ""))),
                }
            })
    }
}
