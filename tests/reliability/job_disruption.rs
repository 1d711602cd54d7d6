//! A backup or clone Job's pod disrupted from outside (issue 16's soak: the pod deleted,
//! podsim restarted under it) is not a failure of the Job's script: cutover retries it as a
//! new Job under a new name, and the plan ends `Succeeded` with the data complete. The
//! script's own failure still fails the plan at once, with the reason it always had.
//!
//! The podsim restart kills every pod of the environment for a moment; the apps of tests
//! running beside this one restart with their Deployments. A deleted pod, in this
//! environment, is replaced by the Job controller within the same Job (the scripts being safe
//! to run again is what that case proves); the podsim restart is what fails a Job.

use std::time::{Duration, Instant};

use cutover::crd::{Phase, UpgradePlan};
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams};
use kube::{Api, ResourceExt};
use mongodb::bson::{Document, doc};

use crate::common::*;
use crate::support::*;

/// Three dumps or restores of the slowed-down app, one of them interrupted.
const TIMEOUT: Duration = Duration::from_secs(300);
/// One-document collections added to the content database: `mongodump` and `mongorestore`
/// take a few seconds over them here, long enough to disrupt their pod while it runs.
const EXTRA: usize = 24;

/// The app with 3 documents written through it and `EXTRA` more collections.
async fn slow_app(env: &Env, prefix: &str) -> App {
    let (app, _) = app_with_writes(env, prefix).await;
    let database = env.mongo.database(&app.content_db);
    futures::stream::iter(0..EXTRA)
        .map(|i| {
            let coll = database.collection::<Document>(&format!("Extra_{i:03}"));
            async move { coll.insert_one(doc! {"i": i as i64}).await.expect("insert") }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    app
}

/// The first pod of Job `job` that podsim runs.
async fn running_pod(env: &Env, ns: &str, job: &str) -> String {
    let pods = Api::<Pod>::namespaced(env.client.clone(), ns);
    let start = Instant::now();
    loop {
        let list = pods
            .list(&ListParams::default().labels(&format!("job-name={job}")))
            .await
            .unwrap();
        let running = list
            .items
            .iter()
            .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"));
        if let Some(p) = running {
            return p.name_any();
        }
        assert!(start.elapsed() < TIMEOUT, "no pod of Job {job} ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The podsim restart disrupts every Job running at that moment: this module's tests, which
/// count their Jobs, take turns.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn job_names(env: &Env, ns: &str) -> Vec<String> {
    let mut names: Vec<String> = Api::<Job>::namespaced(env.client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|j| j.name_any())
        .collect();
    names.sort();
    names
}

/// The plan succeeded through a retried `role` Job: every phase once, the retry recorded and
/// announced, the clones verified against the frozen sources and holding every document
/// written before the upgrade and every added collection.
async fn assert_retried_and_complete(env: &Env, app: &App, plan: &UpgradePlan, role: &str) {
    let name = plan.name_any();
    let st = status(plan);
    assert_eq!(phase_names(plan), upgrade_walk());
    let retried = format!("{name}-{role}-2");
    let jobs = job_names(env, &app.ns).await;
    assert!(jobs.contains(&format!("{name}-{role}")), "{jobs:?}");
    assert!(jobs.contains(&retried), "{jobs:?}");
    assert!(!jobs.contains(&format!("{name}-{role}-3")), "{jobs:?}");
    let recorded = st.targets.as_ref().unwrap();
    let recorded = if role == "backup" {
        &recorded.jobs.backup
    } else {
        &recorded.jobs.clone
    };
    assert_eq!(recorded, &retried);
    assert!(env.has_event(&app.ns, "JobPodDisrupted", "Warning").await);
    let verified = condition(plan, "BackupVerified").unwrap();
    assert_eq!(
        (verified.status.as_str(), verified.reason.as_str()),
        ("True", "CountsMatch")
    );
    let clone = app.clone_of(&app.content_db, &name);
    // Every collection counts (the migration keeps a tagged copy); `CountsMatch` above proves
    // the restore neither doubled nor lost one.
    assert!(env.tagged(&clone, "before-upgrade").await >= 3);
    let counts = env.counts(&clone).await;
    for i in 0..EXTRA {
        assert_eq!(counts.get(&format!("Extra_{i:03}")), Some(&1), "{counts:?}");
    }
}

/// The backup Job's pod deleted while it dumps: the Job fails (backoffLimit 0), cutover sees
/// no script failure and runs `<plan>-backup-2`, which dumps everything again.
///
/// Ignored: on this environment's Kubernetes 1.20 the Job controller replaces a deleted pod
/// within the same Job instead of failing the Job, so the test cannot tell the retry from the
/// old code, and in one of two fresh-clone CI runs the replacement dump did not finish within
/// the 3 min backup timeout (not diagnosed). The retry itself is proven by
/// `podsim_restarted_during_the_clone_is_retried_and_the_plan_succeeds`.
#[tokio::test]
#[ignore = "does not discriminate on Kubernetes 1.20 and timed out once in CI; see the comment"]
async fn a_deleted_backup_pod_is_retried_and_the_plan_succeeds() {
    let Some(env) = env().await else { return };
    let _turn = ONE_AT_A_TIME.lock().await;
    let app = slow_app(&env, "rel-jobdel").await;
    let op = Operator::start(&app.ns);
    env.apply(&app.ns, squidex_plan("del", &app, 2)).await;

    // Kubernetes 1.20's Job controller either counts the deleted pod failed (the Job fails at
    // backoffLimit 0 and cutover runs `del-backup-2`) or, when the pod is gone before it saw
    // it fail, starts another pod in the same Job (here, with podsim, always the latter). Both
    // must end in a complete backup and a plan that succeeds.
    let pod = running_pod(&env, &app.ns, "del-backup").await;
    Api::<Pod>::namespaced(env.client.clone(), &app.ns)
        .delete(&pod, &DeleteParams::default())
        .await
        .unwrap();

    let done = env
        .wait_phase(&op, &app.ns, "del", Phase::Succeeded, TIMEOUT)
        .await;
    let jobs = job_names(&env, &app.ns).await;
    if jobs.contains(&"del-backup-2".to_string()) {
        assert_retried_and_complete(&env, &app, &done, "backup").await;
        assert_eq!(status(&done).backup.unwrap().job, "del-backup-2");
    } else {
        assert_eq!(
            jobs,
            vec!["del-backup".to_string(), "del-clone".to_string()]
        );
        assert_eq!(phase_names(&done), upgrade_walk());
        let clone = app.clone_of(&app.content_db, "del");
        // Every collection counts (the migration keeps a tagged copy); `CountsMatch` above proves
        // the restore neither doubled nor lost one.
        assert!(env.tagged(&clone, "before-upgrade").await >= 3);
        let counts = env.counts(&clone).await;
        for i in 0..EXTRA {
            assert_eq!(counts.get(&format!("Extra_{i:03}")), Some(&1), "{counts:?}");
        }
    }
    assert_backup_checksummed(&status(&done));
    env.finish(&op, &app.ns, &all_dbs(&app, &["del"])).await;
}

/// podsim (the kubelet here) restarted while the clone Job restores: its pod is killed, the
/// Job fails, and `<plan>-clone-2` restores again with `--drop` into the plan's clones: no
/// document doubled, none missing.
#[tokio::test]
async fn podsim_restarted_during_the_clone_is_retried_and_the_plan_succeeds() {
    let Some(env) = env().await else { return };
    let _turn = ONE_AT_A_TIME.lock().await;
    let app = slow_app(&env, "rel-jobsim").await;
    let op = Operator::start(&app.ns);
    env.apply(&app.ns, squidex_plan("sim", &app, 2)).await;

    running_pod(&env, &app.ns, "sim-clone").await;
    let restarted = tokio::task::spawn_blocking(restart_podsim).await.unwrap();
    assert!(
        restarted.status.success(),
        "{}",
        String::from_utf8_lossy(&restarted.stderr)
    );

    let done = env
        .wait_phase(&op, &app.ns, "sim", Phase::Succeeded, TIMEOUT)
        .await;
    assert_retried_and_complete(&env, &app, &done, "clone").await;
    env.finish(&op, &app.ns, &all_dbs(&app, &["sim"])).await;
}

/// The backup script itself fails (its archive directory cannot be made): the plan fails at
/// once with `BackupJobFailed`, as before, and no second Job is made.
#[tokio::test]
async fn a_failing_backup_script_is_not_retried() {
    let Some(env) = env().await else { return };
    let (app, before) = app_with_writes(&env, "rel-jobfail").await;
    // podsim maps the backup PVC to a local directory: a file where the archive directory
    // must go makes the script's `mkdir -p` fail.
    let env_dir = std::env::var("CUTOVER_ENV_DIR").expect("CUTOVER_ENV_DIR from hack/dev-env env");
    let app_dir = std::path::Path::new(&env_dir)
        .join(format!("podsim/volumes/{}/pvc-backups/squidex", app.ns));
    std::fs::create_dir_all(&app_dir).unwrap();
    std::fs::write(app_dir.join("fail"), "not a directory").unwrap();

    let op = Operator::start(&app.ns);
    env.apply(&app.ns, squidex_plan("fail", &app, 2)).await;
    let failed = env
        .wait_phase(&op, &app.ns, "fail", Phase::Failed, PLAN_TIMEOUT)
        .await;
    let f = status(&failed).failure.unwrap();
    assert_eq!(
        (f.phase, f.reason.as_str()),
        (Phase::BackingUp, "BackupJobFailed")
    );
    assert!(f.message.contains("fail-backup"), "{}", f.message);
    assert_eq!(
        job_names(&env, &app.ns).await,
        vec!["fail-backup".to_string()]
    );
    assert!(
        !env.events(&app.ns)
            .await
            .iter()
            .any(|e| e.reason.as_deref() == Some("JobPodDisrupted"))
    );
    assert_eq!(
        source_counts(&env, &app).await,
        before,
        "the sources were not changed"
    );
    assert_blue_serves_read_write(&env, &app, 1).await;
    env.finish(&op, &app.ns, &all_dbs(&app, &["fail"])).await;
}
