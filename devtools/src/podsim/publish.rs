//! Owns one pod's `PodSim` and writes it to the pod's `status` subresource after every
//! change. Changes go through one lock, so patches are sent in the order the state changed
//! and each patch carries the whole status (merge patch replaces the lists).

use std::time::Duration;

use k8s_openapi::{api::core::v1::Pod, jiff::Timestamp};
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use tokio::sync::Mutex;

use super::status::PodSim;

/// How long a status patch is retried (an API server restart takes seconds).
const PUBLISH_PATIENCE: Duration = Duration::from_secs(120);

pub struct Publisher {
    api: Api<Pod>,
    name: String,
    sim: Mutex<PodSim>,
}

impl Publisher {
    pub fn new(api: Api<Pod>, name: &str, sim: PodSim) -> Self {
        Self {
            api,
            name: name.into(),
            sim: Mutex::new(sim),
        }
    }

    /// Applies `change` and publishes the resulting status; returns what `change` returned.
    pub async fn update<R>(&self, change: impl FnOnce(&mut PodSim) -> R) -> R {
        let mut sim = self.sim.lock().await;
        let out = change(&mut sim);
        let status = sim.status(Timestamp::now());
        let patch = serde_json::json!({ "status": status });
        // Like the kubelet's status manager, keep trying through an API server outage: a
        // status that never arrives leaves a ready pod unready for good.
        let deadline = std::time::Instant::now() + PUBLISH_PATIENCE;
        let mut attempt = 0u64;
        loop {
            attempt += 1;
            match self
                .api
                .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => break,
                // The pod is gone; its runner is about to be stopped.
                Err(kube::Error::Api(s)) if s.is_not_found() => break,
                Err(e) if std::time::Instant::now() > deadline => {
                    tracing::error!(pod = %self.name, attempt, error = %e, "status patch failed; giving up");
                    break;
                }
                Err(e) => {
                    tracing::warn!(pod = %self.name, attempt, error = %e, "status patch failed");
                    tokio::time::sleep(Duration::from_millis((300 * attempt).min(2000))).await;
                }
            }
        }
        out
    }

    /// Reads the state without publishing.
    pub async fn read<R>(&self, f: impl FnOnce(&PodSim) -> R) -> R {
        f(&*self.sim.lock().await)
    }
}
