//! A write load that uses the app as its users do, and a checker that proves afterwards that
//! every write the app acknowledged is in the data it serves (issue #15 item 5; the chaos
//! soak of #16 reuses both).
//!
//! [`start`] runs `writers` concurrent writers at `rate` writes per second in total against
//! the ready pods the Service selects (re-resolved every second, so a switch is followed):
//! inserts, updates and deletes of items each writer owns (`_id` prefix
//! `<run>-w<writer>-`), one write per item at a time. Every write is appended to a JSONL log
//! ([`log::Record`]: op, id, the item's version, outcome, times, the pod that answered);
//! refused, failed, in-doubt and unexpected answers are counted apart from the
//! acknowledged ones. [`check::expected`] derives the exact final state from the log and
//! [`check::check_http`] / [`check::check_database`] compare it with what the app serves or
//! a database holds.

pub mod check;
pub mod endpoints;
pub mod http;
pub mod log;
mod writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use endpoints::Target;
use log::{LogWriter, Op, Outcome};

/// What a load does.
#[derive(Debug, Clone)]
pub struct Config {
    pub target: Target,
    /// Writes per second, all writers together.
    pub rate: f64,
    pub writers: u32,
    /// The JSONL log (appended to).
    pub log: PathBuf,
    /// Prefix of every item id (letters, digits, `-`, `_`), unique per run.
    pub run: String,
    /// Bound of one request, connect to answer; past it the write is in doubt.
    pub timeout: Duration,
    pub seed: u64,
}

impl Config {
    pub fn new(target: Target, log: PathBuf) -> Self {
        Self {
            target,
            rate: 50.0,
            writers: 4,
            log,
            run: format!("load-{}", crate::bench::cluster::unique()),
            timeout: Duration::from_secs(5),
            seed: u64::try_from(now_ms()).unwrap_or(1),
        }
    }
}

/// Writes by operation and outcome.
#[derive(Default)]
pub struct Counts([AtomicU64; 15]);

impl Counts {
    fn slot(op: Op, outcome: Outcome) -> usize {
        let o = match outcome {
            Outcome::Acked => 0,
            Outcome::Refused => 1,
            Outcome::Failed => 2,
            Outcome::InDoubt => 3,
            Outcome::Unexpected => 4,
        };
        op as usize * 5 + o
    }

    pub fn add(&self, op: Op, outcome: Outcome) {
        self.0[Self::slot(op, outcome)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, op: Op, outcome: Outcome) -> u64 {
        self.0[Self::slot(op, outcome)].load(Ordering::Relaxed)
    }

    pub fn outcome(&self, outcome: Outcome) -> u64 {
        Op::ALL.iter().map(|op| self.get(*op, outcome)).sum()
    }

    pub fn summary(&self) -> Summary {
        Summary {
            acked: self.outcome(Outcome::Acked),
            refused: self.outcome(Outcome::Refused),
            failed: self.outcome(Outcome::Failed),
            in_doubt: self.outcome(Outcome::InDoubt),
            unexpected: self.outcome(Outcome::Unexpected),
            inserts_acked: self.get(Op::Insert, Outcome::Acked),
            updates_acked: self.get(Op::Update, Outcome::Acked),
            deletes_acked: self.get(Op::Delete, Outcome::Acked),
        }
    }
}

/// What a load did, by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub acked: u64,
    pub refused: u64,
    pub failed: u64,
    pub in_doubt: u64,
    pub unexpected: u64,
    pub inserts_acked: u64,
    pub updates_acked: u64,
    pub deletes_acked: u64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "writes acknowledged: {} (inserts {}, updates {}, deletes {}); refused: {}, not sent: {}, in doubt: {}, unexpected answers: {}",
            self.acked,
            self.inserts_acked,
            self.updates_acked,
            self.deletes_acked,
            self.refused,
            self.failed,
            self.in_doubt,
            self.unexpected
        )
    }
}

/// A running load.
pub struct Load {
    shared: Arc<writer::Shared>,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    pub log: PathBuf,
    pub run: String,
}

/// Resolves the Service's pods once, then starts the writers and the resolver.
pub async fn start(client: kube::Client, cfg: Config) -> anyhow::Result<Load> {
    anyhow::ensure!(
        !cfg.run.is_empty()
            && cfg
                .run
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "the run id {:?} must be letters, digits, '-' or '_'",
        cfg.run
    );
    anyhow::ensure!(
        cfg.rate > 0.0 && cfg.writers > 0,
        "rate and writers must be positive"
    );
    let first = endpoints::resolve(&client, &cfg.target).await?;
    let (tx, rx) = watch::channel(first);
    let shared = Arc::new(writer::Shared {
        log: LogWriter::create(&cfg.log)?,
        counts: Counts::default(),
        endpoints: rx,
        timeout: cfg.timeout,
        run: cfg.run.clone(),
    });
    let stop = CancellationToken::new();
    let mut tasks = vec![tokio::spawn(endpoints::follow(
        client,
        cfg.target.clone(),
        tx,
        stop.clone(),
    ))];
    let interval = Duration::from_secs_f64(f64::from(cfg.writers) / cfg.rate);
    for i in 0..cfg.writers {
        let offset = interval.mul_f64(f64::from(i) / f64::from(cfg.writers));
        let w = writer::Writer::new(shared.clone(), i, cfg.seed);
        tasks.push(tokio::spawn(w.run(interval, offset, stop.clone())));
    }
    tracing::info!(run = %cfg.run, rate = cfg.rate, writers = cfg.writers, log = %cfg.log.display(), "write load started");
    Ok(Load {
        shared,
        stop,
        tasks,
        log: cfg.log,
        run: cfg.run,
    })
}

impl Load {
    /// The counts so far.
    pub fn summary(&self) -> Summary {
        self.shared.counts.summary()
    }

    /// Stops the writers (each finishes the write in flight) and returns the counts.
    pub async fn stop(self) -> Summary {
        self.stop.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        self.shared.counts.summary()
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    crate::watchlog::now_ms()
}
