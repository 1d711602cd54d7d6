//! Packaging, proven against the real control plane: the Helm chart (linted and installed with
//! Helm's own library, helm-sdkpy, through tests/packaging/helm.py), the kustomize base (equal
//! to the chart's default render, server-side dry run), the example plans (valid for cutover
//! and for the API server, nothing pruned), the installed RBAC running a whole plan, and the
//! Argo CD health check (run in Lua 5.1 like Argo CD's gopher-lua).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use cutover::crd::{Phase, UpgradePlan};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Api;
use serde_json::{Value, json};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// Every non-empty document of a multi-document YAML stream, as JSON.
fn yaml_docs(text: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|d| {
            let v: serde_norway::Value = serde::Deserialize::deserialize(d).expect("valid YAML");
            serde_json::to_value(v).unwrap()
        })
        .filter(|v| !v.is_null())
        .collect()
}

// ---- tools: kubectl (from the dev env's PATH) and Helm's library (the dev env's venv) ------

fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn kubectl(args: &[&str]) -> String {
    let (ok, out, err) = run(Command::new("kubectl").args(args));
    assert!(ok, "kubectl {}: {err}{out}", args.join(" "));
    out
}

/// The venv `hack/dev-env install` makes; None (skip) when missing outside CI.
fn python() -> Option<PathBuf> {
    let home = std::env::var("HOME").unwrap_or_default();
    let py = std::env::var("CUTOVER_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(&home).join(".cache/cutover"))
        .join("venv/bin/python");
    if py.exists() {
        return Some(py);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true but {} is missing: run `hack/dev-env install`",
        py.display()
    );
    eprintln!("skipping: no {} (run `hack/dev-env install`)", py.display());
    None
}

fn helm(py: &Path, args: &[&str]) -> Value {
    let (ok, out, err) = run(Command::new(py)
        .arg(repo().join("tests/packaging/helm.py"))
        .args(args));
    assert!(ok, "helm.py {}: {err}{out}", args.join(" "));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("helm.py output {out:?}: {e}"))
}

/// A Helm release that is uninstalled when dropped, also when the test panics.
struct Release {
    py: PathBuf,
    name: String,
    ns: String,
    manifest: Vec<Value>,
    notes: String,
}

impl Release {
    fn install(py: &Path, name: &str, ns: &str, values: Value) -> Release {
        let chart = repo().join("charts/cutover");
        let out = helm(
            py,
            &[
                "install",
                name,
                chart.to_str().unwrap(),
                ns,
                &values.to_string(),
            ],
        );
        assert_eq!(out["status"], "deployed", "{out}");
        Release {
            py: py.to_path_buf(),
            name: name.into(),
            ns: ns.into(),
            manifest: yaml_docs(out["manifest"].as_str().unwrap()),
            notes: out["notes"].as_str().unwrap_or_default().into(),
        }
    }

    fn object(&self, kind: &str, name: &str) -> &Value {
        self.manifest
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("release {} renders no {kind}/{name}", self.name))
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        let _ = Command::new(&self.py)
            .arg(repo().join("tests/packaging/helm.py"))
            .args(["uninstall", &self.name, &self.ns])
            .stdout(Stdio::null())
            .status();
    }
}

/// Deletes test namespaces when dropped, also when the test panics. A plan abandoned by a
/// failed test has no operator left to run its finalizer, so it is removed first.
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let plans = Command::new("kubectl")
                .args(["get", "upgradeplans", "-n", ns, "-o", "name"])
                .output();
            for plan in plans
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
                .lines()
            {
                let _ = Command::new("kubectl")
                    .args([
                        "patch",
                        "-n",
                        ns,
                        plan,
                        "--type",
                        "merge",
                        "-p",
                        r#"{"metadata":{"finalizers":null}}"#,
                    ])
                    .output();
            }
            let _ = Command::new("kubectl")
                .args([
                    "delete",
                    "namespace",
                    ns,
                    "--wait=false",
                    "--ignore-not-found",
                ])
                .output();
        }
    }
}

/// helm-sdkpy's lint result: (severity, path) of each message at warning level or above
/// (its Go errors serialize without text, so the path is what there is to report).
fn lint_problems(py: &Path, chart: &Path) -> Vec<(u64, String)> {
    let out = helm(py, &["lint", chart.to_str().unwrap()]);
    out["Messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["Severity"].as_u64().unwrap_or(0) >= 2)
        .map(|m| {
            (
                m["Severity"].as_u64().unwrap(),
                m["Path"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// A copy of the chart with some values changed, to lint what only other values render.
fn chart_with_values(patch: Value) -> tempdir::Dir {
    let dir = tempdir::Dir::new("chart");
    copy_dir(&repo().join("charts/cutover"), dir.path());
    let path = dir.path().join("values.yaml");
    let mut values: Value =
        serde_norway::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    json_patch::merge(&mut values, &patch);
    std::fs::write(&path, serde_norway::to_string(&values).unwrap()).unwrap();
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

mod tempdir {
    use std::path::{Path, PathBuf};

    /// A directory under the target dir, removed when dropped.
    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new(prefix: &str) -> Dir {
            let p = Path::new(env!("CARGO_TARGET_TMPDIR")).join(super::unique(prefix));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A path to `to` relative to `from` (kustomize v2.0 refuses absolute bases).
fn relative(from: &Path, to: &Path) -> String {
    let up = from.components().count() - 1;
    format!(
        "{}{}",
        "../".repeat(up),
        to.to_str().unwrap().trim_start_matches('/')
    )
}

/// A kustomize overlay of manifests/ that moves everything into namespace `ns` the way
/// docs/operations.md tells users to.
fn overlay(ns: &str) -> tempdir::Dir {
    let dir = tempdir::Dir::new("overlay");
    let base = relative(dir.path(), &repo().join("manifests"));
    std::fs::write(
        dir.path().join("kustomization.yaml"),
        format!(
            "namespace: {ns}\nbases:\n- {base}\npatchesJson6902:\n- target: {{version: v1, kind: Namespace, name: cutover}}\n  path: namespace.yaml\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("namespace.yaml"),
        format!("- op: replace\n  path: /metadata/name\n  value: {ns}\n"),
    )
    .unwrap();
    dir
}

/// Helm's bookkeeping labels and the release namespace are the only differences allowed
/// between the chart's render and the kustomize base.
fn normalize(mut obj: Value, ns: &str) -> Value {
    if let Some(labels) = obj["metadata"]["labels"].as_object_mut() {
        labels.remove("helm.sh/chart");
        labels.remove("app.kubernetes.io/managed-by");
    }
    if obj["metadata"]["namespace"] == ns {
        obj["metadata"]["namespace"] = json!("cutover");
    }
    if let Some(subjects) = obj.get_mut("subjects").and_then(Value::as_array_mut) {
        for s in subjects {
            if s["namespace"] == ns {
                s["namespace"] = json!("cutover");
            }
        }
    }
    obj
}

fn by_kind_and_name(objs: impl IntoIterator<Item = Value>) -> BTreeMap<String, Value> {
    objs.into_iter()
        .map(|o| {
            (
                format!(
                    "{}/{}",
                    o["kind"].as_str().unwrap(),
                    o["metadata"]["name"].as_str().unwrap()
                ),
                o,
            )
        })
        .collect()
}

/// The first place where two objects differ, or None. Numbers compare by value (kustomize
/// writes `1000.0` as `1000`).
fn difference(a: &Value, b: &Value, path: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.keys()
                .chain(y.keys())
                .find_map(|k| match (x.get(k), y.get(k)) {
                    (Some(v), Some(w)) => difference(v, w, &format!("{path}.{k}")),
                    (v, w) => Some(format!("{path}.{k}: {v:?} vs {w:?}")),
                })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (v, w))| difference(v, w, &format!("{path}[{i}]"))),
        (Value::Number(x), Value::Number(y)) if x.as_f64() == y.as_f64() => None,
        _ if a == b => None,
        _ => Some(format!("{path}: {a} vs {b}")),
    }
}

/// Every field of `want` is in `got` with the same value: nothing was pruned or changed.
fn assert_subset(want: &Value, got: &Value, path: &str) {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, v) in w {
                let p = format!("{path}.{k}");
                let g = g.get(k).unwrap_or_else(|| {
                    panic!("{p} was pruned by the API server (not in the CRD schema?)")
                });
                assert_subset(v, g, &p);
            }
        }
        (Value::Array(w), Value::Array(g)) => {
            assert_eq!(w.len(), g.len(), "{path}: length changed");
            for (i, (w, g)) in w.iter().zip(g).enumerate() {
                assert_subset(w, g, &format!("{path}[{i}]"));
            }
        }
        _ => assert_eq!(want, got, "{path}"),
    }
}

// ---- the Argo CD health check ---------------------------------------------------------------

/// Runs docs/argocd/health.lua on an object, as Argo CD does: global `obj`, returns a table.
fn argocd_health(obj: &Value) -> (String, String) {
    use mlua::serde::SerializeOptions;
    use mlua::{Lua, LuaSerdeExt, Table};
    let lua = Lua::new();
    // JSON null means absent, as in Argo CD's conversion of unstructured objects.
    let opts = SerializeOptions::new()
        .serialize_none_to_null(false)
        .serialize_unit_to_null(false);
    lua.globals()
        .set("obj", lua.to_value_with(obj, opts).unwrap())
        .unwrap();
    let hs: Table = lua
        .load(read("docs/argocd/health.lua"))
        .set_name("health.lua")
        .eval()
        .unwrap_or_else(|e| panic!("health.lua failed on {obj}: {e}"));
    (hs.get("status").unwrap(), hs.get("message").unwrap())
}

fn plan_with_status(generation: i64, status: Value) -> Value {
    json!({"apiVersion": "cutover.dev/v1alpha1", "kind": "UpgradePlan",
           "metadata": {"name": "p", "namespace": "n", "generation": generation},
           "spec": {}, "status": status})
}

fn cond(type_: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({"type": type_, "status": status, "reason": reason, "message": message,
           "lastTransitionTime": "2026-01-01T00:00:00Z"})
}

#[test]
fn argocd_health_check_judges_sample_statuses() {
    let running = |phase: &str, conditions: Vec<Value>| {
        plan_with_status(
            2,
            json!({"phase": phase, "observedGeneration": 2, "message": format!("in {phase}"), "conditions": conditions}),
        )
    };
    let failure = json!({"phase": "Migrating", "reason": "MigrationTimedOut", "message": "gates did not pass"});
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            "no status",
            json!({"apiVersion": "cutover.dev/v1alpha1", "kind": "UpgradePlan", "metadata": {"name": "p", "generation": 1}, "spec": {}}),
            "Progressing",
            "Waiting for status",
        ),
        (
            "status without phase",
            plan_with_status(1, json!({})),
            "Progressing",
            "Waiting for status",
        ),
        (
            "null status",
            plan_with_status(1, Value::Null),
            "Progressing",
            "Waiting for status",
        ),
        (
            "spec change not yet observed",
            plan_with_status(3, json!({"phase": "Succeeded", "observedGeneration": 2})),
            "Progressing",
            "Waiting for cutover to observe generation 3",
        ),
        (
            "pending",
            running("Pending", vec![]),
            "Progressing",
            "in Pending",
        ),
        (
            "backing up",
            running(
                "BackingUp",
                vec![cond("Progressing", "True", "BackingUp", "x")],
            ),
            "Progressing",
            "in BackingUp",
        ),
        (
            "migrating",
            running(
                "Migrating",
                vec![cond("MigrationLockStale", "False", "LockMoved", "released")],
            ),
            "Progressing",
            "in Migrating",
        ),
        (
            "stale lock",
            running(
                "Migrating",
                vec![cond(
                    "MigrationLockStale",
                    "True",
                    "LockHeldByNoOne",
                    "release it with mongosh",
                )],
            ),
            "Degraded",
            "MigrationLockStale: release it with mongosh",
        ),
        (
            "awaiting promotion",
            running("AwaitingPromotion", vec![]),
            "Suspended",
            "in AwaitingPromotion",
        ),
        (
            "suspended",
            running(
                "Cloning",
                vec![cond(
                    "Progressing",
                    "False",
                    "Suspended",
                    "Suspended before DeployingGreen",
                )],
            ),
            "Suspended",
            "in Cloning",
        ),
        (
            "rollback refused",
            running(
                "CleaningUp",
                vec![cond(
                    "DataDiverged",
                    "True",
                    "WritesSinceLift",
                    "Rollback refused",
                )],
            ),
            "Degraded",
            "DataDiverged: Rollback refused",
        ),
        (
            "requested rollback running",
            running("RollingBack", vec![]),
            "Progressing",
            "in RollingBack",
        ),
        (
            "rollback after failure",
            plan_with_status(
                1,
                json!({"phase": "RollingBack", "observedGeneration": 1, "failure": failure}),
            ),
            "Degraded",
            "Rolling back after MigrationTimedOut: gates did not pass",
        ),
        (
            "failed",
            plan_with_status(
                1,
                json!({"phase": "Failed", "observedGeneration": 1, "message": "m", "failure": failure}),
            ),
            "Degraded",
            "MigrationTimedOut in Migrating: gates did not pass",
        ),
        (
            "failed without failure record",
            plan_with_status(1, json!({"phase": "Failed", "observedGeneration": 1})),
            "Degraded",
            "Failed",
        ),
        (
            "succeeded",
            running(
                "Succeeded",
                vec![cond("Ready", "True", "Succeeded", "done")],
            ),
            "Healthy",
            "in Succeeded",
        ),
        (
            "rehearsed",
            running("Rehearsed", vec![]),
            "Healthy",
            "in Rehearsed",
        ),
        (
            "rolled back on request",
            running("RolledBack", vec![]),
            "Healthy",
            "in RolledBack",
        ),
    ];
    for (what, obj, status, message) in cases {
        assert_eq!(
            argocd_health(&obj),
            (status.to_string(), message.to_string()),
            "{what}"
        );
    }
}

#[test]
fn argocd_doc_includes_the_tested_lua() {
    let doc = read("docs/argocd.md");
    let lua = read("docs/argocd/health.lua");
    let indented: String = lua
        .lines()
        .map(|l| {
            if l.is_empty() {
                "\n".to_string()
            } else {
                format!("      {l}\n")
            }
        })
        .collect();
    assert!(
        doc.contains(&indented),
        "docs/argocd.md must carry docs/argocd/health.lua verbatim (indented 6 spaces in the snippet)"
    );
}

// ---- files that must agree with each other ---------------------------------------------------

#[test]
fn crd_copies_are_the_generated_crd() {
    let generated = cutover::crd::crd_yaml();
    for copy in [
        "charts/cutover/crds/upgradeplan.yaml",
        "manifests/crd/upgradeplan.yaml",
    ] {
        assert!(
            read(copy) == generated,
            "{copy} differs from `cutover crd`: cargo run -- crd | tee crds/upgradeplan.yaml {copy} > /dev/null"
        );
    }
}

#[test]
fn versions_agree() {
    let chart: Value = serde_norway::from_str(&read("charts/cutover/Chart.yaml")).unwrap();
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        chart["appVersion"], version,
        "Chart.yaml appVersion is the crate version"
    );
    let base = read("manifests/deployment.yaml");
    assert!(
        base.contains(&format!("image: \"cutover:{version}\"")),
        "manifests/ image tag"
    );
    // The Dockerfile and hack/build-static build the same binary the same way.
    let dockerfile = read("Dockerfile");
    let script = read("hack/build-static");
    for needle in [
        "x86_64-unknown-linux-musl",
        "-C target-feature=+crt-static",
        "CARGO_PROFILE_RELEASE_STRIP=symbols",
        "--locked",
    ] {
        assert!(dockerfile.contains(needle), "Dockerfile lacks {needle}");
        assert!(script.contains(needle), "hack/build-static lacks {needle}");
    }
}

#[test]
fn example_plans_are_valid_for_cutover() {
    let dir = repo().join("manifests/examples");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        for doc in yaml_docs(&std::fs::read_to_string(&path).unwrap()) {
            let plan: UpgradePlan = serde_json::from_value(doc)
                .unwrap_or_else(|e| panic!("{}: not an UpgradePlan: {e}", path.display()));
            let name = plan.metadata.name.clone().unwrap();
            let errors = cutover::plan::validate(&plan.spec, &name);
            assert!(errors.is_empty(), "{}: {errors:?}", path.display());
            n += 1;
        }
    }
    assert_eq!(n, 3, "three example plans");
}

// ---- against the control plane -------------------------------------------------------------

#[tokio::test]
async fn example_plans_pass_server_side_dry_run_unpruned() {
    let Some(env) = env().await else { return };
    let ns = env.namespace("pkg-examples").await;
    let _cleanup = Namespaces(vec![ns.clone()]);
    for entry in std::fs::read_dir(repo().join("manifests/examples")).unwrap() {
        let path = entry.unwrap().path();
        let want = yaml_docs(&std::fs::read_to_string(&path).unwrap()).remove(0);
        let out = kubectl(&[
            "apply",
            "--dry-run=server",
            "-o",
            "json",
            "-n",
            &ns,
            "-f",
            path.to_str().unwrap(),
        ]);
        let got: Value = serde_json::from_str(&out).unwrap();
        assert_subset(
            &want["spec"],
            &got["spec"],
            &format!("{}: spec", path.display()),
        );
    }
    env.cleanup(&ns, &[]).await;
}

#[tokio::test]
async fn chart_lints_with_default_and_other_values() {
    let Some(py) = python() else { return };
    let chart = repo().join("charts/cutover");
    assert_eq!(lint_problems(&py, &chart), vec![], "default values");
    let other = chart_with_values(json!({
        "replicas": 2, "watchNamespaces": ["apps"],
        "rbac": {"namespaced": true},
        "metrics": {"serviceMonitor": {"enabled": true, "labels": {"release": "prometheus"}}},
        "image": {"repository": "registry.example.com/platform/cutover", "tag": "0.1.0-rc1"},
        "extraEnv": [{"name": "NO_COLOR", "value": "1"}]
    }));
    assert_eq!(
        lint_problems(&py, other.path()),
        vec![],
        "namespaced, HA, ServiceMonitor"
    );
    // The schema refuses what the binary cannot do: two watched namespaces.
    let two = chart_with_values(json!({"watchNamespaces": ["a", "b"]}));
    assert!(
        lint_problems(&py, two.path())
            .iter()
            .any(|(s, p)| *s == 3 && p == "values.yaml"),
        "values.schema.json must refuse two watchNamespaces"
    );
}

#[tokio::test]
async fn kustomize_base_is_the_charts_default_render_and_passes_dry_run() {
    let Some(env) = env().await else { return };
    let Some(py) = python() else { return };

    // The base, as kubectl 1.20's built-in kustomize builds it.
    let base = yaml_docs(&kubectl(&[
        "kustomize",
        repo().join("manifests").to_str().unwrap(),
    ]));
    let (crd, base): (Vec<_>, Vec<_>) = base
        .into_iter()
        .filter(|o| o["kind"] != "Namespace")
        .partition(|o| o["kind"] == "CustomResourceDefinition");
    let chart_crd = yaml_docs(&read("charts/cutover/crds/upgradeplan.yaml"));
    assert_eq!(
        difference(&Value::Array(crd), &Value::Array(chart_crd), "CRD"),
        None
    );

    // The chart with default values, release "cutover", installed for real.
    let ns = env.namespace("pkg-chart").await;
    let _cleanup = Namespaces(vec![ns.clone()]);
    let release = Release::install(&py, "cutover", &ns, json!({}));
    let chart = by_kind_and_name(release.manifest.iter().cloned().map(|o| normalize(o, &ns)));
    let base = by_kind_and_name(base);
    assert_eq!(
        chart.keys().collect::<Vec<_>>(),
        base.keys().collect::<Vec<_>>(),
        "same objects"
    );
    for (key, obj) in &chart {
        assert_eq!(
            difference(obj, &base[key], key),
            None,
            "chart vs manifests/"
        );
    }
    assert!(
        release
            .notes
            .contains("kubectl apply -n <app-namespace> -f plan.yaml")
    );
    assert!(release.notes.contains("all namespaces"));

    // What Helm created is really there, as rendered.
    let deployment = kubectl(&["get", "deployment", "cutover", "-n", &ns, "-o", "json"]);
    let deployment: Value = serde_json::from_str(&deployment).unwrap();
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"],
        true
    );
    assert_eq!(
        pod["containers"][0]["livenessProbe"]["httpGet"]["path"],
        "/healthz"
    );
    assert_eq!(
        pod["containers"][0]["readinessProbe"]["httpGet"]["path"],
        "/readyz"
    );
    kubectl(&["get", "clusterrole/cutover", "clusterrolebinding/cutover"]);
    drop(release);
    let (_, out, _) =
        run(Command::new("kubectl").args(["get", "clusterrole", "cutover", "--ignore-not-found"]));
    assert_eq!(out.trim(), "", "uninstall removes the ClusterRole");

    // Server-side dry run of the base, moved into this namespace by an overlay.
    let overlay = overlay(&ns);
    let out = kubectl(&[
        "apply",
        "--dry-run=server",
        "-k",
        overlay.path().to_str().unwrap(),
    ]);
    for obj in [
        format!("namespace/{ns}"),
        "customresourcedefinition.apiextensions.k8s.io/upgradeplans.cutover.dev".into(),
        "serviceaccount/cutover".into(),
        "clusterrole.rbac.authorization.k8s.io/cutover".into(),
        "clusterrolebinding.rbac.authorization.k8s.io/cutover".into(),
        "service/cutover-metrics".into(),
        "deployment.apps/cutover".into(),
        "role.rbac.authorization.k8s.io/cutover-lease".into(),
        "rolebinding.rbac.authorization.k8s.io/cutover-lease".into(),
    ] {
        assert!(
            out.contains(&format!("{obj} ")),
            "dry run lacks {obj}:\n{out}"
        );
    }
    env.cleanup(&ns, &[]).await;
}

/// Waits for Deployment `ns/name` to be available and returns its one ready pod.
async fn wait_available_pod(env: &Env, ns: &str, name: &str, timeout: Duration) -> Pod {
    let deployments = Api::<Deployment>::namespaced(env.client.clone(), ns);
    let pods = Api::<Pod>::namespaced(env.client.clone(), ns);
    let start = std::time::Instant::now();
    loop {
        let d = deployments.get(name).await.expect("get the Deployment");
        let available = d.status.as_ref().and_then(|s| s.available_replicas);
        if available == Some(1) {
            let selector = d.spec.unwrap().selector.match_labels.unwrap_or_default();
            let selector: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let lp = kube::api::ListParams::default().labels(&selector.join(","));
            let ready: Vec<Pod> = pods
                .list(&lp)
                .await
                .unwrap()
                .items
                .into_iter()
                .filter(|p| {
                    p.status
                        .iter()
                        .flat_map(|s| s.conditions.iter().flatten())
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                })
                .collect();
            if let [pod] = &ready[..] {
                return pod.clone();
            }
        }
        assert!(
            start.elapsed() < timeout,
            "Deployment {ns}/{name} not available after {timeout:?}: {:?}\n{}",
            d.status,
            pod_log_tails(ns, 20)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The installed chart runs the operator: in namespaced mode with leader election, its
/// Deployment's pod (the `cutover` image, run by podsim as the local binary, acting as the
/// pod's ServiceAccount with the chart's RBAC) becomes ready through its probes, completes a
/// plan, and serves metrics behind the chart's metrics Service.
#[tokio::test]
async fn installed_chart_runs_the_operator_which_completes_a_plan() {
    let Some(env) = env().await else { return };
    let Some(py) = python() else { return };
    let app = env.blue_app("pkg-plan", AppOptions::default()).await;
    let op_ns = env.namespace("pkg-op").await;
    // Declared before the release, so dropped after it: the finalizer is gone by then.
    let _cleanup = Namespaces(vec![app.ns.clone(), op_ns.clone()]);
    let release = Release::install(
        &py,
        "op",
        &op_ns,
        json!({"rbac": {"namespaced": true}, "watchNamespaces": [app.ns], "leaderElection": {"enabled": true}}),
    );
    assert!(release.notes.contains(&format!("in namespace {}", app.ns)));

    // Namespaced mode: the same rules as the ClusterRole, split into a Role and a CRD reader.
    let role = release.object("Role", "op-cutover");
    assert_eq!(role["metadata"]["namespace"], app.ns.as_str());
    let crd_reader = release.object("ClusterRole", "op-cutover-crd");
    let mut rules = role["rules"].as_array().unwrap().clone();
    rules.extend(crd_reader["rules"].as_array().unwrap().iter().cloned());
    let base_rbac = yaml_docs(&read("manifests/rbac.yaml"));
    assert_eq!(
        Value::Array(rules),
        base_rbac[0]["rules"],
        "namespaced rules = cluster rules"
    );
    release.object("Role", "op-cutover-lease");
    let container =
        &release.object("Deployment", "op-cutover")["spec"]["template"]["spec"]["containers"][0];
    let args = container["args"].to_string();
    assert!(args.contains(&format!("--namespace={}", app.ns)), "{args}");
    assert!(args.contains("--leader-election"), "{args}");

    // The Deployment becomes available: the pod's readiness probe (/readyz) passed.
    let pod = wait_available_pod(&env, &op_ns, "op-cutover", Duration::from_secs(90)).await;
    let pod_name = pod.metadata.name.clone().unwrap();
    let op = Operator::pod(&op_ns, &pod_name);
    env.apply(&app.ns, squidex_plan("pkg", &app, 2)).await;
    let plan = env
        .wait_phase(
            &op,
            &app.ns,
            "pkg",
            Phase::Succeeded,
            Duration::from_secs(180),
        )
        .await;
    let log = op.log();
    assert!(
        !log.contains("forbidden") && !log.contains("Forbidden"),
        "the chart's RBAC denied a call:\n{}",
        op.log_tail(40)
    );
    let lease = Api::<Lease>::namespaced(env.client.clone(), &op_ns)
        .get("op-cutover")
        .await
        .expect("the lease in the release namespace");
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some(pod_name.as_str()),
        "the pod (POD_NAME) is the lease holder"
    );
    // And Argo CD would call the finished plan Healthy.
    let live = serde_json::to_value(&plan).unwrap();
    assert_eq!(argocd_health(&live).0, "Healthy");

    // Scraped where the metrics Service points. Endpoints cannot hold this environment's
    // loopback pod IPs (API validation), so its selector and target port are resolved here as
    // the endpoints controller would: the pod it selects, the container port it names.
    let service = Api::<Service>::namespaced(env.client.clone(), &op_ns)
        .get("op-cutover-metrics")
        .await
        .expect("the metrics Service");
    let spec = service.spec.unwrap();
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let selector = spec.selector.unwrap_or_default();
    assert!(
        !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v)),
        "the metrics Service selects the operator pod: {selector:?} vs {labels:?}"
    );
    let target = match spec.ports.unwrap()[0].target_port.clone() {
        Some(IntOrString::String(name)) => name,
        other => panic!("metrics targetPort should name the container port: {other:?}"),
    };
    let pod_spec = pod.spec.as_ref().unwrap();
    let port = pod_spec.containers[0]
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some(target.as_str()))
        .expect("the named container port")
        .container_port;
    let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap();
    let (code, text) = http_get(&format!("{ip}:{port}"), "/metrics").await;
    assert_eq!(code, 200);
    let succeeded = metric(&text, "cutover_plans{phase=\"Succeeded\"}");
    assert!(succeeded >= Some(1.0), "plans by phase:\n{text}");
    let reconciles = metric(&text, "cutover_reconciles_total{result=\"ok\"}");
    assert!(reconciles >= Some(5.0), "reconciles counted:\n{text}");

    drop(release);
    env.cleanup(&op_ns, &[]).await;
    env.cleanup(
        &app.ns,
        &[
            app.db.clone(),
            app.content_db.clone(),
            app.clone_of(&app.db, "pkg"),
            app.clone_of(&app.content_db, "pkg"),
        ],
    )
    .await;
}
