//! Reconcile one object: plan it against the shared view, make at most one write, report the
//! write and the outcome to the reflector.

use std::sync::Arc;

use tracing::{info, warn};

use crate::control::plan::{Action, Conflict, ObjectKey, ObjectPlan, UpdateCause, plan_object};
use crate::control::schedule;
use crate::control::world::{Blocker, ObjectOutcome, Observation, Reporter, World, Written};
use crate::desired::data_objects::{DataKind, DataOrigin, ObservedData};
use crate::desired::definition::ServiceDefinition;
use crate::docker::{DockerError, SwarmApi};
use crate::redact::Values;
use crate::report::activity::{ActivityKind, ActivityLog};
use crate::report::metrics::Metrics;
use crate::runtime;

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
    /// A service mounts a secret `apply` created (its stored spec names it), and the swarm
    /// does not have it: only `apply` has the content, so the operator cannot recreate it.
    #[error(
        "{key}: secret {name:?} (created by `apply` for SwarmSecret {logical:?}) does not exist; run `apply` with the secret's spec again to create it"
    )]
    MissingAppliedSecret {
        /// The service.
        key: ObjectKey,
        /// The secret's swarm name.
        name: String,
        /// The SwarmSecret's `metadata.name`.
        logical: String,
    },
    /// The service kept changing under the operator between its read and its update.
    #[error(
        "{key}: the service kept changing while being updated ({attempts} attempts); retrying later"
    )]
    KeptChanging {
        /// The service.
        key: ObjectKey,
        /// Reads and updates tried.
        attempts: u32,
    },
    /// The reconcile's calls together took longer than its deadline (a hung or overloaded
    /// engine); what it did so far is read back by the next attempt.
    #[error(
        "{key}: the reconcile did not finish within {}; retrying with backoff",
        humantime::format_duration(*after)
    )]
    TimedOut {
        /// The object.
        key: ObjectKey,
        /// The deadline.
        after: std::time::Duration,
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
    /// What the status page lists as recent events.
    pub activity: ActivityLog,
    /// The longest one reconcile may take, all its calls together.
    pub deadline: std::time::Duration,
    /// The time, for job schedules.
    pub clock: schedule::Clock,
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
    let (result, conflict) = match tokio::time::timeout(ctx.deadline, attempts(&ctx, &key)).await {
        Ok(done) => done,
        Err(_) => (
            Err(ReconcileError::TimedOut {
                key: key.clone(),
                after: ctx.deadline,
            }),
            current_plan(&ctx, &key).conflict,
        ),
    };
    if let Err(ReconcileError::Docker {
        source: DockerError::NotLeader { op },
        ..
    }) = &result
    {
        // Not a failure of the object: this replica stopped leading mid-reconcile. Nothing
        // is reported (the new leader does), and becoming leader again looks at every key.
        info!(%key, %op, "the leader lease was lost before this write: not sent");
        ctx.metrics.reconcile_skipped_as_follower();
        return Ok(runtime::Action::await_change());
    }
    let error = result
        .as_ref()
        .err()
        .map(|error| (error.blocker(), error.to_string()));
    // Waiting for a network being created is ordering, not a failure (the status shows it
    // as Progressing): the activity log keeps it out.
    if let Some((blocker, message)) = &error
        && !matches!(blocker, Blocker::WaitingForNetwork { .. })
    {
        ctx.activity
            .record(ActivityKind::Error, &key, message.clone());
    }
    ctx.reporter
        .outcome(key.clone(), ObjectOutcome { error, conflict })
        .await;
    result
}

/// Plans and applies until the object is written once or needs nothing, re-reading when it
/// changed under the write.
async fn attempts<A: SwarmApi>(
    ctx: &Context<A>,
    key: &ObjectKey,
) -> (Result<runtime::Action, ReconcileError>, Option<Conflict>) {
    let mut attempt = 1;
    loop {
        let plan = current_plan(ctx, key);
        let Some(action) = plan.action else {
            // In sync: a scheduled job may be due for its next run.
            match scheduled_run(ctx, key).await {
                Err(Retry::Reread) if attempt < MAX_ATTEMPTS => {
                    attempt += 1;
                    continue;
                }
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
                Ok(next) => break (Ok(next), plan.conflict),
            }
        };
        match apply(ctx, key, action).await {
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
            // A scheduled job just written has no event to wake it (our own writes trigger
            // nothing): look again soon, to count its schedule from the write.
            Ok(()) if is_scheduled(ctx, key) => {
                break (Ok(runtime::Action::requeue(RUN_POLL)), plan.conflict);
            }
            Ok(()) => break (Ok(runtime::Action::await_change()), plan.conflict),
        }
    }
}

fn current_plan<A>(ctx: &Context<A>, key: &ObjectKey) -> ObjectPlan {
    let world = ctx.world.snapshot();
    plan_object(key, &world.desired, &world.observed)
}

/// How long to wait before looking again at a job whose due run waits for the previous one
/// (`concurrencyPolicy: Forbid`): task states come from polling, not events.
const RUN_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether `key` is a service whose spec has a `schedule`.
fn is_scheduled<A>(ctx: &Context<A>, key: &ObjectKey) -> bool {
    key.kind == crate::control::plan::ObjectKind::Service
        && ctx
            .world
            .snapshot()
            .desired
            .services
            .get(&key.name)
            .is_some_and(|d| d.policy.schedule.is_some())
}

/// For a job with a `schedule` that is in sync with its spec: runs it when a scheduled time
/// has passed since its last run (one update raising `ForceUpdate`: swarm runs a job again on
/// each write), else asks to be looked at again at the next time. Only the leader reconciles,
/// so only the leader fires; the last run is the service's `UpdatedAt` on the swarm, which
/// every manager sees, so a new leader neither repeats nor loses a run.
async fn scheduled_run<A: SwarmApi>(
    ctx: &Context<A>,
    key: &ObjectKey,
) -> Result<runtime::Action, Retry> {
    let idle = Ok(runtime::Action::await_change());
    if key.kind != crate::control::plan::ObjectKind::Service {
        return idle;
    }
    let (spec, id, version, updated_at, active, mut desired) = {
        let world = ctx.world.snapshot();
        let Some(desired) = world.desired.services.get(&key.name) else {
            return idle;
        };
        let Some(spec) = desired.policy.schedule.clone() else {
            return idle;
        };
        if desired.policy.suspended || world.desired.all_suspended {
            return idle;
        }
        let Some(observed) = world.observed.services.get(&key.name) else {
            return idle;
        };
        if !observed.ownership.is_owned_by(&world.desired.instance) {
            return idle;
        }
        let active = schedule::run_active(
            world
                .observed
                .tasks
                .iter()
                .filter(|t| t.service_id == observed.id),
        );
        let mut desired = desired.clone();
        Arc::make_mut(&mut desired.definition).force_update = observed.definition.force_update;
        desired.revision = current_revision(&world);
        (
            spec,
            observed.id.clone(),
            observed.version,
            observed.revision.updated_at.clone(),
            active,
            desired,
        )
    };
    // Our own write not read back yet: its time is not known, and firing now could run twice.
    let (Some(updated_at), true) = (updated_at, version > 0) else {
        reread_service(ctx, key).await?;
        return Ok(runtime::Action::requeue(RUN_POLL));
    };
    let Ok(last_run) = chrono::DateTime::parse_from_rfc3339(&updated_at) else {
        warn!(%key, %updated_at, "the swarm's UpdatedAt does not parse: the schedule waits");
        return idle;
    };
    let Ok(parsed) = schedule::JobSchedule::parse(&spec.schedule, spec.time_zone.as_deref()) else {
        // Validation reports it; an invalid schedule never loads.
        return idle;
    };
    let now = ctx.clock.now();
    let due = match schedule::decide(
        &parsed,
        spec.concurrency,
        spec.starting_deadline,
        last_run.with_timezone(&chrono::Utc),
        now,
        active,
    ) {
        schedule::Decision::Never => return idle,
        schedule::Decision::WaitForRun => return Ok(runtime::Action::requeue(RUN_POLL)),
        schedule::Decision::WaitUntil(at) => {
            return Ok(runtime::Action::requeue(
                (at - now).to_std().unwrap_or_default(),
            ));
        }
        schedule::Decision::Fire { due } => due,
    };
    Arc::make_mut(&mut desired.definition).force_update += 1;
    match ctx
        .api
        .update_service(&id, version, &desired.definition, &desired.owner_labels())
        .await
    {
        Ok(()) => {
            // Logged once the write is made (a refused one is retried): one line per run.
            info!(%key, %due, "ran the scheduled job");
            ctx.activity.record_for_spec(
                ActivityKind::Updated,
                key,
                format!("scheduled run for {}", due.to_rfc3339()),
                Some(&desired.hash),
            );
            ctx.reporter
                .written(Written::ServiceUpdated {
                    id,
                    based_on: version,
                    desired,
                })
                .await;
        }
        Err(DockerError::OutOfSequence { .. } | DockerError::NotFound { .. }) => {
            reread_service(ctx, key).await?;
            return Err(Retry::Reread);
        }
        Err(e) => return Err(docker_error(key, e)),
    }
    // Read back: the run's time (`UpdatedAt`) is what the next due time counts from.
    reread_service(ctx, key).await?;
    let now = ctx.clock.now();
    let next = parsed
        .next_after(now)
        .map(|at| (at - now).to_std().unwrap_or_default());
    Ok(next.map_or(runtime::Action::await_change(), runtime::Action::requeue))
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
        .map_err(|source| docker_error(key, source))?
        .map(Box::new);
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

/// The first secret `definition` mounts that `apply` created, that its stored spec names and
/// that the swarm lacks: only `apply` has the content, so the operator cannot create it (the
/// plan creates every other missing version first).
fn missing_applied_secret<A>(
    ctx: &Context<A>,
    key: &ObjectKey,
    definition: &ServiceDefinition,
) -> Result<(), Retry> {
    let world = ctx.world.snapshot();
    let missing = definition
        .secrets
        .iter()
        .filter_map(|m| world.desired.data.get(&m.name))
        .find(|d| {
            d.kind == DataKind::Secret
                && d.origin == DataOrigin::Applied
                && !world.observed.secrets.contains_key(&d.name)
        });
    match missing {
        Some(data) => Err(Retry::Fail(ReconcileError::MissingAppliedSecret {
            key: key.clone(),
            name: data.name.clone(),
            logical: data.logical_name.clone(),
        })),
        None => Ok(()),
    }
}

/// Re-lists the configs or the secrets and reports them.
async fn reread_data<A: SwarmApi>(
    ctx: &Context<A>,
    key: &ObjectKey,
    kind: DataKind,
) -> Result<(), Retry> {
    let ticket = ctx.world.ticket();
    let list = ctx
        .api
        .list_data(kind)
        .await
        .map_err(|source| docker_error(key, source))?;
    ctx.reporter
        .observed(Observation::Data { ticket, kind, list })
        .await;
    Ok(())
}

/// The commit a write is made at: the one the desired state was loaded from. Set on the copy
/// that is written only, so that a new commit changes no desired object.
fn current_revision(
    world: &crate::control::world::WorldState,
) -> Option<crate::revision::Revision> {
    world.desired.revision.clone()
}

/// Performs one planned write and reports it.
async fn apply<A: SwarmApi>(
    ctx: &Context<A>,
    key: &ObjectKey,
    action: Action,
) -> Result<(), Retry> {
    match action {
        Action::CreateNetwork { mut desired } => {
            desired.revision = current_revision(&ctx.world.snapshot());
            info!(%key, "creating network");
            match ctx
                .api
                .create_network(&desired.definition, &desired.owner_labels())
                .await
            {
                Ok(network) => {
                    ctx.activity
                        .record(ActivityKind::Created, key, "network created");
                    ctx.reporter.written(Written::NetworkCreated(network)).await;
                }
                // Someone else created it: read it, then plan again.
                Err(DockerError::AlreadyExists { .. }) => {
                    reread_network(ctx, key).await?;
                    return Err(Retry::Reread);
                }
                Err(e) => return Err(docker_error(key, e)),
            }
        }
        Action::CreateService { mut desired } => {
            {
                let world = ctx.world.snapshot();
                desired.revision = current_revision(&world);
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
            missing_applied_secret(ctx, key, &desired.definition)?;
            info!(%key, image = %desired.definition.image, "creating service");
            match ctx
                .api
                .create_service(&desired.definition, &desired.owner_labels())
                .await
            {
                // The create answer carries the id; the rest is what we sent. No read-back:
                // the engine's event about it confirms the version later.
                Ok(id) => {
                    let image = format!("image {}", desired.definition.image);
                    ctx.activity.record(ActivityKind::Created, key, image);
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
            let fields: Vec<String> = changes.iter().map(|c| c.describe(Values::Hidden)).collect();
            missing_applied_secret(ctx, key, &desired.definition)?;
            let force_update = ctx
                .world
                .snapshot()
                .observed
                .services
                .get(&key.name)
                .map_or(0, |s| s.definition.force_update);
            // The swarm's ForceUpdate counter is carried over: lowering it would be a change of
            // the task template of its own (and, for a job, no run is asked for here).
            let mut desired = desired;
            Arc::make_mut(&mut desired.definition).force_update = force_update;
            desired.revision = current_revision(&ctx.world.snapshot());
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
                    let kind = match cause {
                        UpdateCause::SpecChanged => ActivityKind::Updated,
                        UpdateCause::Drift => ActivityKind::DriftCorrected,
                    };
                    ctx.activity
                        .record_for_spec(kind, key, fields.join("; "), Some(&desired.hash));
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
        Action::MarkRolledBack {
            id,
            version,
            current,
            labels,
            mark,
            ..
        } => {
            warn!(
                %key,
                spec_hash = %mark.spec_hash,
                reason = %mark.reason,
                "swarm rolled the update back: holding that spec until it changes"
            );
            match ctx
                .api
                .update_service(&id, version, &current, &labels)
                .await
            {
                Ok(()) => ctx.activity.record_for_spec(
                    ActivityKind::RolledBack,
                    key,
                    format!("held until the spec changes: {}", mark.reason),
                    Some(&mark.spec_hash),
                ),
                Err(DockerError::OutOfSequence { .. } | DockerError::NotFound { .. }) => {
                    reread_service(ctx, key).await?;
                    return Err(Retry::Reread);
                }
                Err(e) => return Err(docker_error(key, e)),
            }
            // The mark is read back like any write: the next plan holds against it.
            reread_service(ctx, key).await?;
        }
        Action::RemoveService { name, id } => {
            info!(%key, "removing service: its spec is gone");
            match ctx.api.remove_service(&id).await {
                Ok(()) | Err(DockerError::NotFound { .. }) => {
                    ctx.activity
                        .record(ActivityKind::Pruned, key, "its spec is gone");
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
                    ctx.activity
                        .record(ActivityKind::Pruned, key, "its spec is gone");
                    ctx.reporter
                        .written(Written::NetworkRemoved { name, id })
                        .await;
                }
                Err(DockerError::InUse { users, .. }) => {
                    let users = service_names(ctx, users).await;
                    return Err(Retry::Fail(ReconcileError::WaitingForUsers {
                        key: key.clone(),
                        users,
                    }));
                }
                Err(e) => return Err(docker_error(key, e)),
            }
        }
        Action::CreateData { desired } => {
            let instance = ctx.world.snapshot().desired.instance.clone();
            let labels = desired.labels(&instance);
            info!(%key, "creating version");
            match ctx.api.create_data(&desired, &labels).await {
                Ok(id) => {
                    ctx.activity.record(
                        ActivityKind::Created,
                        key,
                        format!("{} created", desired.kind),
                    );
                    ctx.reporter
                        .written(Written::DataCreated(ObservedData {
                            kind: desired.kind,
                            id,
                            name: desired.name.clone(),
                            labels,
                        }))
                        .await;
                }
                // Someone else created it (another replica, `apply`): read, then plan again.
                Err(DockerError::AlreadyExists { .. }) => {
                    reread_data(ctx, key, desired.kind).await?;
                    return Err(Retry::Reread);
                }
                Err(e) => return Err(docker_error(key, e)),
            }
        }
        Action::RemoveData {
            kind,
            name,
            id,
            applied,
        } => {
            if applied {
                // `apply` stores the spec naming a secret before it creates the secret, and
                // this replica may not have seen that spec yet: read the stored specs (one
                // list) and plan again on them before removing what only `apply` can make.
                reread_data(ctx, key, DataKind::Config).await?;
                let again = current_plan(ctx, key).action;
                if !matches!(again, Some(Action::RemoveData { .. })) {
                    return Err(Retry::Reread);
                }
            }
            info!(%key, "removing version: no longer used");
            match ctx.api.remove_data(kind, &id).await {
                Ok(()) | Err(DockerError::NotFound { .. }) => {
                    ctx.activity
                        .record(ActivityKind::Pruned, key, "no longer used");
                    ctx.reporter
                        .written(Written::DataRemoved { kind, name, id })
                        .await;
                }
                Err(e) => return Err(docker_error(key, e)),
            }
        }
    }
    Ok(())
}

/// Service ids as the engine names them → names. The view knows most; one it does not know
/// yet (attached a moment ago, its event still on the way) is read, so that the error, its log
/// line and the status name it from the first failure on. An id that can not be read stays.
async fn service_names<A: SwarmApi>(ctx: &Context<A>, ids: Vec<String>) -> Vec<String> {
    let mut names = Vec::with_capacity(ids.len());
    for id in ids {
        let known = ctx
            .world
            .snapshot()
            .observed
            .services
            .values()
            .find(|s| s.id == id || s.definition.name == id)
            .map(|s| s.definition.name.clone());
        let name = match known {
            Some(name) => name,
            None => read_service_name(ctx, &id).await.unwrap_or(id),
        };
        names.push(name);
    }
    names
}

/// The name of the service with id `id`, read from the swarm (and reported, as every read).
async fn read_service_name<A: SwarmApi>(ctx: &Context<A>, id: &str) -> Option<String> {
    let ticket = ctx.world.ticket();
    let service = ctx.api.inspect_service(id).await.ok()??;
    let name = service.definition.name.clone();
    ctx.reporter
        .observed(Observation::Service {
            ticket,
            name: name.clone(),
            service: Some(Box::new(service)),
        })
        .await;
    Some(name)
}

#[cfg(test)]
mod tests {
    //! The reconcile step against the in-memory swarm and a real reflector. This checks the
    //! step's own logic (ordering, outcomes, loop protection, races); `tests/swarm.rs` proves
    //! it on a real swarm.

    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::control::plan::ConflictReason;
    use crate::control::swarm_watch::relist;
    use crate::control::world::Reflector;
    use crate::desired::data_objects::DesiredData;
    use crate::desired::definition::tests::{sample_network, sample_service};
    use crate::desired::definition::{DEFAULT_INSTANCE, Mode, ServiceDefinition};
    use crate::desired::{DesiredObject, DesiredState};
    use crate::docker::Op;
    use crate::docker::memory::{FailRule, MemorySwarm};

    fn desired_state() -> DesiredState {
        let mut desired = DesiredState {
            prune_allowed: true,
            ..DesiredState::default()
        };
        desired.services.insert(
            "quote".into(),
            DesiredObject::new(sample_service("quote"), "a.yaml".into(), DEFAULT_INSTANCE),
        );
        desired.networks.insert(
            "my_network".into(),
            DesiredObject::new(
                sample_network("my_network"),
                "a.yaml".into(),
                DEFAULT_INSTANCE,
            ),
        );
        desired
    }

    async fn context(api: MemorySwarm, desired: DesiredState) -> Arc<Context<MemorySwarm>> {
        let world = World::default();
        let (changes, _) = tokio::sync::mpsc::unbounded_channel();
        let (reflector, reporter) = Reflector::new(world.clone(), changes);
        tokio::spawn(reflector.run());
        relist(&api, &world, &reporter).await.unwrap();
        reporter.desired(desired).await;
        Arc::new(Context {
            api: Arc::new(api),
            world,
            reporter,
            metrics: Arc::new(Metrics::new()),
            activity: ActivityLog::default(),
            deadline: crate::docker::Deadlines::default().reconcile(),
            clock: schedule::Clock::system(),
        })
    }

    /// Creates the sample network and service.
    async fn converge(ctx: &Arc<Context<MemorySwarm>>) {
        reconcile(ctx.clone(), ObjectKey::network("my_network"))
            .await
            .unwrap();
        reconcile(ctx.clone(), ObjectKey::service("quote"))
            .await
            .unwrap();
    }

    fn write_ops(ctx: &Context<MemorySwarm>) -> Vec<(Op, String)> {
        ctx.api
            .calls()
            .into_iter()
            .filter(|(op, _)| op.is_write())
            .collect()
    }

    #[tokio::test]
    async fn a_service_waits_for_its_network_then_converges_with_one_write_each() {
        let ctx = context(MemorySwarm::default(), desired_state()).await;
        let service = ObjectKey::service("quote");
        // The network is created in the same reload: the service's plan waits for it, which
        // is progress, not an error.
        reconcile(ctx.clone(), service.clone()).await.unwrap();
        let outcome = ctx.world.snapshot().outcomes[&service].clone();
        assert_eq!(outcome.error, None);
        let conflict = outcome.conflict.expect("waiting");
        assert_eq!(conflict.reason, ConflictReason::WaitingForDependencies);
        assert!(
            conflict.message.contains("network/my_network"),
            "{conflict:?}"
        );
        reconcile(ctx.clone(), ObjectKey::network("my_network"))
            .await
            .unwrap();
        reconcile(ctx.clone(), service.clone()).await.unwrap();
        // Converged: further reconciles write nothing and clear the wait.
        reconcile(ctx.clone(), service.clone()).await.unwrap();
        reconcile(ctx.clone(), ObjectKey::network("my_network"))
            .await
            .unwrap();
        assert_eq!(
            write_ops(&ctx),
            [
                (Op::CreateNetwork, "my_network".to_owned()),
                (Op::CreateService, "quote".to_owned())
            ]
        );
        assert_eq!(
            ctx.world.snapshot().outcomes.get(&service),
            None,
            "a clean outcome leaves no entry"
        );
        // The page's activity log tells the same story, newest first (the wait for the network
        // is not an error).
        let activity: Vec<(ActivityKind, String)> = ctx
            .activity
            .recent()
            .into_iter()
            .map(|e| (e.kind, e.object))
            .collect();
        assert_eq!(
            activity,
            [
                (ActivityKind::Created, "service/quote".to_owned()),
                (ActivityKind::Created, "network/my_network".to_owned()),
            ]
        );
        // No read-back after a create: the create answer's id is enough.
        assert_eq!(ctx.api.count(Op::InspectService), 0);
    }

    /// The sample desired state on a swarm that already has its network, reconciled through
    /// the leader gate with `leadership`.
    async fn gated_context(
        swarm: &MemorySwarm,
        leadership: crate::election::Leadership,
    ) -> Arc<Context<crate::election::LeaderGate<MemorySwarm>>> {
        swarm.external_create_network(sample_network("my_network"));
        let world = World::default();
        let (changes, _) = tokio::sync::mpsc::unbounded_channel();
        let (reflector, reporter) = Reflector::new(world.clone(), changes);
        tokio::spawn(reflector.run());
        relist(swarm, &world, &reporter).await.unwrap();
        reporter.desired(desired_state()).await;
        Arc::new(Context {
            api: Arc::new(crate::election::LeaderGate::new(
                Arc::new(swarm.clone()),
                leadership,
            )),
            world,
            reporter,
            metrics: Arc::new(Metrics::new()),
            activity: ActivityLog::default(),
            deadline: crate::docker::Deadlines::default().reconcile(),
            clock: schedule::Clock::system(),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_lost_between_the_plan_and_the_write_stops_the_write() {
        let swarm = MemorySwarm::default();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let leadership = crate::election::Leadership::until_for_test(deadline);
        let ctx = gated_context(&swarm, leadership).await;
        let key = ObjectKey::service("quote");
        let writes_before = swarm.writes();

        // Planned while leading...
        let action = current_plan(&ctx, &key)
            .action
            .expect("a create is planned");
        assert!(matches!(action, Action::CreateService { .. }), "{action:?}");
        // ...then the lease runs out (a paused process, a slow read) before the write.
        tokio::time::advance(Duration::from_secs(9)).await;
        let outcome = apply(&ctx, &key, action).await;
        assert!(
            matches!(
                outcome,
                Err(Retry::Fail(ReconcileError::Docker {
                    source: DockerError::NotLeader {
                        op: Op::CreateService
                    },
                    ..
                }))
            ),
            "the write was refused by the gate"
        );
        assert_eq!(swarm.writes(), writes_before, "nothing reached the swarm");
        assert!(swarm.services().is_empty());

        // A whole reconcile now writes nothing, reports no error and counts a skip.
        reconcile(ctx.clone(), key.clone()).await.unwrap();
        assert_eq!(swarm.writes(), writes_before);
        assert!(
            ctx.activity.recent().is_empty(),
            "{:?}",
            ctx.activity.recent()
        );
        assert_eq!(ctx.world.snapshot().outcomes.get(&key), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_with_its_lease_writes_through_the_gate() {
        let swarm = MemorySwarm::default();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let ctx = gated_context(
            &swarm,
            crate::election::Leadership::until_for_test(deadline),
        )
        .await;
        reconcile(ctx.clone(), ObjectKey::service("quote"))
            .await
            .unwrap();
        assert!(swarm.services().contains_key("quote"));
    }

    #[tokio::test]
    async fn a_missing_secret_apply_created_is_reported_not_created_empty() {
        let swarm = MemorySwarm::default();
        swarm.external_create_network(sample_network("my_network"));
        let mut desired = desired_state();
        let name = "db-0123456789".to_owned();
        desired.data.insert(
            name.clone(),
            DesiredData {
                kind: DataKind::Secret,
                logical_name: "db".into(),
                name: name.clone(),
                content: crate::spec::Content::default(),
                labels: BTreeMap::new(),
                origin: DataOrigin::Applied,
            },
        );
        let quote = desired.services.get_mut("quote").unwrap();
        Arc::make_mut(&mut quote.definition).secrets =
            vec![crate::desired::definition::FileMount {
                name: name.clone(),
                target: "db".into(),
                uid: "0".into(),
                gid: "0".into(),
                mode: 0o400,
            }];
        let ctx = context(swarm.clone(), desired).await;
        let err = reconcile(ctx.clone(), ObjectKey::service("quote"))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ReconcileError::MissingAppliedSecret { name: n, .. } if *n == name),
            "{err}"
        );
        assert!(err.to_string().contains("run `apply`"), "{err}");
        assert_eq!(
            swarm.writes(),
            0,
            "nothing created, not even an empty secret"
        );
    }

    /// An `apply`-created secret version of logical secret `db`.
    fn applied_db(hash: &str) -> DesiredData {
        DesiredData {
            kind: DataKind::Secret,
            logical_name: "db".into(),
            name: format!("db-{hash}"),
            content: crate::spec::Content::default(),
            labels: BTreeMap::new(),
            origin: DataOrigin::Applied,
        }
    }

    fn mounting(desired: &mut DesiredState, data: &DesiredData) {
        desired.data = BTreeMap::from([(data.name.clone(), data.clone())]);
        Arc::make_mut(&mut desired.services.get_mut("quote").unwrap().definition).secrets =
            vec![crate::desired::definition::FileMount {
                name: data.name.clone(),
                target: "db".into(),
                uid: "0".into(),
                gid: "0".into(),
                mode: 0o400,
            }];
    }

    #[tokio::test]
    async fn a_rotation_collects_apply_created_secrets_except_those_a_stored_spec_names() {
        let swarm = MemorySwarm::default();
        swarm.external_create_network(sample_network("my_network"));
        let [a, b, named, unnamed] =
            ["aaaaaaaaaa", "bbbbbbbbbb", "cccccccccc", "dddddddddd"].map(applied_db);
        for data in [&a, &b, &named, &unnamed] {
            swarm.external_create_data(
                DataKind::Secret,
                &data.name,
                crate::desired::applied_secrets::labels(data, DEFAULT_INSTANCE),
            );
        }
        // `apply` stored a spec naming `named` and has created it; this replica's copy of
        // the specs does not show it yet.
        swarm.external_create_data(
            DataKind::Config,
            "swarm-operator-spec-0123",
            BTreeMap::from([
                (
                    crate::desired::definition::MANAGED_BY_LABEL.to_owned(),
                    crate::desired::definition::MANAGED_BY_VALUE.to_owned(),
                ),
                (
                    crate::desired::definition::INSTANCE_LABEL.to_owned(),
                    DEFAULT_INSTANCE.to_owned(),
                ),
                (
                    crate::spec::in_swarm::APPLIED_SECRETS_LABEL.to_owned(),
                    named.name.clone(),
                ),
            ]),
        );
        let mut desired = desired_state();
        mounting(&mut desired, &a);
        let ctx = context(swarm.clone(), desired.clone()).await;
        reconcile(ctx.clone(), ObjectKey::service("quote"))
            .await
            .unwrap();
        assert_eq!(
            swarm.data_names(DataKind::Secret).len(),
            4,
            "nothing created"
        );

        // Rotated onto b: a stays (swarm's rollback needs the previous version), `unnamed`
        // goes, `named` stays because a stored spec names it. Each is its own reconcile and
        // at most one write.
        mounting(&mut desired, &b);
        ctx.reporter.desired(desired).await;
        reconcile(ctx.clone(), ObjectKey::service("quote"))
            .await
            .unwrap();
        for data in [&a, &b, &named, &unnamed] {
            let writes = swarm.writes();
            reconcile(ctx.clone(), ObjectKey::data(DataKind::Secret, &data.name))
                .await
                .unwrap();
            assert!(swarm.writes() <= writes + 1);
        }
        let mut left = swarm.data_names(DataKind::Secret);
        left.sort();
        assert_eq!(left, [a.name, b.name, named.name]);
    }

    #[tokio::test]
    async fn drift_is_corrected_and_counted() {
        let swarm = MemorySwarm::default();
        let ctx = context(swarm.clone(), desired_state()).await;
        converge(&ctx).await;
        // Someone scales by hand; the watcher would re-read it after the event.
        swarm.external_update_service("quote", |d| d.mode = Mode::Replicated { replicas: 1 });
        relist(ctx.api.as_ref(), &ctx.world, &ctx.reporter)
            .await
            .unwrap();
        reconcile(ctx.clone(), ObjectKey::service("quote"))
            .await
            .unwrap();
        assert_eq!(write_ops(&ctx).last().unwrap().0, Op::UpdateService);
        assert_eq!(ctx.metrics.drift_corrections(), 1);
        let newest = &ctx.activity.recent()[0];
        assert_eq!(newest.kind, ActivityKind::DriftCorrected);
        assert!(newest.message.contains("replicas"), "{newest:?}");
        assert_eq!(
            swarm.services()["quote"].definition.mode,
            Mode::Replicated { replicas: 3 }
        );
    }

    #[tokio::test]
    async fn update_out_of_sequence_rereads_and_retries_with_the_current_version() {
        let swarm = MemorySwarm::default();
        let ctx = context(swarm.clone(), desired_state()).await;
        converge(&ctx).await;
        relist(ctx.api.as_ref(), &ctx.world, &ctx.reporter)
            .await
            .unwrap();
        // The spec changes; meanwhile another client bumps the version (a label only).
        let mut desired = desired_state();
        let mut changed = sample_service("quote");
        changed.image = "goblog/quote-service:v2".into();
        desired.services.insert(
            "quote".into(),
            DesiredObject::new(changed, "a.yaml".into(), DEFAULT_INSTANCE),
        );
        ctx.reporter.desired(desired).await;
        swarm.external_update_service("quote", |d| {
            d.labels.insert("touched".into(), "yes".into());
        });
        reconcile(ctx.clone(), ObjectKey::service("quote"))
            .await
            .unwrap();
        let updates: Vec<_> = write_ops(&ctx)
            .into_iter()
            .filter(|(op, _)| *op == Op::UpdateService)
            .collect();
        assert_eq!(updates.len(), 2, "one stale attempt, one after re-reading");
        let stored = &swarm.services()["quote"];
        assert_eq!(stored.definition.image, "goblog/quote-service:v2");
        assert!(
            stored.definition.labels.is_empty(),
            "our spec replaced the drift"
        );
    }

    #[tokio::test]
    async fn a_port_held_by_another_service_is_a_port_conflict_naming_it() {
        let swarm = MemorySwarm::default();
        let mut holder = sample_service("holder");
        holder.networks.clear();
        holder.ports = vec![crate::desired::definition::Port {
            target: 80,
            published: Some(8080),
            protocol: crate::spec::Protocol::Tcp,
            mode: crate::spec::PublishMode::Ingress,
        }];
        swarm.external_create_service(holder.clone(), &BTreeMap::new());
        let mut wants = holder.clone();
        wants.name = "wants".into();
        let mut desired = desired_state();
        desired.services = BTreeMap::from([(
            "wants".to_owned(),
            DesiredObject::new(wants, "w.yaml".into(), DEFAULT_INSTANCE),
        )]);
        let ctx = context(swarm, desired).await;
        let key = ObjectKey::service("wants");
        let err = reconcile(ctx.clone(), key.clone()).await.unwrap_err();
        assert!(
            matches!(&err, ReconcileError::PortConflict { port: 8080, holder, .. } if holder == "holder"),
            "{err}"
        );
        assert!(err.to_string().contains("free the port or change"), "{err}");
        assert_eq!(
            ctx.world.snapshot().outcomes[&key]
                .error
                .as_ref()
                .map(|e| e.0.clone()),
            Some(Blocker::PortConflict {
                port: 8080,
                holder: "holder".into()
            })
        );
        let newest = &ctx.activity.recent()[0];
        assert_eq!(
            (newest.kind, newest.object.as_str()),
            (ActivityKind::Error, "service/wants")
        );
        assert!(
            newest.message.starts_with("published port 8080"),
            "{newest:?}"
        );
    }

    /// Creates the owned network `my_network` and an unmanaged service `user` attached to it;
    /// returns the user's id.
    async fn attach_unmanaged_user(swarm: &MemorySwarm, ctx: &Arc<Context<MemorySwarm>>) -> String {
        reconcile(ctx.clone(), ObjectKey::network("my_network"))
            .await
            .unwrap();
        let mut user = sample_service("user");
        user.networks = vec!["my_network".into()];
        swarm.external_create_service(user, &BTreeMap::new())
    }

    /// Every spec file is gone.
    async fn remove_every_spec(ctx: &Arc<Context<MemorySwarm>>) {
        let mut desired = desired_state();
        desired.networks.clear();
        desired.services.clear();
        ctx.reporter.desired(desired).await;
    }

    #[tokio::test]
    async fn a_network_still_in_use_waits_for_its_users_by_name() {
        let swarm = MemorySwarm::default();
        let ctx = context(swarm.clone(), desired_state()).await;
        // An unmanaged service attaches to it, then the network's spec goes away.
        attach_unmanaged_user(&swarm, &ctx).await;
        relist(ctx.api.as_ref(), &ctx.world, &ctx.reporter)
            .await
            .unwrap();
        remove_every_spec(&ctx).await;
        let key = ObjectKey::network("my_network");
        let err = reconcile(ctx.clone(), key.clone()).await.unwrap_err();
        assert!(
            matches!(&err, ReconcileError::WaitingForUsers { users, .. } if users == &["user"]),
            "{err}"
        );
        // Once the user is gone, the removal goes through.
        swarm.external_remove_service("user");
        relist(ctx.api.as_ref(), &ctx.world, &ctx.reporter)
            .await
            .unwrap();
        reconcile(ctx.clone(), key).await.unwrap();
        assert!(swarm.networks().is_empty());
    }

    /// The engine names the users by id; a user the view has not seen yet (its event still
    /// on the way) is read, so the error (the log line, the status) names it too.
    #[tokio::test]
    async fn a_user_the_view_has_not_seen_yet_is_named_not_shown_by_id() {
        let swarm = MemorySwarm::default();
        let ctx = context(swarm.clone(), desired_state()).await;
        let id = attach_unmanaged_user(&swarm, &ctx).await;
        // No relist: the view does not know `user`.
        assert!(!ctx.world.snapshot().observed.services.contains_key("user"));
        remove_every_spec(&ctx).await;
        let key = ObjectKey::network("my_network");
        let err = reconcile(ctx.clone(), key.clone()).await.unwrap_err();
        assert!(
            matches!(&err, ReconcileError::WaitingForUsers { users, .. } if users == &["user"]),
            "{err}"
        );
        let message = err.to_string();
        assert!(
            message.contains(r#"["user"]"#) && !message.contains(&id),
            "{message}"
        );
        assert!(ctx.world.snapshot().observed.services.contains_key("user"));
    }

    #[tokio::test]
    async fn removing_what_is_already_gone_is_done_not_an_error() {
        let swarm = MemorySwarm::default();
        let ctx = context(swarm.clone(), desired_state()).await;
        reconcile(ctx.clone(), ObjectKey::network("my_network"))
            .await
            .unwrap();
        remove_every_spec(&ctx).await;
        // The engine answers "500 ... not found" (the adapter classifies it as NotFound).
        swarm.fail(FailRule {
            op: Op::RemoveNetwork,
            name: None,
            times: Some(1),
            make: |name| {
                DockerError::from_response(
                    Op::RemoveNetwork,
                    crate::docker::Resource::Network,
                    name,
                    500,
                    "network abc not found",
                )
            },
        });
        reconcile(ctx.clone(), ObjectKey::network("my_network"))
            .await
            .unwrap();
        assert!(
            !ctx.world
                .snapshot()
                .observed
                .networks
                .contains_key("my_network")
        );
    }

    #[tokio::test]
    async fn an_update_that_does_not_stick_is_an_error_not_a_loop() {
        let swarm = MemorySwarm::default();
        let ctx = context(swarm.clone(), desired_state()).await;
        converge(&ctx).await;
        // The engine stores another image string than it was sent.
        swarm.external_update_service("quote", |d: &mut ServiceDefinition| {
            d.image.push_str("@sha256:abc");
        });
        swarm.mangle_updates(|d| d.image.push_str("@sha256:abc"));
        relist(ctx.api.as_ref(), &ctx.world, &ctx.reporter)
            .await
            .unwrap();
        let err = reconcile(ctx.clone(), ObjectKey::service("quote"))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ReconcileError::NotConverging { fields, .. } if fields == "image"),
            "{err}"
        );
        assert_eq!(
            write_ops(&ctx)
                .iter()
                .filter(|(op, _)| *op == Op::UpdateService)
                .count(),
            1
        );
    }
}
