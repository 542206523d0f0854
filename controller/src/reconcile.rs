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
    let result = reconcile_inner(&ctx, &key).await;
    let last_error = result.as_ref().err().map(ToString::to_string);
    let conflict = {
        let world = ctx.world.read();
        plan_object(&key, &world.desired, &world.observed).conflict
    };
    ctx.world.set_outcome(
        &key,
        ObjectOutcome {
            last_error,
            conflict,
        },
    );
    result
}

async fn reconcile_inner<A: SwarmApi>(
    ctx: &Context<A>,
    key: &ObjectKey,
) -> Result<runtime::Action, ReconcileError> {
    let plan = {
        let world = ctx.world.read();
        plan_object(key, &world.desired, &world.observed)
    };
    let Some(action) = plan.action else {
        return Ok(runtime::Action::await_change());
    };
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
