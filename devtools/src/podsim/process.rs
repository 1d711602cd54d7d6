//! Running a container's process: its own process group (so a `sh -c` and everything it
//! starts is one unit to signal, like a container's cgroup), output appended to the pod's
//! log file, and a registry of live groups so podsim can kill them all when it is stopped.

use std::{
    collections::BTreeSet,
    fs::OpenOptions,
    io::{Read, Seek, SeekFrom},
    path::{Path, PathBuf},
    process::Stdio,
    sync::Mutex,
    time::Duration,
};

use nix::{
    sys::signal::{Signal, killpg},
    unistd::Pid,
};
use tokio::process::{Child, Command};

/// Process groups of the processes podsim started and that may still run.
static LIVE_GROUPS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// What to run for one container.
#[derive(Debug, Clone)]
pub struct Spec {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    pub log: PathBuf,
}

/// A started process and where its output of this run begins in the log.
pub struct Running {
    child: Child,
    pgid: i32,
    pub log: PathBuf,
    pub log_offset: u64,
}

/// Env names never passed from podsim's own environment to a container: they would hide a
/// missing variable in the pod spec (the container must get them from its spec, as in a
/// real cluster).
fn inherited(name: &str) -> bool {
    !(name == "KUBECONFIG"
        || name == "MONGODB_URI"
        || name.starts_with("STORE__")
        || name.starts_with("MODE__")
        || name.starts_with("APPSIM_"))
}

pub fn spawn(spec: &Spec) -> std::io::Result<Running> {
    let (program, args) = spec
        .argv
        .split_first()
        .ok_or_else(|| std::io::Error::other("empty command"))?;
    if let Some(dir) = spec.log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::create_dir_all(&spec.cwd)?;
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log)?;
    let log_offset = log.metadata()?.len();
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(std::env::vars().filter(|(k, _)| inherited(k)))
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .kill_on_drop(true);
    let child = cmd.spawn()?;
    let pgid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .ok_or_else(|| std::io::Error::other("child has no pid"))?;
    LIVE_GROUPS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(pgid);
    Ok(Running {
        child,
        pgid,
        log: spec.log.clone(),
        log_offset,
    })
}

impl Running {
    pub fn pid(&self) -> i32 {
        self.pgid
    }

    /// Waits for the process to exit; returns the exit code (128+signal when killed) and
    /// kills what is left of its group (orphans of a `sh -c`), like a container's end.
    pub async fn wait(&mut self) -> i32 {
        let code = match self.child.wait().await {
            Ok(status) => exit_code(status),
            Err(_) => 128,
        };
        self.reap_group();
        code
    }

    /// SIGTERM to the group, SIGKILL after `grace`.
    pub async fn stop(&mut self, grace: Duration) -> i32 {
        let _ = killpg(Pid::from_raw(self.pgid), Signal::SIGTERM);
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(Ok(status)) => {
                self.reap_group();
                exit_code(status)
            }
            _ => {
                let _ = killpg(Pid::from_raw(self.pgid), Signal::SIGKILL);
                let code = self.child.wait().await.map(exit_code).unwrap_or(137);
                self.reap_group();
                code
            }
        }
    }

    fn reap_group(&self) {
        let _ = killpg(Pid::from_raw(self.pgid), Signal::SIGKILL);
        LIVE_GROUPS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.pgid);
    }

    /// The tail of this run's output, for `terminated.message` (the kubelet's
    /// FallbackToLogsOnError keeps at most 80 lines / 2048 bytes).
    pub fn tail(&self) -> String {
        tail_of(&self.log, self.log_offset, 80, 2048).unwrap_or_default()
    }
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(128)
}

/// The last `max_lines` lines / `max_bytes` bytes of `path` after `offset`.
pub fn tail_of(
    path: &Path,
    offset: u64,
    max_lines: usize,
    max_bytes: u64,
) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let start = offset.max(len.saturating_sub(max_bytes));
    f.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let text = text.trim_end();
    let lines: Vec<&str> = text.lines().collect();
    Ok(lines[lines.len().saturating_sub(max_lines)..].join("\n"))
}

/// Kills every process group podsim started: SIGTERM, then SIGKILL after `grace`. Used on
/// podsim's own shutdown.
pub async fn kill_all(grace: Duration) {
    let groups: Vec<i32> = LIVE_GROUPS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .copied()
        .collect();
    for g in &groups {
        let _ = killpg(Pid::from_raw(*g), Signal::SIGTERM);
    }
    if !groups.is_empty() {
        tokio::time::sleep(grace).await;
    }
    for g in &groups {
        let _ = killpg(Pid::from_raw(*g), Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_config_from_podsims_environment() {
        assert!(inherited("PATH"));
        assert!(inherited("WINEPREFIX"));
        assert!(!inherited("MONGODB_URI"));
        assert!(!inherited("STORE__MONGODB__CONFIGURATION"));
        assert!(!inherited("APPSIM_IMAGE"));
    }

    #[tokio::test]
    async fn runs_logs_and_kills_groups() {
        let dir = std::env::temp_dir().join(format!("podsim-proc-{}", std::process::id()));
        let spec = Spec {
            argv: vec![
                "sh".into(),
                "-c".into(),
                "echo one; echo \"$GREETING\"; exit 3".into(),
            ],
            env: vec![("GREETING".into(), "two".into())],
            cwd: dir.clone(),
            log: dir.join("p.log"),
        };
        let mut r = spawn(&spec).unwrap();
        assert_eq!(r.wait().await, 3);
        assert_eq!(r.tail(), "one\ntwo");
        // Second run appends; the tail only shows this run.
        let mut r = spawn(&Spec {
            argv: vec![
                "sh".into(),
                "-c".into(),
                "echo three; sleep 30 & sleep 30".into(),
            ],
            ..spec
        })
        .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let code = r.stop(Duration::from_secs(2)).await;
        assert_eq!(code, 128 + 15);
        assert_eq!(r.tail(), "three");
        // Orphans of the group die too (init reaps them asynchronously).
        let mut gone = false;
        for _ in 0..40 {
            gone = killpg(Pid::from_raw(r.pid()), None).is_err();
            if gone {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(gone, "the whole group is gone");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn tails_by_lines_and_bytes() {
        let dir = std::env::temp_dir().join(format!("podsim-tail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("l");
        std::fs::write(&p, "old\na\nb\nc\n").unwrap();
        assert_eq!(tail_of(&p, 4, 2, 100).unwrap(), "b\nc");
        assert_eq!(tail_of(&p, 0, 10, 4).unwrap(), "b\nc");
        let _ = std::fs::remove_dir_all(dir);
    }
}
