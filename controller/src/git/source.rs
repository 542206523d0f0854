//! The git source's loop: fetch the ref every `--git-poll` (or at once when asked), check out a
//! new commit whole, and tell the operator; a failing remote keeps the last good commit and is
//! retried with backoff.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use backon::BackoffBuilder as _;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::checkout::{self, Checkout, Limits, RepoPath};
use super::error::GitError;
use super::fetch::{Access, Fetcher, Revision};
use super::remote::RemoteUrl;
use crate::report::status::source::{SourceKind, SourceStatus};

/// How far back the history is walked to tell a forward move from a backward one.
const ANCESTRY_WALK_LIMIT: usize = 10_000;
/// The first retry after a failed fetch; the delay doubles (with jitter) up to the poll period
/// or a minute, whichever is longer.
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX_AT_LEAST: Duration = Duration::from_secs(60);

/// Settings of `run --source git`.
#[derive(Debug, Clone)]
pub struct GitConfig {
    /// `--git-url`.
    pub url: RemoteUrl,
    /// `--git-ref`: a branch name or a full ref.
    pub reference: String,
    /// `--git-path`: the directory of the repository holding the specs.
    pub path: RepoPath,
    /// `--git-cache`: the bare repository (`repo.git`), the checkouts (`trees/`) and the
    /// `current` symlink.
    pub cache: PathBuf,
    /// `--git-poll`.
    pub poll: Duration,
    /// The deadline of one fetch.
    pub fetch_timeout: Duration,
    /// How fetches authenticate.
    pub access: Arc<dyn Access>,
    /// Bounds on a checkout.
    pub limits: Limits,
}

/// How the ref moved from the commit applied before to the new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefMove {
    /// The first commit this cache applies.
    First,
    /// To a descendant (a push).
    Forward,
    /// To an ancestor (a force push back, a reset): said in the log and the activity.
    Backwards {
        /// The commit applied before.
        from: Revision,
    },
    /// To a commit of another history (a force push of a rewritten branch).
    Rewritten {
        /// The commit applied before.
        from: Revision,
    },
}

impl RefMove {
    /// The sentence the log and the activity show, for moves worth saying.
    pub fn notice(&self, to: &Revision, reference: &str) -> Option<String> {
        match self {
            RefMove::First | RefMove::Forward => None,
            RefMove::Backwards { from } => Some(format!(
                "{reference} moved backwards from {} to {}",
                from.short(),
                to.short()
            )),
            RefMove::Rewritten { from } => Some(format!(
                "{reference} was rewritten: {} replaces {}, which it does not descend from",
                to.short(),
                from.short()
            )),
        }
    }
}

/// What the source tells the operator: its state for the status, and the commit to apply.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceUpdate {
    /// The status file's `source`.
    pub status: SourceStatus,
    /// The newest commit checked out (`None` until one is), and how the ref got there.
    pub checkout: Option<(Checkout, RefMove)>,
}

/// Asks the source to fetch now instead of at the next poll (a push webhook). Cheap to clone;
/// requests made while a fetch runs coalesce into one more fetch after it.
#[derive(Debug, Clone, Default)]
pub struct FetchTrigger(Arc<Notify>);

impl FetchTrigger {
    /// Fetch as soon as the current fetch (if any) ends.
    pub fn fetch_now(&self) {
        self.0.notify_one();
    }

    /// What the source waits on (tests watch it).
    #[cfg(test)]
    pub(crate) fn notify(&self) -> &Notify {
        &self.0
    }
}

/// What the operator holds of a running source. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SourceHandle {
    /// The updates, the latest first (a `watch`: one that was not read yet is replaced).
    pub updates: watch::Receiver<SourceUpdate>,
    /// Fetch now.
    pub trigger: FetchTrigger,
    /// The cache directory: the operator reads `<cache>/current` and switches it.
    pub cache: PathBuf,
}

impl SourceHandle {
    /// The spec directory the operator reads: always the `current` tree.
    pub fn specs_dir(&self) -> PathBuf {
        checkout::current_dir(&self.cache)
    }
}

/// The source: see [`GitSource::run`].
pub struct GitSource {
    config: GitConfig,
    fetcher: Fetcher,
    updates: watch::Sender<SourceUpdate>,
    trigger: FetchTrigger,
}

impl GitSource {
    /// Opens (or creates) the cache; blocking, meant for start-up, where a bad cache directory
    /// ends `run` at once.
    pub fn open(config: GitConfig) -> Result<(GitSource, SourceHandle), GitError> {
        let fetcher = Fetcher::open(
            &config.cache.join("repo.git"),
            config.url.clone(),
            &config.reference,
            config.access.clone(),
            config.fetch_timeout,
        )?;
        let status = SourceStatus {
            kind: SourceKind::Git,
            url: config.url.to_string(),
            reference: fetcher.reference().to_owned(),
            path: config.path.to_string(),
            revision: None,
            fetched_at: None,
            error: None,
        };
        let (updates, receiver) = watch::channel(SourceUpdate {
            status,
            checkout: None,
        });
        let trigger = FetchTrigger::default();
        let handle = SourceHandle {
            updates: receiver,
            trigger: trigger.clone(),
            cache: config.cache.clone(),
        };
        Ok((
            GitSource {
                config,
                fetcher,
                updates,
                trigger,
            },
            handle,
        ))
    }

    /// Fetches and checks out until `shutdown`: every `poll`, at once when triggered, and
    /// after a failure with backoff. The first commit comes from the remote, or from the cache
    /// when the remote does not answer (a restart with the remote down keeps what it had).
    pub async fn run(self, shutdown: CancellationToken) {
        let poll = self.config.poll;
        let backoff = backon::ExponentialBuilder::default()
            .with_min_delay(RETRY_MIN)
            .with_max_delay(poll.max(RETRY_MAX_AT_LEAST))
            .with_jitter()
            .without_max_times();
        let mut retries: Option<backon::ExponentialBackoff> = None;
        // The commit applied by an earlier run, to say how the ref moved since.
        let mut applied = checkout::current(&self.config.cache);
        // A commit that was refused is not checked out again until the ref moves.
        let mut refused: Option<(Revision, GitError)> = None;
        loop {
            let result = self.once(&mut applied, &mut refused).await;
            let delay = match &result {
                Ok(()) => {
                    retries = None;
                    poll
                }
                Err(_) => retries
                    .get_or_insert_with(|| backoff.build())
                    .next()
                    .unwrap_or(poll),
            };
            self.updates.send_if_modified(|update| {
                let error = result.as_ref().err().map(ToString::to_string);
                let changed = update.status.error != error;
                update.status.error = error;
                changed
            });
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.trigger.0.notified() => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// One fetch, and the checkout of a new commit.
    async fn once(
        &self,
        applied: &mut Option<Revision>,
        refused: &mut Option<(Revision, GitError)>,
    ) -> Result<(), GitError> {
        let revision = match self.fetcher.fetch().await {
            Ok(fetched) => {
                if fetched.objects_received > 0 {
                    info!(url = %self.config.url, revision = %fetched.revision,
                          objects = fetched.objects_received, "fetched new objects");
                }
                let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
                self.updates
                    .send_modify(|update| update.status.fetched_at = Some(now));
                fetched.revision
            }
            Err(error) => {
                warn!(%error, "fetching the specs' repository; keeping the last good commit");
                if self.updates.borrow().checkout.is_none()
                    && let Ok(Some(cached)) = self.fetcher.cached()
                {
                    // Nothing applied yet in this process: the cache's commit is the last good
                    // one.
                    let _ = self.take(cached, applied, refused).await;
                }
                return Err(error);
            }
        };
        self.take(revision, applied, refused).await
    }

    /// Checks out `revision` unless it is the one published, and publishes it.
    async fn take(
        &self,
        revision: Revision,
        applied: &mut Option<Revision>,
        refused: &mut Option<(Revision, GitError)>,
    ) -> Result<(), GitError> {
        let published = self
            .updates
            .borrow()
            .checkout
            .as_ref()
            .map(|(c, _)| c.revision);
        if published == Some(revision) {
            return Ok(());
        }
        if let Some((commit, error)) = refused.as_ref()
            && *commit == revision
        {
            return Err(error.clone());
        }
        let repo = self.fetcher.repo();
        let path = self.config.path.clone();
        let cache = self.config.cache.clone();
        let limits = self.config.limits;
        let before = *applied;
        let work = tokio::task::spawn_blocking(move || {
            let moved = match before {
                None => RefMove::First,
                Some(from) => movement(&repo, from, revision),
            };
            checkout::check_out(&repo, revision, &path, &cache, limits).map(|c| (c, moved))
        });
        let (checkout, moved) = match work.await {
            Ok(Ok(done)) => done,
            Ok(Err(error)) => {
                warn!(%error, "commit refused; keeping the last good commit");
                *refused = Some((revision, error.clone()));
                return Err(error);
            }
            Err(join) => {
                return Err(GitError::Object {
                    commit: revision.to_string(),
                    message: format!("the checkout thread failed: {join}"),
                });
            }
        };
        *refused = None;
        if let Some(notice) = moved.notice(&revision, self.fetcher.reference()) {
            warn!(url = %self.config.url, "{notice}");
        }
        info!(revision = %revision, dir = %checkout.dir.display(), "commit checked out");
        *applied = Some(revision);
        self.updates.send_modify(|update| {
            update.checkout = Some((checkout, moved));
        });
        Ok(())
    }
}

/// How the ref moved from `from` to `to`.
fn movement(repo: &gix::Repository, from: Revision, to: Revision) -> RefMove {
    if from == to || is_ancestor(repo, from, to) {
        RefMove::Forward
    } else if is_ancestor(repo, to, from) {
        RefMove::Backwards { from }
    } else {
        RefMove::Rewritten { from }
    }
}

/// Whether `ancestor` is reachable from `tip` within [`ANCESTRY_WALK_LIMIT`] commits (a commit
/// the cache no longer has, e.g. after a restart with a pruned history, is not).
fn is_ancestor(repo: &gix::Repository, ancestor: Revision, tip: Revision) -> bool {
    let Ok(walk) = repo.rev_walk([tip.id()]).all() else {
        return false;
    };
    walk.take(ANCESTRY_WALK_LIMIT)
        .map_while(Result::ok)
        .any(|info| info.id == ancestor.id())
}

/// Makes `checkout` the current tree of `cache` (see [`Checkout::activate`]) on a blocking
/// thread.
pub async fn activate(checkout: Checkout, cache: &Path) -> Result<(), GitError> {
    let cache = cache.to_owned();
    let revision = checkout.revision;
    tokio::task::spawn_blocking(move || checkout.activate(&cache))
        .await
        .unwrap_or_else(|join| {
            Err(GitError::Object {
                commit: revision.to_string(),
                message: format!("the switching thread failed: {join}"),
            })
        })
}
