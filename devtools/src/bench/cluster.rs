//! The local environment as the benchmark uses it: a kube client from KUBECONFIG, the
//! MongoDB server from MONGODB_URI, namespaces of its own, and cleaning up after itself.

use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;

/// Field manager of everything the benchmark writes.
pub const MANAGER: &str = "cutover-bench";
/// Label on the benchmark's namespaces, so a leftover is easy to find.
pub const BENCH_LABEL: &str = "cutover.dev/bench";

pub struct Cluster {
    pub client: Client,
    pub mongo_uri: String,
    pub mongo: mongodb::Client,
}

pub use crate::teardown::plan_resource;

/// A short unique suffix for names of namespaces and databases.
pub fn unique() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!(
        "{:x}{:x}",
        (nanos as u64) & 0xffffff,
        std::process::id() & 0xfff
    )
}

pub use crate::watchlog::now_ms;

impl Cluster {
    /// The environment `eval "$(hack/dev-env env)"` describes.
    pub async fn connect() -> anyhow::Result<Cluster> {
        let uri = std::env::var("MONGODB_URI").context(
            "MONGODB_URI is not set: run `hack/dev-env up` and `eval \"$(hack/dev-env env)\"`",
        )?;
        std::env::var("KUBECONFIG")
            .context("KUBECONFIG is not set: run `eval \"$(hack/dev-env env)\"`")?;
        let client = Client::try_default()
            .await
            .context("kube client from KUBECONFIG")?;
        let mongo = mongodb::Client::with_uri_str(&uri).await?;
        Ok(Cluster {
            client,
            mongo_uri: uri,
            mongo,
        })
    }

    pub async fn create_namespace(&self, name: &str) -> anyhow::Result<()> {
        let ns: Namespace = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {BENCH_LABEL: "true"}}
        }))?;
        Api::<Namespace>::all(self.client.clone())
            .create(&Default::default(), &ns)
            .await
            .with_context(|| format!("creating namespace {name}"))?;
        Ok(())
    }

    pub fn plans(&self, ns: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), ns, &plan_resource())
    }

    /// Server-side apply of a plan (spec and metadata).
    pub async fn apply_plan(&self, ns: &str, plan: &serde_json::Value) -> anyhow::Result<()> {
        let name = plan["metadata"]["name"].as_str().unwrap_or_default();
        self.plans(ns)
            .patch(
                name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(plan),
            )
            .await
            .with_context(|| format!("applying UpgradePlan {ns}/{name}"))?;
        Ok(())
    }

    /// The plan's status as JSON (Null before the operator wrote one).
    pub async fn plan_status(&self, ns: &str, name: &str) -> anyhow::Result<serde_json::Value> {
        let p = self.plans(ns).get(name).await?;
        Ok(p.data.get("status").cloned().unwrap_or_default())
    }

    /// Deletes the namespace (plans first, waiting up to `wait_for_plans` for their
    /// finalizers) and drops the databases.
    pub async fn cleanup(&self, ns: &str, dbs: &[String], wait_for_plans: Duration) {
        crate::teardown::remove_namespace(&self.client, &self.mongo, ns, dbs, wait_for_plans).await;
    }
}
