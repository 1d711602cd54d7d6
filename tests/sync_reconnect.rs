//! The online sync survives the MongoDB-wire server restarting under it (the soak saw plans
//! fail with "Connection reset by peer" / "unexpected end of file"): its streams reopen after
//! the last applied event, and after the drain the clone holds every acknowledged write. A
//! binary of its own: stopping the server would break any other suite's test running beside.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use cutover::sync::{SyncInput, SyncState, SyncView, Syncs, compare};
use cutover::uri::Uri;
use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};

const KEY: &str = "ns/reconnect/uid";

async fn wait_for(syncs: &Syncs, what: &str, timeout: Duration, done: impl Fn(&SyncView) -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        let v = syncs.view(KEY);
        if done(&v) {
            return;
        }
        assert!(
            !matches!(v.state, SyncState::Failed(_) | SyncState::HistoryLost(_)),
            "the sync stopped while waiting for {what}: {v:?}"
        );
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {v:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn ids(client: &mongodb::Client, db: &str) -> BTreeSet<String> {
    let docs: Vec<Document> = client
        .database(db)
        .collection::<Document>("items")
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    docs.iter()
        .filter_map(|d| match d.get("_id") {
            Some(Bson::String(s)) => Some(s.clone()),
            Some(Bson::Int32(i)) => Some(i.to_string()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn the_sync_reopens_its_streams_after_the_server_restarts() {
    let Some(env) = env().await else { return };
    let (src, clone) = (unique("reconnect-src"), unique("reconnect-clone"));
    let client = env.mongo.clone();
    let uri = Uri::parse(&env.mongo_uri).expect("the environment's connection string");
    let items = client.database(&src).collection::<Document>("items");
    items
        .insert_many((0..2000).map(|i| doc! {"_id": i, "body": "x".repeat(100)}))
        .await
        .unwrap();

    // The app: inserts until stopped; only acknowledged ones are expected in the clone.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, items) = (stop.clone(), items.clone());
        tokio::spawn(async move {
            let mut acked = BTreeSet::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let id = format!("w{i}");
                if items.insert_one(doc! {"_id": &id}).await.is_ok() {
                    acked.insert(id);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            acked
        })
    };

    let syncs = Syncs::default();
    syncs.start(
        KEY,
        client.clone(),
        uri.clone(),
        SyncInput {
            pairs: vec![(src.clone(), clone.clone())],
            resume: vec![],
            parallelism: 2,
        },
    );
    wait_for(&syncs, "events applied", Duration::from_secs(120), |v| {
        v.state == SyncState::Streaming && v.events_applied >= 100
    })
    .await;

    // The server stops (SIGTERM to the pid the environment recorded) and stays away for 40 s,
    // longer than the driver waits to select a server (30 s) for its one retry of a write or a
    // stream (the soak saw restarts take 30-130 s); then the environment starts it again on the
    // same port with the same data.
    let dir = std::env::var("CUTOVER_ENV_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/.dev-env").to_string());
    let pid = std::fs::read_to_string(format!("{dir}/run/secantusd.pid"))
        .expect("the server's recorded pid");
    let stopped = Command::new("kill")
        .args(["-TERM", pid.trim()])
        .status()
        .expect("kill");
    assert!(stopped.success(), "stopping secantusd (pid {pid})");
    tokio::time::sleep(Duration::from_secs(40)).await;
    let up = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/hack/dev-env"))
        .arg("up")
        .output()
        .expect("run hack/dev-env");
    assert!(
        up.status.success(),
        "hack/dev-env up: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    let after = syncs.view(KEY).events_applied;
    wait_for(
        &syncs,
        "events after the restart",
        Duration::from_secs(180),
        |v| v.events_applied >= after + 100,
    )
    .await;

    stop.store(true, Ordering::Relaxed);
    let acked = writer.await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Err(e) = syncs.request_drain(KEY).await {
        assert!(Instant::now() < deadline, "the drain marker: {e}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    wait_for(&syncs, "drained", Duration::from_secs(180), |v| {
        v.state == SyncState::Drained
    })
    .await;

    let in_clone = ids(&client, &clone).await;
    let missing: Vec<_> = acked.difference(&in_clone).take(5).collect();
    assert!(
        missing.is_empty(),
        "acknowledged writes missing from the clone: {missing:?}"
    );
    assert_eq!(
        in_clone,
        ids(&client, &src).await,
        "the clone equals its source"
    );
    let differences = compare(&client, &uri, &src, &clone).await.unwrap();
    assert!(differences.is_empty(), "{differences:?}");
    eprintln!(
        "acknowledged {}, events applied {}",
        acked.len(),
        syncs.view(KEY).events_applied
    );
    syncs.forget(KEY);
    for db in [&src, &clone] {
        client.database(db).drop().await.unwrap();
    }
}
