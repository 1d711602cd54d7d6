//! The phases of a plan, in the order a successful upgrade walks them.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where an upgrade is. The names read as plain English in `kubectl get upgradeplans`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum Phase {
    /// Accepted, not yet validated against the cluster.
    #[default]
    Pending,
    /// `backup.cloneMethod: online`: the clones are copied and follow the sources' changes
    /// while the app still takes writes (not read-only yet).
    Syncing,
    /// The old version is being restarted read-only.
    EnteringReadOnly,
    /// The backup Job is dumping the source databases.
    BackingUp,
    /// The clone Job is restoring the backup into the clone databases, then counts are compared.
    Cloning,
    /// The new version's Deployment is being created against the clones (still read-only).
    DeployingGreen,
    /// Waiting for the migration gates.
    Migrating,
    /// Gates passed; waiting for `spec.promotion.approved`.
    AwaitingPromotion,
    /// The Service selector is being switched to the new version.
    SwitchingTraffic,
    /// Read-only is being lifted on the new version.
    LiftingReadOnly,
    /// `backup.cloneMethod: online`: traffic is on the new version and the old one is still
    /// read-only, so the sources are frozen: they are dumped (the backup) and the dump is
    /// verified by restoring it into scratch databases and comparing counts and content hashes.
    VerifyingBackup,
    /// Scaling down the old version and applying the cleanup policy.
    CleaningUp,
    /// The upgrade is complete.
    Succeeded,
    /// A rehearsal completed; the running app was not touched.
    Rehearsed,
    /// Restoring the old version (requested rollback, or compensation after a failure).
    RollingBack,
    /// Traffic is back on the old version at the user's request.
    RolledBack,
    /// The plan failed; the old version serves read-write again.
    Failed,
}

impl Phase {
    /// Every phase, in sequence order (terminal and rollback phases last).
    pub const ALL: [Phase; 17] = [
        Phase::Pending,
        Phase::Syncing,
        Phase::EnteringReadOnly,
        Phase::BackingUp,
        Phase::Cloning,
        Phase::DeployingGreen,
        Phase::Migrating,
        Phase::AwaitingPromotion,
        Phase::SwitchingTraffic,
        Phase::LiftingReadOnly,
        Phase::VerifyingBackup,
        Phase::CleaningUp,
        Phase::Succeeded,
        Phase::Rehearsed,
        Phase::RollingBack,
        Phase::RolledBack,
        Phase::Failed,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Syncing => "Syncing",
            Phase::EnteringReadOnly => "EnteringReadOnly",
            Phase::BackingUp => "BackingUp",
            Phase::Cloning => "Cloning",
            Phase::DeployingGreen => "DeployingGreen",
            Phase::Migrating => "Migrating",
            Phase::AwaitingPromotion => "AwaitingPromotion",
            Phase::SwitchingTraffic => "SwitchingTraffic",
            Phase::LiftingReadOnly => "LiftingReadOnly",
            Phase::VerifyingBackup => "VerifyingBackup",
            Phase::CleaningUp => "CleaningUp",
            Phase::Succeeded => "Succeeded",
            Phase::Rehearsed => "Rehearsed",
            Phase::RollingBack => "RollingBack",
            Phase::RolledBack => "RolledBack",
            Phase::Failed => "Failed",
        }
    }

    /// No further side effects will happen (short of a new rollback request after `Succeeded`).
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Phase::Succeeded | Phase::Rehearsed | Phase::RolledBack | Phase::Failed
        )
    }

    /// The traffic switch has not happened yet in this phase of the forward sequence.
    pub fn is_before_switch(&self) -> bool {
        matches!(
            self,
            Phase::Pending
                | Phase::Syncing
                | Phase::EnteringReadOnly
                | Phase::BackingUp
                | Phase::Cloning
                | Phase::DeployingGreen
                | Phase::Migrating
                | Phase::AwaitingPromotion
        )
    }

    /// The next phase of a successful upgrade (`manual` says whether promotion waits for approval).
    /// The `online` clone method's detours (Pending → Syncing, EnteringReadOnly → Cloning,
    /// LiftingReadOnly → VerifyingBackup) are
    /// taken by `decide`; this is the chain of the other methods.
    pub fn on_success(&self, manual: bool) -> Phase {
        match self {
            Phase::Pending => Phase::EnteringReadOnly,
            Phase::Syncing => Phase::EnteringReadOnly,
            Phase::EnteringReadOnly => Phase::BackingUp,
            Phase::BackingUp => Phase::Cloning,
            Phase::Cloning => Phase::DeployingGreen,
            Phase::DeployingGreen => Phase::Migrating,
            Phase::Migrating if manual => Phase::AwaitingPromotion,
            Phase::Migrating | Phase::AwaitingPromotion => Phase::SwitchingTraffic,
            Phase::SwitchingTraffic => Phase::LiftingReadOnly,
            Phase::LiftingReadOnly | Phase::VerifyingBackup => Phase::CleaningUp,
            Phase::CleaningUp | Phase::Succeeded => Phase::Succeeded,
            Phase::Rehearsed => Phase::Rehearsed,
            Phase::RollingBack | Phase::RolledBack => Phase::RolledBack,
            Phase::Failed => Phase::Failed,
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_as_plain_names() {
        for p in Phase::ALL {
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
        }
    }

    #[test]
    fn success_chain_reaches_succeeded_in_order() {
        for manual in [false, true] {
            let mut p = Phase::Pending;
            let mut seen = vec![p];
            while p != Phase::Succeeded {
                p = p.on_success(manual);
                seen.push(p);
                assert!(seen.len() < 20, "on_success loops");
            }
            assert_eq!(seen.contains(&Phase::AwaitingPromotion), manual);
            assert_eq!(seen.len(), if manual { 11 } else { 10 });
        }
    }
}
