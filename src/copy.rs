//! The server-side clone (`backup.cloneMethod: serverSide`): each source collection is created
//! in its clone with the source's options (validator, collation, capped, clustered, time
//! series), filled inside the MongoDB server with aggregate `$out` (`$merge` for a capped
//! one), then its indexes are recreated from `listIndexes`, a bounded number of collections
//! at a time; the views are created last, as views. It runs as a background task per plan so a
//! reconcile never waits on it; reconciles read its progress from this registry. After an
//! operator restart the registry is empty and the plan starts the copy again: each clone
//! collection is dropped and created afresh, so a repeat is harmless.
//!
//! The registry is not part of the client pool: whoever holds both (the controller's context)
//! keeps them side by side, and a copy is started with a client taken from the pool.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use futures::{StreamExt, TryStreamExt};
use mongodb::bson::{Bson, Document, doc};

use crate::mongo::MongoError;
use crate::mongo::shape::{CollectionSpec, collection_specs};
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
    let mut views = Vec::new();
    for (src, dst) in pairs {
        let db = client.database(src);
        for spec in collection_specs(&db).await.map_err(command)? {
            if spec.is_view() {
                views.push((src.clone(), dst.clone(), spec));
                continue;
            }
            let n = db
                .collection::<Document>(&spec.name)
                .estimated_document_count()
                .await
                .map_err(command)? as i64;
            task.documents_total.fetch_add(n, Ordering::Relaxed);
            task.collections_total.fetch_add(1, Ordering::Relaxed);
            work.push((src.clone(), dst.clone(), spec, n));
        }
    }
    // Largest first, so a big collection does not start last and hold up the end.
    work.sort_by_key(|w| std::cmp::Reverse(w.3));
    let failed = |src: &str, dst: &str, name: &str, e: mongodb::error::Error| MongoError::Copy {
        namespace: format!("{src}.{name}"),
        clone: dst.to_string(),
        message: uri.redact(&e.to_string()),
    };
    let results: Vec<Result<(), MongoError>> = futures::stream::iter(work)
        .map(|(src, dst, spec, n)| async move {
            copy_collection(client, &src, &dst, &spec)
                .await
                .map_err(|e| failed(&src, &dst, &spec.name, e))?;
            task.documents_done.fetch_add(n, Ordering::Relaxed);
            task.collections_done.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .buffer_unordered(parallelism)
        .collect()
        .await;
    results.into_iter().collect::<Result<(), MongoError>>()?;
    // Views last, once what they read exists; each as a view, never as a collection.
    for (src, dst, spec) in views_in_order(views) {
        create_like(client, &dst, &spec)
            .await
            .map_err(|e| failed(&src, &dst, &spec.name, e))?;
    }
    Ok(())
}

/// One collection or view by name, recreated with its source's options: the online sync's
/// bulk copy and its re-copy after a rename (`crate::sync`). A name gone from the source since
/// it was listed is skipped: the stream's drop event follows.
pub(crate) async fn copy_named(
    client: &mongodb::Client,
    src: &str,
    dst: &str,
    name: &str,
) -> Result<(), mongodb::error::Error> {
    let specs = collection_specs(&client.database(src)).await?;
    let Some(spec) = specs.into_iter().find(|s| s.name == name) else {
        return Ok(());
    };
    if spec.is_view() {
        return create_like(client, dst, &spec).await;
    }
    copy_collection(client, src, dst, &spec).await
}

/// A collection or view created in `src` during the online sync, created in `dst` with the
/// source's options as they are now, unless `dst` has it already (the bulk copy or an earlier
/// apply made it: applying again is harmless). Gone from the source since: its drop follows.
pub(crate) async fn create_named(
    client: &mongodb::Client,
    src: &str,
    dst: &str,
    name: &str,
) -> Result<(), mongodb::error::Error> {
    let there = client
        .database(dst)
        .list_collection_names()
        .filter(doc! {"name": name})
        .await?;
    if !there.is_empty() {
        return Ok(());
    }
    let specs = collection_specs(&client.database(src)).await?;
    match specs.into_iter().find(|s| s.name == name) {
        Some(spec) => create_like(client, dst, &spec).await,
        None => Ok(()),
    }
}

/// Every view of `src` recreated in `dst` (the online sync's bulk copy lists collections only;
/// views come last, once what they read exists).
pub(crate) async fn copy_views(
    client: &mongodb::Client,
    src: &str,
    dst: &str,
) -> Result<(), mongodb::error::Error> {
    let views = collection_specs(&client.database(src))
        .await?
        .into_iter()
        .filter(CollectionSpec::is_view)
        .map(|v| (src.to_string(), dst.to_string(), v))
        .collect();
    for (_, dst, spec) in views_in_order(views) {
        create_like(client, &dst, &spec).await?;
    }
    Ok(())
}

/// Views ordered so that one reading another view comes after it (the server accepts either
/// order; this keeps the clone's `system.views` in the source's dependency order).
fn views_in_order(
    mut views: Vec<(String, String, CollectionSpec)>,
) -> Vec<(String, String, CollectionSpec)> {
    let mut out: Vec<(String, String, CollectionSpec)> = Vec::new();
    while !views.is_empty() {
        let ready = |v: &(String, String, CollectionSpec)| {
            let on = v.2.options.get_str("viewOn").unwrap_or_default();
            !views.iter().any(|w| w.0 == v.0 && w.2.name == on)
        };
        let (now, later): (Vec<_>, Vec<_>) = views.iter().cloned().partition(|v| ready(v));
        if now.is_empty() {
            // A cycle cannot be created; keep any order rather than loop.
            out.extend(later);
            break;
        }
        out.extend(now);
        views = later;
    }
    out
}

/// The clone's collection or view created afresh with its source's options (dropping what a
/// repeated copy left under the name).
async fn create_like(
    client: &mongodb::Client,
    dst: &str,
    spec: &CollectionSpec,
) -> Result<(), mongodb::error::Error> {
    let db = client.database(dst);
    db.collection::<Document>(&spec.name).drop().await?;
    let mut create = doc! {"create": &spec.name};
    for (k, v) in &spec.options {
        // The server lists a time series' bucket span beside its granularity but refuses
        // both on create (it derives the span from the granularity).
        if k == "timeseries"
            && let Bson::Document(ts) = v
            && ts.contains_key("granularity")
        {
            let mut ts = ts.clone();
            ts.remove("bucketMaxSpanSeconds");
            create.insert(k, ts);
            continue;
        }
        create.insert(k, v.clone());
    }
    db.run_command(create).await?;
    Ok(())
}

/// The clone collection created with the source's options, filled inside the server (`$out`,
/// which keeps an existing collection's options; `$merge` for a capped one, which refuses
/// `$out`), without re-validating documents the source already holds; then the source's
/// secondary indexes. Also the online sync's bulk copy (`crate::sync`).
pub(crate) async fn copy_collection(
    client: &mongodb::Client,
    src: &str,
    dst: &str,
    spec: &CollectionSpec,
) -> Result<(), mongodb::error::Error> {
    let coll = &spec.name;
    create_like(client, dst, spec).await?;
    let source_db = client.database(src);
    let stage = if spec.is_capped() {
        doc! {"$merge": {"into": {"db": dst, "coll": coll}, "whenMatched": "replace", "whenNotMatched": "insert"}}
    } else {
        doc! {"$out": {"db": dst, "coll": coll}}
    };
    let mut cursor = source_db
        .run_cursor_command(doc! {
            "aggregate": coll,
            "pipeline": [stage],
            "cursor": {},
            "bypassDocumentValidation": true,
        })
        .await?;
    while cursor.try_next().await?.is_some() {}
    let mut indexes = source_db
        .run_cursor_command(doc! {"listIndexes": coll})
        .await?;
    let mut secondary = Vec::new();
    while let Some(mut i) = indexes.try_next().await? {
        if i.get_str("name").is_ok_and(|n| n == "_id_") {
            continue;
        }
        i.remove("ns");
        i.remove("background");
        secondary.push(i);
    }
    if !secondary.is_empty() {
        client
            .database(dst)
            .run_command(doc! {"createIndexes": coll, "indexes": secondary})
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(db: &str, name: &str, on: &str) -> (String, String, CollectionSpec) {
        (
            db.into(),
            format!("{db}-c"),
            CollectionSpec {
                name: name.into(),
                kind: "view".into(),
                options: doc! {"viewOn": on, "pipeline": []},
            },
        )
    }

    #[test]
    fn a_view_on_a_view_comes_after_it() {
        let order: Vec<String> = views_in_order(vec![
            view("a", "top", "middle"),
            view("a", "middle", "base"),
            view("b", "middle", "coll"),
        ])
        .into_iter()
        .map(|v| format!("{}.{}", v.0, v.2.name))
        .collect();
        assert_eq!(order, ["a.middle", "b.middle", "a.top"]);
    }
}
