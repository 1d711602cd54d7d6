//! The server-side clone (`backup.cloneMethod: serverSide`): each source collection is copied
//! into its clone inside the MongoDB server with aggregate `$out`, then its indexes are
//! recreated from `listIndexes`, a bounded number of collections at a time. It runs as a
//! background task per plan so a reconcile never waits on it; reconciles read its progress
//! from this registry. After an operator restart the registry is empty and the plan starts the
//! copy again: `$out` replaces a collection, so a repeat is harmless.
//!
//! The registry is not part of the client pool: whoever holds both (the controller's context)
//! keeps them side by side, and a copy is started with a client taken from the pool.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use futures::{StreamExt, TryStreamExt};
use mongodb::bson::{Document, doc};

use crate::mongo::{MongoError, user_collections};
use crate::plan::{CopyState, CopyView};
use crate::uri::Uri;

#[derive(Default)]
struct Task {
    documents_done: AtomicI64,
    documents_total: AtomicI64,
    collections_done: AtomicI64,
    collections_total: AtomicI64,
    /// `None` while running.
    result: Mutex<Option<Result<(), MongoError>>>,
    abort: Mutex<Option<tokio::task::AbortHandle>>,
}

/// Copies in flight or finished, by plan (namespace/name/uid).
#[derive(Default)]
pub struct Copies {
    tasks: Mutex<HashMap<String, Arc<Task>>>,
}

impl Copies {
    pub fn view(&self, key: &str) -> CopyView {
        let tasks = self.tasks.lock().expect("lock");
        let Some(t) = tasks.get(key) else {
            return CopyView::default();
        };
        let state = match &*t.result.lock().expect("lock") {
            None => CopyState::Running,
            Some(Ok(())) => CopyState::Succeeded,
            Some(Err(e)) => CopyState::Failed(e.to_string()),
        };
        CopyView {
            state,
            documents_done: t.documents_done.load(Ordering::Relaxed),
            documents_total: t.documents_total.load(Ordering::Relaxed),
            collections_done: t.collections_done.load(Ordering::Relaxed),
            collections_total: t.collections_total.load(Ordering::Relaxed),
        }
    }

    /// Starts the copy unless one is running or succeeded for this plan (a failed one is
    /// started again).
    pub fn start(
        &self,
        key: &str,
        client: mongodb::Client,
        uri: Uri,
        pairs: Vec<(String, String)>,
        parallelism: usize,
    ) {
        let task = Arc::new(Task::default());
        {
            let mut tasks = self.tasks.lock().expect("lock");
            if let Some(t) = tasks.get(key)
                && !matches!(&*t.result.lock().expect("lock"), Some(Err(_)))
            {
                return;
            }
            tasks.insert(key.to_string(), task.clone());
        }
        let running = task.clone();
        let handle = tokio::spawn(async move {
            let task = running;
            let result = copy_all(&client, &uri, &pairs, parallelism.max(1), &task).await;
            if let Err(e) = &result {
                tracing::warn!(error = %e, "server-side copy failed");
            }
            *task.result.lock().expect("lock") = Some(result);
        });
        *task.abort.lock().expect("lock") = Some(handle.abort_handle());
    }

    /// Drops what is kept for a plan that no longer needs it, stopping a copy still running
    /// (a rollback or deletion keeps the clones as they are).
    pub fn forget(&self, key: &str) {
        if let Some(t) = self.tasks.lock().expect("lock").remove(key)
            && let Some(h) = t.abort.lock().expect("lock").take()
        {
            h.abort();
        }
    }
}

async fn copy_all(
    client: &mongodb::Client,
    uri: &Uri,
    pairs: &[(String, String)],
    parallelism: usize,
    task: &Task,
) -> Result<(), MongoError> {
    let command = |e: mongodb::error::Error| MongoError::Command(uri.redact(&e.to_string()));
    // Plan the work first, so progress has a total from the start.
    let mut work = Vec::new();
    for (src, dst) in pairs {
        let db = client.database(src);
        for name in user_collections(&db).await.map_err(command)? {
            let n = db
                .collection::<Document>(&name)
                .estimated_document_count()
                .await
                .map_err(command)? as i64;
            task.documents_total.fetch_add(n, Ordering::Relaxed);
            task.collections_total.fetch_add(1, Ordering::Relaxed);
            work.push((src.clone(), dst.clone(), name, n));
        }
    }
    // Largest first, so a big collection does not start last and hold up the end.
    work.sort_by_key(|w| std::cmp::Reverse(w.3));
    let results: Vec<Result<(), MongoError>> = futures::stream::iter(work)
        .map(|(src, dst, coll, n)| async move {
            copy_collection(client, &src, &dst, &coll)
                .await
                .map_err(|e| MongoError::Copy {
                    namespace: format!("{src}.{coll}"),
                    clone: dst.clone(),
                    message: uri.redact(&e.to_string()),
                })?;
            task.documents_done.fetch_add(n, Ordering::Relaxed);
            task.collections_done.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .buffer_unordered(parallelism)
        .collect()
        .await;
    results.into_iter().collect()
}

/// `$out` into the clone, then the source's secondary indexes (also the online sync's bulk
/// copy, `crate::sync`).
pub(crate) async fn copy_collection(
    client: &mongodb::Client,
    src: &str,
    dst: &str,
    coll: &str,
) -> Result<(), mongodb::error::Error> {
    let source = client.database(src).collection::<Document>(coll);
    let mut cursor = source
        .aggregate(vec![doc! {"$out": {"db": dst, "coll": coll}}])
        .await?;
    while cursor.try_next().await?.is_some() {}
    let target_db = client.database(dst);
    let exists = target_db
        .list_collection_names()
        .await?
        .iter()
        .any(|c| c == coll);
    if !exists {
        // An empty source: `$out` of nothing may not create the collection.
        target_db.create_collection(coll).await?;
    }
    let indexes: Vec<_> = source.list_indexes().await?.try_collect().await?;
    let secondary: Vec<_> = indexes
        .into_iter()
        .filter(|i| {
            i.options
                .as_ref()
                .and_then(|o| o.name.as_deref())
                .is_none_or(|n| n != "_id_")
        })
        .collect();
    if !secondary.is_empty() {
        target_db
            .collection::<Document>(coll)
            .create_indexes(secondary)
            .await?;
    }
    Ok(())
}
