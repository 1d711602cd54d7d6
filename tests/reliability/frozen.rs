//! A plan acts only on what it resolved when it started (issue 13, items 1 and 3): edits of
//! the spec after `Pending` retarget nothing, and a Deployment given the old version's name
//! later is not the old version.

use std::time::Duration;

use cutover::crd::{CleanupState, CleanupStepName, Phase};
use kube::ResourceExt;
use mongodb::bson::{Document, doc};
use serde_json::json;

use crate::common::*;
use crate::support::*;

/// After `Succeeded`, a database is added to `spec.database.databases` and the old version's
/// Deployment is replaced by another one of the same name. The cleanup then drops only the
/// recorded sources and deletes nothing: the added database keeps its document, the new
/// Deployment its uid. Before the freeze, the drop took its list from the live spec (the added
/// database was dropped) and the delete its name (the new Deployment was deleted).
#[tokio::test]
async fn edits_after_the_start_retarget_no_cleanup() {
    let Some(env) = env().await else { return };
    let (app, _) = app_with_writes(&env, "frozen").await;
    let innocent = format!("Innocent_{}", app.id);
    env.mongo
        .database(&innocent)
        .collection::<Document>("Keep")
        .insert_one(doc! {"precious": true})
        .await
        .unwrap();

    let op = Operator::start(&app.ns);
    let mut plan = squidex_plan("frz", &app, 2);
    plan["spec"]["cleanup"] = json!({
        "scaleDownBlueAfter": "0s",
        "deleteBlueAfter": "25s",
        "dropSourceDatabasesAfter": "25s",
    });
    let mut databases = plan["spec"]["database"]["databases"].clone();
    env.apply(&app.ns, plan).await;
    env.wait_phase(&op, &app.ns, "frz", Phase::Succeeded, PLAN_TIMEOUT)
        .await;

    // The spec edit: one more database to "clean up".
    databases
        .as_array_mut()
        .unwrap()
        .push(json!({"name": innocent, "env": ["INNOCENT_DB"]}));
    env.patch_plan(
        &app.ns,
        "frz",
        json!({"spec": {"database": {"databases": databases}}}),
    )
    .await;
    // The old version replaced by another Deployment of the same name.
    let deployments = kube::Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(
        env.client.clone(),
        &app.ns,
    );
    deployments
        .delete(BLUE, &Default::default())
        .await
        .expect("delete the old version");
    while env.deployment(&app.ns, BLUE).await.is_some() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    env.apply(
        &app.ns,
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": BLUE, "labels": {"app": "other"}},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "other"}},
                "template": {
                    "metadata": {"labels": {"app": "other"}},
                    "spec": {"containers": [{"name": "other", "image": cutover::fixtures::appsim_image(1)}]}
                }
            }
        }),
    )
    .await;
    let other_uid = env.deployment(&app.ns, BLUE).await.unwrap().uid();

    let p = env
        .wait_cleanup(
            &op,
            &app.ns,
            "frz",
            CleanupStepName::DropSourceDatabases,
            CleanupState::Done,
            PLAN_TIMEOUT,
        )
        .await;
    let p = if cleanup_step(&p, CleanupStepName::DeleteBlue)
        .is_some_and(|s| s.state == CleanupState::Done)
    {
        p
    } else {
        env.wait_cleanup(
            &op,
            &app.ns,
            "frz",
            CleanupStepName::DeleteBlue,
            CleanupState::Done,
            PLAN_TIMEOUT,
        )
        .await
    };

    let names = database_names(&env).await;
    assert!(
        !names.contains(&app.db) && !names.contains(&app.content_db),
        "the recorded sources were dropped: {names:?}"
    );
    assert_eq!(
        env.mongo
            .database(&innocent)
            .collection::<Document>("Keep")
            .count_documents(doc! {})
            .await
            .unwrap(),
        1,
        "the database added to the spec after the start was not dropped"
    );
    assert_eq!(
        env.deployment(&app.ns, BLUE).await.map(|d| d.uid()),
        Some(other_uid),
        "the Deployment that took the old version's name was not deleted"
    );
    let ignored = condition(&p, "SpecChangeIgnored").expect("SpecChangeIgnored condition");
    assert_eq!(ignored.status, "True");
    assert!(
        ignored.message.contains("spec.database.databases"),
        "{}",
        ignored.message
    );
    assert!(env.has_event(&app.ns, "SpecChangeIgnored", "Warning").await);
    let recorded = status(&p).targets.expect("status.targets");
    assert_eq!(recorded.databases.len(), 2);
    assert!(recorded.blue_deployment.uid.is_some());

    // Reverted, the report clears.
    databases.as_array_mut().unwrap().pop();
    env.patch_plan(
        &app.ns,
        "frz",
        json!({"spec": {"database": {"databases": databases}}}),
    )
    .await;
    env.wait_plan(
        &op,
        &app.ns,
        "frz",
        "SpecChangeIgnored False",
        PLAN_TIMEOUT,
        |p| condition(p, "SpecChangeIgnored").is_some_and(|c| c.status == "False"),
    )
    .await;

    let mut dbs = all_dbs(&app, &["frz"]);
    dbs.push(innocent);
    env.finish(&op, &app.ns, &dbs).await;
}
