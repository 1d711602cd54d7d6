//! The operator as the soak runs it: two `cutover run` processes with leader election,
//! watching every namespace, each started and stopped by its pid. The leader is whoever
//! holds the Lease.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;

pub const LEASE: &str = "cutover-soak";
pub const LEASE_NAMESPACE: &str = "default";

/// One replica: its identity in the Lease and the process running it now.
pub struct Replica {
    pub identity: String,
    child: Option<tokio::process::Child>,
    pub logs: Vec<PathBuf>,
    started: Option<std::time::Instant>,
    /// Exited: started again at this time (the kubelet's back-off, 1 s doubling to 10 s).
    restart_at: Option<std::time::Instant>,
    backoff: Duration,
}

pub struct Operators {
    pub replicas: Vec<Replica>,
    /// Replicas that exited on their own and were started again, with why.
    pub restarts: Vec<String>,
    binary: PathBuf,
    dir: PathBuf,
}

impl Operators {
    pub async fn start(binary: &Path, dir: &Path, n: usize) -> anyhow::Result<Operators> {
        let mut ops = Operators {
            replicas: (0..n)
                .map(|i| Replica {
                    identity: format!("soak-op-{i}"),
                    child: None,
                    logs: vec![],
                    started: None,
                    restart_at: None,
                    backoff: Duration::from_secs(1),
                })
                .collect(),
            binary: binary.to_path_buf(),
            dir: dir.to_path_buf(),
            restarts: vec![],
        };
        for i in 0..n {
            ops.spawn(i)?;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        for r in &mut ops.replicas {
            if let Some(c) = &mut r.child
                && let Ok(Some(st)) = c.try_wait()
            {
                anyhow::bail!(
                    "cutover run {} exited ({st}); log: {}",
                    r.identity,
                    r.logs
                        .last()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default()
                );
            }
        }
        Ok(ops)
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let r = &mut self.replicas[i];
        let log = self
            .dir
            .join(format!("{}-{}.log", r.identity, r.logs.len()));
        let file = std::fs::File::create(&log)?;
        let child = tokio::process::Command::new(&self.binary)
            .args(["run", "--http-addr", "127.0.0.1:0", "--leader-election"])
            .args(["--lease-name", LEASE, "--lease-namespace", LEASE_NAMESPACE])
            .args(["--lease-duration", "6s"])
            .env("POD_NAME", &r.identity)
            .env("RUST_LOG", "info,kube=warn")
            .env("CUTOVER_LOG_FORMAT", "pretty")
            .env("NO_COLOR", "1")
            .stdout(Stdio::from(file.try_clone()?))
            .stderr(Stdio::from(file))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        r.child = Some(child);
        r.logs.push(log);
        r.started = Some(std::time::Instant::now());
        r.restart_at = None;
        Ok(())
    }

    /// The identity holding the Lease now, if any.
    pub async fn leader(client: &kube::Client) -> Option<String> {
        Api::<Lease>::namespaced(client.clone(), LEASE_NAMESPACE)
            .get(LEASE)
            .await
            .ok()?
            .spec?
            .holder_identity
    }

    /// SIGKILLs the leader's process (no graceful shutdown), waits `down`, and starts it
    /// again with the same identity (a restarted container). Returns the identity killed.
    pub async fn kill_leader(
        &mut self,
        client: &kube::Client,
        down: Duration,
    ) -> anyhow::Result<String> {
        let leader = Self::leader(client).await.context("no Lease holder")?;
        let i = self
            .replicas
            .iter()
            .position(|r| r.identity == leader)
            .with_context(|| format!("the Lease holder {leader} is not a soak replica"))?;
        if let Some(mut c) = self.replicas[i].child.take() {
            c.start_kill()?;
            c.wait().await?;
        }
        tokio::time::sleep(down).await;
        self.spawn(i)?;
        Ok(leader)
    }

    /// Every log written so far, concatenated.
    pub fn all_logs(&self) -> String {
        self.replicas
            .iter()
            .flat_map(|r| &r.logs)
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Plays the kubelet's `restartPolicy: Always`: every replica whose process exited on
    /// its own (a replica that lost its Lease exits by design; one that cannot reach the API
    /// server may too) is started again with the same identity. What was restarted, and why.
    pub fn revive(&mut self) -> Vec<String> {
        let mut exits = Vec::new();
        let now = std::time::Instant::now();
        for i in 0..self.replicas.len() {
            if self.replicas[i].restart_at.is_some_and(|t| now >= t) {
                if let Err(e) = self.spawn(i) {
                    exits.push(format!(
                        "{}: starting it again failed: {e:#}",
                        self.replicas[i].identity
                    ));
                }
                continue;
            }
            let r = &mut self.replicas[i];
            let exited = match &mut r.child {
                Some(c) => match c.try_wait() {
                    Ok(Some(st)) => Some(st.to_string()),
                    _ => None,
                },
                // Killed by a fault, to be started by it.
                None => None,
            };
            let Some(st) = exited else { continue };
            r.child = None;
            // Up a while: a fresh failure, the back-off starts over.
            if r.started
                .is_some_and(|t| t.elapsed() > Duration::from_secs(30))
            {
                r.backoff = Duration::from_secs(1);
            }
            r.restart_at = Some(now + r.backoff);
            r.backoff = (r.backoff * 2).min(Duration::from_secs(10));
            let why = r
                .logs
                .last()
                .and_then(|p| std::fs::read_to_string(p).ok())
                .and_then(|l| {
                    l.lines()
                        .rev()
                        .find(|l| l.contains("ERROR") || l.starts_with("cutover:"))
                        .map(|l| {
                            // Without the timestamp, so that equal reasons read equal.
                            let l = l.split_once("Z ").map_or(l, |(_, rest)| rest);
                            l.chars().take(160).collect::<String>()
                        })
                })
                .unwrap_or_default();
            exits.push(format!("{} exited ({st}): {why}", r.identity));
        }
        self.restarts.extend(exits.iter().cloned());
        exits
    }

    /// SIGTERM each (by its pid), SIGKILL after 10 s.
    pub async fn stop(&mut self) {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        for r in &mut self.replicas {
            let Some(mut c) = r.child.take() else {
                continue;
            };
            if let (Ok(None), Some(pid)) = (c.try_wait(), c.id()) {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
                if tokio::time::timeout(Duration::from_secs(10), c.wait())
                    .await
                    .is_err()
                {
                    let _ = c.kill().await;
                }
            }
        }
    }
}
