//! The operator's view of the spec directory and of the swarm, kept by one writer (the
//! reflector) and read by everyone else.
//!
//! Like kube-runtime's reflector store, the cache is exact and monotonic: every read of the
//! swarm (a list, an inspect) and every write the operator makes is *reported* to the reflector,
//! which merges it by the swarm's version index and by when the read was issued:
//!
//! * an older read never replaces a newer object (lower `Version.Index`, or a read issued
//!   before one of our own writes was reported);
//! * a list issued before a create cannot erase the created object, and a read issued before a
//!   removal cannot bring the removed object back;
//! * a removal is applied only when proven: a 404 on inspect, or absence from a list issued
//!   after the object was last seen.
//!
//! The reflector says which keys changed, so that only those are reconciled: an event about
//! one object costs one read and at most one reconcile, and a relist costs nothing for the
//! objects that did not change.
//!
//! Readers never hold the lock while they work: like kube-runtime's `Store::state()`, which
//! hands out `Arc`s of the cached objects, [`World::snapshot`] hands out the whole view as an
//! immutable `Arc<WorldState>` (taken under the lock, which is released at once). The view
//! holds each service, the task list and the desired state behind their own `Arc`, so the
//! reflector's next write after a snapshot was taken copies only the maps' entries (a name and
//! an `Arc` each), never an object, and later writes copy nothing while no snapshot is held.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::{Notify, mpsc, oneshot};

use super::wake;
use crate::control::plan::{Conflict, ObjectKey, ObjectKind};
use crate::desired::data_objects::{DataKind, ObservedData};
use crate::desired::definition::ServiceDefinition;
use crate::desired::{DesiredObject, DesiredState};
use crate::docker::Observed;
use crate::docker::{ObservedNetwork, ObservedNode, ObservedService, ObservedTask, Ownership};
use crate::shared_text::adopt_if_equal;

/// Why the last reconcile of an object did not finish its work, as the status reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocker {
    /// A network's removal waits for services still attached to it.
    WaitingForUsers {
        /// The attached services, by name where known.
        users: Vec<String>,
    },
    /// A service waits for a network to be created.
    WaitingForNetwork {
        /// The missing network.
        network: String,
    },
    /// A published port is held by another service.
    PortConflict {
        /// The port.
        port: u16,
        /// The service holding it.
        holder: String,
    },
    /// Any other failure; retried with backoff.
    Failed,
}

/// The outcome of the last reconcile of one object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObjectOutcome {
    /// The error of the last reconcile, if it failed: what blocks it and the message.
    pub error: Option<(Blocker, String)>,
    /// Why the plan left the object alone, if it did.
    pub conflict: Option<Conflict>,
}

impl ObjectOutcome {
    /// The error message of the last reconcile, if it failed.
    pub fn last_error(&self) -> Option<&str> {
        self.error.as_ref().map(|(_, message)| message.as_str())
    }
}

/// Everything the operator knows right now. Only the reflector changes it; everyone else
/// gets an immutable snapshot of it through [`World::snapshot`].
#[derive(Debug, Default, Clone)]
pub struct WorldState {
    /// What the spec directory asks for: replaced whole by each reload, shared with the
    /// snapshots until then.
    pub desired: Arc<DesiredState>,
    /// What the swarm looks like, merged from every read and write.
    pub observed: Observed,
    /// Per-object outcome of the last reconcile; no entry for one that had no error and no
    /// plan conflict.
    pub outcomes: BTreeMap<ObjectKey, ObjectOutcome>,
    /// The spec directory has been read at least once.
    pub specs_loaded: bool,
    /// The swarm has been listed at least once.
    pub swarm_observed: bool,
    /// The git source's state (`run --source git`).
    pub source: Option<crate::report::status::source::SourceStatus>,
}

impl WorldState {
    /// The long-lived definition of service `name` that equals `read`, for a read to keep
    /// instead of its own copy: the cached one (re-allocating every spec amid a relist's
    /// transient memory left the heap fragmented, 3 MB more resident at 500 services: the
    /// common case on the first resync, where every service the operator created is cached as
    /// written, without swarm's version and timestamps), else the desired one (a service found
    /// on the swarm as the specs ask: the view then holds one definition per service, not two,
    /// 1.5–2 kB a service).
    pub fn held_definition(
        &self,
        name: &str,
        read: &ServiceDefinition,
    ) -> Option<Arc<ServiceDefinition>> {
        let cached = self.observed.services.get(name).map(|c| &c.definition);
        let desired = self.desired.services.get(name).map(|d| &d.definition);
        [cached, desired]
            .into_iter()
            .flatten()
            .find(|held| ***held == *read)
            .map(Arc::clone)
    }
}

/// Marks when a read of the swarm was issued, relative to the reports the reflector applied.
/// Take it with [`World::ticket`] *before* sending the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket(u64);

/// Read access to the shared view, plus the signal that it changed.
#[derive(Debug, Clone, Default)]
pub struct World {
    /// The lock guards only the swap of the `Arc`: readers clone it, the reflector replaces
    /// what it points to (in place when no snapshot holds it).
    state: Arc<RwLock<Arc<WorldState>>>,
    /// Number of reports applied so far (the reflector's clock).
    applied: Arc<AtomicU64>,
    changed: Arc<Notify>,
}

impl World {
    /// A view that already holds `state` (benchmarks and tests; the operator's view is filled
    /// by the reflector).
    pub fn from_state(state: WorldState) -> Self {
        World {
            state: Arc::new(RwLock::new(Arc::new(state))),
            ..World::default()
        }
    }

    /// The view as it is now, immutable: hold it as long as needed, the reflector keeps
    /// writing meanwhile (its next write copies the maps' entries, not the objects).
    pub fn snapshot(&self) -> Arc<WorldState> {
        // A panic while holding the lock is a bug we would rather surface than hide.
        Arc::clone(&self.state.read().expect("world lock poisoned"))
    }

    /// [`WorldState::held_definition`] in the view as it is now. A snapshot per call: one held
    /// through a whole list or reload would make the reflector's writes meanwhile copy the
    /// view's maps for it.
    pub fn held_definition(
        &self,
        name: &str,
        read: &ServiceDefinition,
    ) -> Option<Arc<ServiceDefinition>> {
        self.snapshot().held_definition(name, read)
    }

    /// Waits until something changed since the last wait.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// The clock value to attach to a read of the swarm issued now.
    pub fn ticket(&self) -> Ticket {
        Ticket(self.applied.load(Ordering::SeqCst))
    }

    /// Whether both the specs and the swarm have been read once (readiness).
    pub fn is_ready(&self) -> bool {
        let state = self.snapshot();
        state.specs_loaded && state.swarm_observed
    }
}

/// A read of the swarm, reported to the reflector.
// One message at a time through a channel: the variants' sizes cost nothing worth boxing for.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Observation {
    /// Every service, from a list issued at `ticket`.
    Services {
        /// When the list was issued.
        ticket: Ticket,
        /// What it returned.
        services: Vec<ObservedService>,
    },
    /// Every network, from a list issued at `ticket`.
    Networks {
        /// When the list was issued.
        ticket: Ticket,
        /// What it returned.
        networks: Vec<ObservedNetwork>,
    },
    /// One service by name: `None` means the engine said it does not exist.
    Service {
        /// When the read was issued.
        ticket: Ticket,
        /// The name asked for.
        name: String,
        /// What it returned (boxed: a service is much larger than the other variants).
        service: Option<Box<ObservedService>>,
    },
    /// One network by name: `None` means the engine said it does not exist.
    Network {
        /// When the read was issued.
        ticket: Ticket,
        /// The name asked for.
        name: String,
        /// What it returned.
        network: Option<ObservedNetwork>,
    },
    /// Every config or every secret (`kind`), from a list issued at `ticket`.
    Data {
        /// When the list was issued.
        ticket: Ticket,
        /// Configs or secrets.
        kind: DataKind,
        /// What it returned.
        list: Vec<ObservedData>,
    },
    /// Every node.
    Nodes(Vec<ObservedNode>),
    /// Every task.
    Tasks(Vec<ObservedTask>),
}

/// A write the operator made, reported by the reconcile that made it.
#[derive(Debug)]
pub enum Written {
    /// A service was created with this id.
    ServiceCreated {
        /// Its id, from the create answer.
        id: String,
        /// What was written.
        desired: DesiredObject<ServiceDefinition>,
    },
    /// A service was updated from version `based_on`.
    ServiceUpdated {
        /// Its id.
        id: String,
        /// The version the update was based on.
        based_on: u64,
        /// What was written.
        desired: DesiredObject<ServiceDefinition>,
    },
    /// A service was removed (or found gone).
    ServiceRemoved {
        /// Its name.
        name: String,
        /// Its id.
        id: String,
    },
    /// A network was created.
    NetworkCreated(ObservedNetwork),
    /// A network was removed (or found gone).
    NetworkRemoved {
        /// Its name.
        name: String,
        /// Its id.
        id: String,
    },
    /// A config or secret version was created.
    DataCreated(ObservedData),
    /// A config or secret version was removed (or found gone).
    DataRemoved {
        /// Config or secret.
        kind: DataKind,
        /// Its name.
        name: String,
        /// Its id.
        id: String,
    },
}

#[allow(clippy::large_enum_variant)] // one message at a time, as above
enum Report {
    Observed(Observation),
    Written(Written),
    Desired(DesiredState),
    Outcome(ObjectKey, ObjectOutcome),
    Source(crate::report::status::source::SourceStatus),
}

/// Sends reports to the reflector; cheap to clone. Every report is applied before `report`
/// returns, so a reconcile that reported its write plans against it the next time.
#[derive(Debug, Clone)]
pub struct Reporter {
    tx: mpsc::UnboundedSender<(Report, oneshot::Sender<()>)>,
}

impl Reporter {
    async fn send(&self, report: Report) {
        let (ack, done) = oneshot::channel();
        // Both fail only when the reflector stopped, i.e. at shutdown: nothing left to keep.
        if self.tx.send((report, ack)).is_ok() {
            let _ = done.await;
        }
    }

    /// Reports a read of the swarm.
    pub async fn observed(&self, observation: Observation) {
        self.send(Report::Observed(observation)).await;
    }

    /// Reports one of the operator's own writes.
    pub async fn written(&self, written: Written) {
        self.send(Report::Written(written)).await;
    }

    /// Reports a new desired state (the spec directory was read).
    pub async fn desired(&self, desired: DesiredState) {
        self.send(Report::Desired(desired)).await;
    }

    /// Reports the git source's state (shown in the status; triggers no reconcile).
    pub async fn source(&self, status: crate::report::status::source::SourceStatus) {
        self.send(Report::Source(status)).await;
    }

    /// Reports the outcome of a reconcile.
    pub async fn outcome(&self, key: ObjectKey, outcome: ObjectOutcome) {
        self.send(Report::Outcome(key, outcome)).await;
    }
}

/// Bookkeeping the readers never need: when each cached object was last confirmed, and our
/// own writes the engine has not confirmed yet.
#[derive(Debug, Default)]
struct Freshness {
    /// Clock value at which the cached entry was last set from a read or a write.
    seen_at: HashMap<ObjectKey, u64>,
    /// Our own service writes, by name: the clock value and the version they were based on.
    /// A read issued before the write that shows that version or an older one is stale.
    pending: HashMap<String, (u64, u64)>,
    /// Objects we removed: the clock value and id, so that a read issued before the removal
    /// does not bring them back.
    removed: HashMap<ObjectKey, (u64, String)>,
}

impl Freshness {
    /// Gives back the room of a burst: 5,000 creates leave 5,000 pending writes, confirmed by
    /// the next list, and a table sized for them (330 kB) for as long as the operator runs.
    fn shrink(&mut self) {
        fn shrink<K: Eq + std::hash::Hash, V>(map: &mut HashMap<K, V>) {
            if map.capacity() > 64 && map.capacity() > 4 * map.len() {
                map.shrink_to_fit();
            }
        }
        shrink(&mut self.pending);
        shrink(&mut self.removed);
    }

    /// Whether a read of `key`, an object that never changes in place (a network, a config or
    /// secret version), issued at `ticket`, is left unmerged: it says nothing (absent, and not
    /// cached), or it was issued too early to be trusted: before the cached entry was last
    /// confirmed (absent, or another incarnation: `read_id` is not `cached_id`) or before our
    /// own removal of the same id.
    fn ignores(
        &self,
        key: &ObjectKey,
        ticket: Ticket,
        cached_id: Option<&str>,
        read_id: Option<&str>,
    ) -> bool {
        let seen_at = self.seen_at.get(key).copied().unwrap_or(0);
        match (cached_id, read_id) {
            (None, None) => true,
            (Some(_), None) => ticket.0 < seen_at,
            (cached_id, Some(read_id)) => {
                let removed_before = self
                    .removed
                    .get(key)
                    .is_some_and(|(removed_at, id)| id == read_id && ticket.0 < *removed_at);
                let older_other = cached_id.is_some_and(|c| c != read_id) && ticket.0 < seen_at;
                removed_before || older_other
            }
        }
    }
}

/// The single writer of the [`World`]: applies reports in order and sends the keys whose
/// state changed to `changes`.
pub struct Reflector {
    world: World,
    freshness: Freshness,
    rx: mpsc::UnboundedReceiver<(Report, oneshot::Sender<()>)>,
    changes: mpsc::UnboundedSender<ObjectKey>,
}

impl Reflector {
    /// A reflector for `world` that sends changed keys to `changes`, and the handle to report
    /// to it. Run it with [`Reflector::run`].
    pub fn new(world: World, changes: mpsc::UnboundedSender<ObjectKey>) -> (Self, Reporter) {
        let (tx, rx) = mpsc::unbounded_channel();
        let reflector = Reflector {
            world,
            freshness: Freshness::default(),
            rx,
            changes,
        };
        (reflector, Reporter { tx })
    }

    /// Applies reports until every [`Reporter`] is dropped.
    pub async fn run(mut self) {
        while let Some((report, ack)) = self.rx.recv().await {
            self.apply(report);
            let _ = ack.send(());
        }
    }

    fn apply(&mut self, report: Report) {
        // The clock moves before the change becomes visible: a read issued after this point
        // gets a ticket at least `now`, so it is known to have started after this report.
        let now = self.world.applied.fetch_add(1, Ordering::SeqCst) + 1;
        let mut changed = BTreeSet::new();
        {
            let shared = self.world.state.clone();
            let mut guard = shared.write().expect("world lock poisoned");
            // Copy on write: the view is copied (shallowly) only if a snapshot still holds it.
            let state = Arc::make_mut(&mut guard);
            match report {
                Report::Observed(observation) => {
                    let tasks_changed = matches!(&observation,
                        Observation::Tasks(tasks) if *tasks != *state.observed.tasks);
                    self.observe(state, observation, now, &mut changed);
                    if tasks_changed || !changed.is_empty() {
                        // A dependency may have become ready (its tasks run, its update
                        // finished, or a dependent is gone): look at the waiters again.
                        changed.extend(wake::waiting_for_dependency(state));
                    }
                }
                Report::Written(written) => {
                    self.written(state, written, now, &mut changed);
                    if !changed.is_empty() {
                        // Something a service waits for now exists.
                        changed.extend(wake::waiting_for_dependency(state));
                    }
                }
                Report::Desired(mut desired) => {
                    share_observed_definitions(&mut desired, &state.observed);
                    let (keys, prune_rules_changed) =
                        wake::desired_changes(&state.desired, &desired);
                    changed.extend(keys);
                    let before = std::mem::replace(&mut state.desired, Arc::new(desired));
                    state.specs_loaded = true;
                    changed.extend(wake::data_spec_changes(&before, state));
                    if prune_rules_changed {
                        // What may be removed changed: the objects not desired any more whose
                        // plan it changes need a new look. Only those: one that fails either
                        // way (a network still in use) keeps its backoff, whatever else the
                        // reload brought (a file failing or loading again elsewhere).
                        changed.extend(wake::prune_rule_changes(&before, state));
                    }
                }
                Report::Source(status) => {
                    if state.source.as_ref() == Some(&status) {
                        return;
                    }
                    state.source = Some(status);
                }
                Report::Outcome(key, outcome) => {
                    // A clean outcome is no entry: every object reconciled without a problem
                    // would otherwise keep one (about 300 bytes each with its key, in a map
                    // filled one entry at a time).
                    if outcome == ObjectOutcome::default() {
                        if state.outcomes.remove(&key).is_none() {
                            return;
                        }
                    } else if state.outcomes.get(&key) == Some(&outcome) {
                        return;
                    } else {
                        state.outcomes.insert(key, outcome);
                    }
                }
            }
            let relevant = wake::relevant_keys(state, changed);
            for key in relevant {
                let _ = self.changes.send(key);
            }
        }
        self.world.changed.notify_one();
    }

    fn observe(
        &mut self,
        state: &mut WorldState,
        observation: Observation,
        now: u64,
        changed: &mut BTreeSet<ObjectKey>,
    ) {
        match observation {
            Observation::Services { ticket, services } => {
                let listed = services.into_iter().map(|s| (s.definition.name.clone(), s));
                self.merge_list(
                    state,
                    ticket,
                    ObjectKind::Service,
                    listed,
                    |this, state, name, read| {
                        this.merge_service(state, ticket, name, read, now, changed);
                    },
                );
                state.swarm_observed = true;
            }
            Observation::Networks { ticket, networks } => {
                let listed = networks.into_iter().map(|n| (n.definition.name.clone(), n));
                self.merge_list(
                    state,
                    ticket,
                    ObjectKind::Network,
                    listed,
                    |this, state, name, read| {
                        this.merge_network(state, ticket, name, read, now, changed);
                    },
                );
            }
            Observation::Data { ticket, kind, list } => {
                let listed = list.into_iter().map(|d| (d.name.clone(), d));
                self.merge_list(
                    state,
                    ticket,
                    kind.into(),
                    listed,
                    |this, state, name, read| {
                        this.merge_data(state, ticket, kind, name, read, now, changed);
                    },
                );
            }
            Observation::Service {
                ticket,
                name,
                service,
            } => self.merge_service(state, ticket, &name, service.map(|s| *s), now, changed),
            Observation::Network {
                ticket,
                name,
                network,
            } => self.merge_network(state, ticket, &name, network, now, changed),
            // Unchanged lists (the task poll every second, most of the time) are dropped, for
            // the same reason as equal service reads.
            Observation::Nodes(nodes) => {
                let nodes: BTreeMap<_, _> = nodes.into_iter().map(|n| (n.id.clone(), n)).collect();
                if state.observed.nodes != nodes {
                    state.observed.nodes = nodes;
                }
            }
            Observation::Tasks(tasks) => {
                if *state.observed.tasks != tasks {
                    state.observed.tasks = Arc::new(tasks);
                }
            }
        }
    }

    /// Merges a full list of `kind` issued at `ticket` (`listed`: each object with its name):
    /// each listed object, then each one the view holds and the list lacks, as gone (`merge`
    /// decides whether the list is recent enough to prove that); a removal the list confirms
    /// needs no tombstone any more.
    fn merge_list<T>(
        &mut self,
        state: &mut WorldState,
        ticket: Ticket,
        kind: ObjectKind,
        listed: impl Iterator<Item = (String, T)>,
        mut merge: impl FnMut(&mut Self, &mut WorldState, &str, Option<T>),
    ) {
        let mut names = BTreeSet::new();
        for (name, read) in listed {
            merge(self, state, &name, Some(read));
            names.insert(name);
        }
        for name in absent_from(&state.observed, kind, &names) {
            merge(self, state, &name, None);
        }
        self.freshness
            .removed
            .retain(|key, (at, _)| key.kind != kind || ticket.0 < *at);
        self.freshness.shrink();
    }

    /// Merges one read of service `name` (`None`: the read says it does not exist).
    fn merge_service(
        &mut self,
        state: &mut WorldState,
        ticket: Ticket,
        name: &str,
        read: Option<ObservedService>,
        now: u64,
        changed: &mut BTreeSet<ObjectKey>,
    ) {
        let key = ObjectKey::service(name);
        let seen_at = self.freshness.seen_at.get(&key).copied().unwrap_or(0);
        let cached = state.observed.services.get(name);
        let next = match (cached, read) {
            (None, None) => return,
            // Absent: proven only by a read issued after the entry was last confirmed.
            (Some(_), None) => {
                if ticket.0 < seen_at {
                    return;
                }
                None
            }
            (cached, Some(read)) => {
                if let Some((removed_at, id)) = self.freshness.removed.get(&key)
                    && *id == read.id
                    && ticket.0 < *removed_at
                {
                    return; // issued before our removal
                }
                if let Some(cached) = cached {
                    if cached.id == read.id {
                        if read.version < cached.version {
                            return; // an older version than we have
                        }
                        if let Some((written_at, based_on)) = self.freshness.pending.get(name)
                            && ticket.0 < *written_at
                            && read.version <= *based_on
                        {
                            return; // issued before our write, and shows the state before it
                        }
                    } else if ticket.0 < seen_at {
                        return; // another incarnation, from a read older than what we have
                    }
                }
                Some(read)
            }
        };
        self.freshness.seen_at.insert(key.clone(), now);
        match next {
            Some(read) => {
                if self
                    .freshness
                    .pending
                    .get(name)
                    .is_some_and(|(_, based_on)| read.version > *based_on)
                {
                    self.freshness.pending.remove(name);
                }
                // A read equal to what is cached (every service on a resync, most of them on a
                // relist) is dropped, not swapped in: the long-lived copy stays where it is in
                // the heap, and the read's memory is freed with the rest of the response.
                if state
                    .observed
                    .services
                    .get(name)
                    .is_some_and(|c| **c == read)
                {
                    return;
                }
                let mut read = read;
                if let Some(held) = state.held_definition(name, &read.definition) {
                    read.definition = held;
                }
                if let Some(desired) = state.desired.services.get(name) {
                    read.ownership.share_text(desired);
                }
                // The same for its labels, where no snapshot shares the cached copy (the
                // snapshot keeps it alive anyway, and copying it to keep its memory in place
                // would defeat the point).
                if let Some(cached) = state.observed.services.get_mut(name).and_then(Arc::get_mut)
                    && cached.ownership == read.ownership
                {
                    std::mem::swap(&mut cached.ownership, &mut read.ownership);
                }
                let previous = state
                    .observed
                    .services
                    .insert(name.to_owned(), Arc::new(read));
                let current = &state.observed.services[name];
                if previous
                    .as_ref()
                    .is_none_or(|p| !wake::same_service(p, current))
                {
                    changed.insert(key.clone());
                    if let Some(previous) = &previous {
                        changed.extend(wake::unblocked_by(state, previous, Some(current)));
                    }
                }
            }
            None => {
                self.freshness.pending.remove(name);
                self.freshness.seen_at.remove(&key);
                if let Some(previous) = state.observed.services.remove(name) {
                    changed.insert(key.clone());
                    changed.extend(wake::unblocked_by(state, &previous, None));
                }
            }
        }
    }

    /// Merges one read of network `name`. Networks have no version index and never change in
    /// place, so only their existence and identity are merged.
    fn merge_network(
        &mut self,
        state: &mut WorldState,
        ticket: Ticket,
        name: &str,
        read: Option<ObservedNetwork>,
        now: u64,
        changed: &mut BTreeSet<ObjectKey>,
    ) {
        let key = ObjectKey::network(name);
        let cached_id = state.observed.networks.get(name).map(|c| c.id.as_str());
        if self.freshness.ignores(
            &key,
            ticket,
            cached_id,
            read.as_ref().map(|r| r.id.as_str()),
        ) {
            return;
        }
        self.freshness.seen_at.insert(key.clone(), now);
        let previous = match read {
            // Equal: keep the cached copy (see merge_service).
            Some(read) if state.observed.networks.get(name) == Some(&read) => return,
            Some(read) => state.observed.networks.insert(name.to_owned(), read),
            None => {
                self.freshness.seen_at.remove(&key);
                state.observed.networks.remove(name)
            }
        };
        if previous.as_ref() != state.observed.networks.get(name) {
            changed.insert(key);
            changed.extend(wake::network_dependents(state, name));
        }
    }

    /// Merges one read of config or secret `name`. Versions never change in place, so only
    /// their existence and identity are merged, as for networks.
    #[allow(clippy::too_many_arguments)] // the merge's inputs, as merge_network's plus the kind
    fn merge_data(
        &mut self,
        state: &mut WorldState,
        ticket: Ticket,
        kind: DataKind,
        name: &str,
        read: Option<ObservedData>,
        now: u64,
        changed: &mut BTreeSet<ObjectKey>,
    ) {
        let key = ObjectKey::data(kind, name);
        let cached_id = state.observed.data(kind).get(name).map(|c| c.id.as_str());
        if self.freshness.ignores(
            &key,
            ticket,
            cached_id,
            read.as_ref().map(|r| r.id.as_str()),
        ) {
            return;
        }
        self.freshness.seen_at.insert(key.clone(), now);
        // The leader lease's and the stored specs' label updates are not changes of a version.
        let same = |a: &ObservedData, b: &ObservedData| a.id == b.id && a.labels == b.labels;
        let previous = match read {
            Some(read) if state.observed.data(kind).get(name) == Some(&read) => return,
            Some(read) => state.observed.data_mut(kind).insert(name.to_owned(), read),
            None => {
                self.freshness.seen_at.remove(&key);
                state.observed.data_mut(kind).remove(name)
            }
        };
        let current = state.observed.data(kind).get(name);
        let unchanged = match (&previous, current) {
            (Some(a), Some(b)) => same(a, b),
            (None, None) => true,
            _ => false,
        };
        if !unchanged {
            changed.insert(key);
            changed.extend(wake::data_changed(state, kind, name, previous.as_ref()));
        }
    }

    /// Applies one of our own writes. A service's or network's write changes no key that the
    /// writer does not already know about, so it triggers only what waited for it: the
    /// services waiting for a created network or version, and the versions a service stopped
    /// mounting (one may now be collected).
    fn written(
        &mut self,
        state: &mut WorldState,
        written: Written,
        now: u64,
        changed: &mut BTreeSet<ObjectKey>,
    ) {
        match written {
            Written::ServiceCreated { id, desired } => {
                let name = desired.definition.name.clone();
                self.freshness.removed.remove(&ObjectKey::service(&name));
                self.freshness.pending.insert(name.clone(), (now, 0));
                self.freshness
                    .seen_at
                    .insert(ObjectKey::service(&name), now);
                state
                    .observed
                    .services
                    .insert(name, Arc::new(written_service(id, 0, &desired)));
            }
            Written::ServiceUpdated {
                id,
                based_on,
                desired,
            } => {
                let name = desired.definition.name.clone();
                self.freshness.pending.insert(name.clone(), (now, based_on));
                self.freshness
                    .seen_at
                    .insert(ObjectKey::service(&name), now);
                let mut service = written_service(id, based_on, &desired);
                if let Some(cached) = state.observed.services.get(&name) {
                    changed.extend(wake::unmounted(
                        state,
                        &cached.definition,
                        Some(&desired.definition),
                    ));
                    // The spec replaced becomes swarm's previous spec (what a rollback restores).
                    service.revision.previous_mounts = [DataKind::Config, DataKind::Secret]
                        .into_iter()
                        .flat_map(|kind| {
                            crate::control::data_plan::mounts(&cached.definition, kind)
                        })
                        .collect();
                    service.virtual_ips.clone_from(&cached.virtual_ips);
                    service.update_status.clone_from(&cached.update_status);
                    service
                        .revision
                        .created_at
                        .clone_from(&cached.revision.created_at);
                }
                state.observed.services.insert(name, Arc::new(service));
            }
            Written::ServiceRemoved { name, id } => {
                let key = ObjectKey::service(&name);
                self.freshness.pending.remove(&name);
                self.freshness.seen_at.remove(&key);
                self.freshness.removed.insert(key, (now, id));
                if let Some(removed) = state.observed.services.remove(&name) {
                    changed.extend(wake::unmounted(state, &removed.definition, None));
                }
            }
            Written::NetworkCreated(network) => {
                let key = ObjectKey::network(&network.definition.name);
                self.freshness.removed.remove(&key);
                self.freshness.seen_at.insert(key, now);
                changed.extend(wake::network_dependents(state, &network.definition.name));
                state
                    .observed
                    .networks
                    .insert(network.definition.name.clone(), network);
            }
            Written::NetworkRemoved { name, id } => {
                let key = ObjectKey::network(&name);
                self.freshness.seen_at.remove(&key);
                self.freshness.removed.insert(key, (now, id));
                state.observed.networks.remove(&name);
            }
            // Unlike a service's or network's, a version's creation or removal may unblock
            // others: the services waiting for it, and the older versions of its config or
            // secret (which one is the previous version changes).
            Written::DataCreated(data) => {
                let (kind, name) = (data.kind, data.name.clone());
                let key = ObjectKey::data(kind, &name);
                self.freshness.removed.remove(&key);
                self.freshness.seen_at.insert(key, now);
                state.observed.data_mut(kind).insert(name.clone(), data);
                changed.extend(wake::data_changed(state, kind, &name, None));
            }
            Written::DataRemoved { kind, name, id } => {
                let key = ObjectKey::data(kind, &name);
                self.freshness.seen_at.remove(&key);
                self.freshness.removed.insert(key, (now, id));
                let previous = state.observed.data_mut(kind).remove(&name);
                changed.extend(wake::data_changed(state, kind, &name, previous.as_ref()));
            }
        }
    }
}

/// The names of `kind` the view holds that are not in `listed`.
fn absent_from(observed: &Observed, kind: ObjectKind, listed: &BTreeSet<String>) -> Vec<String> {
    fn absent<V>(cached: &BTreeMap<String, V>, listed: &BTreeSet<String>) -> Vec<String> {
        cached
            .keys()
            .filter(|name| !listed.contains(*name))
            .cloned()
            .collect()
    }
    match kind {
        ObjectKind::Service => absent(&observed.services, listed),
        ObjectKind::Network => absent(&observed.networks, listed),
        ObjectKind::Config => absent(observed.data(DataKind::Config), listed),
        ObjectKind::Secret => absent(observed.data(DataKind::Secret), listed),
    }
}

/// Points each desired service at the observed service's definition where the two are equal,
/// and at its hash, source file and instance texts, so that a reload (which builds every
/// definition anew) leaves one of each per service in the view, not two. O(services)
/// comparisons, next to a reload that builds as many.
fn share_observed_definitions(desired: &mut DesiredState, observed: &Observed) {
    for (name, object) in &mut desired.services {
        let Some(service) = observed.services.get(name) else {
            continue;
        };
        if service.definition == object.definition {
            object.definition = Arc::clone(&service.definition);
        }
        let theirs = service.ownership.label_texts();
        for (mine, theirs) in object.label_texts_mut().into_iter().zip(theirs) {
            if let Some(theirs) = theirs {
                adopt_if_equal(mine, theirs);
            }
        }
    }
}

/// What the cache holds right after we wrote a service, until a read confirms it.
fn written_service(
    id: String,
    version: u64,
    desired: &DesiredObject<ServiceDefinition>,
) -> ObservedService {
    ObservedService {
        id,
        version,
        definition: Arc::clone(&desired.definition),
        ownership: {
            let mut ownership = Ownership::from_labels(&desired.owner_labels());
            ownership.share_text(desired);
            ownership
        },
        virtual_ips: Vec::new(),
        update_status: None,
        // Unknown until read back: no task counts as running the new spec meanwhile, so that
        // the status never calls the old tasks ready right after an update.
        revision: crate::docker::ServiceRevision {
            template: Some(crate::docker::UNREAD_TEMPLATE.to_owned()),
            ..Default::default()
        },
    }
}

/// The networks the swarm has, by name (spec validation accepts references to them).
pub fn existing_networks(world: &World) -> BTreeSet<String> {
    world.snapshot().observed.networks.keys().cloned().collect()
}

#[cfg(test)]
mod tests {
    //! The merge rules, report by report.

    use super::*;
    use crate::desired::definition::DEFAULT_INSTANCE;
    use crate::desired::definition::tests::sample_service;
    use crate::docker::UpdateState;

    struct Fixture {
        world: World,
        reporter: Reporter,
        changes: mpsc::UnboundedReceiver<ObjectKey>,
    }

    fn fixture() -> Fixture {
        let world = World::default();
        let (tx, changes) = mpsc::unbounded_channel();
        let (reflector, reporter) = Reflector::new(world.clone(), tx);
        tokio::spawn(reflector.run());
        Fixture {
            world,
            reporter,
            changes,
        }
    }

    fn desired(name: &str) -> DesiredObject<ServiceDefinition> {
        DesiredObject::new(sample_service(name), "a.yaml".into(), DEFAULT_INSTANCE)
    }

    /// What the engine would answer for a service we wrote, at `version`.
    fn read(desired: &DesiredObject<ServiceDefinition>, id: &str, version: u64) -> ObservedService {
        ObservedService {
            version,
            ..written_service(id.into(), version, desired)
        }
    }

    fn drain(rx: &mut mpsc::UnboundedReceiver<ObjectKey>) -> Vec<ObjectKey> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    async fn with_desired(f: &Fixture, names: &[&str]) {
        let mut state = DesiredState {
            prune_allowed: true,
            ..DesiredState::default()
        };
        for name in names {
            state.services.insert((*name).into(), desired(name));
        }
        f.reporter.desired(state).await;
    }

    /// The swarm holds network `name`, owned by this instance, from a spec file now gone.
    async fn observe_owned_network(f: &Fixture, name: &str) {
        let network = ObservedNetwork::owned_for_test(name, "gone.yaml");
        f.reporter
            .observed(Observation::Networks {
                ticket: f.world.ticket(),
                networks: vec![network],
            })
            .await;
    }

    #[tokio::test]
    async fn a_list_issued_before_a_create_does_not_erase_it() {
        let mut f = fixture();
        with_desired(&f, &["a"]).await;
        drain(&mut f.changes);
        let ticket = f.world.ticket(); // the list is issued...
        f.reporter
            .written(Written::ServiceCreated {
                id: "s1".into(),
                desired: desired("a"),
            })
            .await; // ...a create completes meanwhile...
        f.reporter
            .observed(Observation::Services {
                ticket,
                services: vec![],
            })
            .await; // ...and the list, which does not show it, arrives.
        assert!(f.world.snapshot().observed.services.contains_key("a"));
        assert_eq!(drain(&mut f.changes), [], "nothing changed, nothing to do");
        // A list issued after the create proves it gone.
        let ticket = f.world.ticket();
        f.reporter
            .observed(Observation::Services {
                ticket,
                services: vec![],
            })
            .await;
        assert!(!f.world.snapshot().observed.services.contains_key("a"));
        assert_eq!(drain(&mut f.changes), [ObjectKey::service("a")]);
    }

    #[tokio::test]
    async fn the_first_read_of_a_created_service_keeps_the_cached_spec_and_takes_its_version() {
        let mut f = fixture();
        with_desired(&f, &["a"]).await;
        f.reporter
            .written(Written::ServiceCreated {
                id: "s1".into(),
                desired: desired("a"),
            })
            .await;
        let cached_image = f.world.snapshot().observed.services["a"]
            .definition
            .image
            .as_ptr();
        drain(&mut f.changes);
        f.reporter
            .observed(Observation::Services {
                ticket: f.world.ticket(),
                services: vec![read(&desired("a"), "s1", 7)],
            })
            .await;
        let state = f.world.snapshot();
        let service = &state.observed.services["a"];
        assert_eq!(service.version, 7, "swarm's version is taken");
        assert_eq!(
            service.definition.image.as_ptr(),
            cached_image,
            "the equal spec stays where it was in memory"
        );
        drop(state);
        assert_eq!(drain(&mut f.changes), [], "nothing to reconcile");
    }

    /// The view holds one definition per service while the swarm has what the specs ask: a
    /// service found on the swarm shares the desired definition, and a reload (which builds
    /// every definition anew) shares the observed one; a service that differs keeps its own.
    #[tokio::test]
    async fn equal_desired_and_observed_services_share_one_definition_and_their_label_texts() {
        let f = fixture();
        with_desired(&f, &["a", "b"]).await;
        let mut drifted = read(&desired("b"), "s2", 3);
        Arc::make_mut(&mut drifted.definition).image = "hand-edited".into();
        f.reporter
            .observed(Observation::Services {
                ticket: f.world.ticket(),
                services: vec![read(&desired("a"), "s1", 7), drifted],
            })
            .await;
        let shared = |state: &WorldState, name: &str| {
            Arc::ptr_eq(
                &state.desired.services[name].definition,
                &state.observed.services[name].definition,
            )
        };
        // The hash, source file and instance labels are one text each, drifted or not (the
        // labels of a hand-edited service still name the spec the operator wrote).
        let texts_shared = |state: &WorldState, name: &str| {
            let desired = &state.desired.services[name];
            let ownership = &state.observed.services[name].ownership;
            [
                (&desired.hash, &ownership.spec_hash),
                (&desired.source_file, &ownership.source_file),
                (&desired.instance, &ownership.instance),
            ]
            .into_iter()
            .all(|(d, o)| o.as_ref().is_some_and(|o| Arc::ptr_eq(d, o)))
        };
        let state = f.world.snapshot();
        assert!(shared(&state, "a"), "found as asked: one definition");
        assert!(!shared(&state, "b"), "drifted: its own");
        assert!(texts_shared(&state, "a") && texts_shared(&state, "b"));
        let observed_a = Arc::clone(&state.observed.services["a"].definition);
        drop(state);

        with_desired(&f, &["a", "b"]).await; // a reload: every definition built anew
        let state = f.world.snapshot();
        assert!(
            shared(&state, "a"),
            "the reload takes the observed definition"
        );
        assert!(Arc::ptr_eq(
            &state.desired.services["a"].definition,
            &observed_a
        ));
        assert!(!shared(&state, "b"));
        assert!(
            texts_shared(&state, "a") && texts_shared(&state, "b"),
            "the reload takes the observed texts"
        );
        assert_eq!(
            state.desired.services["b"].definition.image,
            desired("b").definition.image
        );
    }

    /// What a listed definition may be replaced by: the view's copy, the desired one when the
    /// view's differs (a drifted service), nothing when neither equals it.
    #[tokio::test]
    async fn a_listed_definition_is_replaced_by_the_held_equal_one() {
        let f = fixture();
        with_desired(&f, &["a", "b"]).await;
        let cached = read(&desired("a"), "s1", 7);
        let mut drifted = read(&desired("b"), "s2", 3);
        Arc::make_mut(&mut drifted.definition).image = "hand-edited".into();
        f.reporter
            .observed(Observation::Services {
                ticket: f.world.ticket(),
                services: vec![cached, drifted],
            })
            .await;
        let state = f.world.snapshot();
        let listed = |name: &str| (*desired(name).definition).clone();

        let held = state.held_definition("a", &listed("a")).expect("a is held");
        assert!(Arc::ptr_eq(&held, &state.observed.services["a"].definition));
        let held = state
            .held_definition("b", &listed("b"))
            .expect("b is desired");
        assert!(Arc::ptr_eq(&held, &state.desired.services["b"].definition));
        let mut unknown = listed("b");
        unknown.image = "something else".into();
        assert!(state.held_definition("b", &unknown).is_none());
        assert!(state.held_definition("c", &listed("c")).is_none());
    }

    /// The tables of a burst's pending writes shrink once the writes are confirmed; a table
    /// still in use keeps its room.
    #[test]
    fn freshness_gives_back_the_room_of_a_burst() {
        let mut freshness = Freshness::default();
        for i in 0..5_000_u64 {
            freshness.pending.insert(format!("s{i}"), (i, 0));
        }
        freshness.pending.retain(|name, _| name == "s7");
        let burst = freshness.pending.capacity();
        freshness.shrink();
        assert!(
            freshness.pending.capacity() < burst / 64,
            "{burst} -> {}",
            freshness.pending.capacity()
        );
        assert_eq!(freshness.pending["s7"], (7, 0));

        for i in 0..1_000_u64 {
            freshness.pending.insert(format!("s{i}"), (i, 0));
        }
        let in_use = freshness.pending.capacity();
        freshness.shrink();
        assert_eq!(freshness.pending.capacity(), in_use);
    }

    #[tokio::test]
    async fn an_older_read_never_rolls_back_an_update() {
        let mut f = fixture();
        with_desired(&f, &["a"]).await;
        let before = f.world.ticket();
        f.reporter
            .observed(Observation::Service {
                ticket: before,
                name: "a".into(),
                service: Some(Box::new(read(&desired("a"), "s1", 10))),
            })
            .await;
        let stale_ticket = f.world.ticket();
        let mut v2 = desired("a");
        Arc::make_mut(&mut v2.definition).image = "v2".into();
        v2 = DesiredObject::new(
            Arc::unwrap_or_clone(v2.definition),
            "a.yaml".into(),
            DEFAULT_INSTANCE,
        );
        f.reporter
            .written(Written::ServiceUpdated {
                id: "s1".into(),
                based_on: 10,
                desired: v2.clone(),
            })
            .await;
        drain(&mut f.changes);
        // A read issued before the update, showing version 10, arrives late.
        f.reporter
            .observed(Observation::Service {
                ticket: stale_ticket,
                name: "a".into(),
                service: Some(Box::new(read(&desired("a"), "s1", 10))),
            })
            .await;
        assert_eq!(
            f.world.snapshot().observed.services["a"].definition.image,
            "v2"
        );
        // So does a list with an even older version.
        f.reporter
            .observed(Observation::Services {
                ticket: before,
                services: vec![read(&desired("a"), "s1", 9)],
            })
            .await;
        assert_eq!(
            f.world.snapshot().observed.services["a"].definition.image,
            "v2"
        );
        assert_eq!(drain(&mut f.changes), []);
        // The read-back with the new version is taken, and changes nothing the plan sees.
        let ticket = f.world.ticket();
        f.reporter
            .observed(Observation::Service {
                ticket,
                name: "a".into(),
                service: Some(Box::new(read(&v2, "s1", 12))),
            })
            .await;
        assert_eq!(f.world.snapshot().observed.services["a"].version, 12);
        assert_eq!(drain(&mut f.changes), []);
        // Someone else's later change is taken and triggers the key.
        let mut drifted = read(&v2, "s1", 15);
        Arc::make_mut(&mut drifted.definition).image = "hand-edited".into();
        f.reporter
            .observed(Observation::Service {
                ticket: f.world.ticket(),
                name: "a".into(),
                service: Some(Box::new(drifted)),
            })
            .await;
        assert_eq!(drain(&mut f.changes), [ObjectKey::service("a")]);
    }

    #[tokio::test]
    async fn a_read_issued_before_a_removal_does_not_bring_it_back() {
        let mut f = fixture();
        with_desired(&f, &[]).await;
        f.reporter
            .observed(Observation::Services {
                ticket: f.world.ticket(),
                services: vec![read(&desired("a"), "s1", 3)],
            })
            .await;
        let stale = f.world.ticket();
        f.reporter
            .written(Written::ServiceRemoved {
                name: "a".into(),
                id: "s1".into(),
            })
            .await;
        drain(&mut f.changes);
        f.reporter
            .observed(Observation::Services {
                ticket: stale,
                services: vec![read(&desired("a"), "s1", 3)],
            })
            .await;
        assert!(f.world.snapshot().observed.services.is_empty());
        assert_eq!(drain(&mut f.changes), []);
        // A new service of the same name (another id), read later, is real.
        f.reporter
            .observed(Observation::Service {
                ticket: f.world.ticket(),
                name: "a".into(),
                service: Some(Box::new(read(&desired("a"), "s2", 8))),
            })
            .await;
        assert_eq!(f.world.snapshot().observed.services["a"].id, "s2");
    }

    #[tokio::test]
    async fn unmanaged_churn_triggers_nothing() {
        let mut f = fixture();
        with_desired(&f, &["a"]).await;
        drain(&mut f.changes);
        let mut other = read(&desired("churn"), "x1", 4);
        other.ownership = Ownership::default();
        f.reporter
            .observed(Observation::Service {
                ticket: f.world.ticket(),
                name: "churn".into(),
                service: Some(Box::new(other)),
            })
            .await;
        f.reporter
            .observed(Observation::Service {
                ticket: f.world.ticket(),
                name: "churn".into(),
                service: None,
            })
            .await;
        assert_eq!(drain(&mut f.changes), []);
    }

    #[tokio::test]
    async fn only_a_user_going_away_wakes_a_network_removal_that_waits_for_it() {
        let mut f = fixture();
        with_desired(&f, &[]).await;
        observe_owned_network(&f, "held").await;
        drain(&mut f.changes);
        let mut user = read(&desired("user"), "u1", 4);
        user.ownership = Ownership::default();
        Arc::make_mut(&mut user.definition).networks = vec!["held".into()];
        // A user appearing (or changing something else) blocks more, it unblocks nothing.
        f.reporter
            .observed(Observation::Service {
                ticket: f.world.ticket(),
                name: "user".into(),
                service: Some(Box::new(user.clone())),
            })
            .await;
        user.version = 5;
        Arc::make_mut(&mut user.definition).image = "other".into();
        f.reporter
            .observed(Observation::Service {
                ticket: f.world.ticket(),
                name: "user".into(),
                service: Some(Box::new(user)),
            })
            .await;
        assert_eq!(drain(&mut f.changes), []);
        // Its removal may let the network go.
        f.reporter
            .observed(Observation::Service {
                ticket: f.world.ticket(),
                name: "user".into(),
                service: None,
            })
            .await;
        assert_eq!(drain(&mut f.changes), [ObjectKey::network("held")]);
    }

    /// A network whose removal waits (in backoff) is not tried again because a reload changed
    /// the prune rules in a way that does not concern it (another file failing to load, then
    /// loading again); pruning being withheld and allowed again does concern it.
    #[tokio::test]
    async fn prune_rule_changes_trigger_only_the_objects_whose_plan_they_change() {
        let mut f = fixture();
        with_desired(&f, &["a"]).await;
        observe_owned_network(&f, "held").await;
        drain(&mut f.changes);
        let mut state = DesiredState::clone(&f.world.snapshot().desired);
        state.failed_files.insert("other.yaml".into());
        f.reporter.desired(state.clone()).await;
        state.failed_files.clear();
        f.reporter.desired(state.clone()).await;
        assert_eq!(drain(&mut f.changes), []);
        // Withheld (the removal is held now), then allowed again: both change its plan.
        state.prune_allowed = false;
        f.reporter.desired(state.clone()).await;
        assert_eq!(drain(&mut f.changes), [ObjectKey::network("held")]);
        state.prune_allowed = true;
        f.reporter.desired(state).await;
        assert_eq!(drain(&mut f.changes), [ObjectKey::network("held")]);
    }

    #[tokio::test]
    async fn the_end_of_a_rollback_triggers_the_service_without_a_spec_change() {
        let mut f = fixture();
        with_desired(&f, &["a"]).await;
        let with_update = |version, state, message: &str| {
            let mut service = read(&desired("a"), "s1", version);
            service.update_status = Some(Box::new(crate::docker::UpdateStatus {
                state,
                message: message.into(),
                started_at: None,
            }));
            Observation::Service {
                ticket: f.world.ticket(),
                name: "a".into(),
                service: Some(Box::new(service)),
            }
        };
        f.reporter
            .observed(with_update(
                20,
                UpdateState::ROLLBACK_STARTED,
                "rollback started",
            ))
            .await;
        drain(&mut f.changes);
        f.reporter
            .observed(with_update(
                21,
                UpdateState::ROLLBACK_STARTED,
                "rolling back",
            ))
            .await;
        assert_eq!(drain(&mut f.changes), [], "only swarm's message changed");
        f.reporter
            .observed(with_update(
                22,
                UpdateState::ROLLBACK_COMPLETED,
                "rollback completed",
            ))
            .await;
        assert_eq!(drain(&mut f.changes), [ObjectKey::service("a")]);
    }

    #[tokio::test]
    async fn only_changed_specs_are_triggered() {
        let mut f = fixture();
        with_desired(&f, &["a", "b", "c"]).await;
        assert_eq!(drain(&mut f.changes).len(), 3);
        let mut state = DesiredState::clone(&f.world.snapshot().desired);
        let mut b = (*state.services["b"].definition).clone();
        b.image = "new".into();
        state.services.insert(
            "b".into(),
            DesiredObject::new(b, "a.yaml".into(), DEFAULT_INSTANCE),
        );
        f.reporter.desired(state).await;
        assert_eq!(drain(&mut f.changes), [ObjectKey::service("b")]);
    }
}
