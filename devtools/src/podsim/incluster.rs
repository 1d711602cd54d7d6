//! A container's way to the API server, as its pod's ServiceAccount.
//!
//! In a cluster, a client library finds the API server from `KUBERNETES_SERVICE_HOST`/`PORT`
//! and authenticates with the ServiceAccount token the admission plugin mounts at [`SA_DIR`].
//! That path is fixed in every client, and podsim rewrites mount paths instead of mounting
//! (see `mounts`), so a process here could not read it. For a container with that mount,
//! podsim writes a kubeconfig naming the same three things (the API server, the mounted
//! token file, the mounted CA) and sets `KUBECONFIG`, which kube-rs and client-go read before
//! trying in-cluster config. The process then acts with exactly the pod's RBAC, as in a pod;
//! podsim's own admin `KUBECONFIG` is never passed on (see `process::inherited`).

use std::path::{Path, PathBuf};

use super::mounts::MountTable;

/// Where the ServiceAccount admission plugin mounts the token, CA and namespace.
pub const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The API server as podsim reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiServer {
    pub host: String,
    pub port: u16,
}

impl ApiServer {
    pub fn from_uri(uri: &hyper::Uri) -> Option<Self> {
        let host = uri.host()?.trim_matches(['[', ']']).to_owned();
        let port = uri.port_u16().unwrap_or(443);
        Some(Self { host, port })
    }

    fn url(&self) -> String {
        if self.host.contains(':') {
            format!("https://[{}]:{}", self.host, self.port)
        } else {
            format!("https://{}:{}", self.host, self.port)
        }
    }
}

/// A container's API access: the kubeconfig file to write and the env to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub kubeconfig: PathBuf,
    pub contents: String,
    pub env: Vec<(String, String)>,
}

/// `None` when the container has no ServiceAccount token mounted (automount off), like a pod
/// without credentials.
pub fn access(
    api: &ApiServer,
    mounts: &MountTable,
    namespace: &str,
    kubeconfig: PathBuf,
) -> Option<Access> {
    let dir = mounts.map_path(SA_DIR)?;
    let contents = kubeconfig_yaml(api, &dir, namespace);
    let env = vec![
        (
            "KUBECONFIG".to_owned(),
            kubeconfig.to_string_lossy().into_owned(),
        ),
        ("KUBERNETES_SERVICE_HOST".to_owned(), api.host.clone()),
        ("KUBERNETES_SERVICE_PORT".to_owned(), api.port.to_string()),
    ];
    Some(Access {
        kubeconfig,
        contents,
        env,
    })
}

/// Files, not inline data: the token is read from the volume (and re-read by clients that
/// reload it), never copied into another file.
fn kubeconfig_yaml(api: &ApiServer, sa_dir: &Path, namespace: &str) -> String {
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: in-cluster\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\nusers:\n- name: service-account\n  user:\n    tokenFile: {token}\ncontexts:\n- name: in-cluster\n  context: {{cluster: in-cluster, user: service-account, namespace: {ns}}}\ncurrent-context: in-cluster\n",
        server = quote(&api.url()),
        ca = quote(&sa_dir.join("ca.crt").to_string_lossy()),
        token = quote(&sa_dir.join("token").to_string_lossy()),
        ns = quote(namespace),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, Volume};
    use serde_json::json;

    fn mounts(with_token: bool) -> MountTable {
        let volumes: Vec<Volume> = serde_json::from_value(json!([
            {"name": "op-token-x1", "secret": {"secretName": "op-token-x1"}}
        ]))
        .unwrap();
        let mut c: Container = serde_json::from_value(json!({"name": "c"})).unwrap();
        if with_token {
            c = serde_json::from_value(json!({"name": "c", "volumeMounts": [
                {"name": "op-token-x1", "mountPath": SA_DIR, "readOnly": true}]}))
            .unwrap();
        }
        MountTable::new("p1", &volumes, &c, Path::new("/s/volumes/ns"))
    }

    #[test]
    fn a_mounted_token_becomes_a_kubeconfig_of_its_files() {
        let api = ApiServer::from_uri(&"https://127.0.0.1:6443/".parse().unwrap()).unwrap();
        let a = access(&api, &mounts(true), "ops", "/s/p1.c.kubeconfig".into()).unwrap();
        let doc: serde_json::Value = serde_norway::from_str(&a.contents).unwrap();
        let cluster = &doc["clusters"][0]["cluster"];
        assert_eq!(cluster["server"], "https://127.0.0.1:6443");
        assert_eq!(
            cluster["certificate-authority"],
            "/s/volumes/ns/secret-p1-op-token-x1/ca.crt"
        );
        assert_eq!(
            doc["users"][0]["user"]["tokenFile"],
            "/s/volumes/ns/secret-p1-op-token-x1/token"
        );
        assert_eq!(doc["contexts"][0]["context"]["namespace"], "ops");
        assert!(
            a.env
                .contains(&("KUBECONFIG".into(), "/s/p1.c.kubeconfig".into()))
        );
        assert!(
            a.env
                .contains(&("KUBERNETES_SERVICE_PORT".into(), "6443".into()))
        );
    }

    #[test]
    fn no_token_mount_no_access() {
        let api = ApiServer::from_uri(&"https://127.0.0.1:6443".parse().unwrap()).unwrap();
        assert_eq!(access(&api, &mounts(false), "ops", "/k".into()), None);
    }
}
