//! After read-only was lifted on the new version, writes exist only in its clones: deleting
//! the plan keeps the new version (read-write, handed over) instead of rolling back, and a new
//! version that does not finish rolling out read-write is reported `Degraded` with
//! instructions, never rolled back on its own.
//!
//! A new version that is slow to roll out is made by hand: `minReadySeconds` on its
//! Deployment (set while the plan awaits promotion) keeps the old read-only pod next to the
//! new read-write one, so the plan stays in `LiftingReadOnly` after the lift.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cutover::crd::{Phase, UpgradePlan};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::common::*;
use crate::support::*;

/// Holds the new version's read-write rollout for `secs`: its new pod is ready (and takes
/// writes) at once, but the Deployment keeps the old pod until the new one was ready that long.
async fn hold_rollout(env: &Env, ns: &str, green: &str, secs: i32) {
    Api::<Deployment>::namespaced(env.client.clone(), ns)
        .patch(
            green,
            &PatchParams::default(),
            // The progress deadline must exceed minReadySeconds.
            &Patch::Merge(
                json!({"spec": {"minReadySeconds": secs, "progressDeadlineSeconds": secs + 600}}),
            ),
        )
        .await
        .unwrap();
}

/// A manual-promotion plan held at AwaitingPromotion, its new version's rollout held for
/// `hold` seconds, then approved; returns once read-only was lifted.
async fn lift_with_a_held_rollout(
    env: &Env,
    op: &Operator,
    app: &App,
    mut plan: serde_json::Value,
    hold: i32,
) -> UpgradePlan {
    let name = plan["metadata"]["name"].as_str().unwrap().to_string();
    plan["spec"]["promotion"] = json!({"mode": "manual"});
    env.apply_until(op, &app.ns, plan, Phase::AwaitingPromotion, PLAN_TIMEOUT)
        .await;
    hold_rollout(env, &app.ns, &format!("squidex-{name}"), hold).await;
    env.patch_plan(
        &app.ns,
        &name,
        json!({"spec": {"promotion": {"approved": true}}}),
    )
    .await;
    env.wait_plan(op, &app.ns, &name, "read-only lifted", PLAN_TIMEOUT, |p| {
        p.status
            .as_ref()
            .is_some_and(|s| s.read_only_lifted_at.is_some())
    })
    .await
}

/// Writes `n` documents tagged `tag` through the app's HTTP API on a pod of `deployment` that
/// accepts writes (after the lift, the new read-write pod; the old read-only one refuses).
async fn write_through_read_write_pod(env: &Env, ns: &str, deployment: &str, tag: &str, n: usize) {
    let start = Instant::now();
    loop {
        for (_, ip) in env.ready_pods(ns, &format!("{TRACK}={deployment}")).await {
            let addr = SocketAddr::new(ip, 8080);
            let probe = json!({"title": format!("{tag}-0"), "tag": tag}).to_string();
            if cutover::probe::request(addr, "POST", "/api/contents", Some(&probe))
                .await
                .is_ok_and(|c| c == 201)
            {
                for i in 1..n {
                    let body = json!({"title": format!("{tag}-{i}"), "tag": tag}).to_string();
                    let code = cutover::probe::request(addr, "POST", "/api/contents", Some(&body))
                        .await
                        .unwrap();
                    assert_eq!(code, 201, "write {i} through {addr}");
                }
                return;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no pod of {deployment} accepts writes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_gone(env: &Env, op: &Operator, ns: &str, name: &str, within: Duration) {
    let start = Instant::now();
    while env.plans(ns).get_opt(name).await.unwrap().is_some() {
        assert!(
            start.elapsed() < within,
            "the finalizer never let go:\n{}",
            op.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Deleting a plan after the lift keeps the new version serving read-write with every write
/// made on it since the lift, releases it from the plan (no garbage collection), runs no
/// cleanup step, and the plan object goes away.
#[tokio::test]
async fn deleting_a_plan_after_the_lift_keeps_the_new_version_and_its_writes() {
    let Some(env) = env().await else { return };
    let (app, before) = app_with_writes(&env, "rel-del-lifted").await;
    let op = Operator::start(&app.ns);
    let green = "squidex-kept";
    let clone_content = app.clone_of(&app.content_db, "kept");

    let plan = squidex_plan("kept", &app, 2);
    let lifted = lift_with_a_held_rollout(&env, &op, &app, plan, 90).await;
    write_through_read_write_pod(&env, &app.ns, green, "after-lift", 4).await;
    assert_eq!(env.tagged(&clone_content, "after-lift").await, 4);
    let now = env.plans(&app.ns).get("kept").await.unwrap();
    assert_eq!(
        status(&now).phase,
        Phase::LiftingReadOnly,
        "the plan is still lifting read-only (lifted at {:?})",
        status(&lifted).read_only_lifted_at
    );

    env.plans(&app.ns)
        .delete("kept", &Default::default())
        .await
        .unwrap();
    wait_gone(&env, &op, &app.ns, "kept", Duration::from_secs(60)).await;

    // Traffic stays on the new version, which is read-write and no longer the plan's.
    assert_eq!(env.track(&app.ns, BLUE).await.as_deref(), Some(green));
    let g = env
        .deployment(&app.ns, green)
        .await
        .expect("the new version is kept");
    assert_eq!(container_env(&g, RO), None, "the new version is read-write");
    assert!(
        g.metadata.owner_references.unwrap_or_default().is_empty(),
        "the new version is handed over, not garbage-collected with the plan"
    );
    // Every write made since the lift is where the app reads it, and the app takes more.
    assert_eq!(env.tagged(&clone_content, "after-lift").await, 4);
    write_through_read_write_pod(&env, &app.ns, green, "after-delete", 2).await;
    assert_eq!(env.tagged(&clone_content, "after-delete").await, 2);
    // No rollback, no cleanup step: the old version is left read-only without traffic, the
    // sources as they were frozen.
    let b = env.deployment(&app.ns, BLUE).await.unwrap();
    assert_eq!(container_env(&b, RO).as_deref(), Some("true"));
    assert_eq!(b.spec.as_ref().unwrap().replicas, Some(1));
    assert_eq!(source_counts(&env, &app).await, before);
    assert!(
        env.has_event(&app.ns, "NewVersionKept", "Normal").await,
        "a NewVersionKept event says the new version was kept"
    );
    assert!(
        !env.has_event(&app.ns, "PlanDeleted", "Warning").await,
        "no rollback for the deletion"
    );

    env.finish(&op, &app.ns, &all_dbs(&app, &["kept"])).await;
}

/// A new version that does not roll out read-write after the lift: `Degraded` (`RolloutSlow`)
/// past `timeouts.rollout`, with what is stuck, what to check and how to steer, a Warning
/// event, and no rollback (traffic and writes stay on the new version).
#[tokio::test]
async fn a_new_version_stuck_after_the_lift_is_degraded_not_rolled_back() {
    let Some(env) = env().await else { return };
    let (app, before) = app_with_writes(&env, "rel-stuck-lift").await;
    let op = Operator::start(&app.ns);
    let green = "squidex-stuck";

    let mut plan = squidex_plan("stuck", &app, 2);
    plan["spec"]["timeouts"]["rollout"] = json!("20s");
    lift_with_a_held_rollout(&env, &op, &app, plan, 3600).await;
    let degraded = env
        .wait_condition(&op, &app.ns, "stuck", "Degraded", Duration::from_secs(90))
        .await;
    let c = condition(&degraded, "Degraded").unwrap();
    assert_eq!(c.reason, "RolloutSlow");
    for fragment in [
        "Deployment squidex-stuck (the new version) has not rolled out read-write within 20s",
        "does not roll back on its own",
        "kubectl describe pods -l cutover.dev/track=squidex-stuck",
        "spec.rollback.acceptDataLoss: true",
    ] {
        assert!(c.message.contains(fragment), "{fragment}: {}", c.message);
    }
    assert!(
        env.has_event(&app.ns, "RolloutSlow", "Warning").await,
        "a RolloutSlow Warning event"
    );

    // Held, not rolled back: the plan keeps waiting with traffic on the new version.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let held = env.plans(&app.ns).get("stuck").await.unwrap();
    let st = status(&held);
    assert_eq!(st.phase, Phase::LiftingReadOnly);
    assert!(st.failure.is_none(), "{:?}", st.failure);
    assert!(!phase_names(&held).contains(&Phase::RollingBack));
    assert_eq!(env.track(&app.ns, BLUE).await.as_deref(), Some(green));
    let g = env.deployment(&app.ns, green).await.unwrap();
    assert_eq!(container_env(&g, RO), None);
    write_through_read_write_pod(&env, &app.ns, green, "while-degraded", 2).await;
    assert_eq!(source_counts(&env, &app).await, before);

    env.finish(&op, &app.ns, &all_dbs(&app, &["stuck"])).await;
}
