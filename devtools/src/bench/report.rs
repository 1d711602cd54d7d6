//! The benchmark's results: one JSON document and the tables printed at the end.

use std::fmt::Write;

use serde::Serialize;

use super::footprint::Footprint;
use super::procfs::Machine;
use super::upgrade::SizeRun;

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub machine: Machine,
    /// RFC 3339, when the run started.
    pub started_at: String,
    pub command: String,
    /// The `cutover` binary measured, and what it was built from (`--label`).
    pub operator_binary: String,
    pub label: Option<String>,
    pub sizes: Vec<SizeRun>,
    /// Sizes that failed, with the error.
    pub failures: Vec<(String, String)>,
    pub footprint: Vec<Footprint>,
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.digits$}"))
}

fn secs(ms: Option<i64>) -> String {
    opt(ms.map(|m| m as f64 / 1000.0), 1)
}

fn mib(bytes: Option<u64>) -> String {
    opt(bytes.map(|b| b as f64 / 1024.0 / 1024.0), 2)
}

/// The summary table (one row a size), then each size's phases and transitions.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let m = &r.machine;
    let _ = writeln!(
        out,
        "machine: {} processors ({}), {} GiB, Linux {}; load average at start {}",
        m.processors, m.cpu_model, m.memory_gib, m.kernel, m.load_average
    );
    let _ = writeln!(
        out,
        "server: WiredTiger cache {}",
        m.mongo_cache_size.as_deref().unwrap_or("unknown")
    );
    let _ = writeln!(
        out,
        "operator: {}{}",
        r.operator_binary,
        r.label
            .as_ref()
            .map_or(String::new(), |l| format!(" ({l})"))
    );
    if !r.sizes.is_empty() {
        let _ = writeln!(
            out,
            "\n| size | clone method | documents | data MiB | backup MiB | backup s | clone s | backup+clone s | baseline s | ratio | read-only s | ratio | whole plan s | overhead p95 ms | overhead total ms | API requests | reconciles |"
        );
        let _ = writeln!(
            out,
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for s in &r.sizes {
            let phase = |n: &str| {
                s.timeline
                    .phases
                    .iter()
                    .find(|p| p.name == n)
                    .and_then(|p| p.seconds)
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                s.size,
                s.clone_method.map_or("restore (default)", |c| c.as_str()),
                s.documents_total,
                mib(s.source_bytes),
                mib(s.backup_bytes.map(|b| b as u64)),
                opt(phase("BackingUp"), 1),
                opt(phase("Cloning"), 1),
                opt(s.copy_seconds, 1),
                opt(s.baseline.as_ref().map(|b| b.seconds), 1),
                opt(s.copy_vs_baseline, 2),
                secs(s.timeline.read_only_ms),
                opt(s.read_only_vs_baseline, 2),
                secs(s.timeline.total_ms),
                s.timeline
                    .overhead_p95_ms
                    .map_or("-".into(), |v| v.to_string()),
                s.timeline.overhead_total_ms,
                s.api_requests_total,
                s.reconciles,
            );
        }
        for s in &r.sizes {
            let _ = writeln!(out, "\n{}: phases (wall seconds)", s.size);
            let _ = writeln!(out, "| phase | seconds |\n|---|---:|");
            for p in &s.timeline.phases {
                let _ = writeln!(out, "| {} | {} |", p.name, opt(p.seconds, 2));
            }
            let _ = writeln!(out, "\n{}: operator overhead per transition", s.size);
            let _ = writeln!(
                out,
                "| phase | completing event | operator's next side effect | ms |\n|---|---|---|---:|"
            );
            for t in &s.timeline.transitions {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} |",
                    t.phase,
                    t.trigger,
                    t.effect,
                    t.overhead_ms.map_or("-".into(), |v| v.to_string())
                );
            }
        }
    }
    if !r.sizes.is_empty() {
        out.push_str(&online_table(r));
    }
    for (size, err) in &r.failures {
        let _ = writeln!(out, "\n{size}: FAILED: {err}");
    }
    if !r.footprint.is_empty() {
        let _ = writeln!(
            out,
            "\n| plans | finished as | settle s | start-up CPU s | start-up requests/plan | RSS settled MiB | RSS idle max MiB | RSS peak MiB | idle s | idle CPU s | idle CPU % | idle requests | idle reconciles |"
        );
        let _ = writeln!(
            out,
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for f in &r.footprint {
            let _ = writeln!(
                out,
                "| {} | {:?} | {:.1} | {:.2} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} | {:.2} | {:.2} | {} | {} |",
                f.plans,
                f.finished_as,
                f.settle_seconds,
                f.startup_cpu_seconds,
                f.startup_requests_per_plan,
                f.rss_settled_mib,
                f.rss_idle_max_mib,
                f.rss_peak_mib,
                f.idle_seconds,
                f.idle_cpu_seconds,
                f.idle_cpu_percent,
                f.idle_requests_total,
                f.idle_reconciles,
            );
        }
    }
    out
}

/// Issue #15's table: per size × method the whole plan, the read-only window and its split,
/// the sync's throughput and lag, the backup after the switch and the write load; then the
/// runbook baseline per size.
pub fn online_table(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n| size | method | whole plan s | read-only s | copy / sync drain s | rollouts s | migration s | switch s | other s | read-only − migration s | syncing s | bulk docs/s | lag max s | lag at read-only s | backup after switch s | writes/s | writes acked | refused | in doubt | acked lost |"
    );
    let _ = writeln!(
        out,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let int = |v: Option<i64>| v.map_or("-".into(), |v| v.to_string());
    for s in &r.sizes {
        let w = &s.window;
        let online = s.clone_method == Some(super::plan::CloneMethod::Online);
        let na = |v: String| if online { v } else { "n/a".to_string() };
        let backup = if online {
            opt(s.backup_after_switch.seconds, 1).replace('-', "n/a")
        } else {
            "before the window".into()
        };
        let (rate, acked, refused, doubt, lost) = match &s.writes {
            Some(x) => (
                format!("{:.0}", x.rate),
                x.summary.acked.to_string(),
                x.summary.refused.to_string(),
                x.summary.in_doubt.to_string(),
                x.lost.map_or("not checked".into(), |l| l.to_string()),
            ),
            None => ("0".into(), "-".into(), "-".into(), "-".into(), "-".into()),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            s.size,
            s.clone_method.map_or("restore (default)", |c| c.as_str()),
            secs(s.timeline.total_ms),
            opt(w.read_only, 1),
            opt(w.copy, 1),
            opt(w.rollouts, 1),
            opt(w.migration, 1),
            opt(w.switch, 1),
            opt(w.other, 1),
            opt(w.minus_migration, 1),
            na(opt(s.sync.syncing_seconds, 1)),
            na(opt(s.sync.bulk_docs_per_second, 0)),
            na(int(s.sync.max_lag_seconds)),
            na(int(s.sync.lag_at_read_only_seconds)),
            backup,
            rate,
            acked,
            refused,
            doubt,
            lost,
        );
    }
    for s in r.sizes.iter().filter(|s| s.baseline.is_some()) {
        let b = s.baseline.as_ref().expect("filtered");
        let per: Vec<String> = b.databases.iter().map(|(_, t)| format!("{t:.1}")).collect();
        let _ = writeln!(
            out,
            "| {} | runbook baseline (dump \\| restore, copy only: {} s) | - | ≥ {:.1} | {:.1} | - | - | - | - | ≥ {:.1} | n/a | n/a | n/a | n/a | n/a | - | - | - | - | - |",
            s.size,
            per.join(" + "),
            b.seconds,
            b.seconds,
            b.seconds,
        );
    }
    out
}
