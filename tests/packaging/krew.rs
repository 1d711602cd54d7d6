//! The krew manifest of `kubectl cutover` has the shape krew validates (its
//! `internal/index/validation`: apiVersion, kind, a safe name equal to the file's, a one-line
//! short description, a `v`-prefixed semantic version, platforms with a selector on `os`/`arch`
//! only, a `uri`, a 64-hex `sha256`, `bin` and `from`/`to` file operations), for linux/amd64,
//! at the crate's version, installing the binary as `kubectl-cutover`.

use serde_json::Value;

use crate::support::{read, yaml_docs};

#[test]
fn krew_manifest_has_krews_plugin_shape() {
    let docs = yaml_docs(&read("plugins/krew/cutover.yaml"));
    assert_eq!(docs.len(), 1, "one Plugin");
    let m = &docs[0];
    assert_eq!(
        m["apiVersion"],
        "krew.googlecontainertools.github.com/v1alpha2"
    );
    assert_eq!(m["kind"], "Plugin");
    let name = m["metadata"]["name"].as_str().unwrap();
    assert_eq!(
        name, "cutover",
        "named as the file, invoked as `kubectl cutover`"
    );
    assert!(
        name.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    );
    let spec = &m["spec"];
    let short = spec["shortDescription"].as_str().unwrap();
    assert!(
        !short.is_empty() && !short.contains(['\r', '\n']),
        "{short:?}"
    );
    assert_eq!(
        spec["version"].as_str(),
        Some(format!("v{}", env!("CARGO_PKG_VERSION")).as_str()),
        "spec.version is the crate's version with a v"
    );
    let platforms = spec["platforms"].as_array().expect("platforms");
    assert!(!platforms.is_empty());
    let mut linux_amd64 = false;
    for p in platforms {
        let uri = p["uri"].as_str().unwrap_or_default();
        assert!(
            uri.starts_with("https://") && uri.ends_with(".tar.gz"),
            "uri {uri:?}"
        );
        let sha = p["sha256"].as_str().unwrap_or_default();
        assert!(
            sha.len() == 64 && sha.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')),
            "sha256 {sha:?} must match ^[a-f0-9]{{64}}$"
        );
        assert_eq!(p["bin"], "kubectl-cutover");
        let files = p["files"].as_array().expect("files");
        assert!(!files.is_empty());
        for f in files {
            assert!(f["from"].as_str().is_some_and(|s| !s.is_empty()), "{f}");
            assert!(f["to"].as_str().is_some_and(|s| !s.is_empty()), "{f}");
        }
        assert!(
            files.iter().any(|f| f["to"] == "kubectl-cutover"),
            "the binary is installed under the name it answers to as a plugin"
        );
        let labels = p["selector"]["matchLabels"]
            .as_object()
            .expect("matchLabels");
        assert!(!labels.is_empty());
        for (k, v) in labels {
            assert!(k == "os" || k == "arch", "selector key {k}");
            assert!(v.is_string());
        }
        linux_amd64 |= labels.get("os") == Some(&Value::from("linux"))
            && labels.get("arch") == Some(&Value::from("amd64"));
    }
    assert!(linux_amd64, "a linux/amd64 platform");
}
