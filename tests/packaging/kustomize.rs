//! The kustomize base: the chart's default render, accepted by the API server; and the
//! example plans, accepted without a field pruned.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::common::*;
use crate::support::*;

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
