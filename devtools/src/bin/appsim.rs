//! appsim: a Squidex-like app for tests and the demo (see `cutover_devtools::appsim`).

use clap::{Parser, Subcommand};
use cutover_devtools::appsim::{self, config::Config, seed::Seed};

/// A Squidex-like app: migrates its MongoDB schema on start-up under a lock, then serves HTTP.
/// Configured by env: STORE__MONGODB__CONFIGURATION, STORE__MONGODB__DATABASE,
/// STORE__MONGODB__CONTENTDATABASE, MODE__ISREADONLY, APPSIM_LISTEN, APPSIM_IMAGE,
/// APPSIM_SCHEMA_VERSION, APPSIM_CRASH_AFTER_STEP, APPSIM_FAIL_MIGRATION, APPSIM_STEP_DELAY_MS,
/// APPSIM_RESTART_COUNT.
#[derive(Parser)]
#[command(name = "appsim", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Migrate, then serve HTTP (the default).
    Serve,
    /// Run only the migration (same lock protocol) and exit: 0 on success, 1 on failure.
    Migrate,
    /// Create a Squidex-shaped data set at a given schema version.
    Seed {
        /// MongoDB URI.
        #[arg(long, env = "MONGODB_URI")]
        uri: String,
        #[arg(long, default_value = "Squidex")]
        database: String,
        #[arg(long, default_value = "SquidexContent")]
        content_database: String,
        /// Number of content items (and events).
        #[arg(long, default_value_t = 100)]
        documents: u64,
        /// Schema version the data is at.
        #[arg(long, default_value_t = 1)]
        version: u32,
    },
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_ansi(false)
        .init();
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Seed {
            uri,
            database,
            content_database,
            documents,
            version,
        } => {
            appsim::seed::seed(&Seed {
                uri,
                database,
                content_database,
                documents,
                version,
            })
            .await
        }
        cmd => match Config::from_env() {
            Err(e) => Err(anyhow::anyhow!(e)),
            Ok(cfg) if matches!(cmd, Command::Migrate) => appsim::migrate_once(cfg).await,
            Ok(cfg) => appsim::serve(cfg).await,
        },
    };
    if let Err(e) = result {
        tracing::error!("{e:#}");
        eprintln!("appsim: {e:#}");
        std::process::exit(1);
    }
}
