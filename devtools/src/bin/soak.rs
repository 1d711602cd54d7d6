//! soak: many upgrades at once under faults, with users writing (see
//! `cutover_devtools::soak` and docs/reliability.md). Run through `hack/soak`, which builds
//! and brings the environment up first.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use cutover_devtools::soak;

/// Deploys apps, writes through them, upgrades them in waves under seeded faults and checks
/// that every plan ended as intended and no acknowledged write was lost. Needs
/// `eval "$(hack/dev-env env)"`. Exits 1 on any violation.
#[derive(Parser)]
#[command(name = "soak")]
struct Cli {
    /// Apps (one namespace and one UpgradePlan each).
    #[arg(long, default_value_t = 4)]
    apps: usize,
    /// Waves the plans are applied in.
    #[arg(long, default_value_t = 2)]
    waves: usize,
    /// Seconds between waves.
    #[arg(long, default_value_t = 20)]
    wave_gap: u64,
    /// Faults injected while the plans run.
    #[arg(long, default_value_t = 3)]
    faults: usize,
    /// Seeds the plans' mix and the faults' schedule.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Writes per second per app.
    #[arg(long, default_value_t = 8.0)]
    rate: f64,
    /// Seconds a plan may take to reach a terminal phase.
    #[arg(long, default_value_t = 600)]
    plan_timeout: u64,
    /// The cutover binary (default: next to this one, else PATH).
    #[arg(long)]
    cutover: Option<PathBuf>,
    /// Leave the apps' namespaces and databases in place.
    #[arg(long)]
    keep: bool,
    /// The clone methods drawn from (comma-separated: restore, serverSide, online).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "restore,serverSide,online"
    )]
    methods: Vec<String>,
    /// The kinds of fault dealt (comma-separated): kill-leader, restart-mongo,
    /// delete-job-pod, restart-podsim, restart-apiserver, compact-etcd.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "kill-leader,restart-mongo,delete-job-pod,restart-podsim,restart-apiserver,compact-etcd"
    )]
    fault_kinds: Vec<String>,
    /// Print the apps' plans and the fault schedule the seed gives, and stop.
    #[arg(long)]
    dry_run: bool,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("soak: {e:#}");
            std::process::exit(2);
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<bool> {
    let opts = soak::Options {
        apps: cli.apps,
        waves: cli.waves.max(1),
        wave_gap: cli.wave_gap,
        faults: cli.faults,
        seed: cli.seed,
        rate: cli.rate,
        cutover: cutover_devtools::bench::operator::find_cutover(cli.cutover)?,
        repo: std::env::current_dir()?,
        plan_timeout: Duration::from_secs(cli.plan_timeout),
        keep: cli.keep,
        dry_run: cli.dry_run,
        methods: cli
            .methods
            .iter()
            .map(|m| {
                serde_json::from_value(serde_json::Value::String(m.clone()))
                    .map_err(|_| anyhow::anyhow!("unknown clone method {m:?}"))
            })
            .collect::<anyhow::Result<_>>()?,
        fault_kinds: cli
            .fault_kinds
            .iter()
            .map(|f| soak::faults::parse(f))
            .collect::<anyhow::Result<_>>()?,
    };
    let dry_run = opts.dry_run;
    let out = soak::run(opts).await?;
    if dry_run {
        return Ok(true);
    }
    println!(
        "soak: seed {}, {} apps, {} faults, {:.0} s",
        cli.seed,
        cli.apps,
        out.faults.len(),
        out.elapsed.as_secs_f64()
    );
    for f in &out.faults {
        println!("  fault +{:.1} s {}: {}", f.at_s, f.fault.label(), f.detail);
    }
    // Each distinct exit once, with how often (a replica that cannot reach a restarting API
    // server exits again at each back-off).
    let mut exits: Vec<(&String, usize)> = Vec::new();
    for r in &out.operator_restarts {
        match exits.iter_mut().find(|(m, _)| *m == r) {
            Some((_, n)) => *n += 1,
            None => exits.push((r, 1)),
        }
    }
    for (m, n) in exits {
        println!("  operator replica {m} (x{n}; started again, as restartPolicy: Always would)");
    }
    print!("{}", soak::check::table(&out.rows));
    for v in &out.violations {
        println!("VIOLATION run: {v}");
    }
    let ok = out.rows.iter().all(|r| r.violations.is_empty()) && out.violations.is_empty();
    println!("{}", if ok { "soak: PASS" } else { "soak: FAIL" });
    Ok(ok)
}
