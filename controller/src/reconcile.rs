//! Reconcile one object: plan it against the shared view, apply the write, record the outcome.

use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use crate::docker::{DockerError, SwarmApi};
use crate::metrics::Metrics;
use crate::plan::{Action, ObjectKey, UpdateCause, plan_object};
use crate::runtime;
use crate::triggers::refresh_service;
use crate::world::{ObjectOutcome, World};

/// Why a reconcile failed; the runtime retries it with backoff.
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
}

/// What a reconcile needs: the engine, the shared view and the metrics.
pub struct Context<A> {
    /// The swarm.
    pub api: A,
    /// The shared view.
    pub world: World,
    /// Counters.
    pub metrics: Arc<Metrics>,
}

/// After a create races with another writer, look again soon rather than wait for a resync.
const RECHECK_AFTER_RACE: Duration = Duration::from_millis(500);

/// Reconciles `key` once. Writes at most one object.
pub async fn reconcile<A: SwarmApi>(
    ctx: Arc<Context<A>>,
    key: ObjectKey,
) -> Result<runtime::Action, ReconcileError> {
    let plan = {
        let world = ctx.world.read();
        plan_object(&key, &world.desired, &world.observed)
    };
    let result = match plan.action {
        Some(action) => apply(&ctx, &key, action).await,
        None => Ok(runtime::Action::await_change()),
    };
    ctx.world.set_outcome(
        &key,
        ObjectOutcome {
            last_error: result.as_ref().err().map(ToString::to_string),
            conflict: plan.conflict,
        },
    );
    result
}

/// Performs one planned write and patches the shared view with its result.
async fn apply<A: SwarmApi>(
    ctx: &Context<A>,
    key: &ObjectKey,
    action: Action,
) -> Result<runtime::Action, ReconcileError> {
    let docker_error = |source| ReconcileError::Docker {
        key: key.clone(),
        source,
    };
    match action {
        Action::CreateNetwork { desired } => {
            info!(%key, "creating network");
            let labels = desired.owner_labels();
            match ctx.api.create_network(&desired.definition, &labels).await {
                Ok(network) => {
                    ctx.world
                        .write()
                        .observed
                        .networks
                        .insert(key.name.clone(), network);
                }
                Err(DockerError::AlreadyExists { .. }) => {
                    return Ok(runtime::Action::requeue(RECHECK_AFTER_RACE));
                }
                Err(e) => return Err(docker_error(e)),
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
                    return Err(ReconcileError::WaitingForNetwork {
                        key: key.clone(),
                        network: missing.clone(),
                    });
                }
            }
            info!(%key, image = %desired.definition.image, "creating service");
            let labels = desired.owner_labels();
            match ctx.api.create_service(&desired.definition, &labels).await {
                Ok(()) | Err(DockerError::AlreadyExists { .. }) => {}
                Err(e) => return Err(docker_error(e)),
            }
            refresh_service(&ctx.api, &ctx.world, &key.name)
                .await
                .map_err(docker_error)?;
        }
        Action::UpdateService {
            id,
            version,
            desired,
            changes,
            cause,
        } => {
            let fields: Vec<String> = changes
                .iter()
                .map(|c| format!("{}: {} → {}", c.path, c.old, c.new))
                .collect();
            match cause {
                UpdateCause::SpecChanged => info!(%key, changes = ?fields, "updating service"),
                UpdateCause::Drift => {
                    warn!(%key, changes = ?fields, "correcting drift");
                    ctx.metrics.drift_corrected();
                }
            }
            let labels = desired.owner_labels();
            ctx.api
                .update_service(&id, version, &desired.definition, &labels)
                .await
                .map_err(docker_error)?;
            refresh_service(&ctx.api, &ctx.world, &key.name)
                .await
                .map_err(docker_error)?;
            let replan = {
                let world = ctx.world.read();
                plan_object(key, &world.desired, &world.observed).action
            };
            if let Some(Action::UpdateService { changes, .. }) = replan {
                let fields: Vec<&str> = changes.iter().map(|c| c.path.as_str()).collect();
                return Err(ReconcileError::NotConverging {
                    key: key.clone(),
                    fields: fields.join(", "),
                });
            }
        }
        Action::RemoveService { id, .. } => {
            info!(%key, "removing service: its spec is gone");
            match ctx.api.remove_service(&id).await {
                Ok(()) | Err(DockerError::NotFound { .. }) => {}
                Err(e) => return Err(docker_error(e)),
            }
            ctx.world.write().observed.services.remove(&key.name);
        }
        Action::RemoveNetwork { id, .. } => {
            info!(%key, "removing network: its spec is gone");
            match ctx.api.remove_network(&id).await {
                Ok(()) | Err(DockerError::NotFound { .. }) => {}
                Err(e) => return Err(docker_error(e)),
            }
            ctx.world.write().observed.networks.remove(&key.name);
        }
    }
    Ok(runtime::Action::await_change())
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
