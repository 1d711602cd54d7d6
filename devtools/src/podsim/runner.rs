//! One pod's life on this "node": a task per container that resolves its env, runs its
//! process (restarting it as the restartPolicy says), probes readiness, and reports every
//! change through the pod's `Publisher`. Cancelling the pod's token stops the processes
//! without touching the status (the pod is being deleted or podsim is stopping).

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use k8s_openapi::{
    api::core::v1::{Container, Pod},
    jiff::Timestamp,
};
use kube::{Api, Client};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{
    env::{self, FieldContext},
    incluster::{self, ApiServer},
    mounts::MountTable,
    plan::{self, Binaries, Workload},
    probe::HttpProbe,
    process::{self, Spec},
    publish::Publisher,
    sources,
    status::{PodSim, State},
    termination::{self, TerminationLog},
    volumes,
};

/// Settings shared by all pods.
pub struct Node {
    pub client: Client,
    pub state_dir: PathBuf,
    pub binaries: Binaries,
    /// How processes with a ServiceAccount token reach the API server (see `incluster`).
    pub api_server: ApiServer,
}

impl Node {
    pub fn log_path(&self, pod: &Pod, container: &str, first: bool) -> PathBuf {
        let (ns, name) = ns_name(pod);
        let file = if first {
            format!("{name}.log")
        } else {
            format!("{name}.{container}.log")
        };
        self.state_dir.join("pods").join(ns).join(file)
    }

    /// The local file standing in for the container's `terminationMessagePath`.
    pub fn termination_log_path(&self, pod: &Pod, container: &str) -> PathBuf {
        let (ns, name) = ns_name(pod);
        self.state_dir
            .join("pods")
            .join(ns)
            .join(format!("{name}.{container}.termination-log"))
    }

    pub fn volumes_root(&self, pod: &Pod) -> PathBuf {
        self.state_dir.join("volumes").join(ns_name(pod).0)
    }

    pub fn rootfs(&self, pod: &Pod) -> PathBuf {
        let (ns, name) = ns_name(pod);
        self.state_dir.join("rootfs").join(ns).join(name)
    }
}

pub fn ns_name(pod: &Pod) -> (&str, &str) {
    (
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or_default(),
    )
}

/// Pause between a container's exit and its restart (a kubelet backs off from 10 s; short
/// here so tests of crash/restart are quick).
const RESTART_BACKOFF: Duration = Duration::from_secs(1);
const PROBE_PERIOD: Duration = Duration::from_millis(500);

/// Runs `pod` until it finishes or `cancel` fires.
pub async fn run_pod(node: Arc<Node>, pod: Pod, sim: PodSim, cancel: CancellationToken) {
    let (ns, name) = ns_name(&pod);
    let api: Api<Pod> = Api::namespaced(node.client.clone(), ns);
    let publisher = Arc::new(Publisher::new(api, name, sim));
    publisher.update(|_| ()).await;
    let pod = Arc::new(pod);
    let mut tasks = JoinSet::new();
    for (i, c) in pod.spec.iter().flat_map(|s| &s.containers).enumerate() {
        tasks.spawn(run_container(
            node.clone(),
            pod.clone(),
            c.clone(),
            i == 0,
            publisher.clone(),
            cancel.clone(),
        ));
    }
    while tasks.join_next().await.is_some() {}
}

async fn run_container(
    node: Arc<Node>,
    pod: Arc<Pod>,
    container: Container,
    first: bool,
    publisher: Arc<Publisher>,
    cancel: CancellationToken,
) {
    let name = container.name.clone();
    let policy = publisher.read(|s| s.restart_policy).await;
    loop {
        let Some((workload, term)) = prepare(&node, &pod, &container, &publisher).await else {
            // Config error already reported; retry like the kubelet does.
            if sleep_or_cancel(Duration::from_secs(2), &cancel).await {
                return;
            }
            continue;
        };
        let code = match workload {
            Workload::Idle => {
                publisher
                    .update(|s| with(s, &name, |c| start_ready(c, true)))
                    .await;
                cancel.cancelled().await;
                return;
            }
            Workload::Unrunnable(msg) => {
                tracing::warn!(pod = ?ns_name(&pod), container = %name, "{msg}");
                publisher
                    .update(|s| {
                        with(s, &name, |c| {
                            c.terminate(128, "ContainerCannotRun", Some(msg), Timestamp::now())
                        })
                    })
                    .await;
                128
            }
            Workload::Process { argv, env, cwd } => {
                let spec = Spec {
                    argv,
                    env,
                    cwd,
                    log: node.log_path(&pod, &name, first),
                };
                match run_process(&pod, &container, &spec, &term, &publisher, &cancel).await {
                    Some(code) => code,
                    None => return,
                }
            }
        };
        if !policy.restarts(code) || sleep_or_cancel(RESTART_BACKOFF, &cancel).await {
            return;
        }
    }
}

/// Resolves env and volumes and decides the workload, with the container's termination
/// message file (emptied for a process about to start); `None` after reporting an error.
async fn prepare(
    node: &Node,
    pod: &Pod,
    container: &Container,
    publisher: &Publisher,
) -> Option<(Workload, TerminationLog)> {
    let name = &container.name;
    let (pod_ip, restart_count) = publisher
        .read(|s| {
            let c = s.containers.iter().find(|c| &c.name == name);
            let restarts = c.map_or(0, |c| {
                c.restart_count + i32::from(matches!(c.state, State::Terminated { .. }))
            });
            (s.pod_ip.clone(), restarts)
        })
        .await;
    let fail = |reason: &'static str, msg: String| async move {
        tracing::warn!(pod = ?ns_name(pod), container = %name, "{reason}: {msg}");
        publisher
            .update(|s| {
                with(s, name, |c| {
                    c.state = State::Waiting {
                        reason: reason.into(),
                        message: Some(msg),
                    }
                })
            })
            .await;
        None
    };
    let sources = match sources::fetch(&node.client, pod).await {
        Ok(s) => s,
        Err(e) => return fail("CreateContainerConfigError", e.to_string()).await,
    };
    let env = match env::resolve(container, &field_context(pod, &pod_ip), &sources) {
        Ok(e) => e,
        Err(e) => return fail("CreateContainerConfigError", e).await,
    };
    let (_, pod_name) = ns_name(pod);
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default();
    let root = node.volumes_root(pod);
    let term = TerminationLog::new(container, node.termination_log_path(pod, name));
    let mounts = MountTable::new(pod_name, volumes, container, &root)
        .with_file(&term.container_path, term.local.clone());
    if let Err(e) = volumes::prepare(&root, pod, &sources, &mounts) {
        return fail("CreateContainerError", format!("volumes: {e}")).await;
    }
    let rootfs = node.rootfs(pod).join(name);
    let (ns, _) = ns_name(pod);
    let kubeconfig = node.rootfs(pod).join(format!("{name}.kubeconfig"));
    let access = incluster::access(&node.api_server, &mounts, ns, kubeconfig);
    if let Some(a) = &access {
        let written = std::fs::create_dir_all(node.rootfs(pod))
            .and_then(|()| std::fs::write(&a.kubeconfig, &a.contents));
        if let Err(e) = written {
            let msg = format!("kubeconfig {}: {e}", a.kubeconfig.display());
            return fail("CreateContainerError", msg).await;
        }
    }
    let ctx = plan::Context {
        pod,
        pod_ip: &pod_ip,
        restart_count,
        binaries: &node.binaries,
        rootfs: &rootfs,
        mounts: &mounts,
        api_env: access.as_ref().map_or(&[], |a| a.env.as_slice()),
    };
    let workload = plan::workload(&ctx, container, &env);
    if matches!(workload, Workload::Process { .. })
        && let Err(e) = term.reset()
    {
        let msg = format!("termination message file {}: {e}", term.local.display());
        return fail("CreateContainerError", msg).await;
    }
    Some((workload, term))
}

/// Runs one process to its end; `None` when cancelled (process stopped, nothing reported).
async fn run_process(
    pod: &Pod,
    container: &Container,
    spec: &Spec,
    term: &TerminationLog,
    publisher: &Publisher,
    cancel: &CancellationToken,
) -> Option<i32> {
    let name = &container.name;
    let mut running = match process::spawn(spec) {
        Ok(r) => r,
        Err(e) => {
            let msg = format!("starting {:?}: {e}", spec.argv.first());
            tracing::warn!(pod = ?ns_name(pod), container = %name, "{msg}");
            publisher
                .update(|s| {
                    with(s, name, |c| {
                        c.terminate(128, "StartError", Some(msg), Timestamp::now())
                    })
                })
                .await;
            return Some(128);
        }
    };
    let pod_ip = publisher.read(|s| s.pod_ip.clone()).await;
    let probe = HttpProbe::readiness(container, &pod_ip);
    tracing::info!(pod = ?ns_name(pod), container = %name, pid = running.pid(), argv = ?spec.argv, "started");
    publisher
        .update(|s| with(s, name, |c| start_ready(c, probe.is_none())))
        .await;
    let grace = Duration::from_secs(
        pod.spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .map_or(5, |g| g.clamp(0, 5).unsigned_abs()),
    );
    let code = tokio::select! {
        code = running.wait() => code,
        () = probe_loop(probe, name, publisher) => unreachable!("probing never ends"),
        () = cancel.cancelled() => {
            let code = running.stop(grace).await;
            tracing::info!(pod = ?ns_name(pod), container = %name, code, "stopped");
            return None;
        }
    };
    let message = term.message(code, termination::container_count(pod), || running.tail());
    let reason = if code == 0 { "Completed" } else { "Error" };
    tracing::info!(pod = ?ns_name(pod), container = %name, code, "exited");
    publisher
        .update(|s| {
            with(s, name, |c| {
                c.terminate(code, reason, message, Timestamp::now())
            })
        })
        .await;
    Some(code)
}

/// Readiness like the kubelet: ready on a success, unready after `failureThreshold`
/// consecutive failures. Without a probe, never returns.
async fn probe_loop(probe: Option<HttpProbe>, name: &str, publisher: &Publisher) {
    let Some(probe) = probe else {
        return std::future::pending().await;
    };
    let mut failures = 0;
    loop {
        tokio::time::sleep(PROBE_PERIOD).await;
        let ok = probe.check().await;
        failures = if ok { 0 } else { failures + 1 };
        let ready = publisher
            .read(|s| s.containers.iter().any(|c| c.name == name && c.ready))
            .await;
        if ok && !ready {
            publisher
                .update(|s| with(s, name, |c| c.ready = true))
                .await;
        } else if ready && failures >= probe.failure_threshold {
            publisher
                .update(|s| with(s, name, |c| c.ready = false))
                .await;
        }
    }
}

fn start_ready(c: &mut super::status::ContainerSim, ready: bool) {
    c.start(Timestamp::now());
    c.ready = ready;
}

fn with(sim: &mut PodSim, name: &str, f: impl FnOnce(&mut super::status::ContainerSim)) {
    if let Some(c) = sim.container(name) {
        f(c);
    }
}

/// True when cancelled during the sleep.
async fn sleep_or_cancel(d: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => false,
        () = cancel.cancelled() => true,
    }
}

fn field_context(pod: &Pod, pod_ip: &str) -> FieldContext {
    let m = &pod.metadata;
    let spec = pod.spec.as_ref();
    FieldContext {
        name: m.name.clone().unwrap_or_default(),
        namespace: m.namespace.clone().unwrap_or_default(),
        uid: m.uid.clone().unwrap_or_default(),
        labels: m.labels.clone().unwrap_or_default(),
        annotations: m.annotations.clone().unwrap_or_default(),
        node_name: spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        service_account: spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        pod_ip: pod_ip.into(),
        host_ip: "127.0.0.1".into(),
    }
}

/// Removes what podsim created for a pod that is gone (pod-scoped volumes, scratch dirs).
pub fn cleanup(node: &Node, pod: &Pod) {
    volumes::remove_pod_scoped(&node.volumes_root(pod), pod);
    let _ = std::fs::remove_dir_all(node.rootfs(pod));
}

/// Finds a workspace binary (`appsim`, `cutover`): explicit path, next to podsim's
/// executable (the same build), then PATH.
pub fn find_binary(name: &str, explicit: Option<PathBuf>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p);
    }
    let sibling = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join(name)))
        .filter(|p| p.is_file());
    sibling.or_else(|| {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join(name))
                .find(|p| Path::new(p).is_file())
        })
    })
}
