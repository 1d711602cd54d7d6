//! `backup.cloneMethod: online` on the real control plane and MongoDB-wire server: the clones
//! are copied and follow the sources while the app takes writes (`Syncing`), the app is
//! read-only only for the drain, the comparison and the new version; every write the app
//! acknowledged is in what the new version serves. A collection created and one dropped in a
//! source during the sync are followed. An operator killed during `Syncing` resumes from
//! `status.sync` and the plan still ends with nothing lost.

mod common;

use std::time::{Duration, Instant};

use common::*;
use cutover::crd::{Phase, UpgradePlan};
use cutover::mongo::user_collections;
use cutover_devtools::load::check;
use cutover_devtools::load::log::read;
use mongodb::bson::{Document, doc};
use serde_json::json;

const PLAN_TIMEOUT: Duration = Duration::from_secs(240);
/// Enough documents that the bulk copy is still running when the test suspends the plan.
const DOCUMENTS: u64 = 20_000;

/// The first test's documents: `DOCUMENTS`, or `CUTOVER_ONLINE_DOCUMENTS` to measure the window
/// at another size.
fn documents() -> u64 {
    std::env::var("CUTOVER_ONLINE_DOCUMENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DOCUMENTS)
}

fn online_plan(name: &str, app: &App) -> serde_json::Value {
    let mut plan = squidex_plan(name, app, 2);
    plan["spec"]["backup"]["cloneMethod"] = json!("online");
    plan
}

/// Applies the plan and holds it in `Syncing` (`spec.suspend`: the sync keeps running, the
/// plan does not leave the phase).
async fn hold_in_syncing(env: &Env, op: &Operator, app: &App, plan: serde_json::Value) {
    let name = plan["metadata"]["name"].as_str().unwrap().to_string();
    env.apply(&app.ns, plan).await;
    env.wait_phase(op, &app.ns, &name, Phase::Syncing, PLAN_TIMEOUT)
        .await;
    env.patch_plan(&app.ns, &name, json!({"spec": {"suspend": true}}))
        .await;
    let held = env
        .wait_plan(
            op,
            &app.ns,
            &name,
            "suspended in Syncing",
            PLAN_TIMEOUT,
            |p| {
                let st = p.status.as_ref().unwrap();
                st.phase != Phase::Syncing || st.message.starts_with("Suspended")
            },
        )
        .await;
    assert_eq!(
        held.status.as_ref().unwrap().phase,
        Phase::Syncing,
        "the plan left Syncing before it could be held there"
    );
    assert!(
        held.status.as_ref().unwrap().read_only_since.is_none(),
        "the app is not read-only while syncing"
    );
}

async fn release(env: &Env, op: &Operator, app: &App, name: &str) -> UpgradePlan {
    env.patch_plan(&app.ns, name, json!({"spec": {"suspend": false}}))
        .await;
    env.wait_phase(op, &app.ns, name, Phase::Succeeded, PLAN_TIMEOUT)
        .await
}

async fn wait_sync_recorded(env: &Env, op: &Operator, app: &App, name: &str, events: i64) {
    env.wait_plan(
        op,
        &app.ns,
        name,
        "status.sync streaming with events applied",
        PLAN_TIMEOUT,
        |p| {
            p.status
                .as_ref()
                .and_then(|s| s.sync.as_ref())
                .is_some_and(|s| {
                    s.events_applied >= events && s.sources.iter().all(|r| r.bulk_finished)
                })
        },
    )
    .await;
}

/// Stops the load and checks every acknowledged write through the new version.
async fn assert_nothing_lost(env: &Env, app: &App, load: cutover_devtools::load::Load) {
    let later = load.summary().acked;
    wait_acked(&load, later, 20).await;
    let log = load.log.clone();
    let summary = load.stop().await;
    eprintln!("load: {summary}");
    let records = read(&log).expect("read the write log");
    assert_eq!(summary.unexpected, 0, "{summary}");
    let report = check::check_http(&env.client, &env.load_target(app), &records)
        .await
        .expect("check through the app");
    eprintln!("through the app: {report}");
    assert_eq!(report.acked, summary.acked);
    assert!(report.lost.is_empty(), "{report}");
    assert!(
        report.to_string().contains("acknowledged writes lost: 0"),
        "{report}"
    );
    let _ = std::fs::remove_file(&log);
}

fn window_seconds(done: &UpgradePlan) -> f64 {
    let (since, end) = read_only_window(done);
    (end - since) as f64 / 1000.0
}

#[tokio::test]
async fn an_online_upgrade_under_write_load_loses_nothing_and_follows_collection_changes() {
    let Some(env) = env().await else { return };
    let app = env
        .blue_app(
            "online",
            AppOptions {
                replicas: 2,
                documents: documents(),
                ..Default::default()
            },
        )
        .await;
    let content = env.mongo.database(&app.content_db);
    let docs: Vec<Document> = (0..50).map(|i| doc! {"_id": i, "k": "drop"}).collect();
    content
        .collection::<Document>("Extra_Dropped")
        .insert_many(docs)
        .await
        .unwrap();
    let op = Operator::start(&app.ns);
    let load = env.start_load(&app, 50.0).await;
    wait_acked(&load, 0, 50).await;

    hold_in_syncing(&env, &op, &app, online_plan("on", &app)).await;
    // While the app still writes: a collection created, one dropped, in a source.
    content
        .collection::<Document>("Extra_Dropped")
        .drop()
        .await
        .unwrap();
    let docs: Vec<Document> = (0..40).map(|i| doc! {"_id": i, "k": "new"}).collect();
    content
        .collection::<Document>("Extra_Created")
        .insert_many(docs)
        .await
        .unwrap();
    let before = load.summary().acked;
    wait_acked(&load, before, 50).await;
    wait_sync_recorded(&env, &op, &app, "on", 1).await;
    let held = env.plans(&app.ns).get("on").await.unwrap();
    let progress = held.status.as_ref().unwrap().progress.clone().unwrap();
    assert!(
        progress.summary.contains("colls copied"),
        "{}",
        progress.summary
    );

    let done = release(&env, &op, &app, "on").await;
    let st = done.status.as_ref().unwrap();
    let phases: Vec<Phase> = st.phases.iter().map(|p| p.name).collect();
    assert_eq!(
        &phases[..5],
        &[
            Phase::Pending,
            Phase::Syncing,
            Phase::EnteringReadOnly,
            Phase::Cloning,
            Phase::DeployingGreen
        ]
    );
    assert!(
        !phases.contains(&Phase::BackingUp),
        "no backup before the switch"
    );
    assert!(st.clone.as_ref().unwrap().verified);
    // The backup is taken after the switch and verified by restoring it
    // (tests/backup_after_switch.rs).
    let bv = st
        .conditions
        .iter()
        .find(|c| c.type_ == "BackupVerified")
        .unwrap();
    assert_eq!(
        (bv.status.as_str(), bv.reason.as_str()),
        ("True", "RestoredAndCompared")
    );
    let took = |p: Phase| {
        st.phases
            .iter()
            .find(|r| r.name == p)
            .and_then(|r| r.finished_at.map(|f| f.since(r.started_at).as_secs_f64()))
            .unwrap_or(f64::NAN)
    };
    eprintln!(
        "online ({} documents): read-only window {:.1} s (readOnlySince to the lift); Cloning (drain + compare) {:.1} s, EnteringReadOnly {:.1} s",
        documents(),
        window_seconds(&done),
        took(Phase::Cloning),
        took(Phase::EnteringReadOnly),
    );

    let clone = env.mongo.database(&app.clone_of(&app.content_db, "on"));
    let names = user_collections(&clone).await.unwrap();
    assert!(names.contains(&"Extra_Created".to_string()), "{names:?}");
    assert!(!names.contains(&"Extra_Dropped".to_string()), "{names:?}");
    assert_eq!(
        clone
            .collection::<Document>("Extra_Created")
            .count_documents(doc! {})
            .await
            .unwrap(),
        40
    );
    assert_nothing_lost(&env, &app, load).await;
    env.cleanup(&app.ns, &all_dbs(&app, &["on"])).await;
}

#[tokio::test]
async fn an_operator_killed_during_syncing_resumes_from_status_and_loses_nothing() {
    let Some(env) = env().await else { return };
    let app = env
        .blue_app(
            "onkill",
            AppOptions {
                replicas: 2,
                documents: DOCUMENTS,
                ..Default::default()
            },
        )
        .await;
    let mut op = Operator::start(&app.ns);
    let load = env.start_load(&app, 50.0).await;
    wait_acked(&load, 0, 50).await;

    hold_in_syncing(&env, &op, &app, online_plan("ok", &app)).await;
    wait_sync_recorded(&env, &op, &app, "ok", 20).await;
    op.kill_hard().await;
    let recorded = env.plans(&app.ns).get("ok").await.unwrap();
    let sync = recorded.status.as_ref().unwrap().sync.clone().unwrap();
    // The load writes into the content database: its stream has applied events.
    assert!(sync.sources.iter().any(|r| r.token.is_some()), "{sync:?}");
    // Writes go on while no operator runs; the resumed streams must apply them.
    let before = load.summary().acked;
    wait_acked(&load, before, 50).await;

    let op = Operator::start(&app.ns);
    let start = Instant::now();
    let resumed = env
        .wait_plan(
            &op,
            &app.ns,
            "ok",
            "the sync resumed past what was recorded",
            PLAN_TIMEOUT,
            |p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.sync.as_ref())
                    .is_some_and(|s| s.updated_at != sync.updated_at)
            },
        )
        .await;
    eprintln!("resumed after {:?}", start.elapsed());
    let after = resumed.status.as_ref().unwrap().sync.clone().unwrap();
    for (a, b) in sync.sources.iter().zip(&after.sources) {
        assert_eq!(a.start_at, b.start_at, "resumed, not started again");
        assert!(b.bulk_finished, "no bulk copy again: {b:?}");
    }
    assert!(
        op.log().contains("start_sync"),
        "the new operator started the sync from status"
    );

    let done = release(&env, &op, &app, "ok").await;
    assert!(
        done.status
            .as_ref()
            .unwrap()
            .clone
            .as_ref()
            .unwrap()
            .verified
    );
    assert_nothing_lost(&env, &app, load).await;
    env.cleanup(&app.ns, &all_dbs(&app, &["ok"])).await;
}

#[tokio::test]
async fn an_oplog_too_small_for_the_sync_fails_before_read_only_with_sync_history_lost() {
    let Some(base) = env().await else { return };
    // The app, the plan and the sync all use a server whose oplog holds 200 entries: the bulk
    // copy alone writes one per document, so the start point is pruned during it.
    let tiny = TinyOplogServer::start(200).await;
    let env = Env {
        client: base.client.clone(),
        mongo_uri: tiny.uri.clone(),
        mongo: mongodb::Client::with_uri_str(&tiny.uri).await.unwrap(),
    };
    let app = env
        .blue_app(
            "onlost",
            AppOptions {
                documents: 3_000,
                ..Default::default()
            },
        )
        .await;
    let op = Operator::start(&app.ns);
    let plan = online_plan("ol", &app);
    env.apply(&app.ns, plan).await;
    let failed = env
        .wait_plan(&op, &app.ns, "ol", "Failed", PLAN_TIMEOUT, |p| {
            p.status.as_ref().is_some_and(|s| s.phase == Phase::Failed)
        })
        .await;
    let st = failed.status.as_ref().unwrap();
    let f = st.failure.as_ref().unwrap();
    assert_eq!(
        (f.reason.as_str(), f.phase),
        ("SyncHistoryLost", Phase::Syncing),
        "{}",
        f.message
    );
    assert!(
        f.message.contains("the oplog must hold at least"),
        "{}",
        f.message
    );
    // The app was never read-only, and serves read-write with the Service unchanged.
    assert!(st.read_only_since.is_none());
    let d = env.deployment(&app.ns, "squidex").await.unwrap();
    assert_eq!(container_env(&d, "MODE__ISREADONLY"), None);
    assert!(
        !st.phases.iter().any(|p| p.name == Phase::EnteringReadOnly),
        "{:?}",
        st.phases
    );
    assert!(env.has_event(&app.ns, "SyncHistoryLost", "Warning").await);
    drop(op);
    env.cleanup(&app.ns, &all_dbs(&app, &["ol"])).await;
    tiny.stop().await;
}
