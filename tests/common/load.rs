//! A write load through an app's Service while a test runs (`cutover_devtools::load`), its
//! log in a temporary file, and the plan's read-only window to judge its refusals by.

use std::time::{Duration, Instant};

use cutover::crd::{Phase, UpgradePlan};
use cutover_devtools::load::{self, Load, endpoints::Target};

use super::{App, Env};

impl Env {
    /// Starts `rate` writes/s (4 writers) through Service `squidex` of the app; the log is
    /// `<tmp>/cutover-load-<ns>.jsonl`.
    pub async fn start_load(&self, app: &App, rate: f64) -> Load {
        let log = std::env::temp_dir().join(format!("cutover-load-{}.jsonl", app.ns));
        let _ = std::fs::remove_file(&log);
        let mut cfg = load::Config::new(self.load_target(app), log);
        cfg.rate = rate;
        cfg.run = format!("load-{}", app.id);
        load::start(self.client.clone(), cfg)
            .await
            .expect("start the write load")
    }

    /// Service `squidex` of the app, where its users reach it.
    pub fn load_target(&self, app: &App) -> Target {
        Target {
            namespace: app.ns.clone(),
            service: "squidex".into(),
            port: None,
        }
    }
}

/// Waits until the load has `n` more acknowledged writes than `from` (panics after 30 s).
pub async fn wait_acked(load: &Load, from: u64, n: u64) {
    let start = Instant::now();
    while load.summary().acked < from + n {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the load got {} acknowledged writes in 30 s, wanted {n}: {}",
            load.summary().acked - from,
            load.summary()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The app's read-only window as a plan recorded it, in Unix ms: from `readOnlySince` to the
/// end of `LiftingReadOnly` (the new version rolled out read-write).
pub fn read_only_window(plan: &UpgradePlan) -> (i64, i64) {
    let st = plan.status.as_ref().expect("status");
    let since = st.read_only_since.expect("readOnlySince").as_millis();
    let end = st
        .phases
        .iter()
        .find(|p| p.name == Phase::LiftingReadOnly)
        .and_then(|p| p.finished_at)
        .expect("LiftingReadOnly finished")
        .as_millis();
    (since, end)
}
