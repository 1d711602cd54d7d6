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

/// The strategic-merge patch cutover makes to the old version: the track label on its pod
/// template and the read-only variable, set while `enabled`, deleted by name otherwise. A merge
/// patch and not a server-side apply: the old version may be a Deployment a previous plan
/// created by server-side apply under cutover's own field manager, where an apply of just these
/// fields would remove every other one (selector, image, ...); a merge by name touches nothing else.
pub fn blue_read_only_patch(
    blue_name: &str,
    container: &str,
    read_only: &EnvVarSpec,
    enabled: bool,
) -> serde_json::Value {
    let var = if enabled {
        json!({"name": read_only.name, "value": read_only.value})
    } else {
        json!({"name": read_only.name, "$patch": "delete"})
    };
    json!({
        "spec": {"template": {
            "metadata": {"labels": {TRACK_LABEL: blue_name}},
            "spec": {"containers": [{"name": container, "env": [var]}]}
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
