//! Guarded cleanup after a successful upgrade, on the real control plane and MongoDB-wire
//! server: each step runs only when its guard holds, a refusal says why in the step, a
//! condition and an event, and fixing the cause lets the step run.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use cutover::crd::Phase;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::DeleteParams;
use mongodb::bson::{Document, doc};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(180);

/// podsim backs a PersistentVolumeClaim with a directory shared by the namespace's pods.
fn backup_volume(ns: &str) -> Option<PathBuf> {
    let dir = std::env::var("CUTOVER_ENV_DIR").ok()?;
    Some(
        PathBuf::from(dir)
            .join("podsim/volumes")
            .join(ns)
            .join("pvc-backups"),
    )
}

async fn collections(env: &Env, db: &str) -> Vec<String> {
    let mut c = env
        .mongo
        .database(db)
        .list_collection_names()
        .await
        .unwrap();
    c.sort();
    c
}

/// The cleanup step's message contains `text`.
fn assert_step_says(p: &cutover::crd::UpgradePlan, step: CleanupStepName, text: &str) {
    let s = cleanup_step(p, step).unwrap_or_else(|| panic!("no step {step:?}"));
    assert!(s.message.contains(text), "{step:?}: {}", s.message);
}

/// Waits until a cleanup step of the plan `tidy` reaches `state`.
async fn tidy_step(
    env: &Env,
    op: &Operator,
    ns: &str,
    step: CleanupStepName,
    state: CleanupState,
) -> cutover::crd::UpgradePlan {
    env.wait_cleanup(op, ns, "tidy", step, state, TIMEOUT).await
}

#[tokio::test]
async fn cleanup_steps_run_only_when_their_guards_hold() {
    let Some(env) = env().await else { return };
    let app = env.blue_app("cleanup", AppOptions::default()).await;
    // Collections an older version left behind, matched by a second pattern.
    for c in ["Legacy_Assets", "Legacy_Logs"] {
        env.mongo
            .database(&app.content_db)
            .collection::<Document>(c)
            .insert_one(doc! {"old": true})
            .await
            .unwrap();
    }
    // A Service that selects every pod of the app, old version included: it must block
    // deleting the old version and dropping the databases its environment names.
    env.apply(
        &app.ns,
        json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "squidex-all"},
            "spec": {"selector": {"app": "squidex"}, "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}
        }),
    )
    .await;
    // An older complete backup of the same app and an incomplete one on the volume.
    let volume = backup_volume(&app.ns);
    if let Some(v) = &volume {
        for (dir, complete) in [("older", true), ("broken", false)] {
            let d = v.join("squidex").join(dir);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("Sq.archive.gz"), b"old").unwrap();
            if complete {
                std::fs::write(d.join("SHA256SUMS"), b"x  ./Sq.archive.gz\n").unwrap();
            }
        }
    }

    let op = Operator::start(&app.ns);
    let mut plan = squidex_plan("tidy", &app, 2);
    plan["spec"]["cleanup"] = json!({
        "scaleDownBlueAfter": "0s",
        "deleteBlueAfter": "0s",
        "dropSourceDatabasesAfter": "0s",
        "obsoleteCollections": {"patterns": [
            {"database": app.content_db, "pattern": "States_Contents_All*"},
            {"database": app.content_db, "pattern": "Legacy_*", "keepHighest": false}
        ]}
    });
    plan["spec"]["backup"]["keepLast"] = json!(1);
    env.apply(&app.ns, plan).await;
    env.wait_phase(&op, &app.ns, "tidy", Phase::Succeeded, TIMEOUT)
        .await;
    let clone_content = app.clone_of(&app.content_db, "tidy");

    // Refused while the Service selects the old version's pods.
    let p = tidy_step(
        &env,
        &op,
        &app.ns,
        CleanupStepName::DropSourceDatabases,
        CleanupState::Refused,
    )
    .await;
    let p = if cleanup_step(&p, CleanupStepName::DeleteBlue)
        .is_some_and(|s| s.state == CleanupState::Refused)
    {
        p
    } else {
        tidy_step(
            &env,
            &op,
            &app.ns,
            CleanupStepName::DeleteBlue,
            CleanupState::Refused,
        )
        .await
    };
    assert_step_says(
        &p,
        CleanupStepName::DeleteBlue,
        "Service squidex-all selects its pods",
    );
    assert_step_says(
        &p,
        CleanupStepName::DropSourceDatabases,
        &format!(
            "Service squidex-all selects Deployment squidex, whose environment names database {}",
            app.db
        ),
    );
    let shown = cutover::cli::render_status(&p);
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("DeleteBlue") && l.contains("Refused")),
        "cutover status lists the refused step:\n{shown}"
    );
    let blocked = condition(&p, "CleanupBlocked").expect("CleanupBlocked condition");
    assert_eq!(blocked.status, "True");
    let sources = env.mongo.list_database_names().await.unwrap();
    assert!(sources.contains(&app.db) && sources.contains(&app.content_db));
    assert!(env.deployment(&app.ns, "squidex").await.is_some());
    assert!(
        env.has_event(&app.ns, "CleanupRefused", "Warning").await,
        "a CleanupRefused Warning event"
    );
    // The scale-down ran: it has no guard beyond its time.
    assert_eq!(
        cleanup_step(&p, CleanupStepName::ScaleDownBlue).map(|s| s.state),
        Some(CleanupState::Done)
    );

    // Obsolete collections: a dry run first, nothing dropped.
    let p = tidy_step(
        &env,
        &op,
        &app.ns,
        CleanupStepName::DropObsoleteCollections,
        CleanupState::AwaitingApproval,
    )
    .await;
    let listed: Vec<String> = p
        .status
        .as_ref()
        .unwrap()
        .cleanup
        .as_ref()
        .unwrap()
        .obsolete_collections
        .iter()
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(
        listed,
        vec![
            format!("{clone_content}.Legacy_Assets"),
            format!("{clone_content}.Legacy_Logs"),
            format!("{clone_content}.States_Contents_All1"),
        ],
        "States_Contents_All2, which the new version reads, is not listed"
    );
    assert!(
        collections(&env, &clone_content)
            .await
            .contains(&"States_Contents_All1".to_string())
    );

    // Something still reads one of them after the listing: it is kept on approval.
    env.mongo
        .database(&clone_content)
        .collection::<Document>("Legacy_Assets")
        .find_one(doc! {})
        .await
        .unwrap();
    env.patch_plan(
        &app.ns,
        "tidy",
        json!({"spec": {"cleanup": {"obsoleteCollections": {"approved": true}}}}),
    )
    .await;
    let p = tidy_step(
        &env,
        &op,
        &app.ns,
        CleanupStepName::DropObsoleteCollections,
        CleanupState::Refused,
    )
    .await;
    assert_step_says(
        &p,
        CleanupStepName::DropObsoleteCollections,
        "Legacy_Assets (read 1 time(s) since it was listed)",
    );
    let left = collections(&env, &clone_content).await;
    assert!(left.contains(&"Legacy_Assets".to_string()), "{left:?}");
    assert!(
        left.contains(&"States_Contents_All2".to_string()),
        "{left:?}"
    );
    assert!(
        !left.contains(&"States_Contents_All1".to_string()),
        "{left:?}"
    );
    assert!(!left.contains(&"Legacy_Logs".to_string()), "{left:?}");

    // Backup retention kept this plan's backup, deleted the older one, left the incomplete one.
    let p = tidy_step(
        &env,
        &op,
        &app.ns,
        CleanupStepName::PruneBackups,
        CleanupState::Done,
    )
    .await;
    assert_step_says(
        &p,
        CleanupStepName::PruneBackups,
        r#""kept":["tidy"],"deleted":["older"],"incomplete":["broken"]"#,
    );
    if let Some(v) = &volume {
        let app_dir = v.join("squidex");
        assert!(app_dir.join("tidy/SHA256SUMS").exists());
        assert!(!app_dir.join("older").exists());
        assert!(app_dir.join("broken").exists());
    }

    // Point the extra Service away: the old version is deleted, then the sources dropped.
    Api::<Service>::namespaced(env.client.clone(), &app.ns)
        .delete("squidex-all", &DeleteParams::default())
        .await
        .unwrap();
    tidy_step(
        &env,
        &op,
        &app.ns,
        CleanupStepName::DeleteBlue,
        CleanupState::Done,
    )
    .await;
    assert!(env.deployment(&app.ns, "squidex").await.is_none());
    let p = tidy_step(
        &env,
        &op,
        &app.ns,
        CleanupStepName::DropSourceDatabases,
        CleanupState::Done,
    )
    .await;
    let dbs = env.mongo.list_database_names().await.unwrap();
    assert!(
        !dbs.contains(&app.db) && !dbs.contains(&app.content_db),
        "sources still there: {dbs:?}"
    );
    assert!(
        dbs.contains(&clone_content),
        "the clones (the live data) stay"
    );
    assert_eq!(condition(&p, "CleanupBlocked").unwrap().status, "True");
    let history: Vec<String> = p
        .status
        .as_ref()
        .unwrap()
        .phases
        .iter()
        .filter(|r| r.name == Phase::CleaningUp)
        .map(|r| r.detail.clone())
        .collect();
    for step in [
        "ScaleDownBlue",
        "PruneBackups",
        "DeleteBlue",
        "DropSourceDatabases",
    ] {
        assert!(
            history.iter().any(|d| d.starts_with(step)),
            "{step} is in the phase history: {history:?}"
        );
    }

    // With the old version and its data gone, a rollback is refused before any side effect.
    env.patch_plan(
        &app.ns,
        "tidy",
        json!({"spec": {"traffic": "blue", "rollback": {"acceptDataLoss": true}}}),
    )
    .await;
    let p = env
        .wait_condition(
            &op,
            &app.ns,
            "tidy",
            "RollbackBlocked",
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(status(&p).phase, Phase::Succeeded);
    assert_eq!(
        env.track(&app.ns, "squidex").await.as_deref(),
        Some("squidex-tidy")
    );

    env.finish(&op, &app.ns, &all_dbs(&app, &["tidy"])).await;
}
