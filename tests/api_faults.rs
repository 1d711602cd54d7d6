//! The API server goes away mid-plan and comes back after etcd compacted the history the
//! operator's watches had seen: requests fail and are retried, watches reconnect and, on
//! 410 Gone, re-list; the plan still completes, every phase once, nothing created twice.
//!
//! This restarts the environment's kube-apiserver (`hack/dev-env restart`), so it lives
//! alone in its test binary: cargo runs test binaries one after another, so no other test
//! sees the outage. (A 409 conflict on status cannot happen: cutover writes status by
//! server-side apply with force, which has no resourceVersion precondition.)

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use cutover::crd::Phase;
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::ListParams;

/// How long the plan may take to succeed, across the outage.
const TIMEOUT: Duration = Duration::from_secs(180);

fn dev_env(args: &[&str]) -> std::process::Output {
    Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/hack/dev-env"))
        .args(args)
        .output()
        .expect("run hack/dev-env")
}

/// etcd's client port, from the environment's recorded settings.
fn etcd_port() -> Option<String> {
    let dir = std::env::var("CUTOVER_ENV_DIR").ok()?;
    let ports = std::fs::read_to_string(format!("{dir}/ports.env"))
        .or_else(|_| std::fs::read_to_string(format!("{dir}/env.sh")))
        .ok()?;
    ports
        .lines()
        .find_map(|l| l.trim().strip_prefix("ETCD_PORT="))
        .map(|v| v.trim_matches('\'').to_string())
}

/// Compacts etcd's history up to now (etcd's JSON gateway), so a watch resuming from an
/// older resourceVersion gets 410 Gone.
fn compact_etcd(port: &str) -> Result<String, String> {
    let url = |p: &str| format!("http://127.0.0.1:{port}/v3/{p}");
    let range = Command::new("curl")
        .args([
            "-sf",
            "-X",
            "POST",
            &url("kv/range"),
            "-d",
            r#"{"key":"AA=="}"#,
        ])
        .output()
        .map_err(|e| e.to_string())?;
    let v: serde_json::Value =
        serde_json::from_slice(&range.stdout).map_err(|e| format!("kv/range: {e}"))?;
    let rev = v["header"]["revision"]
        .as_str()
        .ok_or("no revision in kv/range")?
        .to_string();
    let compact = Command::new("curl")
        .args([
            "-sf",
            "-X",
            "POST",
            &url("kv/compaction"),
            "-d",
            &format!(r#"{{"revision":"{rev}","physical":true}}"#),
        ])
        .output()
        .map_err(|e| e.to_string())?;
    if compact.status.success() {
        Ok(rev)
    } else {
        Err(String::from_utf8_lossy(&compact.stdout).into_owned())
    }
}

#[tokio::test]
async fn plan_completes_across_an_api_server_restart_and_compacted_watches() {
    let Some(env) = env().await else { return };
    let app = env.blue_app("apifault", AppOptions::default()).await;
    // The outage lasts 10-25 s (`restart` waits 10 s for the apiserver to exit on SIGTERM,
    // then it must start again, slower on a loaded machine). An operator that cannot renew
    // its lease for the lease duration (default 15 s) exits on purpose, for its pod to be
    // restarted (a restarted operator resuming is tested in tests/reliability.rs). Here the
    // lease outlasts the outage, so this test is about requests and watches surviving it.
    let mut op = Operator::start_with(&app.ns, &["--lease-duration", "90s"], &[]);
    let mut plan = squidex_plan("survive", &app, 3);
    // Two slow migration steps keep the plan in Migrating while the API server is away.
    slow_migration(&mut plan, 3000);
    let migrating = Duration::from_secs(120);
    env.apply_until(&op, &app.ns, plan, Phase::Migrating, migrating)
        .await;

    let t0 = Instant::now();
    let port = etcd_port().expect("etcd port of the environment");
    let restarted = dev_env(&["restart", "kube-apiserver"]);
    assert!(
        restarted.status.success(),
        "restarting kube-apiserver failed:\n{}{}",
        String::from_utf8_lossy(&restarted.stdout),
        String::from_utf8_lossy(&restarted.stderr)
    );
    let rev = compact_etcd(&port).expect("compact etcd");
    eprintln!(
        "kube-apiserver restarted in {:?}; etcd compacted at revision {rev}",
        t0.elapsed()
    );

    let done = env
        .wait_phase(&op, &app.ns, "survive", Phase::Succeeded, TIMEOUT)
        .await;
    assert!(
        op.child.as_mut().unwrap().try_wait().unwrap().is_none(),
        "the operator kept running through the outage"
    );
    let st = status(&done);
    let names = phase_names(&done);
    for p in [Phase::BackingUp, Phase::Cloning, Phase::Migrating] {
        assert_eq!(
            names.iter().filter(|n| **n == p).count(),
            1,
            "{p} once: {names:?}"
        );
    }
    let jobs = Api::<Job>::namespaced(env.client.clone(), &app.ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(jobs.items.len(), 2, "one backup and one clone Job");
    assert!(st.clone.as_ref().unwrap().verified);

    // The operator's watches kept working after the restart: a change made now is seen.
    env.patch_plan(
        &app.ns,
        "survive",
        serde_json::json!({"spec": {"cleanup": {"scaleDownBlueAfter": "0s"}}}),
    )
    .await;
    env.wait_cleanup(
        &op,
        &app.ns,
        "survive",
        CleanupStepName::ScaleDownBlue,
        CleanupState::Done,
        Duration::from_secs(60),
    )
    .await;
    let _ = &mut op;
    env.finish(&op, &app.ns, &all_dbs(&app, &["survive"])).await;
}
