//! A log of every version of some objects, as watches deliver them. The benchmark reads it for
//! when things happened (its timeline) and the integration tests for what was ever written and
//! in which order; both record through this one watch loop (`Watches`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};

/// One version of an object, as a watch delivered it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// Local time of arrival, in milliseconds since the epoch: the clock the operator's status
    /// timestamps use (object timestamps such as `creationTimestamp` have whole seconds only).
    pub at_ms: i64,
    pub kind: &'static str,
    pub name: String,
    pub uid: String,
    /// The object's resourceVersion. With a single etcd it is the etcd revision of the write,
    /// so it orders writes across objects and kinds.
    pub rv: u64,
    pub deleted: bool,
    pub object: serde_json::Value,
}

/// Where watches append what they see; cloned into each watch task.
type Log = Arc<Mutex<Vec<Seen>>>;

/// Milliseconds since the Unix epoch (the clock the operator's status timestamps use).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Watches started together into one log, stopped when dropped.
#[derive(Default)]
pub struct Watches {
    log: Log,
    listed: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Watches {
    /// Adds a watch of `api`, its versions recorded as `kind`, until the watches are dropped.
    pub fn watch<K>(mut self, api: Api<K>, kind: &'static str) -> Watches
    where
        K: kube::Resource
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug
            + Send
            + Sync
            + 'static,
    {
        let (log, listed) = (self.log.clone(), self.listed.clone());
        self.tasks.push(tokio::spawn(async move {
            let mut counted = false;
            let mut stream = watcher(api, watcher::Config::default()).boxed();
            while let Some(ev) = stream.next().await {
                let at_ms = now_ms();
                let (obj, deleted) = match ev {
                    Ok(watcher::Event::Apply(o)) | Ok(watcher::Event::InitApply(o)) => (o, false),
                    Ok(watcher::Event::Delete(o)) => (o, true),
                    Ok(watcher::Event::InitDone) => {
                        // The first list is in: the watch has seen the starting state.
                        if !counted {
                            counted = true;
                            listed.fetch_add(1, Ordering::SeqCst);
                        }
                        continue;
                    }
                    Ok(watcher::Event::Init) | Err(_) => continue,
                };
                let s = Seen {
                    at_ms,
                    kind,
                    name: obj.name_any(),
                    uid: obj.uid().unwrap_or_default(),
                    rv: obj
                        .resource_version()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0),
                    deleted,
                    object: serde_json::to_value(&obj).unwrap_or_default(),
                };
                log.lock().expect("watch log").push(s);
            }
        }));
        self
    }

    /// Whether every watch has listed the starting state.
    pub fn all_listed(&self) -> bool {
        self.listed.load(Ordering::SeqCst) >= self.tasks.len()
    }

    /// Waits until every watch has listed; false when that takes longer than `timeout`.
    pub async fn wait_listed(&self, timeout: std::time::Duration) -> bool {
        let start = std::time::Instant::now();
        while !self.all_listed() {
            if start.elapsed() > timeout {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        true
    }

    /// Every version seen so far, in order of arrival.
    pub fn all(&self) -> Vec<Seen> {
        self.log.lock().expect("watch log").clone()
    }
}

impl Drop for Watches {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
