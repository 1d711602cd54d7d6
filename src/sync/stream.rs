//! One source's change stream applied to its clone, in stream order, from the start point or
//! the last applied resume token, until the drain marker this process wrote has been seen.

use std::time::{Duration, Instant};

use mongodb::bson::Document;
use mongodb::change_stream::event::ResumeToken;
use mongodb::options::FullDocumentType;

use super::apply::{Change, apply, classify};
use super::task::{Stop, Task};
use super::token::{self, OpTime};

/// How often a stream measures its lag (a `ping`: the cluster time now).
const LAG_EVERY: Duration = Duration::from_secs(1);
/// How long the server may hold an empty getMore: a stream with nothing to apply still
/// measures its lag this often.
const AWAIT: Duration = Duration::from_millis(500);

pub(super) async fn follow(task: &Task, idx: usize) -> Result<(), Stop> {
    let (source, clone, start_at, recorded) = task.with_source(idx, |s| {
        (
            s.resume.source.clone(),
            s.resume.clone.clone(),
            s.resume.start_at,
            s.resume.token.clone(),
        )
    });
    let mut resume: Option<ResumeToken> = recorded.as_deref().and_then(token::decode);
    let mut after_invalidate = false;
    let what = format!("following the changes of {source}");
    loop {
        // Opening reads too (the first batch): from here every read is proven complete by a
        // history check made after it (`watcher`), since a pruned start point would be
        // skipped silently by this server.
        let before = task.with_source(idx, |s| s.cursor_at);
        let db = task.client.database(&source);
        let watch = db
            .watch()
            .full_document(FullDocumentType::UpdateLookup)
            .show_expanded_events(true)
            .max_await_time(AWAIT);
        let watch = match (resume.clone(), after_invalidate) {
            (Some(t), true) => watch.start_after(t),
            (Some(t), false) => watch.resume_after(t),
            (None, _) => watch.start_at_operation_time(start_at.into()),
        };
        let mut stream = watch
            .await
            .map_err(|e| task.failed(&what, &e))?
            .with_type::<Document>();
        task.with_source(idx, |s| s.unverified.read(before));
        let mut measured = Instant::now();
        loop {
            if measured.elapsed() >= LAG_EVERY {
                measure_lag(task, idx, &db).await;
                measured = Instant::now();
            }
            let before = task.with_source(idx, |s| s.cursor_at);
            let next = stream
                .next_if_any()
                .await
                .map_err(|e| task.failed(&what, &e))?;
            // Where the cursor stands now: the last returned event, or the server's post-batch
            // token when it returned none.
            let now_at = stream.resume_token().as_ref().and_then(token::time_of);
            task.with_source(idx, |s| {
                s.unverified.read(before);
                if let Some(t) = now_at {
                    s.cursor_at = s.cursor_at.max(t);
                }
            });
            let Some(ev) = next else {
                continue;
            };
            let change = classify(&ev, &source);
            let at = ev.get_timestamp("clusterTime").ok().map(OpTime::from);
            if let Some(t) = at {
                task.with_source(idx, |s| s.cursor_at = s.cursor_at.max(t));
            }
            let token = stream.resume_token();
            match &change {
                Change::Marker(id) => {
                    let ours = task.with_source(idx, |s| s.marker.as_ref() == Some(id));
                    record(task, idx, token.as_ref(), at, false);
                    if ours {
                        task.with_source(idx, |s| s.drained = true);
                        return Ok(());
                    }
                }
                Change::Invalidate => {
                    record(task, idx, token.as_ref(), at, false);
                    resume = token;
                    after_invalidate = true;
                    break;
                }
                Change::Skip(why) => {
                    tracing::trace!(why, "sync: event skipped");
                    record(task, idx, token.as_ref(), at, false);
                }
                _ => {
                    apply(&task.client, &source, &clone, &change)
                        .await
                        .map_err(|e| task.failed(&format!("applying a change to {clone}"), &e))?;
                    record(task, idx, token.as_ref(), at, true);
                }
            }
        }
    }
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
fn record(task: &Task, idx: usize, token: Option<&ResumeToken>, at: Option<OpTime>, applied: bool) {
    let text = token.and_then(token::encode);
    task.with_source(idx, |s| {
        if applied {
            s.resume.events_applied += 1;
        }
        if let Some(text) = text {
            s.resume.token = Some(text);
            if at.is_some() {
                s.resume.position = at;
            }
        }
    });
}
