//! The history checks, beside the copy and the streams: each reads the oplog's bounds (costly
//! on this server, see `history::oplog`) and proves the streams' reads since the last check
//! complete, or stops the sync with `HistoryLost`. The next check waits four times as long as
//! this one took (at least a second, at most two minutes). Once a drain was asked for, checks
//! run only when the drain asks (its own proof, a stream, could not tell): they are the early
//! warning while syncing, never on the read-only window's path.

use std::time::{Duration, Instant};

use super::history;
use super::state::HistoryLost;
use super::task::{self, Stop, Task};
use super::token::OpTime;

const MIN_INTERVAL: Duration = Duration::from_secs(1);
const MAX_INTERVAL: Duration = Duration::from_secs(120);

/// Runs until the history is found lost or the oplog cannot be read (it never returns
/// otherwise; the sync stops it when done).
pub(super) async fn watch(task: &Task) -> Stop {
    // Connection errors since the last check that read the oplog (the server restarting).
    let mut streak: Option<Instant> = None;
    loop {
        if task.draining() {
            task.wake.notified().await;
        }
        // What to prove, seen before the oplog is read.
        let seen: Vec<_> = task
            .sources
            .lock()
            .expect("lock")
            .iter()
            .map(|s| {
                (
                    s.resume.source.clone(),
                    s.fresh,
                    s.unverified.clone(),
                    s.cursor_at,
                    s.last.clone(),
                )
            })
            .collect();
        let began = Instant::now();
        let oplog = match history::oplog(&task.client).await {
            Ok(o) => {
                streak = None;
                o
            }
            // The reads stay unproven until a check reads the oplog again.
            Err(e)
                if task::transient(&e)
                    && streak.get_or_insert_with(Instant::now).elapsed() < task::RECONNECT_FOR =>
            {
                tokio::time::sleep(task::RECONNECT_PAUSE).await;
                continue;
            }
            Err(e) => {
                return task.failed(
                    "reading the server's oplog (local.oplog.rs) to verify the change streams' \
                     history (the sync needs read access to the local database)",
                    &e,
                );
            }
        };
        let cost = began.elapsed();
        for (idx, (name, fresh, unverified, at, last)) in seen.into_iter().enumerate() {
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
                s.unverified.proven(&unverified, at, last);
                if let Some(o) = &oplog {
                    s.lag = Some(history::lag_seconds(o.newest, s.cursor_at));
                }
            });
        }
        let interval = (cost * 4).clamp(MIN_INTERVAL, MAX_INTERVAL);
        if !task.draining() {
            let _ = tokio::time::timeout(interval, task.wake.notified()).await;
        }
    }
}

/// The history a stream of `source` needed from `needed` is gone (a proof said so): how much
/// oplog it would have taken, read from the oplog now (off the window's path: the window fails
/// anyway).
pub(super) async fn lost_at(task: &Task, source: &str, needed: OpTime) -> Stop {
    let oplog = history::oplog(&task.client).await.ok().flatten();
    match history::covers(oplog.as_ref(), source, needed) {
        Err(lost) => Stop::Lost(lost),
        Ok(()) => Stop::Lost(HistoryLost {
            source: source.to_string(),
            needed_from: needed,
            oldest: oplog.map_or(needed, |o| o.oldest),
            needed_seconds: 1,
            needed_entries: oplog.map_or(1, |o| o.entries + 1),
        }),
    }
}
