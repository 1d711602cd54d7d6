//! appsim, a Squidex-like app: on start it migrates its MongoDB schema under the
//! `Migration` document's lock (waiting while another instance holds it), then serves HTTP.
//! `migrate` is the same migration as a one-shot (a vendor's `upgrade_schema.sh` Job), and
//! `seed` creates a data set at a given version.

pub mod config;
pub mod http;
pub mod migrate;
pub mod seed;
pub mod steps;

use std::sync::Arc;

use anyhow::Context as _;
use tokio::{net::TcpListener, sync::watch};

use config::Config;
use migrate::{Databases, Progress};

/// `appsim serve`: listen first (health answers 503 while migrating), migrate, then serve
/// until SIGTERM/SIGINT. A failed migration ends the process with an error (exit 1).
pub async fn serve(cfg: Config) -> anyhow::Result<()> {
    tracing::info!(
        image = ?cfg.image,
        schema_version = cfg.target_version,
        database = %cfg.database,
        content_database = %cfg.content_database,
        read_only = cfg.read_only,
        listen = %cfg.listen,
        pod = ?cfg.pod,
        "appsim starting"
    );
    let client = mongodb::Client::with_uri_str(&cfg.uri)
        .await
        .context("parsing STORE__MONGODB__CONFIGURATION")?;
    let dbs = Databases::new(&client, &cfg);
    let listener = TcpListener::bind(&cfg.listen)
        .await
        .with_context(|| format!("binding {}", cfg.listen))?;
    let (progress_tx, progress) = watch::channel(Progress::WaitingForLock);
    let app = Arc::new(http::App {
        cfg: cfg.clone(),
        content: dbs.content.clone(),
        progress,
    });
    tokio::spawn(http::serve(listener, app));

    let version = migrate::run(&dbs, &cfg, |p| {
        progress_tx.send_replace(p);
    })
    .await?;
    tracing::info!(version, "ready: serving");
    wait_for_shutdown().await?;
    tracing::info!("shutting down");
    Ok(())
}

/// `appsim migrate`: only the migration (same lock protocol), then exit.
pub async fn migrate_once(cfg: Config) -> anyhow::Result<()> {
    tracing::info!(
        image = ?cfg.image,
        schema_version = cfg.target_version,
        database = %cfg.database,
        content_database = %cfg.content_database,
        "appsim migrate"
    );
    let client = mongodb::Client::with_uri_str(&cfg.uri)
        .await
        .context("parsing STORE__MONGODB__CONFIGURATION")?;
    let dbs = Databases::new(&client, &cfg);
    let version = migrate::run(&dbs, &cfg, |p| tracing::debug!(?p, "progress")).await?;
    println!("migrated: schema version {version}");
    Ok(())
}

async fn wait_for_shutdown() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
