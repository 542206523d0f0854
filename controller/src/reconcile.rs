//! Reconcile one object: plan it against the shared view, make at most one write, report the
//! write and the outcome to the reflector.

use std::sync::Arc;

use tracing::{info, warn};

use crate::docker::{DockerError, SwarmApi};
use crate::metrics::Metrics;
use crate::plan::{Action, ObjectKey, ObjectPlan, UpdateCause, plan_object};
use crate::runtime;
use crate::world::{Blocker, ObjectOutcome, Observation, Reporter, World, Written};

/// Why a reconcile did not finish; the runtime retries it with backoff (earlier when the
/// object or its spec changes).
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The Docker engine refused or failed the write.
    #[error("{key}: {source}")]
    Docker {
        /// The object.
        key: ObjectKey,
        /// What the engine said.
        source: DockerError,
    },
    /// A service still differs from its spec right after it was written: the engine stores
    /// some field differently than the operator compares it. Retried with backoff (instead of
    /// a hot loop of updates) and reported.
    #[error(
        "{key}: still differs from its spec after an update ({fields}); this is a bug in the operator's comparison, please report it"
    )]
    NotConverging {
        /// The service.
        key: ObjectKey,
        /// The fields that still differ.
        fields: String,
    },
    /// A service needs a network that does not exist yet (its own reconcile creates it).
    #[error("{key}: waiting for network {network:?} to be created")]
    WaitingForNetwork {
        /// The service.
        key: ObjectKey,
        /// The missing network.
        network: String,
    },
    /// A network whose spec is gone is still used by services the operator does not remove.
    #[error(
        "{key}: its spec is gone, but services {users:?} still use it; it is removed once they are gone (remove them or detach them from the network)"
    )]
    WaitingForUsers {
        /// The network.
        key: ObjectKey,
        /// The services attached to it, by name where known.
        users: Vec<String>,
    },
    /// A published port of the service is held by another service.
    #[error(
        "{key}: published port {port} is already used by service {holder:?}; free the port or change the spec's published port"
    )]
    PortConflict {
        /// The service.
        key: ObjectKey,
        /// The port.
        port: u16,
        /// The service holding it.
        holder: String,
    },
    /// The service kept changing under the operator between its read and its update.
    #[error("{key}: the service kept changing while being updated ({attempts} attempts); retrying later")]
    KeptChanging {
        /// The service.
        key: ObjectKey,
        /// Reads and updates tried.
        attempts: u32,
    },
}

impl ReconcileError {
    /// What blocks the object, as the status reports it.
    pub fn blocker(&self) -> Blocker {
        match self {
            ReconcileError::WaitingForNetwork { network, .. } => Blocker::WaitingForNetwork {
                network: network.clone(),
            },
            ReconcileError::WaitingForUsers { users, .. } => Blocker::WaitingForUsers {
                users: users.clone(),
            },
            ReconcileError::PortConflict { port, holder, .. } => Blocker::PortConflict {
                port: *port,
                holder: holder.clone(),
            },
            _ => Blocker::Failed,
        }
    }
}

/// What a reconcile needs: the engine, the shared view, the reflector and the metrics.
pub struct Context<A> {
    /// The swarm.
    pub api: Arc<A>,
    /// The shared view (read only).
    pub world: World,
    /// Where reads and writes are reported.
    pub reporter: Reporter,
    /// Counters.
    pub metrics: Arc<Metrics>,
}

/// Reads and writes one reconcile may try when the service changes under it (stale version,
/// "update out of sequence") before it gives up and backs off.
const MAX_ATTEMPTS: u32 = 3;

/// Reconciles `key` once. Writes at most one object (a stale version costs a re-read and a
/// second try, never a second different write).
pub async fn reconcile<A: SwarmApi>(
    ctx: Arc<Context<A>>,
    key: ObjectKey,
) -> Result<runtime::Action, ReconcileError> {
    let mut attempt = 1;
    let (result, conflict) = loop {
        let plan = current_plan(&ctx, &key);
        let Some(action) = plan.action else {
            break (Ok(runtime::Action::await_change()), plan.conflict);
        };
        match apply(&ctx, &key, action).await {
            Err(Retry::Reread) if attempt < MAX_ATTEMPTS => attempt += 1,
            Err(Retry::Reread) => {
                break (
                    Err(ReconcileError::KeptChanging {
                        key: key.clone(),
                        attempts: attempt,
                    }),
                    plan.conflict,
                );
            }
            Err(Retry::Fail(error)) => break (Err(error), plan.conflict),
            Ok(()) => break (Ok(runtime::Action::await_change()), plan.conflict),
        }
    };
    let error = result
        .as_ref()
        .err()
        .map(|error| (error.blocker(), error.to_string()));
    ctx.reporter
        .outcome(key.clone(), ObjectOutcome { error, conflict })
        .await;
    result
}

fn current_plan<A>(ctx: &Context<A>, key: &ObjectKey) -> ObjectPlan {
    let world = ctx.world.read();
    plan_object(key, &world.desired, &world.observed)
}

/// Why [`apply`] did not complete.
enum Retry {
    /// The object changed under us; it was re-read: plan again.
    Reread,
    /// A failure to report.
    Fail(ReconcileError),
}

impl From<ReconcileError> for Retry {
    fn from(error: ReconcileError) -> Self {
        Retry::Fail(error)
    }
}

/// Re-reads one service and reports it.
async fn reread_service<A: SwarmApi>(ctx: &Context<A>, key: &ObjectKey) -> Result<(), Retry> {
    let ticket = ctx.world.ticket();
    let service = ctx
        .api
        .inspect_service(&key.name)
        .await
        .map_err(|source| docker_error(key, source))?;
    ctx.reporter
        .observed(Observation::Service {
            ticket,
            name: key.name.clone(),
            service,
        })
        .await;
    Ok(())
}

/// Re-reads one network and reports it.
async fn reread_network<A: SwarmApi>(ctx: &Context<A>, key: &ObjectKey) -> Result<(), Retry> {
    let ticket = ctx.world.ticket();
    let network = ctx
        .api
        .inspect_network(&key.name)
        .await
        .map_err(|source| docker_error(key, source))?;
    ctx.reporter
        .observed(Observation::Network {
            ticket,
            name: key.name.clone(),
            network,
        })
        .await;
    Ok(())
}

fn docker_error(key: &ObjectKey, source: DockerError) -> Retry {
    Retry::Fail(match source {
        DockerError::PortConflict { port, holder, .. } => ReconcileError::PortConflict {
            key: key.clone(),
            port,
            holder,
        },
        source => ReconcileError::Docker {
            key: key.clone(),
            source,
        },
    })
}

/// Performs one planned write and reports it.
async fn apply<A: SwarmApi>(ctx: &Context<A>, key: &ObjectKey, action: Action) -> Result<(), Retry> {
    match action {
        Action::CreateNetwork { desired } => {
            info!(%key, "creating network");
            match ctx
                .api
                .create_network(&desired.definition, &desired.owner_labels())
                .await
            {
                Ok(network) => ctx.reporter.written(Written::NetworkCreated(network)).await,
                // Someone else created it: read it, then plan again.
                Err(DockerError::AlreadyExists { .. }) => {
                    reread_network(ctx, key).await?;
                    return Err(Retry::Reread);
                }
                Err(e) => return Err(docker_error(key, e)),
            }
        }
        Action::CreateService { desired } => {
            {
                let world = ctx.world.read();
                if let Some(missing) = desired
                    .definition
                    .networks
                    .iter()
                    .find(|n| !world.observed.networks.contains_key(*n))
                {
                    return Err(Retry::Fail(ReconcileError::WaitingForNetwork {
                        key: key.clone(),
                        network: missing.clone(),
                    }));
                }
            }
            info!(%key, image = %desired.definition.image, "creating service");
            match ctx
                .api
                .create_service(&desired.definition, &desired.owner_labels())
                .await
            {
                // The create answer carries the id; the rest is what we sent. No read-back:
                // the engine's event about it confirms the version later.
                Ok(id) => {
                    ctx.reporter
                        .written(Written::ServiceCreated { id, desired })
                        .await;
                }
                Err(DockerError::AlreadyExists { .. }) => {
                    reread_service(ctx, key).await?;
                    return Err(Retry::Reread);
                }
                Err(e) => return Err(docker_error(key, e)),
            }
        }
        Action::UpdateService {
            id,
            version,
            desired,
            changes,
            cause,
        } => {
            if version == 0 {
                // Created by us and not read back yet: the update needs the current version.
                reread_service(ctx, key).await?;
                return Err(Retry::Reread);
            }
            let fields: Vec<String> = changes
                .iter()
                .map(|c| format!("{}: {} → {}", c.path, c.old, c.new))
                .collect();
            match cause {
                UpdateCause::SpecChanged => info!(%key, changes = ?fields, "updating service"),
                UpdateCause::Drift => warn!(%key, changes = ?fields, "correcting drift"),
            }
            match ctx
                .api
                .update_service(&id, version, &desired.definition, &desired.owner_labels())
                .await
            {
                Ok(()) => {
                    if cause == UpdateCause::Drift {
                        ctx.metrics.drift_corrected();
                    }
                    ctx.reporter
                        .written(Written::ServiceUpdated {
                            id,
                            based_on: version,
                            desired,
                        })
                        .await;
                }
                Err(DockerError::OutOfSequence { .. }) => {
                    // Someone else (swarm itself, or a human) wrote in between: read the
                    // service again and plan against what is there now.
                    reread_service(ctx, key).await?;
                    return Err(Retry::Reread);
                }
                Err(DockerError::NotFound { .. }) => {
                    reread_service(ctx, key).await?;
                    return Err(Retry::Reread);
                }
                Err(e) => return Err(docker_error(key, e)),
            }
            // Read back once: it gives the new version for the next update, and shows whether
            // the engine stored what we sent (if not, report it instead of rewriting in a loop).
            reread_service(ctx, key).await?;
            if let Some(Action::UpdateService { changes, .. }) = current_plan(ctx, key).action {
                let fields: Vec<&str> = changes.iter().map(|c| c.path.as_str()).collect();
                return Err(Retry::Fail(ReconcileError::NotConverging {
                    key: key.clone(),
                    fields: fields.join(", "),
                }));
            }
        }
        Action::RemoveService { name, id } => {
            info!(%key, "removing service: its spec is gone");
            match ctx.api.remove_service(&id).await {
                Ok(()) | Err(DockerError::NotFound { .. }) => {
                    ctx.reporter
                        .written(Written::ServiceRemoved { name, id })
                        .await;
                }
                Err(e) => return Err(docker_error(key, e)),
            }
        }
        Action::RemoveNetwork { name, id } => {
            info!(%key, "removing network: its spec is gone");
            match ctx.api.remove_network(&id).await {
                Ok(()) | Err(DockerError::NotFound { .. }) => {
                    ctx.reporter
                        .written(Written::NetworkRemoved { name, id })
                        .await;
                }
                Err(DockerError::InUse { users, .. }) => {
                    let users = service_names(&ctx.world, users);
                    return Err(Retry::Fail(ReconcileError::WaitingForUsers {
                        key: key.clone(),
                        users,
                    }));
                }
                Err(e) => return Err(docker_error(key, e)),
            }
        }
    }
    Ok(())
}

/// Service ids as the engine names them → names, where the cache knows them.
fn service_names(world: &World, ids: Vec<String>) -> Vec<String> {
    let state = world.read();
    ids.into_iter()
        .map(|id| {
            state
                .observed
                .services
                .values()
                .find(|s| s.id == id || s.definition.name == id)
                .map_or(id, |s| s.definition.name.clone())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    //! The reconcile step against an in-memory swarm. This only checks the step's own logic
    //! (ordering, outcomes, loop protection); `tests/swarm.rs` proves it on a real swarm.

    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::*;
    use crate::definition::tests::{sample_network, sample_service};
    use crate::definition::{DEFAULT_INSTANCE, Mode, NetworkDefinition, ServiceDefinition};
    use crate::desired::DesiredObject;
    use crate::docker::{Observed, ObservedNetwork, ObservedService, ObservedTask, Ownership};

    /// An in-memory swarm. `mangle` alters what is stored on update, to imitate an engine that
    /// normalizes a field differently than the operator compares it.
    #[derive(Default)]
    struct FakeSwarm {
        services: Mutex<BTreeMap<String, ObservedService>>,
        writes: Mutex<Vec<String>>,
        mangle: Option<fn(&mut ServiceDefinition)>,
    }

    impl FakeSwarm {
        fn store(&self, definition: &ServiceDefinition, labels: &BTreeMap<String, String>) {
            let mut definition = definition.clone();
            if let Some(mangle) = self.mangle {
                mangle(&mut definition);
            }
            let mut services = self.services.lock().unwrap();
            let version = services.get(&definition.name).map_or(1, |s| s.version + 1);
            services.insert(
                definition.name.clone(),
                ObservedService {
                    id: format!("id-{}", definition.name),
                    version,
                    definition,
                    ownership: Ownership::from_labels(labels),
                    virtual_ips: vec![],
                    update_status: None,
                },
            );
        }
    }

    impl SwarmApi for FakeSwarm {
        async fn observe(&self) -> Result<Observed, DockerError> {
            unimplemented!("reconcile never lists the swarm")
        }
        async fn list_tasks(&self) -> Result<Vec<ObservedTask>, DockerError> {
            Ok(vec![])
        }
        async fn inspect_service(
            &self,
            name: &str,
        ) -> Result<Option<ObservedService>, DockerError> {
            Ok(self.services.lock().unwrap().get(name).cloned())
        }
        async fn create_network(
            &self,
            definition: &NetworkDefinition,
            labels: &BTreeMap<String, String>,
        ) -> Result<ObservedNetwork, DockerError> {
            self.writes
                .lock()
                .unwrap()
                .push(format!("create network {}", definition.name));
            Ok(ObservedNetwork {
                id: "net-id".into(),
                scope: "swarm".into(),
                definition: definition.clone(),
                ownership: Ownership::from_labels(labels),
            })
        }
        async fn remove_network(&self, id: &str) -> Result<(), DockerError> {
            self.writes
                .lock()
                .unwrap()
                .push(format!("remove network {id}"));
            Ok(())
        }
        async fn create_service(
            &self,
            definition: &ServiceDefinition,
            labels: &BTreeMap<String, String>,
        ) -> Result<(), DockerError> {
            self.writes
                .lock()
                .unwrap()
                .push(format!("create service {}", definition.name));
            self.store(definition, labels);
            Ok(())
        }
        async fn update_service(
            &self,
            _id: &str,
            _version: u64,
            definition: &ServiceDefinition,
            labels: &BTreeMap<String, String>,
        ) -> Result<(), DockerError> {
            self.writes
                .lock()
                .unwrap()
                .push(format!("update service {}", definition.name));
            self.store(definition, labels);
            Ok(())
        }
        async fn remove_service(&self, id: &str) -> Result<(), DockerError> {
            self.writes
                .lock()
                .unwrap()
                .push(format!("remove service {id}"));
            Ok(())
        }
    }

    fn context(api: FakeSwarm) -> Arc<Context<FakeSwarm>> {
        let ctx = Arc::new(Context {
            api,
            world: World::default(),
            metrics: Arc::new(Metrics::new()),
        });
        let mut world = ctx.world.write();
        world.desired.prune_allowed = true;
        world.desired.services.insert(
            "quote".into(),
            DesiredObject::new(sample_service("quote"), "a.yaml".into(), DEFAULT_INSTANCE),
        );
        world.desired.networks.insert(
            "my_network".into(),
            DesiredObject::new(
                sample_network("my_network"),
                "a.yaml".into(),
                DEFAULT_INSTANCE,
            ),
        );
        drop(world);
        ctx
    }

    fn writes(ctx: &Context<FakeSwarm>) -> Vec<String> {
        ctx.api.writes.lock().unwrap().clone()
    }

    #[tokio::test]
    async fn a_service_waits_for_its_network_then_converges_with_one_write_each() {
        let ctx = context(FakeSwarm::default());
        let service = ObjectKey::service("quote");
        let err = reconcile(ctx.clone(), service.clone()).await.unwrap_err();
        assert!(
            matches!(err, ReconcileError::WaitingForNetwork { .. }),
            "{err}"
        );
        assert!(
            ctx.world.read().outcomes[&service]
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("waiting for network")),
        );
        reconcile(ctx.clone(), ObjectKey::network("my_network"))
            .await
            .unwrap();
        reconcile(ctx.clone(), service.clone()).await.unwrap();
        // Converged: further reconciles write nothing and clear the error.
        reconcile(ctx.clone(), service.clone()).await.unwrap();
        reconcile(ctx.clone(), ObjectKey::network("my_network"))
            .await
            .unwrap();
        assert_eq!(
            writes(&ctx),
            ["create network my_network", "create service quote"]
        );
        assert_eq!(ctx.world.read().outcomes[&service].last_error, None);
    }

    #[tokio::test]
    async fn drift_is_corrected_and_counted() {
        let ctx = context(FakeSwarm::default());
        reconcile(ctx.clone(), ObjectKey::network("my_network"))
            .await
            .unwrap();
        reconcile(ctx.clone(), ObjectKey::service("quote"))
            .await
            .unwrap();
        // Someone scales by hand.
        let mut drifted = ctx.world.read().observed.services["quote"].clone();
        drifted.definition.mode = Mode::Replicated { replicas: 1 };
        ctx.world
            .write()
            .observed
            .services
            .insert("quote".into(), drifted);
        reconcile(ctx.clone(), ObjectKey::service("quote"))
            .await
            .unwrap();
        assert_eq!(writes(&ctx).last().unwrap(), "update service quote");
        assert_eq!(ctx.metrics.drift_corrections(), 1);
        assert_eq!(
            ctx.world.read().observed.services["quote"].definition.mode,
            Mode::Replicated { replicas: 3 }
        );
    }

    #[tokio::test]
    async fn an_update_that_does_not_stick_is_an_error_not_a_loop() {
        let ctx = context(FakeSwarm {
            mangle: Some(|d| d.image.push_str("@sha256:abc")),
            ..Default::default()
        });
        reconcile(ctx.clone(), ObjectKey::network("my_network"))
            .await
            .unwrap();
        reconcile(ctx.clone(), ObjectKey::service("quote"))
            .await
            .unwrap();
        // The engine stored another image string: the next reconcile updates once, sees the
        // difference remain, and reports it instead of returning success.
        let err = reconcile(ctx.clone(), ObjectKey::service("quote"))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ReconcileError::NotConverging { fields, .. } if fields == "image"),
            "{err}"
        );
    }
}
