//! MongoDB operations the executor needs: what databases exist, document counts, the
//! migration document, and dropping databases. Every error message is scrubbed of the
//! connection string before it can reach a log, an event or the status.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use mongodb::bson::{Bson, Document, doc};
use mongodb::options::ClientOptions;

use crate::plan::{DatabaseInfo, MigrationDoc};

/// A MongoDB connection string, kept out of Debug output.
#[derive(Clone)]
pub struct Uri(String);

impl Uri {
    pub fn new(s: impl Into<String>) -> Self {
        Uri(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The password part, if any, so it can be scrubbed from messages on its own too.
    fn password(&self) -> Option<&str> {
        let rest = self.0.split_once("://")?.1;
        let userinfo = rest.split_once('@')?.0;
        userinfo
            .split_once(':')
            .map(|(_, p)| p)
            .filter(|p| !p.is_empty())
    }

    /// Whether this looks like a connection string at all, with the reason when not.
    pub fn check(&self) -> Result<(), String> {
        let s = self.0.trim();
        if !(s.starts_with("mongodb://") || s.starts_with("mongodb+srv://")) {
            return Err("it must start with mongodb:// or mongodb+srv://".into());
        }
        let host = s.split_once("://").map(|x| x.1).unwrap_or_default();
        let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
        if host.is_empty() || host.starts_with('/') || host.starts_with('?') {
            return Err("it names no host".into());
        }
        Ok(())
    }
}

impl std::fmt::Debug for Uri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Uri(***)")
    }
}

/// Removes the connection string and its password from a message.
pub fn scrub(message: &str, uri: &Uri) -> String {
    let mut out = message.replace(uri.expose(), "<connection string>");
    if let Some(p) = uri.password() {
        out = out.replace(p, "***");
        // The driver may print the percent-decoded password.
        if let Ok(decoded) = percent_decode(p)
            && !decoded.is_empty()
        {
            out = out.replace(&decoded, "***");
        }
    }
    out
}

fn percent_decode(s: &str) -> Result<String, ()> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 3 <= bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).map_err(|_| ())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| ())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ())
}

/// MongoDB clients by connection string; the driver pools connections inside each. Also the
/// server-side copies running in the background.
#[derive(Default)]
pub struct Clients {
    clients: Mutex<HashMap<String, mongodb::Client>>,
    pub copies: crate::copy::Copies,
}

impl Clients {
    pub async fn get(&self, uri: &Uri) -> Result<mongodb::Client, String> {
        if let Some(c) = self.clients.lock().expect("lock").get(uri.expose()) {
            return Ok(c.clone());
        }
        let mut opts = ClientOptions::parse(uri.expose())
            .await
            .map_err(|e| scrub(&e.to_string(), uri))?;
        // An unreachable server should be reported in seconds, not after the driver's 30 s.
        opts.server_selection_timeout = Some(Duration::from_secs(5));
        opts.connect_timeout = Some(Duration::from_secs(5));
        opts.app_name = Some("cutover".into());
        let client = mongodb::Client::with_options(opts).map_err(|e| scrub(&e.to_string(), uri))?;
        self.clients
            .lock()
            .expect("lock")
            .insert(uri.expose().to_string(), client.clone());
        Ok(client)
    }
}

/// Those of `wanted` that exist on the server, with their collection and (estimated)
/// document counts. Only these are inspected: a shared server may hold thousands of databases.
pub async fn list_databases(
    client: &mongodb::Client,
    uri: &Uri,
    wanted: &[String],
) -> Result<BTreeMap<String, DatabaseInfo>, String> {
    let names = client
        .list_database_names()
        .await
        .map_err(|e| scrub(&e.to_string(), uri))?;
    let mut out = BTreeMap::new();
    for name in names.into_iter().filter(|n| wanted.contains(n)) {
        let db = client.database(&name);
        let colls = user_collections(&db).await.map_err(|e| scrub(&e, uri))?;
        let mut documents = 0;
        for c in &colls {
            documents += db
                .collection::<Document>(c)
                .estimated_document_count()
                .await
                .map_err(|e| scrub(&e.to_string(), uri))? as i64;
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

/// Collections holding data: no views, no `system.*`.
async fn user_collections(db: &mongodb::Database) -> Result<Vec<String>, String> {
    let mut cursor_names = Vec::new();
    let specs = db
        .list_collections()
        .filter(doc! {})
        .await
        .map_err(|e| e.to_string())?;
    use futures::TryStreamExt;
    let specs: Vec<_> = specs.try_collect().await.map_err(|e| e.to_string())?;
    for s in specs {
        let is_view = matches!(s.collection_type, mongodb::results::CollectionType::View);
        if !is_view && !s.name.starts_with("system.") {
            cursor_names.push(s.name);
        }
    }
    cursor_names.sort();
    Ok(cursor_names)
}

/// Exact document counts per `database.collection` of the given databases.
pub async fn count_documents(
    client: &mongodb::Client,
    uri: &Uri,
    databases: &[String],
) -> Result<BTreeMap<String, i64>, String> {
    let mut out = BTreeMap::new();
    for name in databases {
        let db = client.database(name);
        for c in user_collections(&db).await.map_err(|e| scrub(&e, uri))? {
            let n = db
                .collection::<Document>(&c)
                .count_documents(doc! {})
                .await
                .map_err(|e| scrub(&e.to_string(), uri))?;
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
) -> Result<Option<MigrationDoc>, String> {
    let mut f = Document::new();
    for (k, v) in filter {
        f.insert(k.clone(), v.clone());
    }
    let found = client
        .database(database)
        .collection::<Document>(collection)
        .find_one(f)
        .await
        .map_err(|e| scrub(&e.to_string(), uri))?;
    Ok(found.map(|d| {
        let version = match d.get(version_field) {
            Some(Bson::Int32(v)) => Some(*v as i64),
            Some(Bson::Int64(v)) => Some(*v),
            Some(Bson::Double(v)) => Some(*v as i64),
            _ => None,
        };
        let locked = matches!(d.get(lock_field), Some(Bson::Boolean(true)));
        let raw = Bson::Document(d).into_relaxed_extjson().to_string();
        MigrationDoc {
            version,
            locked,
            raw,
        }
    }))
}

pub async fn drop_databases(
    client: &mongodb::Client,
    uri: &Uri,
    names: &[String],
) -> Result<(), String> {
    for n in names {
        client
            .database(n)
            .drop()
            .await
            .map_err(|e| scrub(&e.to_string(), uri))?;
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
) -> Result<Vec<crate::plan::CollectionReads>, String> {
    let top = client
        .database("admin")
        .run_command(doc! {"top": 1})
        .await
        .map_err(|e| {
            format!(
                "the server's top command (read counters, needs the clusterMonitor role) failed: {}",
                scrub(&e.to_string(), uri)
            )
        })?;
    let totals = top.get_document("totals").ok();
    let mut out = Vec::new();
    for db in databases {
        let names = client
            .database(db)
            .list_collection_names()
            .await
            .map_err(|e| scrub(&e.to_string(), uri))?;
        for c in names {
            let name = format!("{db}.{c}");
            let reads = totals
                .and_then(|t| t.get_document(&name).ok())
                .and_then(|n| n.get_document("readLock").ok())
                .and_then(|r| match r.get("count") {
                    Some(Bson::Int32(v)) => Some(i64::from(*v)),
                    Some(Bson::Int64(v)) => Some(*v),
                    #[allow(clippy::cast_possible_truncation)]
                    Some(Bson::Double(v)) => Some(*v as i64),
                    _ => None,
                })
                .unwrap_or(0);
            out.push(crate::plan::CollectionReads { name, reads });
        }
    }
    Ok(out)
}

/// Drops collections given as `database.collection` (the first dot separates them).
pub async fn drop_collections(
    client: &mongodb::Client,
    uri: &Uri,
    names: &[String],
) -> Result<(), String> {
    for n in names {
        let Some((db, coll)) = n.split_once('.') else {
            return Err(format!("{n:?} is not database.collection"));
        };
        client
            .database(db)
            .collection::<mongodb::bson::Document>(coll)
            .drop()
            .await
            .map_err(|e| scrub(&e.to_string(), uri))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_uri_and_password() {
        let uri = Uri::new("mongodb://app:s3cr%21t@db.local:27017/?authSource=admin");
        let msg = "auth failed for mongodb://app:s3cr%21t@db.local:27017/?authSource=admin (password s3cr!t, raw s3cr%21t)";
        let out = scrub(msg, &uri);
        assert!(!out.contains("s3cr"), "{out}");
        assert!(out.contains("<connection string>"));
        assert_eq!(format!("{uri:?}"), "Uri(***)");
    }

    #[test]
    fn checks_connection_strings() {
        assert!(
            Uri::new("mongodb://127.0.0.1:27017/?directConnection=true")
                .check()
                .is_ok()
        );
        assert!(
            Uri::new("mongodb+srv://u:p@cluster.example.com/db")
                .check()
                .is_ok()
        );
        assert!(Uri::new("postgres://x").check().is_err());
        assert!(Uri::new("mongodb:///db").check().is_err());
        assert!(Uri::new("").check().is_err());
    }
}
