//! The app under upgrade, as the tests deploy it: appsim ("blue", image
//! `cutover.dev/appsim:1`, run by podsim) on two databases, with its Secret, Service and a
//! backup PVC.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret, Service};
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use super::cluster::{Cluster, MANAGER};

pub const DEPLOYMENT: &str = "squidex";
pub const SERVICE: &str = "squidex";

/// Creates the Secret, PVC, Deployment and Service and waits for the app to be ready.
pub async fn deploy_blue(
    c: &Cluster,
    ns: &str,
    db: &str,
    content_db: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let pp = PatchParams::apply(MANAGER).force();
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "mongo"},
        "stringData": {"uri": c.mongo_uri}
    });
    Api::<Secret>::namespaced(c.client.clone(), ns)
        .patch("mongo", &pp, &Patch::Apply(&secret))
        .await
        .context("Secret mongo")?;
    let pvc = json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "backups"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}}
    });
    Api::<PersistentVolumeClaim>::namespaced(c.client.clone(), ns)
        .patch("backups", &pp, &Patch::Apply(&pvc))
        .await
        .context("PVC backups")?;
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": DEPLOYMENT, "labels": {"app": "squidex"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "squidex"}},
            "template": {
                "metadata": {"labels": {"app": "squidex"}},
                "spec": {"containers": [{
                    "name": "squidex",
                    "image": "cutover.dev/appsim:1",
                    "ports": [{"containerPort": 8080}],
                    "env": [
                        {"name": "STORE__MONGODB__CONFIGURATION", "valueFrom": {"secretKeyRef": {"name": "mongo", "key": "uri"}}},
                        {"name": "STORE__MONGODB__DATABASE", "value": db},
                        {"name": "STORE__MONGODB__CONTENTDATABASE", "value": content_db}
                    ],
                    "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}}
                }]}
            }
        }
    });
    let deployments = Api::<Deployment>::namespaced(c.client.clone(), ns);
    deployments
        .patch(DEPLOYMENT, &pp, &Patch::Apply(&deployment))
        .await
        .context("Deployment squidex")?;
    let service = json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": SERVICE},
        "spec": {"selector": {"app": "squidex"}, "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}
    });
    Api::<Service>::namespaced(c.client.clone(), ns)
        .patch(SERVICE, &pp, &Patch::Apply(&service))
        .await
        .context("Service squidex")?;
    wait_rollout(&deployments, DEPLOYMENT, timeout).await
}

/// Rolled out as the operator judges it: observed, every replica updated and ready.
pub fn rolled_out(d: &serde_json::Value) -> bool {
    let want = d["spec"]["replicas"].as_i64().unwrap_or(1);
    let st = &d["status"];
    let n = |k: &str| st[k].as_i64().unwrap_or(0);
    st["observedGeneration"].as_i64().unwrap_or(0)
        >= d["metadata"]["generation"].as_i64().unwrap_or(0)
        && n("updatedReplicas") >= want
        && n("readyReplicas") >= want
        && n("replicas") == want
}

async fn wait_rollout(api: &Api<Deployment>, name: &str, timeout: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let d = api.get(name).await?;
        if rolled_out(&serde_json::to_value(&d)?) {
            return Ok(());
        }
        if start.elapsed() > timeout {
            bail!(
                "Deployment {name} did not roll out within {timeout:?}: {:?}",
                d.status
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
