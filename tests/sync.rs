//! The online-sync engine (`cutover::sync`) on the real MongoDB-wire server: clones that follow
//! their sources while they take writes, equal document for document after the drain; a sync
//! aborted mid-stream resumes from its recorded state without losing or doubling anything; and
//! an oplog too small for the sync is reported as lost history instead of silently skipped.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use cutover::mongo::{SYNC_MARKERS, user_collections};
use cutover::sync::{SourceResume, SyncInput, SyncState, SyncView, Syncs, compare};
use cutover::uri::Uri;
use futures::TryStreamExt;
use mongodb::IndexModel;
use mongodb::bson::{Document, doc};
use mongodb::options::IndexOptions;

const KEY: &str = "ns/plan/uid";

fn uri(env_uri: &str) -> Uri {
    Uri::parse(env_uri).expect("the environment's connection string")
}

/// Waits until `done` holds, failing early when the sync fails unexpectedly.
async fn wait_for(
    syncs: &Syncs,
    what: &str,
    timeout: Duration,
    done: impl Fn(&SyncView) -> bool,
) -> SyncView {
    let deadline = Instant::now() + timeout;
    loop {
        let v = syncs.view(KEY);
        if done(&v) {
            return v;
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

/// The source: `items` (a secondary index), `users` (a unique index on `email`), `to_drop`
/// and `old_name` (dropped and renamed during the sync).
async fn seed(client: &mongodb::Client, db: &str, items: i32) {
    let d = client.database(db);
    let docs: Vec<Document> = (0..items)
        .map(|i| doc! {"_id": i, "n": i, "tag": format!("t{}", i % 7), "body": "x".repeat(100)})
        .collect();
    d.collection::<Document>("items")
        .insert_many(docs)
        .await
        .unwrap();
    d.collection::<Document>("items")
        .create_index(IndexModel::builder().keys(doc! {"tag": 1}).build())
        .await
        .unwrap();
    let users: Vec<Document> = (0..300)
        .map(|i| doc! {"_id": i, "email": format!("u{i}")})
        .collect();
    d.collection::<Document>("users")
        .insert_many(users)
        .await
        .unwrap();
    d.collection::<Document>("users")
        .create_index(
            IndexModel::builder()
                .keys(doc! {"email": 1})
                .options(IndexOptions::builder().unique(true).build())
                .build(),
        )
        .await
        .unwrap();
    for name in ["to_drop", "old_name"] {
        let docs: Vec<Document> = (0..200).map(|i| doc! {"_id": i, "c": name}).collect();
        d.collection::<Document>(name)
            .insert_many(docs)
            .await
            .unwrap();
    }
}

/// The app: inserts, updates and deletes until stopped, including a unique value passed from
/// a deleted user to a new one (applied again from an older token, the old insert collides
/// with the newer holder of the value).
struct Writer {
    stop: Arc<AtomicBool>,
    handle: tokio::task::JoinHandle<u64>,
}

fn writer(client: mongodb::Client, db: &str) -> Writer {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let d = client.database(db);
    let handle = tokio::spawn(async move {
        let items = d.collection::<Document>("items");
        let users = d.collection::<Document>("users");
        let mut i: u64 = 0;
        let mut x: u64 = 12345;
        while !flag.load(Ordering::Relaxed) {
            i += 1;
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let pick = ((x >> 33) % 1000) as i32;
            let r = match i % 6 {
                0 | 1 => items
                    .insert_one(doc! {"_id": format!("w{i}"), "n": i as i64, "tag": "w"})
                    .await
                    .map(|_| ()),
                2 => items
                    .update_one(
                        doc! {"_id": pick},
                        doc! {"$inc": {"n": 1}, "$set": {"by": i as i64}},
                    )
                    .await
                    .map(|_| ()),
                3 => items
                    .delete_one(doc! {"_id": format!("w{}", i.saturating_sub(5))})
                    .await
                    .map(|_| ()),
                4 => items
                    .delete_one(doc! {"_id": pick + 1000})
                    .await
                    .map(|_| ()),
                _ => {
                    let email = format!("u{}", pick % 300);
                    users.delete_one(doc! {"email": &email}).await.unwrap();
                    users
                        .insert_one(doc! {"_id": format!("r{i}"), "email": &email})
                        .await
                        .map(|_| ())
                }
            };
            r.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        i
    });
    Writer { stop, handle }
}

impl Writer {
    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.await.unwrap()
    }
}

async fn all_docs(client: &mongodb::Client, db: &str, coll: &str) -> Vec<Document> {
    client
        .database(db)
        .collection::<Document>(coll)
        .find(doc! {})
        .sort(doc! {"_id": 1})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

async fn index_names(client: &mongodb::Client, db: &str, coll: &str) -> Vec<String> {
    let mut names: Vec<String> = client
        .database(db)
        .collection::<Document>(coll)
        .list_index_names()
        .await
        .unwrap();
    names.sort();
    names
}

/// Every collection of the clone equals the source's, document for document (fields in
/// order), with the same indexes, and `compare` agrees.
async fn assert_same(client: &mongodb::Client, uri: &Uri, src: &str, clone: &str) {
    let (sc, cc) = (
        user_collections(&client.database(src)).await.unwrap(),
        user_collections(&client.database(clone)).await.unwrap(),
    );
    assert_eq!(sc, cc, "collections of {src} and {clone}");
    for c in &sc {
        let (a, b) = (
            all_docs(client, src, c).await,
            all_docs(client, clone, c).await,
        );
        assert_eq!(a.len(), b.len(), "documents in {c}");
        for (x, y) in a.iter().zip(&b) {
            assert!(
                x.iter().eq(y.iter()),
                "{c}: source {x} and clone {y} differ"
            );
        }
        assert_eq!(
            index_names(client, src, c).await,
            index_names(client, clone, c).await,
            "indexes of {c}"
        );
    }
    let differences = compare(client, uri, src, clone).await.unwrap();
    assert!(differences.is_empty(), "{differences:?}");
    let names = client
        .database(clone)
        .list_collection_names()
        .await
        .unwrap();
    assert!(
        !names.iter().any(|n| n == SYNC_MARKERS),
        "the drain markers stay out of the clone"
    );
}

/// `listCollections`' type and options of one name (None when absent).
async fn collection_info(client: &mongodb::Client, db: &str, name: &str) -> Option<Document> {
    let mut c = client
        .database(db)
        .run_cursor_command(doc! {"listCollections": 1, "filter": {"name": name}})
        .await
        .unwrap();
    c.try_next().await.unwrap().map(|mut d| {
        d.remove("info");
        d.remove("idIndex");
        d
    })
}

fn input(src: &str, clone: &str, resume: Vec<SourceResume>) -> SyncInput {
    SyncInput {
        pairs: vec![(src.to_string(), clone.to_string())],
        resume,
        parallelism: 2,
    }
}

#[tokio::test]
async fn clone_follows_writes_and_collection_changes_until_drained() {
    let Some(env) = env().await else { return };
    let (src, clone) = (unique("sync-src"), unique("sync-clone"));
    let client = env.mongo.clone();
    let uri = uri(&env.mongo_uri);
    seed(&client, &src, 5000).await;
    let app = writer(client.clone(), &src);
    let syncs = Syncs::default();
    syncs.start(
        KEY,
        client.clone(),
        uri.clone(),
        input(&src, &clone, vec![]),
    );
    // A collection dropped and one created while the bulk copy runs.
    let d = client.database(&src);
    d.collection::<Document>("to_drop").drop().await.unwrap();
    d.collection::<Document>("created")
        .create_index(IndexModel::builder().keys(doc! {"k": 1}).build())
        .await
        .unwrap();
    d.collection::<Document>("created")
        .insert_many((0..50).map(|i| doc! {"_id": i, "k": i}))
        .await
        .unwrap();
    let v = wait_for(&syncs, "streaming", Duration::from_secs(120), |v| {
        v.state == SyncState::Streaming
    })
    .await;
    assert_eq!(v.collections_done, v.collections_total);
    // More while streaming: a rename, a collection created with documents, one dropped.
    client
        .database("admin")
        .run_command(doc! {
            "renameCollection": format!("{src}.old_name"),
            "to": format!("{src}.new_name"),
        })
        .await
        .unwrap();
    d.collection::<Document>("late")
        .insert_many((0..20).map(|i| doc! {"_id": i}))
        .await
        .unwrap();
    d.collection::<Document>("created").drop().await.unwrap();
    // Created with options while streaming: a validator, and a view on one.
    d.run_command(doc! {"create": "validated",
    "validator": {"$jsonSchema": {"bsonType": "object", "required": ["a"]}},
    "validationLevel": "strict"})
        .await
        .unwrap();
    d.collection::<Document>("validated")
        .insert_many((0..5).map(|i| doc! {"_id": i, "a": i}))
        .await
        .unwrap();
    d.run_command(
        doc! {"create": "late_view", "viewOn": "validated", "pipeline": [{"$match": {"a": {"$gt": 1}}}]},
    )
    .await
    .unwrap();
    wait_for(&syncs, "events applied", Duration::from_secs(60), |v| {
        v.events_applied >= 300 && v.lag_seconds.is_some()
    })
    .await;
    // Read-only: the app stops writing, then the drain.
    let writes = app.stop().await;
    let drain = Instant::now();
    syncs.request_drain(KEY).await.unwrap();
    let v = wait_for(&syncs, "drained", Duration::from_secs(60), |v| {
        v.state == SyncState::Drained
    })
    .await;
    eprintln!(
        "writes {writes}, events applied {}, lag {:?}, drained in {:?}",
        v.events_applied,
        v.lag_seconds,
        drain.elapsed()
    );
    assert_eq!(v.resume.len(), 1);
    assert!(v.resume[0].token.is_some() && v.resume[0].bulk_finished);
    assert_same(&client, &uri, &src, &clone).await;
    let names = user_collections(&client.database(&clone)).await.unwrap();
    assert!(names.contains(&"new_name".to_string()) && names.contains(&"late".to_string()));
    assert!(!names.contains(&"to_drop".to_string()) && !names.contains(&"created".to_string()));
    for name in ["validated", "late_view"] {
        assert_eq!(
            collection_info(&client, &src, name).await,
            collection_info(&client, &clone, name).await,
            "{name}: type and options of source and clone"
        );
    }
    for db in [&src, &clone] {
        client.database(db).drop().await.unwrap();
    }
}

#[tokio::test]
async fn aborted_sync_resumes_from_its_recorded_state() {
    let Some(env) = env().await else { return };
    let (src, clone) = (unique("sync-src"), unique("sync-clone"));
    let client = env.mongo.clone();
    let uri = uri(&env.mongo_uri);
    seed(&client, &src, 3000).await;
    let app = writer(client.clone(), &src);
    let first = Syncs::default();
    first.start(
        KEY,
        client.clone(),
        uri.clone(),
        input(&src, &clone, vec![]),
    );
    let v = wait_for(&first, "events applied", Duration::from_secs(120), |v| {
        v.state == SyncState::Streaming && v.events_applied >= 200
    })
    .await;
    // What the plan recorded in status; the engine goes on a little past it (so the restart
    // applies those events again) and is then killed with the operator.
    let recorded = v.resume.clone();
    let at = v.events_applied;
    wait_for(&first, "more events", Duration::from_secs(60), |v| {
        v.events_applied >= at + 200
    })
    .await;
    first.forget(KEY);
    drop(first);
    tokio::time::sleep(Duration::from_secs(1)).await; // the app writes on meanwhile

    let second = Syncs::default();
    second.start(
        KEY,
        client.clone(),
        uri.clone(),
        input(&src, &clone, recorded),
    );
    wait_for(&second, "resumed", Duration::from_secs(60), |v| {
        v.state == SyncState::Streaming && v.events_applied >= at + 300
    })
    .await;
    app.stop().await;
    second.request_drain(KEY).await.unwrap();
    wait_for(&second, "drained", Duration::from_secs(60), |v| {
        v.state == SyncState::Drained
    })
    .await;
    assert_same(&client, &uri, &src, &clone).await;
    for db in [&src, &clone] {
        client.database(db).drop().await.unwrap();
    }
}

async fn oldest_oplog_entry(client: &mongodb::Client) -> mongodb::bson::Timestamp {
    client
        .database("local")
        .collection::<Document>("oplog.rs")
        .find_one(doc! {})
        .sort(doc! {"ts": 1})
        .await
        .unwrap()
        .unwrap()
        .get_timestamp("ts")
        .unwrap()
}

#[tokio::test]
async fn an_oplog_too_small_for_the_sync_is_history_lost_not_silent_success() {
    // The environment must be up (CI), though this test uses a server of its own.
    let Some(_env) = env().await else { return };
    let server = TinyOplogServer::start(50).await;
    let client = mongodb::Client::with_uri_str(&server.uri).await.unwrap();
    let uri = uri(&server.uri);
    let (src, clone) = ("src", "clone");

    // During the bulk copy: 8 collections of 10,000 documents copied one at a time, while
    // the app writes far more than 50 entries; the server prunes them (every few seconds)
    // before the stream could read them.
    let d = client.database(src);
    for c in 0..8 {
        let docs: Vec<Document> = (0..10_000)
            .map(|i| doc! {"_id": i, "body": "x".repeat(100)})
            .collect();
        d.collection::<Document>(&format!("c{c}"))
            .insert_many(docs)
            .await
            .unwrap();
    }
    let syncs = Syncs::default();
    let mut one = input(src, clone, vec![]);
    one.parallelism = 1;
    syncs.start(KEY, client.clone(), uri.clone(), one);
    let app = d.collection::<Document>("w");
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut i = 0;
    let lost = loop {
        let v = syncs.view(KEY);
        match v.state {
            SyncState::HistoryLost(lost) => break lost,
            SyncState::Drained | SyncState::Failed(_) => panic!("expected history lost: {v:?}"),
            _ => {}
        }
        assert!(Instant::now() < deadline, "no history lost reported: {v:?}");
        if v.state == SyncState::BulkCopying {
            i += 1;
            app.insert_one(doc! {"_id": i}).await.unwrap();
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    assert_eq!(lost.source, src);
    assert!(lost.oldest > lost.needed_from, "{lost:?}");
    assert!(lost.needed_entries > 50, "{lost:?}");
    let text = lost.to_string();
    assert!(text.contains("oplog") && text.contains("entries"), "{text}");

    // Resuming from a recorded start point the oplog no longer reaches: also history lost
    // (the stream may open, but is never reported drained).
    let recorded = SourceResume {
        source: "src2".into(),
        clone: "clone2".into(),
        start_at: oldest_oplog_entry(&client).await.into(),
        bulk_finished: true,
        ..SourceResume::default()
    };
    for i in 0..200 {
        client
            .database("src2")
            .collection::<Document>("x")
            .insert_one(doc! {"_id": i})
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while oldest_oplog_entry(&client).await <= mongodb::bson::Timestamp::from(recorded.start_at) {
        assert!(
            Instant::now() < deadline,
            "the server did not prune its oplog"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let again = Syncs::default();
    again.start(
        KEY,
        client.clone(),
        uri.clone(),
        input("src2", "clone2", vec![recorded]),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = again.view(KEY);
        match v.state {
            SyncState::HistoryLost(l) => {
                assert_eq!(l.source, "src2");
                break;
            }
            SyncState::BulkCopying | SyncState::Streaming => {}
            other => panic!("expected history lost, got {other:?}"),
        }
        assert!(Instant::now() < deadline, "no history lost reported");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn a_source_dropped_and_written_again_during_the_sync_is_followed() {
    let Some(env) = env().await else { return };
    let (src, clone) = (unique("sync-src"), unique("sync-clone"));
    let client = env.mongo.clone();
    let uri = uri(&env.mongo_uri);
    seed(&client, &src, 500).await;
    let syncs = Syncs::default();
    syncs.start(
        KEY,
        client.clone(),
        uri.clone(),
        input(&src, &clone, vec![]),
    );
    wait_for(&syncs, "streaming", Duration::from_secs(60), |v| {
        v.state == SyncState::Streaming
    })
    .await;
    // dropDatabase ends the stream (invalidate); the engine opens it again after that event.
    client.database(&src).drop().await.unwrap();
    client
        .database(&src)
        .collection::<Document>("again")
        .insert_many((0..10).map(|i| doc! {"_id": i}))
        .await
        .unwrap();
    syncs.request_drain(KEY).await.unwrap();
    wait_for(&syncs, "drained", Duration::from_secs(60), |v| {
        v.state == SyncState::Drained
    })
    .await;
    assert_same(&client, &uri, &src, &clone).await;
    for db in [&src, &clone] {
        client.database(db).drop().await.unwrap();
    }
}

/// History lost after the last check and before the drain: a sync stopped with the operator,
/// the oplog pruned past its recorded position meanwhile, resumed and asked to drain at once
/// (so the history checks, idle while draining, are not what notices): HistoryLost (the server
/// refuses the pruned token, read as such; before, a failed sync), never Drained.
#[tokio::test]
async fn history_lost_before_the_drain_is_found_by_the_drains_proof() {
    let Some(_env) = env().await else { return };
    let server = TinyOplogServer::start(50).await;
    let client = mongodb::Client::with_uri_str(&server.uri).await.unwrap();
    let uri = uri(&server.uri);
    let (src, clone) = ("src", "clone");
    let d = client.database(src);
    d.collection::<Document>("c")
        .insert_many((0..20).map(|i| doc! {"_id": i}))
        .await
        .unwrap();
    let first = Syncs::default();
    first.start(KEY, client.clone(), uri.clone(), input(src, clone, vec![]));
    wait_for(&first, "streaming", Duration::from_secs(60), |v| {
        v.state == SyncState::Streaming
    })
    .await;
    for i in 100..110 {
        d.collection::<Document>("c")
            .insert_one(doc! {"_id": i})
            .await
            .unwrap();
    }
    let v = wait_for(&first, "events applied", Duration::from_secs(60), |v| {
        v.events_applied >= 10 && v.resume[0].position.is_some()
    })
    .await;
    let recorded = v.resume.clone();
    first.forget(KEY);
    drop(first);
    // Meanwhile the app writes far more than the oplog holds; the server prunes.
    let position = recorded[0].position.unwrap();
    for i in 1000..1200 {
        d.collection::<Document>("c")
            .insert_one(doc! {"_id": i})
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while oldest_oplog_entry(&client).await <= mongodb::bson::Timestamp::from(position) {
        assert!(
            Instant::now() < deadline,
            "the server did not prune its oplog"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let again = Syncs::default();
    again.start(
        KEY,
        client.clone(),
        uri.clone(),
        input(src, clone, recorded),
    );
    again.request_drain(KEY).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = again.view(KEY);
        match v.state {
            SyncState::HistoryLost(l) => {
                assert_eq!(l.source, src);
                assert!(l.oldest > position, "{l:?}");
                break;
            }
            SyncState::BulkCopying | SyncState::Streaming => {}
            other => panic!("expected history lost, got {other:?}"),
        }
        assert!(Instant::now() < deadline, "no history lost reported");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop().await;
}

/// Measurement, not a test (`--ignored`): what a change stream costs on this server as the
/// oplog grows (opening at a time, a getMore with a few new events, opening after a token)
/// beside a full read of the oplog (the history check).
#[tokio::test]
#[ignore]
async fn measure_stream_costs_against_the_oplog_size() {
    use futures::StreamExt;
    let Some(env) = env().await else { return };
    let client = env.mongo.clone();
    let db = client.database(&unique("measure"));
    let coll = db.collection::<Document>("bulk");
    let oplog = client.database("local").collection::<Document>("oplog.rs");
    let mut n = 0i64;
    for target in [50_000i64, 200_000, 600_000] {
        let have = oplog.estimated_document_count().await.unwrap() as i64;
        let mut todo = target - have;
        while todo > 0 {
            let batch = todo.min(10_000);
            coll.insert_many((0..batch).map(|i| doc! {"_id": n + i, "b": "x".repeat(20)}))
                .await
                .unwrap();
            n += batch;
            todo -= batch;
        }
        let entries = oplog.estimated_document_count().await.unwrap();
        let mut session = client.start_session().await.unwrap();
        let r = db
            .run_command(doc! {"ping": 1})
            .session(&mut session)
            .await
            .unwrap();
        let t = r.get_timestamp("operationTime").unwrap();
        db.collection::<Document>("probe")
            .insert_one(doc! {"_id": n})
            .await
            .unwrap();
        // (a) open at a time and read the first event.
        let a = Instant::now();
        let mut s = db
            .watch()
            .start_at_operation_time(t)
            .max_await_time(Duration::from_millis(100))
            .await
            .unwrap();
        let opened = a.elapsed();
        let first = s.next().await.unwrap().unwrap();
        let a_first = a.elapsed();
        let token = s.resume_token().unwrap();
        // (b) a getMore with three new events.
        for k in 1..=3 {
            db.collection::<Document>("probe")
                .insert_one(doc! {"_id": n + k})
                .await
                .unwrap();
        }
        let b = Instant::now();
        let mut got = 0;
        while got < 3 {
            if s.next_if_any().await.unwrap().is_some() {
                got += 1;
            }
        }
        let b_took = b.elapsed();
        // (b') an empty getMore (nothing new; max await 100 ms).
        let b2 = Instant::now();
        let _ = s.next_if_any().await.unwrap();
        let b2_took = b2.elapsed();
        drop(s);
        // (c) resumeAfter the first event's token, first batch.
        let c = Instant::now();
        let mut s = db
            .watch()
            .resume_after(token)
            .max_await_time(Duration::from_millis(100))
            .await
            .unwrap();
        let c_open = c.elapsed();
        let _ = s.next_if_any().await.unwrap();
        let c_took = c.elapsed();
        drop(s);
        // (e) open at the head (now), nothing to return.
        let r = db
            .run_command(doc! {"ping": 1})
            .session(&mut session)
            .await
            .unwrap();
        let now = r.get_timestamp("operationTime").unwrap();
        let e = Instant::now();
        let mut s = db
            .watch()
            .start_at_operation_time(now)
            .max_await_time(Duration::from_millis(100))
            .await
            .unwrap();
        let e_open = e.elapsed();
        let _ = s.next_if_any().await.unwrap();
        let e_took = e.elapsed();
        drop(s);
        // (d) the history check: one $group pass over the oplog.
        let d = Instant::now();
        let _: Vec<Document> = oplog
            .aggregate(vec![doc! {"$group": {"_id": null, "o": {"$min": "$ts"}, "n": {"$max": "$ts"}, "c": {"$sum": 1}}}])
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let d_took = d.elapsed();
        eprintln!(
            "MEASURE oplog {entries}: (a) open at T {opened:?}, first event {a_first:?} ({}); (b) getMore 3 events {b_took:?}, empty getMore {b2_took:?}; (c) resumeAfter open {c_open:?}, first batch {c_took:?}; (e) open at head {e_open:?}, first getMore {e_took:?}; (d) oplog $group {d_took:?}",
            first.operation_type == mongodb::change_stream::event::OperationType::Insert
        );
    }
    db.drop().await.unwrap();
}

/// Where the online sync's apply time goes (issue #15): raw change-stream reads (the server's
/// batch sizes and getMore times, with and without `fullDocument: updateLookup`), one
/// replace-with-upsert, a `ping` (the lag measure) and a proof stream (a stream opened after a
/// token, first event). Numbers go to the module doc of `src/sync/mod.rs`.
#[tokio::test]
#[ignore]
async fn measure_where_the_apply_time_goes() {
    let Some(env) = env().await else { return };
    let client = env.mongo.clone();
    let name = unique("measure-apply");
    let db = client.database(&name);
    let coll = db.collection::<Document>("items");
    coll.insert_one(doc! {"_id": -1}).await.unwrap();
    const N: i64 = 3000;
    let mut session = client.start_session().await.unwrap();
    let t = db
        .run_command(doc! {"ping": 1})
        .session(&mut session)
        .await
        .unwrap()
        .get_timestamp("operationTime")
        .unwrap();
    // N events: N/3 inserts, N/3 updates, N/3 deletes, one statement each (as an app writes).
    let w = Instant::now();
    for i in 0..N / 3 {
        coll.insert_one(doc! {"_id": i, "n": i, "body": "x".repeat(100)})
            .await
            .unwrap();
    }
    for i in 0..N / 3 {
        coll.update_one(doc! {"_id": i}, doc! {"$inc": {"n": 1}})
            .await
            .unwrap();
    }
    for i in 0..N / 3 {
        coll.delete_one(doc! {"_id": i}).await.unwrap();
    }
    eprintln!(
        "MEASURE {N} single writes took {:?} ({:.0}/s)",
        w.elapsed(),
        N as f64 / w.elapsed().as_secs_f64()
    );
    // Raw reads: aggregate + getMore until N events, batch sizes and times.
    for (label, lookup, batch) in [
        ("no lookup", false, None),
        ("updateLookup", true, None),
        ("updateLookup, batchSize 1000", true, Some(1000)),
    ] {
        let mut cs = doc! {"startAtOperationTime": t};
        if lookup {
            cs.insert("fullDocument", "updateLookup");
        }
        let mut cursor = doc! {};
        if let Some(b) = batch {
            cursor.insert("batchSize", b);
        }
        let a = Instant::now();
        let reply = db
            .run_command(
                doc! {"aggregate": 1, "pipeline": [{"$changeStream": cs}], "cursor": cursor},
            )
            .await
            .unwrap();
        let c = reply.get_document("cursor").unwrap();
        let id = c.get_i64("id").unwrap();
        let mut got = c.get_array("firstBatch").unwrap().len();
        let first = got;
        let mut sizes = vec![];
        let mut empty = 0;
        let mut getmores = Duration::ZERO;
        while got < N as usize + 1 {
            let mut gm = doc! {"getMore": id, "collection": "$cmd.aggregate"};
            if let Some(b) = batch {
                gm.insert("batchSize", b);
            }
            let g = Instant::now();
            let r = db.run_command(gm).await.unwrap();
            getmores += g.elapsed();
            let n = r
                .get_document("cursor")
                .unwrap()
                .get_array("nextBatch")
                .unwrap()
                .len();
            if n == 0 {
                empty += 1;
            } else {
                sizes.push(n);
            }
            got += n;
        }
        let took = a.elapsed();
        let _ = db
            .run_command(doc! {"killCursors": "$cmd.aggregate", "cursors": [id]})
            .await;
        eprintln!(
            "MEASURE raw stream ({label}): {got} events in {took:?} ({:.0}/s); first batch {first}, getMores with events {} (sizes {:?}...), empty {empty}, time in getMores {getmores:?}",
            got as f64 / took.as_secs_f64(),
            sizes.len(),
            &sizes[..sizes.len().min(8)]
        );
    }
    // The driver's stream, event by event (as `follow` reads it).
    let a = Instant::now();
    let mut s = db
        .watch()
        .start_at_operation_time(t)
        .full_document(mongodb::options::FullDocumentType::UpdateLookup)
        .show_expanded_events(true)
        .max_await_time(Duration::from_millis(500))
        .await
        .unwrap()
        .with_type::<Document>();
    let mut got = 0;
    let mut token = None;
    while got < N + 1 {
        if s.next_if_any().await.unwrap().is_some() {
            got += 1;
            if got == N / 2 {
                token = s.resume_token();
            }
        }
    }
    eprintln!(
        "MEASURE driver stream next_if_any (updateLookup): {got} events in {:?} ({:.0}/s)",
        a.elapsed(),
        got as f64 / a.elapsed().as_secs_f64()
    );
    drop(s);
    // One replace-with-upsert, one delete, one ping, one proof stream.
    let target = client.database(&format!("{name}-clone"));
    let tc = target.collection::<Document>("items");
    let k = 500;
    let a = Instant::now();
    for i in 0..k {
        tc.replace_one(
            doc! {"_id": i},
            doc! {"_id": i, "n": i, "body": "x".repeat(100)},
        )
        .upsert(true)
        .await
        .unwrap();
    }
    let upsert = a.elapsed() / k as u32;
    let a = Instant::now();
    for i in 0..k {
        tc.delete_one(doc! {"_id": i}).await.unwrap();
    }
    let delete = a.elapsed() / k as u32;
    // The same documents as one multi-statement update (upsert) and one delete command.
    let a = Instant::now();
    let updates: Vec<Document> = (0..k)
        .map(|i| doc! {"q": {"_id": i}, "u": {"_id": i, "n": i, "body": "x".repeat(100)}, "upsert": true})
        .collect();
    let r = target
        .run_command(doc! {"update": "items", "updates": updates, "ordered": true})
        .await
        .unwrap();
    let batch_update = a.elapsed();
    assert_eq!(r.get_i32("n").unwrap(), k, "{r}");
    let a = Instant::now();
    let deletes: Vec<Document> = (0..k).map(|i| doc! {"q": {"_id": i}, "limit": 1}).collect();
    let r = target
        .run_command(doc! {"delete": "items", "deletes": deletes, "ordered": true})
        .await
        .unwrap();
    let batch_delete = a.elapsed();
    assert_eq!(r.get_i32("n").unwrap(), k, "{r}");
    let a = Instant::now();
    for _ in 0..100 {
        db.run_command(doc! {"ping": 1}).await.unwrap();
    }
    let ping = a.elapsed() / 100;
    let a = Instant::now();
    let mut s = db
        .watch()
        .resume_after(token.unwrap())
        .full_document(mongodb::options::FullDocumentType::UpdateLookup)
        .show_expanded_events(true)
        .await
        .unwrap();
    while s.next_if_any().await.unwrap().is_none() {}
    let prove = a.elapsed();
    eprintln!(
        "MEASURE replace-with-upsert {upsert:?} each, delete_one {delete:?} each; {k} as one update command {batch_update:?}, one delete command {batch_delete:?}; ping {ping:?}; proof stream (resumeAfter, first event) {prove:?}"
    );
    drop(s);
    for d in [&db, &target] {
        d.drop().await.unwrap();
    }
}

/// The online sync's apply rate under a sustained insert/update/delete load into one source
/// (`CUTOVER_MEASURE_RATES`, default 100,500,2000 writes/s; 20 s each), then the drain time
/// (request_drain -> Drained) after the load stops. Prints numbers; asserts only that the clone
/// equals the source.
#[tokio::test]
#[ignore]
async fn measure_sync_apply_rate_under_load() {
    let Some(env) = env().await else { return };
    let client = env.mongo.clone();
    let uri = uri(&env.mongo_uri);
    let rates: Vec<u64> = std::env::var("CUTOVER_MEASURE_RATES")
        .unwrap_or_else(|_| "100,500,2000".into())
        .split(',')
        .map(|r| r.trim().parse().unwrap())
        .collect();
    let secs: u64 = std::env::var("CUTOVER_MEASURE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    for rate in rates {
        let (src, clone) = (unique("rate-src"), unique("rate-clone"));
        seed(&client, &src, 2000).await;
        let syncs = Syncs::default();
        syncs.start(
            KEY,
            client.clone(),
            uri.clone(),
            input(&src, &clone, vec![]),
        );
        wait_for(&syncs, "streaming", Duration::from_secs(120), |v| {
            v.state == SyncState::Streaming
        })
        .await;
        let before = syncs.view(KEY).events_applied;
        // `writers` tasks, each at rate/writers per second: insert, update, delete in turn.
        let writers = rate.div_ceil(100).clamp(1, 16);
        let stop = Arc::new(AtomicBool::new(false));
        let mut handles = vec![];
        for w in 0..writers {
            let items = client.database(&src).collection::<Document>("items");
            let stop = stop.clone();
            let period = Duration::from_secs_f64(writers as f64 / rate as f64);
            handles.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                let mut i: i64 = 0;
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let id = format!("w{w}-{}", i / 3);
                    match i % 3 {
                        0 => items
                            .insert_one(doc! {"_id": &id, "n": i, "tag": "w"})
                            .await
                            .map(|_| ()),
                        1 => items
                            .update_one(doc! {"_id": (i % 2000) as i32}, doc! {"$inc": {"n": 1}})
                            .await
                            .map(|_| ()),
                        _ => items
                            .delete_one(doc! {"_id": format!("w{w}-{}", i / 3 - 1)})
                            .await
                            .map(|_| ()),
                    }
                    .unwrap();
                    i += 1;
                }
                i as u64
            }));
        }
        let start = Instant::now();
        let mut samples = vec![];
        while start.elapsed() < Duration::from_secs(secs) {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let v = syncs.view(KEY);
            samples.push((
                start.elapsed().as_secs(),
                v.events_applied - before,
                v.lag_seconds,
            ));
        }
        stop.store(true, Ordering::Relaxed);
        let mut writes = 0;
        for h in handles {
            writes += h.await.unwrap();
        }
        let took = start.elapsed();
        let applied = syncs.view(KEY).events_applied - before;
        let drain = Instant::now();
        syncs.request_drain(KEY).await.unwrap();
        let v = wait_for(&syncs, "drained", Duration::from_secs(600), |v| {
            v.state == SyncState::Drained
        })
        .await;
        let drained = drain.elapsed();
        eprintln!(
            "MEASURE rate {rate}/s asked: {writes} writes in {took:?} ({:.0}/s done); applied {applied} meanwhile ({:.0}/s); samples (s, applied, lag) {samples:?}; drain {drained:?} ({} events applied in the drain, {:.0}/s)",
            writes as f64 / took.as_secs_f64(),
            applied as f64 / took.as_secs_f64(),
            v.events_applied - before - applied,
            (v.events_applied - before - applied) as f64 / drained.as_secs_f64().max(0.001),
        );
        assert_same(&client, &uri, &src, &clone).await;
        syncs.forget(KEY);
        for db in [&src, &clone] {
            client.database(db).drop().await.unwrap();
        }
    }
}

/// The online sync's apply capacity: a backlog of `CUTOVER_MEASURE_BACKLOG` events (default
/// 30,000: inserts, then updates, then deletes of as many documents, written with multi-document
/// commands, faster than any app) while streaming, then the drain: events applied per second.
#[tokio::test]
#[ignore]
async fn measure_sync_apply_capacity_on_a_backlog() {
    let Some(env) = env().await else { return };
    let client = env.mongo.clone();
    let uri = uri(&env.mongo_uri);
    let n: i64 = std::env::var("CUTOVER_MEASURE_BACKLOG")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30_000)
        / 3;
    let (src, clone) = (unique("backlog-src"), unique("backlog-clone"));
    seed(&client, &src, 2000).await;
    let syncs = Syncs::default();
    syncs.start(
        KEY,
        client.clone(),
        uri.clone(),
        input(&src, &clone, vec![]),
    );
    wait_for(&syncs, "streaming", Duration::from_secs(120), |v| {
        v.state == SyncState::Streaming
    })
    .await;
    let before = syncs.view(KEY).events_applied;
    let items = client.database(&src).collection::<Document>("items");
    let start = Instant::now();
    items
        .insert_many((0..n).map(|i| doc! {"_id": format!("b{i}"), "n": i, "body": "x".repeat(100)}))
        .await
        .unwrap();
    items
        .update_many(doc! {"_id": {"$regex": "^b"}}, doc! {"$inc": {"n": 1}})
        .await
        .unwrap();
    items
        .delete_many(doc! {"_id": {"$regex": "^b"}})
        .await
        .unwrap();
    let written = start.elapsed();
    syncs.request_drain(KEY).await.unwrap();
    let v = wait_for(&syncs, "drained", Duration::from_secs(900), |v| {
        v.state == SyncState::Drained
    })
    .await;
    let took = start.elapsed();
    let applied = v.events_applied - before;
    eprintln!(
        "MEASURE backlog of {} events written in {written:?}; all applied and drained {took:?} after the first write: {applied} events, {:.0}/s",
        3 * n,
        applied as f64 / took.as_secs_f64()
    );
    assert_same(&client, &uri, &src, &clone).await;
    syncs.forget(KEY);
    for db in [&src, &clone] {
        client.database(db).drop().await.unwrap();
    }
}

/// `compare` (counts and up to 1,000 sampled documents per collection) at 100,000 documents in
/// one collection: it runs inside the read-only window.
#[tokio::test]
#[ignore]
async fn measure_compare_at_100k_documents() {
    let Some(env) = env().await else { return };
    let client = env.mongo.clone();
    let uri = uri(&env.mongo_uri);
    let (src, clone) = (unique("cmp-src"), unique("cmp-clone"));
    for db in [&src, &clone] {
        let c = client.database(db).collection::<Document>("items");
        for chunk in 0..10 {
            c.insert_many((0..10_000).map(|i| {
                let n = chunk * 10_000 + i;
                doc! {"_id": n, "n": n, "tag": format!("t{}", n % 7), "body": "x".repeat(200)}
            }))
            .await
            .unwrap();
        }
    }
    // Its parts, one at a time, on the source.
    let c = client.database(&src).collection::<Document>("items");
    let a = Instant::now();
    let n = c.count_documents(doc! {}).await.unwrap();
    let count = a.elapsed();
    let a = Instant::now();
    let _ = c.estimated_document_count().await.unwrap();
    let estimated = a.elapsed();
    let a = Instant::now();
    let sampled: Vec<Document> = c
        .aggregate(vec![
            doc! {"$sample": {"size": 1000}},
            doc! {"$project": {"_id": 1}},
        ])
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let sample = a.elapsed();
    let ids: Vec<_> = sampled
        .iter()
        .map(|d| d.get("_id").unwrap().clone())
        .collect();
    let a = Instant::now();
    let got: Vec<Document> = c
        .find(doc! {"_id": {"$in": ids}})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let by_ids = a.elapsed();
    eprintln!(
        "MEASURE at {n} documents: count_documents {count:?}, estimatedDocumentCount {estimated:?}, $sample 1000 {sample:?}, find $in 1000 _ids {by_ids:?} ({} found)",
        got.len()
    );
    for _ in 0..2 {
        let a = Instant::now();
        let differences = compare(&client, &uri, &src, &clone).await.unwrap();
        eprintln!("MEASURE compare at 100k documents: {:?}", a.elapsed());
        assert!(differences.is_empty(), "{differences:?}");
    }
    for db in [&src, &clone] {
        client.database(db).drop().await.unwrap();
    }
}

/// `compare`'s parts on two existing databases (`CMP_SOURCE`, `CMP_CLONE`), per collection:
/// for sizes a test cannot seed quickly (the 1M benchmark's sources and clones).
#[tokio::test]
#[ignore]
async fn measure_compare_of_named_databases() {
    let (Ok(src), Ok(clone)) = (std::env::var("CMP_SOURCE"), std::env::var("CMP_CLONE")) else {
        return;
    };
    let Some(env) = env().await else { return };
    let client = env.mongo.clone();
    for name in user_collections(&client.database(&src)).await.unwrap() {
        for db in [&src, &clone] {
            let c = client.database(db).collection::<Document>(&name);
            let a = Instant::now();
            let n = c.count_documents(doc! {}).await.unwrap();
            let count = a.elapsed();
            let a = Instant::now();
            let sampled: Vec<Document> = c
                .aggregate(vec![
                    doc! {"$sample": {"size": 1000}},
                    doc! {"$project": {"_id": 1}},
                ])
                .await
                .unwrap()
                .try_collect()
                .await
                .unwrap();
            eprintln!(
                "MEASURE {db}.{name}: {n} documents, count_documents {count:?}, $sample 1000 {:?} ({} ids)",
                a.elapsed(),
                sampled.len()
            );
        }
    }
    let a = Instant::now();
    let differences = compare(&client, &uri(&env.mongo_uri), &src, &clone)
        .await
        .unwrap();
    eprintln!(
        "MEASURE compare {src} / {clone}: {:?}, {differences:?}",
        a.elapsed()
    );
}
