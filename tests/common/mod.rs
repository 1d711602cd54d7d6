//! Integration-test harness: the real control plane and MongoDB-wire server started by
//! `hack/dev-env up` (podsim plays the kubelet there). Each test gets a fresh namespace and
//! fresh database names, its own operator process watching only that namespace, and cleans
//! up after itself.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use cutover::crd::{Phase, UpgradePlan};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Secret, Service};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use mongodb::bson::{Document, doc};
use serde_json::json;

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
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}-{:x}{:x}",
        (nanos as u64) & 0xffffff,
        std::process::id() & 0xfff
    )
}

/// A Squidex-like app ("blue") in its own namespace, on two databases.
pub struct App {
    pub ns: String,
    pub id: String,
    pub db: String,
    pub content_db: String,
    pub documents: u64,
}

impl App {
    pub fn clone_of(&self, db: &str, plan: &str) -> String {
        format!("{db}-{plan}")
    }
}

pub struct AppOptions {
    pub replicas: i32,
    pub documents: u64,
    pub version: u32,
    pub extra_env: Vec<(String, String)>,
}

impl Default for AppOptions {
    fn default() -> Self {
        AppOptions {
            replicas: 1,
            documents: 300,
            version: 1,
            extra_env: vec![],
        }
    }
}

impl Env {
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

    /// Seeds two databases, creates the Secret, the backup PVC, the Deployment (appsim image
    /// `cutover.dev/appsim:<version>`) and the Service, and waits for the app to be ready.
    pub async fn blue_app(&self, prefix: &str, opts: AppOptions) -> App {
        let ns = self.namespace(prefix).await;
        let id = ns.rsplit('-').next().unwrap().to_string();
        let app = App {
            db: format!("Sq_{id}"),
            content_db: format!("SqC_{id}"),
            ns: ns.clone(),
            id,
            documents: opts.documents,
        };
        cutover_devtools::appsim::seed::seed(&cutover_devtools::appsim::seed::Seed {
            uri: self.mongo_uri.clone(),
            database: app.db.clone(),
            content_database: app.content_db.clone(),
            documents: opts.documents,
            version: opts.version,
        })
        .await
        .expect("seed databases");

        self.apply(
            &ns,
            json!({
                "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "mongo"},
                "stringData": {"uri": self.mongo_uri}
            }),
        )
        .await;
        self.apply(&ns, json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "backups"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
        }))
        .await;
        let mut env = vec![
            json!({"name": "STORE__MONGODB__CONFIGURATION", "valueFrom": {"secretKeyRef": {"name": "mongo", "key": "uri"}}}),
            json!({"name": "STORE__MONGODB__DATABASE", "value": app.db}),
            json!({"name": "STORE__MONGODB__CONTENTDATABASE", "value": app.content_db}),
        ];
        for (k, v) in &opts.extra_env {
            env.push(json!({"name": k, "value": v}));
        }
        self.apply(
            &ns,
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "squidex", "labels": {"app": "squidex"}},
                "spec": {
                    "replicas": opts.replicas,
                    "selector": {"matchLabels": {"app": "squidex"}},
                    "template": {
                        "metadata": {"labels": {"app": "squidex"}},
                        "spec": {"containers": [{
                            "name": "squidex",
                            "image": format!("cutover.dev/appsim:{}", opts.version),
                            "ports": [{"containerPort": 8080}],
                            "env": env,
                            "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}}
                        }]}
                    }
                }
            }),
        )
        .await;
        self.apply(&ns, json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "squidex"},
            "spec": {"selector": {"app": "squidex"}, "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}
        }))
        .await;
        self.wait_rollout(&ns, "squidex", Duration::from_secs(60))
            .await;
        app
    }

    /// Server-side apply of any namespaced object (field manager `test`).
    pub async fn apply(&self, ns: &str, obj: serde_json::Value) {
        let kind = obj["kind"].as_str().unwrap().to_string();
        let name = obj["metadata"]["name"].as_str().unwrap().to_string();
        let pp = PatchParams::apply("test").force();
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

    pub async fn deployment(&self, ns: &str, name: &str) -> Option<Deployment> {
        Api::<Deployment>::namespaced(self.client.clone(), ns)
            .get_opt(name)
            .await
            .unwrap()
    }

    pub async fn service_selector(
        &self,
        ns: &str,
        name: &str,
    ) -> std::collections::BTreeMap<String, String> {
        Api::<Service>::namespaced(self.client.clone(), ns)
            .get(name)
            .await
            .unwrap()
            .spec
            .and_then(|s| s.selector)
            .unwrap_or_default()
    }

    pub async fn wait_rollout(&self, ns: &str, name: &str, timeout: Duration) {
        let start = Instant::now();
        loop {
            if let Some(d) = self.deployment(ns, name).await {
                let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                let st = d.status.clone().unwrap_or_default();
                if st.observed_generation >= d.metadata.generation
                    && st.updated_replicas.unwrap_or(0) == want
                    && st.ready_replicas.unwrap_or(0) == want
                    && st.replicas.unwrap_or(0) == want
                {
                    return;
                }
                if start.elapsed() > timeout {
                    panic!("Deployment {ns}/{name} did not roll out: {:?}", d.status);
                }
            } else if start.elapsed() > timeout {
                panic!("Deployment {ns}/{name} not found");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn plans(&self, ns: &str) -> Api<UpgradePlan> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Waits until the plan reaches `phase`; on timeout or an unexpected terminal phase, panics
    /// with the status and the operator's log.
    pub async fn wait_phase(
        &self,
        op: &Operator,
        ns: &str,
        plan: &str,
        phase: Phase,
        timeout: Duration,
    ) -> UpgradePlan {
        let start = Instant::now();
        loop {
            let p = self.plans(ns).get(plan).await.expect("get plan");
            let current = p.status.as_ref().map(|s| s.phase).unwrap_or_default();
            if current == phase {
                return p;
            }
            if (current.is_terminal() && current != phase) || start.elapsed() > timeout {
                panic!(
                    "plan {ns}/{plan} is {current}, waited for {phase} ({:?}).\nstatus: {}\noperator log tail:\n{}",
                    start.elapsed(),
                    serde_json::to_string_pretty(&p.status).unwrap(),
                    op.log_tail(60)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
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

    /// Deletes the namespace (plans first, so finalizers run while the operator lives) and the databases.
    pub async fn cleanup(&self, ns: &str, dbs: &[String]) {
        let _ = Api::<Namespace>::all(self.client.clone())
            .delete(ns, &DeleteParams::default())
            .await;
        for db in dbs {
            let _ = self.mongo.database(db).drop().await;
        }
    }
}

/// A `cutover run` process watching one namespace; killed when dropped.
pub struct Operator {
    pub child: tokio::process::Child,
    pub log: PathBuf,
}

impl Operator {
    pub fn start(ns: &str) -> Operator {
        let log = std::env::temp_dir().join(format!("cutover-{ns}-{}.log", unique("op")));
        let file = std::fs::File::create(&log).unwrap();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_cutover"))
            .args(["run", "--namespace", ns, "--http-addr", "127.0.0.1:0"])
            .env("RUST_LOG", "info,kube=warn,cutover=debug")
            .env("CUTOVER_LOG_FORMAT", "pretty")
            .env("NO_COLOR", "1")
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .kill_on_drop(true)
            .spawn()
            .expect("start cutover run");
        Operator { child, log }
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = s.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }
}

/// The Squidex-style plan the tests start from: two databases, the migration-document gate.
pub fn squidex_plan(name: &str, app: &App, target_version: u32) -> serde_json::Value {
    json!({
        "apiVersion": "cutover.dev/v1alpha1",
        "kind": "UpgradePlan",
        "metadata": {"name": name},
        "spec": {
            "app": {"deployment": "squidex", "service": "squidex"},
            "target": {"image": format!("cutover.dev/appsim:{target_version}")},
            "readOnly": {
                "env": {"name": "MODE__ISREADONLY", "value": "true"},
                "verify": {"http": {"method": "POST", "path": "/api/contents", "port": 8080, "body": "{\"probe\":true}"}}
            },
            "database": {
                "connectionSecret": {"name": "mongo", "key": "uri"},
                "databases": [
                    {"name": app.db, "env": ["STORE__MONGODB__DATABASE"]},
                    {"name": app.content_db, "env": ["STORE__MONGODB__CONTENTDATABASE"]}
                ]
            },
            "backup": {"image": "mongo:7.0", "volume": {"claimName": "backups"}},
            "migration": {
                "mongoDocument": {"database": app.db, "targetVersion": target_version, "staleLockAfter": "20s"},
                "timeout": "3m"
            },
            "cleanup": {"scaleDownBlueAfter": "1s"},
            "timeouts": {"rollout": "2m", "backup": "3m", "clone": "3m"}
        }
    })
}

/// Asserts that no Secret value appears in a text.
pub fn assert_no_secret(text: &str, secret: &str, what: &str) {
    assert!(
        !text.contains(secret),
        "{what} contains the connection string"
    );
}
