//! A record of every version of a namespace's objects, for asserting what was ever created.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::Api;

pub use cutover_devtools::watchlog::Seen;
use cutover_devtools::watchlog::Watches;

use super::Env;

/// Every version of the Deployments, ReplicaSets, Jobs, Pods and Services of a namespace seen
/// by watches while it lives: proves what was ever created (by uid), and in which order
/// things were written.
pub struct History {
    watches: Watches,
}

impl Env {
    /// Starts watching the namespace and returns once every watch has listed.
    pub async fn history(&self, ns: &str) -> History {
        use k8s_openapi::api::apps::v1::ReplicaSet;
        use k8s_openapi::api::batch::v1::Job;
        use k8s_openapi::api::core::v1::Pod;
        let c = &self.client;
        let watches = Watches::default()
            .watch(Api::<Deployment>::namespaced(c.clone(), ns), "Deployment")
            .watch(Api::<ReplicaSet>::namespaced(c.clone(), ns), "ReplicaSet")
            .watch(Api::<Job>::namespaced(c.clone(), ns), "Job")
            .watch(Api::<Pod>::namespaced(c.clone(), ns), "Pod")
            .watch(Api::<Service>::namespaced(c.clone(), ns), "Service");
        assert!(
            watches.wait_listed(Duration::from_secs(20)).await,
            "watches did not start"
        );
        History { watches }
    }
}

impl History {
    pub fn all(&self) -> Vec<Seen> {
        self.watches.all()
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
        self.watches.all_listed()
    }
}
