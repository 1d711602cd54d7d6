//! Squidex's start-up migration protocol on the `Migration` document
//! `{_id: "Default", Version, IsLocked}`: take the lock atomically (waiting while another
//! instance holds it), run steps `Version+1..=target` saving `Version` after each, release.
//! `Version` is an Int32, as Squidex writes it. SIGTERM mid-migration releases the lock (see
//! `super::migrate_or_stop`); a crash (`APPSIM_CRASH_AFTER_STEP`) skips the release on purpose: that stuck lock is what
//! the operator must detect.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use mongodb::{
    Client, Collection, Database,
    bson::{Bson, Document, doc},
    error::{Error, ErrorKind, WriteFailure},
    options::ReturnDocument,
};

use super::{config::Config, steps};

pub const COLLECTION: &str = "Migration";
const ID: &str = "Default";
const LOCK_RETRY: Duration = Duration::from_millis(500);

/// Progress of the migration, for health endpoints and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    WaitingForLock,
    Migrating { from: u32, step: u32 },
    Done { version: u32 },
}

pub struct Databases {
    pub main: Database,
    pub content: Database,
}

impl Databases {
    pub fn new(client: &Client, cfg: &Config) -> Self {
        Self {
            main: client.database(&cfg.database),
            content: client.database(&cfg.content_database),
        }
    }

    fn migration(&self) -> Collection<Document> {
        self.main.collection(COLLECTION)
    }
}

/// Runs the migration to `cfg.target_version`; returns the database's version afterwards.
/// `holding` is true while this process holds the lock, so a SIGTERM handler can release
/// it (Squidex's `finally`), and only then.
pub async fn run(
    dbs: &Databases,
    cfg: &Config,
    holding: &AtomicBool,
    report: impl Fn(Progress),
) -> anyhow::Result<u32> {
    let target = cfg.target_version;
    report(Progress::WaitingForLock);
    let mut waited = 0u32;
    let version = loop {
        match try_lock(dbs).await? {
            Some(v) => {
                holding.store(true, Ordering::SeqCst);
                break v;
            }
            None => {
                if waited.is_multiple_of(10) {
                    tracing::info!(
                        database = %cfg.database,
                        "migration lock is held by another instance (IsLocked=true); waiting"
                    );
                }
                waited += 1;
                tokio::time::sleep(LOCK_RETRY).await;
            }
        }
    };
    tracing::info!(version, target, "took the migration lock");
    let result = migrate_locked(dbs, cfg, version, &report).await;
    // Like Squidex's `finally`: release on success and on a failed step.
    release(dbs, holding).await;
    let version = result?;
    report(Progress::Done { version });
    Ok(version)
}

async fn migrate_locked(
    dbs: &Databases,
    cfg: &Config,
    from: u32,
    report: &impl Fn(Progress),
) -> anyhow::Result<u32> {
    let target = cfg.target_version;
    if from > target {
        tracing::warn!(
            database_version = from,
            app_version = target,
            "the database is newer than this app; not migrating"
        );
        return Ok(from);
    }
    if from == target {
        tracing::info!(version = from, "database is up to date");
        return Ok(from);
    }
    let mut done = 0;
    for step in from + 1..=target {
        report(Progress::Migrating { from, step });
        if cfg.fail_migration {
            anyhow::bail!("migration step {step} failed (APPSIM_FAIL_MIGRATION is set)");
        }
        tokio::time::sleep(cfg.step_delay).await;
        let copied = steps::rebuild_contents(&dbs.content, step).await?;
        let version = i32::try_from(step).unwrap_or(i32::MAX);
        let migration = dbs.migration();
        retry_write_conflicts(|| {
            migration.update_one(doc! {"_id": ID}, doc! {"$set": {"Version": version}})
        })
        .await?;
        done += 1;
        tracing::info!(step, documents = copied, collection = %steps::contents_collection(step), "migration step done");
        if cfg.crash_now(done) {
            tracing::error!(step, "APPSIM_CRASH_AFTER_STEP: crashing with the lock held");
            std::process::exit(137);
        }
    }
    Ok(target)
}

/// Takes the lock; `Some(version)` on success, `None` when another instance holds it.
async fn try_lock(dbs: &Databases) -> anyhow::Result<Option<u32>> {
    let res = dbs
        .migration()
        .find_one_and_update(
            doc! {"_id": ID, "IsLocked": {"$ne": true}},
            doc! {"$set": {"IsLocked": true, "LockedBy": owner()}, "$setOnInsert": {"Version": 0_i32}},
        )
        .upsert(true)
        .return_document(ReturnDocument::After)
        .await;
    match res {
        Ok(Some(d)) => Ok(Some(version_of(&d))),
        Ok(None) => Ok(None),
        // The document exists and is locked: the upsert's insert collides on `_id`.
        Err(e) if is_duplicate_key(&e) => Ok(None),
        // Another instance wrote the document at the same moment; try again next round.
        Err(e) if is_write_conflict(&e) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Releases the lock if this process holds it.
pub async fn release(dbs: &Databases, holding: &AtomicBool) {
    if !holding.swap(false, Ordering::SeqCst) {
        return;
    }
    let migration = dbs.migration();
    let mine = doc! {"_id": ID, "LockedBy": owner()};
    for attempt in 0..5 {
        let res = retry_write_conflicts(|| {
            migration.update_one(mine.clone(), doc! {"$set": {"IsLocked": false}})
        })
        .await;
        if let Err(e) = res {
            tracing::error!(error = %e, "could not release the migration lock");
            return;
        }
        // The environment's server can lose an acknowledged update that races another
        // instance's failing findAndModify on the lock (docs/reliability.md "Soak", finding 4):
        // read it back, and release again while it still shows this process's lock.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let still = migration
            .find_one(doc! {"_id": ID, "LockedBy": owner(), "IsLocked": true})
            .await;
        match still {
            Ok(None) => {
                tracing::info!("released the migration lock");
                return;
            }
            Ok(Some(_)) => {
                tracing::warn!(
                    attempt,
                    "the release of the migration lock was lost; releasing again"
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not read the migration lock back after releasing it");
                return;
            }
        }
    }
    tracing::error!("the migration lock still shows this instance's lock after 5 releases");
}

/// Who holds the lock (this process), so that a release read back can tell its own lock.
fn owner() -> &'static str {
    static OWNER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    OWNER.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        format!(
            "{}-{}-{nanos}",
            std::env::var("POD_NAME").unwrap_or_else(|_| "appsim".into()),
            std::process::id()
        )
    })
}

/// Reads `{Version, IsLocked}` without touching the lock.
pub async fn read(dbs: &Databases) -> mongodb::error::Result<Option<(u32, bool)>> {
    Ok(dbs
        .migration()
        .find_one(doc! {"_id": ID})
        .await?
        .map(|d| (version_of(&d), d.get_bool("IsLocked").unwrap_or(false))))
}

pub fn version_of(d: &Document) -> u32 {
    let v = match d.get("Version") {
        Some(Bson::Int32(v)) => i64::from(*v),
        Some(Bson::Int64(v)) => *v,
        #[allow(clippy::cast_possible_truncation)]
        Some(Bson::Double(v)) => *v as i64,
        _ => 0,
    };
    u32::try_from(v).unwrap_or(0)
}

/// Retries a write that lost a race with another instance's write to the same document.
/// mongod retries such conflicts internally outside transactions; a MongoDB-wire server may
/// return them (WriteConflict, 112), and a lost release would leave the lock stuck.
async fn retry_write_conflicts<F, Fut, T>(mut write: F) -> mongodb::error::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::IntoFuture<Output = mongodb::error::Result<T>>,
{
    let mut attempt = 0u32;
    loop {
        match write().await {
            Err(e) if is_write_conflict(&e) && attempt < WRITE_CONFLICT_RETRIES => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt.min(10)))).await;
            }
            other => return other,
        }
    }
}

const WRITE_CONFLICT_RETRIES: u32 = 100;

fn error_code(e: &Error) -> Option<i32> {
    match &*e.kind {
        ErrorKind::Command(c) => Some(c.code),
        ErrorKind::Write(WriteFailure::WriteError(w)) => Some(w.code),
        _ => None,
    }
}

fn is_write_conflict(e: &Error) -> bool {
    error_code(e) == Some(112) || e.to_string().contains("WriteConflict")
}

fn is_duplicate_key(e: &Error) -> bool {
    error_code(e) == Some(11000)
        || e.to_string().contains("E11000")
        || e.to_string().contains("duplicate key")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_versions_of_any_numeric_type() {
        assert_eq!(version_of(&doc! {"Version": 3_i32}), 3);
        assert_eq!(version_of(&doc! {"Version": 4_i64}), 4);
        assert_eq!(version_of(&doc! {"Version": 5.0}), 5);
        assert_eq!(version_of(&doc! {}), 0);
    }
}
