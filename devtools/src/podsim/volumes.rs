//! Creates a pod's volume directories before its containers start (and writes the files of
//! configMap/secret volumes, so a Job can read mounted credentials), and removes the
//! pod-scoped ones when the pod is gone, as the kubelet does with emptyDirs.

use std::{collections::BTreeMap, path::Path};

use k8s_openapi::api::core::v1::{KeyToPath, Pod};

use super::{
    env::Sources,
    mounts::{MountTable, is_pod_scoped, volume_key},
};

/// Prepares every volume of `pod` under `root` (`DIR/volumes/<ns>`) and the subPath
/// directories of `mounts`.
pub fn prepare(
    root: &Path,
    pod: &Pod,
    sources: &Sources,
    mounts: &MountTable,
) -> std::io::Result<()> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let dir = root.join(volume_key(name, v));
        std::fs::create_dir_all(&dir)?;
        if let Some(cm) = &v.config_map
            && let Some(data) = sources.config_maps.get(&cm.name)
        {
            write_files(&dir, data, cm.items.as_deref())?;
        }
        if let Some(s) = &v.secret
            && let Some(data) = s.secret_name.as_ref().and_then(|n| sources.secrets.get(n))
        {
            write_files(&dir, data, s.items.as_deref())?;
        }
    }
    // A subPath may name a file written above; only missing ones become directories.
    for dir in mounts.local_dirs() {
        if !dir.exists() {
            std::fs::create_dir_all(dir)?;
        }
    }
    Ok(())
}

fn write_files(
    dir: &Path,
    data: &BTreeMap<String, String>,
    items: Option<&[KeyToPath]>,
) -> std::io::Result<()> {
    let files: Vec<(&str, &str)> = match items {
        Some(items) => items
            .iter()
            .filter_map(|i| data.get(&i.key).map(|v| (i.path.as_str(), v.as_str())))
            .collect(),
        None => data.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
    };
    for (rel, content) in files {
        // Keys are validated by the apiserver; refuse anything escaping the volume anyway.
        if rel.split('/').any(|c| c == "..") || rel.starts_with('/') {
            continue;
        }
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, content)?;
    }
    Ok(())
}

/// Removes the pod-scoped volume directories of the pod `name` (emptyDir, configMap, …);
/// PVC directories stay, like the claim's data would.
pub fn remove_pod_scoped(root: &Path, pod: &Pod) {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let key = volume_key(name, v);
        if is_pod_scoped(&key) {
            let _ = std::fs::remove_dir_all(root.join(key));
        }
    }
}
