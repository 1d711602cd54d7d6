//! A migration lock left held by a crashed app is reported, not waited out.

use std::time::Duration;

use cutover::crd::Phase;
use mongodb::bson::{Document, doc};
use serde_json::json;

use crate::common::*;
use crate::support::*;

/// The new version crashes after the first of two migration steps with the lock held; its
/// restart waits for the lock forever. The plan reports MigrationLockStale (with the document
/// and the release command) long before the timeout; once released, it completes.
#[tokio::test]
async fn stale_migration_lock_is_reported_and_the_plan_continues_once_released() {
    let Some(env) = env().await else { return };
    let (app, op) = env.app_with_operator("rel-lock").await;

    let mut plan = squidex_plan("lock", &app, 3);
    plan["spec"]["target"]["env"] = json!([{"name": "APPSIM_CRASH_AFTER_STEP", "value": "1"}]);
    plan["spec"]["migration"]["mongoDocument"]["staleLockAfter"] = json!("5s");
    env.apply(&app.ns, plan).await;
    let migrating = env
        .wait_phase(&op, &app.ns, "lock", Phase::Migrating, PLAN_TIMEOUT)
        .await;
    let migrating_since = status(&migrating).phases.last().unwrap().started_at;

    let stale = env
        .wait_condition(
            &op,
            &app.ns,
            "lock",
            "MigrationLockStale",
            Duration::from_secs(60),
        )
        .await;
    let st = status(&stale);
    assert_eq!(st.phase, Phase::Migrating, "reported, not failed");
    let raised = condition(&stale, "MigrationLockStale").unwrap();
    let waited = raised
        .last_transition_time
        .0
        .as_millisecond()
        .saturating_sub(migrating_since.as_millis());
    assert!(
        waited < 30_000,
        "raised after {waited} ms, long before the 3m timeout"
    );
    let clone_db = app.clone_of(&app.db, "lock");
    let msg = &raised.message;
    for part in [
        format!("The migration lock in {clone_db}.Migration has been held since"),
        "\"IsLocked\":true".to_string(),
        "\"Version\":2".to_string(),
        format!(
            "db.getSiblingDB(\"{clone_db}\").getCollection(\"Migration\").updateOne({{}}, {{$set: {{\"IsLocked\": false}}}})"
        ),
        "Secret mongo".to_string(),
    ] {
        assert!(msg.contains(&part), "message lacks {part:?}: {msg}");
    }
    assert!(
        !msg.contains(&env.mongo_uri),
        "the connection string is not in the message"
    );
    assert_eq!(condition(&stale, "Degraded").unwrap().status, "True");
    assert!(
        env.has_event(&app.ns, "MigrationLockStale", "Warning")
            .await
    );
    // The document really is as reported: half migrated, locked.
    let d = env.migration_doc(&clone_db).await.unwrap();
    assert_eq!((version_of(&d), d.get_bool("IsLocked").unwrap()), (2, true));

    // Release it as the message says.
    env.mongo
        .database(&clone_db)
        .collection::<Document>("Migration")
        .update_one(doc! {}, doc! {"$set": {"IsLocked": false}})
        .await
        .unwrap();
    let done = env
        .wait_phase(&op, &app.ns, "lock", Phase::Succeeded, PLAN_TIMEOUT)
        .await;
    let released = condition(&done, "MigrationLockStale").unwrap();
    assert_eq!(
        (released.status.as_str(), released.reason.as_str()),
        ("False", "LockMoved")
    );
    let d = env.migration_doc(&clone_db).await.unwrap();
    assert_eq!(
        (version_of(&d), d.get_bool("IsLocked").unwrap()),
        (3, false)
    );
    assert_eq!(
        env.counts(&app.clone_of(&app.content_db, "lock"))
            .await
            .get("States_Contents_All3"),
        Some(&app.documents)
    );

    env.finish(&op, &app.ns, &all_dbs(&app, &["lock"])).await;
}
