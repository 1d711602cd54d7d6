//! The operator's footprint at rest: `cutover run` started on a namespace holding N finished
//! UpgradePlans, left until every plan was reconciled, then watched idle: resident memory
//! (`VmRSS`, peak `VmHWM`), CPU time (`utime + stime`), its API requests (through the
//! counting proxy) and reconciles (`cutover_reconciles_total`).
//!
//! Finished plans are made two ways, both reported: `rejected` plans name an app that does
//! not exist, so the operator itself fails them at `Pending` (a real terminal status, but a
//! short one); `succeeded` plans get the status of a plan that really succeeded in this run,
//! written through the status subresource before the operator starts (the full audit trail,
//! as a cluster with a history of upgrades holds).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use kube::api::{Patch, PatchParams};
use serde::Serialize;
use serde_json::json;

use super::Bench;
use super::cluster::{MANAGER, now_ms, unique};
use super::operator::{Operator, sum_metric};
use super::plan::upgrade_plan;
use super::procfs;
use super::proxy::tally;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "camelCase")]
pub enum FinishedAs {
    Rejected,
    Succeeded,
}

#[derive(Serialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Footprint {
    pub plans: u64,
    pub finished_as: FinishedAs,
    /// Seconds to create the plans (before the operator starts).
    pub create_seconds: f64,
    /// From the operator's start to every plan reconciled and the reconcile count still.
    pub settle_seconds: f64,
    pub startup_cpu_seconds: f64,
    pub startup_requests: u64,
    pub startup_requests_per_plan: f64,
    pub startup_reconciles: u64,
    pub rss_settled_mib: f64,
    pub rss_idle_max_mib: f64,
    /// `VmHWM` at the end: the peak, start-up included.
    pub rss_peak_mib: f64,
    pub idle_seconds: f64,
    pub idle_cpu_seconds: f64,
    pub idle_cpu_percent: f64,
    pub idle_requests: BTreeMap<String, u64>,
    pub idle_requests_total: u64,
    pub idle_reconciles: u64,
}

fn mib(kib: u64) -> f64 {
    (kib as f64 / 1024.0 * 10.0).round() / 10.0
}

/// One footprint measurement; `template` is the status a `succeeded` plan gets.
pub async fn measure(
    b: &Bench,
    plans: u64,
    finished_as: FinishedAs,
    template: Option<&serde_json::Value>,
    idle: Duration,
) -> anyhow::Result<Footprint> {
    let ns = format!("bench-fp-{plans}-{}", unique());
    b.cluster.create_namespace(&ns).await?;
    let result = measure_in(b, &ns, plans, finished_as, template, idle).await;
    // Plans are deleted by `measure_in` while its operator still runs; this clears the rest.
    b.cluster.cleanup(&ns, &[], Duration::from_secs(1)).await;
    result
}

async fn measure_in(
    b: &Bench,
    ns: &str,
    plans: u64,
    finished_as: FinishedAs,
    template: Option<&serde_json::Value>,
    idle: Duration,
) -> anyhow::Result<Footprint> {
    let created = Instant::now();
    create_plans(b, ns, plans, finished_as, template).await?;
    let create_seconds = created.elapsed().as_secs_f64();
    eprintln!("  {plans} plans ({finished_as:?}) created in {create_seconds:.1} s");

    let tick = procfs::ticks_per_second() as f64;
    let start_ms = now_ms();
    let started = Instant::now();
    let op = Operator::start(&b.cutover, ns, &b.proxy_kubeconfig, &b.work_dir).await?;
    let settled = settle(&op, plans, finished_as).await;
    let settled_ms = now_ms();
    let outcome = async {
        let settle_seconds = (settled? - started).as_secs_f64();
        let cpu0 = procfs::cpu_ticks(op.pid).context("reading /proc/PID/stat")?;
        let (rss_settled, _) = procfs::memory_kib(op.pid).context("reading /proc/PID/status")?;
        let reconciles0 = op.reconciles().await?;
        eprintln!(
            "  settled after {settle_seconds:.1} s: {} MiB resident; idle for {} s",
            mib(rss_settled),
            idle.as_secs()
        );
        let idle_start = Instant::now();
        let mut rss_max = rss_settled;
        while idle_start.elapsed() < idle {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if let Some((rss, _)) = procfs::memory_kib(op.pid) {
                rss_max = rss_max.max(rss);
            }
        }
        let idle_seconds = idle_start.elapsed().as_secs_f64();
        let cpu1 = procfs::cpu_ticks(op.pid).context("reading /proc/PID/stat")?;
        let (_, hwm) = procfs::memory_kib(op.pid).context("reading /proc/PID/status")?;
        let reconciles1 = op.reconciles().await?;
        let startup = b.proxy.requests(start_ms, Some(settled_ms));
        let idle_reqs = b.proxy.requests(settled_ms, None);
        anyhow::Ok(Footprint {
            plans,
            finished_as,
            create_seconds,
            settle_seconds,
            startup_cpu_seconds: cpu0 as f64 / tick,
            startup_requests: startup.len() as u64,
            startup_requests_per_plan: startup.len() as f64 / plans as f64,
            startup_reconciles: reconciles0,
            rss_settled_mib: mib(rss_settled),
            rss_idle_max_mib: mib(rss_max),
            rss_peak_mib: mib(hwm),
            idle_seconds,
            idle_cpu_seconds: (cpu1 - cpu0) as f64 / tick,
            idle_cpu_percent: (cpu1 - cpu0) as f64 / tick / idle_seconds * 100.0,
            idle_requests_total: idle_reqs.len() as u64,
            idle_requests: tally(&idle_reqs),
            idle_reconciles: reconciles1 - reconciles0,
        })
    }
    .await;
    // Deleted while the operator lives, so it removes its finalizers itself.
    b.cluster
        .cleanup(ns, &[], Duration::from_secs(60 + plans / 5))
        .await;
    op.stop().await;
    outcome
}

async fn create_plans(
    b: &Bench,
    ns: &str,
    plans: u64,
    finished_as: FinishedAs,
    template: Option<&serde_json::Value>,
) -> anyhow::Result<()> {
    let template = match finished_as {
        FinishedAs::Succeeded => Some(template.context(
            "`succeeded` plans copy the status of a plan that succeeded in this run: measure a size too (--sizes)",
        )?),
        FinishedAs::Rejected => None,
    };
    let api = b.cluster.plans(ns);
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(0..plans)
        .map(|i| {
            let api = api.clone();
            async move {
                let name = format!("plan-{i:04}");
                // Databases that do not exist, an app that does not exist: a `rejected`
                // plan fails its pre-flight checks without touching anything.
                let plan = upgrade_plan(&name, "FootprintMain", "FootprintContent", None);
                let pp = PatchParams::apply(MANAGER).force();
                api.patch(&name, &pp, &Patch::Apply(&plan)).await?;
                if let Some(status) = template {
                    let body = json!({
                        "apiVersion": "cutover.dev/v1alpha1",
                        "kind": "UpgradePlan",
                        "status": status,
                    });
                    api.patch_status(&name, &pp, &Patch::Apply(&body)).await?;
                }
                Ok(())
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    results.into_iter().collect()
}

/// Waits until every plan was reconciled (the operator's store shows it finished) and the
/// reconcile count has not moved for 5 s; returns when it last moved.
async fn settle(op: &Operator, plans: u64, finished_as: FinishedAs) -> anyhow::Result<Instant> {
    let start = Instant::now();
    let (mut last, mut still_since) = (u64::MAX, Instant::now());
    loop {
        let text = op.metrics().await?;
        let reconciles = sum_metric(&text, "cutover_reconciles_total");
        let finished = match finished_as {
            FinishedAs::Rejected => sum_metric(&text, "cutover_plans{phase=\"Failed\"}"),
            FinishedAs::Succeeded => sum_metric(&text, "cutover_plans{phase=\"Succeeded\"}"),
        };
        if reconciles != last {
            (last, still_since) = (reconciles, Instant::now());
        }
        if finished >= plans
            && reconciles >= plans
            && still_since.elapsed() >= Duration::from_secs(5)
        {
            return Ok(still_since);
        }
        if start.elapsed() > Duration::from_secs(600) {
            bail!("not settled after 10 min: {finished}/{plans} finished, {reconciles} reconciles");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
