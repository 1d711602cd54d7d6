//! A `cutover run` process started by the benchmark: one namespace, its API traffic through
//! the counting proxy, metrics on a loopback port; stopped by its pid.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct Operator {
    child: tokio::process::Child,
    pub pid: u32,
    pub metrics_addr: std::net::SocketAddr,
    pub log: PathBuf,
}

/// The `cutover` binary: `--cutover`, else next to this executable, else on PATH.
pub fn find_cutover(explicit: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p);
    }
    if let Ok(me) = std::env::current_exe()
        && let Some(dir) = me.parent()
        && dir.join("cutover").is_file()
    {
        return Ok(dir.join("cutover"));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("cutover"))
        .find(|p| p.is_file())
        .context("no cutover binary: build it (cargo build --bins) or pass --cutover PATH")
}

fn free_port() -> std::io::Result<std::net::SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    l.local_addr()
}

impl Operator {
    /// Starts `cutover run --namespace NS` with `kubeconfig` and waits until /readyz answers.
    pub async fn start(
        binary: &Path,
        ns: &str,
        kubeconfig: &Path,
        log_dir: &Path,
    ) -> anyhow::Result<Operator> {
        let metrics_addr = free_port()?;
        let log = log_dir.join(format!("cutover-{ns}.log"));
        let file = std::fs::File::create(&log)?;
        let child = tokio::process::Command::new(binary)
            .args(["run", "--namespace", ns, "--http-addr"])
            .arg(metrics_addr.to_string())
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info,kube=warn")
            .env("CUTOVER_LOG_FORMAT", "pretty")
            .env("NO_COLOR", "1")
            .stdout(Stdio::from(file.try_clone()?))
            .stderr(Stdio::from(file))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let pid = child.id().context("cutover run exited at once")?;
        let mut op = Operator {
            child,
            pid,
            metrics_addr,
            log,
        };
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = op.child.try_wait() {
                bail!("cutover run exited ({status}); log: {}", op.log.display());
            }
            if http_get(metrics_addr, "/readyz")
                .await
                .is_ok_and(|(code, _)| code == 200)
            {
                return Ok(op);
            }
            if start.elapsed() > Duration::from_secs(60) {
                bail!(
                    "cutover run not ready after 60 s; log: {}",
                    op.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The Prometheus text from /metrics.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        let (code, body) = http_get(self.metrics_addr, "/metrics").await?;
        if code != 200 {
            bail!("/metrics answered {code}");
        }
        Ok(body)
    }

    /// Reconciles so far (ok and error), from `cutover_reconciles_total`.
    pub async fn reconciles(&self) -> anyhow::Result<u64> {
        Ok(sum_metric(
            &self.metrics().await?,
            "cutover_reconciles_total",
        ))
    }

    /// SIGTERM, then SIGKILL after 10 s; only this child, by its pid.
    pub async fn stop(mut self) {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        if let Ok(None) = self.child.try_wait() {
            let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGTERM);
            if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
                .await
                .is_err()
            {
                let _ = self.child.kill().await;
            }
        }
    }
}

/// Sum of every sample of a metric (all label sets).
pub fn sum_metric(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// A one-shot HTTP/1.1 GET on loopback (the operator answers with `Connection: close`).
async fn http_get(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let mut s = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await??;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await??;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

#[cfg(test)]
mod tests {
    use super::sum_metric;

    #[test]
    fn sums_labelled_samples() {
        let text = "# HELP cutover_reconciles Reconciles\n# TYPE cutover_reconciles counter\ncutover_reconciles_total{result=\"ok\"} 12\ncutover_reconciles_total{result=\"error\"} 3\ncutover_reconciles_total_other 9\n";
        assert_eq!(sum_metric(text, "cutover_reconciles_total"), 15);
        assert_eq!(sum_metric(text, "missing"), 0);
    }
}
