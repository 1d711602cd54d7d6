//! The operator under test (`cutover run`) and the logs a failed wait prints.

use std::path::PathBuf;
use std::process::Stdio;

use super::unique;

/// A `cutover run` under test: a process the test started, watching one namespace and killed
/// when dropped, or (child `None`) the pod of an installed chart that podsim runs, whose log
/// podsim keeps.
pub struct Operator {
    pub child: Option<tokio::process::Child>,
    pub log: PathBuf,
}

impl Operator {
    /// `cutover run` watching namespace `ns`.
    pub fn start(ns: &str) -> Operator {
        Operator::start_with(ns, &[], &[])
    }

    /// Like `start`, with extra `cutover run` arguments and environment (e.g. `POD_NAME`, the
    /// identity in the Lease: a container restarted in the same pod keeps it).
    pub fn start_with(ns: &str, args: &[&str], envs: &[(&str, &str)]) -> Operator {
        let log = std::env::temp_dir().join(format!("cutover-{ns}-{}.log", unique("op")));
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cutover"));
        cmd.args(["run", "--namespace", ns, "--http-addr", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "info,kube=warn,cutover=debug")
            .env("CUTOVER_LOG_FORMAT", "pretty")
            .env("NO_COLOR", "1");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .kill_on_drop(true)
            .spawn()
            .expect("start cutover run");
        Operator {
            child: Some(child),
            log,
        }
    }

    /// The operator running as pod `ns/pod` (its log is podsim's file for the pod).
    pub fn pod(ns: &str, pod: &str) -> Operator {
        let dir = std::env::var("CUTOVER_ENV_DIR").expect("CUTOVER_ENV_DIR (podsim's logs)");
        let log = PathBuf::from(dir)
            .join("podsim/pods")
            .join(ns)
            .join(format!("{pod}.log"));
        Operator { child: None, log }
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = s.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn kill(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill().await;
        }
    }

    /// SIGKILL (no graceful shutdown, no last status write) and wait for the process to be gone.
    pub async fn kill_hard(&mut self) {
        use std::os::unix::process::ExitStatusExt;
        let child = self.child.as_mut().expect("a process this test started");
        child.start_kill().expect("send SIGKILL");
        let status = child.wait().await.expect("wait for cutover run");
        assert_eq!(
            status.signal(),
            Some(9),
            "cutover run ended by SIGKILL: {status:?}"
        );
    }
}

/// The last `lines` of every container log podsim kept for the namespace, so a failed wait says
/// what the app's pods were doing (a migration waiting on a lock, a crash) without a rerun.
pub fn pod_log_tails(ns: &str, lines: usize) -> String {
    let Ok(dir) = std::env::var("CUTOVER_ENV_DIR") else {
        return String::new();
    };
    let Ok(entries) = std::fs::read_dir(std::path::Path::new(&dir).join("podsim/pods").join(ns))
    else {
        return String::new();
    };
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    files.sort();
    let mut out = String::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let tail = &all[all.len().saturating_sub(lines)..];
        out.push_str(&format!(
            "pod log {}:\n{}\n",
            f.file_name().unwrap().to_string_lossy(),
            tail.join("\n")
        ));
    }
    out
}
