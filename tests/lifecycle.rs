//! Upgrades in a row, as platform teams run them (issue 14): each plan upgrades what the
//! previous one produced.

mod common;

use std::time::Duration;

use common::*;
use cutover::crd::Phase;
use cutover::fixtures::SquidexPlan;

const PLAN_TIMEOUT: Duration = Duration::from_secs(180);

/// v1 → v2, then v2 → v3 of the Deployment and clones the first plan handed over. The second
/// plan makes a Deployment read-only that cutover itself created by server-side apply; before,
/// that apply (under the same field manager, with only the variable and the label) told the API
/// server to remove every other field, and the plan retried `set_read_only` forever.
#[tokio::test]
async fn a_second_upgrade_upgrades_what_the_first_produced() {
    let Some(env) = env().await else { return };
    let app = env.blue_app("rows", AppOptions::default()).await;
    let op = Operator::start(&app.ns);

    env.apply(&app.ns, squidex_plan("v2", &app, 2)).await;
    env.wait_phase(&op, &app.ns, "v2", Phase::Succeeded, PLAN_TIMEOUT)
        .await;
    let first = env.plans(&app.ns).get("v2").await.unwrap();
    let v2_deployment = status(&first).green_deployment.expect("the new Deployment");
    let (v2_db, v2_content) = (
        app.clone_of(&app.db, "v2"),
        app.clone_of(&app.content_db, "v2"),
    );
    let codes = env.post_contents(&app.ns, "app=squidex", "on-v2", 2).await;
    assert!(
        codes.iter().all(|c| *c == 201),
        "v2 takes writes: {codes:?}"
    );

    let second = SquidexPlan {
        deployment: v2_deployment.clone(),
        ..SquidexPlan::appsim(&v2_db, &v2_content, 3)
    };
    env.apply(&app.ns, second.object_json("v3")).await;
    let p = env
        .wait_phase(&op, &app.ns, "v3", Phase::Succeeded, PLAN_TIMEOUT)
        .await;
    assert_eq!(phase_names(&p), upgrade_walk());
    let v3_deployment = status(&p).green_deployment.expect("the newer Deployment");
    assert_eq!(
        env.track(&app.ns, "squidex").await.as_deref(),
        Some(v3_deployment.as_str()),
        "the Service selects the third version"
    );
    let v3 = env.deployment(&app.ns, &v3_deployment).await.unwrap();
    assert_eq!(
        container_env(&v3, "STORE__MONGODB__DATABASE").as_deref(),
        Some(app.clone_of(&v2_db, "v3").as_str())
    );
    // The second version's Deployment kept its fields through read-only and back.
    let v2 = env.deployment(&app.ns, &v2_deployment).await.unwrap();
    let spec = v2.spec.as_ref().unwrap();
    assert!(spec.selector.match_labels.is_some(), "selector kept");
    assert_eq!(
        spec.template.spec.as_ref().unwrap().containers[0]
            .image
            .as_deref(),
        Some(cutover::fixtures::appsim_image(2).as_str())
    );
    assert_eq!(
        container_env(&v2, "MODE__ISREADONLY").as_deref(),
        Some("true"),
        "the old version stays read-only, scaled down"
    );
    assert_eq!(spec.replicas, Some(0));
    // Writes made on v2 made it to v3, and v3 takes writes.
    // (each migration keeps the previous version's collection beside its own: count in both)
    let on_v2 = env.tagged(&v2_content, "on-v2").await;
    assert!(on_v2 >= 2, "{on_v2}");
    assert_eq!(
        env.tagged(&app.clone_of(&v2_content, "v3"), "on-v2").await,
        on_v2 * 2,
        "every write on v2 is in v3's clone, in its migrated collection too"
    );
    let codes = env.post_contents(&app.ns, "app=squidex", "on-v3", 1).await;
    assert!(
        codes.iter().all(|c| *c == 201),
        "v3 takes writes: {codes:?}"
    );
    assert!(condition(&p, "ReconcileFailing").is_none_or(|c| c.status == "False"));

    let mut dbs = all_dbs(&app, &["v2"]);
    dbs.push(app.clone_of(&v2_db, "v3"));
    dbs.push(app.clone_of(&v2_content, "v3"));
    env.finish(&op, &app.ns, &dbs).await;
}
