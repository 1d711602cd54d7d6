//! What the engine's parts share while a plan's sync runs: the task (client, progress, state,
//! the sources as followed) and why it stopped. `engine` drives it; `stream` and `watcher`
//! read and update it.

use std::sync::Mutex;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use mongodb::bson::Bson;

use super::history::{Anchor, Unverified};
use super::state::{HistoryLost, SourceResume, SyncState};
use super::token::OpTime;
use crate::uri::Uri;

/// One source database and its clone, as the engine follows it.
pub(super) struct Source {
    pub resume: SourceResume,
    /// The start point is still to be captured (no recorded state).
    pub fresh: bool,
    pub lag: Option<i64>,
    /// The `_id` of the drain marker this process wrote, once asked to drain.
    pub marker: Option<Bson>,
    pub drained: bool,
    /// Where the stream's cursor stands (the start point until it opens).
    pub cursor_at: OpTime,
    /// Reads the history checks (`watcher`) or the drain's proof still have to prove complete.
    pub unverified: Unverified,
    /// The stream's last event (the recorded token, after a restart).
    pub last: Option<Anchor>,
    /// The `_id` of the marker written at the start point: the stream's first event.
    pub start_marker: Option<Bson>,
}

impl Source {
    pub fn new(resume: SourceResume, fresh: bool) -> Source {
        let at = resume.needed();
        let last = match (
            resume.token.as_deref().and_then(super::token::decode),
            resume.position,
        ) {
            (Some(event), Some(at)) => Some(Anchor::next(None, event, at)),
            _ => None,
        };
        Source {
            resume,
            fresh,
            lag: None,
            marker: None,
            drained: false,
            cursor_at: at,
            // A fresh source has nothing to prove until its start point is captured.
            unverified: if fresh {
                Unverified::default()
            } else {
                Unverified::starting_at(at, last.clone())
            },
            last,
            start_marker: None,
        }
    }
}

pub(super) struct Task {
    pub client: mongodb::Client,
    pub uri: Uri,
    pub parallelism: usize,
    pub collections_done: AtomicI64,
    pub collections_total: AtomicI64,
    pub state: Mutex<SyncState>,
    pub sources: Mutex<Vec<Source>>,
    pub abort: Mutex<Option<tokio::task::AbortHandle>>,
    /// Wakes the history watcher early (a drain waits for its next check).
    pub wake: tokio::sync::Notify,
}

/// Why the engine stopped before draining.
pub(super) enum Stop {
    Lost(HistoryLost),
    Failed(String),
}

impl Task {
    pub fn set_state(&self, s: SyncState) {
        *self.state.lock().expect("lock") = s;
    }

    /// An error of the server, redacted of the connection string.
    pub fn failed(&self, what: &str, e: &mongodb::error::Error) -> Stop {
        Stop::Failed(self.uri.redact(&format!("{what}: {e}")))
    }

    /// A drain was asked for (a marker written into some source).
    pub fn draining(&self) -> bool {
        self.sources
            .lock()
            .expect("lock")
            .iter()
            .any(|s| s.marker.is_some())
    }

    pub fn with_source<R>(&self, idx: usize, f: impl FnOnce(&mut Source) -> R) -> R {
        f(&mut self.sources.lock().expect("lock")[idx])
    }
}

/// How long a stream keeps reopening after connection errors (the server restarting: the soak
/// saw restarts take 30–130 s on a loaded machine) before the sync fails.
pub(super) const RECONNECT_FOR: Duration = Duration::from_secs(180);
/// Pause before reopening after a connection error.
pub(super) const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

/// A connection error, not an answer: the server restarted or is briefly unreachable. The
/// stream reopens after the last applied event (applying is idempotent) instead of failing.
pub(super) fn transient(e: &mongodb::error::Error) -> bool {
    use mongodb::error::ErrorKind;
    matches!(
        e.kind.as_ref(),
        ErrorKind::Io(_)
            | ErrorKind::ConnectionPoolCleared { .. }
            | ErrorKind::ServerSelection { .. }
    ) || [
        "RetryableWriteError",
        "ResumableChangeStreamError",
        "TransientTransactionError",
    ]
    .iter()
    .any(|l| e.contains_label(l))
}
