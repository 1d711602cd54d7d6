//! `bench`: measures cutover on the local environment (issue #7): per data size, a full
//! UpgradePlan's phase times, read-only window and the operator's own overhead per
//! transition, beside the runbook's `mongodump | mongorestore` on the same data; and the
//! operator's footprint with 1, 100 or 1,000 finished plans. See docs/benchmarks.md.

pub mod app;
pub mod baseline;
pub mod cluster;
pub mod footprint;
pub mod history;
pub mod operator;
pub mod plan;
pub mod procfs;
pub mod proxy;
pub mod report;
pub mod seed;
pub mod sizes;
pub mod timeline;
pub mod upgrade;
pub mod window;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;

use cluster::Cluster;
use footprint::FinishedAs;
use plan::CloneMethod;
use proxy::Proxy;
use report::Report;
use sizes::Size;

/// What one benchmark run measures.
pub struct Options {
    pub sizes: Vec<Size>,
    /// The clone methods, each run on every size (`None`: left out of the plan).
    pub clone_methods: Vec<Option<CloneMethod>>,
    /// The runbook baseline, once per size (after its first plan that succeeds).
    pub baseline: bool,
    /// Writes per second through the app during each plan (0: none).
    pub write_rate: f64,
    pub writers: u32,
    /// How long to wait after `Succeeded` for an online plan's backup after the switch.
    pub backup_wait: Duration,
    /// How long an online plan may stay in `Syncing` before the run is given up.
    pub sync_limit: Duration,
    pub footprint: Vec<u64>,
    pub finished_as: Vec<FinishedAs>,
    pub idle: Duration,
    pub cutover: PathBuf,
    pub label: Option<String>,
    pub command: String,
}

/// What every measurement shares: the cluster, the counting proxy the operators talk
/// through, the `cutover` binary and a directory for logs.
pub struct Bench {
    pub cluster: Cluster,
    pub proxy: Proxy,
    pub proxy_kubeconfig: PathBuf,
    pub cutover: PathBuf,
    pub work_dir: PathBuf,
}

pub async fn run(opts: Options) -> anyhow::Result<Report> {
    let cluster = Cluster::connect().await?;
    let proxy = Proxy::start(cluster.client.clone()).await?;
    let work_dir = std::env::temp_dir().join(format!("cutover-bench-{}", cluster::unique()));
    std::fs::create_dir_all(&work_dir)?;
    let proxy_kubeconfig = proxy.write_kubeconfig(&work_dir)?;
    eprintln!(
        "operator logs and the proxy kubeconfig: {}",
        work_dir.display()
    );
    // A copy, so that a rebuild during a long run cannot change the binary between sizes.
    let cutover = work_dir.join("cutover");
    std::fs::copy(&opts.cutover, &cutover)
        .with_context(|| format!("copying {}", opts.cutover.display()))?;
    let b = Bench {
        cluster,
        proxy,
        proxy_kubeconfig,
        cutover,
        work_dir,
    };
    let mut report = Report {
        machine: procfs::machine(),
        started_at: jiff::Timestamp::now().to_string(),
        command: opts.command.clone(),
        operator_binary: opts.cutover.display().to_string(),
        label: opts.label.clone(),
        sizes: Vec::new(),
        failures: Vec::new(),
        footprint: Vec::new(),
    };
    for size in &opts.sizes {
        // The baseline runs once per size, after the first plan that succeeds.
        let mut baseline_done = false;
        for &method in &opts.clone_methods {
            let what = method.map_or("default", |m| m.as_str());
            eprintln!("size {} ({what}):", size.label);
            let t = Instant::now();
            let o = upgrade::RunOptions {
                clone_method: method,
                baseline: opts.baseline && !baseline_done,
                write_rate: opts.write_rate,
                writers: opts.writers,
                backup_wait: opts.backup_wait,
                sync_limit: opts.sync_limit,
            };
            match upgrade::run_size(&b, size, o).await {
                Ok(run) => {
                    eprintln!("  done in {:.0} s", t.elapsed().as_secs_f64());
                    baseline_done |= run.baseline.is_some();
                    report.sizes.push(run);
                }
                Err(e) => {
                    eprintln!("  FAILED after {:.0} s: {e:#}", t.elapsed().as_secs_f64());
                    report
                        .failures
                        .push((format!("{} {what}", size.label), format!("{e:#}")));
                }
            }
        }
    }
    let template = report.sizes.last().map(|s| s.final_status.clone());
    for &n in &opts.footprint {
        for &kind in &opts.finished_as {
            if kind == FinishedAs::Succeeded && template.is_none() {
                eprintln!(
                    "footprint {n} ({kind:?}): skipped, no plan succeeded in this run to copy the status of"
                );
                continue;
            }
            eprintln!("footprint: {n} plans ({kind:?})");
            match footprint::measure(&b, n, kind, template.as_ref(), opts.idle).await {
                Ok(f) => report.footprint.push(f),
                Err(e) => {
                    eprintln!("  FAILED: {e:#}");
                    report
                        .failures
                        .push((format!("footprint {n} {kind:?}"), format!("{e:#}")));
                }
            }
        }
    }
    // Dropping a live client at exit races its pool's tasks (the driver may panic).
    b.cluster.mongo.clone().shutdown().await;
    Ok(report)
}
