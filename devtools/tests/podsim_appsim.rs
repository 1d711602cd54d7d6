//! podsim + appsim against the real local control plane and MongoDB-wire server
//! (`eval "$(hack/dev-env env)"`). Skipped without KUBECONFIG/MONGODB_URI, except under
//! `CI=true` where a missing environment is a failure, not a silent pass.
//!
//! The test runs its own podsim (a child process, stopped by pid) with `--instance`, and
//! labels its namespace for it, so the dev environment's podsim leaves these pods alone.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use k8s_openapi::api::{
    apps::v1::Deployment,
    batch::v1::Job,
    core::v1::{Namespace, Pod, Secret, ServiceAccount},
};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, PostParams},
};
use mongodb::bson::{Document, doc};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use serde_json::json;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    process::{Child, Command},
};

/// The environment, or `None` to skip (panics under CI=true).
fn environment() -> Option<String> {
    let kubeconfig = std::env::var("KUBECONFIG").ok().filter(|v| !v.is_empty());
    let mongo = std::env::var("MONGODB_URI").ok().filter(|v| !v.is_empty());
    match (kubeconfig, mongo) {
        (Some(_), Some(uri)) => Some(uri),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!(
                "CI=true but KUBECONFIG/MONGODB_URI are not set: run `eval \"$(hack/dev-env env)\"`"
            )
        }
        _ => {
            eprintln!(
                "skipping: KUBECONFIG and MONGODB_URI not set (eval \"$(hack/dev-env env)\")"
            );
            None
        }
    }
}

struct Fixture {
    client: Client,
    mongo: mongodb::Client,
    ns: String,
    db: String,
    content_db: String,
    state_dir: PathBuf,
    podsim: Child,
}

#[tokio::test]
async fn podsim_runs_appsim_and_jobs() {
    let Some(uri) = environment() else { return };
    let mut fx = Fixture::start(&uri).await.expect("fixture");
    let result = scenario(&fx, &uri).await;
    let podsim_log = fx.stop().await;
    if let Err(e) = result {
        panic!("{e:#}\n--- podsim log (tail) ---\n{podsim_log}");
    }
}

async fn scenario(fx: &Fixture, uri: &str) -> anyhow::Result<()> {
    seed(uri, &fx.db, &fx.content_db, 300, 1).await?;
    wait_for_service_account(fx).await?;

    let secrets: Api<Secret> = Api::namespaced(fx.client.clone(), &fx.ns);
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "db"},
                "stringData": {"uri": uri}
            }))?,
        )
        .await?;

    let deployments: Api<Deployment> = Api::namespaced(fx.client.clone(), &fx.ns);
    deployments
        .create(
            &PostParams::default(),
            &app_deployment(&fx.db, &fx.content_db)?,
        )
        .await?;
    let jobs: Api<Job> = Api::namespaced(fx.client.clone(), &fx.ns);
    for job in [
        job(
            "write-emptydir",
            &["sh", "-c", "echo hi > /work/out.txt"],
            "emptyDir",
        )?,
        job(
            "write-pvc",
            &["sh", "-c", "echo $(MSG) > /data/msg.txt"],
            "pvc",
        )?,
        job("fails", &["false"], "emptyDir")?,
    ] {
        jobs.create(&PostParams::default(), &job).await?;
    }

    // The app pod becomes Ready only after its start-up migration 1 → 2.
    let pods: Api<Pod> = Api::namespaced(fx.client.clone(), &fx.ns);
    let pod = wait_for("app pod Ready", Duration::from_secs(90), || async {
        let list = pods
            .list(&ListParams::default().labels("app=appsim"))
            .await?;
        Ok(list.items.into_iter().find(is_ready))
    })
    .await?;
    let status = pod.status.clone().unwrap_or_default();
    let ip = status.pod_ip.clone().context("pod IP")?;
    assert!(
        ip.starts_with("127.") && ip != "127.0.0.1",
        "loopback pod IP {ip}"
    );
    assert_eq!(status.phase.as_deref(), Some("Running"));

    let mongo = &fx.mongo;
    let migration = mongo
        .database(&fx.db)
        .collection::<Document>("Migration")
        .find_one(doc! {"_id": "Default"})
        .await?
        .context("Migration document")?;
    assert_eq!(migration.get_i32("Version")?, 2, "{migration}");
    assert!(!migration.get_bool("IsLocked")?, "{migration}");
    let content = mongo.database(&fx.content_db);
    let all2 = content.collection::<Document>("States_Contents_All2");
    assert_eq!(all2.count_documents(doc! {}).await?, 300);
    assert_eq!(
        all2.count_documents(doc! {"schemaVersion": 2}).await?,
        300,
        "every document went through step 2"
    );
    let names = content.list_collection_names().await?;
    assert!(
        names.contains(&"States_Contents_All1".to_owned()),
        "old collection kept"
    );
    assert!(
        all2.list_index_names()
            .await?
            .contains(&"app_deleted_modified".to_owned()),
        "indexes copied"
    );

    // The app answers on its pod IP, as a Service would reach it.
    let (code, body) = http_get(&ip, 8080, "/api/v1/health/check_up").await?;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"version\":2"), "{body}");

    let ok = wait_for_job(&jobs, "write-emptydir").await?;
    assert_eq!(ok, "Complete");
    let emptydir_pod = job_pod(&pods, "write-emptydir").await?;
    let out = fx
        .state_dir
        .join("volumes")
        .join(&fx.ns)
        .join(format!(
            "emptydir-{}-work",
            emptydir_pod.metadata.name.unwrap_or_default()
        ))
        .join("out.txt");
    assert_eq!(std::fs::read_to_string(&out)?, "hi\n", "{}", out.display());

    assert_eq!(wait_for_job(&jobs, "write-pvc").await?, "Complete");
    let msg = fx
        .state_dir
        .join("volumes")
        .join(&fx.ns)
        .join("pvc-backups/msg.txt");
    assert_eq!(std::fs::read_to_string(&msg)?, "from-env\n");

    assert_eq!(wait_for_job(&jobs, "fails").await?, "Failed");
    let failed_pod = job_pod(&pods, "fails").await?;
    let term = failed_pod
        .status
        .and_then(|s| s.container_statuses)
        .and_then(|c| c.into_iter().next())
        .and_then(|c| c.state)
        .and_then(|s| s.terminated)
        .context("terminated state")?;
    assert_eq!(term.exit_code, 1);

    terminating_pod_is_stopped_and_confirmed(fx, &pods).await
}

/// A pod that gets a deletionTimestamp (kept here by a finalizer) has its process killed and
/// is force-deleted by podsim, as a kubelet confirms a deletion.
async fn terminating_pod_is_stopped_and_confirmed(
    fx: &Fixture,
    pods: &Api<Pod>,
) -> anyhow::Result<()> {
    let mut pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "held", "finalizers": ["cutover.dev/test-hold"]},
        "spec": {"containers": [{
            "name": "app",
            "image": "cutover.dev/appsim:2",
            "env": [
                {"name": "STORE__MONGODB__CONFIGURATION",
                 "valueFrom": {"secretKeyRef": {"name": "db", "key": "uri"}}},
                {"name": "STORE__MONGODB__DATABASE", "value": &fx.db},
                {"name": "STORE__MONGODB__CONTENTDATABASE", "value": &fx.content_db},
            ],
        }]}
    }))?;
    pods.create(&PostParams::default(), &pod).await?;
    pod = wait_for("pod held Ready", Duration::from_secs(60), || async {
        Ok(pods.get_opt("held").await?.filter(is_ready))
    })
    .await?;
    let ip = pod.status.and_then(|s| s.pod_ip).context("pod IP")?;
    wait_for(
        "appsim of held to answer",
        Duration::from_secs(30),
        || async {
            Ok(http_get(&ip, 8080, "/healthz")
                .await
                .ok()
                .filter(|(c, _)| *c == 200))
        },
    )
    .await?;

    pods.delete("held", &DeleteParams::default()).await?;
    wait_for(
        "held's process to stop",
        Duration::from_secs(30),
        || async { Ok(http_get(&ip, 8080, "/healthz").await.is_err().then_some(())) },
    )
    .await?;
    // Force deletion leaves only the finalizer holding the pod; release it.
    pods.patch(
        "held",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await?;
    wait_for("held to be gone", Duration::from_secs(30), || async {
        Ok(pods.get_opt("held").await?.is_none().then_some(()))
    })
    .await
}

impl Fixture {
    async fn start(uri: &str) -> anyhow::Result<Self> {
        let client = Client::try_default().await?;
        let mongo = mongodb::Client::with_uri_str(uri).await?;
        let id = format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_millis()
                % 100_000
        );
        let ns = format!("devtools-it-{id}");
        let instance = format!("it-{id}");
        let namespaces: Api<Namespace> = Api::all(client.clone());
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {
                    "name": ns,
                    "labels": {"podsim.cutover.dev/instance": instance}
                }}))?,
            )
            .await?;
        let state_dir = std::env::temp_dir().join(format!("podsim-it-{id}"));
        std::fs::create_dir_all(&state_dir)?;
        let podsim = spawn_podsim(&state_dir, &instance).await?;
        let db_id = id.replace('-', "_");
        Ok(Self {
            client,
            mongo,
            ns,
            db: format!("Sq_it_{db_id}"),
            content_db: format!("SqC_it_{db_id}"),
            state_dir,
            podsim,
        })
    }

    /// Stops podsim (SIGTERM by pid, SIGKILL if it lingers), deletes the namespace and the
    /// databases; returns the tail of podsim's log for failure messages.
    async fn stop(&mut self) -> String {
        if let Some(pid) = self.podsim.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            if tokio::time::timeout(Duration::from_secs(15), self.podsim.wait())
                .await
                .is_err()
            {
                let _ = self.podsim.kill().await;
            }
        }
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let _ = namespaces.delete(&self.ns, &DeleteParams::default()).await;
        for db in [&self.db, &self.content_db] {
            let _ = self.mongo.database(db).drop().await;
        }
        let log = std::fs::read_to_string(self.state_dir.join("podsim.log")).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&self.state_dir);
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

async fn spawn_podsim(state_dir: &Path, instance: &str) -> anyhow::Result<Child> {
    let log = std::fs::File::create(state_dir.join("podsim.log"))?;
    // A /16 of its own so its pod IPs never meet the dev env's podsim's (127.0.x.y).
    let network = format!("127.{}.0.0/16", 100 + std::process::id() % 100);
    let mut child = Command::new(env!("CARGO_BIN_EXE_podsim"))
        .args(["--state-dir", &state_dir.to_string_lossy()])
        .args(["--instance", instance, "--pod-network", &network])
        .args(["--appsim", env!("CARGO_BIN_EXE_appsim")])
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().context("podsim stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            if line.trim() == "podsim ready" {
                return Ok(true);
            }
        }
        anyhow::Ok(false)
    })
    .await;
    if !matches!(ready, Ok(Ok(true))) {
        let _ = child.kill().await;
        let log = std::fs::read_to_string(state_dir.join("podsim.log")).unwrap_or_default();
        bail!("podsim did not print 'podsim ready': {log}");
    }
    // Keep draining stdout so podsim never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(child)
}

async fn seed(
    uri: &str,
    db: &str,
    content_db: &str,
    docs: u32,
    version: u32,
) -> anyhow::Result<()> {
    let out = Command::new(env!("CARGO_BIN_EXE_appsim"))
        .args([
            "seed",
            "--uri",
            uri,
            "--database",
            db,
            "--content-database",
            content_db,
        ])
        .args([
            "--documents",
            &docs.to_string(),
            "--version",
            &version.to_string(),
        ])
        .output()
        .await?;
    if !out.status.success() {
        bail!(
            "appsim seed failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Kubernetes 1.20's ServiceAccount admission rejects pods until the namespace's default
/// ServiceAccount has its token; waiting avoids controller back-off delays.
async fn wait_for_service_account(fx: &Fixture) -> anyhow::Result<()> {
    let sas: Api<ServiceAccount> = Api::namespaced(fx.client.clone(), &fx.ns);
    wait_for(
        "default ServiceAccount token",
        Duration::from_secs(30),
        || async {
            Ok(sas
                .get_opt("default")
                .await?
                .filter(|sa| sa.secrets.as_ref().is_some_and(|s| !s.is_empty())))
        },
    )
    .await
    .map(drop)
}

fn app_deployment(db: &str, content_db: &str) -> anyhow::Result<Deployment> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": "appsim"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "appsim"}},
            "template": {
                "metadata": {"labels": {"app": "appsim"}},
                "spec": {"containers": [{
                    "name": "app",
                    "image": "cutover.dev/appsim:2",
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "env": [
                        {"name": "STORE__MONGODB__CONFIGURATION",
                         "valueFrom": {"secretKeyRef": {"name": "db", "key": "uri"}}},
                        {"name": "STORE__MONGODB__DATABASE", "value": db},
                        {"name": "STORE__MONGODB__CONTENTDATABASE", "value": content_db},
                    ],
                    "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}}
                }]}
            }
        }
    }))?)
}

fn job(name: &str, command: &[&str], volume: &str) -> anyhow::Result<Job> {
    let (volumes, mounts) = if volume == "pvc" {
        (
            json!([{"name": "data", "persistentVolumeClaim": {"claimName": "backups"}}]),
            json!([{"name": "data", "mountPath": "/data"}]),
        )
    } else {
        (
            json!([{"name": "work", "emptyDir": {}}]),
            json!([{"name": "work", "mountPath": "/work"}]),
        )
    };
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {
                "restartPolicy": "Never",
                "volumes": volumes,
                "containers": [{
                    "name": "main",
                    "image": "busybox:1.36",
                    "command": command,
                    "env": [{"name": "MSG", "value": "from-env"}],
                    "volumeMounts": mounts,
                }]
            }}
        }
    }))?)
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// The (first) pod of a Job.
async fn job_pod(pods: &Api<Pod>, job: &str) -> anyhow::Result<Pod> {
    pods.list(&ListParams::default().labels(&format!("job-name={job}")))
        .await?
        .items
        .into_iter()
        .next()
        .with_context(|| format!("pod of {job}"))
}

/// "Complete" or "Failed" once the Job controller decided.
async fn wait_for_job(jobs: &Api<Job>, name: &str) -> anyhow::Result<String> {
    wait_for(
        &format!("Job {name} to finish"),
        Duration::from_secs(60),
        || async {
            let job = jobs.get(name).await?;
            Ok(job
                .status
                .and_then(|s| s.conditions)
                .into_iter()
                .flatten()
                .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
                .map(|c| c.type_))
        },
    )
    .await
}

async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = probe().await? {
            return Ok(v);
        }
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn http_get(host: &str, port: u16, path: &str) -> anyhow::Result<(u16, String)> {
    let mut conn = tokio::net::TcpStream::connect((host, port)).await?;
    conn.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut raw = String::new();
    conn.read_to_string(&mut raw).await?;
    let code = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("status line")?;
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((code, body))
}
