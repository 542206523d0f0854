//! How long an Engine API call may take before the engine counts as not answering.

use std::future::Future;
use std::time::Duration;

use super::{DockerError, Op};

/// The deadlines of every call the adapter makes, and of the event stream's silence.
///
/// A hung engine (it accepts connections and never answers) is otherwise indistinguishable
/// from a slow one: without a deadline a read waits forever, the watch loop stops with it,
/// and nothing says so. The defaults let `/readyz` fail within 60 s of a hang: the task poll
/// (every second) gives up after [`Deadlines::read`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// A read (list, inspect, info).
    pub read: Duration,
    /// A write (create, update, remove): raft proposals, slower than reads on a busy swarm.
    pub write: Duration,
    /// How long the event stream may stay silent before the engine is asked whether it still
    /// answers (swarm sends no heartbeat on the stream, so silence alone proves nothing).
    pub events_silence: Duration,
}

/// Default [`Deadlines::read`].
pub const DEFAULT_READ: Duration = Duration::from_secs(20);
/// Default [`Deadlines::write`].
pub const DEFAULT_WRITE: Duration = Duration::from_secs(60);
/// Default [`Deadlines::events_silence`].
pub const DEFAULT_EVENTS_SILENCE: Duration = Duration::from_secs(30);

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            read: DEFAULT_READ,
            write: DEFAULT_WRITE,
            events_silence: DEFAULT_EVENTS_SILENCE,
        }
    }
}

impl Deadlines {
    /// The deadline of one request.
    pub fn of(&self, op: Op) -> Duration {
        if op.is_write() { self.write } else { self.read }
    }

    /// The deadline of a whole reconcile: a handful of reads and writes, each bounded on its
    /// own; this bounds their sum, so that a reconcile can never hold its key for long.
    pub fn reconcile(&self) -> Duration {
        (self.read + self.write) * 2
    }

    /// Runs `call` (request `op`) within its deadline; [`DockerError::Timeout`] when it takes
    /// longer (the call is dropped, which closes its connection).
    pub async fn bound<F: Future>(&self, op: Op, call: F) -> Result<F::Output, DockerError> {
        let after = self.of(op);
        tokio::time::timeout(after, call)
            .await
            .map_err(|_| DockerError::Timeout { op, after })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_call_past_its_deadline_is_a_timeout_naming_the_request() {
        let deadlines = Deadlines {
            read: Duration::from_secs(2),
            write: Duration::from_secs(7),
            events_silence: Duration::from_secs(1),
        };
        let started = tokio::time::Instant::now();
        let hung = deadlines
            .bound(Op::ListTasks, std::future::pending::<()>())
            .await;
        assert!(
            matches!(hung, Err(DockerError::Timeout { op: Op::ListTasks, after }) if after == Duration::from_secs(2)),
            "{hung:?}"
        );
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(2),
            "the read deadline"
        );
        let started = tokio::time::Instant::now();
        let hung = deadlines
            .bound(Op::UpdateService, std::future::pending::<()>())
            .await;
        assert!(matches!(
            hung,
            Err(DockerError::Timeout {
                op: Op::UpdateService,
                ..
            })
        ));
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(7),
            "the write deadline"
        );
        let answered = deadlines.bound(Op::ListTasks, async { 5 }).await;
        assert_eq!(answered.ok(), Some(5));
        let message = hung.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            message.contains("update_service") && message.contains("7s"),
            "{message}"
        );
    }
}
