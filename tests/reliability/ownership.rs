//! Own before you destroy (issue 13, item 4, and the foreign Job of item 9): an object under a
//! name the plan needs that is not the plan's own (no owner reference to its uid, whatever
//! labels it copies) is never adopted, overwritten, waited on or deleted. Before the plan
//! started it refuses the plan at `Pending`; appearing mid-way it fails the plan, which
//! restores the old version.

use std::time::Duration;

use cutover::crd::{Outcome, Phase};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::common::*;
use crate::support::*;

/// A Job someone else made under `name`, carrying the plan label of `plan` (a copied label
/// proves nothing), that runs for ten minutes.
async fn foreign_job(env: &Env, ns: &str, name: &str, plan: &str) -> Job {
    let job: Job = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "labels": {"cutover.dev/plan": plan, "cutover.dev/role": "backup"}},
        "spec": {"backoffLimit": 0, "template": {
            "metadata": {"labels": {"cutover.dev/plan": plan}},
            "spec": {"restartPolicy": "Never", "containers": [{
                "name": "someone-elses", "image": "busybox",
                "command": ["sh", "-c", "sleep 600"]
            }]}
        }}
    }))
    .unwrap();
    Api::<Job>::namespaced(env.client.clone(), ns)
        .create(&PostParams::default(), &job)
        .await
        .expect("create the foreign Job")
}

/// What of a foreign object must stay as its owner made it: the same object (uid), never
/// deleted, never given an owner, never written by cutover's field manager.
fn assert_left_alone(before_uid: &str, after: &impl kube::Resource) {
    let m = after.meta();
    assert_eq!(
        m.uid.as_deref(),
        Some(before_uid),
        "the object was replaced"
    );
    assert!(
        m.deletion_timestamp.is_none(),
        "the object is being deleted"
    );
    assert!(
        m.owner_references.as_deref().unwrap_or_default().is_empty(),
        "the object was adopted: {:?}",
        m.owner_references
    );
    let managers: Vec<&str> = m
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|f| f.manager.as_deref())
        .collect();
    assert!(
        !managers.contains(&"cutover"),
        "cutover wrote it: {managers:?}"
    );
}

/// A Secret named `<green>-env` (with the plan label copied) and a running Job named
/// `<plan>-backup` exist before the plan: on the old code the plan went ahead, made the app
/// read-only, force-applied its own data over the Secret (and deleted it on a failure), and
/// took the Job for its backup (409 = done), waiting on it. Now the plan is refused at
/// `Pending` naming both; the app is never made read-only and both objects stay as they were.
#[tokio::test]
async fn names_taken_by_foreign_objects_refuse_the_plan_before_anything_moves() {
    let Some(env) = env().await else { return };
    let app = env.blue_app("rel-own-pre", AppOptions::default()).await;
    let plan = "own";
    env.apply(
        &app.ns,
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "squidex-own-env", "labels": {"cutover.dev/plan": plan}},
            "stringData": {"STORE__MONGODB__CONFIGURATION": "someone else's value"}
        }),
    )
    .await;
    let secrets = Api::<Secret>::namespaced(env.client.clone(), &app.ns);
    let secret = secrets.get("squidex-own-env").await.unwrap();
    let job = foreign_job(&env, &app.ns, "own-backup", plan).await;
    let blue_version = env
        .deployment(&app.ns, BLUE)
        .await
        .unwrap()
        .resource_version();
    let dbs_before = databases_of(&env, &app).await;
    let counts_before = source_counts(&env, &app).await;

    let op = Operator::start(&app.ns);
    env.apply(&app.ns, squidex_plan(plan, &app, 2)).await;
    let p = env
        .wait_phase(&op, &app.ns, plan, Phase::Failed, Duration::from_secs(60))
        .await;
    let f = status(&p).failure.unwrap();
    assert_eq!(
        (f.phase, f.reason.as_str()),
        (Phase::Pending, "PreflightFailed"),
        "{}",
        f.message
    );
    for want in [
        "Secret \"squidex-own-env\" already exists and does not belong to this plan (it has no owner reference to this plan; cutover never adopts, overwrites or deletes it): set spec.target.deploymentName to a free name",
        "Job \"own-backup\" already exists and does not belong to this plan",
    ] {
        assert!(f.message.contains(want), "{:?} lacks {want:?}", f.message);
    }
    assert_eq!(phase_names(&p), vec![Phase::Pending, Phase::Failed]);
    assert!(status(&p).read_only_since.is_none());

    // Give a (wrongly) started plan time to act before looking again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let blue = env.deployment(&app.ns, BLUE).await.unwrap();
    assert_eq!(blue.resource_version(), blue_version, "the app was touched");
    assert_eq!(container_env(&blue, RO), None, "the app was made read-only");
    let after = secrets.get("squidex-own-env").await.unwrap();
    assert_eq!(
        (after.resource_version(), &after.data),
        (secret.resource_version(), &secret.data),
        "the foreign Secret changed"
    );
    assert_left_alone(&secret.uid().unwrap(), &after);
    let job_after = Api::<Job>::namespaced(env.client.clone(), &app.ns)
        .get("own-backup")
        .await
        .expect("the foreign Job is still there");
    assert_left_alone(&job.uid().unwrap(), &job_after);
    assert_eq!(job_after.spec, job.spec, "the foreign Job changed");
    assert!(env.deployment(&app.ns, "squidex-own").await.is_none());
    assert_eq!(
        databases_of(&env, &app).await,
        dbs_before,
        "a clone appeared"
    );
    assert_eq!(source_counts(&env, &app).await, counts_before);
    let codes = env
        .post_contents(&app.ns, "app=squidex", "after-refusal", 1)
        .await;
    assert_eq!(codes, vec![201], "the app still accepts writes");
    env.finish(&op, &app.ns, &all_dbs(&app, &[plan])).await;
}

/// A running Job named `<plan>-backup` and a Deployment named like the new version, both
/// carrying the plan label, are created by someone else after the plan passed `Pending` (the
/// old version's read-only rollout is held by pausing its Deployment, so they surely land
/// first). On the old code the plan's create got 409, took that for its own Job and waited on
/// a Job it ignored, read-only, for ever (and would have applied the new version over the
/// Deployment with force, and deleted it on a rollback). Now the plan fails
/// (`ForeignObject`, naming both), restores the old version read-write, and leaves the Job
/// running and both objects unowned and unwritten.
#[tokio::test]
async fn objects_taking_the_plans_names_mid_way_fail_the_plan_and_are_left_alone() {
    let Some(env) = env().await else { return };
    let (app, before) = app_with_writes(&env, "rel-own-mid").await;
    let plan = "midway";
    let deployments = Api::<Deployment>::namespaced(env.client.clone(), &app.ns);
    let pause = |paused: bool| {
        let deployments = deployments.clone();
        async move {
            deployments
                .patch(
                    BLUE,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"paused": paused}})),
                )
                .await
                .unwrap();
        }
    };
    pause(true).await;
    let selector = env.service_selector(&app.ns, "squidex").await;

    let mut op = Operator::start(&app.ns);
    env.apply_until(
        &op,
        &app.ns,
        squidex_plan(plan, &app, 2),
        Phase::EnteringReadOnly,
        PLAN_TIMEOUT,
    )
    .await;
    // Both foreign objects must be there when the operator looks next: a running operator may
    // reconcile between the two creates and name only the first (seen in CI under load).
    op.kill_hard().await;
    let job = foreign_job(&env, &app.ns, "midway-backup", plan).await;
    let foreign_deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "squidex-midway", "labels": {"cutover.dev/plan": plan}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "someone-else"}},
            "template": {
                "metadata": {"labels": {"app": "someone-else"}},
                "spec": {"containers": [{"name": "x", "image": "busybox"}]}
            }
        }
    }))
    .unwrap();
    let foreign_deployment = deployments
        .create(&PostParams::default(), &foreign_deployment)
        .await
        .expect("create the foreign Deployment");
    let op = Operator::start(&app.ns);
    env.wait_plan(
        &op,
        &app.ns,
        plan,
        "a ForeignObject failure",
        PLAN_TIMEOUT,
        |p| {
            p.status
                .as_ref()
                .and_then(|s| s.failure.as_ref())
                .is_some_and(|f| f.reason == "ForeignObject")
        },
    )
    .await;
    pause(false).await;
    let p = env
        .wait_phase(&op, &app.ns, plan, Phase::Failed, PLAN_TIMEOUT)
        .await;
    let f = status(&p).failure.unwrap();
    assert_eq!(f.phase, Phase::EnteringReadOnly, "{}", f.message);
    for want in [
        "Job \"midway-backup\"",
        "Deployment \"squidex-midway\"",
        "appeared under a name this plan needs and is not its own (no owner reference to this plan): cutover leaves it alone and does not wait on it",
    ] {
        assert!(f.message.contains(want), "{:?} lacks {want:?}", f.message);
    }
    assert_unwound(&p, Phase::EnteringReadOnly, Outcome::Failed, Phase::Failed);
    assert!(env.has_event(&app.ns, "ForeignObject", "Warning").await);

    let job_after = Api::<Job>::namespaced(env.client.clone(), &app.ns)
        .get("midway-backup")
        .await
        .expect("the foreign Job is still there");
    assert_left_alone(&job.uid().unwrap(), &job_after);
    assert_eq!(job_after.spec, job.spec, "the foreign Job changed");
    assert_eq!(
        job_after.status.and_then(|s| s.active),
        Some(1),
        "the foreign Job was stopped"
    );
    let deployment_after = env
        .deployment(&app.ns, "squidex-midway")
        .await
        .expect("the foreign Deployment is still there");
    assert_left_alone(&foreign_deployment.uid().unwrap(), &deployment_after);
    assert_eq!(
        deployment_after.spec, foreign_deployment.spec,
        "the foreign Deployment changed"
    );
    assert_no_clones(&env, plan).await;
    assert_eq!(source_counts(&env, &app).await, before);
    // It failed before the Service was pinned to the old version: it selects as it did.
    assert_eq!(env.service_selector(&app.ns, "squidex").await, selector);
    let blue = env.deployment(&app.ns, BLUE).await.unwrap();
    assert_eq!(container_env(&blue, RO), None, "read-only lifted");
    env.wait_rollout(&app.ns, BLUE, Duration::from_secs(60))
        .await;
    let codes = env
        .post_contents(&app.ns, "app=squidex", "after-rollback", 1)
        .await;
    assert_eq!(codes, vec![201], "the old version accepts writes again");
    env.finish(&op, &app.ns, &all_dbs(&app, &[plan])).await;
}
