//! The application's own Deployments: which container is the app, the patch cutover owns on
//! the old version, and edits of the new one.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::EnvVar;
use kube::ResourceExt;
use serde_json::json;

use super::BuildError;
use crate::crd::EnvVarSpec;
use crate::plan::names::TRACK_LABEL;

/// The application container of a Deployment: the one named in the plan, or the only one.
pub fn app_container(deployment: &Deployment, wanted: Option<&str>) -> Result<String, BuildError> {
    let name = deployment.name_any();
    let containers = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|p| p.containers.as_slice())
        .unwrap_or_default();
    let have = containers
        .iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    match (wanted, containers) {
        (_, []) => Err(BuildError::NoContainers(name)),
        (Some(w), cs) => cs
            .iter()
            .find(|c| c.name == w)
            .map(|c| c.name.clone())
            .ok_or(BuildError::NoSuchContainer {
                deployment: name,
                container: w.into(),
                have,
            }),
        (None, [one]) => Ok(one.name.clone()),
        (None, cs) => Err(BuildError::AmbiguousContainer {
            deployment: name,
            count: cs.len(),
            have,
        }),
    }
}

/// The server-side-apply body cutover owns on the old version: the track label on its pod
/// template and, while `read_only`, the read-only variable. Applying it without the variable
/// removes just that variable; everything else stays with the Deployment's own managers.
pub fn blue_patch(
    blue_name: &str,
    container: &str,
    read_only: Option<&EnvVarSpec>,
) -> serde_json::Value {
    let env: Vec<serde_json::Value> = read_only
        .map(|e| json!({"name": e.name, "value": e.value}))
        .into_iter()
        .collect();
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": blue_name},
        "spec": {"template": {
            "metadata": {"labels": {TRACK_LABEL: blue_name}},
            "spec": {"containers": [{"name": container, "env": env}]}
        }}
    })
}

/// Sets (or removes) a plain env var on a container of an owned Deployment.
pub fn with_env(mut d: Deployment, container: &str, var: &EnvVarSpec, enabled: bool) -> Deployment {
    if let Some(c) = d
        .spec
        .as_mut()
        .and_then(|s| s.template.spec.as_mut())
        .and_then(|p| p.containers.iter_mut().find(|c| c.name == container))
    {
        let env = c.env.get_or_insert_with(Vec::new);
        env.retain(|e| e.name != var.name);
        if enabled {
            env.push(EnvVar {
                name: var.name.clone(),
                value: Some(var.value.clone()),
                value_from: None,
            });
        }
    }
    d
}

/// An object read back from the API, cleaned so it can be server-side applied again.
pub fn for_reapply(mut d: Deployment) -> Deployment {
    d.metadata.managed_fields = None;
    d.metadata.resource_version = None;
    d.metadata.uid = None;
    d.metadata.creation_timestamp = None;
    d.metadata.generation = None;
    d.status = None;
    d
}
