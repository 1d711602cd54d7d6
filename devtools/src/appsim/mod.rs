//! appsim, a Squidex-like app: on start it migrates its MongoDB schema under the
//! `Migration` document's lock (waiting while another instance holds it), then serves HTTP.
//! `migrate` is the same migration as a one-shot (a vendor's `upgrade_schema.sh` Job), and
//! `seed` creates a data set at a given version.

pub mod app;
pub mod config;
pub mod contents;
pub mod http;
pub mod migrate;
mod reply;
pub mod seed;
pub mod steps;

use std::sync::{Arc, atomic::AtomicBool};

use anyhow::Context as _;
use tokio::{
    net::TcpListener,
    signal::unix::{Signal, SignalKind, signal},
    sync::watch,
};

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
    let app = Arc::new(app::App {
        cfg: cfg.clone(),
        content: dbs.content.clone(),
        progress,
    });
    tokio::spawn(http::serve(listener, app));

    let mut stop = Stop::new()?;
    let Some(version) = migrate_or_stop(&dbs, &cfg, &mut stop, |p| {
        progress_tx.send_replace(p);
    })
    .await?
    else {
        std::process::exit(143);
    };
    tracing::info!(version, "ready: serving");
    stop.wait().await;
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
    let mut stop = Stop::new()?;
    let report = |p| tracing::debug!(?p, "progress");
    let Some(version) = migrate_or_stop(&dbs, &cfg, &mut stop, report).await? else {
        std::process::exit(143);
    };
    println!("migrated: schema version {version}");
    Ok(())
}

/// Migrates unless SIGTERM/SIGINT comes first; then the step in flight is abandoned (its
/// half-built collection is rebuilt by the next run, `Version` is not advanced) and the lock
/// is released if held — Squidex unlocks in a `finally` on shutdown too. `None` if stopped.
async fn migrate_or_stop(
    dbs: &Databases,
    cfg: &Config,
    stop: &mut Stop,
    report: impl Fn(Progress),
) -> anyhow::Result<Option<u32>> {
    let holding = AtomicBool::new(false);
    tokio::select! {
        res = migrate::run(dbs, cfg, &holding, report) => res.map(Some),
        () = stop.wait() => {
            tracing::warn!("stopped during the migration");
            migrate::release(dbs, &holding).await;
            Ok(None)
        }
    }
}

/// SIGTERM/SIGINT, installed before any work so a stop is never the default "die now".
struct Stop {
    term: Signal,
    int: Signal,
}

impl Stop {
    fn new() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn wait(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}
