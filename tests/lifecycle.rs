//! Upgrades in a row, as platform teams run them (issue 14): each plan upgrades what the
//! previous one produced.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;
use cutover::crd::Phase;
use cutover::fixtures::SquidexPlan;
use cutover::gitops::GitChange;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::api::{DeleteParams, ListParams};
use kube::{Api, ResourceExt};
use serde::Deserialize;

const PLAN_TIMEOUT: Duration = Duration::from_secs(180);
const TRACK: &str = "cutover.dev/track";
/// The field manager of Argo CD's server-side apply (`ServerSideApply=true`).
const ARGO: &str = "argocd-controller";

/// v1 → v2, then v2 → v3 of the Deployment and clones the first plan handed over. The second
/// plan makes a Deployment read-only that cutover itself created by server-side apply; before,
/// that apply (under the same field manager, with only the variable and the label) told the API
/// server to remove every other field, and the plan retried `set_read_only` forever.
#[tokio::test]
async fn a_second_upgrade_upgrades_what_the_first_produced() {
    let Some(env) = env().await else { return };
    let app = env.blue_app("rows", AppOptions::default()).await;
    let op = Operator::start(&app.ns);

    env.apply(&app.ns, squidex_plan("v2", &app, 2)).await;
    env.wait_phase(&op, &app.ns, "v2", Phase::Succeeded, PLAN_TIMEOUT)
        .await;
    let first = env.plans(&app.ns).get("v2").await.unwrap();
    let v2_deployment = status(&first).green_deployment.expect("the new Deployment");
    let (v2_db, v2_content) = (
        app.clone_of(&app.db, "v2"),
        app.clone_of(&app.content_db, "v2"),
    );
    let codes = env
        .post_contents(&app.ns, &format!("{TRACK}={v2_deployment}"), "on-v2", 2)
        .await;
    assert!(
        codes.iter().all(|c| *c == 201),
        "v2 takes writes: {codes:?}"
    );

    let second = SquidexPlan {
        deployment: v2_deployment.clone(),
        ..SquidexPlan::appsim(&v2_db, &v2_content, 3)
    };
    env.apply(&app.ns, second.object_json("v3")).await;
    let p = env
        .wait_phase(&op, &app.ns, "v3", Phase::Succeeded, PLAN_TIMEOUT)
        .await;
    assert_eq!(phase_names(&p), upgrade_walk());
    let v3_deployment = status(&p).green_deployment.expect("the newer Deployment");
    assert_eq!(
        env.track(&app.ns, "squidex").await.as_deref(),
        Some(v3_deployment.as_str()),
        "the Service selects the third version"
    );
    let v3 = env.deployment(&app.ns, &v3_deployment).await.unwrap();
    // Names derive from the app's first names, not from the previous plan's.
    assert_eq!(v3_deployment, "squidex-v3");
    let (v3_db, v3_content) = (
        app.clone_of(&app.db, "v3"),
        app.clone_of(&app.content_db, "v3"),
    );
    assert_eq!(
        container_env(&v3, "STORE__MONGODB__DATABASE").as_deref(),
        Some(v3_db.as_str())
    );
    // The second version's Deployment kept its fields through read-only and back.
    let v2 = env.deployment(&app.ns, &v2_deployment).await.unwrap();
    let spec = v2.spec.as_ref().unwrap();
    assert!(spec.selector.match_labels.is_some(), "selector kept");
    assert_eq!(
        spec.template.spec.as_ref().unwrap().containers[0]
            .image
            .as_deref(),
        Some(cutover::fixtures::appsim_image(2).as_str())
    );
    assert_eq!(
        container_env(&v2, "MODE__ISREADONLY").as_deref(),
        Some("true"),
        "the old version stays read-only until it is scaled down"
    );
    // Writes made on v2 made it to v3, and v3 takes writes.
    // (each migration keeps the previous version's collection beside its own: count in both)
    let on_v2 = env.tagged(&v2_content, "on-v2").await;
    assert!(on_v2 >= 2, "{on_v2}");
    assert_eq!(
        env.tagged(&v3_content, "on-v2").await,
        on_v2 * 2,
        "every write on v2 is in v3's clone, in its migrated collection too"
    );
    let codes = env
        .post_contents(&app.ns, &format!("{TRACK}={v3_deployment}"), "on-v3", 1)
        .await;
    assert!(
        codes.iter().all(|c| *c == 201),
        "v3 takes writes: {codes:?}"
    );
    assert!(condition(&p, "ReconcileFailing").is_none_or(|c| c.status == "False"));

    let dbs = all_dbs(&app, &["v2", "v3"]);
    env.finish(&op, &app.ns, &dbs).await;
}

/// Five upgrades in a row with a rollback in the middle, applied GitOps-style: the app's
/// manifests and every plan are applied from "Git" by server-side apply as Argo CD does
/// (field manager `argocd-controller`, force). Names do not grow: each plan derives its names
/// from the app's names before any upgrade, so the Deployment is `squidex-v<N>` and the clones
/// `<database>-v<N>` every time, never `squidex-v2-v3-…`, and every backup of the app lands
/// under one directory. After each `Succeeded` the Git change (`cutover git-patch`) is made to
/// the Git file and synced, with prune: no rollout, no traffic change, the old Deployment
/// pruned, and the next plan upgrades the Deployment Git declares. After the rolled-back plan
/// there is nothing to change, and a sync of Git changes nothing either.
#[tokio::test]
async fn five_upgrades_applied_gitops_style_converge_and_keep_names_short() {
    let Some(env) = env().await else { return };
    let app = env
        .blue_app(
            "five",
            AppOptions {
                field_manager: ARGO.into(),
                // After the database variables in Git; the new version runs them after it
                // (cutover appends what it rewires), an order the Git patch must keep.
                extra_env: vec![("URLS__BASEURL".into(), "https://cms.example.com".into())],
                ..Default::default()
            },
        )
        .await;
    let op = Operator::start(&app.ns);
    let ns = app.ns.clone();
    let mut git = yaml_docs(&app.manifests);
    let mut synced = git_sync(&env, &ns, &git, &BTreeSet::new()).await;
    let mut dbs = vec![app.db.clone(), app.content_db.clone()];
    let (mut db, mut content) = (app.db.clone(), app.content_db.clone());
    for version in 2..=6u32 {
        let deployment = git_deployment(&git);
        if version == 4 {
            // A plan rolled back before the lift (the rollback is a commit too): the next one
            // starts from the same app, and Git has nothing to change.
            let mut tried = SquidexPlan {
                deployment: deployment.clone(),
                ..SquidexPlan::appsim(&db, &content, version)
            }
            .object_json("v4try");
            tried["spec"]["promotion"] = serde_json::json!({"mode": "manual"});
            env.apply_as(&ns, tried.clone(), ARGO).await;
            env.wait_phase(&op, &ns, "v4try", Phase::AwaitingPromotion, PLAN_TIMEOUT)
                .await;
            tried["spec"]["traffic"] = serde_json::json!("blue");
            env.apply_as(&ns, tried, ARGO).await;
            env.wait_phase(&op, &ns, "v4try", Phase::RolledBack, PLAN_TIMEOUT)
                .await;
            let change = cutover::gitops::cli::read_change(&env.client, &ns, "v4try")
                .await
                .unwrap();
            assert!(matches!(change, GitChange::Nothing { .. }), "{change:?}");
            let rewritten = cutover::gitops::rewrite(&git, &change).unwrap();
            assert_eq!(rewritten, git, "nothing to change in Git after a rollback");
            env.wait_rollout(&ns, &deployment, PLAN_TIMEOUT).await;
            let before = running(&env, &ns, &deployment).await;
            synced = git_sync(&env, &ns, &rewritten, &synced).await;
            assert_unchanged(&env, &ns, &deployment, &before).await;
            eprintln!(
                "v4try: RolledBack; traffic stays on {deployment}; Git unchanged ({} bytes)",
                git.len()
            );
            dbs.push(format!("{}-v4try", app.db));
            dbs.push(format!("{}-v4try", app.content_db));
        }
        let name = format!("v{version}");
        let plan = SquidexPlan {
            deployment: deployment.clone(),
            ..SquidexPlan::appsim(&db, &content, version)
        };
        env.apply_as(&ns, plan.object_json(&name), ARGO).await;
        let p = env
            .wait_phase(&op, &ns, &name, Phase::Succeeded, PLAN_TIMEOUT)
            .await;
        let st = status(&p);
        let targets = st.targets.expect("status.targets");
        assert_eq!(
            targets.blue_deployment.name, deployment,
            "the Git-declared one"
        );
        assert_eq!(targets.green_deployment, format!("squidex-{name}"));
        assert_eq!(
            targets
                .databases
                .iter()
                .map(|d| d.clone.clone())
                .collect::<Vec<_>>(),
            vec![
                format!("{}-{name}", app.db),
                format!("{}-{name}", app.content_db)
            ],
            "clone names derive from the app's first databases"
        );
        assert_eq!(targets.backup_dir, format!("/backup/squidex/{name}"));
        let green = targets.green_deployment.clone();
        db = targets.databases[0].clone.clone();
        content = targets.databases[1].clone.clone();
        dbs.push(db.clone());
        dbs.push(content.clone());
        assert_eq!(
            env.track(&ns, "squidex").await.as_deref(),
            Some(green.as_str())
        );

        // The Git change, by the library, and once by the real binary on a file.
        let change = cutover::gitops::cli::read_change(&env.client, &ns, &name)
            .await
            .unwrap();
        let rewritten = cutover::gitops::rewrite(&git, &change).unwrap();
        if version == 3 {
            let file = std::env::temp_dir().join(format!("{}-git-{name}.yaml", unique("gitops")));
            std::fs::write(&file, &git).unwrap();
            let out = git_patch(&ns, &name, &["-f", file.to_str().unwrap()]);
            assert_eq!(
                out, rewritten,
                "the binary prints what the library computes"
            );
            git_patch(&ns, &name, &["-f", file.to_str().unwrap(), "--in-place"]);
            assert_eq!(std::fs::read_to_string(&file).unwrap(), rewritten);
            let patch = git_patch(&ns, &name, &[]);
            assert!(
                patch.contains(&format!("Rename Deployment {deployment} to {green}")),
                "{patch}"
            );
            let _ = std::fs::remove_file(&file);
        }
        assert_eq!(
            git_deployment(&rewritten),
            green,
            "Git declares the new version"
        );
        env.wait_rollout(&ns, &green, PLAN_TIMEOUT).await;
        let before = running(&env, &ns, &green).await;
        synced = git_sync(&env, &ns, &rewritten, &synced).await;
        assert_unchanged(&env, &ns, &green, &before).await;
        assert!(
            env.deployment(&ns, &deployment).await.is_none(),
            "the old version {deployment} left Git and was pruned"
        );
        let codes = env
            .post_contents(&ns, &format!("{TRACK}={green}"), &format!("git-{name}"), 1)
            .await;
        assert!(
            codes.iter().all(|c| *c == 201),
            "{green} takes writes: {codes:?}"
        );
        eprintln!(
            "{name}: Succeeded; Deployment {deployment} -> {green}; databases {db}, {content}; backup {}; Git converged (generation {}, ReplicaSets {:?}, pods {:?} unchanged)",
            targets.backup_dir, before.generation, before.replica_sets, before.pods
        );
        git = rewritten;
    }
    assert_eq!(git_deployment(&git), "squidex-v6");
    env.finish(&op, &ns, &dbs).await;
}

/// The objects as one multi-document YAML file.
fn yaml_docs(objs: &[serde_json::Value]) -> String {
    objs.iter()
        .map(|o| serde_norway::to_string(o).unwrap())
        .collect::<Vec<_>>()
        .join("---\n")
}

fn parse_docs(yaml: &str) -> Vec<serde_json::Value> {
    serde_norway::Deserializer::from_str(yaml)
        .map(|d| serde_json::Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

/// The name of the Deployment the Git file declares.
fn git_deployment(yaml: &str) -> String {
    let docs = parse_docs(yaml);
    let d = docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("a Deployment in Git");
    d["metadata"]["name"].as_str().unwrap().to_string()
}

/// An Argo CD sync with prune: applies every document of the Git file as `argocd-controller`
/// (force) and deletes the Deployments an earlier sync applied that Git no longer declares.
/// Returns the Deployments this sync applied.
async fn git_sync(env: &Env, ns: &str, yaml: &str, before: &BTreeSet<String>) -> BTreeSet<String> {
    let mut now = BTreeSet::new();
    for doc in parse_docs(yaml) {
        if doc["kind"] == "Deployment" {
            now.insert(doc["metadata"]["name"].as_str().unwrap().to_string());
        }
        env.apply_as(ns, doc, ARGO).await;
    }
    let api: Api<Deployment> = Api::namespaced(env.client.clone(), ns);
    for gone in before.difference(&now) {
        api.delete(gone, &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("prune Deployment {gone}: {e}"));
    }
    now
}

/// What a sync must not change: the Deployment's generation, its ReplicaSets, its pods, the
/// Service's selector and endpoints.
#[derive(Debug, PartialEq)]
struct Running {
    generation: i64,
    replica_sets: Vec<String>,
    pods: Vec<String>,
    selector: BTreeMap<String, String>,
    endpoints: Vec<String>,
}

async fn running(env: &Env, ns: &str, deployment: &str) -> Running {
    let d = env
        .deployment(ns, deployment)
        .await
        .expect("the Deployment");
    let labels = d
        .spec
        .as_ref()
        .unwrap()
        .selector
        .match_labels
        .clone()
        .unwrap();
    let selector = labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut replica_sets: Vec<String> = Api::<ReplicaSet>::namespaced(env.client.clone(), ns)
        .list(&ListParams::default().labels(&selector))
        .await
        .unwrap()
        .items
        .iter()
        .map(|r| r.name_any())
        .collect();
    replica_sets.sort();
    let mut pods: Vec<String> = env
        .ready_pods(ns, &selector)
        .await
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    pods.sort();
    // The Service's endpoints: the ready pods its selector matches (this environment's
    // Endpoints objects stay empty, the API refuses loopback addresses in them).
    let service_selector = env.service_selector(ns, "squidex").await;
    let matching = service_selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut endpoints: Vec<String> = env
        .ready_pods(ns, &matching)
        .await
        .into_iter()
        .map(|(n, ip)| format!("{n}@{ip}"))
        .collect();
    endpoints.sort();
    Running {
        generation: d.metadata.generation.unwrap_or_default(),
        replica_sets,
        pods,
        selector: service_selector,
        endpoints,
    }
}

/// After a sync: nothing moved (a template change would have made a ReplicaSet within a
/// second or two, so this looks for a few seconds).
async fn assert_unchanged(env: &Env, ns: &str, deployment: &str, before: &Running) {
    assert!(
        !before.pods.is_empty() && !before.endpoints.is_empty(),
        "{before:?}"
    );
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = running(env, ns, deployment).await;
        assert_eq!(&now, before, "applying Git changed the running app");
    }
}

/// Runs `cutover git-patch PLAN -n NS ARGS...`; its stdout.
fn git_patch(ns: &str, plan: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["git-patch", plan, "-n", ns])
        .args(args)
        .output()
        .expect("run cutover git-patch");
    assert!(
        out.status.success(),
        "cutover git-patch {plan} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
