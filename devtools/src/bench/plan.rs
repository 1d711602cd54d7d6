//! The UpgradePlan the benchmark applies: the Squidex plan of the tests (two databases, the
//! migration-document gate, automatic promotion), with deadlines long enough for 1M documents.

use serde_json::json;

use super::app::{DEPLOYMENT, SERVICE};

/// How the clones are made; passed through as `spec.backup.cloneMethod` only when given, so
/// the benchmark runs against an operator that does not know the field yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum CloneMethod {
    Restore,
    #[value(name = "serverSide")]
    ServerSide,
}

impl CloneMethod {
    pub fn as_str(&self) -> &'static str {
        match self {
            CloneMethod::Restore => "restore",
            CloneMethod::ServerSide => "serverSide",
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
    let mut backup = json!({"image": "mongo:7.0", "volume": {"claimName": "backups"}});
    if let Some(m) = clone_method {
        backup["cloneMethod"] = json!(m.as_str());
    }
    json!({
        "apiVersion": "cutover.dev/v1alpha1",
        "kind": "UpgradePlan",
        "metadata": {"name": name},
        "spec": {
            "app": {"deployment": DEPLOYMENT, "service": SERVICE},
            "target": {"image": format!("cutover.dev/appsim:{TARGET_VERSION}")},
            "readOnly": {
                "env": {"name": "MODE__ISREADONLY", "value": "true"},
                "verify": {"http": {"method": "POST", "path": "/api/contents", "port": 8080, "body": "{\"probe\":true}"}}
            },
            "database": {
                "connectionSecret": {"name": "mongo", "key": "uri"},
                "databases": [
                    {"name": db, "env": ["STORE__MONGODB__DATABASE"]},
                    {"name": content_db, "env": ["STORE__MONGODB__CONTENTDATABASE"]}
                ]
            },
            "backup": backup,
            "migration": {
                // A long migration holds the lock for minutes; only a crash should look stale.
                "mongoDocument": {"database": db, "targetVersion": TARGET_VERSION, "staleLockAfter": "2h"},
                "timeout": "3h"
            },
            // The old version is scaled down 1 s after the switch, so Succeeded is reached
            // without a wait that would only add a timer to the measurement.
            "cleanup": {"scaleDownBlueAfter": "1s"},
            "timeouts": {"rollout": "10m", "backup": "3h", "clone": "3h"}
        }
    })
}

/// The clone of `db` the operator makes for `plan` (its naming rule for short names).
pub fn clone_name(db: &str, plan: &str) -> String {
    format!("{db}-{plan}")
}
