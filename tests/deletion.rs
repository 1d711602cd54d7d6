//! Deleting a plan mid-way, before read-only was lifted, compensates like a failure before the
//! finalizer lets go, and lets go within its bound even when the rollback cannot finish
//! (deletion after the lift: `tests/reliability/after_lift.rs`; dropping the sources after a
//! successful switch: `tests/cleanup.rs`).

mod common;

use std::time::{Duration, Instant};

use common::*;
use cutover::crd::Phase;

#[tokio::test]
async fn deleting_a_plan_mid_way_restores_the_old_version_then_lets_go() {
    let Some(env) = env().await else { return };
    let (app, op) = env.app_with_operator("del-midway").await;
    let mut plan = squidex_plan("gone", &app, 3);
    // A slow migration keeps the plan in Migrating long enough to delete it there.
    slow_migration(&mut plan, 4000);
    let timeout = Duration::from_secs(120);
    env.apply_until(&op, &app.ns, plan, Phase::Migrating, timeout)
        .await;

    env.plans(&app.ns)
        .delete("gone", &Default::default())
        .await
        .unwrap();
    let start = Instant::now();
    while env.plans(&app.ns).get_opt("gone").await.unwrap().is_some() {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "the finalizer never let go:\n{}",
            op.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Blue serves read-write with traffic on it; green is gone; the clones are kept.
    let blue_env = env.app_env(&app.ns, "squidex").await;
    assert!(!blue_env.iter().any(|e| e.name == "MODE__ISREADONLY"));
    assert_eq!(
        env.track(&app.ns, "squidex").await.as_deref(),
        Some("squidex")
    );
    assert!(env.deployment(&app.ns, "squidex-gone").await.is_none());
    let dbs = env.mongo.list_database_names().await.unwrap();
    let clone = app.clone_of(&app.db, "gone");
    assert!(
        dbs.contains(&clone),
        "the clone is kept for inspection: {dbs:?}"
    );
    assert!(
        env.has_event(&app.ns, "PlanDeleted", "Warning").await,
        "no PlanDeleted warning event"
    );

    env.cleanup(&app.ns, &all_dbs(&app, &["gone"])).await;
}

/// Whatever runs after a deletion is bounded: here the old version's read-write rollout is
/// held (`minReadySeconds`), so the rollback cannot finish. The plan reports `Degraded`
/// (`RollbackStuck`) past `timeouts.rollout`, and lets go 3 × `timeouts.rollout` after the
/// deletion with a `DeletionTimedOut` Warning event saying where things stand.
#[tokio::test]
async fn a_deleted_plan_whose_rollback_cannot_finish_still_lets_go() {
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::Api;
    use kube::api::{Patch, PatchParams};
    use serde_json::json;

    let Some(env) = env().await else { return };
    let (app, op) = env.app_with_operator("del-bound").await;
    let mut plan = squidex_plan("bounded", &app, 2);
    plan["spec"]["promotion"] = json!({"mode": "manual"});
    plan["spec"]["timeouts"]["rollout"] = json!("20s");
    env.apply_until(
        &op,
        &app.ns,
        plan,
        Phase::AwaitingPromotion,
        Duration::from_secs(120),
    )
    .await;
    // The old version's next rollout (read-write again) never completes.
    Api::<Deployment>::namespaced(env.client.clone(), &app.ns)
        .patch(
            "squidex",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"minReadySeconds": 3600, "progressDeadlineSeconds": 4200}}),
            ),
        )
        .await
        .unwrap();

    env.plans(&app.ns)
        .delete("bounded", &Default::default())
        .await
        .unwrap();
    let start = Instant::now();
    let mut stuck_seen = false;
    while let Some(p) = env.plans(&app.ns).get_opt("bounded").await.unwrap() {
        stuck_seen |= condition(&p, "Degraded")
            .is_some_and(|c| c.status == "True" && c.reason == "RollbackStuck");
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the finalizer never let go: {}\n{}",
            serde_json::to_string_pretty(&p.status).unwrap(),
            op.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        start.elapsed() >= Duration::from_secs(50),
        "let go after {:?}, before its bound (3 × 20s)",
        start.elapsed()
    );
    assert!(stuck_seen, "Degraded=True (RollbackStuck) while it waited");
    assert!(env.has_event(&app.ns, "RollbackStuck", "Warning").await);
    let events = env.events(&app.ns).await;
    let let_go = events
        .iter()
        .find(|e| e.reason.as_deref() == Some("DeletionTimedOut"))
        .expect("a DeletionTimedOut event");
    assert_eq!(let_go.type_.as_deref(), Some("Warning"));
    let note = let_go.note.clone().unwrap_or_default();
    for fragment in [
        "did not finish within 1m (3 × spec.timeouts.rollout)",
        "Service squidex selects squidex;",
        "the old version squidex has 1 replicas",
    ] {
        assert!(note.contains(fragment), "{fragment}: {note}");
    }
    // The rollback got as far as it could: traffic and read-write on the old version.
    assert_eq!(
        env.track(&app.ns, "squidex").await.as_deref(),
        Some("squidex")
    );
    let blue_env = env.app_env(&app.ns, "squidex").await;
    assert!(!blue_env.iter().any(|e| e.name == "MODE__ISREADONLY"));

    env.cleanup(&app.ns, &all_dbs(&app, &["bounded"])).await;
}
