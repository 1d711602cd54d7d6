//! The Squidex-like app ("blue") a test upgrades: appsim on two seeded databases behind a
//! Service, and what a test reads of it (its Deployments, pods, Service, HTTP API).

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use serde_json::json;

use super::Env;

/// A Squidex-like app ("blue") in its own namespace, on two databases.
pub struct App {
    pub ns: String,
    pub id: String,
    pub db: String,
    pub content_db: String,
    pub documents: u64,
    /// The Deployment and the Service as applied (what Git would hold).
    pub manifests: Vec<serde_json::Value>,
}

impl App {
    pub fn clone_of(&self, db: &str, plan: &str) -> String {
        cutover::fixtures::clone_of(db, plan)
    }
}

/// Document counts per collection of the app's two source databases.
pub type Counts = (
    std::collections::BTreeMap<String, u64>,
    std::collections::BTreeMap<String, u64>,
);

pub async fn source_counts(env: &Env, app: &App) -> Counts {
    // The app's collections: an online sync's drain and start markers (cutover's bookkeeping,
    // never copied or compared) are left out.
    let mut counts = (env.counts(&app.db).await, env.counts(&app.content_db).await);
    counts.0.remove(cutover::mongo::SYNC_MARKERS);
    counts.1.remove(cutover::mongo::SYNC_MARKERS);
    counts
}

/// The app's two databases and the two clones each of `plans` made (what a test removes).
pub fn all_dbs(app: &App, plans: &[&str]) -> Vec<String> {
    let mut v = vec![app.db.clone(), app.content_db.clone()];
    for p in plans {
        v.push(app.clone_of(&app.db, p));
        v.push(app.clone_of(&app.content_db, p));
    }
    v
}

pub struct AppOptions {
    pub replicas: i32,
    pub documents: u64,
    pub version: u32,
    pub extra_env: Vec<(String, String)>,
    /// Field manager of the Deployment's and the Service's server-side apply.
    pub field_manager: String,
}

impl Default for AppOptions {
    fn default() -> Self {
        AppOptions {
            replicas: 1,
            documents: 300,
            version: 1,
            extra_env: vec![],
            field_manager: "test".into(),
        }
    }
}

impl Env {
    /// Seeds two databases, creates the Secret, the backup PVC, the Deployment (appsim image
    /// `cutover.dev/appsim:<version>`) and the Service, and waits for the app to be ready.
    pub async fn blue_app(&self, prefix: &str, opts: AppOptions) -> App {
        let ns = self.namespace(prefix).await;
        let id = ns.rsplit('-').next().unwrap().to_string();
        let mut app = App {
            db: format!("Sq_{id}"),
            content_db: format!("SqC_{id}"),
            ns: ns.clone(),
            id,
            documents: opts.documents,
            manifests: Vec::new(),
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
        let deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "squidex", "labels": {"app": "squidex"}},
            "spec": {
                "replicas": opts.replicas,
                "selector": {"matchLabels": {"app": "squidex"}},
                "template": {
                    "metadata": {"labels": {"app": "squidex"}},
                    "spec": {"containers": [{
                        "name": "squidex",
                        "image": cutover::fixtures::appsim_image(opts.version),
                        "ports": [{"containerPort": 8080}],
                        "env": env,
                        "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}}
                    }]}
                }
            }
        });
        let service = json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "squidex"},
            "spec": {"selector": {"app": "squidex"}, "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}
        });
        for obj in [deployment, service] {
            self.apply_as(&ns, obj.clone(), &opts.field_manager).await;
            app.manifests.push(obj);
        }
        self.wait_rollout(&ns, "squidex", Duration::from_secs(60))
            .await;
        app
    }

    /// A default app and an operator watching its namespace.
    pub async fn app_with_operator(&self, prefix: &str) -> (App, super::Operator) {
        let app = self.blue_app(prefix, AppOptions::default()).await;
        let op = super::Operator::start(&app.ns);
        (app, op)
    }

    pub async fn deployment(&self, ns: &str, name: &str) -> Option<Deployment> {
        Api::<Deployment>::namespaced(self.client.clone(), ns)
            .get_opt(name)
            .await
            .unwrap()
    }

    /// The first (app) container of a Deployment's pod template.
    pub async fn app_container(
        &self,
        ns: &str,
        deployment: &str,
    ) -> k8s_openapi::api::core::v1::Container {
        let d = self
            .deployment(ns, deployment)
            .await
            .unwrap_or_else(|| panic!("Deployment {ns}/{deployment} not found"));
        d.spec.unwrap().template.spec.unwrap().containers.remove(0)
    }

    /// The app container's environment (empty when it has none).
    pub async fn app_env(
        &self,
        ns: &str,
        deployment: &str,
    ) -> Vec<k8s_openapi::api::core::v1::EnvVar> {
        self.app_container(ns, deployment)
            .await
            .env
            .unwrap_or_default()
    }

    /// The `cutover.dev/track` value a Service selects (which version gets the traffic).
    pub async fn track(&self, ns: &str, service: &str) -> Option<String> {
        self.service_selector(ns, service)
            .await
            .remove("cutover.dev/track")
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

    /// Ready, not-terminating pods matching a label selector, with their IPs.
    pub async fn ready_pods(&self, ns: &str, selector: &str) -> Vec<(String, std::net::IpAddr)> {
        use k8s_openapi::api::core::v1::Pod;
        use kube::ResourceExt;
        let pods = Api::<Pod>::namespaced(self.client.clone(), ns)
            .list(&kube::api::ListParams::default().labels(selector))
            .await
            .unwrap();
        pods.items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .filter_map(|p| {
                let ip = p.status.as_ref()?.pod_ip.as_ref()?.parse().ok()?;
                Some((p.name_any(), ip))
            })
            .collect()
    }

    /// Writes `n` content items through the app's HTTP API (`POST /api/contents`) of the first
    /// ready pod matching `selector`; returns the status codes.
    pub async fn post_contents(&self, ns: &str, selector: &str, tag: &str, n: usize) -> Vec<u16> {
        let start = Instant::now();
        let pods = loop {
            let pods = self.ready_pods(ns, selector).await;
            if !pods.is_empty() {
                break pods;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no ready pod matches {selector} in {ns}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let addr = std::net::SocketAddr::new(pods[0].1, 8080);
        let mut codes = Vec::new();
        for i in 0..n {
            let body = json!({"title": format!("{tag}-{i}"), "tag": tag}).to_string();
            let code = cutover::probe::request(addr, "POST", "/api/contents", Some(&body))
                .await
                .unwrap_or_else(|e| panic!("POST /api/contents to {addr}: {e}"));
            codes.push(code);
        }
        codes
    }
}

/// The value of `var` on a Deployment's first container (None when unset).
pub fn container_env(d: &Deployment, var: &str) -> Option<String> {
    d.spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .containers
        .first()?
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == var)
        .map(|e| e.value.clone().unwrap_or_default())
}
