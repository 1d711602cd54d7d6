//! Where a pod's `volumeMounts` live on this machine, and how container paths are mapped to
//! them.
//!
//! Why rewriting and not `unshare --mount` + bind mounts (which does work here as root): a
//! bind mount must be placed on the *host's* path, so a Job mounting `/work` or `/tmp` would
//! hide this workspace, podsim's state dir and the `mongodump` shims for the process, and a
//! mount point like `/backup` would have to be created in the host's `/`. Rewriting needs no
//! privilege, leaves the host untouched, and covers how our Jobs pass paths: in `command`,
//! `args`, env values and `workingDir` (including inside `sh -c '…'` strings). Its limit:
//! a path assembled at run time from pieces (`"/back"+"up"`) or read from a file is not seen.
//! The container's termination message file (`/dev/termination-log`) is mapped the same way,
//! to a per-container file (see `termination`), so a Job never writes the host's `/dev`.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Volume};

/// The directory name under `DIR/volumes/<ns>/` that backs `volume` in pod `pod`. PVCs are
/// keyed by claim so every pod of the namespace using the claim shares the data (like RWX);
/// pod-scoped volumes carry the pod name so they die with it.
pub fn volume_key(pod: &str, volume: &Volume) -> String {
    let v = &volume.name;
    let key = if let Some(pvc) = &volume.persistent_volume_claim {
        format!("pvc-{}", pvc.claim_name)
    } else if volume.empty_dir.is_some() {
        format!("emptydir-{pod}-{v}")
    } else if let Some(h) = &volume.host_path {
        // Never the real host path: a Job must not write into this machine's directories.
        format!("hostpath-{}", h.path.trim_matches('/'))
    } else if volume.config_map.is_some() {
        format!("configmap-{pod}-{v}")
    } else if volume.secret.is_some() {
        format!("secret-{pod}-{v}")
    } else if volume.downward_api.is_some() {
        format!("downwardapi-{pod}-{v}")
    } else if volume.projected.is_some() {
        format!("projected-{pod}-{v}")
    } else {
        format!("volume-{pod}-{v}")
    };
    sanitize(&key)
}

/// True for volume keys that belong to a single pod (removed when the pod goes away).
pub fn is_pod_scoped(key: &str) -> bool {
    !key.starts_with("pvc-") && !key.starts_with("hostpath-")
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Container path → local path, for one container.
#[derive(Debug, Clone, Default)]
pub struct MountTable {
    /// Longest container path first, so nested mounts win over their parents.
    entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    path: String,
    local: PathBuf,
    /// A single file (the termination message file), not a directory.
    file: bool,
}

impl MountTable {
    /// Builds the table for `container`; `volumes_root` is `DIR/volumes/<ns>`. Mounts whose
    /// volume is not declared, and a mount of `/` (cannot be rewritten), are skipped.
    pub fn new(pod: &str, volumes: &[Volume], container: &Container, volumes_root: &Path) -> Self {
        let mut entries = Vec::new();
        for m in container.volume_mounts.iter().flatten() {
            let Some(volume) = volumes.iter().find(|v| v.name == m.name) else {
                continue;
            };
            let path = m.mount_path.trim_end_matches('/');
            if path.is_empty() || !path.starts_with('/') {
                continue;
            }
            let mut local = volumes_root.join(volume_key(pod, volume));
            if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
                local = local.join(sub);
            }
            entries.push(Entry {
                path: path.to_owned(),
                local,
                file: false,
            });
        }
        let mut table = Self { entries };
        table.sort();
        table
    }

    /// Adds a file the runtime mounts into the container by itself (the kubelet does so for
    /// `terminationMessagePath`): its path is rewritten like a mount. A relative path or `/`
    /// cannot be rewritten and is ignored.
    pub fn with_file(mut self, container_path: &str, local: PathBuf) -> Self {
        if container_path.starts_with('/') && container_path.len() > 1 {
            self.entries.push(Entry {
                path: container_path.to_owned(),
                local,
                file: true,
            });
            self.sort();
        }
        self
    }

    fn sort(&mut self) {
        self.entries
            .sort_by_key(|e| std::cmp::Reverse(e.path.len()));
    }

    /// The local directories (to create before the process starts); files are not listed.
    pub fn local_dirs(&self) -> impl Iterator<Item = &Path> {
        self.entries
            .iter()
            .filter(|e| !e.file)
            .map(|e| e.local.as_path())
    }

    /// Maps one absolute container directory (a `workingDir`); `None` when it is under no
    /// mounted directory.
    pub fn map_path(&self, path: &str) -> Option<PathBuf> {
        self.entries.iter().filter(|e| !e.file).find_map(|e| {
            let (mount, local) = (&e.path, &e.local);
            let rest = path.strip_prefix(mount.as_str())?;
            if rest.is_empty() {
                Some(local.clone())
            } else {
                rest.strip_prefix('/').map(|r| local.join(r))
            }
        })
    }

    /// Rewrites every occurrence of a mount path in `s` that stands on path boundaries:
    /// not preceded by a path character (so `mongodb://h/backup` or `$(D)/backup` stay),
    /// except for a shell default (`${F:-/dev/termination-log}`, also `-`, `=`, `+`, `?`
    /// with or without `:`), and followed by `/`, the end, or a non-path character (so
    /// `/backups` stays).
    pub fn rewrite(&self, s: &str) -> String {
        if self.entries.is_empty() {
            return s.to_owned();
        }
        let mut out = String::with_capacity(s.len());
        let mut i = 0;
        'scan: while i < s.len() {
            let starts_path = s.as_bytes()[i] == b'/'
                && (s[..i]
                    .chars()
                    .next_back()
                    .is_none_or(|c| !(is_path_char(c) || c == '/' || c == ')' || c == '}'))
                    || ends_with_shell_default(&s[..i]));
            if starts_path {
                for e in &self.entries {
                    if let Some(after) = s[i..].strip_prefix(e.path.as_str())
                        && after.chars().next().is_none_or(|c| !is_path_char(c))
                    {
                        out.push_str(&e.local.to_string_lossy());
                        i += e.path.len();
                        continue 'scan;
                    }
                }
            }
            let c = s[i..].chars().next().unwrap_or_default();
            out.push(c);
            i += c.len_utf8();
        }
        out
    }
}

/// Characters that continue a path component.
fn is_path_char(c: char) -> bool {
    c.is_alphanumeric() || "._-~+@%".contains(c)
}

/// True when `before` ends with the operator of a shell parameter expansion whose word
/// follows: `${NAME:-`, `${NAME-`, `${NAME:=`, `${NAME+`, `${NAME:?` … (the `-` or `+` would
/// otherwise read as part of a path).
fn ends_with_shell_default(before: &str) -> bool {
    let Some(rest) = before.strip_suffix(['-', '=', '+', '?']) else {
        return false;
    };
    let rest = rest.strip_suffix(':').unwrap_or(rest);
    let head = rest.trim_end_matches(|c: char| c.is_ascii_alphanumeric() || c == '_');
    head.len() < rest.len() && head.ends_with("${")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table() -> MountTable {
        let volumes: Vec<Volume> = serde_json::from_value(json!([
            {"name": "backup", "persistentVolumeClaim": {"claimName": "cutover-backups"}},
            {"name": "scratch", "emptyDir": {}},
            {"name": "cfg", "configMap": {"name": "c"}},
        ]))
        .unwrap();
        let container: Container = serde_json::from_value(json!({"name": "c", "volumeMounts": [
            {"name": "backup", "mountPath": "/backup/"},
            {"name": "scratch", "mountPath": "/backup/tmp"},
            {"name": "cfg", "mountPath": "/etc/app", "subPath": "conf.d"},
        ]}))
        .unwrap();
        MountTable::new(
            "job-x-abc",
            &volumes,
            &container,
            Path::new("/s/volumes/ns"),
        )
    }

    #[test]
    fn volume_keys() {
        let v = |j| serde_json::from_value::<Volume>(j).unwrap();
        assert_eq!(
            volume_key(
                "p",
                &v(json!({"name": "d", "persistentVolumeClaim": {"claimName": "c"}}))
            ),
            "pvc-c"
        );
        assert_eq!(
            volume_key("p", &v(json!({"name": "d", "emptyDir": {}}))),
            "emptydir-p-d"
        );
        assert_eq!(
            volume_key(
                "p",
                &v(json!({"name": "d", "hostPath": {"path": "/var/x y"}}))
            ),
            "hostpath-var_x_y"
        );
        assert!(!is_pod_scoped("pvc-c"));
        assert!(is_pod_scoped("emptydir-p-d"));
    }

    #[test]
    fn rewrites_paths_in_commands() {
        let t = table();
        assert_eq!(
            t.rewrite("mongodump --archive=/backup/plan-x/dump.archive.gz --gzip --uri=mongodb://h:1/backup"),
            "mongodump --archive=/s/volumes/ns/pvc-cutover-backups/plan-x/dump.archive.gz --gzip --uri=mongodb://h:1/backup"
        );
        assert_eq!(
            t.rewrite("mongorestore --archive='/backup/a.gz' --nsFrom 'Squidex.*'; ls /backup"),
            "mongorestore --archive='/s/volumes/ns/pvc-cutover-backups/a.gz' --nsFrom 'Squidex.*'; ls /s/volumes/ns/pvc-cutover-backups"
        );
        // Nested mounts win; subPath is appended.
        assert_eq!(
            t.rewrite("/backup/tmp/x:/etc/app/a.conf"),
            "/s/volumes/ns/emptydir-job-x-abc-scratch/x:/s/volumes/ns/configmap-job-x-abc-cfg/conf.d/a.conf"
        );
    }

    #[test]
    fn leaves_non_boundary_matches_alone() {
        let t = table();
        for s in [
            "/backups/x",
            "/backup.gz",
            "/data/backup/x",
            "$(DIR)/backup",
            "${DIR}/backup",
            "x/backup",
            "/etc/application",
        ] {
            assert_eq!(t.rewrite(s), s);
        }
        assert_eq!(
            t.rewrite("ünï /backup"),
            "ünï /s/volumes/ns/pvc-cutover-backups"
        );
    }

    #[test]
    fn rewrites_the_termination_message_file() {
        let t = table().with_file(
            "/dev/termination-log",
            PathBuf::from("/s/pods/ns/p.c.termination-log"),
        );
        assert_eq!(
            t.rewrite(r#"echo "{\"ok\":1}" > /dev/termination-log"#),
            r#"echo "{\"ok\":1}" > /s/pods/ns/p.c.termination-log"#
        );
        assert_eq!(
            t.rewrite(
                "echo x >/dev/termination-log; cat /dev/termination-log.bak /dev/termination-logs"
            ),
            "echo x >/s/pods/ns/p.c.termination-log; cat /dev/termination-log.bak /dev/termination-logs"
        );
        // A file is not a directory to create, nor a working directory.
        assert_eq!(t.local_dirs().count(), 3);
        assert_eq!(t.map_path("/dev/termination-log"), None);
        // Relative paths and `/` cannot be rewritten.
        assert_eq!(
            MountTable::default()
                .with_file("termination-log", PathBuf::from("/x"))
                .rewrite("termination-log"),
            "termination-log"
        );
        assert_eq!(
            MountTable::default()
                .with_file("/", PathBuf::from("/x"))
                .rewrite("/"),
            "/"
        );
    }

    #[test]
    fn rewrites_shell_defaults() {
        let t = table().with_file(
            "/dev/termination-log",
            PathBuf::from("/s/pods/ns/p.c.termination-log"),
        );
        for op in [":-", "-", ":=", "=", ":+", "+", ":?", "?"] {
            assert_eq!(
                t.rewrite(&format!(
                    r#"echo r > "${{RESULT_FILE{op}/dev/termination-log}}""#
                )),
                format!(r#"echo r > "${{RESULT_FILE{op}/s/pods/ns/p.c.termination-log}}""#),
                "{op}"
            );
        }
        assert_eq!(
            t.rewrite("${D:-/backup}/x"),
            "${D:-/s/volumes/ns/pvc-cutover-backups}/x"
        );
        // Not a parameter expansion: stays.
        for s in [
            "a-/backup",
            "x=-/backup",
            "${D}-/backup",
            "$D:-/backup",
            "${:-/backup}",
        ] {
            assert_eq!(t.rewrite(s), s);
        }
    }

    #[test]
    fn maps_working_dirs() {
        let t = table();
        assert_eq!(
            t.map_path("/backup"),
            Some(PathBuf::from("/s/volumes/ns/pvc-cutover-backups"))
        );
        assert_eq!(
            t.map_path("/backup/tmp/a"),
            Some(PathBuf::from("/s/volumes/ns/emptydir-job-x-abc-scratch/a"))
        );
        assert_eq!(t.map_path("/backupx"), None);
        assert_eq!(t.map_path("/"), None);
    }
}
