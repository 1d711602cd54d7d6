//! The Helm chart: it lints with any values, and installed it runs the operator, which
//! completes a plan and serves metrics behind the chart's Service.

use std::path::Path;
use std::time::Duration;

use cutover::crd::Phase;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Api;
use serde_json::{Value, json};

use crate::argocd::argocd_health;
use crate::common::*;
use crate::support::*;

#[tokio::test]
async fn chart_lints_with_default_and_other_values() {
    let Some(py) = python() else { return };
    let chart = repo().join("charts/cutover");
    assert_eq!(lint_problems(&py, &chart), vec![], "default values");
    let other = chart_with_values(json!({
        "replicas": 2, "watchNamespaces": ["apps"],
        "rbac": {"namespaced": true},
        "metrics": {"serviceMonitor": {"enabled": true, "labels": {"release": "prometheus"}}},
        "prometheusRule": {"enabled": true, "labels": {"release": "prometheus"}},
        "grafanaDashboard": {"enabled": true, "namespace": "monitoring"},
        "image": {"repository": "registry.example.com/platform/cutover", "tag": "0.1.0-rc1"},
        "extraEnv": [{"name": "NO_COLOR", "value": "1"}]
    }));
    assert_eq!(
        lint_problems(&py, other.path()),
        vec![],
        "namespaced, HA, ServiceMonitor, PrometheusRule, dashboard"
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
    let plan = squidex_plan("pkg", &app, 2);
    let timeout = Duration::from_secs(180);
    let plan = env
        .apply_until(&op, &app.ns, plan, Phase::Succeeded, timeout)
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
