//! "Each Job created at most once": every Job of the soak's namespaces, watched from before
//! the first plan to the end, by name and uid. Two uids under one name are two creations.
//! The watch re-lists after an API server restart or an etcd compaction (backoff), and a
//! re-list shows the same uid again, which is not a creation.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::ResourceExt;
use kube::runtime::{WatchStreamExt, watcher};

/// `namespace/name` → the uids seen under it.
type Seen = Arc<Mutex<BTreeMap<String, BTreeSet<String>>>>;

pub struct JobWatch {
    seen: Seen,
    listed: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl JobWatch {
    /// Starts watching every Job in the namespaces whose name starts with `prefix`, and waits
    /// (up to 30 s) until the first list is in.
    pub async fn start(client: kube::Client, prefix: String) -> anyhow::Result<JobWatch> {
        let seen: Seen = Arc::default();
        let listed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s, l) = (seen.clone(), listed.clone());
        let task = tokio::spawn(async move {
            let mut stream = watcher(Api::<Job>::all(client), watcher::Config::default())
                .default_backoff()
                .boxed();
            while let Some(ev) = stream.next().await {
                let job = match ev {
                    Ok(watcher::Event::Apply(j)) | Ok(watcher::Event::InitApply(j)) => j,
                    Ok(watcher::Event::Delete(j)) => j,
                    Ok(watcher::Event::InitDone) => {
                        l.store(true, std::sync::atomic::Ordering::SeqCst);
                        continue;
                    }
                    Ok(watcher::Event::Init) | Err(_) => continue,
                };
                let ns = job.namespace().unwrap_or_default();
                if !ns.starts_with(&prefix) {
                    continue;
                }
                let key = format!("{ns}/{}", job.name_any());
                s.lock()
                    .expect("job watch")
                    .entry(key)
                    .or_default()
                    .insert(job.uid().unwrap_or_default());
            }
        });
        let w = JobWatch { seen, listed, task };
        let start = std::time::Instant::now();
        while !w.listed.load(std::sync::atomic::Ordering::SeqCst) {
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(30),
                "the Job watch did not list within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(w)
    }

    /// Stops the watch; every Job name created more than once in `namespace`, with its uids,
    /// and how many Jobs were seen there.
    pub fn created_twice(&self, namespace: &str) -> (usize, Vec<(String, Vec<String>)>) {
        let seen = self.seen.lock().expect("job watch");
        let prefix = format!("{namespace}/");
        let mine: Vec<_> = seen
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .collect();
        let twice = mine
            .iter()
            .filter(|(_, uids)| uids.len() > 1)
            .map(|(k, uids)| {
                (
                    k.trim_start_matches(&prefix).to_string(),
                    uids.iter().cloned().collect(),
                )
            })
            .collect();
        (mine.len(), twice)
    }

    pub fn stop(self) {
        self.task.abort();
    }
}
