//! One active plan per target: a second plan for the same Deployment or a shared database
//! is refused at Pending and touches nothing.

use std::collections::BTreeSet;
use std::time::Duration;

use cutover::crd::Phase;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Service;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::common::*;
use crate::support::*;

/// How long a refused plan may take to fail (it fails before any side effect).
const REFUSED: Duration = Duration::from_secs(30);

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
    let waiting = Phase::AwaitingPromotion;
    env.apply_until(&op, &app.ns, first.clone(), waiting, PLAN_TIMEOUT)
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
    let second = squidex_plan("second", &app, 3);
    let second = env
        .apply_until(&op, &app.ns, second, Phase::Failed, REFUSED)
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
    let third = env
        .apply_until(&op, &app.ns, third, Phase::Failed, REFUSED)
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
    env.apply_until(&op, &app.ns, first, Phase::Succeeded, PLAN_TIMEOUT)
        .await;
    assert_eq!(
        env.track(&app.ns, BLUE).await.as_deref(),
        Some("squidex-first")
    );

    env.finish(&op, &app.ns, &all_dbs(&app, &["first", "second", "third"]))
        .await;
}
