//! Integration-test harness: the real control plane and MongoDB-wire server started by
//! `hack/dev-env up` (podsim plays the kubelet there). Each test gets a fresh namespace and
//! fresh database names, its own operator process watching only that namespace, and cleans
//! up after itself.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

pub use cutover::crd::{CleanupState, CleanupStep, CleanupStepName};
use cutover::crd::{Phase, UpgradePlan};
pub use cutover::fixtures::SquidexPlan;
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
        cutover::fixtures::clone_of(db, plan)
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
                            "image": cutover::fixtures::appsim_image(opts.version),
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
            // Succeeded is not final: a rollback may follow it.
            let settled = current.is_terminal() && current != Phase::Succeeded;
            if (settled && current != phase) || start.elapsed() > timeout {
                panic!(
                    "plan {ns}/{plan} is {current}, waited for {phase} ({:?}).\nstatus: {}\noperator log tail:\n{}\n{}",
                    start.elapsed(),
                    serde_json::to_string_pretty(&p.status).unwrap(),
                    op.log_tail(60),
                    pod_log_tails(ns, 12)
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

/// A `cutover run` process watching one namespace; killed when dropped.
/// A `cutover run` under test: a process the test started, or (child `None`) the pod of an
/// installed chart that podsim runs, whose log podsim keeps.
pub struct Operator {
    pub child: Option<tokio::process::Child>,
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
        Operator {
            child: Some(child),
            log,
        }
    }

    /// The operator running as pod `ns/pod` (its log is podsim's file for the pod).
    pub fn pod(ns: &str, pod: &str) -> Operator {
        let dir = std::env::var("CUTOVER_ENV_DIR").expect("CUTOVER_ENV_DIR (podsim's logs)");
        let log = PathBuf::from(dir)
            .join("podsim/pods")
            .join(ns)
            .join(format!("{pod}.log"));
        Operator { child: None, log }
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
        if let Some(child) = &mut self.child {
            let _ = child.kill().await;
        }
    }
}

/// The Squidex-style plan the tests start from: two databases, the migration-document gate.
pub fn squidex_plan(name: &str, app: &App, target_version: u32) -> serde_json::Value {
    SquidexPlan::appsim(&app.db, &app.content_db, target_version).object_json(name)
}

/// One plain HTTP/1.1 GET (the operator's /metrics, /healthz): status code and body.
pub async fn http_get(addr: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let code = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    (code, body)
}

/// The value of one sample in Prometheus text (`name{labels}` exactly as exposed).
pub fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Asserts that no Secret value appears in a text.
pub fn assert_no_secret(text: &str, secret: &str, what: &str) {
    assert!(
        !text.contains(secret),
        "{what} contains the connection string"
    );
}

// ---- helpers for the reliability tests (tests/reliability.rs) ------------------------------

pub use cutover_devtools::watchlog::Seen;
use cutover_devtools::watchlog::{Log, spawn_watch};

/// Every version of the Deployments, ReplicaSets, Jobs, Pods and Services of a namespace seen
/// by watches while it lives: proves what was ever created (by uid), and in which order
/// things were written.
pub struct History {
    seen: Log,
    ready: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

const HISTORY_KINDS: usize = 5;

impl Env {
    /// Starts watching the namespace and returns once every watch has listed.
    pub async fn history(&self, ns: &str) -> History {
        use k8s_openapi::api::apps::v1::ReplicaSet;
        use k8s_openapi::api::batch::v1::Job;
        use k8s_openapi::api::core::v1::Pod;
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let ready = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let c = &self.client;
        let tasks = vec![
            spawn_watch(
                Api::<Deployment>::namespaced(c.clone(), ns),
                "Deployment",
                seen.clone(),
                ready.clone(),
            ),
            spawn_watch(
                Api::<ReplicaSet>::namespaced(c.clone(), ns),
                "ReplicaSet",
                seen.clone(),
                ready.clone(),
            ),
            spawn_watch(
                Api::<Job>::namespaced(c.clone(), ns),
                "Job",
                seen.clone(),
                ready.clone(),
            ),
            spawn_watch(
                Api::<Pod>::namespaced(c.clone(), ns),
                "Pod",
                seen.clone(),
                ready.clone(),
            ),
            spawn_watch(
                Api::<Service>::namespaced(c.clone(), ns),
                "Service",
                seen.clone(),
                ready.clone(),
            ),
        ];
        let start = Instant::now();
        while ready.load(std::sync::atomic::Ordering::SeqCst) < HISTORY_KINDS {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "watches did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        History { seen, ready, tasks }
    }
}

impl History {
    pub fn all(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Every version of one object (any uid), in the order the watch delivered them.
    pub fn versions(&self, kind: &str, name: &str) -> Vec<Seen> {
        self.all()
            .into_iter()
            .filter(|s| s.kind == kind && s.name == name)
            .collect()
    }

    /// The distinct uids ever seen under `kind`/`name`.
    pub fn uids(&self, kind: &str, name: &str) -> std::collections::BTreeSet<String> {
        self.versions(kind, name)
            .into_iter()
            .map(|s| s.uid)
            .collect()
    }

    /// The distinct uids of objects of `kind` whose labels contain `key=value`.
    pub fn uids_labelled(
        &self,
        kind: &str,
        key: &str,
        value: &str,
    ) -> std::collections::BTreeSet<String> {
        self.all()
            .into_iter()
            .filter(|s| {
                s.kind == kind && s.object["metadata"]["labels"][key].as_str() == Some(value)
            })
            .map(|s| s.uid)
            .collect()
    }

    /// Names of every object of `kind` ever seen.
    pub fn names(&self, kind: &str) -> std::collections::BTreeSet<String> {
        self.all()
            .into_iter()
            .filter(|s| s.kind == kind)
            .map(|s| s.name)
            .collect()
    }

    /// The lowest resourceVersion at which `kind`/`name` satisfied `pred`.
    pub fn first_rv(
        &self,
        kind: &str,
        name: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<u64> {
        self.versions(kind, name)
            .into_iter()
            .filter(|s| !s.deleted && pred(&s.object))
            .map(|s| s.rv)
            .min()
    }

    pub fn watching(&self) -> bool {
        self.ready.load(std::sync::atomic::Ordering::SeqCst) >= HISTORY_KINDS
    }
}

impl Drop for History {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
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

impl Env {
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

    /// A JSON merge patch of a plan (what `kubectl patch --type merge` sends).
    pub async fn patch_plan(&self, ns: &str, name: &str, patch: serde_json::Value) {
        self.plans(ns)
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap_or_else(|e| panic!("patch plan {ns}/{name}: {e}"));
    }

    /// Server-side apply of a plan, returning the API server's refusal instead of panicking.
    pub async fn try_apply_plan(&self, ns: &str, obj: &serde_json::Value) -> Result<(), String> {
        let name = obj["metadata"]["name"].as_str().unwrap().to_string();
        self.plans(ns)
            .patch(
                &name,
                &PatchParams::apply("test").force(),
                &Patch::Apply(obj),
            )
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Polls the plan until `pred` holds; panics with the status and the operator's log on
    /// timeout or when the plan ends in a terminal phase that does not satisfy `pred`.
    pub async fn wait_plan(
        &self,
        op: &Operator,
        ns: &str,
        plan: &str,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&UpgradePlan) -> bool,
    ) -> UpgradePlan {
        let start = Instant::now();
        loop {
            let p = self.plans(ns).get(plan).await.expect("get plan");
            if pred(&p) {
                return p;
            }
            let phase = p.status.as_ref().map(|s| s.phase).unwrap_or_default();
            // A Succeeded plan still changes: cleanup runs and a rollback may be requested.
            if (phase.is_terminal() && phase != Phase::Succeeded) || start.elapsed() > timeout {
                panic!(
                    "plan {ns}/{plan}: waited {:?} for {what}, it is {phase}.\nstatus: {}\noperator log tail:\n{}",
                    start.elapsed(),
                    serde_json::to_string_pretty(&p.status).unwrap(),
                    op.log_tail(60)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether the namespace holds an Event with this reason and type (`Normal`/`Warning`).
    pub async fn has_event(&self, ns: &str, reason: &str, type_: &str) -> bool {
        Api::<k8s_openapi::api::events::v1::Event>::namespaced(self.client.clone(), ns)
            .list(&Default::default())
            .await
            .expect("list events")
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some(reason) && e.type_.as_deref() == Some(type_))
    }

    /// Waits until a cleanup step of a Succeeded plan reaches `state`.
    pub async fn wait_cleanup(
        &self,
        op: &Operator,
        ns: &str,
        plan: &str,
        step: CleanupStepName,
        state: CleanupState,
        timeout: Duration,
    ) -> UpgradePlan {
        let start = Instant::now();
        loop {
            let p = self.plans(ns).get(plan).await.expect("get plan");
            if cleanup_step(&p, step).is_some_and(|s| s.state == state) {
                return p;
            }
            let phase = p.status.as_ref().map(|s| s.phase).unwrap_or_default();
            if (phase.is_terminal() && phase != Phase::Succeeded) || start.elapsed() > timeout {
                panic!(
                    "plan {ns}/{plan}: waited {:?} for cleanup step {step:?} to be {state:?}, the plan is {phase}.\nstatus: {}\noperator log tail:\n{}\n{}",
                    start.elapsed(),
                    serde_json::to_string_pretty(&p.status).unwrap(),
                    op.log_tail(60),
                    pod_log_tails(ns, 12)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Deletes the namespace's plans and waits until their finalizers ran (the operator must
    /// still be alive), then deletes the namespace and the databases. Without this the
    /// namespace stays Terminating once the operator is gone.
    pub async fn finish(&self, op: &Operator, ns: &str, dbs: &[String]) {
        let plans = self.plans(ns);
        let _ = plans
            .delete_collection(&DeleteParams::default(), &Default::default())
            .await;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            match plans.list(&Default::default()).await {
                Ok(l) if l.items.is_empty() => break,
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        let _ = op;
        self.cleanup(ns, dbs).await;
    }
}

/// A cleanup step as recorded in the plan's status.
pub fn cleanup_step(plan: &UpgradePlan, name: CleanupStepName) -> Option<&CleanupStep> {
    plan.status
        .as_ref()?
        .cleanup
        .as_ref()?
        .steps
        .iter()
        .find(|s| s.name == name)
}

/// The phase and a plan's current condition of `type_`, for assertions.
pub fn condition<'a>(
    plan: &'a UpgradePlan,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    plan.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

impl Operator {
    /// SIGKILL (no graceful shutdown, no last status write) and wait for the process to be gone.
    pub async fn kill_hard(&mut self) {
        use std::os::unix::process::ExitStatusExt;
        let child = self.child.as_mut().expect("a process this test started");
        child.start_kill().expect("send SIGKILL");
        let status = child.wait().await.expect("wait for cutover run");
        assert_eq!(
            status.signal(),
            Some(9),
            "cutover run ended by SIGKILL: {status:?}"
        );
    }
}

impl Operator {
    /// Like `start`, with extra `cutover run` arguments and environment (e.g. `POD_NAME`, the
    /// identity in the Lease: a container restarted in the same pod keeps it).
    pub fn start_with(ns: &str, args: &[&str], envs: &[(&str, &str)]) -> Operator {
        let log = std::env::temp_dir().join(format!("cutover-{ns}-{}.log", unique("op")));
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cutover"));
        cmd.args(["run", "--namespace", ns, "--http-addr", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "info,kube=warn,cutover=debug")
            .env("CUTOVER_LOG_FORMAT", "pretty")
            .env("NO_COLOR", "1");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .kill_on_drop(true)
            .spawn()
            .expect("start cutover run");
        Operator {
            child: Some(child),
            log,
        }
    }
}

/// The last `lines` of every container log podsim kept for the namespace, so a failed wait says
/// what the app's pods were doing (a migration waiting on a lock, a crash) without a rerun.
pub fn pod_log_tails(ns: &str, lines: usize) -> String {
    let Ok(dir) = std::env::var("CUTOVER_ENV_DIR") else {
        return String::new();
    };
    let Ok(entries) = std::fs::read_dir(std::path::Path::new(&dir).join("podsim/pods").join(ns))
    else {
        return String::new();
    };
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    files.sort();
    let mut out = String::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let tail = &all[all.len().saturating_sub(lines)..];
        out.push_str(&format!(
            "pod log {}:\n{}\n",
            f.file_name().unwrap().to_string_lossy(),
            tail.join("\n")
        ));
    }
    out
}
