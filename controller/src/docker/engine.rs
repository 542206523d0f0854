//! [`SwarmApi`] over the Docker Engine API with bollard, plus the engine's event stream.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::models::EventMessageTypeEnum;
use bollard::query_parameters::{
    EventsOptionsBuilder, ListNetworksOptions, ListNodesOptions, UpdateServiceOptionsBuilder,
};
use futures_util::{Stream, StreamExt};
use tracing::{debug, warn};

use super::convert::{from_network, from_service, to_network_create, to_service_spec};
use super::raw::RawClient;
use super::{
    DockerError, Observed, ObservedNetwork, ObservedNode, ObservedService, ObservedTask, SwarmApi,
    SwarmEvent,
};
use crate::definition::{NetworkDefinition, ServiceDefinition};

/// How often an update that lost the race on the service version is re-read and retried.
const UPDATE_ATTEMPTS: u32 = 5;

/// A connection to one Docker engine (a swarm manager).
#[derive(Clone)]
pub struct DockerEngine {
    docker: Docker,
    raw: RawClient,
    api_version: String,
    /// Network id → name, refreshed by every network listing. Services reference networks by
    /// id; keeping the map here lets a single-service read (after a write) be one API call.
    network_names: Arc<Mutex<HashMap<String, String>>>,
}

impl DockerEngine {
    /// Connects to `DOCKER_HOST` or the local socket and negotiates the API version (the engine
    /// here speaks 1.41 while bollard defaults to a newer one).
    pub async fn connect() -> Result<Self, DockerError> {
        let docker = Docker::connect_with_defaults()?
            .with_timeout(Duration::from_secs(60))
            .negotiate_version()
            .await?;
        let version = docker.client_version();
        let api_version = format!("{}.{}", version.major_version, version.minor_version);
        let raw = RawClient::new(std::env::var("DOCKER_HOST").ok().as_deref())?;
        debug!(%api_version, "connected to the Docker engine");
        Ok(DockerEngine {
            docker,
            raw,
            api_version,
            network_names: Arc::default(),
        })
    }

    /// The bollard client, for the sibling modules that add calls of their own (configs).
    pub(super) fn client(&self) -> &Docker {
        &self.docker
    }

    /// The negotiated Engine API version, e.g. `1.41`.
    pub fn api_version(&self) -> &str {
        &self.api_version
    }

    /// Fails with [`DockerError::NotAManager`] unless this engine manages a swarm.
    pub async fn ensure_manager(&self) -> Result<(), DockerError> {
        let info = self.docker.info().await?;
        let is_manager = info
            .swarm
            .and_then(|s| s.control_available)
            .unwrap_or(false);
        if is_manager {
            Ok(())
        } else {
            Err(DockerError::NotAManager)
        }
    }

    /// Service, network and node events, as hints of what to look at again. The stream ends
    /// when the engine closes it; the caller reconnects.
    pub fn events(&self) -> impl Stream<Item = Result<SwarmEvent, DockerError>> + Send + 'static {
        let filters = HashMap::from([("type", vec!["service", "network", "node"])]);
        let options = EventsOptionsBuilder::default().filters(&filters).build();
        self.docker
            .events(Some(options))
            .filter_map(|event| async move {
                let event = match event {
                    Ok(event) => event,
                    Err(e) => return Some(Err(e.into())),
                };
                let action = event.action.as_deref().unwrap_or_default();
                match event.typ {
                    Some(EventMessageTypeEnum::SERVICE) => event
                        .actor
                        .and_then(|a| a.attributes)
                        .and_then(|mut attrs| attrs.remove("name"))
                        .map(|name| Ok(SwarmEvent::Service { name })),
                    // Every task start and stop connects or disconnects a container: those are
                    // task churn, which task polling covers, not a change of the network.
                    Some(EventMessageTypeEnum::NETWORK)
                        if matches!(action, "connect" | "disconnect") =>
                    {
                        None
                    }
                    _ => Some(Ok(SwarmEvent::Other)),
                }
            })
    }

    async fn list_networks(&self) -> Result<Vec<ObservedNetwork>, DockerError> {
        let networks = self
            .docker
            .list_networks(None::<ListNetworksOptions>)
            .await?;
        let observed: Vec<ObservedNetwork> = networks.iter().filter_map(from_network).collect();
        let mut names = self
            .network_names
            .lock()
            .expect("network map lock poisoned");
        names.clear();
        names.extend(
            observed
                .iter()
                .map(|n| (n.id.clone(), n.definition.name.clone())),
        );
        Ok(observed)
    }

    fn network_names(&self) -> HashMap<String, String> {
        self.network_names
            .lock()
            .expect("network map lock poisoned")
            .clone()
    }

    async fn list_nodes(&self) -> Result<BTreeMap<String, ObservedNode>, DockerError> {
        let nodes = self.docker.list_nodes(None::<ListNodesOptions>).await?;
        Ok(nodes
            .into_iter()
            .filter_map(|node| {
                let id = node.id?;
                Some((
                    id.clone(),
                    ObservedNode {
                        id,
                        hostname: node
                            .description
                            .and_then(|d| d.hostname)
                            .unwrap_or_default(),
                        state: node
                            .status
                            .and_then(|s| s.state)
                            .map(|s| s.to_string())
                            .unwrap_or_default(),
                    },
                ))
            })
            .collect())
    }
}

/// Maps the engine's "already exists" / "not found" answers to typed errors.
fn classify(error: BollardError, kind: &'static str, name: &str) -> DockerError {
    match &error {
        BollardError::DockerResponseServerError {
            status_code: 409, ..
        } => DockerError::AlreadyExists {
            kind,
            name: name.to_owned(),
        },
        BollardError::DockerResponseServerError {
            status_code: 404, ..
        } => DockerError::NotFound {
            kind,
            name: name.to_owned(),
        },
        _ => DockerError::Api(error),
    }
}

fn is_out_of_sequence(error: &BollardError) -> bool {
    matches!(error, BollardError::DockerResponseServerError { message, .. }
        if message.contains("update out of sequence"))
}

impl SwarmApi for DockerEngine {
    async fn observe(&self) -> Result<Observed, DockerError> {
        // Networks first: services name them by id.
        let networks = self.list_networks().await?;
        let (services, tasks, nodes) = tokio::try_join!(
            self.raw.list_services(&self.api_version),
            self.list_tasks(),
            self.list_nodes(),
        )?;
        let names = self.network_names();
        Ok(Observed {
            services: services
                .iter()
                .filter_map(|s| from_service(s, &names))
                .map(|s| (s.definition.name.clone(), s))
                .collect(),
            networks: networks
                .into_iter()
                .map(|n| (n.definition.name.clone(), n))
                .collect(),
            tasks,
            nodes,
        })
    }

    async fn list_tasks(&self) -> Result<Vec<ObservedTask>, DockerError> {
        self.raw.list_tasks(&self.api_version).await
    }

    async fn inspect_service(&self, name: &str) -> Result<Option<ObservedService>, DockerError> {
        match self.raw.inspect_service(&self.api_version, name).await? {
            Some(service) => {
                let mut names = self.network_names();
                let unknown_network = service
                    .spec
                    .as_ref()
                    .and_then(|s| s.task_template.as_ref())
                    .and_then(|t| t.networks.as_ref())
                    .into_iter()
                    .flatten()
                    .any(|n| n.target.as_ref().is_some_and(|id| !names.contains_key(id)));
                if unknown_network {
                    self.list_networks().await?;
                    names = self.network_names();
                }
                Ok(from_service(&service, &names))
            }
            None => Ok(None),
        }
    }

    async fn create_network(
        &self,
        definition: &NetworkDefinition,
        owner_labels: &BTreeMap<String, String>,
    ) -> Result<ObservedNetwork, DockerError> {
        let request = to_network_create(definition, owner_labels);
        self.docker
            .create_network(request)
            .await
            .map_err(|e| classify(e, "network", &definition.name))?;
        self.list_networks()
            .await?
            .into_iter()
            .find(|n| n.definition.name == definition.name)
            .ok_or_else(|| DockerError::NotFound {
                kind: "network",
                name: definition.name.clone(),
            })
    }

    async fn remove_network(&self, id: &str) -> Result<(), DockerError> {
        self.docker
            .remove_network(id)
            .await
            .map_err(|e| classify(e, "network", id))
    }

    async fn create_service(
        &self,
        definition: &ServiceDefinition,
        owner_labels: &BTreeMap<String, String>,
    ) -> Result<(), DockerError> {
        let spec = to_service_spec(definition, owner_labels);
        self.docker
            .create_service(spec, None)
            .await
            .map_err(|e| classify(e, "service", &definition.name))?;
        Ok(())
    }

    async fn update_service(
        &self,
        id: &str,
        version: u64,
        definition: &ServiceDefinition,
        owner_labels: &BTreeMap<String, String>,
    ) -> Result<(), DockerError> {
        let mut version = version;
        for attempt in 1..=UPDATE_ATTEMPTS {
            let spec = to_service_spec(definition, owner_labels);
            let options = UpdateServiceOptionsBuilder::default()
                .version(version as i32)
                .build();
            match self.docker.update_service(id, spec, options, None).await {
                Ok(response) => {
                    for warning in response.warnings.into_iter().flatten() {
                        warn!(service = %definition.name, %warning, "engine warning on update");
                    }
                    return Ok(());
                }
                Err(e) if is_out_of_sequence(&e) => {
                    // Someone else (swarm itself, or a human) wrote in between: re-read the
                    // version and send our full spec again.
                    debug!(service = %definition.name, attempt, "update out of sequence, re-reading");
                    version = match self.inspect_service(id).await? {
                        Some(current) => current.version,
                        None => {
                            return Err(DockerError::NotFound {
                                kind: "service",
                                name: definition.name.clone(),
                            });
                        }
                    };
                }
                Err(e) => return Err(classify(e, "service", &definition.name)),
            }
        }
        Err(DockerError::OutOfSequence {
            name: definition.name.clone(),
            attempts: UPDATE_ATTEMPTS,
        })
    }

    async fn remove_service(&self, id: &str) -> Result<(), DockerError> {
        self.docker
            .delete_service(id)
            .await
            .map_err(|e| classify(e, "service", id))
    }
}
