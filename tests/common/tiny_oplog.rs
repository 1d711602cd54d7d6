//! A MongoDB-wire server of a test's own with a tiny oplog, for history-loss tests (the shared
//! environment's server keeps a large one). Stopped by its own process handle.

use std::time::Duration;

use super::unique;

/// A server with `--oplog-max-entries max_entries`, killed by `stop` (or on drop).
pub struct TinyOplogServer {
    child: tokio::process::Child,
    dir: std::path::PathBuf,
    pub uri: String,
}

impl TinyOplogServer {
    pub async fn start(max_entries: u32) -> TinyOplogServer {
        let cache = std::env::var("CUTOVER_CACHE")
            .unwrap_or_else(|_| format!("{}/.cache/cutover", std::env::var("HOME").unwrap()));
        let tools = std::fs::read_to_string(format!("{cache}/tools.env")).unwrap_or_default();
        let exe = tools
            .lines()
            .find_map(|l| l.strip_prefix("SECANTUSD="))
            .map(|s| s.trim_matches(['\'', '"']).to_string())
            .expect("SECANTUSD in the cache's tools.env (hack/dev-env install)");
        let dir = std::env::temp_dir().join(unique("tiny-oplog"));
        let mut child = tokio::process::Command::new(exe)
            .args(["--host", "127.0.0.1", "--port", "0", "--cache-size", "64M"])
            .arg("--storage-path")
            .arg(&dir)
            .args(["--oplog-max-entries", &max_entries.to_string()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("secantusd-rs starts");
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let port = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(p) = line.split("listening on 127.0.0.1:").nth(1) {
                    return p.trim().to_string();
                }
            }
            panic!("secantusd-rs exited before listening")
        })
        .await
        .expect("secantusd-rs listens within 30 s");
        // Keep reading its output so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        TinyOplogServer {
            child,
            dir,
            uri: format!("mongodb://127.0.0.1:{port}/?directConnection=true"),
        }
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
