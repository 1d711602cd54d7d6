//! `backup.cloneMethod: online` takes its backup after the switch, off the read-only window,
//! on the real control plane and MongoDB-wire server: `VerifyingBackup` dumps the frozen
//! sources, restores the dump into scratch databases, compares every collection's count and
//! content hash, drops the scratch databases; `BackupVerified` is True only then. A document
//! written into a source after the dump is found (`BackupDiffers`; the plan still succeeds and
//! the source drop is refused). A rollback after the lift keeps the old version read-only until
//! the dump of the frozen sources is complete.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use cutover::crd::{CleanupState, CleanupStepName, Phase, UpgradePlan};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::{Patch, PatchParams};
use mongodb::bson::{Document, doc};
use serde_json::json;

const PLAN_TIMEOUT: Duration = Duration::from_secs(240);
const RO: &str = "MODE__ISREADONLY";

fn online_plan(name: &str, app: &App) -> serde_json::Value {
    let mut plan = squidex_plan(name, app, 2);
    plan["spec"]["backup"]["cloneMethod"] = json!("online");
    plan
}

/// The plan's backup directory as podsim maps the backup volume.
fn backup_dir(app: &App, plan: &str) -> PathBuf {
    let env_dir = std::env::var("CUTOVER_ENV_DIR").expect("CUTOVER_ENV_DIR from hack/dev-env env");
    PathBuf::from(env_dir).join(format!(
        "podsim/volumes/{}/pvc-backups/squidex/{plan}",
        app.ns
    ))
}

/// Collections and documents of the app's data in both sources (not the sync's markers).
async fn user_totals(env: &Env, app: &App) -> (usize, u64) {
    let (mut collections, mut documents) = (0, 0);
    for name in [&app.db, &app.content_db] {
        let db = env.mongo.database(name);
        for c in cutover::mongo::user_collections(&db).await.unwrap() {
            collections += 1;
            documents += db
                .collection::<Document>(&c)
                .count_documents(doc! {})
                .await
                .unwrap();
        }
    }
    (collections, documents)
}

/// The scratch databases the plan recorded when it started.
fn scratch_of(p: &UpgradePlan) -> Vec<String> {
    status(p)
        .targets
        .expect("targets recorded")
        .scratch
        .into_iter()
        .map(|d| d.clone)
        .collect()
}

#[tokio::test]
async fn an_online_upgrade_takes_its_backup_after_the_switch_and_verifies_it_by_restoring_it() {
    let Some(env) = env().await else { return };
    let app = env
        .blue_app(
            "bas-ok",
            AppOptions {
                documents: 2_000,
                ..Default::default()
            },
        )
        .await;
    let op = Operator::start(&app.ns);
    env.apply(&app.ns, online_plan("bas", &app)).await;
    let done = env
        .wait_phase(&op, &app.ns, "bas", Phase::Succeeded, PLAN_TIMEOUT)
        .await;
    let st = status(&done);
    let phases = phase_names(&done);
    let at = |p: Phase| phases.iter().position(|q| *q == p).expect("phase walked");
    assert!(at(Phase::LiftingReadOnly) < at(Phase::VerifyingBackup));
    assert!(at(Phase::VerifyingBackup) < at(Phase::CleaningUp));
    assert!(!phases.contains(&Phase::BackingUp), "{phases:?}");

    // The backup: taken after the lift, checksummed, its files on the volume.
    assert_backup_checksummed(&st);
    let backup = st.backup.clone().unwrap();
    assert!(backup.completed_at.unwrap() > st.read_only_lifted_at.unwrap());
    let dir = backup_dir(&app, "bas");
    for f in [
        format!("{}.archive.gz", app.db),
        format!("{}.archive.gz", app.content_db),
        "SHA256SUMS".to_string(),
    ] {
        assert!(dir.join(&f).is_file(), "{} missing", dir.join(f).display());
    }

    // Verified by restoring it: every collection, every document, one hash.
    let v = backup.verification.expect("verification recorded");
    assert!(v.verified, "{v:?}");
    let (collections, documents) = user_totals(&env, &app).await;
    assert_eq!(v.documents as u64, documents);
    assert_eq!(v.collections as usize, collections);
    let bv = condition(&done, "BackupVerified").unwrap();
    assert_eq!(
        (bv.status.as_str(), bv.reason.as_str()),
        ("True", "RestoredAndCompared")
    );
    assert!(
        bv.message.contains(&format!(
            "{} collections, {documents} documents, content hash {}",
            v.collections, v.hash
        )),
        "{}",
        bv.message
    );

    // The scratch databases were restored into and are gone.
    let scratch = scratch_of(&done);
    assert_eq!(scratch.len(), 2, "{scratch:?}");
    let names = database_names(&env).await;
    for s in &scratch {
        assert!(!names.contains(s), "scratch database {s} left behind");
    }
    let verify = Api::<Job>::namespaced(env.client.clone(), &app.ns)
        .get("bas-verify")
        .await
        .expect("the verify Job ran");
    assert_eq!(verify.status.unwrap().succeeded, Some(1));

    env.finish(&op, &app.ns, &[all_dbs(&app, &["bas"]), scratch].concat())
        .await;
}

#[tokio::test]
async fn a_document_written_into_a_source_after_the_dump_leaves_the_backup_unverified() {
    let Some(env) = env().await else { return };
    let app = env.blue_app("bas-differs", AppOptions::default()).await;
    let op = Operator::start(&app.ns);
    let mut plan = online_plan("bad", &app);
    plan["spec"]["cleanup"]["dropSourceDatabasesAfter"] = json!("0s");
    env.apply(&app.ns, plan).await;

    // Once the verify Job exists, the dump is complete: a write into a source now is one the
    // backup does not have (the old version is read-only; this test writes around it).
    let jobs = Api::<Job>::namespaced(env.client.clone(), &app.ns);
    let started = Instant::now();
    while jobs.get_opt("bad-verify").await.unwrap().is_none() {
        assert!(
            started.elapsed() < PLAN_TIMEOUT,
            "no verify Job; operator log:\n{}",
            op.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = source_counts(&env, &app).await;
    env.mongo
        .database(&app.content_db)
        .collection::<Document>("States_Contents_All")
        .insert_one(doc! {"_id": "written-after-the-dump", "k": 1})
        .await
        .unwrap();

    let done = env
        .wait_phase(&op, &app.ns, "bad", Phase::Succeeded, PLAN_TIMEOUT)
        .await;
    let bv = condition(&done, "BackupVerified").unwrap();
    assert_eq!(
        (bv.status.as_str(), bv.reason.as_str()),
        ("False", "BackupDiffers"),
        "{}",
        bv.message
    );
    assert!(
        bv.message
            .contains(&format!("{}.States_Contents_All", app.content_db)),
        "{}",
        bv.message
    );
    assert!(env.has_event(&app.ns, "BackupDiffers", "Warning").await);
    let v = status(&done).backup.unwrap().verification.unwrap();
    assert!(!v.verified);

    // The scratch databases are gone all the same; the sources are kept.
    let names = database_names(&env).await;
    for s in scratch_of(&done) {
        assert!(!names.contains(&s), "scratch database {s} left behind");
    }
    let refused = env
        .wait_plan(
            &op,
            &app.ns,
            "bad",
            "DropSourceDatabases refused",
            PLAN_TIMEOUT,
            |p| {
                cleanup_step(p, CleanupStepName::DropSourceDatabases)
                    .is_some_and(|s| s.state == CleanupState::Refused)
            },
        )
        .await;
    let step = cleanup_step(&refused, CleanupStepName::DropSourceDatabases).unwrap();
    assert!(
        step.message.contains("no verified backup"),
        "{}",
        step.message
    );
    let names = database_names(&env).await;
    assert!(names.contains(&app.db) && names.contains(&app.content_db));
    let (a, b) = source_counts(&env, &app).await;
    assert_eq!(a, before.0);
    assert_eq!(b.values().sum::<u64>(), before.1.values().sum::<u64>() + 1);

    env.finish(
        &op,
        &app.ns,
        &[all_dbs(&app, &["bad"]), scratch_of(&done)].concat(),
    )
    .await;
}

/// Holds the new version's read-write rollout (see tests/reliability/after_lift.rs): its new
/// pod serves at once, but the Deployment keeps the old pod until the new one was ready that
/// long, so the plan stays in `LiftingReadOnly` after the lift, before any backup.
async fn hold_rollout(env: &Env, ns: &str, green: &str, secs: i32) {
    Api::<Deployment>::namespaced(env.client.clone(), ns)
        .patch(
            green,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"minReadySeconds": secs, "progressDeadlineSeconds": secs + 600}}),
            ),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_rollback_after_the_lift_makes_the_old_version_writable_only_after_the_dump() {
    let Some(env) = env().await else { return };
    let app = env.blue_app("bas-rollback", AppOptions::default()).await;
    let before = source_counts(&env, &app).await;
    let op = Operator::start(&app.ns);
    let mut plan = online_plan("rb", &app);
    plan["spec"]["promotion"] = json!({"mode": "manual"});
    plan["spec"]["timeouts"]["rollout"] = json!("20s");
    env.apply_until(&op, &app.ns, plan, Phase::AwaitingPromotion, PLAN_TIMEOUT)
        .await;
    hold_rollout(&env, &app.ns, "squidex-rb", 3600).await;
    env.patch_plan(
        &app.ns,
        "rb",
        json!({"spec": {"promotion": {"approved": true}}}),
    )
    .await;
    let lifted = env
        .wait_plan(&op, &app.ns, "rb", "read-only lifted", PLAN_TIMEOUT, |p| {
            p.status
                .as_ref()
                .is_some_and(|s| s.read_only_lifted_at.is_some())
        })
        .await;
    let st = status(&lifted);
    assert_eq!(st.phase, Phase::LiftingReadOnly);
    assert!(
        st.backup.is_none(),
        "no backup before the switch: {:?}",
        st.backup
    );

    env.patch_plan(
        &app.ns,
        "rb",
        json!({"spec": {"traffic": "blue", "rollback": {"acceptDataLoss": true}}}),
    )
    .await;
    // While the rollback waits for the dump, the old version stays read-only.
    let saw_waiting = std::cell::Cell::new(false);
    let deployments = Api::<Deployment>::namespaced(env.client.clone(), &app.ns);
    let done = env
        .wait_plan(&op, &app.ns, "rb", "rolled back", PLAN_TIMEOUT, |p| {
            if condition(p, "RollbackBlocked")
                .is_some_and(|c| c.status == "True" && c.reason == "AwaitingBackup")
            {
                saw_waiting.set(true);
            }
            p.status
                .as_ref()
                .is_some_and(|s| s.phase == Phase::RolledBack)
        })
        .await;
    let st = status(&done);
    let backup = st.backup.clone().expect("the rollback took the backup");
    assert_backup_checksummed(&st);
    let completed = backup.completed_at.unwrap();
    assert!(completed > st.read_only_lifted_at.unwrap());
    assert!(backup_dir(&app, "rb").join("SHA256SUMS").is_file());
    assert!(
        env.has_event(&app.ns, "AwaitingBackup", "Warning").await,
        "the rollback said it waits for the dump"
    );
    let c = condition(&done, "RollbackBlocked").unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "BackupComplete")
    );
    eprintln!(
        "RollbackBlocked AwaitingBackup seen while polling: {}",
        saw_waiting.get()
    );
    // The dump is of the frozen sources: nothing was written to them before it completed.
    assert_eq!(
        backup.counts.as_ref().unwrap().documents as u64,
        before.0.values().chain(before.1.values()).sum::<u64>()
    );
    let b = deployments.get("squidex").await.unwrap();
    assert_eq!(
        container_env(&b, RO),
        None,
        "the old version is read-write again"
    );
    assert_eq!(
        env.track(&app.ns, "squidex").await.as_deref(),
        Some("squidex")
    );

    env.finish(
        &op,
        &app.ns,
        &[all_dbs(&app, &["rb"]), scratch_of(&done)].concat(),
    )
    .await;
}
