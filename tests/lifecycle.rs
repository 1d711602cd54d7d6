//! Upgrades in a row, as platform teams run them (issue 14): each plan upgrades what the
//! previous one produced.

mod common;

use std::time::Duration;

use common::*;
use cutover::crd::Phase;
use cutover::fixtures::SquidexPlan;

const PLAN_TIMEOUT: Duration = Duration::from_secs(180);
const TRACK: &str = "cutover.dev/track";

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
    let codes = env
        .post_contents(&app.ns, &format!("{TRACK}={v2_deployment}"), "on-v2", 2)
        .await;
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
    // Names derive from the app's first names, not from the previous plan's.
    assert_eq!(v3_deployment, "squidex-v3");
    let (v3_db, v3_content) = (
        app.clone_of(&app.db, "v3"),
        app.clone_of(&app.content_db, "v3"),
    );
    assert_eq!(
        container_env(&v3, "STORE__MONGODB__DATABASE").as_deref(),
        Some(v3_db.as_str())
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
        "the old version stays read-only until it is scaled down"
    );
    // Writes made on v2 made it to v3, and v3 takes writes.
    // (each migration keeps the previous version's collection beside its own: count in both)
    let on_v2 = env.tagged(&v2_content, "on-v2").await;
    assert!(on_v2 >= 2, "{on_v2}");
    assert_eq!(
        env.tagged(&v3_content, "on-v2").await,
        on_v2 * 2,
        "every write on v2 is in v3's clone, in its migrated collection too"
    );
    let codes = env
        .post_contents(&app.ns, &format!("{TRACK}={v3_deployment}"), "on-v3", 1)
        .await;
    assert!(
        codes.iter().all(|c| *c == 201),
        "v3 takes writes: {codes:?}"
    );
    assert!(condition(&p, "ReconcileFailing").is_none_or(|c| c.status == "False"));

    let dbs = all_dbs(&app, &["v2", "v3"]);
    env.finish(&op, &app.ns, &dbs).await;
}

/// Five upgrades in a row with a rollback in the middle: names do not grow. Each plan derives
/// its names from the app's names before any upgrade (carried on the Deployment a plan
/// creates), so the Deployment is `squidex-v<N>` and the clones `<database>-v<N>` every time,
/// never `squidex-v2-v3-…`; every backup of the app lands under one directory, and a plan
/// rolled back in the middle changes nothing for the next one.
#[tokio::test]
async fn names_stay_as_short_after_five_upgrades_as_after_one() {
    let Some(env) = env().await else { return };
    let app = env.blue_app("five", AppOptions::default()).await;
    let op = Operator::start(&app.ns);
    let mut dbs = vec![app.db.clone(), app.content_db.clone()];
    let (mut deployment, mut db, mut content) = (
        "squidex".to_string(),
        app.db.clone(),
        app.content_db.clone(),
    );
    for version in 2..=6u32 {
        if version == 4 {
            // A plan rolled back before the lift: the next one starts from the same app.
            let mut tried = SquidexPlan {
                deployment: deployment.clone(),
                ..SquidexPlan::appsim(&db, &content, version)
            }
            .object_json("v4try");
            tried["spec"]["promotion"] = serde_json::json!({"mode": "manual"});
            env.apply(&app.ns, tried).await;
            env.wait_phase(
                &op,
                &app.ns,
                "v4try",
                Phase::AwaitingPromotion,
                PLAN_TIMEOUT,
            )
            .await;
            env.patch_plan(
                &app.ns,
                "v4try",
                serde_json::json!({"spec": {"traffic": "blue"}}),
            )
            .await;
            env.wait_phase(&op, &app.ns, "v4try", Phase::RolledBack, PLAN_TIMEOUT)
                .await;
            dbs.push(format!("{}-v4try", app.db));
            dbs.push(format!("{}-v4try", app.content_db));
        }
        let name = format!("v{version}");
        let plan = SquidexPlan {
            deployment: deployment.clone(),
            ..SquidexPlan::appsim(&db, &content, version)
        };
        env.apply(&app.ns, plan.object_json(&name)).await;
        let p = env
            .wait_phase(&op, &app.ns, &name, Phase::Succeeded, PLAN_TIMEOUT)
            .await;
        let st = status(&p);
        let targets = st.targets.expect("status.targets");
        assert_eq!(targets.green_deployment, format!("squidex-{name}"));
        assert_eq!(
            targets
                .databases
                .iter()
                .map(|d| d.clone.clone())
                .collect::<Vec<_>>(),
            vec![
                format!("{}-{name}", app.db),
                format!("{}-{name}", app.content_db)
            ],
            "clone names derive from the app's first databases"
        );
        assert_eq!(targets.backup_dir, format!("/backup/squidex/{name}"));
        deployment = targets.green_deployment.clone();
        db = targets.databases[0].clone.clone();
        content = targets.databases[1].clone.clone();
        dbs.push(db.clone());
        dbs.push(content.clone());
        assert_eq!(
            env.track(&app.ns, "squidex").await.as_deref(),
            Some(deployment.as_str())
        );
    }
    let codes = env
        .post_contents(&app.ns, &format!("{TRACK}={deployment}"), "on-v6", 1)
        .await;
    assert!(
        codes.iter().all(|c| *c == 201),
        "v6 takes writes: {codes:?}"
    );
    env.finish(&op, &app.ns, &dbs).await;
}
