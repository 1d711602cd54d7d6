//! The runbook's way, timed in the same run: each database piped from `mongodump` into
//! `mongorestore` under a new name, one after the other, then the copies counted against the
//! sources and dropped.

use std::time::Instant;

use anyhow::{Context, bail};
use mongodb::bson::{Document, doc};
use serde::Serialize;

#[derive(Serialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Baseline {
    pub seconds: f64,
    /// Seconds per source database.
    pub databases: Vec<(String, f64)>,
    pub command: String,
}

/// The pipeline for one database (bash, so a failing mongodump fails the pipe).
pub const PIPE: &str = r#"set -euo pipefail
mongodump --uri="$MONGODB_URI" --db="$SRC" --archive --gzip \
  | mongorestore --uri="$MONGODB_URI" --archive --gzip --nsFrom="$SRC.*" --nsTo="$DST.*""#;

/// Copies each `(source, copy)` pair; fails if a copy's counts differ from its source's.
pub async fn run(
    uri: &str,
    mongo: &mongodb::Client,
    pairs: &[(String, String)],
) -> anyhow::Result<Baseline> {
    let started = Instant::now();
    let mut per_db = Vec::new();
    for (src, dst) in pairs {
        let t = Instant::now();
        let out = tokio::process::Command::new("bash")
            .args(["-c", PIPE])
            .env("MONGODB_URI", uri)
            .env("SRC", src)
            .env("DST", dst)
            .output()
            .await
            .context("running mongodump | mongorestore")?;
        if !out.status.success() {
            bail!(
                "mongodump | mongorestore of {src} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .rev()
                    .take(5)
                    .collect::<Vec<_>>()
                    .join(" / ")
            );
        }
        per_db.push((src.clone(), t.elapsed().as_secs_f64()));
    }
    let seconds = started.elapsed().as_secs_f64();
    for (src, dst) in pairs {
        let (a, b) = (counts(mongo, src).await?, counts(mongo, dst).await?);
        if a != b {
            bail!("baseline copy {dst} differs from {src}: {b:?} vs {a:?}");
        }
    }
    Ok(Baseline {
        seconds,
        databases: per_db,
        command: "mongodump --archive --gzip --db SRC | mongorestore --archive --gzip --nsFrom 'SRC.*' --nsTo 'DST.*' (per database, in turn)".into(),
    })
}

/// Documents per collection.
pub async fn counts(
    mongo: &mongodb::Client,
    db: &str,
) -> anyhow::Result<std::collections::BTreeMap<String, u64>> {
    let d = mongo.database(db);
    let mut out = std::collections::BTreeMap::new();
    for c in d.list_collection_names().await? {
        let n = d
            .collection::<Document>(&c)
            .count_documents(doc! {})
            .await?;
        out.insert(c, n);
    }
    Ok(out)
}

/// `dataSize` of a database from `dbStats`, when the server reports it.
pub async fn data_bytes(mongo: &mongodb::Client, db: &str) -> Option<u64> {
    let r = mongo
        .database(db)
        .run_command(doc! {"dbStats": 1})
        .await
        .ok()?;
    r.get("dataSize").and_then(|v| match v {
        mongodb::bson::Bson::Int32(n) => Some(*n as u64),
        mongodb::bson::Bson::Int64(n) => Some(*n as u64),
        mongodb::bson::Bson::Double(n) => Some(*n as u64),
        _ => None,
    })
}
