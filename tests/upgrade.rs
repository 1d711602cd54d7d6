//! Full upgrade plans against the real control plane and MongoDB-wire server.

mod common;

use std::time::Duration;

use common::*;
use cutover::crd::{Color, Phase};
use kube::Api;
use mongodb::bson::doc;

const PLAN_TIMEOUT: Duration = Duration::from_secs(180);

/// Creates a MongoDB user and returns a connection string with its password, so the test can
/// check that the password never leaks.
async fn uri_with_password(env: &Env, id: &str) -> (String, String) {
    let user = format!("cutover_{id}");
    let password = format!("pw-{id}-S3cret");
    env.mongo
        .database("admin")
        .run_command(doc! {"createUser": &user, "pwd": &password, "roles": [{"role": "root", "db": "admin"}]})
        .await
        .expect("createUser");
    let hostport = env
        .mongo_uri
        .trim_start_matches("mongodb://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    (
        format!("mongodb://{user}:{password}@{hostport}/?directConnection=true&authSource=admin"),
        password,
    )
}

/// The Secret an env list's MongoDB connection string (`STORE__MONGODB__CONFIGURATION`) comes from.
fn credentials_secret(env: &[k8s_openapi::api::core::v1::EnvVar]) -> &str {
    let cred = env
        .iter()
        .find(|e| e.name == "STORE__MONGODB__CONFIGURATION")
        .expect("STORE__MONGODB__CONFIGURATION");
    let secret = cred
        .value_from
        .as_ref()
        .and_then(|v| v.secret_key_ref.as_ref());
    &secret.expect("from a Secret").name
}

#[tokio::test]
async fn squidex_upgrade_on_two_databases_succeeds() {
    let Some(env) = env().await else { return };
    let app = env
        .blue_app(
            "up-squidex",
            AppOptions {
                replicas: 2,
                ..Default::default()
            },
        )
        .await;
    let (uri, password) = uri_with_password(&env, &app.id).await;
    env.apply(&app.ns, serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "mongo"}, "stringData": {"uri": uri}
    }))
    .await;
    let sources_before = source_counts(&env, &app).await;
    let op = Operator::start(&app.ns);

    let plan = env
        .apply_until(
            &op,
            &app.ns,
            squidex_plan("up2", &app, 2),
            Phase::Succeeded,
            PLAN_TIMEOUT,
        )
        .await;
    let st = plan.status.clone().unwrap();

    // Traffic: the Service selects the new version.
    let green = st.green_deployment.clone().unwrap();
    assert_eq!(green, "squidex-up2");
    let selector = env.service_selector(&app.ns, "squidex").await;
    assert_eq!(selector.get("cutover.dev/track"), Some(&green));
    assert_eq!(
        selector.get("app").map(String::as_str),
        Some("squidex"),
        "the user's selector keys are kept"
    );
    assert_eq!(st.active_color, Some(Color::Green));

    // The new version runs the target image on the clones, read-write, and is no longer owned by the plan.
    let g = env.deployment(&app.ns, &green).await.unwrap();
    let c = &env.app_container(&app.ns, &green).await;
    assert_eq!(c.image.as_deref(), Some("cutover.dev/appsim:2"));
    let envs: Vec<(String, Option<String>)> = c
        .env
        .clone()
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.value))
        .collect();
    let clone_db = app.clone_of(&app.db, "up2");
    let clone_content = app.clone_of(&app.content_db, "up2");
    assert!(
        envs.contains(&("STORE__MONGODB__DATABASE".into(), Some(clone_db.clone()))),
        "{envs:?}"
    );
    assert!(envs.contains(&(
        "STORE__MONGODB__CONTENTDATABASE".into(),
        Some(clone_content.clone())
    )));
    assert!(
        !envs.iter().any(|(n, _)| n == "MODE__ISREADONLY"),
        "read-only lifted on green"
    );
    assert!(
        g.metadata
            .owner_references
            .as_ref()
            .is_none_or(|o| o.is_empty()),
        "handed over"
    );

    // Green migrated its clone; the sources are untouched.
    let doc = env
        .migration_doc(&clone_db)
        .await
        .expect("migration doc in the clone");
    assert_eq!(version_of(&doc), 2);
    assert!(!doc.get_bool("IsLocked").unwrap());
    let clone_contents = env.counts(&clone_content).await;
    assert_eq!(
        clone_contents.get("States_Contents_All2"),
        Some(&app.documents),
        "{clone_contents:?}"
    );
    assert_eq!(source_counts(&env, &app).await, sources_before);
    let src_doc = env.migration_doc(&app.db).await.unwrap();
    assert_eq!(version_of(&src_doc), 1);

    // After success, cleanup scales blue to zero (scaleDownBlueAfter: 1s); it stays read-only
    // (it must never write to the old data again).
    let plan = env
        .wait_cleanup(
            &op,
            &app.ns,
            "up2",
            CleanupStepName::ScaleDownBlue,
            CleanupState::Done,
            PLAN_TIMEOUT,
        )
        .await;
    let st = plan.status.clone().unwrap();
    let blue = env.deployment(&app.ns, "squidex").await.unwrap();
    assert_eq!(blue.spec.as_ref().unwrap().replicas, Some(0));
    assert!(
        env.app_env(&app.ns, "squidex")
            .await
            .iter()
            .any(|e| e.name == "MODE__ISREADONLY")
    );

    // The audit trail is complete, in order, with timestamps; the scale-down follows success.
    let mut walk = upgrade_walk();
    walk.push(Phase::CleaningUp);
    assert_eq!(phase_names(&plan), walk);
    assert!(
        st.phases
            .last()
            .unwrap()
            .detail
            .starts_with("ScaleDownBlue")
    );
    for r in &st.phases {
        let f = r.finished_at.expect("every phase finished");
        assert!(f >= r.started_at);
    }
    let backup = st.backup.clone().unwrap();
    assert!(backup.bytes.unwrap_or(0) > 0, "{backup:?}");
    assert_backup_checksummed(&st);
    assert!(st.clone.as_ref().unwrap().verified);
    assert!(st.read_only_since.unwrap() < st.read_only_lifted_at.unwrap());

    // Events for the transitions; the password is nowhere.
    let events = env.events(&app.ns).await;
    let reasons: Vec<String> = events.iter().filter_map(|e| e.reason.clone()).collect();
    let transitions = [
        "EnteringReadOnly",
        "BackingUp",
        "Cloning",
        "SwitchingTraffic",
        "Succeeded",
    ];
    assert_all_in(&reasons, &transitions, "the event reasons");
    let status_text = serde_json::to_string(&plan.status).unwrap();
    let events_text = serde_json::to_string(&events).unwrap();
    assert_no_secret(&status_text, &password, "status");
    assert_no_secret(&events_text, &password, "events");
    assert_no_secret(&op.log(), &password, "operator log");
    eprintln!("{}", cutover::cli::render_status(&plan));

    env.cleanup(&app.ns, &all_dbs(&app, &["up2"])).await;
}

/// A vendor-style upgrade: the schema is migrated by a one-shot Job of the new image (like
/// `./upgrade_schema.sh upgrade`) with its own credentials, then an HTTP health gate.
#[tokio::test]
async fn job_gate_with_migration_credentials_and_health_gate() {
    let Some(env) = env().await else { return };
    let app = env.blue_app("up-jobgate", AppOptions::default()).await;
    let (migrator_uri, migrator_password) = uri_with_password(&env, &format!("m{}", app.id)).await;
    env.apply(&app.ns, serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "migrator"}, "stringData": {"uri": migrator_uri}
    }))
    .await;
    let op = Operator::start(&app.ns);
    let mut plan = squidex_plan("schema3", &app, 3);
    plan["spec"]["migration"] = serde_json::json!({
        "job": {
            "args": ["migrate"],
            "credentialsSecret": {"name": "migrator", "key": "uri", "env": "STORE__MONGODB__CONFIGURATION"}
        },
        "httpGet": {"path": "/api/v1/health/check_up", "port": 8080, "expectStatus": 200},
        "timeout": "3m"
    });
    env.apply(&app.ns, plan).await;
    let done = env
        .wait_phase(&op, &app.ns, "schema3", Phase::Succeeded, PLAN_TIMEOUT)
        .await;

    // The Job ran the new image with the migration user's Secret, not the app's.
    let job = Api::<k8s_openapi::api::batch::v1::Job>::namespaced(env.client.clone(), &app.ns)
        .get("schema3-migrate")
        .await
        .expect("migration job");
    assert!(job.status.as_ref().unwrap().succeeded.unwrap_or(0) >= 1);
    let c = job
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers
        .remove(0);
    assert_eq!(c.image.as_deref(), Some("cutover.dev/appsim:3"));
    assert_eq!(credentials_secret(&c.env.unwrap()), "migrator");
    // The app containers keep the app's own credentials.
    let app_env = env.app_env(&app.ns, "squidex-schema3").await;
    assert_eq!(credentials_secret(&app_env), "mongo");

    // The migration reached version 3 on the clone; the source stayed at 1.
    let clone_db = app.clone_of(&app.db, "schema3");
    let doc = env.migration_doc(&clone_db).await.unwrap();
    assert_eq!(version_of(&doc), 3);
    let src = env.migration_doc(&app.db).await.unwrap();
    assert_eq!(version_of(&src), 1);
    assert!(
        done.status
            .as_ref()
            .unwrap()
            .migration
            .as_ref()
            .unwrap()
            .job_succeeded
    );
    assert_no_secret(
        &serde_json::to_string(&done.status).unwrap(),
        &migrator_password,
        "status",
    );
    assert_no_secret(&op.log(), &migrator_password, "operator log");

    env.cleanup(&app.ns, &all_dbs(&app, &["schema3"])).await;
}

/// Manual promotion: the plan waits with traffic and read-only on the old version until approved.
#[tokio::test]
async fn manual_promotion_waits_for_approval() {
    let Some(env) = env().await else { return };
    let (app, op) = env.app_with_operator("up-manual").await;
    let mut plan = squidex_plan("manual", &app, 2);
    plan["spec"]["promotion"] = serde_json::json!({"mode": "manual"});
    let waiting = env
        .apply_until(
            &op,
            &app.ns,
            plan.clone(),
            Phase::AwaitingPromotion,
            PLAN_TIMEOUT,
        )
        .await;
    assert!(status(&waiting).message.contains("approved"));

    // Held for a while: nothing moves, traffic stays on the old, still read-only version.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let still = env.plans(&app.ns).get("manual").await.unwrap();
    assert_eq!(
        still.status.as_ref().unwrap().phase,
        Phase::AwaitingPromotion
    );
    assert_eq!(
        env.track(&app.ns, "squidex").await.as_deref(),
        Some("squidex")
    );
    let blue_env = env.app_env(&app.ns, "squidex").await;
    assert!(
        blue_env
            .iter()
            .any(|e| e.name == "MODE__ISREADONLY" && e.value.as_deref() == Some("true"))
    );

    plan["spec"]["promotion"] = serde_json::json!({"mode": "manual", "approved": true});
    env.apply(&app.ns, plan).await;
    env.wait_phase(&op, &app.ns, "manual", Phase::Succeeded, PLAN_TIMEOUT)
        .await;
    assert_eq!(
        env.track(&app.ns, "squidex").await.as_deref(),
        Some("squidex-manual")
    );

    env.cleanup(&app.ns, &all_dbs(&app, &["manual"])).await;
}

/// A backup Job that fails: the plan fails, the old version serves read-write again, nothing is deleted.
#[tokio::test]
async fn failed_backup_restores_the_old_version() {
    let Some(env) = env().await else { return };
    let app = env.blue_app("up-badbackup", AppOptions::default()).await;
    let sources_before = source_counts(&env, &app).await;
    // podsim maps the backup PVC to a local directory; a file where the archive directory
    // must go makes the backup Job's `mkdir -p` fail, as a full or read-only volume would.
    let env_dir = std::env::var("CUTOVER_ENV_DIR").expect("CUTOVER_ENV_DIR from hack/dev-env env");
    let app_dir = std::path::Path::new(&env_dir)
        .join(format!("podsim/volumes/{}/pvc-backups/squidex", app.ns));
    std::fs::create_dir_all(&app_dir).unwrap();
    std::fs::write(app_dir.join("broken"), "not a directory").unwrap();

    let op = Operator::start(&app.ns);
    env.apply(&app.ns, squidex_plan("broken", &app, 2)).await;
    let failed = env
        .wait_phase(&op, &app.ns, "broken", Phase::Failed, PLAN_TIMEOUT)
        .await;
    let st = status(&failed);
    let f = st.failure.clone().unwrap();
    assert_eq!(f.reason, "BackupJobFailed");
    assert_eq!(f.phase, Phase::BackingUp);
    assert!(st.message.contains("broken-backup"), "{}", st.message);
    let ready = st.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "BackupJobFailed")
    );

    // The app serves read-write again, with traffic on it; nothing was deleted or created.
    let blue = env.deployment(&app.ns, "squidex").await.unwrap();
    let blue_env = env.app_env(&app.ns, "squidex").await;
    assert!(
        !blue_env.iter().any(|e| e.name == "MODE__ISREADONLY"),
        "read-only lifted"
    );
    assert_eq!(blue.spec.as_ref().unwrap().replicas, Some(1));
    env.wait_rollout(&app.ns, "squidex", Duration::from_secs(60))
        .await;
    assert!(env.deployment(&app.ns, "squidex-broken").await.is_none());
    assert_eq!(source_counts(&env, &app).await, sources_before);
    assert_no_clones(&env, "broken").await;
    assert_eq!(
        phase_names(&failed),
        vec![
            Phase::Pending,
            Phase::EnteringReadOnly,
            Phase::BackingUp,
            Phase::RollingBack,
            Phase::Failed
        ]
    );

    env.cleanup(&app.ns, &all_dbs(&app, &[])).await;
}
