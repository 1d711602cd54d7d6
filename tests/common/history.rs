//! A record of every version of a namespace's objects, for asserting what was ever created.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::Api;

pub use cutover_devtools::watchlog::Seen;
use cutover_devtools::watchlog::{Log, spawn_watch};

use super::Env;

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
