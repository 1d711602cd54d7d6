//! The UpgradePlan the benchmark applies: the Squidex plan of the tests (two databases, the
//! migration-document gate, automatic promotion), with deadlines long enough for 1M documents.

use cutover::fixtures::{SquidexPlan, Timeouts};

use super::app::{DEPLOYMENT, SERVICE};

/// How the clones are made; passed through as `spec.backup.cloneMethod` only when given, so
/// the benchmark runs against an operator that does not know the field yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum CloneMethod {
    Restore,
    #[value(name = "serverSide")]
    ServerSide,
    /// Copy while the app takes writes and follow its changes (issue #15).
    Online,
}

impl CloneMethod {
    pub fn as_str(&self) -> &'static str {
        match self {
            CloneMethod::Restore => "restore",
            CloneMethod::ServerSide => "serverSide",
            CloneMethod::Online => "online",
        }
    }
}

impl From<CloneMethod> for cutover::crd::CloneMethod {
    fn from(m: CloneMethod) -> Self {
        match m {
            CloneMethod::Restore => cutover::crd::CloneMethod::Restore,
            CloneMethod::ServerSide => cutover::crd::CloneMethod::ServerSide,
            CloneMethod::Online => cutover::crd::CloneMethod::Online,
        }
    }
}

/// The version the plan upgrades to (blue runs `appsim:1`).
pub const TARGET_VERSION: u32 = 2;

pub fn upgrade_plan(
    name: &str,
    db: &str,
    content_db: &str,
    clone_method: Option<CloneMethod>,
) -> serde_json::Value {
    SquidexPlan {
        deployment: DEPLOYMENT.into(),
        service: SERVICE.into(),
        clone_method: clone_method.map(Into::into),
        // A long migration holds the lock for minutes; only a crash should look stale.
        stale_lock_after: "2h".into(),
        timeout: "3h".into(),
        // The old version is scaled down 1 s after the switch (the preset), so Succeeded is
        // reached without a wait that would only add a timer to the measurement.
        timeouts: Some(Timeouts::new("10m", "3h", "3h")),
        ..SquidexPlan::appsim(db, content_db, TARGET_VERSION)
    }
    .object_json(name)
}
