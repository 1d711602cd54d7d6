//! Compensation of a failure before the switch: each row breaks a plan one way, and every row
//! must end the same way (Failed for the row's reason, the old version restored read-write,
//! the sources untouched). The skeleton runs a row; a test adds what only its row has.

use cutover::crd::{Color, Outcome, Phase, UpgradePlan};
use k8s_openapi::api::batch::v1::Job;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use mongodb::bson::{Document, doc};
use serde_json::{Value, json};

use crate::common::*;
use crate::support::*;

/// One way to make a plan fail before the switch, and what the failure must say.
struct Failure {
    /// Prefix of the app's namespace.
    app: &'static str,
    plan: &'static str,
    /// How the Squidex plan is broken.
    breaks: fn(&mut Value),
    /// SIGKILL the operator as the compensation starts: it must survive that too.
    kill_while_restoring: bool,
    reason: &'static str,
    phase: Phase,
    /// Fragments of the failure message; `{content_clone}` is the content database's clone.
    message: &'static [&'static str],
    /// Whether the clones had been made (and so are kept for inspection).
    clones_made: bool,
}

const FAILURES: &[Failure] = &[
    // The restored clones differ from the frozen sources: see the test for how.
    Failure {
        app: "rel-f-clone",
        plan: "counts",
        breaks: |_| {},
        kill_while_restoring: false,
        reason: "CloneVerificationFailed",
        phase: Phase::Cloning,
        message: &[
            "{content_clone}.Intruder: 1 documents in the clone but not in the source",
            "do not match the frozen sources",
        ],
        clones_made: true,
    },
    // The new version crash-loops (its migration fails at once, every start) and never
    // becomes ready: the migration timeout ends the plan, naming the unready Deployment.
    Failure {
        app: "rel-f-unready",
        plan: "unready",
        breaks: |p| {
            p["spec"]["target"]["env"] = json!([{"name": "APPSIM_FAIL_MIGRATION", "value": "1"}]);
            p["spec"]["migration"]["timeout"] = json!("6s");
        },
        kill_while_restoring: false,
        reason: "MigrationTimedOut",
        phase: Phase::Migrating,
        message: &[
            "did not pass within 6s",
            "Deployment squidex-unready: 1/1 updated, 0/1 ready",
        ],
        clones_made: true,
    },
    // The migration runs but does not finish in time (each step takes ten minutes).
    Failure {
        app: "rel-f-timeout",
        plan: "slowmig",
        breaks: |p| {
            slow_migration(p, 600000);
            p["spec"]["migration"]["timeout"] = json!("6s");
        },
        kill_while_restoring: true,
        reason: "MigrationTimedOut",
        phase: Phase::Migrating,
        message: &[
            "did not pass within 6s",
            "migration document: version 1 of 2, locked",
        ],
        clones_made: true,
    },
    // The migration Job (`appsim migrate` of the new image) exits 1.
    Failure {
        app: "rel-f-job",
        plan: "jobfail",
        breaks: |p| {
            p["spec"]["target"]["env"] = json!([{"name": "APPSIM_FAIL_MIGRATION", "value": "1"}]);
            p["spec"]["migration"]["job"] = json!({"args": ["migrate"]});
        },
        kill_while_restoring: false,
        reason: "MigrationJobFailed",
        phase: Phase::Migrating,
        message: &["Migration Job jobfail-migrate failed"],
        clones_made: true,
    },
    // The HTTP health gate asks for a path the new version answers 404 on.
    Failure {
        app: "rel-f-health",
        plan: "health",
        breaks: |p| {
            p["spec"]["migration"]["httpGet"] = json!({"path": "/nope", "port": 8080});
            p["spec"]["migration"]["timeout"] = json!("6s");
        },
        kill_while_restoring: false,
        reason: "MigrationTimedOut",
        phase: Phase::Migrating,
        message: &[
            "did not pass within 6s",
            "health gate:",
            "answered 404 to GET /nope",
        ],
        clones_made: true,
    },
];

/// One row running: the app with three documents written before the upgrade, the operator,
/// and the broken plan applied.
struct FailureRun {
    env: Env,
    app: App,
    op: Operator,
    before: Counts,
    case: &'static Failure,
}

impl FailureRun {
    async fn start(plan: &str) -> Option<FailureRun> {
        let case = FAILURES
            .iter()
            .find(|f| f.plan == plan)
            .expect("a row of FAILURES");
        let env = env().await?;
        let (app, before) = app_with_writes(&env, case.app).await;
        let op = if case.kill_while_restoring {
            operator_in_pod(&app.ns)
        } else {
            Operator::start(&app.ns)
        };
        let mut plan = squidex_plan(case.plan, &app, 2);
        (case.breaks)(&mut plan);
        env.apply(&app.ns, plan).await;
        Some(FailureRun {
            env,
            app,
            op,
            before,
            case,
        })
    }

    /// Waits for the plan to fail and checks everything every row promises.
    async fn fails_and_restores(&mut self) -> UpgradePlan {
        let (env, app, case) = (&self.env, &self.app, self.case);
        if case.kill_while_restoring {
            kill_in(env, &mut self.op, &app.ns, case.plan, Phase::RollingBack).await;
        }
        let failed = env
            .wait_phase(&self.op, &app.ns, case.plan, Phase::Failed, PLAN_TIMEOUT)
            .await;
        let content_clone = app.clone_of(&app.content_db, case.plan);
        let message: Vec<String> = case
            .message
            .iter()
            .map(|m| m.replace("{content_clone}", &content_clone))
            .collect();
        assert_failed_and_restored(
            env,
            app,
            &failed,
            case.reason,
            case.phase,
            &message,
            case.clones_made,
            &self.before,
        )
        .await;
        failed
    }

    async fn finish(self) {
        let dbs = all_dbs(&self.app, &[self.case.plan]);
        self.env.finish(&self.op, &self.app.ns, &dbs).await;
    }
}

/// A row with nothing of its own to check.
async fn fails_and_restores(plan: &str) {
    let Some(mut run) = FailureRun::start(plan).await else {
        return;
    };
    run.fails_and_restores().await;
    run.finish().await;
}

/// A plan that failed in `phase` for `reason` and restored the old version: Failed with the
/// reason in status, conditions and message; the new Deployment gone; the clones kept (when
/// they had been made); the sources exactly as before; the app read-write.
#[allow(clippy::too_many_arguments)]
async fn assert_failed_and_restored(
    env: &Env,
    app: &App,
    plan: &UpgradePlan,
    reason: &str,
    phase: Phase,
    message_parts: &[String],
    clones_made: bool,
    before: &Counts,
) {
    let name = plan.name_any();
    let st = status(plan);
    assert_eq!(st.phase, Phase::Failed);
    let f = st.failure.clone().expect("failure recorded");
    assert_eq!((f.reason.as_str(), f.phase), (reason, phase), "{f:?}");
    for part in message_parts {
        assert!(
            f.message.contains(part.as_str()),
            "failure message lacks {part:?}: {}",
            f.message
        );
    }
    assert!(
        st.message.contains("The old version serves read-write"),
        "{}",
        st.message
    );
    let ready = condition(plan, "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", reason)
    );
    assert_eq!(condition(plan, "Degraded").unwrap().status, "True");
    assert_unwound(plan, phase, Outcome::Failed, Phase::Failed);
    assert_eq!(st.active_color, Some(Color::Blue));

    let green = st.green_deployment.clone().unwrap();
    assert!(
        env.deployment(&app.ns, &green).await.is_none(),
        "the new version {green} is removed"
    );
    let jobs = Api::<Job>::namespaced(env.client.clone(), &app.ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    for j in &jobs.items {
        assert_eq!(
            j.status.as_ref().and_then(|s| s.active).unwrap_or(0),
            0,
            "no Job still running: {}",
            j.name_any()
        );
    }
    let dbs = database_names(env).await;
    for c in [
        app.clone_of(&app.db, &name),
        app.clone_of(&app.content_db, &name),
    ] {
        assert_eq!(
            dbs.contains(&c),
            clones_made,
            "clone {c} kept for inspection: {clones_made}"
        );
    }
    assert_eq!(
        &source_counts(env, app).await,
        before,
        "the sources are untouched"
    );
    assert_eq!(env.tagged(&app.content_db, "before-upgrade").await, 3);
    assert_blue_serves_read_write(env, app, 1).await;
}

/// The restored clones differ from the frozen sources. Provoked deterministically: once the
/// plan has passed its preflight (which requires the clone databases to be empty) and before
/// the clone Job ran, a document is written into a clone database. mongorestore never drops
/// what is there, so the clone has a collection the source lacks and the count check fails.
#[tokio::test]
async fn clone_count_mismatch_fails_and_restores_the_old_version() {
    let Some(mut run) = FailureRun::start("counts").await else {
        return;
    };
    let (env, app) = (&run.env, &run.app);
    let clone_content = app.clone_of(&app.content_db, "counts");
    env.wait_plan(
        &run.op,
        &app.ns,
        "counts",
        "preflight passed",
        PLAN_TIMEOUT,
        |p| p.status.as_ref().is_some_and(|s| s.phase != Phase::Pending),
    )
    .await;
    env.mongo
        .database(&clone_content)
        .collection::<Document>("Intruder")
        .insert_one(doc! {"written": "between preflight and clone"})
        .await
        .unwrap();
    let after_insert = env.plans(&app.ns).get("counts").await.unwrap();
    assert!(
        matches!(
            status(&after_insert).phase,
            Phase::EnteringReadOnly | Phase::BackingUp
        ),
        "the intruding document must land before the clone Job; the plan was already {}",
        status(&after_insert).phase
    );

    let failed = run.fails_and_restores().await;
    let verified = condition(&failed, "BackupVerified").unwrap();
    assert_eq!(
        (verified.status.as_str(), verified.reason.as_str()),
        ("False", "CountsDiffer")
    );
    assert!(!status(&failed).clone.unwrap().verified);

    run.finish().await;
}

/// The new version never becomes ready.
#[tokio::test]
async fn green_never_ready_fails_and_restores_the_old_version() {
    fails_and_restores("unready").await;
}

/// The migration does not finish in time; the operator is SIGKILLed as the compensation starts.
#[tokio::test]
async fn migration_timeout_fails_and_restores_the_old_version() {
    fails_and_restores("slowmig").await;
}

/// The migration Job exits 1; the failed Job is kept for its logs.
#[tokio::test]
async fn migration_job_failure_fails_and_restores_the_old_version() {
    let Some(mut run) = FailureRun::start("jobfail").await else {
        return;
    };
    run.fails_and_restores().await;
    let job = Api::<Job>::namespaced(run.env.client.clone(), &run.app.ns)
        .get("jobfail-migrate")
        .await
        .expect("the failed Job is kept for its logs");
    assert!(job.status.unwrap().failed.unwrap_or(0) >= 1);
    run.finish().await;
}

/// The HTTP health gate fails.
#[tokio::test]
async fn health_gate_failure_fails_and_restores_the_old_version() {
    fails_and_restores("health").await;
}
