//! The write log: one JSON object per line, appended and flushed as each write is answered,
//! so a load killed mid-run leaves every line it wrote readable. Every write the load
//! attempted is a line with its outcome; the checker reads the acknowledged and in-doubt
//! ones, the refused and failed ones say when the app said no.

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Mutex;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Insert,
    Update,
    Delete,
}

impl Op {
    pub const ALL: [Op; 3] = [Op::Insert, Op::Update, Op::Delete];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    /// The app answered success (2xx): the database acknowledged the write.
    Acked,
    /// The app answered 503 (read-only, or not ready): it wrote nothing.
    Refused,
    /// Never sent (no ready pod, connection refused): certainly not applied.
    Failed,
    /// Sent and no answer, or a 5xx other than 503: it may or may not have been applied.
    InDoubt,
    /// A 4xx: the app's state differs from what this writer made it (an update of an item
    /// it had created found nothing, a create found the id taken). Not applied; the item is
    /// not touched again. The checker reports any loss behind it.
    Unexpected,
}

/// One write as the load made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub op: Op,
    /// The item's id (owned by one writer: `<run>-w<writer>-<n>`).
    pub id: String,
    /// The item's version after this write: 1 for the insert, +1 per update, +1 for the delete.
    pub v: u64,
    pub outcome: Outcome,
    /// The HTTP status, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// When the request was sent and when it was answered (or given up), Unix milliseconds.
    pub sent_ms: i64,
    pub done_ms: i64,
    /// The pod it was sent to (None when no pod was ready).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    pub writer: u32,
    /// Why it was not acknowledged (the app's answer or the transport's error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An append-only JSONL file shared by the writers.
pub struct LogWriter {
    file: Mutex<std::io::BufWriter<std::fs::File>>,
}

impl LogWriter {
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(Self {
            file: Mutex::new(std::io::BufWriter::new(file)),
        })
    }

    /// Appends one line and flushes it.
    pub fn append(&self, r: &Record) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(r).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut f = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f.write_all(&line)?;
        f.flush()
    }
}

/// Reads a log. A last line cut off by a kill is skipped; any other bad line is an error.
pub fn read(path: &Path) -> anyhow::Result<Vec<Record>> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let lines: Vec<String> = std::io::BufReader::new(f)
        .lines()
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading {}", path.display()))?;
    let last = lines.len().saturating_sub(1);
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(r) => out.push(r),
            Err(_) if i == last => {
                tracing::warn!(
                    line = i + 1,
                    "skipping the cut-off last line of the write log"
                )
            }
            Err(e) => anyhow::bail!("{}: line {}: {e}", path.display(), i + 1),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_a_cut_last_line_is_skipped() {
        let dir = std::env::temp_dir().join(format!("load-log-{}", std::process::id()));
        let path = dir.join("writes.jsonl");
        let _ = std::fs::remove_file(&path);
        let w = LogWriter::create(&path).unwrap();
        let r = Record {
            op: Op::Update,
            id: "r-w0-1".into(),
            v: 2,
            outcome: Outcome::Acked,
            status: Some(200),
            sent_ms: 10,
            done_ms: 12,
            pod: Some("squidex-1".into()),
            writer: 0,
            error: None,
        };
        w.append(&r).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "{\"op\":\"update\",\"id\":\"r-w0-1\",\"v\":2,\"outcome\":\"acked\",\"status\":200,\"sentMs\":10,\"doneMs\":12,\"pod\":\"squidex-1\",\"writer\":0}\n"
        );
        std::fs::write(&path, format!("{text}{{\"op\":\"ins")).unwrap();
        assert_eq!(read(&path).unwrap(), vec![r]);
        std::fs::write(&path, format!("garbage\n{text}")).unwrap();
        assert!(read(&path).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
