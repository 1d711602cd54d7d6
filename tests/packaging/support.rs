//! Files of the repository, and the tools the packaging tests drive: kubectl (from the dev
//! env's PATH) and Helm's library (the dev env's venv).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// Every non-empty document of a multi-document YAML stream, as JSON.
pub fn yaml_docs(text: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|d| {
            let v: serde_norway::Value = serde::Deserialize::deserialize(d).expect("valid YAML");
            serde_json::to_value(v).unwrap()
        })
        .filter(|v| !v.is_null())
        .collect()
}

pub fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn kubectl(args: &[&str]) -> String {
    let (ok, out, err) = run(Command::new("kubectl").args(args));
    assert!(ok, "kubectl {}: {err}{out}", args.join(" "));
    out
}

/// The venv `hack/dev-env install` makes; None (skip) when missing outside CI.
pub fn python() -> Option<PathBuf> {
    let home = std::env::var("HOME").unwrap_or_default();
    let py = std::env::var("CUTOVER_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(&home).join(".cache/cutover"))
        .join("venv/bin/python");
    if py.exists() {
        return Some(py);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true but {} is missing: run `hack/dev-env install`",
        py.display()
    );
    eprintln!("skipping: no {} (run `hack/dev-env install`)", py.display());
    None
}

pub fn helm(py: &Path, args: &[&str]) -> Value {
    let (ok, out, err) = run(Command::new(py)
        .arg(repo().join("tests/packaging/helm.py"))
        .args(args));
    assert!(ok, "helm.py {}: {err}{out}", args.join(" "));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("helm.py output {out:?}: {e}"))
}

/// A Helm release that is uninstalled when dropped, also when the test panics.
pub struct Release {
    py: PathBuf,
    name: String,
    ns: String,
    pub manifest: Vec<Value>,
    pub notes: String,
}

impl Release {
    pub fn install(py: &Path, name: &str, ns: &str, values: Value) -> Release {
        let chart = repo().join("charts/cutover");
        let out = helm(
            py,
            &[
                "install",
                name,
                chart.to_str().unwrap(),
                ns,
                &values.to_string(),
            ],
        );
        assert_eq!(out["status"], "deployed", "{out}");
        Release {
            py: py.to_path_buf(),
            name: name.into(),
            ns: ns.into(),
            manifest: yaml_docs(out["manifest"].as_str().unwrap()),
            notes: out["notes"].as_str().unwrap_or_default().into(),
        }
    }

    pub fn object(&self, kind: &str, name: &str) -> &Value {
        self.manifest
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("release {} renders no {kind}/{name}", self.name))
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        let _ = Command::new(&self.py)
            .arg(repo().join("tests/packaging/helm.py"))
            .args(["uninstall", &self.name, &self.ns])
            .stdout(Stdio::null())
            .status();
    }
}

/// Deletes test namespaces when dropped, also when the test panics. A plan abandoned by a
/// failed test has no operator left to run its finalizer, so it is removed first.
pub struct Namespaces(pub Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let plans = Command::new("kubectl")
                .args(["get", "upgradeplans", "-n", ns, "-o", "name"])
                .output();
            for plan in plans
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
                .lines()
            {
                let _ = Command::new("kubectl")
                    .args([
                        "patch",
                        "-n",
                        ns,
                        plan,
                        "--type",
                        "merge",
                        "-p",
                        r#"{"metadata":{"finalizers":null}}"#,
                    ])
                    .output();
            }
            let _ = Command::new("kubectl")
                .args([
                    "delete",
                    "namespace",
                    ns,
                    "--wait=false",
                    "--ignore-not-found",
                ])
                .output();
        }
    }
}

pub mod tempdir {
    use std::path::{Path, PathBuf};

    /// A directory under the target dir, removed when dropped.
    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new(prefix: &str) -> Dir {
            let p = Path::new(env!("CARGO_TARGET_TMPDIR")).join(crate::common::unique(prefix));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
