//! Issue 16's soak, finding 3: an operator replica (re)started while the API server restarts
//! exited at once ("checking for the UpgradePlan CRD: ... Connection refused"). Now it waits
//! for the API server with back-off (`--startup-wait`, 2 min by default), saying so, and then
//! reconciles its plans.
//!
//! This restarts the environment's kube-apiserver (`hack/dev-env restart`), so it lives alone
//! in its test binary (cargo runs test binaries one after another), and its tests that restart
//! it take turns (`RESTARTS`).

mod common;

use std::time::{Duration, Instant};

use common::*;
use cutover::crd::Phase;

/// The tests that restart the API server run one at a time: a restart in one breaks the
/// other's requests (cargo runs a binary's tests in parallel threads).
static RESTARTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// True once a request to the API server fails (it is going away).
async fn api_down(env: &Env) -> bool {
    use k8s_openapi::api::core::v1::Namespace;
    let api = kube::Api::<Namespace>::all(env.client.clone());
    matches!(
        tokio::time::timeout(Duration::from_secs(2), api.get_opt("default")).await,
        Err(_) | Ok(Err(_))
    )
}

#[tokio::test]
async fn an_operator_started_while_the_api_server_is_down_waits_and_reconciles() {
    let _alone = RESTARTS.lock().await;
    let Some(env) = env().await else { return };
    let app = env.blue_app("apidown", AppOptions::default()).await;
    env.apply(&app.ns, squidex_plan("start", &app, 2)).await;

    let restart = std::thread::spawn(restart_apiserver);
    let t0 = Instant::now();
    while !api_down(&env).await {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the API server did not go away"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Started while the API server is down: before the fix it exited at once.
    let mut op = Operator::start(&app.ns);
    let out = tokio::task::spawn_blocking(move || restart.join().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "restarting kube-apiserver failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("kube-apiserver back after {:?}", t0.elapsed());
    assert!(
        op.child.as_mut().unwrap().try_wait().unwrap().is_none(),
        "the operator waited for the API server instead of exiting:\n{}",
        op.log_tail(20)
    );
    let log = op.log();
    assert!(
        log.contains("the API server is unreachable (checking for the UpgradePlan CRD"),
        "it said why it waits:\n{log}"
    );

    let done = env
        .wait_phase(
            &op,
            &app.ns,
            "start",
            Phase::Succeeded,
            Duration::from_secs(240),
        )
        .await;
    assert_eq!(phase_names(&done), upgrade_walk());
    env.finish(&op, &app.ns, &all_dbs(&app, &["start"])).await;
}

/// The wait is bounded: with `--startup-wait 3s` and no API server (a closed port), the
/// operator exits after about 3 s saying the API server stayed unreachable.
#[tokio::test]
async fn an_operator_gives_up_after_the_startup_wait_with_a_clear_message() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let dir = std::env::temp_dir().join(unique("apidown-kubeconfig"));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("config");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user: {{}}\n"
        ),
    )
    .unwrap();
    let t0 = Instant::now();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["run", "--namespace", "x", "--http-addr", "127.0.0.1:0"])
        .args(["--startup-wait", "3s"])
        .env("KUBECONFIG", &kubeconfig)
        .env("NO_COLOR", "1")
        .output()
        .await
        .unwrap();
    let took = t0.elapsed();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(30),
        "{took:?}: {text}"
    );
    assert!(
        text.contains("the API server is unreachable (checking for the UpgradePlan CRD"),
        "each failure said: {text}"
    );
    assert!(
        text.contains("the API server was unreachable for 3s (--startup-wait 3s)"),
        "the exit said why: {text}"
    );
}

/// A standby waiting for the lease kept exiting when the API server restarted (the soak: both
/// replicas exited at every restart). It now waits through it and can still take over.
#[tokio::test]
async fn a_standby_waits_through_an_api_server_restart() {
    let _alone = RESTARTS.lock().await;
    let Some(env) = env().await else { return };
    let app = env.blue_app("apistandby", AppOptions::default()).await;
    let election = ["--leader-election", "--lease-duration", "4s"];
    let leader = Operator::start_with(
        &app.ns,
        &[&election[..], &["--identity", "op-a"]].concat(),
        &[],
    );
    wait_for_log(&leader, "acquired lease").await;
    let mut standby = Operator::start_with(
        &app.ns,
        &[&election[..], &["--identity", "op-b"]].concat(),
        &[],
    );
    wait_for_log(&standby, "standing by").await;

    let out = tokio::task::spawn_blocking(restart_apiserver)
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "restarting kube-apiserver failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        standby
            .child
            .as_mut()
            .unwrap()
            .try_wait()
            .unwrap()
            .is_none(),
        "the standby exited during the restart:\n{}",
        standby.log_tail(20)
    );
    assert!(
        standby
            .log()
            .contains("taking the lease: the API server is unreachable"),
        "the standby met the restart and said so:\n{}",
        standby.log_tail(20)
    );
    // Whichever holds the lease now (the leader exits if it could not renew in time) runs a
    // plan to the end.
    drop(leader);
    env.apply(&app.ns, squidex_plan("after", &app, 2)).await;
    env.wait_phase(
        &standby,
        &app.ns,
        "after",
        Phase::Succeeded,
        Duration::from_secs(240),
    )
    .await;
    env.finish(&standby, &app.ns, &all_dbs(&app, &["after"]))
        .await;
}

async fn wait_for_log(op: &Operator, text: &str) {
    let t0 = Instant::now();
    while !op.log().contains(text) {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no {text:?} in:\n{}",
            op.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
