//! A rehearsal clones the live app's data, runs the new version and its gates against the
//! clone, times every phase, tears everything down, and never touches the running app.

mod common;

use std::time::Duration;

use common::*;
use cutover::crd::Phase;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::Api;

#[tokio::test]
async fn rehearsal_leaves_blue_untouched_and_tears_down() {
    let Some(env) = env().await else { return };
    let app = env.blue_app("rehearsal", AppOptions::default()).await;
    let deployments = Api::<Deployment>::namespaced(env.client.clone(), &app.ns);
    let services = Api::<Service>::namespaced(env.client.clone(), &app.ns);
    let blue_rv = deployments
        .get("squidex")
        .await
        .unwrap()
        .metadata
        .resource_version;
    let svc_rv = services
        .get("squidex")
        .await
        .unwrap()
        .metadata
        .resource_version;
    let sources_before = (env.counts(&app.db).await, env.counts(&app.content_db).await);

    let op = Operator::start(&app.ns);
    let mut plan = squidex_plan("practice", &app, 2);
    plan["spec"]["mode"] = serde_json::json!("rehearsal");
    env.apply(&app.ns, plan).await;
    let done = env
        .wait_phase(
            &op,
            &app.ns,
            "practice",
            Phase::Rehearsed,
            Duration::from_secs(180),
        )
        .await;
    let st = done.status.unwrap();

    // Blue and its Service are byte-for-byte what they were.
    assert_eq!(
        deployments
            .get("squidex")
            .await
            .unwrap()
            .metadata
            .resource_version,
        blue_rv
    );
    assert_eq!(
        services
            .get("squidex")
            .await
            .unwrap()
            .metadata
            .resource_version,
        svc_rv
    );
    assert_eq!(
        (env.counts(&app.db).await, env.counts(&app.content_db).await),
        sources_before
    );

    // Everything the rehearsal created is gone: green, its preview Service, the clones.
    assert!(
        deployments
            .get_opt("squidex-practice")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        services
            .get_opt("squidex-practice-preview")
            .await
            .unwrap()
            .is_none()
    );
    let dbs = env.mongo.list_database_names().await.unwrap();
    assert!(
        !dbs.iter().any(|d| d.ends_with("-practice")),
        "clones left behind: {dbs:?}"
    );

    // Every phase was timed, and the message predicts the real read-only window.
    let names: Vec<Phase> = st.phases.iter().map(|r| r.name).collect();
    use Phase::*;
    assert_eq!(
        names,
        vec![
            Pending,
            BackingUp,
            Cloning,
            DeployingGreen,
            Migrating,
            CleaningUp,
            Rehearsed
        ]
    );
    assert!(st.phases.iter().all(|r| r.finished_at.is_some()));
    assert!(
        st.message.contains("predicted read-only window"),
        "{}",
        st.message
    );
    assert!(
        st.read_only_since.is_none(),
        "a rehearsal never makes the app read-only"
    );

    let prediction = st.prediction.clone().expect("the rehearsal's prediction");
    assert_eq!(prediction.rehearsal, "practice");

    // The real upgrade of the same app shows the prediction beside its measured window.
    env.apply(&app.ns, squidex_plan("real", &app, 2)).await;
    let real = env
        .wait_phase(
            &op,
            &app.ns,
            "real",
            Phase::Succeeded,
            Duration::from_secs(180),
        )
        .await;
    let real_status = real.status.clone().unwrap();
    assert_eq!(real_status.prediction, Some(prediction));
    let shown = cutover::cli::render_status(&real);
    assert!(
        shown.contains("measured; ") && shown.contains("predicted by rehearsal practice"),
        "{shown}"
    );
    eprintln!("{shown}");

    let dbs = [
        app.db.clone(),
        app.content_db.clone(),
        app.clone_of(&app.db, "real"),
        app.clone_of(&app.content_db, "real"),
    ];
    env.cleanup(&app.ns, &dbs).await;
}
