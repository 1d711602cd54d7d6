//! What happened in the namespace and when the benchmark saw it: every version of the
//! Deployments, Jobs, Services and UpgradePlans delivered by watches, stamped with the local time of
//! arrival (milliseconds, the clock the operator's status timestamps use; object timestamps
//! such as `creationTimestamp` or a Job's `completionTime` have only whole seconds), and the
//! clone's migration document, polled.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::bail;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Service;
use kube::api::DynamicObject;
use kube::{Api, Client};
use mongodb::bson::{Document, doc};

use super::cluster::{now_ms, plan_resource};

pub use crate::watchlog::Seen;
use crate::watchlog::Watches;

pub struct History {
    watches: Watches,
}

impl History {
    /// Starts the watches and returns once each has listed.
    pub async fn start(client: &Client, ns: &str) -> anyhow::Result<History> {
        let watches = Watches::default()
            .watch(
                Api::<Deployment>::namespaced(client.clone(), ns),
                "Deployment",
            )
            .watch(Api::<Job>::namespaced(client.clone(), ns), "Job")
            .watch(Api::<Service>::namespaced(client.clone(), ns), "Service")
            .watch(
                Api::<DynamicObject>::namespaced_with(client.clone(), ns, &plan_resource()),
                "UpgradePlan",
            );
        if !watches.wait_listed(Duration::from_secs(30)).await {
            bail!("the benchmark's watches did not start");
        }
        Ok(History { watches })
    }

    pub fn all(&self) -> Vec<Seen> {
        self.watches.all()
    }
}

/// The first time (ms) a version of `kind`/`name`, seen at or after `after_ms`, satisfied `pred`.
pub fn first_seen(
    all: &[Seen],
    kind: &str,
    name: &str,
    after_ms: i64,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> Option<i64> {
    all.iter()
        .filter(|s| s.kind == kind && s.name == name && !s.deleted && s.at_ms >= after_ms)
        .find(|s| pred(&s.object))
        .map(|s| s.at_ms)
}

/// A change of the migration document: (when, version, locked).
type DocChange = (i64, Option<i64>, Option<bool>);

/// Polls the clone's migration document every 100 ms; records each change of
/// (version, locked) with its time. Stops when dropped.
pub struct MigrationDocPoller {
    changes: Arc<Mutex<Vec<DocChange>>>,
    task: tokio::task::JoinHandle<()>,
}

impl MigrationDocPoller {
    pub fn start(mongo: mongodb::Client, database: String) -> MigrationDocPoller {
        let changes = Arc::new(Mutex::new(Vec::new()));
        let log = changes.clone();
        let task = tokio::spawn(async move {
            let coll = mongo
                .database(&database)
                .collection::<Document>("Migration");
            let mut last: Option<(Option<i64>, Option<bool>)> = None;
            loop {
                if let Ok(Some(d)) = coll.find_one(doc! {}).await {
                    let version = d
                        .get_i32("Version")
                        .map(i64::from)
                        .or_else(|_| d.get_i64("Version"))
                        .ok();
                    let locked = d.get_bool("IsLocked").ok();
                    if last != Some((version, locked)) {
                        last = Some((version, locked));
                        log.lock()
                            .expect("poller")
                            .push((now_ms(), version, locked));
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        MigrationDocPoller { changes, task }
    }

    /// When the document first showed `version >= target` and no lock.
    pub fn final_at(&self, target: i64) -> Option<i64> {
        self.changes
            .lock()
            .expect("poller")
            .iter()
            .find(|(_, v, l)| v.is_some_and(|v| v >= target) && *l != Some(true))
            .map(|(t, _, _)| *t)
    }
}

impl Drop for MigrationDocPoller {
    fn drop(&mut self) {
        self.task.abort();
    }
}
