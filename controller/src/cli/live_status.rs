//! The status of a swarm as `get` and `wait` see it: the operator's own view (reflector, swarm
//! watcher) and status code, run without an operator and without writing anything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::control::plan::{self, ObjectKind};
use crate::control::swarm_watch::{self, WatchConfig};
use crate::control::triggers;
use crate::control::world::{self, Reflector, Reporter, World};
use crate::desired::{DesiredState, OnSwarm};
use crate::docker::{DockerError, SwarmApi};
use crate::report::status::publisher;
use crate::report::status::{ConditionReason, StatusFile};
use crate::spec::SpecStore;
use crate::spec::load::LoadDirError;

/// Errors opening the view.
#[derive(Debug, thiserror::Error)]
pub enum LiveStatusError {
    /// The swarm could not be read.
    #[error(transparent)]
    Docker(#[from] DockerError),
    /// The spec directory given with `--specs` could not be read.
    #[error(transparent)]
    Specs(#[from] LoadDirError),
}

/// How often tasks are polled (swarm has no task events): also how often a waiting command
/// looks again.
pub const TASK_POLL: Duration = Duration::from_secs(1);

/// One swarm's status as the operator would write it, kept up to date by the swarm watcher
/// until dropped.
pub struct LiveStatus {
    world: World,
    // Kept so that the reflector runs as long as the view.
    _reporter: Reporter,
    stop: CancellationToken,
    /// `None`: opened without a spec directory.
    specs_dir: Option<PathBuf>,
    /// The previous look, built as the operator's publisher builds its snapshots (with the
    /// same code): the only memory of the conditions' transition times.
    previous: Option<publisher::Snapshot>,
}

/// What one look at the swarm found.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The status, as the operator builds it.
    pub status: StatusFile,
    /// Names of the services and networks that exist on the swarm now (any owner).
    pub existing: BTreeSet<String>,
    /// What the spec directory says; `None` when opened without one.
    pub specs: Option<SpecView>,
}

/// The spec directory's side of a look: which objects have a spec, and which objects without
/// one the operator keeps instead of removing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecView {
    /// Names of the services and networks the spec directory holds.
    pub specified: BTreeSet<String>,
    /// Owned objects without a spec that the plan does not remove (their spec file fails to
    /// load, the directory is suspended or holds no spec): why, as a reason and a message.
    pub kept: BTreeMap<String, (ConditionReason, String)>,
}

impl SpecView {
    /// The objects of `state` without a spec, and which of them the plan keeps.
    fn of(state: &world::WorldState) -> SpecView {
        let desired = &state.desired;
        let specified = desired
            .services
            .keys()
            .chain(desired.networks.keys())
            .cloned()
            .collect();
        let kept = plan::all_keys(desired, &state.observed)
            .into_iter()
            .filter(|key| match key.kind {
                ObjectKind::Service => !desired.services.contains_key(&key.name),
                ObjectKind::Network => !desired.networks.contains_key(&key.name),
                // Versions are not listed as objects of their own.
                ObjectKind::Config | ObjectKind::Secret => false,
            })
            .filter_map(|key| {
                let conflict = plan::plan_object(&key, desired, &state.observed).conflict?;
                Some((
                    key.name,
                    (ConditionReason::from(&conflict.reason), conflict.message),
                ))
            })
            .collect();
        SpecView { specified, kept }
    }
}

impl LiveStatus {
    /// Lists the swarm, reads the spec directory if one is given (so that the status compares
    /// the swarm with it: a spec not yet applied is not `Ready`), and starts following the
    /// swarm. `instance` selects the objects owned by that operator instance.
    ///
    /// # Errors
    /// The swarm can not be listed, or the spec directory can not be read.
    pub async fn open<A: SwarmApi>(
        api: A,
        instance: &str,
        specs: Option<&Path>,
        identities: &crate::spec::AgeIdentities,
    ) -> Result<LiveStatus, LiveStatusError> {
        let api = Arc::new(api);
        api.ensure_manager().await?;
        let world = World::default();
        // Nobody reconciles: the changed keys are not needed.
        let (changes, _) = mpsc::unbounded_channel();
        let (reflector, reporter) = Reflector::new(world.clone(), changes);
        tokio::spawn(reflector.run());
        swarm_watch::relist(api.as_ref(), &world, &reporter).await?;
        let desired = match specs {
            Some(dir) => triggers::reload_specs(
                &mut SpecStore::with_identities(identities.clone()),
                dir,
                OnSwarm::networks_only(&world::existing_networks(&world)),
                false,
                instance,
                crate::spec::ReadScope::Whole,
                None,
            )?
            .expect("built when there is nothing to compare with"),
            None => DesiredState {
                instance: instance.into(),
                ..DesiredState::default()
            },
        };
        reporter.desired(desired).await;
        let stop = CancellationToken::new();
        tokio::spawn(swarm_watch::run(
            api,
            world.clone(),
            reporter.clone(),
            WatchConfig {
                resync: Duration::from_secs(30),
                task_poll: TASK_POLL,
                deadlines: crate::docker::Deadlines::default(),
            },
            stop.clone(),
        ));
        Ok(LiveStatus {
            world,
            _reporter: reporter,
            stop,
            specs_dir: specs.map(Path::to_owned),
            previous: None,
        })
    }

    /// The status now.
    pub fn snapshot(&mut self) -> Snapshot {
        let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        let view = self.world.snapshot();
        let specs_dir = self.specs_dir.as_deref().unwrap_or(Path::new(""));
        // No activity log and no leadership: nothing here acts.
        let built = publisher::Snapshot::build(
            &view,
            specs_dir,
            self.previous.as_ref().map(publisher::Snapshot::status),
            Vec::new(),
            false,
            &now,
        );
        let existing = view
            .observed
            .services
            .keys()
            .chain(view.observed.networks.keys())
            .cloned()
            .collect();
        let specs = self.specs_dir.is_some().then(|| SpecView::of(&view));
        let status = built.status().clone();
        self.previous = Some(built);
        Snapshot {
            status,
            existing,
            specs,
        }
    }

    /// Waits until the swarm changed, or `TASK_POLL` passed (deadlines run on the clock).
    pub async fn changed(&self) {
        tokio::select! {
            () = self.world.changed() => {}
            () = tokio::time::sleep(TASK_POLL) => {}
        }
    }
}

impl Drop for LiveStatus {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
