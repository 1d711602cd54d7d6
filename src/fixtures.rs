//! The Squidex-style UpgradePlan that unit tests, integration tests and the benchmark start
//! from: one app on two databases (main and content), the read-only switch, a backup volume
//! and the migration-document gate. Each user starts from a preset and changes what it needs,
//! so the plan is written down once and a new spec field is added in one place.
//!
//! Not part of the operator: public only so `tests/` and `devtools` can use it.

use serde_json::{Value, json};

use crate::crd::{CloneMethod, UpgradePlan, UpgradePlanSpec};
use crate::plan::targets;

/// The image of the Squidex-like app simulator at a schema version.
pub fn appsim_image(version: u32) -> String {
    format!("cutover.dev/appsim:{version}")
}

/// The clone the operator makes of database `db` for plan `plan` (no `cloneName` set).
pub fn clone_of(db: &str, plan: &str) -> String {
    let spec = SquidexPlan {
        db: db.into(),
        ..SquidexPlan::unit()
    }
    .spec();
    targets(&spec, plan, None)
        .clone_of(db)
        .expect("the plan's own database")
        .to_string()
}

/// `spec.timeouts`, as Go durations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub rollout: String,
    pub backup: String,
    pub clone: String,
}

impl Timeouts {
    pub fn new(rollout: &str, backup: &str, clone: &str) -> Timeouts {
        Timeouts {
            rollout: rollout.into(),
            backup: backup.into(),
            clone: clone.into(),
        }
    }
}

/// A Squidex-style plan, field by field. `None` leaves a field out of the spec (its default).
#[derive(Clone, Debug, PartialEq)]
pub struct SquidexPlan {
    pub deployment: String,
    pub service: String,
    /// The main database; the migration document lives here.
    pub db: String,
    pub content_db: String,
    pub target_image: String,
    /// `migration.mongoDocument.targetVersion`.
    pub target_version: u32,
    /// Whether `readOnly.verify` probes that `POST /api/contents` is refused.
    pub verify_read_only: bool,
    pub backup_image: Option<String>,
    pub clone_method: Option<CloneMethod>,
    pub stale_lock_after: String,
    /// `migration.timeout`.
    pub timeout: String,
    /// `cleanup.scaleDownBlueAfter`.
    pub scale_down_after: String,
    pub timeouts: Option<Timeouts>,
}

impl SquidexPlan {
    /// The pure unit tests' plan: the real Squidex image, databases `Squidex` and
    /// `SquidexContent`, defaults wherever the spec has one.
    pub fn unit() -> SquidexPlan {
        SquidexPlan {
            deployment: "squidex".into(),
            service: "squidex".into(),
            db: "Squidex".into(),
            content_db: "SquidexContent".into(),
            target_image: "squidex/squidex:7.0.0".into(),
            target_version: 2,
            verify_read_only: false,
            backup_image: None,
            // The tests were written for restore's phase order (backup before the clone);
            // the default, `auto`, asks the server, which these worlds do not answer.
            clone_method: Some(CloneMethod::Restore),
            stale_lock_after: "1m".into(),
            timeout: "10m".into(),
            scale_down_after: "0s".into(),
            timeouts: None,
        }
    }

    /// The integration tests' plan: the app simulator upgraded to `target_version` on the
    /// given databases, with deadlines short enough for a test to fail fast.
    pub fn appsim(db: &str, content_db: &str, target_version: u32) -> SquidexPlan {
        SquidexPlan {
            deployment: "squidex".into(),
            service: "squidex".into(),
            db: db.into(),
            content_db: content_db.into(),
            target_image: appsim_image(target_version),
            target_version,
            verify_read_only: true,
            backup_image: Some("mongo:7.0".into()),
            // Restore's phase order, which these tests check; the default, `auto`, would
            // choose `online` on the local server.
            clone_method: Some(CloneMethod::Restore),
            stale_lock_after: "20s".into(),
            timeout: "3m".into(),
            // Succeeded is reached without a wait that only adds a timer.
            scale_down_after: "1s".into(),
            timeouts: Some(Timeouts::new("2m", "3m", "3m")),
        }
    }

    pub fn spec_json(&self) -> Value {
        let mut read_only = json!({"env": {"name": "MODE__ISREADONLY", "value": "true"}});
        if self.verify_read_only {
            read_only["verify"] = json!({"http": {
                "method": "POST", "path": "/api/contents", "port": 8080, "body": "{\"probe\":true}"
            }});
        }
        let mut backup = json!({"volume": {"claimName": "backups"}});
        if let Some(image) = &self.backup_image {
            backup["image"] = json!(image);
        }
        if let Some(method) = self.clone_method {
            backup["cloneMethod"] = serde_json::to_value(method).expect("a CloneMethod serializes");
        }
        let mut spec = json!({
            "app": {"deployment": self.deployment, "service": self.service},
            "target": {"image": self.target_image},
            "readOnly": read_only,
            "database": {
                "connectionSecret": {"name": "mongo", "key": "uri"},
                "databases": [
                    {"name": self.db, "env": ["STORE__MONGODB__DATABASE"]},
                    {"name": self.content_db, "env": ["STORE__MONGODB__CONTENTDATABASE"]}
                ]
            },
            "backup": backup,
            "migration": {
                "mongoDocument": {
                    "database": self.db,
                    "targetVersion": self.target_version,
                    "staleLockAfter": self.stale_lock_after
                },
                "timeout": self.timeout
            },
            "cleanup": {"scaleDownBlueAfter": self.scale_down_after}
        });
        if let Some(t) = &self.timeouts {
            spec["timeouts"] = json!({"rollout": t.rollout, "backup": t.backup, "clone": t.clone});
        }
        spec
    }

    pub fn spec(&self) -> UpgradePlanSpec {
        serde_json::from_value(self.spec_json()).expect("the fixture spec parses")
    }

    /// The whole object, as applied to the API server.
    pub fn object_json(&self, name: &str) -> Value {
        json!({
            "apiVersion": "cutover.dev/v1alpha1",
            "kind": "UpgradePlan",
            "metadata": {"name": name},
            "spec": self.spec_json()
        })
    }

    /// The typed object (no namespace, no uid).
    pub fn object(&self, name: &str) -> UpgradePlan {
        UpgradePlan::new(name, self.spec())
    }

    /// The clone of the main database that plan `plan` makes.
    pub fn clone_db(&self, plan: &str) -> String {
        clone_of(&self.db, plan)
    }

    pub fn clone_content_db(&self, plan: &str) -> String {
        clone_of(&self.content_db, plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_parses() {
        let unit = SquidexPlan::unit().spec();
        assert_eq!(unit.database.databases.len(), 2);
        let appsim = SquidexPlan {
            clone_method: Some(CloneMethod::ServerSide),
            ..SquidexPlan::appsim("Sq_1", "SqC_1", 3)
        };
        let spec = appsim.spec();
        assert_eq!(spec.backup.clone_method, CloneMethod::ServerSide);
        assert_eq!(spec.target.image, "cutover.dev/appsim:3");
        assert!(spec.read_only.verify.is_some());
    }

    #[test]
    fn clones_follow_the_operators_naming_rule() {
        let p = SquidexPlan::appsim("Sq_1", "SqC_1", 2);
        let spec = p.spec();
        assert_eq!(
            Some(p.clone_db("up").as_str()),
            targets(&spec, "up", None).clone_of("Sq_1")
        );
        assert_eq!(p.clone_db("up"), "Sq_1-up");
        assert_eq!(p.clone_content_db("up"), "SqC_1-up");
    }
}
