//! What a node restart (issue 16's soak: podsim restarted, every container killed) leaves
//! behind for the old version, on the real environment:
//!
//! - finding 7: an old pod that cannot be reached when the read-only write is probed (its
//!   node restarting) is no evidence that it accepts writes: the probe is repeated until it
//!   answers, and the plan goes on;
//! - finding 2b: an old-version pod killed just after it took its start-up migration lock
//!   leaves the lock held in the SOURCE database, and the old version's replacements wait for
//!   it: the plan reports it (MigrationLockStale naming the source) while it waits for the old
//!   version, never releases it itself, and goes on once a person did.
//!
//! A binary of its own: it binds listeners on the app's pod addresses, and its scenarios
//! stand for a node restart, which must not land in another suite's plans.

mod common;

use std::time::{Duration, Instant};

use common::*;
use cutover::crd::Phase;
use mongodb::bson::{Document, doc};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TIMEOUT: Duration = Duration::from_secs(180);

/// The podsim restart kills every pod of the environment: it runs alone, the other tests of
/// this binary share.
static NODE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Answers every HTTP request on `addr` with 403 (the app's read-only refusal), until dropped.
async fn refuse_writes_on(addr: std::net::SocketAddr) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(
                        b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    )
                    .await;
            });
        }
    })
}

/// The plan's status message, once it contains `part`.
async fn wait_message(env: &Env, op: &Operator, ns: &str, plan: &str, part: &str) -> String {
    let p = env
        .wait_plan(
            op,
            ns,
            plan,
            &format!("message with {part:?}"),
            TIMEOUT,
            |p| p.status.as_ref().is_some_and(|s| s.message.contains(part)),
        )
        .await;
    status(&p).message
}

/// Finding 7. The read-only probe goes to a port where, at first, nothing of the old version
/// listens (as while its node restarts: connection refused). Before the fix the plan failed
/// at once ("still accepts writes ... Connection refused") and rolled back; now it reports
/// the pods unreachable, probes again, and proceeds once they answer (refusing the write).
#[tokio::test]
async fn an_unreachable_old_pod_is_probed_again_and_the_plan_succeeds() {
    let Some(env) = env().await else { return };
    let _turn = NODE.read().await;
    let (app, op) = env.app_with_operator("node-probe").await;
    // A port on the pods' addresses nobody listens on yet.
    let port = 20000 + (std::process::id() % 20000) as u16;
    let mut plan = squidex_plan("probe", &app, 2);
    plan["spec"]["readOnly"]["verify"]["http"]["port"] = json!(port);
    env.apply(&app.ns, plan).await;

    let msg = wait_message(&env, &op, &app.ns, "probe", "unreachable: squidex-").await;
    assert!(msg.contains("Connection refused"), "{msg}");
    let plan = env.plans(&app.ns).get("probe").await.unwrap();
    assert_eq!(status(&plan).phase, Phase::EnteringReadOnly, "{msg}");
    assert!(status(&plan).failure.is_none(), "{msg}");
    // Still waiting a few probes later: never taken for an accepted write.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let plan = env.plans(&app.ns).get("probe").await.unwrap();
    assert_eq!(status(&plan).phase, Phase::EnteringReadOnly);

    // The pods answer again (their node is back): they refuse the write.
    let pods = env.ready_pods(&app.ns, "cutover.dev/track=squidex").await;
    assert!(!pods.is_empty());
    let mut listeners = Vec::new();
    for (_, ip) in &pods {
        listeners.push(refuse_writes_on(std::net::SocketAddr::new(*ip, port)).await);
    }
    let done = env
        .wait_phase(&op, &app.ns, "probe", Phase::Succeeded, TIMEOUT)
        .await;
    assert_eq!(phase_names(&done), upgrade_walk());
    assert!(status(&done).failure.is_none());
    let ro = condition(&done, "ReadOnly");
    assert!(ro.is_some());
    for l in listeners {
        l.abort();
    }
    env.finish(&op, &app.ns, &all_dbs(&app, &["probe"])).await;
}

/// Finding 2b. While the new version migrates, the old version's migration lock in the
/// SOURCE is left held (what an old pod killed just after taking it leaves); then a rollback
/// is requested: the old version restarts read-write and its pods wait for the lock. The plan
/// reports MigrationLockStale naming the source database, the document and the command, with
/// a Warning event, keeps waiting in RollingBack and does not release the lock; released by
/// hand, the rollback completes and the old version serves read-write.
#[tokio::test]
async fn a_migration_lock_left_in_the_source_is_reported_during_the_rollback() {
    let Some(env) = env().await else { return };
    let _turn = NODE.read().await;
    let (app, op) = env.app_with_operator("node-lock").await;
    let mut plan = squidex_plan("lock", &app, 3);
    // Two slow steps hold the plan in Migrating while the lock is set.
    slow_migration(&mut plan, 4000);
    plan["spec"]["migration"]["mongoDocument"]["staleLockAfter"] = json!("5s");
    env.apply_until(&op, &app.ns, plan, Phase::Migrating, TIMEOUT)
        .await;

    let migration = env
        .mongo
        .database(&app.db)
        .collection::<Document>("Migration");
    migration
        .update_one(doc! {}, doc! {"$set": {"IsLocked": true}})
        .await
        .unwrap();
    env.patch_plan(&app.ns, "lock", json!({"spec": {"traffic": "blue"}}))
        .await;

    let stale = env
        .wait_condition(
            &op,
            &app.ns,
            "lock",
            "MigrationLockStale",
            Duration::from_secs(120),
        )
        .await;
    let st = status(&stale);
    assert_eq!(st.phase, Phase::RollingBack, "reported while it waits");
    let c = condition(&stale, "MigrationLockStale").unwrap();
    assert_eq!(c.reason, "SourceLockHeld");
    for part in [
        format!(
            "The migration lock in the SOURCE database {}.Migration is held",
            app.db
        ),
        "\"IsLocked\":true".to_string(),
        format!(
            "db.getSiblingDB(\"{}\").getCollection(\"Migration\").updateOne({{}}, {{$set: {{\"IsLocked\": false}}}})",
            app.db
        ),
        "Secret mongo".to_string(),
    ] {
        assert!(c.message.contains(&part), "lacks {part:?}: {}", c.message);
    }
    assert!(!c.message.contains(&env.mongo_uri));
    assert_eq!(condition(&stale, "Degraded").unwrap().status, "True");
    assert!(
        env.has_event(&app.ns, "MigrationLockStale", "Warning")
            .await
    );
    // Never released by cutover: still held a while later, the plan still waiting.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let d = env.migration_doc(&app.db).await.unwrap();
    assert!(
        d.get_bool("IsLocked").unwrap(),
        "cutover left the lock alone"
    );
    let waiting = env.plans(&app.ns).get("lock").await.unwrap();
    assert_eq!(status(&waiting).phase, Phase::RollingBack);

    // Released as the message says: the old version starts and the rollback completes.
    let t0 = Instant::now();
    migration
        .update_one(doc! {}, doc! {"$set": {"IsLocked": false}})
        .await
        .unwrap();
    let done = env
        .wait_phase(&op, &app.ns, "lock", Phase::RolledBack, TIMEOUT)
        .await;
    eprintln!("rolled back {:?} after the release", t0.elapsed());
    let c = condition(&done, "MigrationLockStale").unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "LockMoved")
    );
    let selector = env.service_selector(&app.ns, "squidex").await;
    assert_eq!(
        selector.get("cutover.dev/track").map(String::as_str),
        Some("squidex")
    );
    let codes = env
        .post_contents(&app.ns, "cutover.dev/track=squidex", "after-rollback", 1)
        .await;
    assert_eq!(codes, vec![201], "the old version accepts writes again");
    env.finish(&op, &app.ns, &all_dbs(&app, &["lock"])).await;
}

/// The other side of finding 7: a pod that answers the write with 2xx still fails the plan at
/// once (`ReadOnlyNotEffective`, naming the pod and its answer), and the old version is
/// restored. Here the read-only variable is one the app does not read.
#[tokio::test]
async fn an_old_pod_that_accepts_the_write_still_fails_the_plan_at_once() {
    let Some(env) = env().await else { return };
    let _turn = NODE.read().await;
    let (app, op) = env.app_with_operator("node-accept").await;
    let mut plan = squidex_plan("accept", &app, 2);
    plan["spec"]["readOnly"]["env"] = json!({"name": "NOT_READ_ONLY", "value": "true"});
    env.apply(&app.ns, plan).await;
    let done = env
        .wait_plan(&op, &app.ns, "accept", "phase Failed", TIMEOUT, |p| {
            p.status.as_ref().is_some_and(|s| s.phase == Phase::Failed)
        })
        .await;
    let f = status(&done).failure.unwrap();
    assert_eq!(f.reason, "ReadOnlyNotEffective");
    assert!(
        f.message
            .contains("The old version still accepts writes with NOT_READ_ONLY=true: squidex-")
            && f.message.contains("answered 201 to POST /api/contents"),
        "{}",
        f.message
    );
    assert!(!f.message.contains("Connection refused"), "{}", f.message);
    let codes = env
        .post_contents(&app.ns, "app=squidex", "after-failure", 1)
        .await;
    assert_eq!(codes, vec![201], "the old version serves read-write");
    env.finish(&op, &app.ns, &all_dbs(&app, &["accept"])).await;
}

/// Finding 2b where the old version restarts read-only: the lock is already held in the
/// source when the plan starts, so the old version's read-only pods wait for it and
/// `EnteringReadOnly` cannot finish its rollout. Reported (naming the source) instead of
/// waiting silently for `timeouts.rollout`; released by hand, the upgrade succeeds.
#[tokio::test]
async fn a_migration_lock_left_in_the_source_is_reported_while_entering_read_only() {
    let Some(env) = env().await else { return };
    let _turn = NODE.read().await;
    let (app, op) = env.app_with_operator("node-rolock").await;
    let migration = env
        .mongo
        .database(&app.db)
        .collection::<Document>("Migration");
    migration
        .update_one(doc! {}, doc! {"$set": {"IsLocked": true}})
        .await
        .unwrap();
    let mut plan = squidex_plan("rolock", &app, 2);
    plan["spec"]["migration"]["mongoDocument"]["staleLockAfter"] = json!("5s");
    env.apply(&app.ns, plan).await;

    let stale = env
        .wait_condition(
            &op,
            &app.ns,
            "rolock",
            "MigrationLockStale",
            Duration::from_secs(120),
        )
        .await;
    assert_eq!(status(&stale).phase, Phase::EnteringReadOnly);
    let c = condition(&stale, "MigrationLockStale").unwrap();
    assert_eq!(c.reason, "SourceLockHeld");
    assert!(
        c.message.contains(&format!(
            "The migration lock in the SOURCE database {}.Migration is held while Deployment squidex (the old version) waits to roll out",
            app.db
        )),
        "{}",
        c.message
    );
    assert!(
        env.has_event(&app.ns, "MigrationLockStale", "Warning")
            .await
    );

    migration
        .update_one(doc! {}, doc! {"$set": {"IsLocked": false}})
        .await
        .unwrap();
    let done = env
        .wait_phase(&op, &app.ns, "rolock", Phase::Succeeded, TIMEOUT)
        .await;
    assert_eq!(phase_names(&done), upgrade_walk());
    let c = condition(&done, "MigrationLockStale").unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "LockMoved")
    );
    env.finish(&op, &app.ns, &all_dbs(&app, &["rolock"])).await;
}

/// Finding 7 as the soak met it: podsim (the node) restarted just as the old version rolled
/// out read-only, the operator (killed meanwhile, as a node restart does) starting again while
/// the pods are down: the probe finds them Ready in the API but refusing connections. The
/// plan waits for them and `Succeeded`. Whether the probe met the dead pods depends on timing
/// (printed); before the fix, when it did, the plan failed "still accepts writes".
#[tokio::test]
async fn podsim_restarted_as_the_old_version_goes_read_only_the_plan_succeeds() {
    let Some(env) = env().await else { return };
    let _turn = NODE.write().await;
    let app = env.blue_app("node-sim", AppOptions::default()).await;
    let pod = [("POD_NAME", "cutover-0")];
    let mut op = Operator::start_with(&app.ns, &[], &pod);
    env.apply(&app.ns, squidex_plan("sim", &app, 2)).await;
    wait_message(&env, &op, &app.ns, "sim", "to roll out read-only").await;
    op.kill_hard().await;
    env.wait_rollout(&app.ns, "squidex", Duration::from_secs(60))
        .await;
    let pods = env.ready_pods(&app.ns, "app=squidex").await;
    assert!(!pods.is_empty());

    let restart = std::thread::spawn(restart_podsim);
    let t0 = Instant::now();
    let addr = std::net::SocketAddr::new(pods[0].1, 8080);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the pods did not stop"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The pods are down (still Ready in the API): the operator comes back now.
    let op = Operator::start_with(&app.ns, &[], &pod);
    let mut seen_unreachable = false;
    let start = Instant::now();
    loop {
        let p = env.plans(&app.ns).get("sim").await.unwrap();
        let st = status(&p);
        seen_unreachable |= st.message.contains("unreachable:");
        if st.phase == Phase::Succeeded {
            assert_eq!(phase_names(&p), upgrade_walk());
            break;
        }
        assert!(
            !st.phase.is_terminal() && start.elapsed() < TIMEOUT,
            "plan sim is {}: {}\n{:?}\noperator log:\n{}",
            st.phase,
            st.message,
            st.failure,
            op.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = restart.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("the probe met unreachable pods: {seen_unreachable}");
    env.finish(&op, &app.ns, &all_dbs(&app, &["sim"])).await;
}
