//! A rehearsal clones the live app's data, runs the new version and its gates against the
//! clone, times every phase, tears everything down, and never touches the running app.

mod common;

use std::time::Duration;

use common::*;
use cutover::crd::Phase;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::Api;

const TIMEOUT: Duration = Duration::from_secs(180);

/// The resourceVersions of the old version's Deployment and of its Service.
async fn blue_versions(env: &Env, ns: &str) -> (Option<String>, Option<String>) {
    let deployment = Api::<Deployment>::namespaced(env.client.clone(), ns);
    let service = Api::<Service>::namespaced(env.client.clone(), ns);
    (
        deployment
            .get("squidex")
            .await
            .unwrap()
            .metadata
            .resource_version,
        service
            .get("squidex")
            .await
            .unwrap()
            .metadata
            .resource_version,
    )
}

#[tokio::test]
async fn rehearsal_leaves_blue_untouched_and_tears_down() {
    let Some(env) = env().await else { return };
    let app = env.blue_app("rehearsal", AppOptions::default()).await;
    let deployments = Api::<Deployment>::namespaced(env.client.clone(), &app.ns);
    let services = Api::<Service>::namespaced(env.client.clone(), &app.ns);
    let blue_before = blue_versions(&env, &app.ns).await;
    let sources_before = source_counts(&env, &app).await;

    let op = Operator::start(&app.ns);
    let mut plan = squidex_plan("practice", &app, 2);
    plan["spec"]["mode"] = serde_json::json!("rehearsal");
    let done = env
        .apply_until(&op, &app.ns, plan, Phase::Rehearsed, TIMEOUT)
        .await;
    let st = status(&done);

    // Blue and its Service are byte-for-byte what they were.
    assert_eq!(blue_versions(&env, &app.ns).await, blue_before);
    assert_eq!(source_counts(&env, &app).await, sources_before);

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
    assert_no_clones(&env, "practice").await;

    // Every phase was timed, and the message predicts the real read-only window.
    use Phase::*;
    assert_eq!(
        phase_names(&done),
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
    let real = squidex_plan("real", &app, 2);
    let real = env
        .apply_until(&op, &app.ns, real, Phase::Succeeded, TIMEOUT)
        .await;
    assert_eq!(status(&real).prediction, Some(prediction));
    let shown = cutover::cli::render_status(&real);
    assert!(
        shown.contains("measured; ") && shown.contains("predicted by rehearsal practice"),
        "{shown}"
    );
    eprintln!("{shown}");

    env.cleanup(&app.ns, &all_dbs(&app, &["real"])).await;
}
