//! Standard Kubernetes conditions on the plan's status.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::Timestamp;

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";
pub const READ_ONLY: &str = "ReadOnly";
pub const BACKUP_VERIFIED: &str = "BackupVerified";
pub const MIGRATED: &str = "Migrated";
pub const MIGRATION_LOCK_STALE: &str = "MigrationLockStale";
pub const DATA_DIVERGED: &str = "DataDiverged";
pub const CLEANUP_BLOCKED: &str = "CleanupBlocked";
pub const ROLLBACK_BLOCKED: &str = "RollbackBlocked";
pub const SPEC_CHANGE_IGNORED: &str = "SpecChangeIgnored";
pub const RECONCILE_FAILING: &str = "ReconcileFailing";
/// The plan may hold claims in the registry on the MongoDB server (see `plan::claims`).
pub const CLAIMED: &str = "Claimed";

/// Sets a condition, keeping its lastTransitionTime unless its status changes.
/// Returns true when the status changed (so callers can emit an event once).
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) -> bool {
    let status_str = if status { "True" } else { "False" };
    // Kubernetes 1.20 reads an empty string as null and rejects the status; say the reason instead.
    let message = if message.is_empty() { reason } else { message };
    let new = |last_transition_time| Condition {
        type_: type_.to_string(),
        status: status_str.to_string(),
        reason: reason.to_string(),
        message: message.to_string(),
        observed_generation: generation,
        last_transition_time,
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) if c.status == status_str => {
            *c = new(c.last_transition_time.clone());
            false
        }
        Some(c) => {
            *c = new(Time(now.0));
            true
        }
        None => {
            conditions.push(new(Time(now.0)));
            true
        }
    }
}

pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

pub fn get<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}
