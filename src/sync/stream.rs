//! One source's change stream applied to its clone, in stream order, from the start point or
//! the last applied resume token, until the drain marker this process wrote has been seen.

use std::time::{Duration, Instant};

use mongodb::bson::Document;
use mongodb::change_stream::event::ResumeToken;
use mongodb::options::FullDocumentType;

use super::apply::{Change, apply, classify};
use super::engine::{Stop, Task};
use super::token::{self, OpTime};

/// How often a stream compares its position with the oplog's oldest entry (and measures lag).
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long the server may hold an empty getMore: a stream with nothing to apply still checks
/// its history and its drain this often.
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
        // Before opening: the history reaches where the stream starts (a pruned start point
        // would be skipped silently by this server).
        let needed = task.with_source(idx, |s| s.resume.needed());
        task.check_history(idx, needed).await?;
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
        let mut checked = Instant::now();
        loop {
            if checked.elapsed() >= CHECK_EVERY {
                // Where the cursor stands: the last returned event, or the server's
                // post-batch token when it returned none.
                let recorded = task.with_source(idx, |s| s.resume.needed());
                let at = stream
                    .resume_token()
                    .as_ref()
                    .and_then(token::time_of)
                    .map_or(recorded, |t| t.max(recorded));
                task.check_history(idx, at).await?;
                checked = Instant::now();
            }
            let Some(ev) = stream
                .next_if_any()
                .await
                .map_err(|e| task.failed(&what, &e))?
            else {
                continue;
            };
            let change = classify(&ev, &source);
            let at = ev.get_timestamp("clusterTime").ok().map(OpTime::from);
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
