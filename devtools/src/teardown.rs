//! Removing what a test or benchmark made: its namespace (plans first) and its databases.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;

/// The UpgradePlan resource, without depending on the operator's crate.
pub fn plan_resource() -> ApiResource {
    ApiResource {
        group: "cutover.dev".into(),
        version: "v1alpha1".into(),
        api_version: "cutover.dev/v1alpha1".into(),
        kind: "UpgradePlan".into(),
        plural: "upgradeplans".into(),
    }
}

/// Deletes the namespace and drops `dbs`, best effort. Plans go first and get up to
/// `wait_for_plans` for an operator that may still run to finish their finalizers; whatever is
/// left after that has no operator any more, so its finalizer is cleared by hand, or the
/// namespace would stay Terminating.
pub async fn remove_namespace(
    client: &Client,
    mongo: &mongodb::Client,
    ns: &str,
    dbs: &[String],
    wait_for_plans: Duration,
) {
    let plans: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &plan_resource());
    let _ = plans
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await;
    let start = Instant::now();
    while start.elapsed() < wait_for_plans {
        match plans.list_metadata(&ListParams::default()).await {
            Ok(l) if l.items.is_empty() => break,
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    if let Ok(left) = plans.list_metadata(&ListParams::default()).await {
        for p in left.items {
            let clear = Patch::Merge(json!({"metadata": {"finalizers": null}}));
            let _ = plans
                .patch(
                    &p.metadata.name.unwrap_or_default(),
                    &PatchParams::default(),
                    &clear,
                )
                .await;
        }
    }
    let _ = Api::<Namespace>::all(client.clone())
        .delete(ns, &DeleteParams::default())
        .await;
    for db in dbs {
        let _ = mongo.database(db).drop().await;
    }
}
