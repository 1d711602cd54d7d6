//! One source's change stream applied to its clone, in stream order, from the start point or
//! the last applied resume token, until the drain marker this process wrote has been seen.

use std::time::{Duration, Instant};

use mongodb::bson::Document;
use mongodb::change_stream::event::ResumeToken;
use mongodb::options::FullDocumentType;

use super::apply::{apply, apply_run};
use super::batch::{Batcher, MAX_RUN, Read, Unit};
use super::change::{Change, classify};
use super::history::{Anchor, Proof, judge};
use super::task::{RECONNECT_FOR, RECONNECT_PAUSE, Stop, Task, transient};
use super::token::{self, OpTime};

/// How often a stream measures its lag (a `ping`: the cluster time now).
const LAG_EVERY: Duration = Duration::from_secs(1);
/// How long the server may hold an empty getMore: a stream with nothing to apply still
/// measures its lag this often.
const AWAIT: Duration = Duration::from_millis(500);
/// Pause after an empty batch (SecantusDB answers an empty getMore at once, whatever
/// `maxAwaitTimeMS` says: without it an idle stream spins).
const IDLE: Duration = Duration::from_millis(5);
/// How long a run of document events may grow before it is applied (the stream may never run
/// dry under a steady load).
const RUN_FOR: Duration = Duration::from_millis(200);
/// How often a stream proves its reads complete (a proof stream, `prove`) while not draining:
/// the drain's own proof then starts after a recent event, which is cheap (see `prove`).
const PROVE_EVERY: Duration = Duration::from_secs(2);
/// How long a proof stream may take to return its first event.
const PROOF_WAIT: Duration = Duration::from_secs(5);
/// Whether to reopen after `e`: a connection error while the streak of them is younger than
/// [`RECONNECT_FOR`] (the streak starts at the first and ends at the next successful read).
async fn reopen_after(e: &mongodb::error::Error, streak: &mut Option<Instant>, what: &str) -> bool {
    if !transient(e) {
        return false;
    }
    let since = *streak.get_or_insert_with(Instant::now);
    if since.elapsed() >= RECONNECT_FOR {
        return false;
    }
    tracing::info!(
        what,
        "sync: connection lost; reopening the stream after the last applied event"
    );
    tokio::time::sleep(RECONNECT_PAUSE).await;
    true
}

pub(super) async fn follow(task: &Task, idx: usize) -> Result<(), Stop> {
    let (source, clone, start_at, recorded, start_marker) = task.with_source(idx, |s| {
        (
            s.resume.source.clone(),
            s.resume.clone.clone(),
            s.resume.start_at,
            s.resume.token.clone(),
            s.start_marker.clone(),
        )
    });
    let mut resume: Option<ResumeToken> = recorded.as_deref().and_then(token::decode);
    let mut after_invalidate = false;
    let what = format!("following the changes of {source}");
    let mut streak: Option<Instant> = None;
    'open: loop {
        // Opening reads too (the first batch): from here every read is proven complete by a
        // history check made after it (`watcher`), since a pruned start point would be
        // skipped silently by this server.
        let before = task.with_source(idx, |s| s.cursor_at);
        let db = task.client.database(&source);
        let watch = db
            .watch()
            .full_document(FullDocumentType::UpdateLookup)
            .show_expanded_events(true)
            .max_await_time(AWAIT)
            // The server returns 101 events a batch by default: a run's worth in one getMore.
            .batch_size(MAX_RUN as u32);
        // Opened at the start point written by this process: its marker must come first,
        // else the history after the start point was pruned before the stream opened.
        let mut expect_start = resume.is_none() && start_marker.is_some();
        let watch = match (resume.clone(), after_invalidate) {
            (Some(t), true) => watch.start_after(t),
            (Some(t), false) => watch.resume_after(t),
            (None, _) => watch.start_at_operation_time(start_at.into()),
        };
        let mut stream = match watch.await {
            Ok(s) => s.with_type::<Document>(),
            // The server says so itself when a token it was given was pruned.
            Err(e) if history_lost(&e) => {
                let needed = task.with_source(idx, |s| s.resume.needed());
                return Err(super::watcher::lost_at(task, &source, needed).await);
            }
            Err(e) if reopen_after(&e, &mut streak, &what).await => continue 'open,
            Err(e) => return Err(task.failed(&what, &e)),
        };
        task.with_source(idx, |s| s.unverified.read(before, s.last.as_ref()));
        let mut measured = Instant::now();
        let mut proved = Instant::now();
        // Events read and not yet applied (the run growing), and since when.
        let mut batcher = Batcher::new(MAX_RUN);
        let mut run_since = Instant::now();
        loop {
            if batcher.is_empty() {
                if measured.elapsed() >= LAG_EVERY {
                    measure_lag(task, idx, &db).await;
                    measured = Instant::now();
                }
                if proved.elapsed() >= PROVE_EVERY {
                    prove_reads(task, idx, &source).await?;
                    proved = Instant::now();
                }
            }
            let before = task.with_source(idx, |s| s.cursor_at);
            let next = match stream.next_if_any().await {
                Ok(next) => {
                    streak = None;
                    next
                }
                Err(e) if reopen_after(&e, &mut streak, &what).await => {
                    // The run read so far is not applied: reopen after the last event that was.
                    resume = reopen_token(task, idx).or(resume);
                    continue 'open;
                }
                Err(e) => return Err(task.failed(&what, &e)),
            };
            // Where the cursor stands now: the last returned event, or the server's post-batch
            // token when it returned none.
            let now_at = stream.resume_token().as_ref().and_then(token::time_of);
            task.with_source(idx, |s| {
                s.unverified.read(before, s.last.as_ref());
                if let Some(t) = now_at {
                    s.cursor_at = s.cursor_at.max(t);
                }
            });
            let units: Vec<Unit> = match next {
                // Nothing more now: the run so far is complete.
                None => match batcher.flush() {
                    Some(run) => vec![run],
                    None => {
                        tokio::time::sleep(IDLE).await;
                        continue;
                    }
                },
                Some(ev) => {
                    let change = classify(&ev, &source);
                    let at = ev.get_timestamp("clusterTime").ok().map(OpTime::from);
                    let token = stream.resume_token();
                    // The event's own token (the stream's may be the batch's post-batch token).
                    let own = event_token(&ev);
                    task.with_source(idx, |s| {
                        if let Some(t) = at {
                            s.cursor_at = s.cursor_at.max(t);
                        }
                        s.last = match (own, at) {
                            (Some(token), Some(at)) => {
                                Some(Anchor::next(s.last.as_ref(), token, at))
                            }
                            _ => None,
                        };
                    });
                    if std::mem::take(&mut expect_start) {
                        if matches!(&change, Change::Marker(id) if Some(id) == start_marker.as_ref())
                        {
                            // Still in the oplog when this read ran: so was everything after it.
                            task.with_source(idx, |s| s.unverified.all_proven());
                        } else if at.is_some_and(|t| t > start_at) {
                            return Err(super::watcher::lost_at(task, &source, start_at).await);
                        }
                    }
                    if batcher.is_empty() {
                        run_since = Instant::now();
                    }
                    let mut units = batcher.push(Read { change, token, at });
                    // Under a steady load the stream may never run dry: a run also ends when
                    // it is old enough, so the clone never lags far behind what was read.
                    if units.is_empty() && run_since.elapsed() >= RUN_FOR {
                        units.extend(batcher.flush());
                    }
                    units
                }
            };
            for unit in units {
                match handle(task, idx, &source, &clone, unit, &mut streak, &what).await? {
                    Next::Go => {}
                    Next::Reopen => {
                        // Not applied: reopen after the last event that was.
                        resume = reopen_token(task, idx).or(resume);
                        continue 'open;
                    }
                    Next::Invalidated(token) => {
                        resume = token;
                        after_invalidate = true;
                        continue 'open;
                    }
                    Next::Drained => return Ok(()),
                }
            }
        }
    }
}

/// What `follow` does after a unit.
enum Next {
    Go,
    /// A connection error while applying: reopen after the last applied event.
    Reopen,
    /// The stream ended (after a dropDatabase): open it again after this token.
    Invalidated(Option<ResumeToken>),
    /// This process's drain marker was seen: everything before it is applied.
    Drained,
}

/// Applies a unit (a run of document events, or one event alone) and records its last token.
async fn handle(
    task: &Task,
    idx: usize,
    source: &str,
    clone: &str,
    unit: Unit,
    streak: &mut Option<Instant>,
    what: &str,
) -> Result<Next, Stop> {
    let r = match unit {
        Unit::Run(run) => {
            let changes: Vec<&Change> = run.iter().map(|r| &r.change).collect();
            let data = changes
                .iter()
                .filter(|c| !matches!(c, Change::Skip(_)))
                .count();
            if data > 0 {
                match apply_run(&task.client, source, clone, &changes).await {
                    Ok(()) => {}
                    Err(e) if reopen_after(&e, streak, what).await => return Ok(Next::Reopen),
                    Err(e) => {
                        return Err(task.failed(&format!("applying changes to {clone}"), &e));
                    }
                }
            }
            let last = run.last().expect("a run has events");
            record(task, idx, last.token.as_ref(), last.at, data as i64);
            return Ok(Next::Go);
        }
        Unit::Alone(r) => *r,
    };
    let (token, at) = (r.token.as_ref(), r.at);
    match &r.change {
        Change::Marker(id) => {
            let ours = task.with_source(idx, |s| s.marker.as_ref() == Some(id));
            record(task, idx, token, at, 0);
            if ours {
                task.with_source(idx, |s| s.drained = true);
                return Ok(Next::Drained);
            }
        }
        Change::Invalidate => {
            record(task, idx, token, at, 0);
            return Ok(Next::Invalidated(r.token));
        }
        Change::Skip(why) => {
            tracing::trace!(why, "sync: event skipped");
            record(task, idx, token, at, 0);
        }
        change => {
            match apply(&task.client, source, clone, change).await {
                Ok(()) => {}
                Err(e) if reopen_after(&e, streak, what).await => return Ok(Next::Reopen),
                Err(e) => {
                    return Err(task.failed(&format!("applying a change to {clone}"), &e));
                }
            }
            record(task, idx, token, at, 1);
        }
    }
    Ok(Next::Go)
}

/// Proves the stream's reads so far complete (it reads nothing meanwhile), unless draining
/// (the drain proves them once, after its marker).
async fn prove_reads(task: &Task, idx: usize, source: &str) -> Result<(), Stop> {
    let (draining, seen, at, last) = task.with_source(idx, |s| {
        (
            s.marker.is_some(),
            s.unverified.clone(),
            s.cursor_at,
            s.last.clone(),
        )
    });
    let (false, Some(from), Some(anchor)) = (draining, seen.from, seen.anchor.as_ref()) else {
        return Ok(());
    };
    match prove(task, source, anchor).await {
        Proof::Held => task.with_source(idx, |s| s.unverified.proven(&seen, at, last)),
        Proof::Lost => return Err(super::watcher::lost_at(task, source, from).await),
        Proof::Unknown => {}
    }
    Ok(())
}

/// Is the anchor (an event this stream returned) still in the oplog? A stream opened after
/// the event before it (O(1) on this server), or at its time when there is none (this server
/// reads its whole oplog to open at a time: 0.3 s at 600,000 entries), must return it first.
pub(super) async fn prove(task: &Task, source: &str, anchor: &Anchor) -> Proof {
    let db = task.client.database(source);
    let watch = db
        .watch()
        .full_document(FullDocumentType::UpdateLookup)
        .show_expanded_events(true)
        .max_await_time(AWAIT);
    let watch = match &anchor.prev {
        Some(prev) => watch.resume_after(prev.clone()),
        None => watch.start_at_operation_time(anchor.at.into()),
    };
    let mut stream = match watch.await {
        Ok(s) => s.with_type::<Document>(),
        Err(e) => {
            tracing::debug!(error = %task.uri.redact(&e.to_string()), "sync: proof stream");
            return Proof::Unknown;
        }
    };
    let deadline = Instant::now() + PROOF_WAIT;
    while Instant::now() < deadline {
        match stream.next_if_any().await {
            Ok(Some(ev)) => {
                let at = ev.get_timestamp("clusterTime").ok().map(OpTime::from);
                let token = event_token(&ev);
                return judge(anchor, token.as_ref().map(|t| (t, at)));
            }
            Ok(None) => tokio::time::sleep(IDLE).await,
            Err(e) => {
                tracing::debug!(error = %task.uri.redact(&e.to_string()), "sync: proof stream");
                return Proof::Unknown;
            }
        }
    }
    Proof::Unknown
}

/// `ChangeStreamHistoryLost` (286): SecantusDB answers so to `resumeAfter` a pruned token
/// (while it silently starts later for a pruned `startAtOperationTime`).
fn history_lost(e: &mongodb::error::Error) -> bool {
    matches!(&*e.kind, mongodb::error::ErrorKind::Command(c) if c.code == 286)
}

/// An event's own resume token (its `_id`).
fn event_token(ev: &Document) -> Option<ResumeToken> {
    let id = ev.get("_id")?.clone();
    mongodb::bson::from_bson(id).ok()
}

/// Seconds between the cluster time now and where the cursor stands (left as it was when the
/// server cannot say).
async fn measure_lag(task: &Task, idx: usize, db: &mongodb::Database) {
    let Ok(reply) = db.run_command(mongodb::bson::doc! {"ping": 1}).await else {
        return;
    };
    if let Ok(now) = reply.get_timestamp("operationTime") {
        task.with_source(idx, |s| {
            s.lag = Some(super::history::lag_seconds(now.into(), s.cursor_at));
        });
    }
}

/// Remembers the token after an event (when it can be recorded: bounded size) with its time.
/// Where to reopen after a connection error: after the last event recorded as handled.
fn reopen_token(task: &Task, idx: usize) -> Option<ResumeToken> {
    task.with_source(idx, |s| s.resume.token.clone())
        .as_deref()
        .and_then(token::decode)
}

fn record(task: &Task, idx: usize, token: Option<&ResumeToken>, at: Option<OpTime>, applied: i64) {
    let text = token.and_then(token::encode);
    task.with_source(idx, |s| {
        s.resume.events_applied += applied;
        if let Some(text) = text {
            s.resume.token = Some(text);
            if at.is_some() {
                s.resume.position = at;
            }
        }
    });
}
