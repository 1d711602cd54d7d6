//! The node loop: a watch on all pods, deciding per event whether to start running a pod,
//! resume one after a podsim restart, give up a lost Job pod, or stop and force-delete a pod
//! that is being deleted (with no kubelet, a terminating pod stays until someone confirms
//! with gracePeriodSeconds=0 — the kubelet's job, so ours).

use std::{
    collections::{HashMap, HashSet},
    io::Write,
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::{api::core::v1::Pod, jiff::Timestamp};
use kube::{
    Api, Client,
    api::{DeleteParams, Preconditions},
    runtime::{WatchStreamExt, watcher},
};
use tokio::{
    signal::unix::{SignalKind, signal},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;

use super::{
    incluster::ApiServer,
    ipam::{Ipam, Network},
    plan::{Binaries, is_job_pod},
    process,
    publish::Publisher,
    runner::{self, Node, ns_name},
    scope::Scope,
    status::{PodSim, is_marked},
};

pub struct Options {
    pub state_dir: PathBuf,
    /// The appsim binary; found next to podsim or on PATH when not given.
    pub appsim: Option<PathBuf>,
    /// The cutover binary (run for `…/cutover:*` images); found like appsim.
    pub cutover: Option<PathBuf>,
    /// Serve only namespaces labelled with this instance name (see `scope`).
    pub instance: Option<String>,
    /// Where pod IPs come from (inside 127.0.0.0/8).
    pub network: Network,
}

/// A pod podsim runs.
struct Tracked {
    cancel: CancellationToken,
    task: JoinHandle<()>,
    ip: String,
    pod: Pod,
}

struct Kubelet {
    node: Arc<Node>,
    scope: Scope,
    ipam: Ipam,
    pods: HashMap<String, Tracked>,
    /// Pods given a one-shot treatment (lost Job pods, force deletions) not to repeat.
    settled: HashSet<String>,
}

pub async fn run(opts: Options) -> anyhow::Result<()> {
    std::fs::create_dir_all(&opts.state_dir)
        .with_context(|| format!("creating {}", opts.state_dir.display()))?;
    let config = kube::Config::infer().await.context("kube config")?;
    let api_server = ApiServer::from_uri(&config.cluster_url)
        .with_context(|| format!("API server address in {}", config.cluster_url))?;
    let client = Client::try_from(config).context("kube client")?;
    let find = |name: &str, explicit: Option<PathBuf>| {
        runner::find_binary(name, explicit).unwrap_or_else(|| {
            tracing::warn!("no {name} binary next to podsim or on PATH; {name} pods will fail");
            PathBuf::from(name)
        })
    };
    let binaries = Binaries {
        appsim: find("appsim", opts.appsim),
        cutover: find("cutover", opts.cutover),
    };
    tracing::info!(
        appsim = %binaries.appsim.display(),
        cutover = %binaries.cutover.display(),
        state_dir = %opts.state_dir.display(),
        instance = ?opts.instance,
        "podsim starting"
    );
    let scope = Scope::start(client.clone(), opts.instance).await?;
    let mut kubelet = Kubelet {
        scope,
        node: Arc::new(Node {
            client: client.clone(),
            state_dir: opts.state_dir.clone(),
            binaries,
            api_server,
        }),
        ipam: Ipam::new(opts.network, Some(opts.state_dir.join("ipam"))),
        pods: HashMap::new(),
        settled: HashSet::new(),
    };

    let mut events = watcher(Api::<Pod>::all(client), watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut listing: Vec<Pod> = Vec::new();
    let mut announced = false;
    loop {
        tokio::select! {
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            ev = events.next() => match ev {
                None => anyhow::bail!("pod watch ended"),
                Some(Err(e)) => tracing::warn!(error = %e, "pod watch error (retrying)"),
                Some(Ok(ev)) => match ev {
                    watcher::Event::Init => listing.clear(),
                    watcher::Event::InitApply(p) => listing.push(p),
                    watcher::Event::InitDone => {
                        kubelet.relist(std::mem::take(&mut listing)).await;
                        if !announced {
                            announced = true;
                            println!("podsim ready");
                            std::io::stdout().flush()?;
                        }
                    }
                    watcher::Event::Apply(p) => kubelet.apply(p).await,
                    watcher::Event::Delete(p) => kubelet.deleted(&p),
                },
            },
        }
    }
    tracing::info!("podsim stopping: killing the processes it started");
    kubelet.shutdown().await;
    Ok(())
}

impl Kubelet {
    /// A full list (start-up or watch re-list): reserve the IPs pods already have, forget
    /// pods that vanished meanwhile, then handle each pod.
    async fn relist(&mut self, pods: Vec<Pod>) {
        for p in pods.iter().filter(|p| is_marked(p)) {
            if let Some(ip) = p.status.as_ref().and_then(|s| s.pod_ip.as_deref()) {
                self.ipam.mark_used(ip);
            }
        }
        let present: HashSet<&str> = pods
            .iter()
            .filter_map(|p| p.metadata.uid.as_deref())
            .collect();
        let gone: Vec<String> = self
            .pods
            .keys()
            .filter(|uid| !present.contains(uid.as_str()))
            .cloned()
            .collect();
        for uid in gone {
            if let Some(t) = self.pods.remove(&uid) {
                let pod = t.pod.clone();
                self.stop(Some(t), pod, false);
            }
        }
        for p in pods {
            self.apply(p).await;
        }
    }

    async fn apply(&mut self, pod: Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        let unscheduled = pod
            .spec
            .as_ref()
            .is_none_or(|s| s.node_name.as_deref().unwrap_or_default().is_empty());
        if pod.metadata.deletion_timestamp.is_some() {
            let tracked = self.pods.remove(&uid);
            if tracked.is_some() {
                self.stop(tracked, pod, true);
            } else if unscheduled
                && !self.settled.contains(&uid)
                && self.scope.owns(ns_name(&pod).0).await
            {
                self.settled.insert(uid);
                self.stop(None, pod, true);
            }
            return;
        }
        if self.pods.contains_key(&uid)
            || !unscheduled
            || self.settled.contains(&uid)
            || !self.scope.owns(ns_name(&pod).0).await
        {
            return;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            return;
        }
        let now = Timestamp::now();
        let resumed = if is_marked(&pod) {
            if is_job_pod(&pod) {
                self.settled.insert(uid);
                tokio::spawn(fail_lost_job_pod(self.node.clone(), pod));
                return;
            }
            PodSim::from_status(&pod, now)
        } else {
            None
        };
        let sim = resumed.unwrap_or_else(|| {
            let ip = self.ipam.allocate().to_string();
            PodSim::new(&pod, &ip, now)
        });
        tracing::info!(pod = ?ns_name(&pod), ip = %sim.pod_ip, job = is_job_pod(&pod), "running pod");
        let cancel = CancellationToken::new();
        let ip = sim.pod_ip.clone();
        let task = tokio::spawn(runner::run_pod(
            self.node.clone(),
            pod.clone(),
            sim,
            cancel.clone(),
        ));
        self.pods.insert(
            uid,
            Tracked {
                cancel,
                task,
                ip,
                pod,
            },
        );
    }

    fn deleted(&mut self, pod: &Pod) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        self.settled.remove(&uid);
        let tracked = self.pods.remove(&uid);
        self.stop(tracked, pod.clone(), false);
    }

    /// Stops the pod's processes, then (if asked) confirms the deletion, then cleans up.
    fn stop(&mut self, tracked: Option<Tracked>, pod: Pod, force_delete: bool) {
        let node = self.node.clone();
        if let Some(t) = &tracked {
            self.ipam.release(&t.ip);
        }
        tokio::spawn(async move {
            if let Some(t) = tracked {
                t.cancel.cancel();
                let _ = t.task.await;
            }
            if force_delete {
                confirm_deletion(&node.client, &pod).await;
            }
            runner::cleanup(&node, &pod);
        });
    }

    async fn shutdown(self) {
        let tasks: Vec<_> = self
            .pods
            .into_values()
            .map(|t| {
                t.cancel.cancel();
                t.task
            })
            .collect();
        let _ =
            tokio::time::timeout(Duration::from_secs(8), futures::future::join_all(tasks)).await;
        process::kill_all(Duration::from_secs(1)).await;
    }
}

/// What a kubelet does once a terminating pod's containers are gone.
async fn confirm_deletion(client: &Client, pod: &Pod) {
    let (ns, name) = ns_name(pod);
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(name, &dp).await {
        Ok(_) => tracing::info!(pod = ?(ns, name), "deleted (grace period 0)"),
        Err(kube::Error::Api(s)) if s.is_not_found() || s.is_conflict() => {}
        Err(e) => tracing::warn!(pod = ?(ns, name), error = %e, "force delete failed"),
    }
}

/// A Job pod podsim was running before it restarted: its process is gone, so the pod fails
/// (the Job controller then retries or fails the Job, as after a node loss).
async fn fail_lost_job_pod(node: Arc<Node>, pod: Pod) {
    let now = Timestamp::now();
    let Some(mut sim) = PodSim::from_status(&pod, now) else {
        return;
    };
    sim.failure = Some((
        "PodsimRestarted".into(),
        "podsim restarted while this Job pod ran; its process is gone".into(),
    ));
    tracing::warn!(pod = ?ns_name(&pod), "Job pod lost by a podsim restart: marking it Failed");
    let (ns, name) = ns_name(&pod);
    let api: Api<Pod> = Api::namespaced(node.client.clone(), ns);
    Publisher::new(api, name, sim).update(|_| ()).await;
}
