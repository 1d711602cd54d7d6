//! The unhappy paths of an upgrade (issue 5, DESIGN.md §3–4), each a full plan on the real
//! environment: rollback before and after read-only was lifted, compensation of a failure in
//! every phase before the switch, a stale migration lock, the operator SIGKILLed in every
//! phase, one active plan per target, and a table of bad input. Every test ends by checking
//! that the app serves read-write and that no data written before the upgrade was lost.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::*;
use cutover::crd::{Color, Outcome, Phase, UpgradePlan};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams};
use kube::{Api, ResourceExt};
use mongodb::bson::{Document, doc};
use serde_json::{Value, json};

const PLAN_TIMEOUT: Duration = Duration::from_secs(120);
const BLUE: &str = "squidex";
const TRACK: &str = "cutover.dev/track";
const RO: &str = "MODE__ISREADONLY";

type Counts = (BTreeMap<String, u64>, BTreeMap<String, u64>);

async fn source_counts(env: &Env, app: &App) -> Counts {
    (env.counts(&app.db).await, env.counts(&app.content_db).await)
}

fn all_dbs(app: &App, plans: &[&str]) -> Vec<String> {
    let mut v = vec![app.db.clone(), app.content_db.clone()];
    for p in plans {
        v.push(app.clone_of(&app.db, p));
        v.push(app.clone_of(&app.content_db, p));
    }
    v
}

fn status(p: &UpgradePlan) -> cutover::crd::UpgradePlanStatus {
    p.status.clone().expect("status")
}

fn phase_names(p: &UpgradePlan) -> Vec<Phase> {
    status(p).phases.iter().map(|r| r.name).collect()
}

fn version_of(d: &Document) -> i64 {
    d.get_i32("Version")
        .map(i64::from)
        .or_else(|_| d.get_i64("Version"))
        .expect("Version")
}

/// Writes `n` documents through blue's HTTP API before any plan exists.
async fn write_before_upgrade(env: &Env, app: &App, n: usize) {
    let codes = env
        .post_contents(&app.ns, "app=squidex", "before-upgrade", n)
        .await;
    assert!(codes.iter().all(|c| *c == 201), "writes refused: {codes:?}");
    assert_eq!(
        env.tagged(&app.content_db, "before-upgrade").await,
        n as u64
    );
}

/// The old version is the app again: the Service selects it, its template has no read-only
/// variable, it runs its replicas, and every one of its pods accepts a write.
async fn assert_blue_serves_read_write(env: &Env, app: &App, replicas: i32) {
    let selector = env.service_selector(&app.ns, "squidex").await;
    assert_eq!(
        selector.get(TRACK).map(String::as_str),
        Some(BLUE),
        "the Service selects the old version: {selector:?}"
    );
    assert_eq!(selector.get("app").map(String::as_str), Some("squidex"));
    let blue = env.deployment(&app.ns, BLUE).await.unwrap();
    assert_eq!(
        container_env(&blue, RO),
        None,
        "read-only lifted on the old version"
    );
    assert_eq!(blue.spec.as_ref().unwrap().replicas, Some(replicas));
    env.wait_rollout(&app.ns, BLUE, Duration::from_secs(60))
        .await;
    let codes = env
        .post_contents(&app.ns, &format!("{TRACK}={BLUE}"), "after-rollback", 1)
        .await;
    assert_eq!(codes, vec![201], "the old version accepts writes again");
}

async fn database_names(env: &Env) -> BTreeSet<String> {
    env.mongo
        .list_database_names()
        .await
        .unwrap()
        .into_iter()
        .collect()
}

/// The databases of one test (their names carry the test's id): the server is shared.
async fn databases_of(env: &Env, app: &App) -> BTreeSet<String> {
    database_names(env)
        .await
        .into_iter()
        .filter(|n| n.contains(&app.id))
        .collect()
}

/// A plan that failed in `phase` for `reason` and restored the old version: Failed with the
/// reason in status, conditions and message; the new Deployment gone; the clones kept (when
/// they had been made); the sources exactly as before; the app read-write.
#[allow(clippy::too_many_arguments)]
async fn assert_failed_and_restored(
    env: &Env,
    app: &App,
    plan: &UpgradePlan,
    reason: &str,
    phase: Phase,
    message_parts: &[&str],
    clones_made: bool,
    before: &Counts,
) {
    let name = plan.name_any();
    let st = status(plan);
    assert_eq!(st.phase, Phase::Failed);
    let f = st.failure.clone().expect("failure recorded");
    assert_eq!((f.reason.as_str(), f.phase), (reason, phase), "{f:?}");
    for part in message_parts {
        assert!(
            f.message.contains(part),
            "failure message lacks {part:?}: {}",
            f.message
        );
    }
    assert!(
        st.message.contains("The old version serves read-write"),
        "{}",
        st.message
    );
    let ready = condition(plan, "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", reason)
    );
    assert_eq!(condition(plan, "Degraded").unwrap().status, "True");
    let names = phase_names(plan);
    assert_eq!(
        names[names.len() - 3..],
        [phase, Phase::RollingBack, Phase::Failed],
        "{names:?}"
    );
    assert_eq!(
        st.phases[st.phases.len() - 3].outcome,
        Some(Outcome::Failed)
    );
    assert_eq!(st.active_color, Some(Color::Blue));

    let green = st.green_deployment.clone().unwrap();
    assert!(
        env.deployment(&app.ns, &green).await.is_none(),
        "the new version {green} is removed"
    );
    let jobs = Api::<Job>::namespaced(env.client.clone(), &app.ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    for j in &jobs.items {
        assert_eq!(
            j.status.as_ref().and_then(|s| s.active).unwrap_or(0),
            0,
            "no Job still running: {}",
            j.name_any()
        );
    }
    let dbs = database_names(env).await;
    for c in [
        app.clone_of(&app.db, &name),
        app.clone_of(&app.content_db, &name),
    ] {
        assert_eq!(
            dbs.contains(&c),
            clones_made,
            "clone {c} kept for inspection: {clones_made}"
        );
    }
    assert_eq!(
        &source_counts(env, app).await,
        before,
        "the sources are untouched"
    );
    assert_eq!(env.tagged(&app.content_db, "before-upgrade").await, 3);
    assert_blue_serves_read_write(env, app, 1).await;
}

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
    let names = phase_names(plan);
    assert_eq!(
        names[names.len() - 3..],
        [interrupted, Phase::RollingBack, Phase::RolledBack],
        "{names:?}"
    );
    assert_eq!(
        st.phases[st.phases.len() - 3].outcome,
        Some(Outcome::Interrupted)
    );
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

/// An operator with a fixed identity, as in a pod whose container restarts (it renews its own
/// Lease at once after a restart).
fn operator_in_pod(ns: &str) -> Operator {
    Operator::start_with(ns, &[], &[("POD_NAME", "cutover-0")])
}

/// SIGKILLs the operator as soon as the plan is seen in `phase`, and restarts it in its pod.
async fn kill_in(env: &Env, op: &mut Operator, ns: &str, plan: &str, phase: Phase) {
    env.wait_phase(op, ns, plan, phase, PLAN_TIMEOUT).await;
    op.kill_hard().await;
    *op = operator_in_pod(ns);
}

// ---- 1. rollback before read-only was lifted --------------------------------------------

/// Manual promotion holds the plan in AwaitingPromotion; `spec.traffic: blue` restores the
/// old version, read-write, without losing a document.
#[tokio::test]
async fn rollback_while_awaiting_promotion_is_lossless() {
    let Some(env) = env().await else { return };
    let app = env.blue_app("rel-rb-await", AppOptions::default()).await;
    write_before_upgrade(&env, &app, 3).await;
    let before = source_counts(&env, &app).await;
    let op = Operator::start(&app.ns);

    let mut plan = squidex_plan("rb", &app, 2);
    plan["spec"]["promotion"] = json!({"mode": "manual"});
    env.apply(&app.ns, plan).await;
    env.wait_phase(&op, &app.ns, "rb", Phase::AwaitingPromotion, PLAN_TIMEOUT)
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
    let app = env.blue_app("rel-rb-mig", AppOptions::default()).await;
    write_before_upgrade(&env, &app, 3).await;
    let before = source_counts(&env, &app).await;
    let mut op = operator_in_pod(&app.ns);

    let mut plan = squidex_plan("slow", &app, 2);
    plan["spec"]["target"]["env"] = json!([{"name": "APPSIM_STEP_DELAY_MS", "value": "60000"}]);
    env.apply(&app.ns, plan).await;
    env.wait_phase(&op, &app.ns, "slow", Phase::Migrating, PLAN_TIMEOUT)
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
    let app = env.blue_app("rel-rb-lifted", AppOptions::default()).await;
    write_before_upgrade(&env, &app, 3).await;
    let before = source_counts(&env, &app).await;
    let op = Operator::start(&app.ns);

    let mut plan = squidex_plan("lifted", &app, 2);
    plan["spec"]["cleanup"] = json!({"scaleDownBlueAfter": "10m"});
    env.apply(&app.ns, plan).await;
    env.wait_phase(&op, &app.ns, "lifted", Phase::Succeeded, PLAN_TIMEOUT)
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
        .wait_plan(
            &op,
            &app.ns,
            "lifted",
            "DataDiverged=True",
            Duration::from_secs(30),
            |p| condition(p, "DataDiverged").is_some_and(|c| c.status == "True"),
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
    assert_eq!(
        env.service_selector(&app.ns, "squidex")
            .await
            .get(TRACK)
            .map(String::as_str),
        Some(green)
    );
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

// ---- 3. failure compensation before the switch -------------------------------------------

/// The restored clones differ from the frozen sources. Provoked deterministically: once the
/// plan has passed its preflight (which requires the clone databases to be empty) and before
/// the clone Job ran, a document is written into a clone database. mongorestore never drops
/// what is there, so the clone has a collection the source lacks and the count check fails.
#[tokio::test]
async fn clone_count_mismatch_fails_and_restores_the_old_version() {
    let Some(env) = env().await else { return };
    let app = env.blue_app("rel-f-clone", AppOptions::default()).await;
    write_before_upgrade(&env, &app, 3).await;
    let before = source_counts(&env, &app).await;
    let op = Operator::start(&app.ns);

    env.apply(&app.ns, squidex_plan("counts", &app, 2)).await;
    let clone_content = app.clone_of(&app.content_db, "counts");
    env.wait_plan(
        &op,
        &app.ns,
        "counts",
        "preflight passed",
        PLAN_TIMEOUT,
        |p| p.status.as_ref().is_some_and(|s| s.phase != Phase::Pending),
    )
    .await;
    env.mongo
        .database(&clone_content)
        .collection::<Document>("Intruder")
        .insert_one(doc! {"written": "between preflight and clone"})
        .await
        .unwrap();
    let after_insert = env.plans(&app.ns).get("counts").await.unwrap();
    assert!(
        matches!(
            status(&after_insert).phase,
            Phase::EnteringReadOnly | Phase::BackingUp
        ),
        "the intruding document must land before the clone Job; the plan was already {}",
        status(&after_insert).phase
    );

    let failed = env
        .wait_phase(&op, &app.ns, "counts", Phase::Failed, PLAN_TIMEOUT)
        .await;
    assert_failed_and_restored(
        &env,
        &app,
        &failed,
        "CloneVerificationFailed",
        Phase::Cloning,
        &[
            &format!("{clone_content}.Intruder: 1 documents in the clone but not in the source"),
            "do not match the frozen sources",
        ],
        true,
        &before,
    )
    .await;
    let verified = condition(&failed, "BackupVerified").unwrap();
    assert_eq!(
        (verified.status.as_str(), verified.reason.as_str()),
        ("False", "CountsDiffer")
    );
    assert!(!status(&failed).clone.unwrap().verified);

    env.finish(&op, &app.ns, &all_dbs(&app, &["counts"])).await;
}

/// The new version crash-loops (its migration fails at once, every start) and never becomes
/// ready: the migration timeout ends the plan, naming the unready Deployment.
#[tokio::test]
async fn green_never_ready_fails_and_restores_the_old_version() {
    let Some(env) = env().await else { return };
    let app = env.blue_app("rel-f-unready", AppOptions::default()).await;
    write_before_upgrade(&env, &app, 3).await;
    let before = source_counts(&env, &app).await;
    let op = Operator::start(&app.ns);

    let mut plan = squidex_plan("unready", &app, 2);
    plan["spec"]["target"]["env"] = json!([{"name": "APPSIM_FAIL_MIGRATION", "value": "1"}]);
    plan["spec"]["migration"]["timeout"] = json!("6s");
    env.apply(&app.ns, plan).await;
    let failed = env
        .wait_phase(&op, &app.ns, "unready", Phase::Failed, PLAN_TIMEOUT)
        .await;
    assert_failed_and_restored(
        &env,
        &app,
        &failed,
        "MigrationTimedOut",
        Phase::Migrating,
        &[
            "did not pass within 6s",
            "Deployment squidex-unready: 1/1 updated, 0/1 ready",
        ],
        true,
        &before,
    )
    .await;

    env.finish(&op, &app.ns, &all_dbs(&app, &["unready"])).await;
}

/// The migration runs but does not finish in time (each step takes ten minutes); the operator
/// is SIGKILLed as the compensation starts.
#[tokio::test]
async fn migration_timeout_fails_and_restores_the_old_version() {
    let Some(env) = env().await else { return };
    let app = env.blue_app("rel-f-timeout", AppOptions::default()).await;
    write_before_upgrade(&env, &app, 3).await;
    let before = source_counts(&env, &app).await;
    let mut op = operator_in_pod(&app.ns);

    let mut plan = squidex_plan("slowmig", &app, 2);
    plan["spec"]["target"]["env"] = json!([{"name": "APPSIM_STEP_DELAY_MS", "value": "600000"}]);
    plan["spec"]["migration"]["timeout"] = json!("6s");
    env.apply(&app.ns, plan).await;
    // The compensation survives a crash of the operator too.
    kill_in(&env, &mut op, &app.ns, "slowmig", Phase::RollingBack).await;
    let failed = env
        .wait_phase(&op, &app.ns, "slowmig", Phase::Failed, PLAN_TIMEOUT)
        .await;
    assert_failed_and_restored(
        &env,
        &app,
        &failed,
        "MigrationTimedOut",
        Phase::Migrating,
        &[
            "did not pass within 6s",
            "migration document: version 1 of 2, locked",
        ],
        true,
        &before,
    )
    .await;

    env.finish(&op, &app.ns, &all_dbs(&app, &["slowmig"])).await;
}

/// The migration Job (`appsim migrate` of the new image) exits 1.
#[tokio::test]
async fn migration_job_failure_fails_and_restores_the_old_version() {
    let Some(env) = env().await else { return };
    let app = env.blue_app("rel-f-job", AppOptions::default()).await;
    write_before_upgrade(&env, &app, 3).await;
    let before = source_counts(&env, &app).await;
    let op = Operator::start(&app.ns);

    let mut plan = squidex_plan("jobfail", &app, 2);
    plan["spec"]["target"]["env"] = json!([{"name": "APPSIM_FAIL_MIGRATION", "value": "1"}]);
    plan["spec"]["migration"]["job"] = json!({"args": ["migrate"]});
    env.apply(&app.ns, plan).await;
    let failed = env
        .wait_phase(&op, &app.ns, "jobfail", Phase::Failed, PLAN_TIMEOUT)
        .await;
    assert_failed_and_restored(
        &env,
        &app,
        &failed,
        "MigrationJobFailed",
        Phase::Migrating,
        &["Migration Job jobfail-migrate failed"],
        true,
        &before,
    )
    .await;
    let job = Api::<Job>::namespaced(env.client.clone(), &app.ns)
        .get("jobfail-migrate")
        .await
        .expect("the failed Job is kept for its logs");
    assert!(job.status.unwrap().failed.unwrap_or(0) >= 1);

    env.finish(&op, &app.ns, &all_dbs(&app, &["jobfail"])).await;
}

/// The HTTP health gate asks for a path the new version answers 404 on.
#[tokio::test]
async fn health_gate_failure_fails_and_restores_the_old_version() {
    let Some(env) = env().await else { return };
    let app = env.blue_app("rel-f-health", AppOptions::default()).await;
    write_before_upgrade(&env, &app, 3).await;
    let before = source_counts(&env, &app).await;
    let op = Operator::start(&app.ns);

    let mut plan = squidex_plan("health", &app, 2);
    plan["spec"]["migration"]["httpGet"] = json!({"path": "/nope", "port": 8080});
    plan["spec"]["migration"]["timeout"] = json!("6s");
    env.apply(&app.ns, plan).await;
    let failed = env
        .wait_phase(&op, &app.ns, "health", Phase::Failed, PLAN_TIMEOUT)
        .await;
    assert_failed_and_restored(
        &env,
        &app,
        &failed,
        "MigrationTimedOut",
        Phase::Migrating,
        &[
            "did not pass within 6s",
            "health gate:",
            "answered 404 to GET /nope",
        ],
        true,
        &before,
    )
    .await;

    env.finish(&op, &app.ns, &all_dbs(&app, &["health"])).await;
}

// ---- 4. stale migration lock -------------------------------------------------------------

/// The new version crashes after the first of two migration steps with the lock held; its
/// restart waits for the lock forever. The plan reports MigrationLockStale (with the document
/// and the release command) long before the timeout; once released, it completes.
#[tokio::test]
async fn stale_migration_lock_is_reported_and_the_plan_continues_once_released() {
    let Some(env) = env().await else { return };
    let app = env.blue_app("rel-lock", AppOptions::default()).await;
    let op = Operator::start(&app.ns);

    let mut plan = squidex_plan("lock", &app, 3);
    plan["spec"]["target"]["env"] = json!([{"name": "APPSIM_CRASH_AFTER_STEP", "value": "1"}]);
    plan["spec"]["migration"]["mongoDocument"]["staleLockAfter"] = json!("5s");
    env.apply(&app.ns, plan).await;
    let migrating = env
        .wait_phase(&op, &app.ns, "lock", Phase::Migrating, PLAN_TIMEOUT)
        .await;
    let migrating_since = status(&migrating).phases.last().unwrap().started_at;

    let stale = env
        .wait_plan(
            &op,
            &app.ns,
            "lock",
            "MigrationLockStale=True",
            Duration::from_secs(60),
            |p| condition(p, "MigrationLockStale").is_some_and(|c| c.status == "True"),
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

// ---- 5. operator restarts ----------------------------------------------------------------

/// `cutover run` is SIGKILLed as soon as each phase is seen, again while the backup and clone
/// Jobs run, while the new version migrates and during the cleanup wait, and started again each
/// time: alternately as the same instance (a container restarted in its pod keeps POD_NAME, so
/// it renews its own Lease at once) and as a new one (a replacement pod, which waits until the
/// dead instance's 3 s Lease expires). The plan ends exactly like an uninterrupted one, and
/// every object that must be created once was created once (watched by uid for the whole run).
#[tokio::test]
async fn operator_killed_in_every_phase_resumes_and_finishes() {
    let Some(env) = env().await else { return };
    let app = env.blue_app("rel-kill", AppOptions::default()).await;
    write_before_upgrade(&env, &app, 3).await;
    let before = source_counts(&env, &app).await;
    let history = env.history(&app.ns).await;
    let ns = app.ns.clone();
    let launch = |restarts: usize| {
        // Even restarts: the same pod; odd ones: a replacement pod with a new identity.
        let identity = format!("cutover-{}", restarts.div_ceil(2));
        Operator::start_with(
            &ns,
            &["--lease-duration", "3s"],
            &[("POD_NAME", identity.as_str())],
        )
    };
    let mut op = launch(0);

    let mut plan = squidex_plan("kill", &app, 2);
    // Long enough that a kill lands while the scale-down waits, after restarts that each
    // may wait out the 3 s lease.
    plan["spec"]["cleanup"] = json!({"scaleDownBlueAfter": "15s"});
    env.apply(&app.ns, plan).await;

    let green = "squidex-kill";
    let mut kills: Vec<String> = Vec::new();
    let mut seen: Vec<Phase> = Vec::new();
    let mut mid_killed: std::collections::HashSet<Phase> = Default::default();
    let mut entered = Instant::now();
    let start = Instant::now();
    loop {
        let p = env.plans(&app.ns).get("kill").await.unwrap();
        let phase = p.status.as_ref().map(|s| s.phase).unwrap_or_default();
        if phase == Phase::Succeeded
            && cleanup_step(&p, CleanupStepName::ScaleDownBlue)
                .is_some_and(|s| s.state == CleanupState::Done)
        {
            break;
        }
        assert!(
            (!phase.is_terminal() || phase == Phase::Succeeded) && start.elapsed() < PLAN_TIMEOUT,
            "plan is {phase} after {:?}: {}\n{}",
            start.elapsed(),
            serde_json::to_string_pretty(&p.status).unwrap(),
            op.log_tail(60)
        );
        let mut why = None;
        if phase != Phase::Pending && !seen.contains(&phase) {
            seen.push(phase);
            why = Some(format!("{phase}: on entry"));
        } else if !mid_killed.contains(&phase) {
            let job_running = |suffix: &str| {
                history
                    .versions("Job", &format!("kill-{suffix}"))
                    .last()
                    .is_some_and(|j| {
                        j.object["status"]["succeeded"].as_i64().unwrap_or(0) == 0
                            && j.object["status"]["failed"].as_i64().unwrap_or(0) == 0
                    })
            };
            why = match phase {
                Phase::BackingUp if job_running("backup") => {
                    Some("BackingUp: while the backup Job runs".to_string())
                }
                Phase::Cloning if job_running("clone") => {
                    Some("Cloning: while the clone Job runs".to_string())
                }
                Phase::Migrating
                    if entered.elapsed() > Duration::from_millis(300)
                        && !history.uids_labelled("Pod", TRACK, green).is_empty() =>
                {
                    Some("Migrating: while the new version's pod runs".to_string())
                }
                Phase::Succeeded if entered.elapsed() > Duration::from_millis(1500) => {
                    Some("Succeeded: waiting to scale the old version down".to_string())
                }
                _ => None,
            };
            if why.is_some() {
                mid_killed.insert(phase);
            }
        }
        if let Some(why) = why {
            op.kill_hard().await;
            kills.push(why);
            op = launch(kills.len());
            entered = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let done = env.plans(&app.ns).get("kill").await.unwrap();
    eprintln!("SIGKILLed cutover run {} times: {kills:#?}", kills.len());
    for must in [
        "EnteringReadOnly: on entry",
        "BackingUp: on entry",
        "BackingUp: while the backup Job runs",
        "Cloning: on entry",
        "Cloning: while the clone Job runs",
        "Migrating: on entry",
        "Succeeded: on entry",
        "Succeeded: waiting to scale the old version down",
    ] {
        assert!(
            kills.iter().any(|k| k == must),
            "no kill at {must}: {kills:?}"
        );
    }

    // The same end as an uninterrupted run.
    use Phase::*;
    assert_eq!(
        phase_names(&done),
        vec![
            Pending,
            EnteringReadOnly,
            BackingUp,
            Cloning,
            DeployingGreen,
            Migrating,
            SwitchingTraffic,
            LiftingReadOnly,
            CleaningUp,
            Succeeded,
            CleaningUp
        ],
        "every phase exactly once, then the scale-down recorded after success"
    );
    let st = status(&done);
    for r in &st.phases {
        assert_eq!(r.outcome, Some(Outcome::Succeeded), "{r:?}");
    }
    assert!(st.failure.is_none());
    assert!(st.clone.as_ref().unwrap().verified);
    assert_eq!(
        st.backup
            .as_ref()
            .unwrap()
            .checksum
            .as_ref()
            .map(String::len),
        Some(64)
    );
    assert_eq!(st.active_color, Some(Color::Green));
    assert_eq!(
        env.service_selector(&app.ns, "squidex")
            .await
            .get(TRACK)
            .map(String::as_str),
        Some(green)
    );
    let g = env.deployment(&app.ns, green).await.unwrap();
    assert_eq!(container_env(&g, RO), None);
    assert!(g.owner_references().is_empty(), "handed over");
    let blue = env.deployment(&app.ns, BLUE).await.unwrap();
    assert_eq!(blue.spec.as_ref().unwrap().replicas, Some(0));
    let clone_db = app.clone_of(&app.db, "kill");
    let d = env.migration_doc(&clone_db).await.unwrap();
    assert_eq!(
        (version_of(&d), d.get_bool("IsLocked").unwrap()),
        (2, false)
    );
    let clone_contents = env.counts(&app.clone_of(&app.content_db, "kill")).await;
    assert_eq!(
        clone_contents.get("States_Contents_All1"),
        Some(&(app.documents + 3)),
        "restored once: {clone_contents:?}"
    );
    assert_eq!(
        clone_contents.get("States_Contents_All2"),
        Some(&(app.documents + 3)),
        "migrated once: {clone_contents:?}"
    );
    assert_eq!(source_counts(&env, &app).await, before);

    // Created once, ever: one backup Job and one pod of it, one clone Job and one pod, one new
    // Deployment; exactly two ReplicaSets and two pods each (before and after read-only).
    let one = |what: &str, uids: BTreeSet<String>| {
        assert_eq!(uids.len(), 1, "{what} created {} times", uids.len());
    };
    one("backup Job", history.uids("Job", "kill-backup"));
    one("clone Job", history.uids("Job", "kill-clone"));
    one(
        "backup pod",
        history.uids_labelled("Pod", "job-name", "kill-backup"),
    );
    one(
        "clone pod",
        history.uids_labelled("Pod", "job-name", "kill-clone"),
    );
    one("new Deployment", history.uids("Deployment", green));
    one("old Deployment", history.uids("Deployment", BLUE));
    assert_eq!(history.names("Job").len(), 2, "{:?}", history.names("Job"));
    let replica_sets = |owner: &str| -> BTreeSet<String> {
        history
            .all()
            .into_iter()
            .filter(|s| {
                s.kind == "ReplicaSet"
                    && s.object["metadata"]["ownerReferences"][0]["name"] == owner
            })
            .map(|s| s.uid)
            .collect()
    };
    assert_eq!(
        replica_sets(green).len(),
        2,
        "new version: read-only, then read-write"
    );
    assert_eq!(
        replica_sets(BLUE).len(),
        2,
        "old version: original, then read-only"
    );
    assert_eq!(history.uids_labelled("Pod", TRACK, green).len(), 2);
    assert_eq!(history.uids_labelled("Pod", TRACK, BLUE).len(), 1);

    // Each transition was announced at most once (a replayed step would announce it again).
    let events = Api::<Event>::namespaced(env.client.clone(), &app.ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    let mut per_reason: BTreeMap<String, usize> = BTreeMap::new();
    for e in &events.items {
        if let Some(r) = &e.reason {
            *per_reason.entry(r.clone()).or_default() += 1;
        }
    }
    for p in [
        "EnteringReadOnly",
        "BackingUp",
        "Cloning",
        "DeployingGreen",
        "Migrating",
        "SwitchingTraffic",
        "LiftingReadOnly",
        "CleaningUp",
        "Succeeded",
    ] {
        assert!(
            per_reason.get(p).copied().unwrap_or(0) <= 1,
            "{p} announced twice: {per_reason:?}"
        );
    }
    assert!(history.watching());

    env.finish(&op, &app.ns, &all_dbs(&app, &["kill"])).await;
}

// ---- 6. one plan per target --------------------------------------------------------------

/// While one plan is active, a second plan for the same Deployment, or one for another
/// Deployment sharing a database, ends Failed at Pending naming the active plan; nothing is
/// touched, and the first plan then finishes normally.
#[tokio::test]
async fn a_second_plan_for_the_same_target_is_refused() {
    let Some(env) = env().await else { return };
    let app = env.blue_app("rel-one", AppOptions::default()).await;
    write_before_upgrade(&env, &app, 3).await;
    // Another app that shares the content database.
    env.apply(
        &app.ns,
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "other", "labels": {"app": "other"}},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "other"}},
                "template": {
                    "metadata": {"labels": {"app": "other"}},
                    "spec": {"containers": [{"name": "other", "image": "registry.local/other:1"}]}
                }
            }
        }),
    )
    .await;
    env.apply(&app.ns, json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "other"},
        "spec": {"selector": {"app": "other"}, "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}
    }))
    .await;
    env.wait_rollout(&app.ns, "other", Duration::from_secs(60))
        .await;
    let op = Operator::start(&app.ns);

    let mut first = squidex_plan("first", &app, 2);
    first["spec"]["promotion"] = json!({"mode": "manual"});
    env.apply(&app.ns, first.clone()).await;
    env.wait_phase(
        &op,
        &app.ns,
        "first",
        Phase::AwaitingPromotion,
        PLAN_TIMEOUT,
    )
    .await;

    let snapshot = async || {
        let rv = |d: Option<k8s_openapi::api::apps::v1::Deployment>| d.unwrap().resource_version();
        let svcs = Api::<Service>::namespaced(env.client.clone(), &app.ns);
        (
            rv(env.deployment(&app.ns, BLUE).await),
            rv(env.deployment(&app.ns, "other").await),
            rv(env.deployment(&app.ns, "squidex-first").await),
            svcs.get("squidex").await.unwrap().resource_version(),
            svcs.get("other").await.unwrap().resource_version(),
            Api::<Job>::namespaced(env.client.clone(), &app.ns)
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .iter()
                .map(|j| j.name_any())
                .collect::<BTreeSet<_>>(),
            source_counts(&env, &app).await,
            databases_of(&env, &app).await,
        )
    };
    let before = snapshot().await;

    // Same Deployment.
    env.apply(&app.ns, squidex_plan("second", &app, 3)).await;
    let second = env
        .wait_phase(
            &op,
            &app.ns,
            "second",
            Phase::Failed,
            Duration::from_secs(30),
        )
        .await;
    let f = status(&second).failure.unwrap();
    assert_eq!(
        (f.phase, f.reason.as_str()),
        (Phase::Pending, "PreflightFailed")
    );
    assert!(
        f.message.contains(
            "UpgradePlan first is already upgrading Deployment \"squidex\" (phase AwaitingPromotion)"
        ),
        "{}",
        f.message
    );
    assert!(f.message.contains("nothing was changed"), "{}", f.message);
    assert_eq!(phase_names(&second), vec![Phase::Pending, Phase::Failed]);

    // Another Deployment, but one of the same databases.
    let mut third = squidex_plan("third", &app, 2);
    third["spec"]["app"] = json!({"deployment": "other", "service": "other"});
    third["spec"]["database"]["databases"] =
        json!([{"name": app.content_db, "env": ["STORE__MONGODB__CONTENTDATABASE"]}]);
    third["spec"]["migration"] = json!({"httpGet": {"path": "/", "port": 8080}});
    env.apply(&app.ns, third).await;
    let third = env
        .wait_phase(
            &op,
            &app.ns,
            "third",
            Phase::Failed,
            Duration::from_secs(30),
        )
        .await;
    let f = status(&third).failure.unwrap();
    assert_eq!(f.phase, Phase::Pending);
    assert!(
        f.message.contains(&format!(
            "UpgradePlan first is already working on database(s) {} (phase AwaitingPromotion)",
            app.content_db
        )),
        "{}",
        f.message
    );
    let ready = condition(&third, "Ready").unwrap();
    assert_eq!(ready.reason, "PreflightFailed");
    assert!(ready.message.contains("UpgradePlan first"));

    // Nothing touched by the refused plans.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = snapshot().await;
    assert_eq!(before, after, "the refused plans changed nothing");
    assert!(env.deployment(&app.ns, "squidex-second").await.is_none());
    assert!(env.deployment(&app.ns, "other-third").await.is_none());

    // The first one proceeds normally.
    first["spec"]["promotion"] = json!({"mode": "manual", "approved": true});
    env.apply(&app.ns, first).await;
    env.wait_phase(&op, &app.ns, "first", Phase::Succeeded, PLAN_TIMEOUT)
        .await;
    assert_eq!(
        env.service_selector(&app.ns, "squidex")
            .await
            .get(TRACK)
            .map(String::as_str),
        Some("squidex-first")
    );

    env.finish(&op, &app.ns, &all_dbs(&app, &["first", "second", "third"]))
        .await;
}

// ---- 7. bad input ------------------------------------------------------------------------

enum Expect {
    /// The API server refuses the object; its message contains every part.
    Schema(&'static [&'static str]),
    /// The plan ends Failed at Pending with this reason and a message containing every part.
    Refused(&'static str, Vec<String>),
}

/// Thirty-odd invalid or hostile plans against one app. Each is refused by the CRD schema or
/// ends Failed at Pending with a precise message, and after each: the old Deployment and the
/// Services have the same resourceVersion, no Job and no Deployment was created, no clone
/// database appeared, and the sources have the same documents.
///
/// Unknown fields (what Kubernetes 1.20 actually does; there is no server-side field validation
/// before 1.25): a server-side apply is refused with "field not declared in schema" (rows
/// `secret-ns` and `unknown-field`: e.g. a `namespace` under `connectionSecret`, a field that
/// does not exist); a create or update (client-side `kubectl apply`, whose own validation
/// rejects them unless `--validate=false`) is accepted with the unknown fields pruned, so a
/// misspelt field (`timout`) silently falls back to its default. The last check shows that.
#[tokio::test]
async fn bad_input_is_refused_before_any_side_effect() {
    let Some(env) = env().await else { return };
    let app = env.blue_app("rel-bad", AppOptions::default()).await;
    let ns = app.ns.clone();
    write_before_upgrade(&env, &app, 3).await;

    // Fixtures: Services that select nothing / other pods / have no selector, another
    // Deployment, Secrets without the key, with a non-MongoDB URI, with a closed port, a Secret
    // that exists only in another namespace, and a clone database that already has data.
    env.apply(
        &ns,
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "other", "labels": {"app": "other"}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "other"}},
                "template": {"metadata": {"labels": {"app": "other"}},
                    "spec": {"containers": [{"name": "other", "image": "registry.local/other:1"}]}}}
        }),
    )
    .await;
    for (name, selector) in [
        ("nothing", Some(json!({"app": "nothing"}))),
        ("other", Some(json!({"app": "other"}))),
        ("headless", None),
    ] {
        let mut spec = json!({"ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]});
        if let Some(s) = selector {
            spec["selector"] = s;
        }
        env.apply(&ns, json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}))
            .await;
    }
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    for (name, uri) in [
        (
            "notauri",
            "postgres://pguser:pg-Secret-1@db.local/app".to_string(),
        ),
        (
            "closed",
            format!("mongodb://u:closed-Secret-2@127.0.0.1:{closed_port}/?directConnection=true"),
        ),
    ] {
        env.apply(&ns, json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": {"uri": uri}}))
            .await;
    }
    let elsewhere = env.namespace("rel-bad-elsewhere").await;
    env.apply(&elsewhere, json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "elsewhere"}, "stringData": {"uri": env.mongo_uri}}))
        .await;
    let occupied = app.clone_of(&app.db, "clone-exists");
    env.mongo
        .database(&occupied)
        .collection::<Document>("Leftover")
        .insert_many([doc! {"n": 1}, doc! {"n": 2}])
        .await
        .unwrap();
    env.wait_rollout(&ns, "other", Duration::from_secs(60))
        .await;

    let op = Operator::start(&ns);
    let base = squidex_plan("base", &app, 2);
    let edit = |name: &str, f: &dyn Fn(&mut Value)| {
        let mut p = base.clone();
        p["metadata"]["name"] = json!(name);
        f(&mut p);
        p
    };
    let db = app.db.clone();
    let cdb = app.content_db.clone();
    let s = |x: &str| x.to_string();
    let invalid = "InvalidSpec";
    let preflight = "PreflightFailed";
    let set_db0 = |p: &mut Value, name: &str| {
        p["spec"]["database"]["databases"][0]["name"] = json!(name);
        p["spec"]["migration"]["mongoDocument"]["database"] = json!(name);
    };

    let rows: Vec<(&str, &str, Value, Expect)> = vec![
        (
            "no-deploy",
            "missing Deployment",
            edit("no-deploy", &|p| {
                p["spec"]["app"]["deployment"] = json!("nosuch")
            }),
            Expect::Refused(
                preflight,
                vec![s("Deployment \"nosuch\" not found in the plan's namespace")],
            ),
        ),
        (
            "container",
            "no such container",
            edit("container", &|p| {
                p["spec"]["app"]["container"] = json!("nosuch")
            }),
            Expect::Refused(
                preflight,
                vec![s(
                    "Deployment squidex has no container \"nosuch\" (it has: squidex)",
                )],
            ),
        ),
        (
            "svc-missing",
            "missing Service",
            edit("svc-missing", &|p| {
                p["spec"]["app"]["service"] = json!("nosuchsvc")
            }),
            Expect::Refused(
                preflight,
                vec![s("Service \"nosuchsvc\" not found in the plan's namespace")],
            ),
        ),
        (
            "svc-nothing",
            "Service selecting nothing",
            edit("svc-nothing", &|p| {
                p["spec"]["app"]["service"] = json!("nothing")
            }),
            Expect::Refused(
                preflight,
                vec![s(
                    "Service \"nothing\" selects {\"app\": \"nothing\"}, which does not match the pods of Deployment \"squidex\"",
                )],
            ),
        ),
        (
            "svc-other",
            "Service selecting other pods",
            edit("svc-other", &|p| {
                p["spec"]["app"]["service"] = json!("other")
            }),
            Expect::Refused(
                preflight,
                vec![s(
                    "Service \"other\" selects {\"app\": \"other\"}, which does not match the pods of Deployment \"squidex\"",
                )],
            ),
        ),
        (
            "svc-headless",
            "Service without a selector",
            edit("svc-headless", &|p| {
                p["spec"]["app"]["service"] = json!("headless")
            }),
            Expect::Refused(preflight, vec![s("Service \"headless\" has no selector")]),
        ),
        (
            "secret-missing",
            "Secret missing",
            edit("secret-missing", &|p| {
                p["spec"]["database"]["connectionSecret"]["name"] = json!("nosuch")
            }),
            Expect::Refused(
                preflight,
                vec![s(
                    "Secret \"nosuch\" (spec.database.connectionSecret) not found in the plan's namespace",
                )],
            ),
        ),
        (
            "secret-key",
            "Secret key missing",
            edit("secret-key", &|p| {
                p["spec"]["database"]["connectionSecret"]["key"] = json!("nokey")
            }),
            Expect::Refused(
                preflight,
                vec![s("Secret \"mongo\" has no key \"nokey\" (its keys: uri)")],
            ),
        ),
        (
            "secret-elsewhere",
            "a Secret that exists only in another namespace",
            edit("secret-elsewhere", &|p| {
                p["spec"]["database"]["connectionSecret"] =
                    json!({"name": "elsewhere", "key": "uri"})
            }),
            Expect::Refused(
                preflight,
                vec![s(
                    "Secret \"elsewhere\" (spec.database.connectionSecret) not found in the plan's namespace",
                )],
            ),
        ),
        (
            "secret-ns",
            "a namespace for the Secret (there is no such field; server-side apply refuses it)",
            edit(
                "secret-ns",
                &|p| {
                    p["spec"]["database"]["connectionSecret"] =
                        json!({"name": "elsewhere", "key": "uri", "namespace": elsewhere})
                },
            ),
            Expect::Schema(&[
                ".spec.database.connectionSecret.namespace: field not declared in schema",
            ]),
        ),
        (
            "unknown-field",
            "an unknown field (server-side apply)",
            edit("unknown-field", &|p| {
                p["spec"]["bogus"] = json!({"rm": "-rf"})
            }),
            Expect::Schema(&[".spec.bogus: field not declared in schema"]),
        ),
        (
            "not-mongo",
            "a connection string that is not MongoDB's",
            edit("not-mongo", &|p| {
                p["spec"]["database"]["connectionSecret"]["name"] = json!("notauri")
            }),
            Expect::Refused(
                preflight,
                vec![s(
                    "Secret \"notauri\" key \"uri\" is not a usable MongoDB connection string: it must start with mongodb://",
                )],
            ),
        ),
        (
            "unreachable",
            "unreachable database (closed loopback port)",
            edit("unreachable", &|p| {
                p["spec"]["database"]["connectionSecret"]["name"] = json!("closed")
            }),
            Expect::Refused(
                preflight,
                vec![s(
                    "Cannot reach MongoDB with the connection Secret \"closed\"",
                )],
            ),
        ),
        (
            "db-slash",
            "database name with '/'",
            edit("db-slash", &|p| set_db0(p, "Sq/evil")),
            // The CRD schema refuses the characters MongoDB refuses (validate() says the same
            // for API servers that skip the schema).
            Expect::Schema(&["spec.database.databases.name", "Sq/evil", "should match"]),
        ),
        (
            "db-dot",
            "database name with '.'",
            edit("db-dot", &|p| set_db0(p, "Sq.evil")),
            // The CRD schema refuses the characters MongoDB refuses (validate() says the same
            // for API servers that skip the schema).
            Expect::Schema(&["spec.database.databases.name", "Sq.evil", "should match"]),
        ),
        (
            "db-dollar",
            "database name with '$'",
            edit("db-dollar", &|p| set_db0(p, "Sq$evil")),
            // The CRD schema refuses the characters MongoDB refuses (validate() says the same
            // for API servers that skip the schema).
            Expect::Schema(&["spec.database.databases.name", "Sq$evil", "should match"]),
        ),
        (
            "db-admin",
            "a system database",
            edit("db-admin", &|p| set_db0(p, "admin")),
            Expect::Refused(
                invalid,
                vec![s(
                    "spec.database.databases[0].name: \"admin\" is a MongoDB system database",
                )],
            ),
        ),
        (
            "db-twice",
            "a database listed twice",
            edit("db-twice", &|p| {
                p["spec"]["database"]["databases"][1]["name"] = json!(db)
            }),
            Expect::Refused(
                invalid,
                vec![s("spec.database.databases: a database is listed twice")],
            ),
        ),
        (
            "db-missing",
            "a source database that does not exist",
            edit("db-missing", &|p| {
                p["spec"]["database"]["databases"][1]["name"] = json!("Nope_rel")
            }),
            Expect::Refused(
                preflight,
                vec![s(
                    "Source database \"Nope_rel\" does not exist on the server",
                )],
            ),
        ),
        (
            "clone-is-source",
            "clone name equal to the source",
            edit("clone-is-source", &|p| {
                p["spec"]["database"]["databases"][0]["cloneName"] = json!(db)
            }),
            Expect::Refused(
                invalid,
                vec![format!(
                    "spec.database.databases[0].cloneName: \"{db}\" is the source database itself"
                )],
            ),
        ),
        (
            "clone-is-other",
            "clone name equal to another source",
            edit("clone-is-other", &|p| {
                p["spec"]["database"]["databases"][0]["cloneName"] = json!(cdb)
            }),
            Expect::Refused(
                invalid,
                vec![format!(
                    "spec.database.databases[0].cloneName: \"{cdb}\" is another source database of this plan"
                )],
            ),
        ),
        (
            "clone-exists",
            "clone database already existing with data",
            edit("clone-exists", &|_| {}),
            Expect::Refused(
                preflight,
                vec![format!(
                    "Clone database \"{occupied}\" already exists with 1 collections (2 documents)"
                )],
            ),
        ),
        (
            "image-empty",
            "empty image",
            edit("image-empty", &|p| p["spec"]["target"]["image"] = json!("")),
            Expect::Schema(&["spec.target.image", "should be at least 1 chars long"]),
        ),
        (
            "image-invalid",
            "invalid image",
            edit("image-invalid", &|p| {
                p["spec"]["target"]["image"] = json!("Not An Image!")
            }),
            Expect::Refused(
                invalid,
                vec![s(
                    "spec.target.image: \"Not An Image!\" is not an image reference",
                )],
            ),
        ),
        (
            "image-shell",
            "shell injection in the image",
            edit("image-shell", &|p| {
                p["spec"]["target"]["image"] = json!("appsim:2;rm${IFS}-rf${IFS}/")
            }),
            Expect::Refused(
                invalid,
                vec![s(
                    "spec.target.image: \"appsim:2;rm${IFS}-rf${IFS}/\" is not an image reference",
                )],
            ),
        ),
        (
            "image-huge",
            "a 2 KB image",
            edit("image-huge", &|p| {
                p["spec"]["target"]["image"] = json!(format!("r/{}:1", "a".repeat(2048)))
            }),
            Expect::Schema(&["spec.target.image", "should be at most 1024 chars long"]),
        ),
        (
            "db-huge",
            "a 10 KB database name",
            edit("db-huge", &|p| set_db0(p, &"x".repeat(10 * 1024))),
            Expect::Schema(&[
                "spec.database.databases.name",
                "should be at most 63 chars long",
            ]),
        ),
        (
            "db-many",
            "65 databases",
            edit("db-many", &|p| {
                p["spec"]["database"]["databases"] = json!(
                    (0..65)
                        .map(|i| json!({"name": format!("D{i}")}))
                        .collect::<Vec<_>>()
                )
            }),
            Expect::Schema(&["spec.database.databases", "should have at most 64 items"]),
        ),
        (
            "gate-db",
            "a migration gate on a database not in the list",
            edit("gate-db", &|p| {
                p["spec"]["migration"]["mongoDocument"]["database"] = json!("Elsewhere")
            }),
            Expect::Refused(
                invalid,
                vec![format!(
                    "spec.migration.mongoDocument.database: \"Elsewhere\" is not one of spec.database.databases ({cdb}, {db})"
                )],
            ),
        ),
        (
            "no-gates",
            "no migration gate",
            edit("no-gates", &|p| {
                p["spec"]["migration"] = json!({"timeout": "3m"})
            }),
            Expect::Refused(
                invalid,
                vec![s("spec.migration: configure at least one gate")],
            ),
        ),
        (
            "timeout-zero",
            "migration timeout 0s",
            edit("timeout-zero", &|p| {
                p["spec"]["migration"]["timeout"] = json!("0s")
            }),
            Expect::Refused(
                invalid,
                vec![s("spec.migration.timeout: must be more than 0s")],
            ),
        ),
        (
            "stale-zero",
            "staleLockAfter 0s and a rollout timeout of 0s",
            edit("stale-zero", &|p| {
                p["spec"]["migration"]["mongoDocument"]["staleLockAfter"] = json!("0s");
                p["spec"]["timeouts"]["rollout"] = json!("0ms");
            }),
            Expect::Refused(
                invalid,
                vec![
                    s("spec.migration.mongoDocument.staleLockAfter: must be more than 0s"),
                    s("spec.timeouts.rollout: must be more than 0s"),
                ],
            ),
        ),
        (
            "timeout-words",
            "a duration that is not one",
            edit("timeout-words", &|p| {
                p["spec"]["migration"]["timeout"] = json!("soon")
            }),
            Expect::Schema(&["spec.migration.timeout", "should match"]),
        ),
        (
            "port-zero",
            "health gate port 0",
            edit("port-zero", &|p| {
                p["spec"]["migration"]["httpGet"] = json!({"path": "/health", "port": 0})
            }),
            Expect::Schema(&[
                "spec.migration.httpGet.port",
                "should be greater than or equal to 1",
            ]),
        ),
        (
            "verify-port",
            "read-only probe port 70000",
            edit("verify-port", &|p| {
                p["spec"]["readOnly"]["verify"]["http"]["port"] = json!(70000)
            }),
            Expect::Schema(&[
                "spec.readOnly.verify.http.port",
                "should be less than or equal to 65535",
            ]),
        ),
        (
            "path-relative",
            "a health path without '/'",
            edit("path-relative", &|p| {
                p["spec"]["migration"]["httpGet"] = json!({"path": "health", "port": 8080})
            }),
            Expect::Schema(&["spec.migration.httpGet.path", "should match '^/'"]),
        ),
        (
            "version-negative",
            "a negative target version",
            edit("version-negative", &|p| {
                p["spec"]["migration"]["mongoDocument"]["targetVersion"] = json!(-1)
            }),
            Expect::Schema(&[
                "spec.migration.mongoDocument.targetVersion",
                "should be greater than or equal to 0",
            ]),
        ),
        (
            "ro-env",
            "an invalid read-only variable name",
            edit("ro-env", &|p| {
                p["spec"]["readOnly"]["env"]["name"] = json!("1BAD=x")
            }),
            Expect::Schema(&["spec.readOnly.env.name", "should match"]),
        ),
        (
            "green-is-blue",
            "the new Deployment named like the old one",
            edit("green-is-blue", &|p| {
                p["spec"]["target"]["deploymentName"] = json!("squidex")
            }),
            Expect::Refused(
                invalid,
                vec![s(
                    "spec.target.deploymentName: \"squidex\" is the running Deployment itself",
                )],
            ),
        ),
        (
            "green-taken",
            "the new Deployment named like an unrelated one",
            edit("green-taken", &|p| {
                p["spec"]["target"]["deploymentName"] = json!("other")
            }),
            Expect::Refused(
                preflight,
                vec![s(
                    "Deployment \"other\" already exists and does not belong to this plan",
                )],
            ),
        ),
    ];
    assert!(rows.len() >= 20);

    let svcs = Api::<Service>::namespaced(env.client.clone(), &ns);
    let world = async || {
        let deployments =
            Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(env.client.clone(), &ns)
                .list(&ListParams::default())
                .await
                .unwrap();
        let mut svc_rvs = BTreeMap::new();
        for s in svcs.list(&ListParams::default()).await.unwrap() {
            svc_rvs.insert(s.name_any(), s.resource_version());
        }
        (
            deployments
                .items
                .iter()
                .map(|d| (d.name_any(), d.resource_version()))
                .collect::<BTreeMap<_, _>>(),
            svc_rvs,
            Api::<Job>::namespaced(env.client.clone(), &ns)
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .len(),
            source_counts(&env, &app).await,
            databases_of(&env, &app).await,
        )
    };
    let before = world().await;
    assert_eq!(before.0.len(), 2, "squidex and other");
    assert_eq!(before.2, 0);

    let mut report = Vec::new();
    for (name, what, plan, expect) in &rows {
        let t = Instant::now();
        let applied = env.try_apply_plan(&ns, plan).await;
        match expect {
            Expect::Schema(parts) => {
                let err =
                    applied.expect_err(&format!("{name} ({what}) must be refused by the schema"));
                for part in *parts {
                    assert!(
                        err.contains(part),
                        "{name} ({what}): schema error lacks {part:?}: {}",
                        &err[..err.len().min(600)]
                    );
                }
                assert!(env.plans(&ns).get_opt(name).await.unwrap().is_none());
            }
            Expect::Refused(reason, parts) => {
                applied.unwrap_or_else(|e| panic!("{name} ({what}): apply failed: {e}"));
                let p = env
                    .wait_phase(&op, &ns, name, Phase::Failed, Duration::from_secs(30))
                    .await;
                let st = status(&p);
                let f = st.failure.clone().unwrap();
                assert_eq!(
                    (f.phase, f.reason.as_str()),
                    (Phase::Pending, *reason),
                    "{name} ({what}): {}",
                    f.message
                );
                for part in parts {
                    assert!(
                        f.message.contains(part.as_str()),
                        "{name} ({what}): message lacks {part:?}: {}",
                        f.message
                    );
                }
                assert!(
                    f.message.contains("nothing was changed"),
                    "{name}: {}",
                    f.message
                );
                assert_eq!(st.message, f.message, "{name}");
                assert_eq!(
                    phase_names(&p),
                    vec![Phase::Pending, Phase::Failed],
                    "{name}"
                );
                let ready = condition(&p, "Ready").unwrap();
                assert_eq!(
                    (ready.status.as_str(), ready.reason.as_str()),
                    ("False", *reason),
                    "{name}"
                );
                assert!(
                    st.read_only_since.is_none() && st.backup.is_none(),
                    "{name}"
                );
                // No secret in the status of the plans whose Secret was hostile.
                let text = serde_json::to_string(&p.status).unwrap();
                assert_no_secret(&text, "pg-Secret-1", name);
                assert_no_secret(&text, "closed-Secret-2", name);
            }
        }
        let now = world().await;
        assert_eq!(now, before, "{name} ({what}) changed something");
        report.push(format!(
            "{name:>16}  {:>5} ms  {what}",
            t.elapsed().as_millis()
        ));
    }

    // Unknown fields sent by create/update (client-side `kubectl apply`, or `kubectl create
    // --validate=false`) are pruned silently by Kubernetes 1.20: the plan is stored without them
    // and validates. Suspended, so it stops at Pending having checked the cluster.
    let mut unknown = edit("unknown", &|p| {
        p["spec"]["suspend"] = json!(true);
        p["spec"]["bogus"] = json!({"rm": "-rf"});
        p["spec"]["migration"]["timout"] = json!("0s");
        p["spec"]["database"]["connectionSecret"]["namespace"] = json!("kube-system");
    });
    unknown["spec"]["target"]["imagePullPolicy"] = json!("Never");
    let dynamic = Api::<kube::api::DynamicObject>::namespaced_with(
        env.client.clone(),
        &ns,
        &kube::api::ApiResource::erase::<UpgradePlan>(&()),
    );
    let created: kube::api::DynamicObject = serde_json::from_value(unknown).unwrap();
    dynamic
        .create(&kube::api::PostParams::default(), &created)
        .await
        .expect("created, unknown fields pruned");
    let stored = dynamic.get("unknown").await.unwrap();
    let spec = &stored.data["spec"];
    assert!(spec.get("bogus").is_none(), "{spec}");
    assert!(spec["migration"].get("timout").is_none(), "{spec}");
    assert!(
        spec["database"]["connectionSecret"]
            .get("namespace")
            .is_none()
    );
    assert!(spec["target"].get("imagePullPolicy").is_none());
    assert_eq!(spec["migration"]["timeout"], "3m", "the real field is kept");
    let suspended = env
        .wait_plan(
            &op,
            &ns,
            "unknown",
            "suspended after the preflight",
            Duration::from_secs(30),
            |p| {
                p.status
                    .as_ref()
                    .is_some_and(|s| s.message.starts_with("Suspended before EnteringReadOnly"))
            },
        )
        .await;
    assert_eq!(status(&suspended).phase, Phase::Pending);
    assert_eq!(world().await, before, "the suspended plan changed nothing");
    env.plans(&ns)
        .delete("unknown", &DeleteParams::default())
        .await
        .unwrap();
    let start = Instant::now();
    while env.plans(&ns).get_opt("unknown").await.unwrap().is_some() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the suspended plan was not let go"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(world().await, before);
    report.push(format!(
        "{:>16}  {:>5} ms  unknown fields sent by create: accepted, pruned",
        "unknown", 0
    ));
    eprintln!("{}", report.join("\n"));

    assert_eq!(env.tagged(&app.content_db, "before-upgrade").await, 3);
    let _ = Api::<k8s_openapi::api::core::v1::Namespace>::all(env.client.clone())
        .delete(&elsewhere, &DeleteParams::default())
        .await;
    let mut dbs = all_dbs(&app, &[]);
    dbs.push(occupied);
    env.finish(&op, &ns, &dbs).await;
}
