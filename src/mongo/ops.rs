//! The operations the executor and observer run: what databases exist, document counts, the
//! migration document, read counters, and dropping databases and collections.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};

use super::MongoError;
use crate::plan::{CollectionReads, DatabaseInfo, MigrationDoc};
use crate::uri::Uri;

use super::command;

/// Those of `wanted` that exist on the server, with their collection and (estimated)
/// document counts. Only these are inspected: a shared server may hold thousands of databases.
pub async fn list_databases(
    client: &mongodb::Client,
    uri: &Uri,
    wanted: &[String],
) -> Result<BTreeMap<String, DatabaseInfo>, MongoError> {
    let names = client.list_database_names().await.map_err(command(uri))?;
    let mut out = BTreeMap::new();
    for name in names.into_iter().filter(|n| wanted.contains(n)) {
        let db = client.database(&name);
        let colls = user_collections(&db).await.map_err(command(uri))?;
        let mut documents = 0;
        for c in &colls {
            documents += db
                .collection::<Document>(c)
                .estimated_document_count()
                .await
                .map_err(command(uri))? as i64;
        }
        out.insert(
            name,
            DatabaseInfo {
                collections: colls.len() as i64,
                documents,
            },
        );
    }
    Ok(out)
}

/// Collections holding data, sorted: no views, no `system.*`.
pub async fn user_collections(
    db: &mongodb::Database,
) -> Result<Vec<String>, mongodb::error::Error> {
    let specs: Vec<_> = db
        .list_collections()
        .filter(doc! {})
        .await?
        .try_collect()
        .await?;
    let mut names: Vec<String> = specs
        .into_iter()
        .filter(|s| {
            !matches!(s.collection_type, mongodb::results::CollectionType::View)
                && is_user_collection(&s.name)
        })
        .map(|s| s.name)
        .collect();
    names.sort();
    Ok(names)
}

/// Not the server's own collections, nor a `$out` temporary: `$out` writes into
/// `tmp.agg_out.*` and renames it over the target; the server may still list it for a moment
/// after the copy, and it is never the app's data (seen in CI as a 0-document "clone but not
/// source" mismatch).
pub(super) fn is_user_collection(name: &str) -> bool {
    !name.starts_with("system.") && !name.starts_with("tmp.agg_out.")
}

/// Exact document counts per `database.collection` of the given databases.
pub async fn count_documents(
    client: &mongodb::Client,
    uri: &Uri,
    databases: &[String],
) -> Result<BTreeMap<String, i64>, MongoError> {
    let mut out = BTreeMap::new();
    for name in databases {
        let db = client.database(name);
        for c in user_collections(&db).await.map_err(command(uri))? {
            let n = db
                .collection::<Document>(&c)
                .count_documents(doc! {})
                .await
                .map_err(command(uri))?;
            out.insert(format!("{name}.{c}"), n as i64);
        }
    }
    Ok(out)
}

/// Reads the migration document (`Ok(None)` when it is not there yet).
pub async fn migration_doc(
    client: &mongodb::Client,
    uri: &Uri,
    database: &str,
    collection: &str,
    filter: &BTreeMap<String, String>,
    version_field: &str,
    lock_field: &str,
) -> Result<Option<MigrationDoc>, MongoError> {
    let mut f = Document::new();
    for (k, v) in filter {
        f.insert(k.clone(), v.clone());
    }
    let found = client
        .database(database)
        .collection::<Document>(collection)
        .find_one(f)
        .await
        .map_err(command(uri))?;
    Ok(found.map(|d| {
        let version = as_i64(d.get(version_field));
        let locked = matches!(d.get(lock_field), Some(Bson::Boolean(true)));
        let raw = Bson::Document(d).into_relaxed_extjson().to_string();
        MigrationDoc {
            version,
            locked,
            raw,
        }
    }))
}

/// A number as the server stores it (32- or 64-bit integer, or a double, truncated).
fn as_i64(value: Option<&Bson>) -> Option<i64> {
    match value {
        Some(Bson::Int32(v)) => Some(i64::from(*v)),
        Some(Bson::Int64(v)) => Some(*v),
        #[allow(clippy::cast_possible_truncation)]
        Some(Bson::Double(v)) => Some(*v as i64),
        _ => None,
    }
}

pub async fn drop_databases(
    client: &mongodb::Client,
    uri: &Uri,
    names: &[String],
) -> Result<(), MongoError> {
    for n in names {
        client.database(n).drop().await.map_err(command(uri))?;
    }
    Ok(())
}

/// The collections of `databases` (as `database.collection`) with the reads the server counted
/// on each (`top`: readLock count since it started). `top` needs the clusterMonitor role; without
/// it nothing can be said about reads, and the error says so.
pub async fn collections_with_reads(
    client: &mongodb::Client,
    uri: &Uri,
    databases: &[String],
) -> Result<Vec<CollectionReads>, MongoError> {
    let top = client
        .database("admin")
        .run_command(doc! {"top": 1})
        .await
        .map_err(|e| MongoError::Top(uri.redact(&e.to_string())))?;
    let totals = top.get_document("totals").ok();
    let mut out = Vec::new();
    for db in databases {
        let names = client
            .database(db)
            .list_collection_names()
            .await
            .map_err(command(uri))?;
        for c in names {
            let name = format!("{db}.{c}");
            let reads = totals
                .and_then(|t| t.get_document(&name).ok())
                .and_then(|n| n.get_document("readLock").ok())
                .and_then(|r| as_i64(r.get("count")))
                .unwrap_or(0);
            out.push(CollectionReads { name, reads });
        }
    }
    Ok(out)
}

/// Drops collections given as `database.collection` (the first dot separates them).
pub async fn drop_collections(
    client: &mongodb::Client,
    uri: &Uri,
    names: &[String],
) -> Result<(), MongoError> {
    for n in names {
        let Some((db, coll)) = n.split_once('.') else {
            return Err(MongoError::NotQualified(n.clone()));
        };
        client
            .database(db)
            .collection::<Document>(coll)
            .drop()
            .await
            .map_err(command(uri))?;
    }
    Ok(())
}

#[cfg(test)]
mod user_collection_tests {
    use super::is_user_collection;

    #[test]
    fn server_and_out_temporaries_are_not_user_collections() {
        assert!(is_user_collection("States_Contents_All2"));
        assert!(is_user_collection("tmp")); // a user may name a collection so
        assert!(!is_user_collection("system.views"));
        assert!(!is_user_collection("tmp.agg_out.6b1533739b3c8e3665ceecf6"));
    }
}
