//! [`SwarmApi`] over the Docker Engine API with bollard, plus the engine's event stream.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::models::{
    ConfigSpec, EventMessageTypeEnum, NodeSpecAvailabilityEnum, NodeSpecRoleEnum, SecretSpec,
};
use bollard::query_parameters::{
    EventsOptionsBuilder, ListNetworksOptions, ListNodesOptions, UpdateServiceOptionsBuilder,
};
use futures_util::{Stream, StreamExt};
use tracing::{debug, warn};

use super::convert::{
    fill_data_ids, from_network, from_service, to_network_create, to_service_spec,
};
use super::endpoint::Endpoint;
use super::raw::{RawClient, error_chain};
use super::transport::EngineTransport;
use super::{
    DataOp, Deadlines, DockerError, EventAction, NodeAvailability, NodeRole, ObservedNetwork,
    ObservedNode, ObservedService, ObservedTask, Op, Ownership, Resource, SwarmApi, SwarmEvent,
    data_op,
};
use crate::desired::data_objects::{DataKind, DesiredData, ObservedData};
use crate::desired::definition::{KnownDefinitions, NetworkDefinition, ServiceDefinition};
use crate::redact;

/// A connection to one Docker engine (a swarm manager).
#[derive(Clone)]
pub struct DockerEngine {
    docker: Docker,
    raw: RawClient,
    api_version: String,
    /// Network id → name, refreshed by every network listing. Services reference networks by
    /// id; keeping the map here lets a single-service read (after a write) be one API call.
    network_names: Arc<Mutex<HashMap<String, String>>>,
    /// [`Endpoint::default_concurrency`] of the endpoint connected to.
    default_concurrency: usize,
    /// Every call below is bounded by these.
    deadlines: Deadlines,
}

impl DockerEngine {
    /// Connects to the engine the docker CLI would reach from this process's environment
    /// (`DOCKER_HOST`, `DOCKER_CONTEXT`, the current context; see [`super::endpoint`]).
    pub async fn connect() -> Result<Self, DockerError> {
        let inputs = super::endpoint::EndpointInputs::from_env(None);
        let endpoint = super::endpoint::resolve(&inputs).map_err(|e| DockerError::Transport {
            op: Op::Info,
            message: e.to_string(),
        })?;
        Self::connect_to(&endpoint.endpoint).await
    }

    /// Connects to `endpoint` and negotiates the API version (the engine here speaks 1.41
    /// while bollard defaults to a newer one). bollard and the raw reads share one transport.
    pub async fn connect_to(endpoint: &Endpoint) -> Result<Self, DockerError> {
        let connect_error = |e| classify(e, Op::Info, Resource::Service, "");
        let transport = EngineTransport::new(endpoint).map_err(|e| DockerError::Transport {
            op: Op::Info,
            message: e.to_string(),
        })?;
        let docker = transport
            .bollard(Duration::from_secs(60))
            .map_err(|e| DockerError::Transport {
                op: Op::Info,
                message: e.to_string(),
            })?
            .with_timeout(Duration::from_secs(60))
            .negotiate_version()
            .await
            .map_err(connect_error)?;
        let version = docker.client_version();
        let api_version = format!("{}.{}", version.major_version, version.minor_version);
        let raw = RawClient::new(transport);
        debug!(%api_version, %endpoint, "connected to the Docker engine");
        Ok(DockerEngine {
            docker,
            raw,
            api_version,
            network_names: Arc::default(),
            default_concurrency: endpoint.default_concurrency(),
            deadlines: Deadlines::default(),
        })
    }

    /// Reconciles to run at once unless told otherwise ([`Endpoint::default_concurrency`]).
    pub fn default_concurrency(&self) -> usize {
        self.default_concurrency
    }

    /// The same connection with other deadlines (`run --engine-timeout` …).
    #[must_use]
    pub fn with_deadlines(mut self, deadlines: Deadlines) -> Self {
        self.deadlines = deadlines;
        self
    }

    /// The deadlines every call is bounded by.
    pub fn deadlines(&self) -> Deadlines {
        self.deadlines
    }

    /// Runs one request within its deadline: the one place every call of the adapter passes
    /// (bollard's and the raw reads), so that none can wait forever on a hung engine.
    pub(super) async fn bound<F: std::future::Future>(
        &self,
        op: Op,
        call: F,
    ) -> Result<F::Output, DockerError> {
        self.deadlines.bound(op, call).await
    }

    /// The bollard client, for the sibling modules that add calls of their own (configs).
    pub(super) fn client(&self) -> &Docker {
        &self.docker
    }

    /// The negotiated Engine API version, e.g. `1.41`.
    pub fn api_version(&self) -> &str {
        &self.api_version
    }

    /// How many networks the adapter keeps an id → name entry for: those of its last network
    /// list, plus those read or created since, minus those it removed or found gone.
    pub fn remembered_networks(&self) -> usize {
        self.network_map().len()
    }

    fn network_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.network_names
            .lock()
            .expect("network map lock poisoned")
    }

    fn network_names(&self) -> HashMap<String, String> {
        self.network_map().clone()
    }

    /// Replaces the map with a complete list: a network gone from it is forgotten, so that the
    /// map does not grow with every network ever seen on a busy swarm. (A network created
    /// while the list was under way may be dropped too; the next service naming it reads it.)
    fn set_networks(&self, networks: &[ObservedNetwork]) {
        *self.network_map() = networks.iter().map(id_and_name).collect();
    }

    fn forget_network(&self, id: &str) {
        self.network_map().remove(id);
    }

    fn remember_networks<'a>(&self, networks: impl IntoIterator<Item = &'a ObservedNetwork>) {
        self.network_map()
            .extend(networks.into_iter().map(id_and_name));
    }
}

/// A network's entry in the adapter's id → name map.
fn id_and_name(network: &ObservedNetwork) -> (String, String) {
    (network.id.clone(), network.definition.name.clone())
}

/// Classifies a bollard error once: engine answers by status and message, everything else
/// by whether the engine was reached at all.
pub(super) fn classify(error: BollardError, op: Op, kind: Resource, name: &str) -> DockerError {
    match error {
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => DockerError::from_response(op, kind, name, status_code, &message),
        // serde quotes the string that did not fit, which may be an env value.
        BollardError::JsonDataError { message, .. } => DockerError::Undecodable {
            op,
            message: redact::without_quoted(&message),
        },
        BollardError::JsonSerdeError { err } => DockerError::Undecodable {
            op,
            message: redact::without_quoted(&err.to_string()),
        },
        other => DockerError::Transport {
            op,
            message: error_chain(&other),
        },
    }
}

/// An event's kind of change, from the engine's action word.
fn event_action(action: &str) -> Option<EventAction> {
    match action {
        "create" => Some(EventAction::Create),
        "update" => Some(EventAction::Update),
        "remove" | "destroy" => Some(EventAction::Remove),
        _ => None,
    }
}

impl SwarmApi for DockerEngine {
    fn engine_api_version(&self) -> Option<crate::spec::EngineApiVersion> {
        self.api_version.parse().ok()
    }

    async fn ensure_manager(&self) -> Result<(), DockerError> {
        let info = self
            .bound(Op::Info, self.docker.info())
            .await?
            .map_err(|e| classify(e, Op::Info, Resource::Service, ""))?;
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

    fn events(&self) -> impl Stream<Item = Result<SwarmEvent, DockerError>> + Send + 'static {
        let filters = HashMap::from([(
            "type",
            vec!["service", "network", "node", "config", "secret"],
        )]);
        let options = EventsOptionsBuilder::default().filters(&filters).build();
        self.docker
            .events(Some(options))
            .filter_map(|event| async move {
                let event = match event {
                    Ok(event) => event,
                    Err(e) => return Some(Err(classify(e, Op::Events, Resource::Service, ""))),
                };
                let action = event.action.as_deref().unwrap_or_default();
                let actor = event.actor.unwrap_or_default();
                let id = actor.id.unwrap_or_default();
                let name = actor
                    .attributes
                    .and_then(|mut attributes| attributes.remove("name"))
                    .unwrap_or_default();
                match event.typ {
                    Some(EventMessageTypeEnum::SERVICE) => Some(Ok(SwarmEvent::Service {
                        id,
                        name,
                        action: event_action(action).unwrap_or(EventAction::Update),
                    })),
                    // Every task start and stop connects or disconnects a container: those are
                    // task churn, which task polling covers, not a change of the network.
                    Some(EventMessageTypeEnum::NETWORK) => event_action(action)
                        .map(|action| Ok(SwarmEvent::Network { id, name, action })),
                    Some(EventMessageTypeEnum::NODE) => Some(Ok(SwarmEvent::Node { id })),
                    Some(EventMessageTypeEnum::CONFIG) => event_action(action).map(|action| {
                        Ok(SwarmEvent::Data {
                            kind: DataKind::Config,
                            id,
                            name,
                            action,
                        })
                    }),
                    Some(EventMessageTypeEnum::SECRET) => event_action(action).map(|action| {
                        Ok(SwarmEvent::Data {
                            kind: DataKind::Secret,
                            id,
                            name,
                            action,
                        })
                    }),
                    _ => None,
                }
            })
    }

    async fn list_services(&self) -> Result<Vec<ObservedService>, DockerError> {
        self.list_services_sharing(KnownDefinitions::none()).await
    }

    async fn list_services_sharing(
        &self,
        known: KnownDefinitions<'_>,
    ) -> Result<Vec<ObservedService>, DockerError> {
        let names = self.network_names();
        // A service on a network created since the networks were last listed is kept aside
        // (rare) and converted once the networks are listed again.
        let mut on_unknown_networks = Vec::new();
        let listed = self.raw.list_services(&self.api_version, |service| {
            if service_network_ids(&service.service).all(|id| names.contains_key(id)) {
                from_raw(service, &names).map(|service| service.sharing(known))
            } else {
                on_unknown_networks.push(service);
                None
            }
        });
        let mut services = self.bound(Op::ListServices, listed).await??;
        if !on_unknown_networks.is_empty() {
            self.list_networks().await?;
            let names = self.network_names();
            services.extend(
                on_unknown_networks
                    .into_iter()
                    .filter_map(|s| from_raw(s, &names))
                    .map(|service| service.sharing(known)),
            );
        }
        Ok(services)
    }

    async fn list_networks(&self) -> Result<Vec<ObservedNetwork>, DockerError> {
        let networks = self
            .bound(
                Op::ListNetworks,
                self.docker.list_networks(None::<ListNetworksOptions>),
            )
            .await?
            .map_err(|e| classify(e, Op::ListNetworks, Resource::Network, ""))?;
        let observed: Vec<ObservedNetwork> = networks.iter().filter_map(from_network).collect();
        self.set_networks(&observed);
        Ok(observed)
    }

    async fn list_tasks(&self) -> Result<Vec<ObservedTask>, DockerError> {
        self.bound(Op::ListTasks, self.raw.list_tasks(&self.api_version))
            .await?
    }

    async fn list_nodes(&self) -> Result<Vec<ObservedNode>, DockerError> {
        let nodes = self
            .bound(
                Op::ListNodes,
                self.docker.list_nodes(None::<ListNodesOptions>),
            )
            .await?
            .map_err(|e| classify(e, Op::ListNodes, Resource::Service, ""))?;
        Ok(nodes
            .into_iter()
            .filter_map(|node| {
                Some(ObservedNode {
                    id: node.id?,
                    hostname: node
                        .description
                        .and_then(|d| d.hostname)
                        .unwrap_or_default(),
                    state: node
                        .status
                        .and_then(|s| s.state)
                        .map(|s| s.to_string())
                        .unwrap_or_default(),
                    role: match node.spec.as_ref().and_then(|s| s.role) {
                        Some(NodeSpecRoleEnum::MANAGER) => NodeRole::Manager,
                        Some(NodeSpecRoleEnum::WORKER) => NodeRole::Worker,
                        _ => NodeRole::Unknown,
                    },
                    availability: match node.spec.as_ref().and_then(|s| s.availability) {
                        Some(NodeSpecAvailabilityEnum::ACTIVE) => NodeAvailability::Active,
                        Some(NodeSpecAvailabilityEnum::PAUSE) => NodeAvailability::Pause,
                        Some(NodeSpecAvailabilityEnum::DRAIN) => NodeAvailability::Drain,
                        _ => NodeAvailability::Unknown,
                    },
                })
            })
            .collect())
    }

    async fn inspect_service(&self, name: &str) -> Result<Option<ObservedService>, DockerError> {
        let read = self.raw.inspect_service(&self.api_version, name);
        let Some(service) = self.bound(Op::InspectService, read).await?? else {
            return Ok(None);
        };
        let mut names = self.network_names();
        if service_network_ids(&service.service).any(|id| !names.contains_key(id)) {
            // A network we have not seen yet: read just those (usually one call).
            for id in service_network_ids(&service.service) {
                if !names.contains_key(id) {
                    self.inspect_network(id).await?;
                }
            }
            names = self.network_names();
        }
        Ok(from_raw(service, &names))
    }

    async fn inspect_network(&self, name: &str) -> Result<Option<ObservedNetwork>, DockerError> {
        let read = self.raw.inspect_network(&self.api_version, name);
        let network = self.bound(Op::InspectNetwork, read).await??;
        let observed = network.as_ref().and_then(from_network);
        match &observed {
            Some(network) => self.remember_networks([network]),
            None => self.forget_network(name),
        }
        Ok(observed)
    }

    async fn create_network(
        &self,
        definition: &NetworkDefinition,
        owner_labels: &BTreeMap<String, String>,
    ) -> Result<ObservedNetwork, DockerError> {
        let request = to_network_create(definition, owner_labels);
        let response = self
            .bound(Op::CreateNetwork, self.docker.create_network(request))
            .await?
            .map_err(|e| classify(e, Op::CreateNetwork, Resource::Network, &definition.name))?;
        // The engine answers with the id; the rest is what we sent, so no read-back is needed.
        let network = ObservedNetwork {
            id: response.id,
            scope: if definition.driver == "overlay" {
                "swarm"
            } else {
                "local"
            }
            .to_owned(),
            definition: definition.clone(),
            ownership: Ownership::from_labels(owner_labels),
        };
        self.remember_networks([&network]);
        Ok(network)
    }

    async fn remove_network(&self, id: &str) -> Result<(), DockerError> {
        let removed = match self
            .bound(Op::RemoveNetwork, self.docker.remove_network(id))
            .await
        {
            Ok(answer) => answer.map_err(|e| classify(e, Op::RemoveNetwork, Resource::Network, id)),
            Err(timeout) => Err(timeout),
        };
        if matches!(removed, Ok(()) | Err(DockerError::NotFound { .. })) {
            self.forget_network(id);
        }
        removed
    }

    async fn create_service(
        &self,
        definition: &ServiceDefinition,
        owner_labels: &BTreeMap<String, String>,
    ) -> Result<String, DockerError> {
        let spec = self
            .with_data_ids(definition, to_service_spec(definition, owner_labels))
            .await?;
        let response = self
            .bound(Op::CreateService, self.docker.create_service(spec, None))
            .await?
            .map_err(|e| classify(e, Op::CreateService, Resource::Service, &definition.name))?;
        for warning in response.warnings.into_iter().flatten() {
            debug!(service = %definition.name, %warning, "engine warning on create");
        }
        response.id.ok_or_else(|| DockerError::Undecodable {
            op: Op::CreateService,
            message: "the create answer has no ID".to_owned(),
        })
    }

    async fn update_service(
        &self,
        id: &str,
        version: u64,
        definition: &ServiceDefinition,
        owner_labels: &BTreeMap<String, String>,
    ) -> Result<(), DockerError> {
        let spec = self
            .with_data_ids(definition, to_service_spec(definition, owner_labels))
            .await?;
        let version = i32::try_from(version).map_err(|_| DockerError::Undecodable {
            op: Op::UpdateService,
            message: format!("service version {version} does not fit the API's int32"),
        })?;
        let options = UpdateServiceOptionsBuilder::default()
            .version(version)
            .build();
        let response = self
            .bound(
                Op::UpdateService,
                self.docker.update_service(id, spec, options, None),
            )
            .await?
            .map_err(|e| classify(e, Op::UpdateService, Resource::Service, &definition.name))?;
        for warning in response.warnings.into_iter().flatten() {
            warn!(service = %definition.name, %warning, "engine warning on update");
        }
        Ok(())
    }

    async fn remove_service(&self, id: &str) -> Result<(), DockerError> {
        self.bound(Op::RemoveService, self.docker.delete_service(id))
            .await?
            .map_err(|e| classify(e, Op::RemoveService, Resource::Service, id))
    }

    async fn list_data(&self, kind: DataKind) -> Result<Vec<ObservedData>, DockerError> {
        let op = data_op(kind, DataOp::List);
        // bollard has a type for configs and another for secrets, of one shape: each is read as
        // (id, spec name, spec labels), then made an ObservedData by one piece of code.
        type IdNameLabels = (
            Option<String>,
            Option<String>,
            Option<HashMap<String, String>>,
        );
        let listed: Vec<IdNameLabels> = match kind {
            DataKind::Config => self
                .bound(op, self.docker.list_configs(None))
                .await?
                .map_err(|e| classify(e, op, Resource::Config, ""))?
                .into_iter()
                .map(|c| {
                    let spec = c.spec.unwrap_or_default();
                    (c.id, spec.name, spec.labels)
                })
                .collect(),
            DataKind::Secret => self
                .bound(op, self.docker.list_secrets(None))
                .await?
                .map_err(|e| classify(e, op, Resource::Secret, ""))?
                .into_iter()
                .map(|s| {
                    let spec = s.spec.unwrap_or_default();
                    (s.id, spec.name, spec.labels)
                })
                .collect(),
        };
        // One without an id or a name (no spec) is not one the operator can refer to.
        Ok(listed
            .into_iter()
            .filter_map(|(id, name, labels)| {
                Some(ObservedData {
                    kind,
                    id: id?,
                    name: name?,
                    labels: labels.unwrap_or_default().into_iter().collect(),
                })
            })
            .collect())
    }

    async fn create_data(
        &self,
        data: &DesiredData,
        labels: &BTreeMap<String, String>,
    ) -> Result<String, DockerError> {
        use base64::Engine as _;
        let op = data_op(data.kind, DataOp::Create);
        let encoded = base64::engine::general_purpose::STANDARD.encode(&data.content.0);
        let labels: HashMap<String, String> =
            labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let response = match data.kind {
            DataKind::Config => self
                .bound(
                    op,
                    self.docker.create_config(ConfigSpec {
                        name: Some(data.name.clone()),
                        labels: Some(labels),
                        data: Some(encoded),
                        templating: None,
                    }),
                )
                .await?
                .map_err(|e| classify(e, op, Resource::Config, &data.name)),
            DataKind::Secret => self
                .bound(
                    op,
                    self.docker.create_secret(SecretSpec {
                        name: Some(data.name.clone()),
                        labels: Some(labels),
                        data: Some(encoded),
                        ..Default::default()
                    }),
                )
                .await?
                .map_err(|e| classify(e, op, Resource::Secret, &data.name)),
        }?;
        Ok(response.id)
    }

    async fn remove_data(&self, kind: DataKind, id: &str) -> Result<(), DockerError> {
        let op = data_op(kind, DataOp::Remove);
        match kind {
            DataKind::Config => self
                .bound(op, self.docker.delete_config(id))
                .await?
                .map_err(|e| classify(e, op, Resource::Config, id)),
            DataKind::Secret => self
                .bound(op, self.docker.delete_secret(id))
                .await?
                .map_err(|e| classify(e, op, Resource::Secret, id)),
        }
    }
}

impl DockerEngine {
    /// Fills in the ids of the configs and secrets a rendered service mounts: swarm wants id
    /// and name, the definition has names. One list per kind, only for services that mount
    /// some.
    async fn with_data_ids(
        &self,
        definition: &ServiceDefinition,
        mut spec: bollard::models::ServiceSpec,
    ) -> Result<bollard::models::ServiceSpec, DockerError> {
        let ids = |list: Vec<ObservedData>| -> HashMap<String, String> {
            list.into_iter().map(|d| (d.name, d.id)).collect()
        };
        let config_names = definition.data_names(DataKind::Config);
        let configs = match config_names.is_empty() {
            true => HashMap::new(),
            false => ids(self.list_data(DataKind::Config).await?),
        };
        let secrets = match definition.secrets.is_empty() {
            true => HashMap::new(),
            false => ids(self.list_data(DataKind::Secret).await?),
        };
        fill_data_ids(&mut spec, &configs, &secrets).map_err(|missing| DockerError::NotFound {
            kind: if configs.contains_key(&missing) || config_names.contains(&missing) {
                Resource::Config
            } else {
                Resource::Secret
            },
            name: missing,
        })?;
        Ok(spec)
    }
}

/// A service as the engine answered it, converted, with its previous spec's mounts.
fn from_raw(
    raw: super::raw::RawService,
    network_names: &HashMap<String, String>,
) -> Option<ObservedService> {
    let mut service = from_service(&raw.service, network_names)?;
    service.revision.previous_mounts = raw.previous_mounts;
    Some(service)
}

/// The network ids a service's task template attaches to.
fn service_network_ids(service: &bollard::models::Service) -> impl Iterator<Item = &str> {
    service
        .spec
        .as_ref()
        .and_then(|s| s.task_template.as_ref())
        .and_then(|t| t.networks.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|n| n.target.as_deref())
}
