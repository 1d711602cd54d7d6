//! Fetches the Secrets and ConfigMaps a pod refers to (env, envFrom, volumes), once per
//! container start, so env resolution and volume materialisation stay pure.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::{Api, Client};

use super::env::Sources;

/// Names of the Secrets and ConfigMaps `pod` refers to.
pub fn referenced(pod: &Pod) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut secrets = BTreeSet::new();
    let mut config_maps = BTreeSet::new();
    let Some(spec) = &pod.spec else {
        return (secrets, config_maps);
    };
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        for from in c.env_from.iter().flatten() {
            if let Some(r) = &from.secret_ref {
                secrets.insert(r.name.clone());
            }
            if let Some(r) = &from.config_map_ref {
                config_maps.insert(r.name.clone());
            }
        }
        for var in c.env.iter().flatten() {
            let Some(from) = &var.value_from else {
                continue;
            };
            if let Some(r) = &from.secret_key_ref {
                secrets.insert(r.name.clone());
            }
            if let Some(r) = &from.config_map_key_ref {
                config_maps.insert(r.name.clone());
            }
        }
    }
    for v in spec.volumes.iter().flatten() {
        if let Some(name) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            secrets.insert(name);
        }
        if let Some(cm) = &v.config_map {
            config_maps.insert(cm.name.clone());
        }
        for p in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(s) = &p.secret {
                secrets.insert(s.name.clone());
            }
            if let Some(cm) = &p.config_map {
                config_maps.insert(cm.name.clone());
            }
        }
    }
    (secrets, config_maps)
}

/// Reads the referenced objects; a missing object is simply absent from the result.
pub async fn fetch(client: &Client, pod: &Pod) -> anyhow::Result<Sources> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let (secret_names, cm_names) = referenced(pod);
    let mut out = Sources::default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    for name in secret_names {
        if let Some(s) = secrets.get_opt(&name).await? {
            let data: BTreeMap<String, String> = s
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                .chain(s.string_data.unwrap_or_default())
                .collect();
            out.secrets.insert(name, data);
        }
    }
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    for name in cm_names {
        if let Some(cm) = cms.get_opt(&name).await? {
            out.config_maps.insert(name, cm.data.unwrap_or_default());
        }
    }
    Ok(out)
}
