//! Tests of the builders, with one Squidex-like plan and old version.

mod deployment;
mod jobs;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::EnvVar;
use kube::ResourceExt;
use serde_json::json;

use crate::crd::{UpgradePlan, UpgradePlanSpec};
use crate::plan::{Targets, targets};

pub(super) fn plan(extra: serde_json::Value) -> UpgradePlan {
    let mut spec = json!({
        "app": {"deployment": "squidex", "service": "squidex"},
        "target": {"image": "squidex/squidex:7", "env": [{"name": "FEATURE", "value": "on"}]},
        "readOnly": {"env": {"name": "MODE__ISREADONLY", "value": "true"}},
        "database": {
            "connectionSecret": {"name": "mongo", "key": "uri"},
            "databases": [
                {"name": "Squidex", "env": ["STORE__MONGODB__DATABASE"], "uriEnv": ["STORE__MONGODB__CONFIGURATION"]},
                {"name": "SquidexContent", "env": ["STORE__MONGODB__CONTENTDATABASE"]}
            ]
        },
        "backup": {"volume": {"claimName": "backups"}},
        "migration": {"job": {"command": ["./upgrade_schema.sh"], "args": ["upgrade"],
                              "credentialsSecret": {"name": "migrator", "key": "uri", "env": "STORE__MONGODB__CONFIGURATION"}}}
    });
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
