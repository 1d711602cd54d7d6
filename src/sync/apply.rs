//! Changes applied to the clone (what an event means is `change`): one at a time (`apply`),
//! or a run of document events at once (`apply_run`, see `batch`). Every action is
//! idempotent, so events applied again after a restart from an older token leave the clone as
//! it was:
//! - insert / replace / update: replace-with-upsert by `_id` from the full document (an update
//!   whose full document is gone: the document was deleted later, and that delete follows);
//! - delete: delete by `_id`;
//! - create: the collection or view created in the clone with the source's options (a
//!   validator, collation, capped size, a view's pipeline), unless the clone has it already;
//! - createIndexes / dropIndexes / drop / dropDatabase: the same in the clone;
//! - rename within the database: the clone's old name dropped and the new name copied again
//!   from the source (its current content; later events apply on top of it); a rename out of
//!   the database: the clone's old name dropped.

use mongodb::bson::{Bson, Document, doc};
use mongodb::error::{Error, ErrorKind, WriteFailure};

use super::change::Change;

pub async fn apply(
    client: &mongodb::Client,
    source: &str,
    clone: &str,
    change: &Change,
) -> Result<(), Error> {
    let db = client.database(clone);
    match change {
        Change::Upsert { coll, id, doc } => upsert(&db, coll, id, doc).await,
        Change::Delete { coll, id } => {
            db.collection::<Document>(coll)
                .delete_one(doc! {"_id": id.clone()})
                .await?;
            Ok(())
        }
        Change::Create { coll } => crate::copy::create_named(client, source, clone, coll).await,
        Change::CreateIndexes { coll, indexes } if !indexes.is_empty() => {
            let specs: Vec<Document> = indexes
                .iter()
                .map(|i| {
                    let mut i = i.clone();
                    i.remove("ns");
                    i
                })
                .collect();
            db.run_command(doc! {"createIndexes": coll, "indexes": specs})
                .await?;
            Ok(())
        }
        Change::DropIndexes { coll, names } => {
            for n in names {
                match db.collection::<Document>(coll).drop_index(n.as_str()).await {
                    // IndexNotFound, NamespaceNotFound: already gone.
                    Err(e) if matches!(code(&e), Some(27 | 26)) => {}
                    other => other?,
                }
            }
            Ok(())
        }
        Change::Drop { coll } => db.collection::<Document>(coll).drop().await,
        Change::Rename { from, to_coll } => {
            db.collection::<Document>(from).drop().await?;
            if let Some(to) = to_coll {
                crate::copy::copy_named(client, source, clone, to).await?;
            }
            Ok(())
        }
        Change::DropDatabase => db.drop().await,
        Change::CreateIndexes { .. } | Change::Invalidate | Change::Marker(_) | Change::Skip(_) => {
            Ok(())
        }
    }
}

/// Bytes of documents per write command of a run (a command is one BSON document: 16 MB).
const COMMAND_BYTES: usize = 8 * 1024 * 1024;

/// Applies a run of document events (`batch`): per collection one `delete` command and one
/// ordered `update` command (replace-with-upsert by `_id`), the last event per `_id` winning.
/// Deletes go first: each `_id` has one write, so the order between them only matters for a
/// unique index, where removing first frees values. Any write error (a unique-index collision
/// with a document the run changes later, say) applies the run again one event at a time
/// (`apply`, which resolves collisions): idempotent, so the writes already made are harmless.
pub async fn apply_run(
    client: &mongodb::Client,
    source: &str,
    clone: &str,
    changes: &[&Change],
) -> Result<(), Error> {
    match write_run(&client.database(clone), changes.iter().copied()).await {
        Ok(()) => return Ok(()),
        Err(e) if super::task::transient(&e) => return Err(e),
        Err(e) => tracing::debug!(
            code = code(&e),
            "sync: a run's batch failed; applying its events one at a time"
        ),
    }
    for c in changes {
        apply(client, source, clone, c).await?;
    }
    Ok(())
}

async fn write_run<'a>(
    db: &mongodb::Database,
    changes: impl IntoIterator<Item = &'a Change>,
) -> Result<(), Error> {
    for w in super::batch::coalesce(changes) {
        let deletes = w
            .deletes
            .into_iter()
            .map(|id| doc! {"q": {"_id": id}, "limit": 1});
        for chunk in chunks(deletes) {
            write(
                db,
                doc! {"delete": &w.coll, "deletes": chunk, "ordered": true},
            )
            .await?;
        }
        let updates = w
            .upserts
            .into_iter()
            .map(|(id, d)| doc! {"q": {"_id": id}, "u": d, "upsert": true});
        for chunk in chunks(updates) {
            write(
                db,
                doc! {"update": &w.coll, "updates": chunk, "ordered": true},
            )
            .await?;
        }
    }
    Ok(())
}

/// Statements cut into commands of at most [`COMMAND_BYTES`] (a larger statement alone).
fn chunks(statements: impl Iterator<Item = Document>) -> Vec<Vec<Document>> {
    let mut out: Vec<Vec<Document>> = Vec::new();
    let mut bytes = 0;
    for s in statements {
        let size = mongodb::bson::to_vec(&s).map_or(COMMAND_BYTES, |v| v.len());
        match out.last_mut() {
            Some(last) if bytes + size <= COMMAND_BYTES => last.push(s),
            _ => {
                out.push(vec![s]);
                bytes = 0;
            }
        }
        bytes += size;
    }
    out
}

/// A write command; its write errors (the reply says `ok: 1` with them) as an error.
async fn write(db: &mongodb::Database, command: Document) -> Result<(), Error> {
    let reply = db.run_command(command).await?;
    let first = reply
        .get_array("writeErrors")
        .ok()
        .and_then(|e| e.first())
        .and_then(Bson::as_document);
    if let Some(e) = first {
        return Err(Error::custom(WriteRunError {
            code: e.get_i32("code").unwrap_or(0),
        }));
    }
    if reply.get_document("writeConcernError").is_ok() {
        return Err(Error::custom(WriteRunError { code: 64 }));
    }
    Ok(())
}

/// A write error of a run's command (its code: 11000 a unique-index collision).
#[derive(Debug)]
struct WriteRunError {
    code: i32,
}

fn code(e: &Error) -> Option<i32> {
    match &*e.kind {
        ErrorKind::Custom(c) => c.downcast_ref::<WriteRunError>().map(|w| w.code),
        ErrorKind::Command(c) => Some(c.code),
        ErrorKind::Write(WriteFailure::WriteError(w)) => Some(w.code),
        _ => None,
    }
}

/// Replace-with-upsert by `_id`. Applied again from an older token, a document's historical
/// state (an insert's document is the one inserted, not the current one) can collide on a
/// unique index with another document the clone already holds in a later state. That other
/// document took the value after this event, so a later event of the stream writes it again:
/// it is removed here and the write repeated.
async fn upsert(
    db: &mongodb::Database,
    coll: &str,
    id: &Bson,
    doc: &Document,
) -> Result<(), Error> {
    let c = db.collection::<Document>(coll);
    let filter = doc! {"_id": id.clone()};
    match c
        .replace_one(filter.clone(), doc.clone())
        .upsert(true)
        .await
    {
        Err(e) if code(&e) == Some(11000) => {
            remove_unique_conflicts(&c, id, doc).await?;
            c.replace_one(filter, doc.clone()).upsert(true).await?;
            Ok(())
        }
        other => other.map(|_| ()),
    }
}

async fn remove_unique_conflicts(
    c: &mongodb::Collection<Document>,
    id: &Bson,
    doc: &Document,
) -> Result<(), Error> {
    use futures::TryStreamExt;
    let indexes: Vec<_> = c.list_indexes().await?.try_collect().await?;
    for i in indexes {
        let unique = i.options.as_ref().and_then(|o| o.unique).unwrap_or(false);
        if !unique {
            continue;
        }
        let mut filter = doc! {"_id": {"$ne": id.clone()}};
        for (path, _) in &i.keys {
            filter.insert(path.clone(), value_at(doc, path).unwrap_or(Bson::Null));
        }
        c.delete_many(filter).await?;
    }
    Ok(())
}

/// The value at a dotted path of a document, if any.
fn value_at(doc: &Document, path: &str) -> Option<Bson> {
    let mut parts = path.split('.');
    let mut value = doc.get(parts.next()?)?;
    for p in parts {
        value = value.as_document()?.get(p)?;
    }
    Some(value.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_at_dotted_paths() {
        let d = doc! {"a": {"b": 3}, "c": 1};
        assert_eq!(value_at(&d, "a.b"), Some(Bson::Int32(3)));
        assert_eq!(value_at(&d, "c"), Some(Bson::Int32(1)));
        assert_eq!(value_at(&d, "a.x"), None);
    }
}
