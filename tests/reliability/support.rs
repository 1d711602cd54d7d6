//! What every unhappy path shares: the app's data before the upgrade, and the checks that
//! the old version serves read-write again.

use std::collections::BTreeSet;
use std::time::Duration;

use cutover::crd::{Outcome, Phase, UpgradePlan};

use crate::common::*;

pub const PLAN_TIMEOUT: Duration = Duration::from_secs(120);
pub const BLUE: &str = "squidex";
pub const TRACK: &str = "cutover.dev/track";
pub const RO: &str = "MODE__ISREADONLY";

/// Writes `n` documents through blue's HTTP API before any plan exists.
pub async fn write_before_upgrade(env: &Env, app: &App, n: usize) {
    let codes = env
        .post_contents(&app.ns, "app=squidex", "before-upgrade", n)
        .await;
    assert!(codes.iter().all(|c| *c == 201), "writes refused: {codes:?}");
    assert_eq!(
        env.tagged(&app.content_db, "before-upgrade").await,
        n as u64
    );
}

/// The app every unhappy path starts from: 3 documents written through it before any plan,
/// and the counts of its source databases then.
pub async fn app_with_writes(env: &Env, prefix: &str) -> (App, Counts) {
    let app = env.blue_app(prefix, AppOptions::default()).await;
    write_before_upgrade(env, &app, 3).await;
    let before = source_counts(env, &app).await;
    (app, before)
}

/// The plan left `interrupted` with `outcome`, then rolled back and ended in `end`.
pub fn assert_unwound(plan: &UpgradePlan, interrupted: Phase, outcome: Outcome, end: Phase) {
    let st = status(plan);
    let names = phase_names(plan);
    assert_eq!(
        names[names.len() - 3..],
        [interrupted, Phase::RollingBack, end],
        "{names:?}"
    );
    assert_eq!(st.phases[st.phases.len() - 3].outcome, Some(outcome));
}

/// The old version is the app again: the Service selects it, its template has no read-only
/// variable, it runs its replicas, and every one of its pods accepts a write.
pub async fn assert_blue_serves_read_write(env: &Env, app: &App, replicas: i32) {
    let selector = env.service_selector(&app.ns, "squidex").await;
    assert_eq!(
        selector.get(TRACK).map(String::as_str),
        Some(BLUE),
        "the Service selects the old version: {selector:?}"
    );
    assert_eq!(selector.get("app").map(String::as_str), Some("squidex"));
    let blue = env.deployment(&app.ns, BLUE).await.unwrap();
    assert_eq!(
        container_env(&blue, RO),
        None,
        "read-only lifted on the old version"
    );
    assert_eq!(blue.spec.as_ref().unwrap().replicas, Some(replicas));
    env.wait_rollout(&app.ns, BLUE, Duration::from_secs(60))
        .await;
    let codes = env
        .post_contents(&app.ns, &format!("{TRACK}={BLUE}"), "after-rollback", 1)
        .await;
    assert_eq!(codes, vec![201], "the old version accepts writes again");
}

/// The databases of one test (their names carry the test's id): the server is shared.
pub async fn databases_of(env: &Env, app: &App) -> BTreeSet<String> {
    database_names(env)
        .await
        .into_iter()
        .filter(|n| n.contains(&app.id))
        .collect()
}

/// An operator with a fixed identity, as in a pod whose container restarts (it renews its own
/// Lease at once after a restart).
pub fn operator_in_pod(ns: &str) -> Operator {
    Operator::start_with(ns, &[], &[("POD_NAME", "cutover-0")])
}

/// SIGKILLs the operator as soon as the plan is seen in `phase`, and restarts it in its pod.
pub async fn kill_in(env: &Env, op: &mut Operator, ns: &str, plan: &str, phase: Phase) {
    env.wait_phase(op, ns, plan, phase, PLAN_TIMEOUT).await;
    op.kill_hard().await;
    *op = operator_in_pod(ns);
}
