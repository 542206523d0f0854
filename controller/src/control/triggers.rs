//! Watching the spec directory: a saved file is applied at once (after its burst, a few
//! milliseconds), a stream of partial writes once it goes quiet, and never later than 300 ms while writes go on.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::desired::{DesiredState, OnSwarm};
use crate::spec::load::LoadDirError;
use crate::spec::{ReadScope, SpecStore};

/// Errors setting up a trigger.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    /// The spec directory could not be watched.
    #[error("watching spec directory {dir}: {source}")]
    Watch {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: notify::Error,
    },
}

/// How long a file that is being written without being closed (a partial write, an editor
/// that keeps it open) must stay quiet before it is read.
const QUIET_AFTER_WRITES: Duration = Duration::from_millis(150);

/// The longest a change waits while writes keep coming: a script writing thousands of files
/// one by one (each one opened, written, closed) never leaves the directory quiet, and waiting
/// for the stream to end would hold the first create until the last file. Past this, the
/// directory is read as it is; a file caught mid-write is held as any broken file is (its last
/// good objects stay) and the next reload, at most this long after, reads it whole.
const MAX_HOLD: Duration = Duration::from_millis(300);

/// How long a saved, renamed or removed file waits for the rest of its burst: `rm a.yaml
/// b.yaml`, a `git checkout` or an editor's save dance touch several files within a
/// millisecond or two, and applying the state between them would act on a directory nobody
/// meant (e.g. prune because one of two deleted files was still there).
const BURST_SETTLE: Duration = Duration::from_millis(15);

/// What a file-system event means for reloading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Urgency {
    /// A file was closed after writing, renamed into place, created or removed: its content is
    /// final, read it now.
    Now,
    /// A file is being written: wait until it goes quiet (or is closed).
    WhenQuiet,
}

fn urgency(event: &Event) -> Option<Urgency> {
    match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write))
        | EventKind::Modify(ModifyKind::Name(_))
        | EventKind::Create(_)
        | EventKind::Remove(_) => Some(Urgency::Now),
        EventKind::Modify(_) | EventKind::Any | EventKind::Other => Some(Urgency::WhenQuiet),
        EventKind::Access(_) => None,
    }
}

/// Re-reads the spec directory. `on_swarm` is what the swarm has: its networks (spec
/// validation accepts references to them) and the view's definitions (kept where equal). `None` when it found what `previous` was built
/// from (see [`DesiredState::load_unless_same`]).
///
/// A directory that can not be read returns the error and changes nothing (so prunes
/// nothing); the caller reports it.
pub fn reload_specs(
    store: &mut SpecStore,
    dir: &Path,
    on_swarm: OnSwarm<'_>,
    allow_empty_prune: bool,
    instance: &str,
    scope: ReadScope,
    previous: Option<&DesiredState>,
) -> Result<Option<DesiredState>, LoadDirError> {
    let Some(desired) = DesiredState::load_unless_same(
        store,
        dir,
        on_swarm,
        allow_empty_prune,
        instance,
        scope,
        previous,
    )?
    else {
        return Ok(None);
    };
    // A first read of a burst repeats the last whole read's errors: they were logged then.
    if !desired.partial {
        for error in &desired.errors {
            warn!(%error, "spec problem");
        }
    }
    Ok(Some(desired))
}

/// Watches the spec directory; sends one `()` per change worth a reload, coalesced: while the
/// receiver is busy at most one signal waits. Keep the returned watcher alive for as long as
/// events are wanted. Events are hints only: the receiver re-reads the whole directory.
pub fn watch_specs(dir: &Path) -> Result<(RecommendedWatcher, mpsc::Receiver<()>), TriggerError> {
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<Urgency>();
    let mut watcher = notify::recommended_watcher(move |result: notify::Result<Event>| {
        let urgency = match result {
            Ok(event) => urgency(&event),
            Err(error) => {
                warn!(%error, "watching the spec directory; re-reading it to be safe");
                Some(Urgency::Now)
            }
        };
        if let Some(urgency) = urgency {
            let _ = raw_tx.send(urgency);
        }
    })
    .map_err(|source| TriggerError::Watch {
        dir: dir.to_owned(),
        source,
    })?;
    // Recursive: configs, secrets and env files that specs read may sit in subdirectories
    // (import-compose puts them under `files/`), and an edit of one is a spec change.
    watcher
        .watch(dir, RecursiveMode::Recursive)
        .map_err(|source| TriggerError::Watch {
            dir: dir.to_owned(),
            source,
        })?;

    // Capacity 1: a pending "something changed" already covers any later change.
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        let mut quiet_deadline: Option<Instant> = None;
        // When the pending change was first seen: no deadline moves past it + MAX_HOLD.
        let mut pending_since: Option<Instant> = None;
        loop {
            // The deadline first: `timeout_at` would poll the receiver first, and a stream of
            // events that never leaves it empty (a script writing thousands of files) would
            // hold the reload until the stream stops.
            let next = async {
                match quiet_deadline {
                    Some(deadline) => tokio::select! {
                        biased;
                        () = tokio::time::sleep_until(deadline) => Err(()),
                        event = raw_rx.recv() => Ok(event),
                    },
                    None => Ok(raw_rx.recv().await),
                }
            };
            match next.await {
                Ok(None) => return, // the watcher was dropped
                Ok(Some(Urgency::Now)) => {
                    // Never later than a pending deadline: a stream of saves still reloads
                    // every BURST_SETTLE.
                    let settle = Instant::now() + BURST_SETTLE;
                    pending_since.get_or_insert_with(Instant::now);
                    quiet_deadline = Some(quiet_deadline.map_or(settle, |d| d.min(settle)));
                }
                Ok(Some(Urgency::WhenQuiet)) => {
                    let since = *pending_since.get_or_insert_with(Instant::now);
                    quiet_deadline =
                        Some((Instant::now() + QUIET_AFTER_WRITES).min(since + MAX_HOLD));
                }
                Err(()) => {
                    quiet_deadline = None;
                    pending_since = None;
                    debug!("spec directory changed");
                    if tx.try_send(()).is_err() && tx.is_closed() {
                        return;
                    }
                }
            }
        }
    });
    Ok((watcher, rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A script that writes file after file (open, write, close: each one a create, a modify
    /// and a close event) must not hold the reload until it stops: the first signal comes while
    /// it is still writing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stream_of_written_files_is_reloaded_before_it_ends() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (_watcher, mut changes) = watch_specs(dir.path()).expect("watch");
        let path = dir.path().to_owned();
        let writer = tokio::task::spawn_blocking(move || {
            // Long enough (several MAX_HOLDs even on an idle machine) that a reload held until
            // the stream ends could not arrive before it.
            let until = std::time::Instant::now() + Duration::from_secs(3);
            let mut n = 0u32;
            while std::time::Instant::now() < until {
                std::fs::write(path.join(format!("s{n}.yaml")), "kind: SwarmService\n")
                    .expect("write");
                n += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            n
        });
        let mut during = 0;
        let writer = {
            let mut writer = writer;
            loop {
                tokio::select! {
                    Some(()) = changes.recv() => during += 1,
                    written = &mut writer => break written.expect("writer"),
                }
            }
        };
        assert!(writer > 10, "the writer wrote only {writer} files");
        assert!(
            during >= 1,
            "no reload signal while {writer} files were being written over 3 s"
        );
    }
}
