//! The environment `hack/dev-env up` started: a client for the control plane and one for the
//! MongoDB-wire server, and what a test reads or removes there apart from the app and plans.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Secret, Service};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use mongodb::bson::{Document, doc};
use serde_json::json;

use cutover::crd::UpgradePlan;

pub struct Env {
    pub client: Client,
    pub mongo_uri: String,
    pub mongo: mongodb::Client,
}

/// The local environment, or None when it is not running (a failure under `CI=true`).
pub async fn env() -> Option<Env> {
    let (kc, uri) = (
        std::env::var("KUBECONFIG").ok(),
        std::env::var("MONGODB_URI").ok(),
    );
    let (Some(_), Some(uri)) = (kc, uri) else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!(
                "CI=true but the local environment is missing: run `hack/dev-env up` and `eval \"$(hack/dev-env env)\"` (hack/test does both)"
            );
        }
        eprintln!(
            "skipping: KUBECONFIG/MONGODB_URI not set (run `hack/dev-env up` and `eval \"$(hack/dev-env env)\"`)"
        );
        return None;
    };
    let client = Client::try_default()
        .await
        .expect("kube client from KUBECONFIG");
    let mongo = mongodb::Client::with_uri_str(&uri)
        .await
        .expect("mongodb client");
    Some(Env {
        client,
        mongo_uri: uri,
        mongo,
    })
}

/// A short unique id for names of this test's namespace and databases.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", cutover_devtools::bench::cluster::unique())
}

pub async fn database_names(env: &Env) -> std::collections::BTreeSet<String> {
    env.mongo
        .list_database_names()
        .await
        .unwrap()
        .into_iter()
        .collect()
}

/// No database carries the clone suffix of `plan`: no clone was made, or none was left.
pub async fn assert_no_clones(env: &Env, plan: &str) {
    let names = database_names(env).await;
    let suffix = format!("-{plan}");
    assert!(
        !names.iter().any(|n| n.ends_with(&suffix)),
        "clones of {plan}: {names:?}"
    );
}

/// Every one of `want` is in `have` (`what` names the list in the failure message).
pub fn assert_all_in(have: &[String], want: &[&str], what: &str) {
    for w in want {
        assert!(have.iter().any(|h| h == w), "no {w} in {what}: {have:?}");
    }
}

/// The `Version` of a migration document (stored as a 32- or a 64-bit integer).
pub fn version_of(d: &Document) -> i64 {
    d.get_i32("Version")
        .map(i64::from)
        .or_else(|_| d.get_i64("Version"))
        .expect("Version")
}

impl Env {
    /// A fresh namespace, labelled as a test's.
    pub async fn namespace(&self, prefix: &str) -> String {
        let name = unique(prefix);
        let ns: Namespace = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {"cutover.dev/test": "true"}}
        }))
        .unwrap();
        Api::<Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        name
    }

    /// Server-side apply of any namespaced object (field manager `test`).
    pub async fn apply(&self, ns: &str, obj: serde_json::Value) {
        self.apply_as(ns, obj, "test").await
    }

    /// Server-side apply with force under `manager` (`argocd-controller` is Argo CD's).
    pub async fn apply_as(&self, ns: &str, obj: serde_json::Value, manager: &str) {
        let kind = obj["kind"].as_str().unwrap().to_string();
        let name = obj["metadata"]["name"].as_str().unwrap().to_string();
        let pp = PatchParams::apply(manager).force();
        let result = match kind.as_str() {
            "Secret" => Api::<Secret>::namespaced(self.client.clone(), ns)
                .patch(&name, &pp, &Patch::Apply(&obj))
                .await
                .map(|_| ()),
            "Service" => Api::<Service>::namespaced(self.client.clone(), ns)
                .patch(&name, &pp, &Patch::Apply(&obj))
                .await
                .map(|_| ()),
            "Deployment" => Api::<Deployment>::namespaced(self.client.clone(), ns)
                .patch(&name, &pp, &Patch::Apply(&obj))
                .await
                .map(|_| ()),
            "PersistentVolumeClaim" => {
                Api::<PersistentVolumeClaim>::namespaced(self.client.clone(), ns)
                    .patch(&name, &pp, &Patch::Apply(&obj))
                    .await
                    .map(|_| ())
            }
            "UpgradePlan" => Api::<UpgradePlan>::namespaced(self.client.clone(), ns)
                .patch(&name, &pp, &Patch::Apply(&obj))
                .await
                .map(|_| ()),
            other => panic!("apply: unsupported kind {other}"),
        };
        result.unwrap_or_else(|e| panic!("apply {kind}/{name}: {e}"));
    }

    pub async fn counts(&self, db: &str) -> std::collections::BTreeMap<String, u64> {
        let d = self.mongo.database(db);
        let mut out = std::collections::BTreeMap::new();
        for c in d.list_collection_names().await.unwrap() {
            let n = d
                .collection::<Document>(&c)
                .count_documents(doc! {})
                .await
                .unwrap();
            out.insert(c, n);
        }
        out
    }

    pub async fn migration_doc(&self, db: &str) -> Option<Document> {
        self.mongo
            .database(db)
            .collection::<Document>("Migration")
            .find_one(doc! {})
            .await
            .unwrap()
    }

    /// Documents tagged `tag` (by `post_contents`) in any collection of `db`.
    pub async fn tagged(&self, db: &str, tag: &str) -> u64 {
        let d = self.mongo.database(db);
        let mut n = 0;
        for c in d.list_collection_names().await.unwrap() {
            n += d
                .collection::<Document>(&c)
                .count_documents(doc! {"tag": tag})
                .await
                .unwrap();
        }
        n
    }

    /// The namespace's Events.
    pub async fn events(&self, ns: &str) -> Vec<Event> {
        Api::<Event>::namespaced(self.client.clone(), ns)
            .list(&Default::default())
            .await
            .expect("list events")
            .items
    }

    /// Whether the namespace holds an Event with this reason and type (`Normal`/`Warning`).
    /// Waits up to 10 s: the operator publishes a reconcile's events after its status write,
    /// so a test that has just seen the status may look before the event exists.
    pub async fn has_event(&self, ns: &str, reason: &str, type_: &str) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let found =
                self.events(ns).await.iter().any(|e| {
                    e.reason.as_deref() == Some(reason) && e.type_.as_deref() == Some(type_)
                });
            if found || std::time::Instant::now() >= deadline {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Deletes the namespace (plans first, so finalizers run while the operator lives) and the databases.
    pub async fn cleanup(&self, ns: &str, dbs: &[String]) {
        cutover_devtools::teardown::remove_namespace(
            &self.client,
            &self.mongo,
            ns,
            dbs,
            Duration::from_secs(10),
        )
        .await;
    }
}
