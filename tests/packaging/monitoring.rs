//! The chart's monitoring: the alerting rules (charts/cutover/files/rules.yaml, unit-tested
//! with promtool in hack/test) and the Grafana dashboard use only metrics the operator
//! exposes, and the chart renders them, behind their flags, into a PrometheusRule and a
//! dashboard ConfigMap carrying exactly those files.

use std::collections::BTreeSet;

use cutover::crd::{Timestamp, UpgradePlan, UpgradePlanStatus};
use cutover::metrics::{ErrorLabel, Metrics};
use serde_json::{Value, json};

use crate::common::*;
use crate::monitored::{sample_names, used_metric_names};
use crate::support::*;

/// A plan with every status field a per-plan gauge reads.
fn full_plan() -> UpgradePlan {
    let mut plan = cutover::fixtures::SquidexPlan::unit().object("up");
    plan.metadata.namespace = Some("apps".into());
    let status: UpgradePlanStatus = serde_json::from_value(json!({
        "phase": "Cloning",
        "readOnlySince": "2026-01-01T00:00:00Z",
        "readOnlyLiftedAt": "2026-01-01T00:01:00Z",
        "conditions": [{"type": "ReadOnly", "status": "True", "reason": "R", "message": "m",
                        "lastTransitionTime": "2026-01-01T00:00:00Z"}],
        "prediction": {"readOnlySeconds": 40.0, "rehearsal": "r", "at": "2026-01-01T00:00:00Z"},
        "progress": {"documentsDone": 1, "documentsTotal": 2, "since": "2026-01-01T00:00:00Z",
                     "rate": 1.0, "eta": "2026-01-01T00:02:00Z", "summary": "50%"},
        "backup": {"bytes": 4096},
        "phases": [{"name": "BackingUp", "startedAt": "2026-01-01T00:00:00Z",
                    "finishedAt": "2026-01-01T00:00:10Z"}],
        "failure": {"phase": "Cloning", "reason": "CloneVerificationFailed", "message": "m"}
    }))
    .unwrap();
    plan.status = Some(status);
    plan
}

#[test]
fn rules_and_dashboard_use_only_metrics_the_operator_exposes() {
    let m = Metrics::default();
    let plan = full_plan();
    m.transition(None, plan.status.as_ref().unwrap());
    m.reconciled(
        0.1,
        Some(ErrorLabel {
            step: "observe",
            cause: None,
        }),
    );
    let text = m.render([&plan], Timestamp::from_millis(1_767_225_630_000));
    let exposed = sample_names(&text);
    let used = used_metric_names();
    assert!(used.len() >= 15, "names found in the files: {used:?}");
    let unknown: Vec<_> = used.iter().filter(|(n, _)| !exposed.contains(n)).collect();
    assert!(
        unknown.is_empty(),
        "used but never exposed: {unknown:?}\nexposed: {exposed:?}"
    );
}

#[test]
fn the_dashboard_is_a_grafana_dashboard_whose_panels_all_query() {
    let dash: Value = serde_json::from_str(&read("charts/cutover/dashboards/cutover.json"))
        .expect("dashboards/cutover.json is JSON");
    assert_eq!(dash["uid"], "cutover");
    let panels = dash["panels"].as_array().unwrap();
    let ids: BTreeSet<_> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), panels.len(), "panel ids are unique");
    let mut titles = BTreeSet::new();
    for p in panels.iter().filter(|p| p["type"] != "row") {
        let title = p["title"].as_str().unwrap();
        titles.insert(title);
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title} has no query");
        for t in targets {
            assert!(!t["expr"].as_str().unwrap().is_empty(), "{title}");
        }
    }
    // What issue #14 asks the dashboard to show.
    for title in [
        "Plans by phase",
        "Read-only now vs prediction",
        "Phase duration p90",
        "Copy throughput",
        "Copy ETA",
        "Backup size per plan",
        "Reconcile errors by label",
    ] {
        assert!(titles.contains(title), "no panel {title:?}: {titles:?}");
    }
}

/// Stand-ins for the Prometheus Operator's CRDs (any object), so the API server accepts the
/// chart's ServiceMonitor and PrometheusRule.
fn monitoring_crds() -> String {
    let items: Vec<Value> = ["ServiceMonitor", "PrometheusRule"]
        .iter()
        .map(|kind| {
            let plural = format!("{}s", kind.to_lowercase());
            json!({
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {"name": format!("{plural}.monitoring.coreos.com")},
                "spec": {
                    "group": "monitoring.coreos.com",
                    "scope": "Namespaced",
                    "names": {"kind": kind, "plural": plural, "singular": kind.to_lowercase(),
                              "listKind": format!("{kind}List")},
                    "versions": [{"name": "v1", "served": true, "storage": true,
                                  "schema": {"openAPIV3Schema": {"type": "object",
                                             "x-kubernetes-preserve-unknown-fields": true}}}]
                }
            })
        })
        .collect();
    json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string()
}

/// With every monitoring flag on, the installed chart holds a PrometheusRule with the rule
/// groups of files/rules.yaml (the operator's job selector from values), a ConfigMap with the
/// dashboard for Grafana's sidecar, and a ServiceMonitor that keeps the per-plan labels.
#[tokio::test]
async fn chart_with_monitoring_flags_renders_the_rules_and_the_dashboard() {
    let Some(env) = env().await else { return };
    let Some(py) = python() else { return };
    let dir = tempdir::Dir::new("monitoring-crds");
    let crds = dir.path().join("crds.json");
    std::fs::write(&crds, monitoring_crds()).unwrap();
    kubectl(&["apply", "-f", crds.to_str().unwrap()]);
    kubectl(&[
        "wait",
        "--for=condition=established",
        "--timeout=60s",
        "crd/servicemonitors.monitoring.coreos.com",
        "crd/prometheusrules.monitoring.coreos.com",
    ]);
    let ns = env.namespace("pkg-monitoring").await;
    let _cleanup = Namespaces(vec![ns.clone()]);
    let release = Release::install(
        &py,
        "mon",
        &ns,
        json!({
            "replicas": 0,
            "metrics": {"serviceMonitor": {"enabled": true}},
            "prometheusRule": {"enabled": true, "labels": {"release": "prometheus"},
                               "operatorJob": "mon-cutover-metrics"},
            "grafanaDashboard": {"enabled": true, "annotations": {"grafana_folder": "Operators"}}
        }),
    );

    let rule = release.object("PrometheusRule", "mon-cutover");
    assert_eq!(rule["metadata"]["labels"]["release"], "prometheus");
    let mut want = yaml_docs(&read("charts/cutover/files/rules.yaml")).remove(0);
    for r in want["groups"][0]["rules"].as_array_mut().unwrap() {
        if let Some(expr) = r["expr"].as_str() {
            r["expr"] = expr
                .replace("job=~\".*cutover.*\"", "job=~\"mon-cutover-metrics\"")
                .into();
        }
    }
    assert_eq!(rule["spec"]["groups"], want["groups"]);
    assert!(
        rule.to_string()
            .contains("absent(up{job=~\\\"mon-cutover-metrics\\\"} == 1)"),
        "{rule}"
    );

    let cm = release.object("ConfigMap", "mon-cutover-dashboard");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(cm["metadata"]["annotations"]["grafana_folder"], "Operators");
    let shipped: Value =
        serde_json::from_str(cm["data"]["cutover.json"].as_str().unwrap()).unwrap();
    let file: Value =
        serde_json::from_str(&read("charts/cutover/dashboards/cutover.json")).unwrap();
    assert_eq!(shipped, file);

    let sm = release.object("ServiceMonitor", "mon-cutover");
    assert_eq!(sm["spec"]["endpoints"][0]["honorLabels"], true);

    // What Helm created is really there.
    kubectl(&[
        "get",
        "-n",
        &ns,
        "prometheusrule/mon-cutover",
        "configmap/mon-cutover-dashboard",
    ]);
    drop(release);
    env.cleanup(&ns, &[]).await;
}
