//! One plan's sync, run as a background task: start points, bulk copy, then one change stream
//! per source (`stream`), until every stream has applied past its drain marker.

use std::sync::atomic::Ordering;

use futures::StreamExt;
use mongodb::bson::{Document, doc};

use super::history::{Proof, Unverified};
use super::state::SyncState;
use super::token::OpTime;
use crate::mongo::{SYNC_MARKERS, user_collections};

use super::task::{Stop, Task};

/// The sync and, beside it, the history checks; whichever stops first stops both.
pub(super) async fn run(task: &Task) -> Result<(), Stop> {
    tokio::select! {
        r = sync(task) => r,
        stop = super::watcher::watch(task) => Err(stop),
    }
}

async fn sync(task: &Task) -> Result<(), Stop> {
    let n = task.sources.lock().expect("lock").len();
    for idx in 0..n {
        if task.with_source(idx, |s| s.fresh) {
            let (at, marker) = start_point(task, idx).await?;
            task.with_source(idx, |s| {
                s.resume.start_at = at;
                s.cursor_at = at;
                s.unverified = Unverified::starting_at(at, None);
                s.start_marker = marker;
                s.fresh = false;
            });
        }
    }
    task.set_state(SyncState::BulkCopying);
    bulk(task).await?;
    task.set_state(SyncState::Streaming);
    let streams = (0..n).map(|idx| super::stream::follow(task, idx));
    futures::future::try_join_all(streams).await?;
    prove_drained(task).await?;
    // Drained only once a history check made after the last reads proves them complete.
    while task
        .sources
        .lock()
        .expect("lock")
        .iter()
        .any(|s| s.unverified.from.is_some())
    {
        task.wake.notify_one();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    task.set_state(SyncState::Drained);
    // The markers served; the sources keep no trace of the sync (best effort: a frozen source
    // is dropped later anyway).
    let names: Vec<String> = task
        .sources
        .lock()
        .expect("lock")
        .iter()
        .map(|s| s.resume.source.clone())
        .collect();
    for name in names {
        let markers = task
            .client
            .database(&name)
            .collection::<Document>(SYNC_MARKERS);
        if let Err(e) = markers.drop().await {
            tracing::debug!(error = %task.uri.redact(&e.to_string()), "dropping the sync markers");
        }
    }
    Ok(())
}

/// Every stream applied past its drain marker: the reads since the last history check are
/// proven complete by one proof stream per source (its last event before them still in the
/// oplog), not by a read of the whole oplog (seconds at millions of entries on this server).
/// A source the proof cannot tell about waits for a history check (the loop after this).
async fn prove_drained(task: &Task) -> Result<(), Stop> {
    let n = task.sources.lock().expect("lock").len();
    for idx in 0..n {
        let (name, unverified) =
            task.with_source(idx, |s| (s.resume.source.clone(), s.unverified.clone()));
        let (Some(from), Some(anchor)) = (unverified.from, unverified.anchor) else {
            continue;
        };
        match super::stream::prove(task, &name, &anchor).await {
            Proof::Held => task.with_source(idx, |s| s.unverified.all_proven()),
            Proof::Lost => return Err(super::watcher::lost_at(task, &name, from).await),
            Proof::Unknown => tracing::debug!(source = %name, "sync: drain proof unknown"),
        }
    }
    Ok(())
}

/// The start point, before anything is copied: a marker inserted into the source, whose
/// operation time is where the stream starts (inclusive) and which must be its first event
/// (else the history after it was pruned before the stream opened). Every change after it
/// reaches the clone through the stream. Without a marker's time, the cluster time (`ping`).
async fn start_point(
    task: &Task,
    idx: usize,
) -> Result<(OpTime, Option<mongodb::bson::Bson>), Stop> {
    let name = task.with_source(idx, |s| s.resume.source.clone());
    let what = format!("writing the start marker into {name}");
    let mut session = task
        .client
        .start_session()
        .await
        .map_err(|e| task.failed(&what, &e))?;
    let id = mongodb::bson::oid::ObjectId::new();
    task.client
        .database(&name)
        .collection::<Document>(SYNC_MARKERS)
        .insert_one(doc! {"_id": id, "start": true, "at": mongodb::bson::DateTime::now()})
        .session(&mut session)
        .await
        .map_err(|e| task.failed(&what, &e))?;
    if let Some(at) = session.operation_time() {
        return Ok((at.into(), Some(mongodb::bson::Bson::ObjectId(id))));
    }
    let what = format!("reading the cluster time of {name}");
    let reply = task
        .client
        .database(&name)
        .run_command(doc! {"ping": 1})
        .session(&mut session)
        .await
        .map_err(|e| task.failed(&what, &e))?;
    reply
        .get_timestamp("operationTime")
        .ok()
        .or_else(|| session.operation_time())
        .map(|t| (OpTime::from(t), None))
        .ok_or_else(|| {
            Stop::Failed(format!(
                "{what}: the server reports no operationTime (change streams need a replica set)"
            ))
        })
}

/// Server-side copies of every collection whose bulk copy has not finished, largest first,
/// `parallelism` at a time. The history checks run beside it: a sync whose start point is
/// pruned during the copy fails as soon as that is seen, not after the whole copy.
async fn bulk(task: &Task) -> Result<(), Stop> {
    let n = task.sources.lock().expect("lock").len();
    let mut work = Vec::new();
    let (mut total, mut done) = (0, 0);
    for idx in 0..n {
        let (name, finished, already) = task.with_source(idx, |s| {
            (
                s.resume.source.clone(),
                s.resume.bulk_finished,
                s.resume.bulk_done.clone(),
            )
        });
        if finished {
            continue;
        }
        let db = task.client.database(&name);
        let colls = user_collections(&db)
            .await
            .map_err(|e| task.failed(&format!("listing the collections of {name}"), &e))?;
        for c in colls {
            total += 1;
            if already.contains(&c) {
                done += 1;
                continue;
            }
            let size = db
                .collection::<Document>(&c)
                .estimated_document_count()
                .await
                .map_err(|e| task.failed(&format!("counting {name}.{c}"), &e))?;
            work.push((idx, c, size));
        }
    }
    task.collections_total.store(total, Ordering::Relaxed);
    task.collections_done.store(done, Ordering::Relaxed);
    work.sort_by_key(|w| std::cmp::Reverse(w.2));
    let mut copies = futures::stream::iter(work)
        .map(|(idx, coll, _)| async move {
            let (src, dst) =
                task.with_source(idx, |s| (s.resume.source.clone(), s.resume.clone.clone()));
            crate::copy::copy_named(&task.client, &src, &dst, &coll)
                .await
                .map_err(|e| task.failed(&format!("copying {src}.{coll} to {dst}"), &e))?;
            task.with_source(idx, |s| s.resume.bulk_done.push(coll));
            task.collections_done.fetch_add(1, Ordering::Relaxed);
            Ok::<(), Stop>(())
        })
        .buffer_unordered(task.parallelism.max(1));
    while let Some(r) = copies.next().await {
        r?;
    }
    for idx in 0..n {
        let (src, dst) =
            task.with_source(idx, |s| (s.resume.source.clone(), s.resume.clone.clone()));
        crate::copy::copy_views(&task.client, &src, &dst)
            .await
            .map_err(|e| task.failed(&format!("copying the views of {src} to {dst}"), &e))?;
        task.with_source(idx, |s| s.resume.bulk_finished = true);
    }
    Ok(())
}
