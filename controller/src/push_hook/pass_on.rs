//! A push hook that reached a follower, passed on to the leader: the follower records the
//! pushed commit on the instance's revision record, and the leader, which reads that record
//! while it leads, fetches at once when it sees a new request.
//!
//! Why the revision record and not the lease: the lease is the leader's compare-and-swap
//! object, and a follower's write to it would make the leader's next renewal conflict and step
//! down. The revision record is written by the leader only when its progress changes, and
//! its writes keep the request label. Each request is one raft proposal, made only for a
//! verified hook (so no more often than the hook's rate limit allows) and none when the record
//! already names the commit; the leader's side is reads only.

use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::applied_revision::RevisionRecord;
use crate::election::Leadership;
use crate::git::{FetchTrigger, SourceUpdate};
use crate::revision::Revision;

/// How often the leader reads the record for requests: a passed-on push is fetched within
/// this (plus the fetch); one read of one config, served by the manager without a proposal.
pub const LEADER_READ_PERIOD: Duration = Duration::from_secs(2);

/// What a follower's hook needs to pass a push on.
#[derive(Clone)]
pub struct PassOn {
    /// The instance's revision record.
    pub record: RevisionRecord,
    /// Whether this replica leads (a leader fetches itself and passes nothing on).
    pub leadership: Leadership,
}

impl std::fmt::Debug for PassOn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PassOn").finish_non_exhaustive()
    }
}

impl PassOn {
    /// Records `pushed` for the leader unless this replica leads; in the background, so that
    /// the forge's request does not wait on the engine (whose calls have their deadlines).
    /// Whether it was passed on.
    pub fn pass(&self, pushed: &Revision) -> bool {
        if self.leadership.is_leader() {
            return false;
        }
        let record = self.record.clone();
        let pushed = pushed.clone();
        tokio::spawn(async move {
            match record.request_fetch(&pushed).await {
                Ok(true) => info!(revision = %pushed, "push hook passed on to the leader"),
                Ok(false) => debug!(revision = %pushed, "the leader was already asked to fetch"),
                Err(error) => warn!(%error, revision = %pushed,
                    "passing the push hook on to the leader; it finds the commit at its next poll"),
            }
        });
        true
    }
}

/// While this replica leads, reads the record every [`LEADER_READ_PERIOD`] and wakes the
/// fetch when a follower asked for a commit other than the one last seen requested and other
/// than the one checked out. Until `stop`.
pub async fn follow_requests(
    record: RevisionRecord,
    mut leadership: Leadership,
    fetch_now: FetchTrigger,
    updates: watch::Receiver<SourceUpdate>,
    stop: CancellationToken,
) {
    let mut last_seen: Option<Revision> = None;
    loop {
        if !leadership.is_leader() {
            tokio::select! {
                () = stop.cancelled() => return,
                () = leadership.wait_for_leader() => {}
            }
        }
        let read = tokio::select! {
            () = stop.cancelled() => return,
            read = record.fetch_requested() => read,
        };
        match read {
            Ok(Some(requested)) if last_seen.as_ref() != Some(&requested) => {
                let checked_out = updates
                    .borrow()
                    .checkout
                    .as_ref()
                    .map(|(c, _)| c.revision.to_string());
                if checked_out.as_deref() != Some(requested.as_str()) {
                    info!(revision = %requested, "a follower passed on a push: fetching now");
                    fetch_now.fetch_now();
                }
                last_seen = Some(requested);
            }
            Ok(_) => {}
            Err(error) => debug!(%error, "reading fetch requests"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(LEADER_READ_PERIOD) => {}
        }
    }
}
