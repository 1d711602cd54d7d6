//! load: a write load through an app's Service, and its checker (see
//! `cutover_devtools::load`). KUBECONFIG from env.
//!
//!   load run --namespace NS --service squidex --log writes.jsonl [--rate 50] [--writers 4]
//!   load check --log writes.jsonl --namespace NS --service squidex
//!   load check --log writes.jsonl --mongodb-uri URI --database DB [--collection C]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use cutover_devtools::load::{self, check, endpoints::Target};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Parser)]
#[command(name = "load", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes through the Service's ready pods until SIGTERM/SIGINT (or --duration), appending
    /// every write to the log; prints "load running" once started and the counts at the end.
    Run {
        #[arg(long)]
        namespace: String,
        #[arg(long)]
        service: String,
        /// Container port (default: the Service's targetPort).
        #[arg(long)]
        port: Option<u16>,
        #[arg(long)]
        log: PathBuf,
        /// Writes per second, all writers together.
        #[arg(long, default_value_t = 50.0)]
        rate: f64,
        #[arg(long, default_value_t = 4)]
        writers: u32,
        /// Prefix of the item ids (default: load-<unique>).
        #[arg(long)]
        run_id: Option<String>,
        /// Stop after this many seconds.
        #[arg(long)]
        duration: Option<f64>,
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Checks that every acknowledged write of a log is in the data the app serves now (or in
    /// a database); exits 1 if any is lost.
    Check {
        #[arg(long)]
        log: PathBuf,
        #[arg(long, required_unless_present = "database")]
        namespace: Option<String>,
        #[arg(long, required_unless_present = "database")]
        service: Option<String>,
        #[arg(long)]
        port: Option<u16>,
        #[arg(long, env = "MONGODB_URI", hide_env_values = true)]
        mongodb_uri: Option<String>,
        /// Read this database directly instead of going through the app.
        #[arg(long)]
        database: Option<String>,
        /// Its contents collection (default: the highest States_Contents_All<N>).
        #[arg(long, requires = "database")]
        collection: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    match run(Cli::parse().command).await {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("load: {e:#}");
            std::process::exit(2);
        }
    }
}

async fn run(cmd: Command) -> anyhow::Result<i32> {
    match cmd {
        Command::Run {
            namespace,
            service,
            port,
            log,
            rate,
            writers,
            run_id,
            duration,
            seed,
        } => {
            let client = kube::Client::try_default()
                .await
                .context("kube client from KUBECONFIG")?;
            let mut cfg = load::Config::new(
                Target {
                    namespace,
                    service,
                    port,
                },
                log,
            );
            cfg.rate = rate;
            cfg.writers = writers;
            if let Some(r) = run_id {
                cfg.run = r;
            }
            if let Some(s) = seed {
                cfg.seed = s;
            }
            let mut term = signal(SignalKind::terminate())?;
            let mut int = signal(SignalKind::interrupt())?;
            let running = load::start(client, cfg).await?;
            println!(
                "load running: run {} log {}",
                running.run,
                running.log.display()
            );
            let limit = duration.map_or(Duration::MAX, Duration::from_secs_f64);
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
                () = tokio::time::sleep(limit) => {}
            }
            let summary = running.stop().await;
            println!("{summary}");
            Ok(0)
        }
        Command::Check {
            log,
            namespace,
            service,
            port,
            mongodb_uri,
            database,
            collection,
            json,
        } => {
            let records = load::log::read(&log)?;
            let report = match database {
                Some(db) => {
                    let uri = mongodb_uri
                        .context("--mongodb-uri (or MONGODB_URI) is required with --database")?;
                    let client = mongodb::Client::with_uri_str(&uri).await?;
                    let db = client.database(&db);
                    let coll = match collection {
                        Some(c) => c,
                        None => check::contents_collection(&db).await?,
                    };
                    check::check_database(&db, &coll, &records).await?
                }
                None => {
                    let client = kube::Client::try_default()
                        .await
                        .context("kube client from KUBECONFIG")?;
                    let target = Target {
                        namespace: namespace.context("--namespace")?,
                        service: service.context("--service")?,
                        port,
                    };
                    check::check_http(&client, &target, &records).await?
                }
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{report}");
            }
            Ok(if report.lost.is_empty() { 0 } else { 1 })
        }
    }
}
