//! The Git change after a plan, and the rewrite of the user's manifests, on the objects
//! cutover's own builder makes.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use serde_json::json;

use super::*;
use crate::crd::{Phase, UpgradePlan, UpgradePlanStatus};
use crate::fixtures::SquidexPlan;
use crate::k8s::build::{GreenInputs, green, with_env};

const PLAN: &str = "squidex-7";
const NEW: &str = "squidex-squidex-7";

/// The user's Git file: a ConfigMap, the Deployment and the Service, with comments.
const GIT: &str = "\
# The app, as Git holds it.
apiVersion: v1
kind: ConfigMap
metadata:
  name: squidex-config   # kept byte for byte
data:
  LOG_LEVEL: info
---
# The Squidex Deployment.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: squidex
  labels:
    app: squidex
spec:
  replicas: 2
  selector:
    matchLabels:
      app: squidex
  template:
    metadata:
      labels:
        app: squidex
    spec:
      containers:
      - name: squidex
        image: squidex/squidex:6.0.0
        ports:
        - containerPort: 8080
        env:
        - name: STORE__MONGODB__CONFIGURATION
          valueFrom:
            secretKeyRef:
              name: mongo
              key: uri
        - name: STORE__MONGODB__DATABASE
          value: Squidex
        - name: STORE__MONGODB__CONTENTDATABASE
          value: SquidexContent
        - name: URLS__BASEURL
          value: https://cms.example.com
      - name: sidecar
        image: busybox
---
apiVersion: v1
kind: Service
metadata:
  name: squidex
spec:
  selector:
    app: squidex
  ports:
  - port: 80
    targetPort: 8080
";

fn plan_in(phase: Phase, spec: serde_json::Value) -> UpgradePlan {
    let mut p: UpgradePlan = serde_json::from_value(json!({
        "apiVersion": "cutover.dev/v1alpha1", "kind": "UpgradePlan",
        "metadata": {"name": PLAN, "namespace": "cms", "uid": "uid-7"},
        "spec": spec,
    }))
    .unwrap();
    p.status = Some(UpgradePlanStatus {
        phase,
        ..Default::default()
    });
    p
}

fn spec() -> serde_json::Value {
    let mut s = SquidexPlan::unit().spec_json();
    s["app"]["container"] = json!("squidex");
    s
}

fn deployment_from_git() -> Deployment {
    let doc = GIT.split("---\n").nth(1).unwrap();
    let v: serde_json::Value = serde_norway::from_str(doc).unwrap();
    serde_json::from_value(v).unwrap()
}

/// The new version as it runs after `Succeeded`: built by cutover, read-only lifted.
fn live_green(p: &UpgradePlan, blue: &Deployment, uris: &BTreeMap<String, String>) -> Deployment {
    let targets = crate::plan::targets(&p.spec, PLAN, None);
    let (g, _) = green(&GreenInputs {
        plan: p,
        targets: &targets,
        blue,
        container: "squidex",
        replicas: 2,
        uri_values: uris,
        service_selector: &BTreeMap::from([("app".into(), "squidex".into())]),
    })
    .unwrap();
    with_env(g, "squidex", &p.spec.read_only.env, false)
}

fn service(track: &str) -> Service {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "squidex"},
        "spec": {"selector": {"app": "squidex", "cutover.dev/track": track}}
    }))
    .unwrap()
}

/// The blue Deployment as cutover left it: read-only and tracked.
fn blue_after(p: &UpgradePlan) -> Deployment {
    let mut b = with_env(
        deployment_from_git(),
        "squidex",
        &p.spec.read_only.env,
        true,
    );
    let t = b.spec.as_mut().unwrap().template.metadata.as_mut().unwrap();
    t.labels
        .as_mut()
        .unwrap()
        .insert("cutover.dev/track".into(), "squidex".into());
    b
}

fn converged() -> (UpgradePlan, Deployment, GitChange) {
    let p = plan_in(Phase::Succeeded, spec());
    let g = live_green(&p, &deployment_from_git(), &BTreeMap::new());
    let c = change(&p, Some(&g), Some(&service(NEW)), Some(&blue_after(&p))).unwrap();
    (p, g, c)
}

fn yaml_docs(s: &str) -> Vec<serde_json::Value> {
    s.split("\n---\n")
        .map(|d| serde_norway::from_str::<serde_json::Value>(d).unwrap())
        .collect()
}

#[test]
fn not_available_while_the_plan_runs() {
    for phase in [Phase::Pending, Phase::Migrating, Phase::CleaningUp] {
        let p = plan_in(phase, spec());
        let err = change(&p, None, Some(&service("squidex")), None).unwrap_err();
        assert_eq!(
            err,
            GitError::NotFinished {
                plan: PLAN.into(),
                phase
            }
        );
        assert!(
            err.to_string()
                .contains("kubectl get upgradeplan squidex-7 -w")
        );
    }
}

#[test]
fn nothing_to_change_when_traffic_stayed_on_the_old_version() {
    for phase in [Phase::RolledBack, Phase::Failed] {
        let p = plan_in(phase, spec());
        let c = change(&p, None, Some(&service("squidex")), None).unwrap();
        assert!(matches!(c, GitChange::Nothing { .. }), "{c:?}");
        let text = render_patch(&c);
        assert!(text.contains("nothing to change in Git"), "{text}");
        assert!(
            text.contains("traffic is on the old version squidex"),
            "{text}"
        );
        assert_eq!(rewrite(GIT, &c).unwrap(), GIT, "rewrite returns its input");
    }
    let rehearsal = plan_in(Phase::Rehearsed, spec());
    assert!(matches!(
        change(&rehearsal, None, None, None),
        Ok(GitChange::Nothing { .. })
    ));
}

#[test]
fn a_rolled_back_plan_with_traffic_on_the_new_version_is_refused() {
    let p = plan_in(Phase::RolledBack, spec());
    let err = change(&p, None, Some(&service(NEW)), None).unwrap_err();
    assert!(matches!(err, GitError::TrafficElsewhere { .. }), "{err}");
}

#[test]
fn a_succeeded_plan_declares_the_new_deployment_as_it_runs() {
    let (_, g, c) = converged();
    let GitChange::Converge(c) = c else {
        panic!("{c:?}")
    };
    assert_eq!(c.old_deployment, "squidex");
    assert_eq!(c.new_deployment, NEW);
    assert_eq!(c.container, "squidex");
    assert_eq!(c.image, "squidex/squidex:7.0.0");
    assert_eq!(
        c.selector,
        BTreeMap::from([
            ("app".into(), "squidex".into()),
            ("cutover.dev/track".into(), NEW.into())
        ])
    );
    assert_eq!(c.template_labels, c.selector);
    assert_eq!(
        c.service_selector
            .get("cutover.dev/track")
            .map(String::as_str),
        Some(NEW)
    );
    let env: BTreeMap<&str, Option<&str>> = c
        .env
        .iter()
        .map(|e| {
            (
                e.name.as_str(),
                e.entry.as_ref().and_then(|v| v.value.as_deref()),
            )
        })
        .collect();
    assert_eq!(
        env,
        BTreeMap::from([
            ("STORE__MONGODB__DATABASE", Some("Squidex-squidex-7")),
            (
                "STORE__MONGODB__CONTENTDATABASE",
                Some("SquidexContent-squidex-7")
            ),
            // Lifted: the new version runs without it, so Git must not declare it.
            ("MODE__ISREADONLY", None),
        ])
    );
    assert_eq!(
        c.annotations
            .get("cutover.dev/base-deployment")
            .map(String::as_str),
        Some("squidex")
    );
    assert!(c.cutover_secrets.is_empty());
    assert!(g.metadata.name.as_deref() == Some(NEW));
}

#[test]
fn the_patch_names_every_edit_and_parses() {
    let (_, _, c) = converged();
    let text = render_patch(&c);
    assert!(
        text.contains("Rename Deployment squidex to squidex-squidex-7"),
        "{text}"
    );
    assert!(text.contains("remove these variables"), "{text}");
    assert!(text.contains("MODE__ISREADONLY"), "{text}");
    let docs: Vec<serde_json::Value> = text
        .split("---\n")
        .skip(1)
        .map(|d| serde_norway::from_str(d).unwrap())
        .collect();
    assert_eq!(docs.len(), 2, "{text}");
    assert_eq!(docs[0]["metadata"]["name"], NEW);
    assert_eq!(
        docs[0]["spec"]["template"]["spec"]["containers"][0]["image"],
        "squidex/squidex:7.0.0"
    );
    assert_eq!(docs[1]["spec"]["selector"]["cutover.dev/track"], json!(NEW));
}

#[test]
fn the_rewrite_changes_only_what_cutover_changed() {
    let (_, g, c) = converged();
    let out = rewrite(GIT, &c).unwrap();
    // The ConfigMap, the comments heading each document and the separators are kept.
    assert!(out.starts_with(GIT.split("---\n").next().unwrap()), "{out}");
    assert!(out.contains("# The Squidex Deployment.\n"), "{out}");
    let docs = yaml_docs(&out);
    assert_eq!(docs.len(), 3);
    let d = &docs[1];
    assert_eq!(d["metadata"]["name"], NEW);
    assert_eq!(d["metadata"]["labels"], json!({"app": "squidex"}), "kept");
    assert_eq!(d["spec"]["replicas"], 2, "kept");
    assert_eq!(
        d["spec"]["selector"],
        json!({"matchLabels": {"app": "squidex", "cutover.dev/track": NEW}})
    );
    let container = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "squidex/squidex:7.0.0");
    assert_eq!(container["ports"], json!([{"containerPort": 8080}]), "kept");
    // In the order the new version runs them (cutover appended the rewired ones): a
    // client-side apply of another order reorders the live list, a new pod template, a rollout.
    assert_eq!(
        container["env"],
        json!([
            {"name": "STORE__MONGODB__CONFIGURATION", "valueFrom": {"secretKeyRef": {"name": "mongo", "key": "uri"}}},
            {"name": "URLS__BASEURL", "value": "https://cms.example.com"},
            {"name": "STORE__MONGODB__DATABASE", "value": "Squidex-squidex-7"},
            {"name": "STORE__MONGODB__CONTENTDATABASE", "value": "SquidexContent-squidex-7"}
        ])
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][1],
        json!({"name": "sidecar", "image": "busybox"})
    );
    assert_eq!(
        docs[2]["spec"],
        json!({"selector": {"app": "squidex", "cutover.dev/track": NEW}, "ports": [{"port": 80, "targetPort": 8080}]})
    );
    // What the rewritten manifest declares of the app container is what the new version runs.
    let declared: Deployment = serde_json::from_value(d.clone()).unwrap();
    let pick = |d: &Deployment| {
        let s = d.spec.clone().unwrap();
        let c = s.template.spec.unwrap().containers[0].clone();
        (
            s.selector,
            s.template.metadata.unwrap().labels,
            c.image,
            c.env,
        )
    };
    assert_eq!(pick(&declared), pick(&g));
    // Idempotent: a second run (the file now names the new Deployment) changes nothing.
    assert_eq!(rewrite(&out, &c).unwrap(), out);
}

#[test]
fn a_file_without_the_app_is_refused_by_rewrite_and_kept_by_rewrite_manifests() {
    let (_, _, c) = converged();
    let other = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n";
    assert!(matches!(
        rewrite(other, &c),
        Err(RewriteError::NothingToRewrite { .. })
    ));
    let r = rewrite_manifests(other, &c).unwrap();
    assert_eq!(
        (r.text.as_str(), r.deployment, r.service),
        (other, false, false)
    );
    assert!(matches!(
        rewrite("kind: [", &c),
        Err(RewriteError::Parse { index: 0, .. })
    ));
}

#[test]
fn connection_strings_are_never_printed_in_the_patch() {
    // One connection string in a Secret (rewired into cutover's env Secret), one plain.
    let mut s = spec();
    s["database"]["databases"][0]["uriEnv"] = json!(["STORE__MONGODB__CONFIGURATION", "PLAIN_URI"]);
    let p = plan_in(Phase::Succeeded, s);
    let mut blue = deployment_from_git();
    let c0 = &mut blue
        .spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .containers[0];
    c0.env
        .as_mut()
        .unwrap()
        .push(k8s_openapi::api::core::v1::EnvVar {
            name: "PLAIN_URI".into(),
            value: Some("mongodb://app:s3cret@db:27017/Squidex?authSource=admin".into()),
            value_from: None,
        });
    let uris = BTreeMap::from([(
        "STORE__MONGODB__CONFIGURATION".to_string(),
        "mongodb://app:hidden-pw@db/Squidex".to_string(),
    )]);
    let g = live_green(&p, &blue, &uris);
    let c = change(&p, Some(&g), Some(&service(NEW)), Some(&blue)).unwrap();
    let text = render_patch(&c);
    assert!(
        !text.contains("s3cret") && !text.contains("hidden-pw"),
        "{text}"
    );
    assert!(
        text.contains("mongodb://app:***@db:27017/Squidex-squidex-7?authSource=admin"),
        "{text}"
    );
    assert!(
        text.contains("Secret squidex-squidex-7-env was created by cutover"),
        "{text}"
    );
    let docs: Vec<serde_json::Value> = text
        .split("---\n")
        .skip(1)
        .map(|d| serde_norway::from_str(d).unwrap())
        .collect();
    let env = &docs[0]["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(
        env.as_array().unwrap().contains(&json!({
            "name": "STORE__MONGODB__CONFIGURATION",
            "valueFrom": {"secretKeyRef": {"name": "squidex-squidex-7-env", "key": "STORE__MONGODB__CONFIGURATION"}}
        })),
        "{env}"
    );
    // The rewrite writes what runs (the user's file already held the plain value).
    let mut git = GIT.to_string();
    git = git.replace(
        "        - name: URLS__BASEURL",
        "        - name: PLAIN_URI\n          value: mongodb://app:s3cret@db:27017/Squidex?authSource=admin\n        - name: URLS__BASEURL",
    );
    let out = rewrite(&git, &c).unwrap();
    assert!(out.contains("mongodb://app:s3cret@db:27017/Squidex-squidex-7?authSource=admin"));
    assert!(!out.contains("hidden-pw"));
}

#[test]
fn a_superseded_plan_is_refused() {
    let p = plan_in(Phase::Succeeded, spec());
    let g = live_green(&p, &deployment_from_git(), &BTreeMap::new());
    let err = change(&p, Some(&g), Some(&service("squidex-squidex-8")), None).unwrap_err();
    assert!(
        err.to_string().contains("run git-patch for the plan"),
        "{err}"
    );
    let err = change(&p, None, Some(&service(NEW)), None).unwrap_err();
    assert!(
        matches!(err, GitError::NewDeploymentMissing { .. }),
        "{err}"
    );
}

#[test]
fn passwords_are_redacted_only_in_connection_strings() {
    assert_eq!(
        redact_password("mongodb://u:p@h1,h2/db?x=1"),
        "mongodb://u:***@h1,h2/db?x=1"
    );
    assert_eq!(
        redact_password("mongodb+srv://u:p@cluster/db"),
        "mongodb+srv://u:***@cluster/db"
    );
    assert_eq!(redact_password("mongodb://h/db"), "mongodb://h/db");
    assert_eq!(redact_password("plain:value@x"), "plain:value@x");
}

#[test]
fn status_points_at_git_patch_after_the_plan() {
    let (p, _, _) = converged();
    let text = crate::cli::render_status(&p);
    assert!(
        text.contains("cutover git-patch squidex-7 -n cms"),
        "{text}"
    );
    let running = plan_in(Phase::Migrating, spec());
    assert!(!crate::cli::render_status(&running).contains("git-patch"));
}

#[test]
fn a_variable_the_new_version_runs_without_leaves_the_manifest() {
    let (_, _, c) = converged();
    // Git declared the read-only switch off; the new version runs without the variable.
    let git = GIT.replace(
        "        - name: URLS__BASEURL",
        "        - name: MODE__ISREADONLY\n          value: \"false\"\n        - name: URLS__BASEURL",
    );
    let out = rewrite(&git, &c).unwrap();
    assert!(!out.contains("MODE__ISREADONLY"), "{out}");
    // A container without `env` in Git gets the rewired variables.
    let bare = GIT.split("        env:\n").next().unwrap().to_string()
        + "      - name: sidecar\n        image: busybox\n";
    let docs = yaml_docs(&rewrite(&bare, &c).unwrap());
    let env = &docs[1]["spec"]["template"]["spec"]["containers"][0]["env"];
    assert_eq!(
        env,
        &json!([
            {"name": "STORE__MONGODB__DATABASE", "value": "Squidex-squidex-7"},
            {"name": "STORE__MONGODB__CONTENTDATABASE", "value": "SquidexContent-squidex-7"}
        ])
    );
}
