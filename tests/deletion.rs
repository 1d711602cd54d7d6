//! Deleting a plan mid-way compensates like a failure before the finalizer lets go (dropping
//! the sources after a successful switch is in `tests/cleanup.rs`).

mod common;

use std::time::{Duration, Instant};

use common::*;
use cutover::crd::Phase;

#[tokio::test]
async fn deleting_a_plan_mid_way_restores_the_old_version_then_lets_go() {
    let Some(env) = env().await else { return };
    let (app, op) = env.app_with_operator("del-midway").await;
    let mut plan = squidex_plan("gone", &app, 3);
    // A slow migration keeps the plan in Migrating long enough to delete it there.
    slow_migration(&mut plan, 4000);
    let timeout = Duration::from_secs(120);
    env.apply_until(&op, &app.ns, plan, Phase::Migrating, timeout)
        .await;

    env.plans(&app.ns)
        .delete("gone", &Default::default())
        .await
        .unwrap();
    let start = Instant::now();
    while env.plans(&app.ns).get_opt("gone").await.unwrap().is_some() {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "the finalizer never let go:\n{}",
            op.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Blue serves read-write with traffic on it; green is gone; the clones are kept.
    let blue_env = env.app_env(&app.ns, "squidex").await;
    assert!(!blue_env.iter().any(|e| e.name == "MODE__ISREADONLY"));
    assert_eq!(
        env.track(&app.ns, "squidex").await.as_deref(),
        Some("squidex")
    );
    assert!(env.deployment(&app.ns, "squidex-gone").await.is_none());
    let dbs = env.mongo.list_database_names().await.unwrap();
    let clone = app.clone_of(&app.db, "gone");
    assert!(
        dbs.contains(&clone),
        "the clone is kept for inspection: {dbs:?}"
    );
    assert!(
        env.has_event(&app.ns, "PlanDeleted", "Warning").await,
        "no PlanDeleted warning event"
    );

    env.cleanup(&app.ns, &all_dbs(&app, &["gone"])).await;
}
