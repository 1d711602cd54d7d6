//! Rollbacks a user asks for (`spec.traffic: blue`): lossless before read-only was lifted,
//! refused until data loss is accepted after.

use std::time::{Duration, Instant};

use cutover::crd::{Color, Outcome, Phase, UpgradePlan};
use kube::ResourceExt;
use serde_json::json;

use crate::common::*;
use crate::support::*;

/// A requested rollback before read-only was lifted: lossless.
async fn assert_rolled_back(
    env: &Env,
    app: &App,
    plan: &UpgradePlan,
    interrupted: Phase,
    before: &Counts,
) {
    let name = plan.name_any();
    let st = status(plan);
    assert_eq!(st.phase, Phase::RolledBack);
    assert!(st.failure.is_none(), "{:?}", st.failure);
    assert_eq!(st.active_color, Some(Color::Blue));
    assert!(st.read_only_lifted_at.is_none());
    assert_unwound(plan, interrupted, Outcome::Interrupted, Phase::RolledBack);
    assert_ne!(
        condition(plan, "DataDiverged").map(|c| c.status.as_str()),
        Some("True")
    );

    // The new version is scaled to 0 (kept, not deleted, on a requested rollback).
    let green = env
        .deployment(&app.ns, &st.green_deployment.clone().unwrap())
        .await
        .expect("the new version's Deployment is kept");
    assert_eq!(green.spec.as_ref().unwrap().replicas, Some(0));
    let dbs = database_names(env).await;
    assert!(dbs.contains(&app.clone_of(&app.db, &name)), "clones kept");
    assert!(dbs.contains(&app.clone_of(&app.content_db, &name)));

    // Nothing lost: every document written before the upgrade is in the sources.
    assert_eq!(&source_counts(env, app).await, before);
    assert_eq!(env.tagged(&app.content_db, "before-upgrade").await, 3);
    assert_blue_serves_read_write(env, app, 1).await;
}

/// Manual promotion holds the plan in AwaitingPromotion; `spec.traffic: blue` restores the
/// old version, read-write, without losing a document.
#[tokio::test]
async fn rollback_while_awaiting_promotion_is_lossless() {
    let Some(env) = env().await else { return };
    let (app, before) = app_with_writes(&env, "rel-rb-await").await;
    let op = Operator::start(&app.ns);

    let mut plan = squidex_plan("rb", &app, 2);
    plan["spec"]["promotion"] = json!({"mode": "manual"});
    env.apply_until(&op, &app.ns, plan, Phase::AwaitingPromotion, PLAN_TIMEOUT)
        .await;
    env.patch_plan(&app.ns, "rb", json!({"spec": {"traffic": "blue"}}))
        .await;
    let done = env
        .wait_phase(&op, &app.ns, "rb", Phase::RolledBack, PLAN_TIMEOUT)
        .await;
    assert_rolled_back(&env, &app, &done, Phase::AwaitingPromotion, &before).await;

    env.finish(&op, &app.ns, &all_dbs(&app, &["rb"])).await;
}

/// A slow migration (each step sleeps a minute): rolled back while the new version holds the
/// migration lock on its clone, with the operator SIGKILLed as the rollback starts. The lock is
/// released when the new version is scaled down.
#[tokio::test]
async fn rollback_during_a_slow_migration_is_lossless() {
    let Some(env) = env().await else { return };
    let (app, before) = app_with_writes(&env, "rel-rb-mig").await;
    let mut op = operator_in_pod(&app.ns);

    let mut plan = squidex_plan("slow", &app, 2);
    slow_migration(&mut plan, 60000);
    env.apply_until(&op, &app.ns, plan, Phase::Migrating, PLAN_TIMEOUT)
        .await;
    let clone_db = app.clone_of(&app.db, "slow");
    let start = Instant::now();
    while !env
        .migration_doc(&clone_db)
        .await
        .is_some_and(|d| d.get_bool("IsLocked").unwrap_or(false))
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the new version never took the migration lock"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mid = env.plans(&app.ns).get("slow").await.unwrap();
    assert_eq!(status(&mid).phase, Phase::Migrating, "still migrating");

    env.patch_plan(&app.ns, "slow", json!({"spec": {"traffic": "blue"}}))
        .await;
    // The unwinding survives a crash of the operator too.
    kill_in(&env, &mut op, &app.ns, "slow", Phase::RollingBack).await;
    let done = env
        .wait_phase(&op, &app.ns, "slow", Phase::RolledBack, PLAN_TIMEOUT)
        .await;
    assert_rolled_back(&env, &app, &done, Phase::Migrating, &before).await;

    // The new version was stopped gracefully: it released the lock on its clone.
    let start = Instant::now();
    loop {
        let d = env.migration_doc(&clone_db).await.unwrap();
        if !d.get_bool("IsLocked").unwrap() {
            assert_eq!(version_of(&d), 1, "the slow step never completed");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "lock left held: {d}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    env.finish(&op, &app.ns, &all_dbs(&app, &["slow"])).await;
}

// ---- 2. rollback after read-only was lifted ----------------------------------------------

/// Writes on the new version exist only in its clones: the rollback is refused with
/// DataDiverged (saying how many documents) until acceptDataLoss; then the new version is made
/// read-only before traffic moves back.
#[tokio::test]
async fn rollback_after_lift_is_refused_until_data_loss_is_accepted() {
    let Some(env) = env().await else { return };
    let (app, before) = app_with_writes(&env, "rel-rb-lifted").await;
    let op = Operator::start(&app.ns);

    let mut plan = squidex_plan("lifted", &app, 2);
    plan["spec"]["cleanup"] = json!({"scaleDownBlueAfter": "10m"});
    env.apply_until(&op, &app.ns, plan, Phase::Succeeded, PLAN_TIMEOUT)
        .await;
    let green = "squidex-lifted";
    let clone_content = app.clone_of(&app.content_db, "lifted");

    // Users write on the new version.
    let codes = env
        .post_contents(&app.ns, &format!("{TRACK}={green}"), "on-green", 4)
        .await;
    assert_eq!(codes, vec![201; 4]);
    assert_eq!(env.tagged(&clone_content, "on-green").await, 4);

    env.patch_plan(&app.ns, "lifted", json!({"spec": {"traffic": "blue"}}))
        .await;
    let refused = env
        .wait_condition(
            &op,
            &app.ns,
            "lifted",
            "DataDiverged",
            Duration::from_secs(30),
        )
        .await;
    let c = condition(&refused, "DataDiverged").unwrap();
    assert!(
        c.message
            .contains("(4 documents added since read-only was lifted)"),
        "the condition says how many documents would be lost: {}",
        c.message
    );
    assert!(c.message.contains("acceptDataLoss"), "{}", c.message);
    assert_eq!(status(&refused).phase, Phase::Succeeded);

    // Held: nothing is switched while the rollback is refused.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let held = env.plans(&app.ns).get("lifted").await.unwrap();
    assert_eq!(status(&held).phase, Phase::Succeeded);
    assert_eq!(env.track(&app.ns, BLUE).await.as_deref(), Some(green));
    let g = env.deployment(&app.ns, green).await.unwrap();
    assert_eq!(
        container_env(&g, RO),
        None,
        "the new version stays read-write"
    );
    let b = env.deployment(&app.ns, BLUE).await.unwrap();
    assert_eq!(container_env(&b, RO).as_deref(), Some("true"));
    assert_eq!(b.spec.as_ref().unwrap().replicas, Some(1));
    assert!(
        env.has_event(&app.ns, "DataDiverged", "Warning").await,
        "a DataDiverged Warning event"
    );

    // Accepted: green read-only first, then the Service back on blue.
    let history = env.history(&app.ns).await;
    env.patch_plan(
        &app.ns,
        "lifted",
        json!({"spec": {"rollback": {"acceptDataLoss": true}}}),
    )
    .await;
    let done = env
        .wait_phase(&op, &app.ns, "lifted", Phase::RolledBack, PLAN_TIMEOUT)
        .await;
    let green_ro = history
        .first_rv("Deployment", green, |d| {
            d["spec"]["template"]["spec"]["containers"][0]["env"]
                .as_array()
                .is_some_and(|e| e.iter().any(|v| v["name"] == RO && v["value"] == "true"))
        })
        .expect("the new version was made read-only");
    let switched = history
        .first_rv("Service", "squidex", |s| {
            s["spec"]["selector"][TRACK] == BLUE
        })
        .expect("the Service was switched back");
    assert!(
        green_ro < switched,
        "the new version was made read-only (rv {green_ro}) before traffic moved back (rv {switched})"
    );
    let st = status(&done);
    assert!(st.failure.is_none());
    let names = phase_names(&done);
    assert_eq!(
        names[names.len() - 3..],
        [Phase::Succeeded, Phase::RollingBack, Phase::RolledBack]
    );
    assert_eq!(
        condition(&done, "DataDiverged").unwrap().reason,
        "RollbackAccepted"
    );
    let g = env.deployment(&app.ns, green).await.unwrap();
    assert_eq!(g.spec.as_ref().unwrap().replicas, Some(0));
    assert_eq!(container_env(&g, RO).as_deref(), Some("true"));
    // The writes made on the new version are kept in its clone, the sources are as before.
    assert_eq!(env.tagged(&clone_content, "on-green").await, 4);
    assert_eq!(source_counts(&env, &app).await, before);
    assert_blue_serves_read_write(&env, &app, 1).await;

    env.finish(&op, &app.ns, &all_dbs(&app, &["lifted"])).await;
}
