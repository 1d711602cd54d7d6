//! Operating cutover: metrics scraped during a plan, one acting instance by Lease, standby
//! take-over when the leader dies.

mod common;
#[path = "packaging/monitored.rs"]
mod monitored;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use cutover::crd::Phase;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;

const PLAN_TIMEOUT: Duration = Duration::from_secs(180);

/// An operator process with explicit arguments (identity, election, lease duration).
fn start_operator(ns: &str, extra: &[&str]) -> Operator {
    Operator::start_with(ns, extra, &[])
}

async fn wait_log(op: &Operator, needle: &str, timeout: Duration) -> String {
    let start = Instant::now();
    loop {
        let log = op.log();
        if let Some(line) = log.lines().find(|l| l.contains(needle)) {
            return line.to_string();
        }
        assert!(
            start.elapsed() < timeout,
            "operator never logged {needle:?}:\n{}",
            op.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Scrapes `/metrics` every 100 ms until dropped, collecting every sample name seen.
struct Scraper {
    seen: Arc<Mutex<BTreeSet<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Scraper {
    fn start(addr: &str) -> Scraper {
        let seen = Arc::new(Mutex::new(BTreeSet::new()));
        let (addr, into) = (addr.to_string(), seen.clone());
        let task = tokio::spawn(async move {
            loop {
                let (_, text) = http_get(&addr, "/metrics").await;
                into.lock().unwrap().extend(monitored::sample_names(&text));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Scraper { seen, task }
    }

    fn seen(&self) -> BTreeSet<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Scraper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Besides the counters and histograms, the per-plan gauges the alerting rules and the
/// dashboard read are in real scrapes while the plan runs; and every metric those files use
/// was seen in a scrape during the plan.
#[tokio::test]
async fn metrics_are_served_during_a_plan() {
    let Some(env) = env().await else { return };
    let app = env.blue_app("ops-metrics", AppOptions::default()).await;
    let op = start_operator(&app.ns, &[]);
    let line = wait_log(&op, "serving /healthz", Duration::from_secs(30)).await;
    let addr = line.rsplit("addr=").next().unwrap().trim().to_string();
    assert_eq!(http_get(&addr, "/healthz").await.0, 200);

    let scraper = Scraper::start(&addr);
    // A rehearsal first, so the upgrade carries a prediction to compare with.
    let mut rehearsal = squidex_plan("practice", &app, 2);
    rehearsal["spec"]["mode"] = serde_json::json!("rehearsal");
    env.apply_until(&op, &app.ns, rehearsal, Phase::Rehearsed, PLAN_TIMEOUT)
        .await;
    let mut plan = squidex_plan("metrics", &app, 2);
    plan["spec"]["promotion"] = serde_json::json!({"mode": "manual"});
    env.apply(&app.ns, plan.clone()).await;
    env.wait_phase(
        &op,
        &app.ns,
        "metrics",
        Phase::AwaitingPromotion,
        PLAN_TIMEOUT,
    )
    .await;
    // The plans gauge comes from the operator's watch cache, which may trail the API by a moment.
    let start = Instant::now();
    let (code, during) = loop {
        let (code, text) = http_get(&addr, "/metrics").await;
        if metric(&text, "cutover_plans{phase=\"AwaitingPromotion\"}") == Some(1.0)
            || start.elapsed() > Duration::from_secs(10)
        {
            break (code, text);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(code, 200);
    assert_eq!(
        metric(&during, "cutover_plans{phase=\"AwaitingPromotion\"}"),
        Some(1.0),
        "{during}"
    );
    assert!(metric(&during, "cutover_reconciles_total{result=\"ok\"}").unwrap() >= 5.0);
    // The rehearsal's backup and clone, then the upgrade's.
    assert_eq!(metric(&during, "cutover_backup_bytes_count"), Some(2.0));
    assert_eq!(
        metric(
            &during,
            "cutover_phase_duration_seconds_count{phase=\"Cloning\"}"
        ),
        Some(2.0)
    );
    // The per-plan gauges: still read-only while awaiting promotion, with its backup.
    let l = format!("namespace=\"{}\",plan=\"metrics\"", app.ns);
    assert_eq!(
        metric(
            &during,
            &format!("cutover_plan_phase{{{l},phase=\"AwaitingPromotion\"}}")
        ),
        Some(1.0),
        "{during}"
    );
    assert!(metric(&during, &format!("cutover_plan_read_only_seconds{{{l}}}")).unwrap() > 0.0);
    assert_eq!(
        metric(
            &during,
            &format!("cutover_plan_condition{{{l},condition=\"ReadOnly\"}}")
        ),
        Some(1.0)
    );
    assert!(
        metric(
            &during,
            &format!("cutover_plan_condition_last_transition_timestamp_seconds{{{l},condition=\"ReadOnly\"}}")
        )
        .unwrap()
            > 1.7e9
    );
    assert!(metric(&during, &format!("cutover_plan_backup_bytes{{{l}}}")).unwrap() > 0.0);
    assert!(
        metric(
            &during,
            &format!("cutover_plan_predicted_read_only_seconds{{{l}}}")
        )
        .unwrap()
            > 0.0,
        "the rehearsal's prediction"
    );
    assert_eq!(http_get(&addr, "/readyz").await.0, 200);

    plan["spec"]["promotion"]["approved"] = serde_json::json!(true);
    env.apply(&app.ns, plan).await;
    env.wait_phase(&op, &app.ns, "metrics", Phase::Succeeded, PLAN_TIMEOUT)
        .await;
    let start = Instant::now();
    let after = loop {
        let (_, text) = http_get(&addr, "/metrics").await;
        if metric(&text, "cutover_plans{phase=\"Succeeded\"}") == Some(1.0)
            || start.elapsed() > Duration::from_secs(10)
        {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        metric(&after, "cutover_plans{phase=\"Succeeded\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&after, "cutover_read_only_window_seconds_count"),
        Some(1.0)
    );
    assert!(metric(&after, "cutover_read_only_window_seconds_sum").unwrap() > 0.0);
    assert!(metric(&after, "cutover_reconcile_duration_seconds_count").unwrap() >= 10.0);
    let l = format!("namespace=\"{}\",plan=\"metrics\"", app.ns);
    assert_eq!(
        metric(&after, &format!("cutover_plan_read_only_seconds{{{l}}}")),
        Some(0.0),
        "read-write again"
    );
    assert!(
        metric(
            &after,
            &format!("cutover_plan_read_only_window_seconds{{{l}}}")
        )
        .unwrap()
            > 0.0
    );

    // Every metric the chart's rules and dashboard use was in a scrape during the plan, but
    // two that this short plan cannot produce (tests/packaging/monitoring.rs checks that the
    // operator renders them): only a failed reconcile creates
    // cutover_reconcile_errors_total's first sample, and the copy's ETA needs a copy that
    // outlasts the first progress refresh (5 s; this one takes about a second).
    let rare = [
        "cutover_reconcile_errors_total",
        "cutover_plan_copy_eta_seconds",
    ];
    let seen = scraper.seen();
    drop(scraper);
    let missing: Vec<_> = monitored::used_metric_names()
        .into_iter()
        .filter(|(name, _)| !seen.contains(name) && !rare.contains(&name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "not in any scrape: {missing:?}\nseen: {seen:?}"
    );

    env.cleanup(&app.ns, &all_dbs(&app, &["metrics", "practice"]))
        .await;
}

async fn lease_holder(env: &Env, ns: &str) -> Option<String> {
    Api::<Lease>::namespaced(env.client.clone(), ns)
        .get_opt("cutover")
        .await
        .unwrap()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

#[tokio::test]
async fn a_standby_takes_over_when_the_leader_dies() {
    let Some(env) = env().await else { return };
    let app = env.blue_app("ops-lease", AppOptions::default()).await;
    let election = ["--leader-election", "--lease-duration", "4s"];
    let mut a = start_operator(&app.ns, &[&election[..], &["--identity", "op-a"]].concat());
    wait_log(&a, "acquired lease", Duration::from_secs(30)).await;
    let b = start_operator(&app.ns, &[&election[..], &["--identity", "op-b"]].concat());
    wait_log(&b, "standing by", Duration::from_secs(30)).await;
    assert_eq!(lease_holder(&env, &app.ns).await.as_deref(), Some("op-a"));

    let mut plan = squidex_plan("lease", &app, 2);
    plan["spec"]["promotion"] = serde_json::json!({"mode": "manual"});
    env.apply(&app.ns, plan.clone()).await;
    env.wait_phase(&a, &app.ns, "lease", Phase::AwaitingPromotion, PLAN_TIMEOUT)
        .await;
    assert!(
        !b.log().contains("reconcile"),
        "the standby acted:\n{}",
        b.log()
    );

    // The leader dies without releasing the lease; the standby must take over and finish.
    a.kill().await;
    let killed = Instant::now();
    plan["spec"]["promotion"]["approved"] = serde_json::json!(true);
    env.apply(&app.ns, plan).await;
    wait_log(&b, "acquired lease", Duration::from_secs(20)).await;
    let took_over = killed.elapsed();
    assert!(
        took_over < Duration::from_secs(10),
        "take-over took {took_over:?} with a 4s lease"
    );
    env.wait_phase(&b, &app.ns, "lease", Phase::Succeeded, PLAN_TIMEOUT)
        .await;
    assert_eq!(lease_holder(&env, &app.ns).await.as_deref(), Some("op-b"));
    eprintln!("standby took over {took_over:?} after the leader was killed");

    env.cleanup(&app.ns, &all_dbs(&app, &["lease"])).await;
}

#[tokio::test]
async fn a_second_instance_without_election_refuses_to_act() {
    let Some(env) = env().await else { return };
    let ns = env.namespace("ops-second").await;
    let first = start_operator(&ns, &["--identity", "first"]);
    wait_log(&first, "acquired lease", Duration::from_secs(30)).await;
    let second = start_operator(&ns, &["--identity", "second"]);
    let warning = wait_log(
        &second,
        "another cutover instance holds lease",
        Duration::from_secs(30),
    )
    .await;
    assert!(warning.contains("--leader-election"), "{warning}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !second.log().contains("controller starting"),
        "the second instance started acting"
    );
    // Alive for its liveness probe, not ready.
    let line = wait_log(&second, "serving /healthz", Duration::from_secs(5)).await;
    let addr = line.rsplit("addr=").next().unwrap().trim().to_string();
    assert_eq!(http_get(&addr, "/healthz").await.0, 200);
    assert_eq!(http_get(&addr, "/readyz").await.0, 503);
    assert_eq!(lease_holder(&env, &ns).await.as_deref(), Some("first"));
    env.cleanup(&ns, &[]).await;
}
