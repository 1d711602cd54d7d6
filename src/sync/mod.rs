//! The online sync engine (`backup.cloneMethod: online`, issue #15): clones that follow their
//! sources while the app still writes, so the read-only window holds only the last seconds.
//!
//! # API
//! - [`Syncs::start`]`(key, client, uri, input)`: starts a plan's sync as a background task
//!   (unless one is running or drained; a failed one starts again). `input` holds the pairs
//!   (source database → clone database), the recorded state to resume from (empty: fresh) and
//!   the bulk-copy parallelism.
//! - [`Syncs::view`]`(key)` → [`SyncView`]: state (`BulkCopying`, `Streaming`, `Drained`,
//!   `Failed`, `HistoryLost`), bulk collections done/total, events applied, lag, and
//!   [`SourceResume`] per source to record in status.
//! - [`Syncs::request_drain`]`(key)`: writes a marker document into each source (collection
//!   [`crate::mongo::SYNC_MARKERS`], never counted, copied or compared); the view says
//!   `Drained` once every stream applied everything before its marker, and the engine stops.
//! - [`Syncs::forget`]`(key)`: stops and forgets a plan's sync.
//! - [`compare`]`(client, uri, source, clone)`: per-collection counts and up to 1,000 sampled
//!   documents per collection; sentences saying what differs.
//!
//! # What the engine does
//! 1. Start point: a marker inserted into the source (`SYNC_MARKERS`); its operation time is
//!    where the stream starts (inclusive), before anything is copied, and the stream's first
//!    event must be that marker (else the history after it was pruned before the stream opened:
//!    `HistoryLost`).
//! 2. Bulk copy of every collection, server-side (`$out` + indexes, `crate::copy`), largest
//!    first, `parallelism` at a time; finished collections are recorded (`bulkDone`).
//! 3. One change stream per source database from the start point (or after the last applied
//!    token), `fullDocument: updateLookup`, `showExpandedEvents`, applied in stream order
//!    (`apply`: idempotent, so applying again from an older token is harmless). Every event is
//!    applied after every bulk copy finished (a copy newer than an event is brought up to date
//!    by the later events). Document events are applied in runs (`batch`): the events the
//!    stream returns until it has nothing more (or 1,000, or 200 ms) become, per collection,
//!    one `delete` and one ordered replace-with-upsert `update` command, the last event per
//!    `_id` winning; a collection or database change, a marker or an invalidate ends the run
//!    and is applied alone after it. A run's token is recorded once the whole run is applied; a
//!    write error in a run (a unique-index collision) applies it again one event at a time.
//! 4. History: this server's streams silently skip pruned history, so every read is proven
//!    complete by something seen after it. (a) The early warning, beside the copy and the
//!    streams (`watcher`): the oplog's oldest entry compared with where each stream stood before
//!    its reads not yet proven (the start point while copying); when the oplog no longer
//!    reaches it the state is `HistoryLost` with how much oplog would have been needed. It
//!    reads the whole oplog, so it never runs on the read-only window's path: once a drain is
//!    asked for it runs only when a proof cannot tell. (b) Proof streams (`stream::prove`,
//!    `history::judge`): the stream's last event before its unproven reads (the anchor) is
//!    still in the oplog if a stream resumed after the event before it returns it first
//!    (nothing after an entry still held was pruned: pruning takes the oldest first). Each
//!    stream proves its reads so every 2 s while syncing, and once after its drain marker:
//!    `Drained` needs that proof (or, when it cannot tell, a history check made after the last
//!    read).
//!
//! Measured on this server (debug build, 2 cores, `tests/sync.rs`
//! `measure_stream_costs_against_the_oplog_size`), oplog of 50k / 200k / 600k entries:
//! opening a stream at a time (`startAtOperationTime`) and its first event 16 / 72 / 315 ms
//! (O(oplog), ~0.5 µs per entry, so ~1.6 s at 3M); a getMore with 3 new events ~1 ms at every
//! size; an empty getMore 14 µs (the server does not wait `maxAwaitTimeMS`); opening after a
//! token (`resumeAfter`) and its first batch 9 / 1.8 / 1.4 ms (O(1)); the oplog check
//! (`history::oplog`) 0.19 / 1.04 / 2.79 s (O(oplog), ~4.6 µs per entry, ~14 s at 3M). Hence
//! the drain's proof resumes after a token (O(1)); it opens at a time only for an anchor
//! without an event before it (the start marker or a recorded token after a restart, when no
//! event came since), and nothing reopens the main stream in the window.
//!
//! Where the apply time went (issue #15; debug build, 2 cores, machine load 5–10,
//! `tests/sync.rs` `measure_where_the_apply_time_goes`, 3,000 single-statement writes): reading
//! is not the cost: raw `aggregate` + `getMore` ~7,500 events/s with or without
//! `updateLookup` (7,527 vs 7,906/s); the server returns 101 events a batch by default (both
//! first batch and getMore), 1,000 with `batchSize: 1000`; the driver's `next_if_any` one by
//! one 6,600 events/s. The writes were: one replace-with-upsert 2.1 ms, one `delete_one`
//! 1.8 ms, while 500 as one `update` command took 62 ms (0.12 ms each, 17x) and 500 as one
//! `delete` command 96 ms (0.19 ms each); a `ping` (the lag, every 1 s) 2.3 ms; a proof stream
//! (every 2 s, `resumeAfter` a token, first event) 56 ms; `record` is in memory. So one event
//! at a time cost ~3 ms of round trips on an idle server (the benchmark's 69 ms per event was
//! the load of that machine, load 21–38, slowing every round trip), and the writes are what
//! batching saves. Apply rate (`measure_sync_apply_rate_under_load`, 20 s of inserts, updates
//! and deletes, then the drain), one event at a time -> runs: at 100 writes/s 99 -> 97
//! applied/s, lag 0 both, drain 0.11 s both; at 500 asked (486 / 424 done) 201 -> 420
//! applied/s, lag growing to 11 s -> 0 s, drain 15.7 s -> 0.10 s; at 2000 asked (the load
//! reached 738/s) 702 applied/s, lag 0–1 s, drain 0.46 s. A 30,000-event backlog
//! (`measure_sync_apply_capacity_on_a_backlog`, three multi-document writes) was applied and
//! drained 52.6 s after its first write at machine load 15–16 (380 events/s; writing it took
//! the server 17 s itself), 65.8 s at load 22–26 (304/s): on this machine the server, not
//! the engine, sets the pace. `compare` at 100k documents
//! (`measure_compare_at_100k_documents`, load ~20): 2.1–2.7 s warm (11 s cold); its parts:
//! `$sample` of 1,000 1.6 s, `count_documents` 0.85 s (each side, run side by side with the
//! sample), `find` of the 1,000 `_id`s 0.25 s (each side); `estimatedDocumentCount` 0.08 s.
//!
//! # The server (SecantusDB 0.5.3, checked against it)
//! - Change streams on a database, `startAtOperationTime` (inclusive), `resumeAfter`,
//!   `fullDocument: updateLookup` (an update of a document deleted since has
//!   `fullDocument: null`), `showExpandedEvents` (create, createIndexes with the index specs,
//!   rename with `to`, drop, dropDatabase then invalidate), post-batch resume tokens on an
//!   idle stream, `$sample`: all work. Resume tokens are hex of a BSON document whose `t` is
//!   the cluster time (MongoDB's are KeyString: 0x82 then the timestamp); both are read.
//! - `local.oplog.rs` is readable; sort by `ts` works (`$natural` order does not: both
//!   directions return the oldest entry), `estimatedDocumentCount` is exact. Every read of it
//!   materializes the whole oplog (see the measurements above): checks run beside the streams,
//!   at an interval four times their cost (at least 1 s), and never in the window. `$out` writes an oplog entry per copied document. Pruning to
//!   `--oplog-max-entries` / `--oplog-retention-seconds` is periodic (about every 5 s), so the
//!   oplog briefly holds more than the bound.
//! - A stream whose start time (`startAtOperationTime`) was pruned does NOT fail: it starts
//!   silently at the oldest retained entry. Hence the history checks here. `resumeAfter` a
//!   pruned token fails with `ChangeStreamHistoryLost` (286), read as `HistoryLost`.
//! - An insert's `operationTime` is its oplog entry's time: a stream opened there returns that
//!   insert first (the start marker; checked in every `tests/sync.rs` run).
//! - Multi-statement `update` (with `upsert`) and `delete` commands work, write errors come in
//!   the reply's `writeErrors` (`ok: 1`); `bulkWrite` exists (not used: one command per
//!   collection needs no namespace table).
//! - `ping`'s `operationTime` is the cluster time, which may be later than the newest oplog
//!   entry on an idle server.

mod apply;
mod batch;
mod change;
mod compare;
mod engine;
mod history;
mod state;
mod stream;
mod task;
mod token;
mod watcher;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use mongodb::bson::{Bson, DateTime, doc, oid::ObjectId};

pub use compare::{SAMPLE, compare};
pub use state::{HistoryLost, SourceResume, SyncState, SyncView};
pub use token::{MAX_TOKEN_LEN, OpTime};

use crate::mongo::{MongoError, SYNC_MARKERS};
use crate::uri::Uri;
use task::{Source, Stop, Task};

/// What a sync starts from.
#[derive(Clone, Debug, Default)]
pub struct SyncInput {
    /// (source database, clone database).
    pub pairs: Vec<(String, String)>,
    /// Recorded state per source (matched by source name); a source without one starts fresh.
    pub resume: Vec<SourceResume>,
    /// Collections bulk-copied at a time.
    pub parallelism: usize,
}

/// Syncs in flight or finished, by plan (namespace/name/uid).
#[derive(Default)]
pub struct Syncs {
    tasks: Mutex<HashMap<String, Arc<Task>>>,
}

impl Syncs {
    pub fn view(&self, key: &str) -> SyncView {
        let Some(t) = self.tasks.lock().expect("lock").get(key).cloned() else {
            return SyncView::default();
        };
        let state = t.state.lock().expect("lock").clone();
        let sources = t.sources.lock().expect("lock");
        SyncView {
            state,
            collections_done: t.collections_done.load(Ordering::Relaxed),
            collections_total: t.collections_total.load(Ordering::Relaxed),
            events_applied: sources.iter().map(|s| s.resume.events_applied).sum(),
            lag_seconds: sources.iter().filter_map(|s| s.lag).max(),
            events_behind: None,
            resume: sources.iter().map(|s| s.resume.clone()).collect(),
            draining: !sources.is_empty() && sources.iter().all(|s| s.marker.is_some()),
        }
    }

    /// Starts the sync unless one is running or drained for this plan (a failed one, or one
    /// whose history was lost, is started again from `input`).
    pub fn start(&self, key: &str, client: mongodb::Client, uri: Uri, input: SyncInput) {
        let sources = input
            .pairs
            .iter()
            .map(|(src, dst)| {
                let recorded = input
                    .resume
                    .iter()
                    .find(|r| &r.source == src && &r.clone == dst);
                let resume = recorded.cloned().unwrap_or_else(|| SourceResume {
                    source: src.clone(),
                    clone: dst.clone(),
                    ..SourceResume::default()
                });
                Source::new(resume, recorded.is_none())
            })
            .collect();
        let task = Arc::new(Task {
            client,
            uri,
            parallelism: input.parallelism.max(1),
            collections_done: 0.into(),
            collections_total: 0.into(),
            state: Mutex::new(SyncState::BulkCopying),
            sources: Mutex::new(sources),
            abort: Mutex::new(None),
            wake: tokio::sync::Notify::new(),
        });
        {
            let mut tasks = self.tasks.lock().expect("lock");
            if let Some(t) = tasks.get(key)
                && !matches!(
                    &*t.state.lock().expect("lock"),
                    SyncState::Failed(_) | SyncState::HistoryLost(_)
                )
            {
                return;
            }
            tasks.insert(key.to_string(), task.clone());
        }
        let running = task.clone();
        let handle = tokio::spawn(async move {
            let task = running;
            match engine::run(&task).await {
                Ok(()) => {}
                Err(Stop::Lost(lost)) => {
                    tracing::warn!(%lost, "online sync: history lost");
                    task.set_state(SyncState::HistoryLost(lost));
                }
                Err(Stop::Failed(e)) => {
                    tracing::warn!(error = %e, "online sync failed");
                    task.set_state(SyncState::Failed(e));
                }
            }
        });
        *task.abort.lock().expect("lock") = Some(handle.abort_handle());
    }

    /// Writes a drain marker into every source that has none from this process yet. The view
    /// says `Drained` once every stream applied what came before its marker. Call it when the
    /// app no longer writes (read-only verified): then the clone equals the source.
    pub async fn request_drain(&self, key: &str) -> Result<(), MongoError> {
        let Some(t) = self.tasks.lock().expect("lock").get(key).cloned() else {
            return Ok(());
        };
        let n = t.sources.lock().expect("lock").len();
        for idx in 0..n {
            let id = ObjectId::new();
            let Some(source) = t.with_source(idx, |s| {
                s.marker.is_none().then(|| {
                    // Known before it is written, so the stream cannot see it first.
                    s.marker = Some(Bson::ObjectId(id));
                    s.resume.source.clone()
                })
            }) else {
                continue;
            };
            let written = t
                .client
                .database(&source)
                .collection(SYNC_MARKERS)
                .insert_one(doc! {"_id": id, "plan": key, "at": DateTime::now()})
                .await;
            if let Err(e) = written {
                t.with_source(idx, |s| s.marker = None);
                return Err(MongoError::Command(
                    t.uri
                        .redact(&format!("writing the drain marker into {source}: {e}")),
                ));
            }
        }
        Ok(())
    }

    /// Stops a plan's sync (if running) and forgets it.
    pub fn forget(&self, key: &str) {
        if let Some(t) = self.tasks.lock().expect("lock").remove(key)
            && let Some(h) = t.abort.lock().expect("lock").take()
        {
            h.abort();
        }
    }
}
