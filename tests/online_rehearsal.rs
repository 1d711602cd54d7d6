//! `backup.cloneMethod: auto` and online rehearsals on the real control plane and
//! MongoDB-wire server (a replica set: `hello` names its set, change streams open).
//! - A rehearsal with `auto` chooses `online` and says why (`status.clone`, an event), syncs
//!   and drains while the app keeps taking writes (never read-only: no write refused), runs
//!   the new version on the clones, tears down and predicts the window (drain + compare +
//!   deploy + migration); the real upgrade with `auto` syncs online too and loses no
//!   acknowledged write.
//! - An `auto` plan whose online sync loses its history (a tiny oplog) falls back to restore
//!   before read-only and succeeds; the restore replaces what the sync wrote into the clones.

mod common;

use std::time::Duration;

use common::*;
use cutover::crd::{CloneMethod, Phase, UpgradePlan};
use cutover_devtools::load::check;
use cutover_devtools::load::log::read;
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(240);

fn auto_plan(name: &str, app: &App) -> serde_json::Value {
    let mut plan = squidex_plan(name, app, 2);
    plan["spec"]["backup"]["cloneMethod"] = json!("auto");
    plan
}

fn method(p: &UpgradePlan) -> (Option<CloneMethod>, String) {
    let c = p.status.as_ref().unwrap().clone.as_ref().unwrap();
    (c.method, c.reason.clone().unwrap_or_default())
}

#[tokio::test]
async fn an_auto_rehearsal_syncs_online_without_read_only_and_predicts_the_window() {
    let Some(env) = env().await else { return };
    let app = env
        .blue_app(
            "onreh",
            AppOptions {
                replicas: 2,
                documents: 2_000,
                ..Default::default()
            },
        )
        .await;
    let op = Operator::start(&app.ns);
    let load = env.start_load(&app, 30.0).await;
    wait_acked(&load, 0, 30).await;

    let mut plan = auto_plan("try", &app);
    plan["spec"]["mode"] = json!("rehearsal");
    let done = env
        .apply_until(&op, &app.ns, plan, Phase::Rehearsed, TIMEOUT)
        .await;
    let st = status(&done);
    use Phase::*;
    assert_eq!(
        phase_names(&done),
        vec![
            Pending,
            Syncing,
            Cloning,
            DeployingGreen,
            Migrating,
            CleaningUp,
            Rehearsed
        ]
    );
    let (m, why) = method(&done);
    assert_eq!(m, Some(CloneMethod::Online), "{why}");
    assert!(
        why.starts_with("auto: the server streams changes (replica set "),
        "{why}"
    );
    assert!(env.has_event(&app.ns, "CloneMethodChosen", "Normal").await);
    assert!(
        st.read_only_since.is_none(),
        "a rehearsal is never read-only"
    );
    assert!(
        st.message
            .contains("(online sync drain + compare + deploy + migration)"),
        "{}",
        st.message
    );
    let prediction = st.prediction.clone().expect("the rehearsal's prediction");
    assert!(prediction.read_only_seconds > 0.0);
    assert_no_clones(&env, "try").await;
    // The app took writes all along: none was refused.
    let during = load.summary();
    assert_eq!(during.refused, 0, "{during}");
    let before = during.acked;
    wait_acked(&load, before, 20).await;

    // The real upgrade: auto chooses online again, shows the rehearsal's prediction.
    let real = env
        .apply_until(
            &op,
            &app.ns,
            auto_plan("real", &app),
            Phase::Succeeded,
            TIMEOUT,
        )
        .await;
    assert_eq!(
        &phase_names(&real)[..4],
        &[Pending, Syncing, EnteringReadOnly, Cloning]
    );
    assert_eq!(method(&real).0, Some(CloneMethod::Online));
    assert_eq!(status(&real).prediction, Some(prediction));
    let shown = cutover::cli::render_status(&real);
    assert!(shown.contains("Clone method: online (auto: "), "{shown}");
    eprintln!("{shown}");

    let later = load.summary().acked;
    wait_acked(&load, later, 20).await;
    let log = load.log.clone();
    let summary = load.stop().await;
    eprintln!("load: {summary}");
    assert_eq!(summary.unexpected, 0, "{summary}");
    let records = read(&log).expect("read the write log");
    let report = check::check_http(&env.client, &env.load_target(&app), &records)
        .await
        .expect("check through the app");
    eprintln!("through the app: {report}");
    assert!(report.lost.is_empty(), "{report}");
    let _ = std::fs::remove_file(&log);
    env.cleanup(&app.ns, &all_dbs(&app, &["real"])).await;
}

#[tokio::test]
async fn an_auto_plan_falls_back_to_restore_when_the_sync_loses_its_history() {
    let Some(base) = env().await else { return };
    // The bulk copy alone writes one oplog entry per document: 200 entries are pruned
    // during it, so the sync's start point is lost before read-only.
    let tiny = TinyOplogServer::start(200).await;
    let env = Env {
        client: base.client.clone(),
        mongo_uri: tiny.uri.clone(),
        mongo: mongodb::Client::with_uri_str(&tiny.uri).await.unwrap(),
    };
    let app = env
        .blue_app(
            "onfall",
            AppOptions {
                documents: 20_000,
                ..Default::default()
            },
        )
        .await;
    let sources_before = source_counts(&env, &app).await;
    let op = Operator::start(&app.ns);
    // Held in Syncing (`suspend`; the sync keeps running) until the history is lost: the
    // watcher sees it only after the server pruned (every ~5 s), and a sync that caught up
    // before would go read-only first and fail inside the window (SyncHistoryLost).
    env.apply(&app.ns, auto_plan("fb", &app)).await;
    env.wait_phase(&op, &app.ns, "fb", Phase::Syncing, TIMEOUT)
        .await;
    env.patch_plan(&app.ns, "fb", json!({"spec": {"suspend": true}}))
        .await;
    let fell_back = env
        .wait_plan(&op, &app.ns, "fb", "fallen back to restore", TIMEOUT, |p| {
            let st = p.status.as_ref().unwrap();
            st.phase != Phase::Syncing
                || st
                    .clone
                    .as_ref()
                    .is_some_and(|c| c.method == Some(CloneMethod::Restore))
        })
        .await;
    let held = status(&fell_back);
    assert_eq!(
        held.phase,
        Phase::Syncing,
        "left Syncing before it was held"
    );
    assert!(
        held.read_only_since.is_none(),
        "never read-only before the fallback"
    );
    env.patch_plan(&app.ns, "fb", json!({"spec": {"suspend": false}}))
        .await;
    let done = env
        .wait_phase(&op, &app.ns, "fb", Phase::Succeeded, TIMEOUT)
        .await;
    use Phase::*;
    assert_eq!(
        &phase_names(&done)[..5],
        &[Pending, Syncing, EnteringReadOnly, BackingUp, Cloning]
    );
    let st = status(&done);
    assert!(st.failure.is_none());
    let (m, why) = method(&done);
    assert_eq!(m, Some(CloneMethod::Restore), "{why}");
    assert!(why.contains("fell back to restore"), "{why}");
    assert!(why.contains("oplog"), "{why}");
    assert!(
        env.has_event(&app.ns, "CloneMethodFallback", "Warning")
            .await
    );
    // The sync had started before the history was lost; the restore replaced its writes:
    // the clones hold what the frozen sources held (verified by the plan too).
    assert!(st.clone.as_ref().unwrap().verified);
    let bv = st
        .conditions
        .iter()
        .find(|c| c.type_ == "BackupVerified")
        .unwrap();
    assert_eq!(
        (bv.status.as_str(), bv.reason.as_str()),
        ("True", "CountsMatch")
    );
    assert_eq!(source_counts(&env, &app).await, sources_before);
    drop(op);
    env.cleanup(&app.ns, &all_dbs(&app, &["fb"])).await;
    tiny.stop().await;
}
