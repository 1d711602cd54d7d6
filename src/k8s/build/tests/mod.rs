//! Tests of the builders, with one Squidex-like plan and old version.

mod deployment;
mod jobs;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::EnvVar;
use kube::ResourceExt;
use serde_json::json;

use crate::crd::{UpgradePlan, UpgradePlanSpec};
use crate::fixtures::SquidexPlan;
use crate::plan::{Targets, targets};

/// The shared Squidex plan with what the builders have to handle: a target variable, a
/// connection string held in a Secret (`uriEnv`), and the migration Job gate (with its own
/// credentials) instead of the migration document; no cleanup.
fn base_spec() -> serde_json::Value {
    let mut spec = SquidexPlan {
        target_image: "squidex/squidex:7".into(),
        ..SquidexPlan::unit()
    }
    .spec_json();
    spec["target"]["env"] = json!([{"name": "FEATURE", "value": "on"}]);
    spec["database"]["databases"][0]["uriEnv"] = json!(["STORE__MONGODB__CONFIGURATION"]);
    spec["migration"] = json!({"job": {
        "command": ["./upgrade_schema.sh"], "args": ["upgrade"],
        "credentialsSecret": {"name": "migrator", "key": "uri", "env": "STORE__MONGODB__CONFIGURATION"}
    }});
    spec.as_object_mut()
        .expect("a spec is an object")
        .remove("cleanup");
    spec
}

/// The plan named `up7` in namespace `apps`, with `extra`'s top-level spec keys replacing the
/// base's.
pub(super) fn plan(extra: serde_json::Value) -> UpgradePlan {
    let mut spec = base_spec();
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    let spec: UpgradePlanSpec = serde_json::from_value(spec).unwrap();
    let mut p = UpgradePlan::new("up7", spec);
    p.metadata.namespace = Some("apps".into());
    p.metadata.uid = Some("uid-1".into());
    p
}

/// The names the builders are given, as the executor resolves them for `p`.
pub(super) fn targets_of(p: &UpgradePlan) -> Targets {
    targets(&p.spec, &p.name_any(), p.status.as_ref())
}

pub(super) fn blue() -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "squidex", "namespace": "apps", "labels": {"app": "squidex"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "squidex"}},
            "template": {
                "metadata": {"labels": {"app": "squidex", "tier": "web"}},
                "spec": {"containers": [
                    {"name": "squidex", "image": "squidex/squidex:6", "env": [
                        {"name": "STORE__MONGODB__CONFIGURATION", "valueFrom": {"secretKeyRef": {"name": "mongo", "key": "uri"}}},
                        {"name": "STORE__MONGODB__DATABASE", "value": "Squidex"}
                    ]},
                    {"name": "sidecar", "image": "envoy:1"}
                ]}
            }
        }
    }))
    .unwrap()
}

pub(super) fn env_of(d: &Deployment, container: &str) -> Vec<EnvVar> {
    d.spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers
        .iter()
        .find(|c| c.name == container)
        .unwrap()
        .env
        .clone()
        .unwrap()
}

pub(super) fn value<'a>(env: &'a [EnvVar], name: &str) -> Option<&'a str> {
    env.iter()
        .find(|e| e.name == name)
        .and_then(|e| e.value.as_deref())
}
