//! The new version never touches a source (issue 13, item 2): a plan whose variables do not
//! rewire every variable that names a source database is refused at Pending, before the app
//! is made read-only, and the sources keep their migration document and collections.

use std::collections::BTreeSet;
use std::time::Duration;

use cutover::crd::Phase;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use mongodb::bson::{Document, doc};
use serde_json::{Value, json};

use crate::common::*;
use crate::support::*;

/// What must not move while a refused plan is looked at.
#[derive(Debug, PartialEq)]
struct Untouched {
    blue_resource_version: String,
    deployments: BTreeSet<String>,
    jobs: BTreeSet<String>,
    databases: BTreeSet<String>,
    counts: Counts,
    migration_version: i64,
}

async fn untouched(env: &Env, app: &App) -> Untouched {
    let deployments = Api::<Deployment>::namespaced(env.client.clone(), &app.ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let migration = env
        .mongo
        .database(&app.db)
        .collection::<Document>("Migration")
        .find_one(doc! {})
        .await
        .unwrap()
        .expect("the seeded migration document");
    Untouched {
        blue_resource_version: env
            .deployment(&app.ns, BLUE)
            .await
            .unwrap()
            .resource_version()
            .unwrap(),
        deployments: deployments.iter().map(|d| d.name_any()).collect(),
        jobs: Api::<Job>::namespaced(env.client.clone(), &app.ns)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .map(|j| j.name_any())
            .collect(),
        databases: databases_of(env, app).await,
        counts: source_counts(env, app).await,
        migration_version: version_of(&migration),
    }
}

/// Applies `plan`, waits for it to end Failed at Pending and checks nothing moved: the app was
/// never made read-only (same resourceVersion, no read-only variable, only the phases Pending
/// and Failed), no Deployment or Job was created, no clone database appeared, and the sources
/// hold the same documents at migration version 1 with no `States_Contents_All2`. Returns the
/// failure message.
async fn refused_before_anything_moves(env: &Env, app: &App, plan: Value) -> String {
    let name = plan["metadata"]["name"].as_str().unwrap().to_string();
    let before = untouched(env, app).await;
    assert_eq!(before.migration_version, 1);
    let op = Operator::start(&app.ns);
    env.apply(&app.ns, plan).await;
    let p = env
        .wait_phase(&op, &app.ns, &name, Phase::Failed, Duration::from_secs(60))
        .await;
    let f = status(&p).failure.unwrap();
    assert_eq!(
        (f.phase, f.reason.as_str()),
        (Phase::Pending, "PreflightFailed"),
        "{}",
        f.message
    );
    assert_eq!(phase_names(&p), vec![Phase::Pending, Phase::Failed]);
    assert!(status(&p).read_only_since.is_none());
    // Give a (wrongly) started plan time to act before looking again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = untouched(env, app).await;
    assert_eq!(before, after, "a refused plan touched something");
    let blue = env.deployment(&app.ns, BLUE).await.unwrap();
    assert_eq!(container_env(&blue, RO), None, "the app was made read-only");
    for db in [&app.db, &app.content_db] {
        let colls = env
            .mongo
            .database(db)
            .list_collection_names()
            .await
            .unwrap();
        assert!(
            !colls.iter().any(|c| c == "States_Contents_All2"),
            "the source {db} was migrated: {colls:?}"
        );
    }
    assert!(!f.message.contains(&env.mongo_uri), "{}", f.message);
    let codes = env
        .post_contents(&app.ns, "app=squidex", "after-refusal", 1)
        .await;
    assert_eq!(codes, vec![201], "the app still accepts writes");
    drop(op);
    f.message
}

/// A typo in `env` (`NOT_IN_THE_POD`): on the old code the plan was accepted, the new version
/// got the extra variable while its real `STORE__MONGODB__DATABASE` still named the source,
/// and it migrated the live database. Now it is refused, naming the variable, the container
/// and the variables the container has.
#[tokio::test]
async fn a_typo_in_env_is_refused_before_anything_moves() {
    let Some(env) = env().await else { return };
    let app = env.blue_app("rel-envtypo", AppOptions::default()).await;
    let mut plan = squidex_plan("typo", &app, 2);
    plan["spec"]["database"]["databases"][0]["env"] = json!(["NOT_IN_THE_POD"]);
    let msg = refused_before_anything_moves(&env, &app, plan).await;
    for want in [
        "names variable \"NOT_IN_THE_POD\", which container \"squidex\" of Deployment \"squidex\" does not set",
        "STORE__MONGODB__CONFIGURATION, STORE__MONGODB__CONTENTDATABASE, STORE__MONGODB__DATABASE",
        &format!(
            "variable STORE__MONGODB__DATABASE of container \"squidex\" holds the name of source database \"{}\"",
            app.db
        ),
    ] {
        assert!(msg.contains(want), "{msg:?} lacks {want:?}");
    }
}

/// The container has one more variable naming a source (a reporting module's database) that
/// the plan does not list: the old code left it on the new version, pointing at the live
/// database. Now the plan is refused and says to add it to `env`.
#[tokio::test]
async fn an_unlisted_variable_naming_a_source_is_refused() {
    let Some(env) = env().await else { return };
    let app = env.blue_app("rel-envextra", AppOptions::default()).await;
    set_env(
        &env,
        &app,
        json!({"name": "REPORTS__DATABASE", "value": app.content_db}),
    )
    .await;
    let msg = refused_before_anything_moves(&env, &app, squidex_plan("extra", &app, 2)).await;
    let want = format!(
        "variable REPORTS__DATABASE of container \"squidex\" holds the name of source database \"{}\", and the plan does not rewire it: add \"REPORTS__DATABASE\" to that database's env",
        app.content_db
    );
    assert!(msg.contains(&want), "{msg:?} lacks {want:?}");
}

/// A `uriEnv` variable whose Secret does not exist (an optional reference, so the app runs):
/// the old code put the operator's own connection string into the new version's Secret. Now
/// the plan is refused, naming the variable and the missing Secret; once the Secret exists,
/// a new plan rewires the app's own connection string to the clone and succeeds.
#[tokio::test]
async fn an_unresolvable_uri_env_is_refused() {
    let Some(env) = env().await else { return };
    let app = env.blue_app("rel-envuri", AppOptions::default()).await;
    set_env(
        &env,
        &app,
        json!({"name": "REPORTS__URI", "valueFrom": {"secretKeyRef": {"name": "reports", "key": "uri", "optional": true}}}),
    )
    .await;
    let mut plan = squidex_plan("uri", &app, 2);
    plan["spec"]["database"]["databases"][1]["uriEnv"] = json!(["REPORTS__URI"]);
    let msg = refused_before_anything_moves(&env, &app, plan).await;
    let want = "uriEnv variable REPORTS__URI (Secret \"reports\" key \"uri\") of container \"squidex\": its value cannot be read: Secret \"reports\" not found";
    assert!(msg.contains(want), "{msg:?} lacks {want:?}");

    // Once the Secret exists the plan goes through, and the new version's Secret holds the
    // app's own connection string rewritten to the clone (never the operator's): the live
    // check on the new Deployment reads it and finds no source.
    let app_uri = cutover::uri::with_database(&env.mongo_uri, &app.content_db);
    env.apply(
        &app.ns,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "reports"}, "stringData": {"uri": app_uri}}),
    )
    .await;
    let mut plan = squidex_plan("uri2", &app, 2);
    plan["spec"]["database"]["databases"][1]["uriEnv"] = json!(["REPORTS__URI"]);
    let op = Operator::start(&app.ns);
    env.apply(&app.ns, plan).await;
    env.wait_phase(&op, &app.ns, "uri2", Phase::Succeeded, PLAN_TIMEOUT)
        .await;
    let secret = Api::<Secret>::namespaced(env.client.clone(), &app.ns)
        .get("squidex-uri2-env")
        .await
        .unwrap();
    let rewired = secret
        .data
        .as_ref()
        .and_then(|d| d.get("REPORTS__URI"))
        .map(|b| String::from_utf8_lossy(&b.0).to_string())
        .expect("REPORTS__URI in the new version's Secret");
    assert_eq!(
        rewired,
        cutover::uri::with_database(&app_uri, &app.clone_of(&app.content_db, "uri2"))
    );
    let green = env.deployment(&app.ns, "squidex-uri2").await.unwrap();
    assert_eq!(
        container_env(&green, "STORE__MONGODB__CONTENTDATABASE").as_deref(),
        Some(app.clone_of(&app.content_db, "uri2").as_str())
    );
}

/// Sets one variable on the app container (a strategic merge, keyed by name) and waits for
/// the rollout.
async fn set_env(env: &Env, app: &App, var: Value) {
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "squidex", "env": [var]}]}}}});
    Api::<Deployment>::namespaced(env.client.clone(), &app.ns)
        .patch(BLUE, &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .unwrap();
    env.wait_rollout(&app.ns, BLUE, Duration::from_secs(60))
        .await;
}
