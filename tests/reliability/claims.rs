//! Claims (issue 13 items 5 and 7): a plan reserves its databases and Deployment in the
//! registry on the MongoDB server (`cutover.claims`) before its first side effect. Two plans
//! whose clone names collide, in two namespaces watched by two operators, cannot both start;
//! a plan being deleted keeps its Deployment until it has rolled back; every claim is given
//! back when the plan ends, so a later plan can use the names.

use std::time::{Duration, Instant};

use cutover::crd::Phase;
use futures::TryStreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use mongodb::bson::{Document, doc};
use serde_json::json;

use crate::common::*;
use crate::support::*;

/// How long a refused plan may take to fail (it fails before any side effect).
const REFUSED: Duration = Duration::from_secs(30);

/// The registry's documents held by the plan with this uid.
async fn claims_of(env: &Env, uid: &str) -> Vec<Document> {
    env.mongo
        .database("cutover")
        .collection::<Document>("claims")
        .find(doc! {"uid": uid})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

async fn claim(env: &Env, id: &str) -> Option<Document> {
    env.mongo
        .database("cutover")
        .collection::<Document>("claims")
        .find_one(doc! {"_id": id})
        .await
        .unwrap()
}

async fn uid_of(env: &Env, ns: &str, plan: &str) -> String {
    env.plans(ns).get(plan).await.unwrap().uid().unwrap()
}

/// Waits until the registry holds nothing for `uid`.
async fn wait_released(env: &Env, uid: &str) {
    let start = Instant::now();
    loop {
        let left = claims_of(env, uid).await;
        if left.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "claims left behind: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn jobs_in(env: &Env, ns: &str) -> Vec<String> {
    Api::<Job>::namespaced(env.client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|j| j.name_any())
        .collect()
}

/// Plan `v2` in namespace A claims its names and waits (suspended) before its first side
/// effect, so its clones do not exist yet. Plan `v2` in namespace B, on the same server, whose
/// first clone has the same name, ends Failed at Pending naming A's plan: its app is never
/// made read-only and no Job starts. A then succeeds and gives every claim back.
#[tokio::test]
async fn colliding_clone_names_across_namespaces_cannot_both_start() {
    let Some(env) = env().await else { return };
    let a = env.blue_app("rel-claim-a", AppOptions::default()).await;
    let b = env.blue_app("rel-claim-b", AppOptions::default()).await;
    let op_a = Operator::start(&a.ns);
    let op_b = Operator::start(&b.ns);

    let mut first = squidex_plan("v2", &a, 2);
    first["spec"]["suspend"] = json!(true);
    env.apply(&a.ns, first.clone()).await;
    env.wait_plan(
        &op_a,
        &a.ns,
        "v2",
        "suspended before its first side effect",
        PLAN_TIMEOUT,
        |p| {
            p.status
                .as_ref()
                .is_some_and(|s| s.message.contains("Suspended before EnteringReadOnly"))
        },
    )
    .await;
    let clone = a.clone_of(&a.db, "v2");
    assert!(
        !database_names(&env).await.contains(&clone),
        "A has not cloned yet"
    );

    // B: its own databases, but a first clone named like A's.
    let mut second = squidex_plan("v2", &b, 2);
    second["spec"]["database"]["databases"][0]["cloneName"] = json!(clone);
    let refused = env
        .apply_until(&op_b, &b.ns, second, Phase::Failed, REFUSED)
        .await;
    let f = status(&refused).failure.unwrap();
    assert_eq!(
        (f.phase, f.reason.as_str()),
        (Phase::Pending, "ClaimConflict"),
        "{}",
        f.message
    );
    assert!(
        f.message.contains(&format!(
            "database {clone:?} is claimed by UpgradePlan {}/v2",
            a.ns
        )),
        "{}",
        f.message
    );
    assert!(f.message.contains("nothing was changed"), "{}", f.message);
    assert_eq!(phase_names(&refused), vec![Phase::Pending, Phase::Failed]);
    assert!(env.has_event(&b.ns, "ClaimConflict", "Warning").await);
    // B's app was never made read-only, nothing of B's started, the clone stays A's.
    let blue_b = env.deployment(&b.ns, BLUE).await.unwrap();
    assert_eq!(container_env(&blue_b, RO), None, "B's app never read-only");
    assert!(env.deployment(&b.ns, "squidex-v2").await.is_none());
    assert!(jobs_in(&env, &b.ns).await.is_empty());
    let held = claim(&env, &format!("db:{clone}"))
        .await
        .expect("A's claim");
    assert_eq!(held.get_str("namespace").unwrap(), a.ns);
    assert_eq!(held.get_str("role").unwrap(), "clone");
    // B gave back what it got (nothing is B's).
    wait_released(&env, &uid_of(&env, &b.ns, "v2").await).await;

    // A goes on and succeeds; then its claims are all given back (no cleanup step may drop
    // its sources), so its names are free for a later plan.
    let uid_a = uid_of(&env, &a.ns, "v2").await;
    assert!(!claims_of(&env, &uid_a).await.is_empty());
    env.patch_plan(&a.ns, "v2", json!({"spec": {"suspend": false}}))
        .await;
    env.wait_phase(&op_a, &a.ns, "v2", Phase::Succeeded, PLAN_TIMEOUT)
        .await;
    wait_released(&env, &uid_a).await;
    let done = env
        .wait_plan(&op_a, &a.ns, "v2", "Claimed=False", PLAN_TIMEOUT, |p| {
            condition(p, "Claimed").is_some_and(|c| c.status == "False")
        })
        .await;
    assert_eq!(
        condition(&done, "Claimed").unwrap().reason,
        "ClaimsReleased"
    );

    env.finish(&op_a, &a.ns, &all_dbs(&a, &["v2"])).await;
    env.finish(&op_b, &b.ns, &all_dbs(&b, &["v2"])).await;
}

/// Sets the port of the old version's readiness probe: 9 holds its next rollout (nothing
/// answers there), 8080 lets it finish.
async fn probe_port(env: &Env, ns: &str, port: u16) {
    Api::<Deployment>::namespaced(env.client.clone(), ns)
        .patch(
            BLUE,
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{
                "name": "squidex",
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": port}}
            }]}}}})),
        )
        .await
        .unwrap();
}

/// A plan deleted mid-way rolls back before letting go; while it does (held here by an old
/// version that cannot roll out), a second plan for the same Deployment ends Failed at
/// Pending naming it, instead of starting under it. Once the first plan is gone, its claims
/// are too, and a third plan for the Deployment succeeds.
#[tokio::test]
async fn a_plan_being_deleted_keeps_its_deployment_until_it_let_go() {
    let Some(env) = env().await else { return };
    let (app, before) = app_with_writes(&env, "rel-claim-del").await;
    let op = Operator::start(&app.ns);

    let mut first = squidex_plan("first", &app, 2);
    first["spec"]["promotion"] = json!({"mode": "manual"});
    env.apply_until(&op, &app.ns, first, Phase::AwaitingPromotion, PLAN_TIMEOUT)
        .await;
    let uid_first = uid_of(&env, &app.ns, "first").await;

    // Deleted; its rollback waits for the old version to roll out read-write, which it
    // cannot while its readiness probe asks a port nothing listens on.
    probe_port(&env, &app.ns, 9).await;
    env.plans(&app.ns)
        .delete("first", &DeleteParams::default())
        .await
        .unwrap();
    env.wait_plan(
        &op,
        &app.ns,
        "first",
        "rolling back, held",
        PLAN_TIMEOUT,
        |p| {
            p.status.as_ref().is_some_and(|s| {
                s.phase == Phase::RollingBack && s.message.contains("to roll out read-write")
            })
        },
    )
    .await;

    let second = squidex_plan("second", &app, 3);
    let refused = env
        .apply_until(&op, &app.ns, second, Phase::Failed, REFUSED)
        .await;
    let f = status(&refused).failure.unwrap();
    assert_eq!(f.phase, Phase::Pending, "{}", f.message);
    assert!(
        ["PreflightFailed", "ClaimConflict"].contains(&f.reason.as_str()),
        "{}",
        f.reason
    );
    assert!(f.message.contains("UpgradePlan first"), "{}", f.message);
    assert!(f.message.contains("nothing was changed"), "{}", f.message);
    assert!(env.deployment(&app.ns, "squidex-second").await.is_none());
    assert!(
        !jobs_in(&env, &app.ns)
            .await
            .iter()
            .any(|j| j.starts_with("second")),
        "the refused plan started no Job"
    );
    // The first one still holds the Deployment while it rolls back.
    let held = claim(&env, &format!("deployment:{}/{BLUE}", app.ns))
        .await
        .expect("the Deployment is claimed");
    assert_eq!(held.get_str("uid").unwrap(), uid_first);

    // Let the old version roll out: the first plan finishes its rollback and lets go.
    probe_port(&env, &app.ns, 8080).await;
    let start = Instant::now();
    while env.plans(&app.ns).get_opt("first").await.unwrap().is_some() {
        assert!(
            start.elapsed() < PLAN_TIMEOUT,
            "the deleted plan never let go:\n{}",
            op.log_tail(60)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        claims_of(&env, &uid_first).await.is_empty(),
        "claims given back before the finalizer went"
    );
    assert_eq!(source_counts(&env, &app).await, before, "no data lost");
    assert_blue_serves_read_write(&env, &app, 1).await;

    // The names are free again: a later plan for the Deployment goes through.
    env.plans(&app.ns)
        .delete("second", &DeleteParams::default())
        .await
        .unwrap();
    let third = squidex_plan("third", &app, 2);
    env.apply_until(&op, &app.ns, third, Phase::Succeeded, PLAN_TIMEOUT)
        .await;
    assert_eq!(
        env.track(&app.ns, BLUE).await.as_deref(),
        Some("squidex-third")
    );

    env.finish(&op, &app.ns, &all_dbs(&app, &["first", "second", "third"]))
        .await;
}

/// The registry itself, on the real server: of two holders racing for the same names, only
/// one gets any (all or none, so neither is left half-claimed); claiming again is idempotent;
/// releasing touches only the releaser's documents.
#[tokio::test]
async fn the_registry_lets_one_holder_win_all_or_nothing() {
    use cutover::plan::claims::{ClaimRole, Holder, Wanted};
    let Some(env) = env().await else { return };
    let uri = cutover::uri::Uri::parse(env.mongo_uri.clone()).unwrap();
    let id = unique("reg");
    let holder = |n: &str| Holder {
        namespace: format!("ns-{n}"),
        plan: "v2".into(),
        uid: format!("{id}-{n}"),
    };
    let want = |names: &[&str]| -> Vec<Wanted> {
        names
            .iter()
            .map(|n| Wanted {
                id: format!("db:{id}-{n}"),
                role: ClaimRole::Clone,
            })
            .collect()
    };
    let (a, b) = (holder("a"), holder("b"));
    let c = &env.mongo;

    // Racing for overlapping sets: each ends with all of its names or none, never both
    // with some (both may lose; then each plan fails naming the other and can be retried).
    let (want_a, want_b) = (want(&["x", "y", "z"]), want(&["z", "y", "w"]));
    let (ra, rb) = tokio::join!(
        cutover::mongo::claim(c, &uri, &a, &want_a),
        cutover::mongo::claim(c, &uri, &b, &want_b),
    );
    ra.unwrap();
    rb.unwrap();
    let (held_a, held_b) = (claims_of(&env, &a.uid).await, claims_of(&env, &b.uid).await);
    assert!(
        [0, 3].contains(&held_a.len())
            && [0, 3].contains(&held_b.len())
            && (held_a.is_empty() || held_b.is_empty()),
        "a: {held_a:?}\nb: {held_b:?}"
    );
    let all: Vec<String> = want(&["x", "y", "z", "w"])
        .into_iter()
        .map(|w| w.id)
        .collect();
    cutover::mongo::release(c, &uri, &a.uid, &all)
        .await
        .unwrap();
    cutover::mongo::release(c, &uri, &b.uid, &all)
        .await
        .unwrap();

    // One after the other: the second inserts its free name first, meets the first's claim,
    // and takes the free one back.
    cutover::mongo::claim(c, &uri, &a, &want_a).await.unwrap();
    cutover::mongo::claim(c, &uri, &b, &want(&["w", "y"]))
        .await
        .unwrap();
    assert!(claims_of(&env, &b.uid).await.is_empty(), "all or nothing");
    let (winner, loser, winners) = (&a, &b, want_a);

    // Again: idempotent for the winner, still nothing for the loser.
    cutover::mongo::claim(c, &uri, winner, &winners)
        .await
        .unwrap();
    assert_eq!(claims_of(&env, &winner.uid).await.len(), 3);
    let ids: Vec<String> = winners.iter().map(|w| w.id.clone()).collect();
    // The loser cannot release the winner's claims.
    cutover::mongo::release(c, &uri, &loser.uid, &ids)
        .await
        .unwrap();
    assert_eq!(claims_of(&env, &winner.uid).await.len(), 3);
    let read = cutover::mongo::read_claims(c, &uri, &ids, "")
        .await
        .unwrap();
    assert_eq!(read.len(), 3);
    assert!(
        read.iter()
            .all(|r| r.holder == *winner && r.role == ClaimRole::Clone)
    );
    // Not held: what a drop is refused for.
    assert_eq!(
        cutover::mongo::not_held(c, &uri, &loser.uid, &ids[..1])
            .await
            .unwrap(),
        ids[..1].to_vec()
    );
    assert!(
        cutover::mongo::not_held(c, &uri, &winner.uid, &ids)
            .await
            .unwrap()
            .is_empty()
    );

    cutover::mongo::release(c, &uri, &winner.uid, &ids)
        .await
        .unwrap();
    assert!(claims_of(&env, &winner.uid).await.is_empty());
}
