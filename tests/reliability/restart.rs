//! The operator SIGKILLed in every phase: the plan ends as if it had never been interrupted.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use cutover::crd::{Color, Outcome, Phase};
use kube::ResourceExt;
use serde_json::json;

use crate::common::*;
use crate::support::*;

/// `cutover run` is SIGKILLed as soon as each phase is seen, again while the backup and clone
/// Jobs run, while the new version migrates and during the cleanup wait, and started again each
/// time: alternately as the same instance (a container restarted in its pod keeps POD_NAME, so
/// it renews its own Lease at once) and as a new one (a replacement pod, which waits until the
/// dead instance's 3 s Lease expires). The plan ends exactly like an uninterrupted one, and
/// every object that must be created once was created once (watched by uid for the whole run).
#[tokio::test]
async fn operator_killed_in_every_phase_resumes_and_finishes() {
    let Some(env) = env().await else { return };
    let (app, before) = app_with_writes(&env, "rel-kill").await;
    let history = env.history(&app.ns).await;
    let ns = app.ns.clone();
    let launch = |restarts: usize| {
        // Even restarts: the same pod; odd ones: a replacement pod with a new identity.
        let identity = format!("cutover-{}", restarts.div_ceil(2));
        Operator::start_with(
            &ns,
            &["--lease-duration", "3s"],
            &[("POD_NAME", identity.as_str())],
        )
    };
    let mut op = launch(0);

    let mut plan = squidex_plan("kill", &app, 2);
    // Long enough that a kill lands while the scale-down waits, after restarts that each
    // may wait out the 3 s lease.
    plan["spec"]["cleanup"] = json!({"scaleDownBlueAfter": "15s"});
    env.apply(&app.ns, plan).await;

    let green = "squidex-kill";
    let mut kills: Vec<String> = Vec::new();
    let mut seen: Vec<Phase> = Vec::new();
    let mut mid_killed: std::collections::HashSet<Phase> = Default::default();
    let mut entered = Instant::now();
    let start = Instant::now();
    loop {
        let p = env.plans(&app.ns).get("kill").await.unwrap();
        let phase = p.status.as_ref().map(|s| s.phase).unwrap_or_default();
        if phase == Phase::Succeeded
            && cleanup_step(&p, CleanupStepName::ScaleDownBlue)
                .is_some_and(|s| s.state == CleanupState::Done)
        {
            break;
        }
        assert!(
            (!phase.is_terminal() || phase == Phase::Succeeded) && start.elapsed() < PLAN_TIMEOUT,
            "plan is {phase} after {:?}: {}\n{}",
            start.elapsed(),
            serde_json::to_string_pretty(&p.status).unwrap(),
            op.log_tail(60)
        );
        let mut why = None;
        if phase != Phase::Pending && !seen.contains(&phase) {
            seen.push(phase);
            why = Some(format!("{phase}: on entry"));
        } else if !mid_killed.contains(&phase) {
            let job_running = |suffix: &str| {
                history
                    .versions("Job", &format!("kill-{suffix}"))
                    .last()
                    .is_some_and(|j| {
                        j.object["status"]["succeeded"].as_i64().unwrap_or(0) == 0
                            && j.object["status"]["failed"].as_i64().unwrap_or(0) == 0
                    })
            };
            why = match phase {
                Phase::BackingUp if job_running("backup") => {
                    Some("BackingUp: while the backup Job runs".to_string())
                }
                Phase::Cloning if job_running("clone") => {
                    Some("Cloning: while the clone Job runs".to_string())
                }
                Phase::Migrating
                    if entered.elapsed() > Duration::from_millis(300)
                        && !history.uids_labelled("Pod", TRACK, green).is_empty() =>
                {
                    Some("Migrating: while the new version's pod runs".to_string())
                }
                Phase::Succeeded if entered.elapsed() > Duration::from_millis(1500) => {
                    Some("Succeeded: waiting to scale the old version down".to_string())
                }
                _ => None,
            };
            if why.is_some() {
                mid_killed.insert(phase);
            }
        }
        if let Some(why) = why {
            op.kill_hard().await;
            kills.push(why);
            op = launch(kills.len());
            entered = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let done = env.plans(&app.ns).get("kill").await.unwrap();
    eprintln!("SIGKILLed cutover run {} times: {kills:#?}", kills.len());
    let must = [
        "EnteringReadOnly: on entry",
        "BackingUp: on entry",
        "BackingUp: while the backup Job runs",
        "Cloning: on entry",
        "Cloning: while the clone Job runs",
        "Migrating: on entry",
        "Succeeded: on entry",
        "Succeeded: waiting to scale the old version down",
    ];
    assert_all_in(&kills, &must, "the kills");

    // The same end as an uninterrupted run.
    let mut walk = upgrade_walk();
    walk.push(Phase::CleaningUp);
    assert_eq!(
        phase_names(&done),
        walk,
        "every phase exactly once, then the scale-down recorded after success"
    );
    let st = status(&done);
    for r in &st.phases {
        assert_eq!(r.outcome, Some(Outcome::Succeeded), "{r:?}");
    }
    assert!(st.failure.is_none());
    assert!(st.clone.as_ref().unwrap().verified);
    assert_backup_checksummed(&st);
    assert_eq!(st.active_color, Some(Color::Green));
    assert_eq!(env.track(&app.ns, BLUE).await.as_deref(), Some(green));
    let g = env.deployment(&app.ns, green).await.unwrap();
    assert_eq!(container_env(&g, RO), None);
    assert!(g.owner_references().is_empty(), "handed over");
    let blue = env.deployment(&app.ns, BLUE).await.unwrap();
    assert_eq!(blue.spec.as_ref().unwrap().replicas, Some(0));
    let clone_db = app.clone_of(&app.db, "kill");
    let d = env.migration_doc(&clone_db).await.unwrap();
    assert_eq!(
        (version_of(&d), d.get_bool("IsLocked").unwrap()),
        (2, false)
    );
    let clone_contents = env.counts(&app.clone_of(&app.content_db, "kill")).await;
    assert_eq!(
        clone_contents.get("States_Contents_All1"),
        Some(&(app.documents + 3)),
        "restored once: {clone_contents:?}"
    );
    assert_eq!(
        clone_contents.get("States_Contents_All2"),
        Some(&(app.documents + 3)),
        "migrated once: {clone_contents:?}"
    );
    assert_eq!(source_counts(&env, &app).await, before);

    // Created once, ever: one backup Job and one pod of it, one clone Job and one pod, one new
    // Deployment; exactly two ReplicaSets and two pods each (before and after read-only).
    let one = |what: &str, uids: BTreeSet<String>| {
        assert_eq!(uids.len(), 1, "{what} created {} times", uids.len());
    };
    one("backup Job", history.uids("Job", "kill-backup"));
    one("clone Job", history.uids("Job", "kill-clone"));
    one(
        "backup pod",
        history.uids_labelled("Pod", "job-name", "kill-backup"),
    );
    one(
        "clone pod",
        history.uids_labelled("Pod", "job-name", "kill-clone"),
    );
    one("new Deployment", history.uids("Deployment", green));
    one("old Deployment", history.uids("Deployment", BLUE));
    assert_eq!(history.names("Job").len(), 2, "{:?}", history.names("Job"));
    let replica_sets = |owner: &str| -> BTreeSet<String> {
        history
            .all()
            .into_iter()
            .filter(|s| {
                s.kind == "ReplicaSet"
                    && s.object["metadata"]["ownerReferences"][0]["name"] == owner
            })
            .map(|s| s.uid)
            .collect()
    };
    assert_eq!(
        replica_sets(green).len(),
        2,
        "new version: read-only, then read-write"
    );
    assert_eq!(
        replica_sets(BLUE).len(),
        2,
        "old version: original, then read-only"
    );
    assert_eq!(history.uids_labelled("Pod", TRACK, green).len(), 2);
    assert_eq!(history.uids_labelled("Pod", TRACK, BLUE).len(), 1);

    // Each transition was announced at most once (a replayed step would announce it again).
    let mut per_reason: BTreeMap<String, usize> = BTreeMap::new();
    for e in &env.events(&app.ns).await {
        if let Some(r) = &e.reason {
            *per_reason.entry(r.clone()).or_default() += 1;
        }
    }
    for p in [
        "EnteringReadOnly",
        "BackingUp",
        "Cloning",
        "DeployingGreen",
        "Migrating",
        "SwitchingTraffic",
        "LiftingReadOnly",
        "CleaningUp",
        "Succeeded",
    ] {
        assert!(
            per_reason.get(p).copied().unwrap_or(0) <= 1,
            "{p} announced twice: {per_reason:?}"
        );
    }
    assert!(history.watching());

    env.finish(&op, &app.ns, &all_dbs(&app, &["kill"])).await;
}
