//! What `decide` returns: the status to record, at most one side effect, events, and when
//! to look again. Data only; the executor carries it out.

use std::time::Duration;

use crate::crd::{Color, UpgradePlanStatus};

use super::claims::Wanted;
use super::reason::Reason;

/// The one side effect of a reconcile. Each is idempotent: carrying it out twice leaves the
/// world as carrying it out once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Set (`enabled`) or remove the read-only variable on a version's app container. Turning
    /// it on for blue also adds the track label to blue's pod template.
    SetReadOnly { color: Color, enabled: bool },
    /// Point the Service at one version by its track label.
    PinService { color: Color },
    /// Create the backup Job (if absent).
    CreateBackupJob,
    /// Create the clone Job (if absent).
    CreateCloneJob,
    /// Create the Job restoring the backup into the scratch databases (if absent).
    CreateVerifyJob,
    /// Apply the new version's Deployment (and, in a rehearsal, its preview Service).
    ApplyGreen { replicas: i32 },
    /// Create the migration Job (if absent).
    CreateMigrationJob,
    /// Scale a version's Deployment.
    Scale { color: Color, replicas: i32 },
    /// Delete the new version's Deployment and preview Service.
    DeleteGreen,
    /// Delete this plan's Jobs that are still running.
    StopJobs,
    /// Remove the plan's owner reference from the new Deployment: after the switch it is the
    /// application, and deleting the plan must never delete it.
    ReleaseGreen,
    /// Drop databases (sources at cleanup, clones after a rehearsal).
    DropDatabases { names: Vec<String> },
    /// Drop collections (`database.collection`) from the clones at cleanup.
    DropCollections { names: Vec<String> },
    /// Delete the old version's Deployment at cleanup.
    DeleteBlue,
    /// Create the backup retention Job (if absent).
    CreatePruneJob,
    /// Start copying the sources into the clones inside the server (if not running).
    StartServerSideCopy,
    /// Start the online sync into the clones (if not running), resuming each source from its
    /// recorded state (`status.sync`; none: from a fresh start point).
    StartSync {
        resume: Vec<crate::sync::SourceResume>,
    },
    /// Write a drain marker into each source (the app is read-only): the sync applies what
    /// came before it and stops.
    DrainSync,
    /// Claim these names in the registry on the MongoDB server for this plan, all or none
    /// (a name another plan holds makes the call claim nothing).
    Claim { claims: Vec<Wanted> },
    /// Release these claims, where this plan holds them.
    ReleaseClaims { ids: Vec<String> },
}

impl Action {
    /// A stable label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Action::SetReadOnly { .. } => "set_read_only",
            Action::PinService { .. } => "pin_service",
            Action::CreateBackupJob => "create_backup_job",
            Action::CreateCloneJob => "create_clone_job",
            Action::CreateVerifyJob => "create_verify_job",
            Action::ApplyGreen { .. } => "apply_green",
            Action::CreateMigrationJob => "create_migration_job",
            Action::Scale { .. } => "scale",
            Action::DeleteGreen => "delete_green",
            Action::StopJobs => "stop_jobs",
            Action::ReleaseGreen => "release_green",
            Action::DropDatabases { .. } => "drop_databases",
            Action::DropCollections { .. } => "drop_collections",
            Action::DeleteBlue => "delete_blue",
            Action::CreatePruneJob => "create_prune_job",
            Action::StartServerSideCopy => "start_server_side_copy",
            Action::StartSync { .. } => "start_sync",
            Action::DrainSync => "drain_sync",
            Action::Claim { .. } => "claim",
            Action::ReleaseClaims { .. } => "release_claims",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Normal,
    Warning,
}

/// A Kubernetes Event to publish on the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventNote {
    pub kind: EventKind,
    pub reason: Reason,
    pub note: String,
}

/// The outcome of one `decide` call.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The status to write (before the action is carried out: intent first).
    pub status: UpgradePlanStatus,
    pub action: Option<Action>,
    pub events: Vec<EventNote>,
    /// Look again after this long even if nothing changes (watches usually wake us sooner).
    pub requeue_after: Option<Duration>,
}
