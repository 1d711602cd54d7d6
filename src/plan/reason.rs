//! Why: the reason of every failure (`status.failure.reason`), condition and event that
//! `decide` produces. Users, alerts, Argo CD and the integration tests match on these strings,
//! so `as_str` is a stable name, written out, never derived from the variant's spelling.

use crate::crd::{CleanupStepName, Phase};

/// Declares `Reason` and its `ALL` list from one table, so no reason can be missing from `ALL`
/// (the test that every reason is documented walks it).
macro_rules! reasons {
    ($($(#[doc = $doc:literal])* $variant:ident => $text:literal,)*) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Reason {
            $($(#[doc = $doc])* $variant,)*
            /// The phase entered: the `Progressing` and `Ready` reason while it runs, and the
            /// Normal event's reason on entering it.
            Phase(Phase),
        }

        impl Reason {
            /// Every reason but `Phase` (whose values are `Phase::ALL`).
            pub const ALL: &[Reason] = &[$(Reason::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$variant => $text,)*
                    Reason::Phase(p) => p.as_str(),
                }
            }
        }
    };
}

reasons! {
    // ---- failures: status.failure.reason, the Degraded and Ready reason, a Warning event
    /// The spec is invalid; nothing was changed.
    InvalidSpec => "InvalidSpec",
    /// The cluster or the database is not ready for the plan; nothing was changed.
    PreflightFailed => "PreflightFailed",
    ReadOnlyRolloutTimedOut => "ReadOnlyRolloutTimedOut",
    /// The read-only probe's write was accepted.
    ReadOnlyNotEffective => "ReadOnlyNotEffective",
    BackupJobFailed => "BackupJobFailed",
    BackupTimedOut => "BackupTimedOut",
    ServerSideCopyFailed => "ServerSideCopyFailed",
    CloneJobFailed => "CloneJobFailed",
    /// The backup or clone Job's pod was disrupted (killed, deleted, evicted) on every attempt.
    JobKeptBeingDisrupted => "JobKeptBeingDisrupted",
    CloneTimedOut => "CloneTimedOut",
    /// The clones' counts differ from the frozen sources'.
    CloneVerificationFailed => "CloneVerificationFailed",
    MigrationJobFailed => "MigrationJobFailed",
    /// The new version's Deployment, as it runs, names a source database.
    GreenEnvNamesSource => "GreenEnvNamesSource",
    MigrationTimedOut => "MigrationTimedOut",
    /// A manual promotion was not approved within `timeouts.promotion`.
    PromotionTimedOut => "PromotionTimedOut",
    BlueDeploymentMissing => "BlueDeploymentMissing",
    /// Also the Degraded reason when the new version is gone after the switch.
    GreenDeploymentMissing => "GreenDeploymentMissing",
    ServiceMissing => "ServiceMissing",
    PlanDeleted => "PlanDeleted",
    /// The old version's read-only write probe gave no answer within `timeouts.rollout`.
    ReadOnlyUnverified => "ReadOnlyUnverified",
    /// The new Deployment was not observed by its controller within `timeouts.rollout`.
    GreenRolloutTimedOut => "GreenRolloutTimedOut",
    /// A deleted plan's unwinding or hand-over did not finish within its bound: it let go.
    DeletionTimedOut => "DeletionTimedOut",
    /// After Pending, an object appeared under a name the plan needs that is not its own.
    ForeignObject => "ForeignObject",
    /// Another plan holds one of the plan's databases or its Deployment in the claim
    /// registry; nothing was changed.
    ClaimConflict => "ClaimConflict",
    /// The claim registry (`cutover.claims` on the MongoDB server) cannot be read.
    ClaimsUnavailable => "ClaimsUnavailable",
    /// `cloneMethod: online`: the sync did not catch up (or drain) within `timeouts.clone`.
    SyncTimedOut => "SyncTimedOut",
    /// `cloneMethod: online`: the server's oplog no longer reaches the sync's start point.
    SyncHistoryLost => "SyncHistoryLost",
    /// `cloneMethod: online`: the sync (bulk copy or change streams) failed.
    SyncFailed => "SyncFailed",

    // ---- Normal and Warning events of `backup.cloneMethod: auto`
    CloneMethodChosen => "CloneMethodChosen",
    CloneMethodFallback => "CloneMethodFallback",

    // ---- ReadOnly
    ReadOnlyRequested => "ReadOnlyRequested",
    ReadOnly => "ReadOnly",
    Lifted => "Lifted",
    LiftedOnBlue => "LiftedOnBlue",

    // ---- BackupVerified
    CountsMatch => "CountsMatch",
    CountsDiffer => "CountsDiffer",
    ShapeDiffers => "ShapeDiffers",
    /// A rehearsal copies live sources: differences are expected.
    SourcesInUse => "SourcesInUse",
    /// The server-side copy matched, but the archive was never restored.
    NotRestored => "NotRestored",
    /// `cloneMethod: online`: no backup exists before the switch.
    BackupAfterSwitch => "BackupAfterSwitch",
    /// `online`: the backup taken after the switch, restored into scratch databases, equals
    /// the frozen sources (counts and content hashes).
    RestoredAndCompared => "RestoredAndCompared",
    /// `online`: the restored backup differs from the frozen sources (also a Warning event).
    BackupDiffers => "BackupDiffers",
    /// `online`: the backup Job after the switch failed (also a Warning event).
    BackupDumpFailed => "BackupDumpFailed",
    /// `online`: the backup could not be restored into the scratch databases.
    BackupRestoreFailed => "BackupRestoreFailed",
    /// `online`: status names no scratch database (a plan started before they existed).
    NoScratchRecorded => "NoScratchRecorded",

    // ---- Migrated, MigrationLockStale, Degraded
    GatesPassed => "GatesPassed",
    LockHeldByNoOne => "LockHeldByNoOne",
    /// MigrationLockStale: the lock is held in the SOURCE while the old version waits to roll out.
    SourceLockHeld => "SourceLockHeld",
    LockMoved => "LockMoved",
    /// The Degraded reason and the Warning event while the lock is stale.
    MigrationLockStale => "MigrationLockStale",
    MigrationProceeding => "MigrationProceeding",
    RolloutSlow => "RolloutSlow",
    /// Degraded (and a Warning event) while a rollback waits past `timeouts.rollout`.
    RollbackStuck => "RollbackStuck",
    Healthy => "Healthy",

    // ---- RollbackBlocked, DataDiverged
    /// The Warning event when a rollback is refused because cleanup removed what it needs.
    RollbackBlocked => "RollbackBlocked",
    /// The RollbackBlocked reason: cleanup already removed what a rollback needs.
    CleanedUp => "CleanedUp",
    /// RollbackBlocked (and a Warning event): `online`, after the lift, the old version stays
    /// read-only until the dump of the frozen sources is complete.
    AwaitingBackup => "AwaitingBackup",
    /// RollbackBlocked False: that dump is complete; the rollback goes on.
    BackupComplete => "BackupComplete",
    /// The Warning event when a rollback would lose writes.
    DataDiverged => "DataDiverged",
    WritesSinceLift => "WritesSinceLift",
    RollbackAccepted => "RollbackAccepted",
    TrafficOnGreen => "TrafficOnGreen",
    /// The Normal event when a plan deleted after the lift kept the new version.
    NewVersionKept => "NewVersionKept",

    // ---- Claimed, and the Warning event of a drop refused for want of a claim
    /// The plan is claiming its databases and Deployment.
    Claiming => "Claiming",
    /// Every claim is this plan's.
    ClaimsHeld => "ClaimsHeld",
    /// The plan holds no claim any more.
    ClaimsReleased => "ClaimsReleased",
    /// A database was not dropped because this plan holds no claim on it.
    NotClaimed => "NotClaimed",

    // ---- Progressing
    Suspended => "Suspended",
    /// The Warning event and the Progressing reason when a backup or clone Job's pod was
    /// disrupted and the Job is retried under a new name.
    JobPodDisrupted => "JobPodDisrupted",

    // ---- ReconcileFailing
    /// An action or a read of the plan keeps failing; the operator retries with backoff.
    ReconcileError => "ReconcileError",
    /// The ReconcileFailing reason once a reconcile succeeded again.
    Recovered => "Recovered",

    // ---- SpecChangeIgnored, and its Warning event
    /// An edit of a field that does not steer a running plan: it keeps the values it started with.
    SpecChangeIgnored => "SpecChangeIgnored",
    /// The SpecChangeIgnored reason once the spec matches what the plan started with again.
    SpecAsStarted => "SpecAsStarted",

    // ---- cleanup after success: CleanupBlocked, its Warning event, one Normal event per step done
    GuardFailed => "GuardFailed",
    Unblocked => "Unblocked",
    CleanupRefused => "CleanupRefused",
    ScaleDownBlue => "ScaleDownBlue",
    DeleteBlue => "DeleteBlue",
    DropSourceDatabases => "DropSourceDatabases",
    DropObsoleteCollections => "DropObsoleteCollections",
    PruneBackups => "PruneBackups",
}

impl From<CleanupStepName> for Reason {
    /// A finished cleanup step's Normal event is named after the step.
    fn from(step: CleanupStepName) -> Self {
        match step {
            CleanupStepName::ScaleDownBlue => Reason::ScaleDownBlue,
            CleanupStepName::DeleteBlue => Reason::DeleteBlue,
            CleanupStepName::DropSourceDatabases => Reason::DropSourceDatabases,
            CleanupStepName::DropObsoleteCollections => Reason::DropObsoleteCollections,
            CleanupStepName::PruneBackups => Reason::PruneBackups,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPERATIONS: &str = include_str!("../../docs/operations.md");

    #[test]
    fn every_reason_is_documented_in_operations_md() {
        let phases = Phase::ALL.map(Reason::Phase);
        let missing: Vec<&str> = Reason::ALL
            .iter()
            .chain(&phases)
            .map(|r| r.as_str())
            .filter(|r| !OPERATIONS.contains(&format!("`{r}`")))
            .collect();
        assert!(
            missing.is_empty(),
            "docs/operations.md does not name (in backticks): {missing:?}"
        );
    }

    #[test]
    fn reasons_are_distinct_camel_case_names() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL.iter().chain(&Phase::ALL.map(Reason::Phase)) {
            let s = r.as_str();
            assert!(seen.insert(s), "{s} twice");
            assert!(
                s.starts_with(|c: char| c.is_ascii_uppercase())
                    && s.chars().all(|c| c.is_ascii_alphanumeric()),
                "{s} is not CamelCase"
            );
        }
    }

    #[test]
    fn cleanup_steps_are_named_as_in_status() {
        // status.cleanup.steps[].name and the step's event agree.
        for step in [
            CleanupStepName::ScaleDownBlue,
            CleanupStepName::DeleteBlue,
            CleanupStepName::DropSourceDatabases,
            CleanupStepName::DropObsoleteCollections,
            CleanupStepName::PruneBackups,
        ] {
            assert_eq!(
                serde_json::to_value(step).unwrap(),
                serde_json::json!(Reason::from(step).as_str())
            );
        }
    }
}
