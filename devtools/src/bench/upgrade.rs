//! One size, end to end: a fresh namespace and databases, the blue app, `cutover run`, one
//! UpgradePlan to Succeeded, its timeline, then the runbook baseline on the same sources,
//! then everything removed again.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cutover::fixtures::clone_of;
use serde::Serialize;

use super::Bench;
use super::app::{DEPLOYMENT, SERVICE, deploy_blue};
use super::baseline::{self, Baseline};
use super::cluster::{now_ms, unique};
use super::history::{History, MigrationDocPoller};
use super::operator::Operator;
use super::plan::{CloneMethod, TARGET_VERSION, upgrade_plan};
use super::procfs;
use super::proxy::tally;
use super::seed::{Target, seed_size};
use super::sizes::{DataSet, Size};
use super::timeline::{Names, Timeline, analyse};

const PLAN: &str = "upgrade";

#[derive(Serialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct SizeRun {
    pub size: String,
    pub data: DataSet,
    /// `spec.backup.cloneMethod` as sent; `None`: not set (the operator's default, auto).
    pub clone_method: Option<CloneMethod>,
    pub documents_total: u64,
    /// `dbStats.dataSize` of both sources.
    pub source_bytes: Option<u64>,
    /// `status.backup.bytes`: the gzip archives.
    pub backup_bytes: Option<i64>,
    pub seed_seconds: f64,
    pub timeline: Timeline,
    /// BackingUp + Cloning wall time, seconds.
    pub copy_seconds: Option<f64>,
    pub baseline: Option<Baseline>,
    /// copy_seconds / baseline.
    pub copy_vs_baseline: Option<f64>,
    /// Read-only window / baseline.
    pub read_only_vs_baseline: Option<f64>,
    /// The operator's API requests from its start to Succeeded, by verb and resource.
    pub api_requests: BTreeMap<String, u64>,
    pub api_requests_total: u64,
    pub reconciles: u64,
    pub operator_cpu_seconds: f64,
    pub operator_rss_peak_mib: f64,
    /// The whole size: seeding, the plan, the baseline and the clean-up.
    pub wall_seconds: f64,
    /// The final status, for the footprint's `succeeded` plans.
    #[serde(skip)]
    pub final_status: serde_json::Value,
}

pub async fn run_size(
    b: &Bench,
    size: &Size,
    clone_method: Option<CloneMethod>,
    baseline_too: bool,
) -> anyhow::Result<SizeRun> {
    let wall = Instant::now();
    let id = unique();
    let ns = format!("bench-{}-{id}", size.label);
    let (db, content_db) = (format!("BenchMain_{id}"), format!("BenchContent_{id}"));
    let mut dbs = vec![
        db.clone(),
        content_db.clone(),
        clone_of(&db, PLAN),
        clone_of(&content_db, PLAN),
    ];
    let copies = [
        (db.clone(), format!("{db}_runbook")),
        (content_db.clone(), format!("{content_db}_runbook")),
    ];
    dbs.extend(copies.iter().map(|(_, c)| c.clone()));
    b.cluster.create_namespace(&ns).await?;
    let mut op = None;
    let result = run_in(
        b,
        size,
        clone_method,
        baseline_too,
        &ns,
        &db,
        &content_db,
        &copies,
        &mut op,
    )
    .await;
    eprintln!("  cleaning up {ns}");
    b.cluster.cleanup(&ns, &dbs, Duration::from_secs(60)).await;
    if let Some(op) = op {
        op.stop().await;
    }
    if let Ok(dir) = std::env::var("CUTOVER_ENV_DIR") {
        // podsim keeps PVC directories like a claim keeps its data: the backups of this run.
        let _ =
            std::fs::remove_dir_all(std::path::Path::new(&dir).join("podsim/volumes").join(&ns));
    }
    let mut run = result?;
    run.wall_seconds = wall.elapsed().as_secs_f64();
    Ok(run)
}

#[allow(clippy::too_many_arguments)]
async fn run_in(
    b: &Bench,
    size: &Size,
    clone_method: Option<CloneMethod>,
    baseline_too: bool,
    ns: &str,
    db: &str,
    content_db: &str,
    copies: &[(String, String)],
    op_slot: &mut Option<Operator>,
) -> anyhow::Result<SizeRun> {
    let c = &b.cluster;
    eprintln!("  seeding {db} and {content_db} ({:?})", size.data);
    let seed_seconds = seed_size(&Target {
        uri: &c.mongo_uri,
        database: db,
        content_database: content_db,
        size,
    })
    .await
    .context("seeding")?;
    let source_bytes = match (
        baseline::data_bytes(&c.mongo, db).await,
        baseline::data_bytes(&c.mongo, content_db).await,
    ) {
        (Some(a), Some(b)) => Some(a + b),
        _ => None,
    };
    eprintln!(
        "  seeded in {seed_seconds:.1} s ({} bytes of data); deploying the app",
        source_bytes.map_or("?".into(), |b| b.to_string())
    );
    deploy_blue(c, ns, db, content_db, Duration::from_secs(120)).await?;

    let history = History::start(&c.client, ns).await?;
    let poller = MigrationDocPoller::start(c.mongo.clone(), clone_of(db, PLAN));
    let op_start_ms = now_ms();
    let op = Operator::start(&b.cutover, ns, &b.proxy_kubeconfig, &b.work_dir).await?;
    let pid = op.pid;
    *op_slot = Some(op);
    let applied_ms = now_ms();
    c.apply_plan(ns, &upgrade_plan(PLAN, db, content_db, clone_method))
        .await?;
    let status = wait_finished(b, ns, op_slot.as_ref().expect("operator")).await?;
    // Let the last watch events arrive.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let done_ms = now_ms();
    let op = op_slot.as_ref().expect("operator");
    let reconciles = op.reconciles().await.unwrap_or(0);
    let tick = procfs::ticks_per_second() as f64;
    let operator_cpu_seconds = procfs::cpu_ticks(pid).unwrap_or(0) as f64 / tick;
    let operator_rss_peak_mib = procfs::memory_kib(pid).map_or(0.0, |(_, hwm)| hwm as f64 / 1024.0);
    let requests = b.proxy.requests(op_start_ms, Some(done_ms));

    let timeline = analyse(
        &status,
        &history.all(),
        applied_ms,
        poller.final_at(i64::from(TARGET_VERSION)),
        &Names {
            blue: DEPLOYMENT,
            service: SERVICE,
            backup_job: status["backup"]["job"].as_str().unwrap_or("upgrade-backup"),
            clone_job: &format!("{PLAN}-clone"),
            read_only_env: "MODE__ISREADONLY",
            scale_down_after_ms: 1000,
        },
    );
    drop(poller);
    drop(history);
    let phase_s = |name: &str| {
        timeline
            .phases
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| p.seconds)
    };
    let copy_seconds = match (phase_s("BackingUp"), phase_s("Cloning")) {
        (Some(a), Some(b)) => Some(a + b),
        _ => None,
    };

    let baseline = if baseline_too {
        eprintln!("  baseline: mongodump | mongorestore of both sources");
        Some(baseline::run(&c.mongo_uri, &c.mongo, copies).await?)
    } else {
        None
    };
    let ratio = |x: Option<f64>| match (x, &baseline) {
        (Some(x), Some(bl)) if bl.seconds > 0.0 => Some(x / bl.seconds),
        _ => None,
    };
    Ok(SizeRun {
        size: size.label.clone(),
        data: size.data,
        clone_method,
        documents_total: size.documents_total(),
        source_bytes,
        backup_bytes: status["backup"]["bytes"].as_i64(),
        seed_seconds,
        copy_vs_baseline: ratio(copy_seconds),
        read_only_vs_baseline: ratio(timeline.read_only_ms.map(|m| m as f64 / 1000.0)),
        copy_seconds,
        timeline,
        baseline,
        api_requests_total: requests.len() as u64,
        api_requests: tally(&requests),
        reconciles,
        operator_cpu_seconds,
        operator_rss_peak_mib,
        wall_seconds: 0.0,
        final_status: status,
    })
}

/// Polls the plan until a terminal phase, printing each phase as it is entered.
async fn wait_finished(b: &Bench, ns: &str, op: &Operator) -> anyhow::Result<serde_json::Value> {
    let start = Instant::now();
    let mut last = String::new();
    loop {
        let status = b.cluster.plan_status(ns, PLAN).await?;
        let phase = status["phase"].as_str().unwrap_or("").to_string();
        if phase != last {
            eprintln!("  {:>7.1} s  {phase}", start.elapsed().as_secs_f64());
            last = phase.clone();
        }
        match phase.as_str() {
            "Succeeded" => return Ok(status),
            "Failed" | "RolledBack" | "Rehearsed" => {
                let log = std::fs::read_to_string(&op.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                bail!(
                    "the plan ended {phase}: {}\noperator log tail (newest first):\n{}",
                    status["message"],
                    tail.join("\n")
                );
            }
            _ => {}
        }
        if start.elapsed() > Duration::from_secs(6 * 3600) {
            bail!("the plan did not finish within 6 h (phase {phase})");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
