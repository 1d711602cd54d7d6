//! Invalid or hostile plans, one table row each: refused by the CRD schema, or Failed at
//! Pending with a precise message, before any side effect.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cutover::crd::{Phase, UpgradePlan};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::{Api, ResourceExt};
use mongodb::bson::{Document, doc};
use serde_json::{Value, json};

use crate::bad_inputs::{BAD_INPUTS, Expect, Names};
use crate::common::*;
use crate::support::*;

/// What the rows need besides the app: Services that select nothing / other pods / have no
/// selector, another Deployment, Secrets with a non-MongoDB URI and with a closed port, a
/// Secret that exists only in another namespace, and a clone database that already has data.
async fn surroundings(env: &Env, app: &App) -> Names {
    let ns = &app.ns;
    env.apply(
        ns,
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "other", "labels": {"app": "other"}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "other"}},
                "template": {"metadata": {"labels": {"app": "other"}},
                    "spec": {"containers": [{"name": "other", "image": "registry.local/other:1"}]}}}
        }),
    )
    .await;
    for (name, selector) in [
        ("nothing", Some(json!({"app": "nothing"}))),
        ("other", Some(json!({"app": "other"}))),
        ("headless", None),
    ] {
        let mut spec = json!({"ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]});
        if let Some(s) = selector {
            spec["selector"] = s;
        }
        env.apply(ns, json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}))
            .await;
    }
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    for (name, uri) in [
        (
            "notauri",
            "postgres://pguser:pg-Secret-1@db.local/app".to_string(),
        ),
        (
            "closed",
            format!("mongodb://u:closed-Secret-2@127.0.0.1:{closed_port}/?directConnection=true"),
        ),
    ] {
        env.apply(ns, json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": {"uri": uri}}))
            .await;
    }
    let elsewhere = env.namespace("rel-bad-elsewhere").await;
    env.apply(&elsewhere, json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "elsewhere"}, "stringData": {"uri": env.mongo_uri}}))
        .await;
    let occupied = app.clone_of(&app.db, "clone-exists");
    env.mongo
        .database(&occupied)
        .collection::<Document>("Leftover")
        .insert_many([doc! {"n": 1}, doc! {"n": 2}])
        .await
        .unwrap();
    env.wait_rollout(ns, "other", Duration::from_secs(60)).await;
    Names {
        db: app.db.clone(),
        content_db: app.content_db.clone(),
        occupied,
        elsewhere,
    }
}

/// Every bad input against one app. Each is refused by the CRD schema or ends Failed at
/// Pending with a precise message, and after each: the old Deployment and the Services have
/// the same resourceVersion, no Job and no Deployment was created, no clone database
/// appeared, and the sources have the same documents.
///
/// Unknown fields (what Kubernetes 1.20 actually does; there is no server-side field validation
/// before 1.25): a server-side apply is refused with "field not declared in schema" (rows
/// `secret-ns` and `unknown-field`: e.g. a `namespace` under `connectionSecret`, a field that
/// does not exist); a create or update (client-side `kubectl apply`, whose own validation
/// rejects them unless `--validate=false`) is accepted with the unknown fields pruned, so a
/// misspelt field (`timout`) silently falls back to its default. The last check shows that.
#[tokio::test]
async fn bad_input_is_refused_before_any_side_effect() {
    let Some(env) = env().await else { return };
    let app = env.blue_app("rel-bad", AppOptions::default()).await;
    let ns = app.ns.clone();
    write_before_upgrade(&env, &app, 3).await;
    let names = surroundings(&env, &app).await;

    let op = Operator::start(&ns);
    let base = squidex_plan("base", &app, 2);
    let edit = |name: &str, f: &dyn Fn(&mut Value)| {
        let mut p = base.clone();
        p["metadata"]["name"] = json!(name);
        f(&mut p);
        p
    };
    assert!(BAD_INPUTS.len() >= 20);

    let svcs = Api::<Service>::namespaced(env.client.clone(), &ns);
    let world = async || {
        let deployments = Api::<Deployment>::namespaced(env.client.clone(), &ns)
            .list(&ListParams::default())
            .await
            .unwrap();
        let mut svc_rvs = BTreeMap::new();
        for s in svcs.list(&ListParams::default()).await.unwrap() {
            svc_rvs.insert(s.name_any(), s.resource_version());
        }
        (
            deployments
                .items
                .iter()
                .map(|d| (d.name_any(), d.resource_version()))
                .collect::<BTreeMap<_, _>>(),
            svc_rvs,
            Api::<Job>::namespaced(env.client.clone(), &ns)
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .len(),
            source_counts(&env, &app).await,
            databases_of(&env, &app).await,
        )
    };
    let before = world().await;
    assert_eq!(before.0.len(), 2, "squidex and other");
    assert_eq!(before.2, 0);

    let mut report = Vec::new();
    for row in BAD_INPUTS {
        let (name, what) = (row.name, row.what);
        let t = Instant::now();
        let plan = edit(name, &|p| (row.breaks)(p, &names));
        let applied = env.try_apply_plan(&ns, &plan).await;
        match &row.expect {
            Expect::Schema(parts) => {
                let err =
                    applied.expect_err(&format!("{name} ({what}) must be refused by the schema"));
                for part in *parts {
                    assert!(
                        err.contains(part),
                        "{name} ({what}): schema error lacks {part:?}: {}",
                        &err[..err.len().min(600)]
                    );
                }
                assert!(env.plans(&ns).get_opt(name).await.unwrap().is_none());
            }
            Expect::Refused(reason, parts) => {
                applied.unwrap_or_else(|e| panic!("{name} ({what}): apply failed: {e}"));
                let p = env
                    .wait_phase(&op, &ns, name, Phase::Failed, Duration::from_secs(30))
                    .await;
                assert_refused(&p, name, what, reason, parts, &names);
            }
        }
        let now = world().await;
        assert_eq!(now, before, "{name} ({what}) changed something");
        report.push(format!(
            "{name:>16}  {:>5} ms  {what}",
            t.elapsed().as_millis()
        ));
    }

    // Unknown fields sent by create/update (client-side `kubectl apply`, or `kubectl create
    // --validate=false`) are pruned silently by Kubernetes 1.20: the plan is stored without them
    // and validates. Suspended, so it stops at Pending having checked the cluster.
    let mut unknown = edit("unknown", &|p| {
        p["spec"]["suspend"] = json!(true);
        p["spec"]["bogus"] = json!({"rm": "-rf"});
        p["spec"]["migration"]["timout"] = json!("0s");
        p["spec"]["database"]["connectionSecret"]["namespace"] = json!("kube-system");
    });
    unknown["spec"]["target"]["imagePullPolicy"] = json!("Never");
    let dynamic = Api::<DynamicObject>::namespaced_with(
        env.client.clone(),
        &ns,
        &ApiResource::erase::<UpgradePlan>(&()),
    );
    let created: DynamicObject = serde_json::from_value(unknown).unwrap();
    dynamic
        .create(&PostParams::default(), &created)
        .await
        .expect("created, unknown fields pruned");
    let stored = dynamic.get("unknown").await.unwrap();
    let spec = &stored.data["spec"];
    assert!(spec.get("bogus").is_none(), "{spec}");
    assert!(spec["migration"].get("timout").is_none(), "{spec}");
    assert!(
        spec["database"]["connectionSecret"]
            .get("namespace")
            .is_none()
    );
    assert!(spec["target"].get("imagePullPolicy").is_none());
    assert_eq!(spec["migration"]["timeout"], "3m", "the real field is kept");
    let suspended = env
        .wait_plan(
            &op,
            &ns,
            "unknown",
            "suspended after the preflight",
            Duration::from_secs(30),
            |p| {
                p.status
                    .as_ref()
                    .is_some_and(|s| s.message.starts_with("Suspended before EnteringReadOnly"))
            },
        )
        .await;
    assert_eq!(status(&suspended).phase, Phase::Pending);
    assert_eq!(world().await, before, "the suspended plan changed nothing");
    env.plans(&ns)
        .delete("unknown", &DeleteParams::default())
        .await
        .unwrap();
    let start = Instant::now();
    while env.plans(&ns).get_opt("unknown").await.unwrap().is_some() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the suspended plan was not let go"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(world().await, before);
    report.push(format!(
        "{:>16}  {:>5} ms  unknown fields sent by create: accepted, pruned",
        "unknown", 0
    ));
    eprintln!("{}", report.join("\n"));

    assert_eq!(env.tagged(&app.content_db, "before-upgrade").await, 3);
    let _ = Api::<Namespace>::all(env.client.clone())
        .delete(&names.elsewhere, &DeleteParams::default())
        .await;
    let mut dbs = all_dbs(&app, &[]);
    dbs.push(names.occupied);
    env.finish(&op, &ns, &dbs).await;
}

/// A plan refused at Pending: Failed for `reason` with every part in its message, which says
/// nothing was changed; Ready=False; nothing begun; no secret in its status.
fn assert_refused(
    p: &UpgradePlan,
    name: &str,
    what: &str,
    reason: &str,
    parts: &[&str],
    names: &Names,
) {
    let st = status(p);
    let f = st.failure.clone().unwrap();
    assert_eq!(
        (f.phase, f.reason.as_str()),
        (Phase::Pending, reason),
        "{name} ({what}): {}",
        f.message
    );
    for part in parts.iter().map(|part| names.fill(part)) {
        assert!(
            f.message.contains(part.as_str()),
            "{name} ({what}): message lacks {part:?}: {}",
            f.message
        );
    }
    assert!(
        f.message.contains("nothing was changed"),
        "{name}: {}",
        f.message
    );
    assert_eq!(st.message, f.message, "{name}");
    assert_eq!(
        phase_names(p),
        vec![Phase::Pending, Phase::Failed],
        "{name}"
    );
    let ready = condition(p, "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", reason),
        "{name}"
    );
    assert!(
        st.read_only_since.is_none() && st.backup.is_none(),
        "{name}"
    );
    // No secret in the status of the plans whose Secret was hostile.
    let text = serde_json::to_string(&p.status).unwrap();
    assert_no_secret(&text, "pg-Secret-1", name);
    assert_no_secret(&text, "closed-Secret-2", name);
}

/// A plan named `v7.1` (a valid Kubernetes name with a '.', which MongoDB refuses in database
/// names): its clones are named with '_' (`<db>-v7_1`), the upgrade succeeds, and the new
/// version serves read-write on them. Before names were mapped, the clone Job's restore into
/// `<db>-v7.1` failed and the app stayed read-only until `timeouts.clone` (2 h).
#[tokio::test]
async fn a_plan_named_with_a_dot_upgrades_onto_valid_clone_names() {
    let Some(env) = env().await else { return };
    let app = env.blue_app("rel-dot", AppOptions::default()).await;
    let ns = app.ns.clone();
    write_before_upgrade(&env, &app, 3).await;
    let op = Operator::start(&ns);

    let plan = "v7.1";
    env.apply(&ns, squidex_plan(plan, &app, 2)).await;
    let done = env
        .wait_phase(&op, &ns, plan, Phase::Succeeded, PLAN_TIMEOUT)
        .await;
    let st = status(&done);

    // The clones recorded in status are valid MongoDB names, '.' written '_'.
    let clones = st.clone.as_ref().expect("clone status").databases.clone();
    let want: BTreeMap<String, String> = [
        (app.db.clone(), format!("{}-v7_1", app.db)),
        (app.content_db.clone(), format!("{}-v7_1", app.content_db)),
    ]
    .into();
    assert_eq!(clones, want);
    let on_server = databases_of(&env, &app).await;
    for clone in clones.values() {
        assert!(
            clone.len() <= 63
                && clone.chars().all(|c| !c.is_whitespace()
                    && !c.is_control()
                    && !"/\\. \"$*<>:|?=".contains(c)),
            "{clone:?} is not a valid database name"
        );
        assert!(on_server.contains(clone), "{clone} missing: {on_server:?}");
    }
    let content_clone = &clones[&app.content_db];
    // (The new version's migration copies the contents into a new collection, so more.)
    assert!(env.tagged(content_clone, "before-upgrade").await >= 3);

    // The new version (a Deployment name may keep the '.') has the traffic and accepts writes.
    let green = st.green_deployment.clone().unwrap();
    assert_eq!(green, "squidex-v7.1");
    assert!(st.read_only_lifted_at.is_some());
    assert_eq!(
        env.service_selector(&ns, "squidex")
            .await
            .get(TRACK)
            .map(String::as_str),
        Some(green.as_str())
    );
    let d = env.deployment(&ns, &green).await.unwrap();
    assert_eq!(container_env(&d, RO), None, "read-only lifted");
    let codes = env
        .post_contents(&ns, &format!("{TRACK}={green}"), "after-upgrade", 1)
        .await;
    assert_eq!(codes, vec![201], "the new version accepts writes");
    assert_eq!(env.tagged(content_clone, "after-upgrade").await, 1);
    assert_eq!(env.tagged(&app.content_db, "after-upgrade").await, 0);

    env.finish(&op, &ns, &all_dbs(&app, &[plan])).await;
}
