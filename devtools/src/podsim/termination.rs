//! The container termination message, made the way the kubelet makes it.
//!
//! The kubelet mounts a fresh, empty file at the container's `terminationMessagePath`
//! (default `/dev/termination-log`) for every container start, and after the exit reads at
//! most its last 4096 bytes into `state.terminated.message`. With
//! `terminationMessagePolicy: FallbackToLogsOnError` it uses the tail of the container's log
//! (80 lines / 2048 bytes) instead, but only when the file is empty *and* the container
//! failed; with the default policy `File` it uses the file only. The status manager then
//! keeps the first 12 KiB / (containers + initContainers) bytes of each message.
//!
//! podsim runs processes on the host, so the file is a per-container local file
//! (`DIR/pods/<ns>/<pod>.<container>.termination-log`) and the container path is rewritten
//! to it like a volume mount (`mounts::MountTable::with_file`): a Job writing
//! `/dev/termination-log` never touches the host's `/dev`.

use std::{
    io::{Read, Seek, SeekFrom},
    path::{Path, PathBuf},
};

use k8s_openapi::api::core::v1::{Container, Pod};

/// The apiserver's default `terminationMessagePath`.
pub const DEFAULT_PATH: &str = "/dev/termination-log";
/// The kubelet's `MaxContainerTerminationMessageLength`: bytes read from the end of the file.
pub const MAX_FILE_BYTES: u64 = 4 * 1024;
/// The kubelet's `MaxPodTerminationMessageLogLength`, shared evenly by a pod's containers.
pub const MAX_POD_BYTES: usize = 12 * 1024;

/// `terminationMessagePolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Only the file (the default).
    File,
    /// The file; the log tail when the file is empty and the container failed.
    FallbackToLogsOnError,
}

impl Policy {
    pub fn of(container: &Container) -> Self {
        match container.termination_message_policy.as_deref() {
            Some("FallbackToLogsOnError") => Self::FallbackToLogsOnError,
            _ => Self::File,
        }
    }
}

/// What reading the termination message file gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileRead {
    /// No file (nothing was mounted, or the container removed it).
    Missing,
    /// The last `MAX_FILE_BYTES` bytes (possibly empty).
    Data(String),
    /// Any other error, reported as the message like the kubelet does.
    Error(String),
}

/// One container's termination message file.
#[derive(Debug, Clone)]
pub struct TerminationLog {
    /// The path inside the container (`terminationMessagePath`).
    pub container_path: String,
    /// The local file standing in for it.
    pub local: PathBuf,
    pub policy: Policy,
}

impl TerminationLog {
    pub fn new(container: &Container, local: PathBuf) -> Self {
        let container_path = container
            .termination_message_path
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| DEFAULT_PATH.to_owned());
        Self {
            container_path,
            local,
            policy: Policy::of(container),
        }
    }

    /// Creates the file empty, as the kubelet provides a new one for every container start.
    pub fn reset(&self) -> std::io::Result<()> {
        if let Some(dir) = self.local.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&self.local, b"")
    }

    pub fn read(&self) -> FileRead {
        read_at_most(&self.local, MAX_FILE_BYTES)
    }

    /// The message for a container that exited with `exit_code`; `logs` gives the tail of
    /// this run's output and is only called when the policy falls back to it.
    pub fn message(
        &self,
        exit_code: i32,
        containers: usize,
        logs: impl FnOnce() -> String,
    ) -> Option<String> {
        message(self.policy, exit_code, self.read(), containers, logs)
    }
}

/// The kubelet's rules (`getTerminationMessage` + `normalizeStatus`): the file's content;
/// with `FallbackToLogsOnError`, the log tail when the file is missing or empty and
/// `exit_code != 0`; then at most `MAX_POD_BYTES / containers` bytes. `None` when empty.
pub fn message(
    policy: Policy,
    exit_code: i32,
    file: FileRead,
    containers: usize,
    logs: impl FnOnce() -> String,
) -> Option<String> {
    let fallback = policy == Policy::FallbackToLogsOnError && exit_code != 0;
    let text = match file {
        FileRead::Data(d) if !d.is_empty() => d,
        FileRead::Error(e) => e,
        FileRead::Data(_) | FileRead::Missing if fallback => logs(),
        FileRead::Data(_) | FileRead::Missing => String::new(),
    };
    let budget = MAX_POD_BYTES / containers.max(1);
    Some(truncate(text, budget)).filter(|m| !m.is_empty())
}

/// Containers whose messages share the pod's budget (the kubelet counts init containers).
pub fn container_count(pod: &Pod) -> usize {
    pod.spec.as_ref().map_or(1, |s| {
        s.containers.len() + s.init_containers.as_ref().map_or(0, Vec::len)
    })
}

/// The last `max` bytes of the file (the kubelet's `tail.ReadAtMost`).
fn read_at_most(path: &Path, max: u64) -> FileRead {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return FileRead::Missing,
        Err(e) => return read_error(path, &e),
    };
    let mut buf = Vec::new();
    let read = f
        .metadata()
        .and_then(|m| f.seek(SeekFrom::Start(m.len().saturating_sub(max))))
        .and_then(|_| f.take(max).read_to_end(&mut buf));
    match read {
        Ok(_) => FileRead::Data(String::from_utf8_lossy(&buf).into_owned()),
        Err(e) => read_error(path, &e),
    }
}

fn read_error(path: &Path, e: &std::io::Error) -> FileRead {
    FileRead::Error(format!(
        "Error on reading termination log {}: {e}",
        path.display()
    ))
}

/// The first `max` bytes, cut back to a character boundary.
fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FILE: Policy = Policy::File;
    const FALLBACK: Policy = Policy::FallbackToLogsOnError;

    fn data(s: &str) -> FileRead {
        FileRead::Data(s.into())
    }

    fn msg(policy: Policy, code: i32, file: FileRead) -> Option<String> {
        message(policy, code, file, 1, || "log tail".into())
    }

    #[test]
    fn policy_rules() {
        // (policy, exit code, file) → message
        let cases = [
            // File: only ever the file.
            (FILE, 0, data("{\"ok\":1}\n"), Some("{\"ok\":1}\n")),
            (FILE, 1, data("why\n"), Some("why\n")),
            (FILE, 0, data(""), None),
            (FILE, 1, data(""), None),
            (FILE, 1, FileRead::Missing, None),
            // FallbackToLogsOnError: the file when it has content, whatever the exit code.
            (FALLBACK, 0, data("{\"ok\":1}\n"), Some("{\"ok\":1}\n")),
            (FALLBACK, 2, data("why\n"), Some("why\n")),
            // The logs only for an empty/missing file and a failure.
            (FALLBACK, 0, data(""), None),
            (FALLBACK, 0, FileRead::Missing, None),
            (FALLBACK, 1, data(""), Some("log tail")),
            (FALLBACK, 137, FileRead::Missing, Some("log tail")),
            // A read error is the message, never the logs.
            (FALLBACK, 1, FileRead::Error("e".into()), Some("e")),
            (FILE, 0, FileRead::Error("e".into()), Some("e")),
        ];
        for (policy, code, file, want) in cases {
            let desc = format!("{policy:?} exit {code} {file:?}");
            assert_eq!(msg(policy, code, file).as_deref(), want, "{desc}");
        }
    }

    #[test]
    fn logs_are_read_only_when_used() {
        let called = std::cell::Cell::new(false);
        let m = message(FALLBACK, 1, data("x"), 1, || {
            called.set(true);
            String::new()
        });
        assert_eq!(m.as_deref(), Some("x"));
        assert!(!called.get());
    }

    #[test]
    fn pod_budget_is_shared_by_containers() {
        let long = "é".repeat(4000); // 8000 bytes
        assert_eq!(
            message(FILE, 0, data(&long), 1, String::new).unwrap().len(),
            8000
        );
        // 12288 / 4 = 3072 bytes, cut on a character boundary.
        assert_eq!(
            message(FILE, 0, data(&long), 4, String::new).unwrap().len(),
            3072
        );
        let m = message(FILE, 0, data(&long), 5, String::new).unwrap();
        assert_eq!(m.len(), 2456); // 12288 / 5 = 2457, back to a boundary
        assert!(m.chars().all(|c| c == 'é'));
    }

    #[test]
    fn reads_the_last_4096_bytes_and_resets() {
        let dir = std::env::temp_dir().join(format!("podsim-term-{}", std::process::id()));
        let container: Container = serde_json::from_value(json!({
            "name": "c", "terminationMessagePolicy": "FallbackToLogsOnError"
        }))
        .unwrap();
        let log = TerminationLog::new(&container, dir.join("p.c.termination-log"));
        assert_eq!(log.container_path, DEFAULT_PATH);
        assert_eq!(log.policy, FALLBACK);
        assert_eq!(log.read(), FileRead::Missing);
        log.reset().unwrap();
        assert_eq!(log.read(), data(""));
        let content = format!("{}{}", "a".repeat(100), "b".repeat(4096));
        std::fs::write(&log.local, &content).unwrap();
        assert_eq!(log.read(), data(&"b".repeat(4096)));
        assert_eq!(log.message(0, 1, String::new), Some("b".repeat(4096)));
        log.reset().unwrap();
        assert_eq!(log.message(0, 1, || "tail".into()), None);
        assert_eq!(log.message(3, 1, || "tail".into()).as_deref(), Some("tail"));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn path_and_policy_from_the_container() {
        let c: Container = serde_json::from_value(json!({
            "name": "c", "terminationMessagePath": "/tmp/result", "terminationMessagePolicy": "File"
        }))
        .unwrap();
        let log = TerminationLog::new(&c, PathBuf::from("/x"));
        assert_eq!(
            (log.container_path.as_str(), log.policy),
            ("/tmp/result", FILE)
        );
        let pod: Pod = serde_json::from_value(json!({"spec": {
            "containers": [{"name": "a"}, {"name": "b"}],
            "initContainers": [{"name": "i"}]
        }}))
        .unwrap();
        assert_eq!(container_count(&pod), 3);
    }
}
