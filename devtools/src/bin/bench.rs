//! bench: measures cutover on the local environment (see `cutover_devtools::bench` and
//! docs/benchmarks.md). Run through `hack/bench`, which builds first.

use std::path::PathBuf;

use clap::Parser;
use cutover_devtools::bench::{self, footprint::FinishedAs, plan::CloneMethod, report, sizes};

/// Seeds each size into two databases, runs one UpgradePlan end to end with `cutover run`,
/// times the runbook's mongodump | mongorestore on the same data, and measures the
/// operator's footprint with many finished plans. Needs `eval "$(hack/dev-env env)"`.
#[derive(Parser)]
#[command(name = "bench")]
struct Cli {
    /// Data sizes: 10k, 100k, 1m (content items, plus as many events) and 100mb (large
    /// documents); `none` for only the footprint.
    #[arg(long, default_value = "10k")]
    sizes: String,
    /// Sets spec.backup.cloneMethod, e.g. `restore,serverSide,online`: each size is run once
    /// per method. Left out of the plan when not given (the operator's default).
    #[arg(
        long = "methods",
        alias = "clone-method",
        value_enum,
        value_delimiter = ','
    )]
    methods: Vec<CloneMethod>,
    /// Writes per second through the app (inserts, updates, deletes; every acknowledged one
    /// checked through the new version at the end) while each plan runs; 0: no load.
    #[arg(long, default_value_t = 100.0)]
    write_rate: f64,
    /// Concurrent writers of the load.
    #[arg(long, default_value_t = 8)]
    writers: u32,
    /// Seconds to wait after Succeeded for an online plan's backup after the switch.
    #[arg(long, default_value_t = 900)]
    backup_wait: u64,
    /// Seconds an online plan may stay in Syncing (not caught up to maxLag) before the size
    /// is given up and reported as not caught up.
    #[arg(long, default_value_t = 600)]
    sync_limit: u64,
    /// Skip the mongodump | mongorestore baseline.
    #[arg(long)]
    no_baseline: bool,
    /// Plan counts for the footprint, e.g. 1,100,1000 (empty: no footprint).
    #[arg(long, value_delimiter = ',')]
    footprint: Vec<u64>,
    /// How the footprint's plans are finished.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "rejected,succeeded"
    )]
    footprint_plans: Vec<FinishedAs>,
    /// Seconds the operator is watched idle in each footprint measurement.
    #[arg(long, default_value_t = 60)]
    idle: u64,
    /// Write the results as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// The cutover binary (default: next to this one, else PATH).
    #[arg(long)]
    cutover: Option<PathBuf>,
    /// What the cutover binary was built from, for the report (e.g. `release build of abc1234`).
    #[arg(long)]
    label: Option<String>,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        eprintln!("bench: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let opts = bench::Options {
        sizes: sizes::parse_sizes(&cli.sizes)?,
        clone_methods: if cli.methods.is_empty() {
            vec![None]
        } else {
            cli.methods.into_iter().map(Some).collect()
        },
        baseline: !cli.no_baseline,
        write_rate: cli.write_rate,
        writers: cli.writers,
        backup_wait: std::time::Duration::from_secs(cli.backup_wait),
        sync_limit: std::time::Duration::from_secs(cli.sync_limit),
        footprint: cli.footprint,
        finished_as: cli.footprint_plans,
        idle: std::time::Duration::from_secs(cli.idle),
        cutover: bench::operator::find_cutover(cli.cutover)?,
        label: cli.label,
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    let report = bench::run(opts).await?;
    print!("{}", report::render(&report));
    if let Some(path) = cli.json {
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
        eprintln!("wrote {}", path.display());
    }
    if !report.failures.is_empty() {
        anyhow::bail!("{} measurement(s) failed", report.failures.len());
    }
    Ok(())
}
