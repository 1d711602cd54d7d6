//! The history checks, beside the copy and the streams: each reads the oplog's bounds (costly
//! on this server, see `history::oplog`) and proves the streams' reads since the last check
//! complete, or stops the sync with `HistoryLost`. The next check waits four times as long as
//! this one took (at least a second, at most two minutes), or until woken by a drain.

use std::time::{Duration, Instant};

use super::history;
use super::task::{Stop, Task};

const MIN_INTERVAL: Duration = Duration::from_secs(1);
const MAX_INTERVAL: Duration = Duration::from_secs(120);

/// Runs until the history is found lost or the oplog cannot be read (it never returns
/// otherwise; the sync stops it when done).
pub(super) async fn watch(task: &Task) -> Stop {
    loop {
        // What to prove, seen before the oplog is read.
        let seen: Vec<_> = task
            .sources
            .lock()
            .expect("lock")
            .iter()
            .map(|s| (s.resume.source.clone(), s.fresh, s.unverified, s.cursor_at))
            .collect();
        let began = Instant::now();
        let oplog = match history::oplog(&task.client).await {
            Ok(o) => o,
            Err(e) => {
                return task.failed(
                    "reading the server's oplog (local.oplog.rs) to verify the change streams' \
                     history (the sync needs read access to the local database)",
                    &e,
                );
            }
        };
        let cost = began.elapsed();
        for (idx, (name, fresh, unverified, at)) in seen.into_iter().enumerate() {
            if fresh {
                // Its start point was not captured yet when the check began.
                continue;
            }
            if let Some(from) = unverified.from
                && let Err(lost) = history::covers(oplog.as_ref(), &name, from)
            {
                return Stop::Lost(lost);
            }
            task.with_source(idx, |s| {
                s.unverified.proven(unverified, at);
                if let Some(o) = &oplog {
                    s.lag = Some(history::lag_seconds(o.newest, s.cursor_at));
                }
            });
        }
        let interval = (cost * 4).clamp(MIN_INTERVAL, MAX_INTERVAL);
        let _ = tokio::time::timeout(interval, task.wake.notified()).await;
    }
}
