//! `release-lock`: what docs/operations.md (MigrationLockStale) tells a person to do about a
//! migration lock left behind by a crashed migration — release it in the **clone** (never the
//! source) with the connection string of the plan's Secret — after showing the lock as status
//! reports it and asking. Refuses unless the plan reports the lock stale.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use anyhow::{Context, bail};
use clap::Args;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};
use mongodb::bson::{Document, doc};

use super::steer::{PlanArgs, get_plan, plans_api};
use crate::crd::{Timestamp, UpgradePlan};
use crate::plan::conditions as cond;
use crate::plan::frozen;
use crate::uri::Uri;

#[derive(Args, Debug, Clone)]
pub struct ReleaseLockArgs {
    #[command(flatten)]
    pub plan: PlanArgs,
    /// Do not ask: release the lock at once (for scripts).
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// The stale lock as the plan reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct StaleLock {
    /// The clone holding the migration document (the source is never touched).
    pub database: String,
    pub collection: String,
    /// The gate's equality filter (empty: the collection's first document).
    pub filter: BTreeMap<String, String>,
    pub lock_field: String,
    /// Since when version and lock have not moved (`status.migration.since`).
    pub since: Option<Timestamp>,
    pub version: Option<i64>,
    /// When the plan reported it stale, and its words.
    pub reported_at: String,
    pub message: String,
    /// The Secret key with the connection string.
    pub secret: String,
    pub secret_key: String,
}

/// The stale lock the plan reports, or why there is none to release.
pub fn stale_lock(plan: &UpgradePlan) -> Result<StaleLock, String> {
    let name = format!(
        "{}/{}",
        plan.namespace().unwrap_or_default(),
        plan.name_any()
    );
    let st = plan.status.clone().unwrap_or_default();
    let Some(c) =
        cond::get(&st.conditions, cond::MIGRATION_LOCK_STALE).filter(|c| c.status == "True")
    else {
        let mig = st.migration.as_ref().map_or_else(String::new, |m| {
            format!(
                "; the migration document was last seen at version {} {}",
                m.version.map_or("?".into(), |v| v.to_string()),
                if m.locked == Some(true) {
                    "and locked (a migration may be running: wait for the plan to report it stale)"
                } else {
                    "and unlocked"
                }
            )
        });
        return Err(format!(
            "UpgradePlan {name} reports no stale migration lock (condition MigrationLockStale is not True; the plan is {}){mig}. Nothing released",
            st.phase
        ));
    };
    let spec = frozen::effective(&plan.spec, Some(&st), &plan.name_any()).spec;
    let Some(gate) = spec.migration.mongo_document.as_ref() else {
        return Err(format!(
            "UpgradePlan {name} has no migration.mongoDocument gate: there is no lock cutover knows how to release"
        ));
    };
    let Some(database) = st.targets.as_ref().and_then(|t| {
        t.databases
            .iter()
            .find(|d| d.source == gate.database)
            .map(|d| d.clone.clone())
    }) else {
        return Err(format!(
            "UpgradePlan {name} records no clone of {} in status.targets; release the lock by hand as the MigrationLockStale message says",
            gate.database
        ));
    };
    let mig = st.migration.clone().unwrap_or_default();
    Ok(StaleLock {
        database,
        collection: gate.collection.clone(),
        filter: gate.filter.clone(),
        lock_field: gate.lock_field.clone(),
        since: mig.since,
        version: mig.version,
        reported_at: c.last_transition_time.0.to_string(),
        message: c.message.clone(),
        secret: spec.database.connection_secret.name.clone(),
        secret_key: spec.database.connection_secret.key.clone(),
    })
}

/// What the user is shown before being asked.
pub fn describe(lock: &StaleLock) -> String {
    let filter = if lock.filter.is_empty() {
        "the collection's first document".to_string()
    } else {
        format!(
            "the document matching {}",
            serde_json::to_string(&lock.filter).unwrap_or_default()
        )
    };
    format!(
        "Stale migration lock:\n  database:   {} (the clone; the source is never touched)\n  collection: {}\n  document:   {filter}\n  lock field: {} (true)\n  version:    {}\n  held since: {} (no version movement since)\n  reported:   {}\n\n{}\n",
        lock.database,
        lock.collection,
        lock.lock_field,
        lock.version.map_or("?".into(), |v| v.to_string()),
        lock.since.map_or("?".into(), |t| t.to_string()),
        lock.reported_at,
        lock.message,
    )
}

/// The update: the gate's filter, and only while the lock is still held.
pub fn release_update(lock: &StaleLock) -> (Document, Document) {
    let mut filter = Document::new();
    for (k, v) in &lock.filter {
        filter.insert(k.clone(), v.clone());
    }
    filter.insert(lock.lock_field.clone(), true);
    (filter, doc! {"$set": {lock.lock_field.clone(): false}})
}

/// Whether an answer to the y/N question is a yes.
pub fn is_yes(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

pub async fn run(args: ReleaseLockArgs) -> anyhow::Result<()> {
    let (api, ns) = plans_api(args.plan.namespace.clone()).await?;
    let plan = get_plan(&api, &ns, &args.plan.plan).await?;
    let lock = stale_lock(&plan).map_err(anyhow::Error::msg)?;
    print!("{}", describe(&lock));
    if !args.yes {
        print!(
            "Check that no migration is running. Release the lock in {}.{}? [y/N] ",
            lock.database, lock.collection
        );
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !is_yes(&answer) {
            bail!("not released (answer was not y)");
        }
    }
    let secrets: Api<Secret> = Api::namespaced(api.into_client(), &ns);
    let secret = secrets
        .get_opt(&lock.secret)
        .await
        .with_context(|| format!("reading Secret {ns}/{}", lock.secret))?
        .with_context(|| format!("Secret {ns}/{} not found", lock.secret))?;
    let raw = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&lock.secret_key))
        .with_context(|| format!("Secret {ns}/{} has no key {}", lock.secret, lock.secret_key))?;
    let text = String::from_utf8(raw.0.clone()).with_context(|| {
        format!(
            "Secret {ns}/{} key {} is not text",
            lock.secret, lock.secret_key
        )
    })?;
    let uri = Uri::parse(text).map_err(|e| {
        anyhow::anyhow!(
            "Secret {ns}/{} key {}: not a MongoDB connection string: {e}",
            lock.secret,
            lock.secret_key
        )
    })?;
    let client = crate::mongo::Clients::default().get(&uri).await?;
    let (filter, update) = release_update(&lock);
    let result = client
        .database(&lock.database)
        .collection::<Document>(&lock.collection)
        .update_one(filter, update)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "releasing the lock in {}.{} (from here; if MongoDB is not reachable from this machine, run the command of the message above from a pod that reaches it): {}",
                lock.database,
                lock.collection,
                uri.redact(&e.to_string())
            )
        })?;
    if result.matched_count == 0 {
        println!(
            "Nothing changed: no document of {}.{} holds the lock any more (it was released or the migration moved on). The plan goes on by itself.",
            lock.database, lock.collection
        );
    } else {
        println!(
            "Released: {}.{} {}: true -> false. The plan continues once the operator sees it (MigrationLockStale turns False, LockMoved).",
            lock.database, lock.collection, lock.lock_field
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{DatabasePair, MigrationStatus, RecordedTargets, UpgradePlanStatus};
    use crate::fixtures::SquidexPlan;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    fn plan_with(stale: Option<bool>) -> UpgradePlan {
        let mut p = SquidexPlan::unit().object("up");
        p.metadata.namespace = Some("apps".into());
        let mut st = UpgradePlanStatus {
            phase: crate::crd::Phase::Migrating,
            targets: Some(RecordedTargets {
                databases: vec![DatabasePair {
                    source: "Squidex".into(),
                    clone: "Squidex-up".into(),
                }],
                ..Default::default()
            }),
            migration: Some(MigrationStatus {
                version: Some(2),
                locked: Some(true),
                since: Some(Timestamp::from_millis(1_700_000_000_000)),
                job_succeeded: false,
            }),
            ..Default::default()
        };
        if let Some(s) = stale {
            st.conditions.push(Condition {
                type_: "MigrationLockStale".into(),
                status: if s { "True" } else { "False" }.into(),
                reason: "LockHeldByNoOne".into(),
                message: "The migration lock in Squidex-up.Migration has been held".into(),
                last_transition_time: Time(jiff::Timestamp::from_second(1_700_000_100).unwrap()),
                observed_generation: None,
            });
        }
        p.status = Some(st);
        p
    }

    #[test]
    fn a_reported_stale_lock_is_shown_with_where_and_since_when() {
        let lock = stale_lock(&plan_with(Some(true))).unwrap();
        assert_eq!(
            (lock.database.as_str(), lock.collection.as_str()),
            ("Squidex-up", "Migration")
        );
        assert_eq!(
            (lock.secret.as_str(), lock.secret_key.as_str()),
            ("mongo", "uri")
        );
        let text = describe(&lock);
        for part in [
            "database:   Squidex-up (the clone",
            "collection: Migration",
            "the collection's first document",
            "lock field: IsLocked",
            "version:    2",
            "held since: 2023-11-14T22:13:20.000Z",
            "reported:   2023-11-14T22:15:00Z",
        ] {
            assert!(text.contains(part), "{part}: {text}");
        }
        let (filter, update) = release_update(&lock);
        assert_eq!(filter, doc! {"IsLocked": true});
        assert_eq!(update, doc! {"$set": {"IsLocked": false}});
    }

    #[test]
    fn no_stale_lock_reported_is_refused() {
        for stale in [None, Some(false)] {
            let err = stale_lock(&plan_with(stale)).unwrap_err();
            assert!(
                err.contains("reports no stale migration lock") && err.contains("version 2"),
                "{err}"
            );
        }
    }

    #[test]
    fn only_y_or_yes_is_a_yes() {
        for a in ["y\n", "Y", " yes \n", "YES"] {
            assert!(is_yes(a), "{a:?}");
        }
        for a in ["", "\n", "n", "no", "yep", "ja"] {
            assert!(!is_yes(a), "{a:?}");
        }
    }
}
