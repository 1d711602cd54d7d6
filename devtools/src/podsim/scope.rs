//! Which namespaces this podsim serves, so two can share a control plane without both
//! running the same pod: the dev environment's podsim serves namespaces *without* the
//! `podsim.cutover.dev/instance` label; a podsim started with `--instance X` (an integration
//! test's) serves only namespaces labelled `podsim.cutover.dev/instance=X`.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client,
    runtime::{WatchStreamExt, reflector, reflector::ObjectRef, watcher},
};

pub const INSTANCE_LABEL: &str = "podsim.cutover.dev/instance";

pub struct Scope {
    instance: Option<String>,
    namespaces: reflector::Store<Namespace>,
    api: Api<Namespace>,
}

impl Scope {
    /// Starts a namespace cache and waits for its first list.
    pub async fn start(client: Client, instance: Option<String>) -> anyhow::Result<Self> {
        let api: Api<Namespace> = Api::all(client);
        let (store, writer) = reflector::store();
        let stream = reflector(writer, watcher(api.clone(), watcher::Config::default()))
            .default_backoff()
            .for_each(|_| std::future::ready(()));
        tokio::spawn(stream);
        store.wait_until_ready().await?;
        Ok(Self {
            instance,
            namespaces: store,
            api,
        })
    }

    /// Whether pods of namespace `ns` are ours. A namespace too new for the cache is read.
    pub async fn owns(&self, ns: &str) -> bool {
        let label = |n: &Namespace| {
            n.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(INSTANCE_LABEL).cloned())
        };
        let value = match self.namespaces.get(&ObjectRef::new(ns)) {
            Some(n) => label(&n),
            None => match self.api.get_opt(ns).await {
                Ok(Some(n)) => label(&n),
                _ => return false,
            },
        };
        serves(self.instance.as_deref(), value.as_deref())
    }
}

/// The rule: the unnamed instance serves unlabelled namespaces, a named one its own label.
pub fn serves(instance: Option<&str>, label: Option<&str>) -> bool {
    instance == label
}

#[cfg(test)]
mod tests {
    use super::serves;

    #[test]
    fn instances_partition_namespaces() {
        assert!(serves(None, None));
        assert!(!serves(None, Some("it-1")));
        assert!(serves(Some("it-1"), Some("it-1")));
        assert!(!serves(Some("it-1"), None));
        assert!(!serves(Some("it-1"), Some("it-2")));
    }
}
