//! One writer: a paced loop of inserts, updates and deletes of the items it owns (ids
//! `<run>-w<writer>-<n>`), one write at a time, so each item's writes are strictly ordered
//! and the checker can say exactly what must be there. An item whose write ended in doubt
//! (or with an unexpected answer) is never written again: its final state is then either
//! the last acknowledged one or that write's.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::endpoints::Endpoint;
use super::http;
use super::log::{LogWriter, Op, Outcome, Record};
use super::{Counts, now_ms};

/// Items a writer keeps alive at least (below it, it only creates) and at most (above it,
/// it does not create).
const MIN_LIVE: usize = 8;
const MAX_LIVE: usize = 64;

pub(super) struct Shared {
    pub log: LogWriter,
    pub counts: Counts,
    pub endpoints: watch::Receiver<Vec<Endpoint>>,
    pub timeout: Duration,
    pub run: String,
}

struct Item {
    id: String,
    /// The version of its last acknowledged write.
    v: u64,
}

/// What one write will be.
struct Planned {
    op: Op,
    id: String,
    v: u64,
    /// Index in `live` (updates and deletes).
    at: Option<usize>,
}

pub(super) struct Writer {
    shared: Arc<Shared>,
    index: u32,
    rng: u64,
    live: Vec<Item>,
    next_item: u64,
    next_pod: usize,
}

impl Writer {
    pub fn new(shared: Arc<Shared>, index: u32, seed: u64) -> Self {
        Self {
            shared,
            index,
            // xorshift needs a non-zero state.
            rng: (seed ^ (u64::from(index) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1,
            live: Vec::new(),
            next_item: 0,
            next_pod: index as usize,
        }
    }

    /// Writes every `interval` (first after `offset`) until `stop`; a write in flight is
    /// finished (bounded by the request timeout), never abandoned half-way.
    pub async fn run(mut self, interval: Duration, offset: Duration, stop: CancellationToken) {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(offset) => {}
        }
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let planned = self.plan();
            let record = self.send(&planned).await;
            self.learn(&planned, record.outcome);
            self.shared.counts.add(record.op, record.outcome);
            if let Err(e) = self.shared.log.append(&record) {
                tracing::error!(error = %e, "appending to the write log failed");
            }
        }
    }

    fn random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    fn plan(&mut self) -> Planned {
        let r = self.random() % 100;
        let create = self.live.len() < MIN_LIVE || (r < 40 && self.live.len() < MAX_LIVE);
        if create {
            self.next_item += 1;
            return Planned {
                op: Op::Insert,
                id: format!("{}-w{}-{}", self.shared.run, self.index, self.next_item),
                v: 1,
                at: None,
            };
        }
        let at = (self.random() % self.live.len() as u64) as usize;
        let item = &self.live[at];
        Planned {
            op: if r < 80 { Op::Update } else { Op::Delete },
            id: item.id.clone(),
            v: item.v + 1,
            at: Some(at),
        }
    }

    async fn send(&mut self, p: &Planned) -> Record {
        let sent_ms = now_ms();
        let endpoint = {
            let eps = self.shared.endpoints.borrow();
            (!eps.is_empty()).then(|| {
                self.next_pod = self.next_pod.wrapping_add(1);
                eps[self.next_pod % eps.len()].clone()
            })
        };
        let mut record = Record {
            op: p.op,
            id: p.id.clone(),
            v: p.v,
            outcome: Outcome::Failed,
            status: None,
            sent_ms,
            done_ms: sent_ms,
            pod: endpoint.as_ref().map(|e| e.pod.clone()),
            writer: self.index,
            error: None,
        };
        let Some(endpoint) = endpoint else {
            record.error = Some("no ready pod behind the Service".into());
            return record;
        };
        let title = format!("load item {} version {}", p.id, p.v);
        let (method, path, body) = match p.op {
            Op::Insert => (
                "POST",
                "/api/contents".to_owned(),
                Some(json!({"_id": p.id, "v": p.v, "writer": self.index, "title": title})),
            ),
            Op::Update => (
                "PUT",
                format!("/api/contents/{}", p.id),
                Some(json!({"v": p.v, "writer": self.index, "title": title})),
            ),
            Op::Delete => ("DELETE", format!("/api/contents/{}", p.id), None),
        };
        let body = body.map(|b| b.to_string());
        let res = http::request(
            endpoint.addr,
            method,
            &path,
            body.as_deref(),
            self.shared.timeout,
        )
        .await;
        record.done_ms = now_ms();
        match res {
            Ok(reply) => {
                record.status = Some(reply.status);
                record.outcome = classify(reply.status);
                if record.outcome != Outcome::Acked {
                    record.error = Some(reply.body.trim().chars().take(200).collect());
                }
            }
            Err(e) => {
                record.outcome = if e.sent {
                    Outcome::InDoubt
                } else {
                    Outcome::Failed
                };
                record.error = Some(e.message);
            }
        }
        record
    }

    /// What this writer now knows of the item.
    fn learn(&mut self, p: &Planned, outcome: Outcome) {
        match (outcome, p.op, p.at) {
            (Outcome::Acked, Op::Insert, _) => self.live.push(Item {
                id: p.id.clone(),
                v: p.v,
            }),
            (Outcome::Acked, Op::Update, Some(at)) => self.live[at].v = p.v,
            (Outcome::Acked, Op::Delete, Some(at))
            | (Outcome::InDoubt | Outcome::Unexpected, _, Some(at)) => {
                self.live.swap_remove(at);
            }
            // Refused or never sent: nothing changed (a refused create's id is not reused).
            _ => {}
        }
    }
}

/// The outcome of an answered write.
pub fn classify(status: u16) -> Outcome {
    match status {
        200..=299 => Outcome::Acked,
        503 => Outcome::Refused,
        400..=499 => Outcome::Unexpected,
        _ => Outcome::InDoubt,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer() -> Writer {
        let log = std::env::temp_dir().join(format!("load-writer-{}.jsonl", std::process::id()));
        let (_tx, rx) = watch::channel(vec![]);
        let shared = Arc::new(Shared {
            log: LogWriter::create(&log).unwrap(),
            counts: Counts::default(),
            endpoints: rx,
            timeout: Duration::from_secs(1),
            run: "t".into(),
        });
        let _ = std::fs::remove_file(log);
        Writer::new(shared, 3, 42)
    }

    #[test]
    fn items_are_written_in_order_and_left_alone_after_a_doubt() {
        let mut w = writer();
        // Below MIN_LIVE it only creates, with fresh ids, also after a refusal.
        let p = w.plan();
        assert_eq!((p.op, p.id.as_str(), p.v), (Op::Insert, "t-w3-1", 1));
        w.learn(&p, Outcome::Refused);
        for _ in 0..MIN_LIVE {
            let p = w.plan();
            assert_eq!(p.op, Op::Insert);
            w.learn(&p, Outcome::Acked);
        }
        assert_eq!(w.live.len(), MIN_LIVE);
        assert!(
            w.live.iter().all(|i| i.id != "t-w3-1"),
            "a refused create's id is not reused"
        );
        // Acknowledged updates advance the version; a doubt drops the item for good.
        let mut doubted = std::collections::BTreeSet::new();
        for _ in 0..500 {
            let p = w.plan();
            assert!(!doubted.contains(&p.id), "{} written after a doubt", p.id);
            if p.op != Op::Insert {
                let have = w.live.iter().find(|i| i.id == p.id).unwrap().v;
                assert_eq!(p.v, have + 1);
            }
            let outcome = if w.random().is_multiple_of(10) {
                Outcome::InDoubt
            } else {
                Outcome::Acked
            };
            if outcome == Outcome::InDoubt {
                doubted.insert(p.id.clone());
            }
            w.learn(&p, outcome);
            assert!(w.live.len() <= MAX_LIVE);
        }
        assert!(!doubted.is_empty());
    }

    #[test]
    fn answers_map_to_outcomes() {
        assert_eq!(classify(201), Outcome::Acked);
        assert_eq!(classify(204), Outcome::Acked);
        assert_eq!(classify(503), Outcome::Refused);
        assert_eq!(classify(404), Outcome::Unexpected);
        assert_eq!(classify(409), Outcome::Unexpected);
        assert_eq!(classify(500), Outcome::InDoubt);
        assert_eq!(classify(502), Outcome::InDoubt);
    }
}
