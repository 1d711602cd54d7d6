//! What to read of the world for a plan in its current state: the reading half of the state
//! machine, beside `decide`, the acting half, so that a new gate changes both in one place.
//! The observer carries a `Reads` out literally; every "only in this phase" lives here.
//!
//! Kubernetes objects are cheap GETs and always read; MongoDB is asked, and pods are probed,
//! only where the phase uses the answer.

use crate::crd::{
    CleanupState, CleanupStepName, CloneMethod, Color, HttpMethod, Mode, Phase, UpgradePlanSpec,
    UpgradePlanStatus,
};

use super::observed::{CopyState, JobState, ObjectKind, Observed, PlanMeta};
use super::targets::Targets;

/// Everything one reconcile reads, by name. `None`/`false`: not looked at.
#[derive(Clone, Debug, PartialEq)]
pub struct Reads {
    /// The old version's Deployment (always read).
    pub blue: String,
    /// Its uid as recorded when the plan started: a Deployment of that name with another uid
    /// is not the plan's old version and is seen as absent (never patched, scaled or deleted).
    pub blue_uid: Option<String>,
    /// The new version's Deployment (always read).
    pub green: String,
    /// The Service in front of the app (always read).
    pub service: String,
    /// The Secrets and ConfigMaps the old version's app container takes variables from:
    /// what they name, for the environment guard (`DeploymentView::env`).
    pub blue_env: bool,
    /// The same for the new version's Deployment, as it runs.
    pub green_env: bool,
    /// The plan's Jobs, by these names (one that is not the plan's own is reported in
    /// `Observed::foreign`).
    pub jobs: Option<JobNames>,
    /// Secrets and Services with a name the plan needs, read to find out whether one exists
    /// that is not the plan's own (`Observed::foreign`): all of them while Pending, and each
    /// in the phases that create it. (The new version's Deployment is always read.)
    pub owned: Vec<(ObjectKind, String)>,
    /// The namespace's Services and Deployments (who selects the old version, who names the
    /// sources).
    pub workloads: bool,
    /// The server-side copy's progress. While false, the operator keeps no copy for the plan.
    pub server_copy: bool,
    /// The online sync's state. While false, the operator keeps no sync for the plan (a sync
    /// still running is stopped: nothing keeps writing to the clones).
    pub sync: bool,
    /// After the drain, each (source, clone) compared: counts and sampled documents.
    pub sync_compare: Option<Vec<(String, String)>>,
    /// Other plans: conflicting ones and the latest rehearsal's prediction.
    pub other_plans: bool,
    /// Databases looked for on the server, with estimated counts (`Observed::database`).
    pub databases: Option<Vec<String>>,
    /// Exact counts of the sources.
    pub source_counts: Option<Count>,
    /// Exact counts of the clones.
    pub clone_counts: Option<Count>,
    /// The sources' shape (`plan::shape`): recorded with their counts, and read again to
    /// name what differs when a clone's shape does not match.
    pub source_shape: Option<Count>,
    /// The clones' shape, compared with the sources' once the copy is done.
    pub clone_shape: Option<Count>,
    /// Estimated documents in the clones so far (restore progress).
    pub clone_documents: Option<Count>,
    /// The clones' collections with their read counters.
    pub clone_collections: Option<Vec<String>>,
    /// The migration document.
    pub migration_doc: Option<DocumentRead>,
    /// The migration document in the SOURCE database while cutover waits for the old version
    /// to roll out (`EnteringReadOnly`, `RollingBack`): a lock left there keeps it from starting.
    pub source_migration_doc: Option<DocumentRead>,
    /// The new version's pods (running, restarts) and the health gate over them.
    pub green_pods: Option<GreenPods>,
    /// The write that must be refused by the old version once it is read-only.
    pub read_only_probe: Option<Probe>,
    /// The claim registry: claims on these names and every claim of the plan's uid.
    pub claims: Option<ClaimRead>,
    /// `backup.cloneMethod: auto` in `Pending`: whether the server streams changes, a change
    /// stream opened on this source database.
    pub change_streams: Option<String>,
    /// Once the verify Job succeeded: each (frozen source, scratch) pair's collections
    /// counted and hashed (`Observed::backup_compare`).
    pub backup_compare: Option<Vec<(String, String)>>,
}

/// Claims to read: on `ids`, and any held by `uid`.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimRead {
    pub ids: Vec<String>,
    pub uid: String,
}

/// The names of the plan's Jobs.
#[derive(Clone, Debug, PartialEq)]
pub struct JobNames {
    /// Value of the plan label on each of them.
    pub plan: String,
    pub backup: String,
    pub clone: String,
    pub migration: String,
    pub prune: String,
    /// Empty when the plan has none (not `online`).
    pub verify: String,
}

/// Documents to count in `databases`, once `when` holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Count {
    pub databases: Vec<String>,
    pub when: When,
}

/// A read that depends on what this same reconcile found first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    Always,
    /// The backup Job succeeded.
    BackupSucceeded,
    /// The clone Job succeeded, the server-side copy did, or the online sync drained.
    CloneDone,
    /// The clone Job is still running.
    CloneRunning,
    /// The new version has a ready pod.
    GreenReady,
    /// The old version's latest template runs on every replica.
    BlueRolledOut,
    /// The Job restoring the backup into the scratch databases succeeded.
    VerifySucceeded,
}

impl When {
    /// Whether the read is due, given what was read before it.
    pub fn holds(self, obs: &Observed) -> bool {
        let job =
            |j: &Option<super::JobView>, s: JobState| j.as_ref().is_some_and(|j| j.state == s);
        match self {
            When::Always => true,
            When::BackupSucceeded => job(&obs.backup_job, JobState::Succeeded),
            When::CloneDone => {
                job(&obs.clone_job, JobState::Succeeded)
                    || obs
                        .server_copy
                        .as_ref()
                        .is_some_and(|c| c.state == CopyState::Succeeded)
                    || obs
                        .sync
                        .as_ref()
                        .is_some_and(|v| v.state == crate::sync::SyncState::Drained)
            }
            When::CloneRunning => job(&obs.clone_job, JobState::Active),
            When::GreenReady => obs.green.as_ref().is_some_and(|g| g.ready_replicas > 0),
            When::BlueRolledOut => obs.blue.as_ref().is_some_and(|b| b.rolled_out()),
            When::VerifySucceeded => job(&obs.verify_job, JobState::Succeeded),
        }
    }
}

/// The migration document, read from a clone.
#[derive(Clone, Debug, PartialEq)]
pub struct DocumentRead {
    pub database: String,
    pub collection: String,
    pub filter: std::collections::BTreeMap<String, String>,
    pub version_field: String,
    pub lock_field: String,
}

/// The new version's pods.
#[derive(Clone, Debug, PartialEq)]
pub struct GreenPods {
    pub deployment: String,
    pub health: Option<Probe>,
}

/// An HTTP request to every ready pod of a Deployment.
#[derive(Clone, Debug, PartialEq)]
pub struct Probe {
    pub deployment: String,
    pub port: i32,
    pub method: &'static str,
    pub path: String,
    pub body: Option<String>,
    pub accept: Accept,
    pub when: When,
}

/// Which answer counts as the one wanted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accept {
    /// Exactly this status code (a health check).
    Status(u16),
    /// Anything but a 2xx: the write was refused.
    Refusal,
}

impl Accept {
    pub fn accepts(self, code: u16) -> bool {
        match self {
            Accept::Status(want) => code == want,
            Accept::Refusal => !(200..300).contains(&code),
        }
    }
}

/// What to read for a plan with this spec and status.
pub fn needs(
    spec: &UpgradePlanSpec,
    status: Option<&UpgradePlanStatus>,
    plan: &PlanMeta,
    targets: &Targets,
) -> Reads {
    let unset = UpgradePlanStatus::default();
    let status = status.unwrap_or(&unset);
    let phase = status.phase;
    let deleting = plan.deleting;

    // Cleanup after success: only the steps asked for and not done yet are looked at.
    let cleaning = phase == Phase::Succeeded && spec.mode == Mode::Upgrade && !deleting;
    let open = |n: CleanupStepName, asked: bool| {
        cleaning
            && asked
            && !status.cleanup.as_ref().is_some_and(|c| {
                c.steps
                    .iter()
                    .any(|s| s.name == n && s.state == CleanupState::Done)
            })
    };
    let prune_open = open(CleanupStepName::PruneBackups, spec.backup.keep_last > 0);
    let drop_sources_open = open(
        CleanupStepName::DropSourceDatabases,
        spec.cleanup.drop_source_databases_after.is_some(),
    );
    let delete_blue_open = open(
        CleanupStepName::DeleteBlue,
        spec.cleanup.delete_blue_after.is_some(),
    );
    let obsolete_open = open(
        CleanupStepName::DropObsoleteCollections,
        spec.cleanup.obsolete_collections.is_some(),
    );

    let online_upgrade =
        spec.backup.clone_method == CloneMethod::Online && spec.mode == Mode::Upgrade;
    // After the switch an online plan dumps the frozen sources: in its own phase, or before a
    // rollback makes the old version writable again.
    let verifying = online_upgrade && phase == Phase::VerifyingBackup && !deleting;
    let dumping = verifying
        || (online_upgrade && phase == Phase::RollingBack && status.read_only_lifted_at.is_some());
    let databases = if dumping {
        Some(targets.scratch_databases())
    } else if phase == Phase::Pending
        || (phase == Phase::CleaningUp && spec.mode == Mode::Rehearsal)
    {
        Some([targets.sources(), targets.clones()].concat())
    } else if drop_sources_open {
        // Only the sources: counting the clones would register as reads of the collections
        // the obsolete-collection guard watches.
        Some(targets.sources())
    } else {
        None
    };

    let diverged_check = spec.traffic == Color::Blue && status.read_only_lifted_at.is_some();
    // Counted once more just before read-only is lifted: the baseline of DataDiverged.
    let before_lift = phase == Phase::LiftingReadOnly && status.read_only_lifted_at.is_none();
    let clone_counts = if diverged_check || before_lift {
        Some(When::Always)
    } else if phase == Phase::Cloning {
        Some(When::CloneDone)
    } else {
        None
    };

    let migrating = phase == Phase::Migrating;
    let online = spec.backup.clone_method == CloneMethod::Online;
    let owned = if deleting {
        Vec::new()
    } else {
        owned(spec, phase, targets)
    };
    Reads {
        blue: targets.blue.clone(),
        blue_uid: targets.blue_uid.clone(),
        green: targets.green.clone(),
        service: targets.service.clone(),
        blue_env: phase == Phase::Pending,
        green_env: matches!(phase, Phase::DeployingGreen | Phase::Migrating) && !deleting,
        jobs: (!phase.is_terminal() || deleting || prune_open).then(|| JobNames {
            plan: targets.plan.clone(),
            backup: targets.backup_job.clone(),
            clone: targets.clone_job.clone(),
            migration: targets.migration_job.clone(),
            prune: targets.prune_job.clone(),
            verify: targets.verify_job.clone(),
        }),
        workloads: drop_sources_open || delete_blue_open,
        server_copy: spec.backup.clone_method == CloneMethod::ServerSide
            && matches!(phase, Phase::BackingUp | Phase::Cloning)
            && !deleting,
        sync: online
            && matches!(
                phase,
                Phase::Syncing | Phase::EnteringReadOnly | Phase::Cloning
            )
            && !deleting,
        sync_compare: (online && phase == Phase::Cloning && !deleting).then(|| targets.pairs()),
        owned,
        other_plans: phase == Phase::Pending,
        databases,
        source_counts: (phase == Phase::BackingUp || dumping).then(|| Count {
            databases: targets.sources(),
            when: When::BackupSucceeded,
        }),
        clone_counts: clone_counts.map(|when| Count {
            databases: targets.clones(),
            when,
        }),
        source_shape: match phase {
            Phase::BackingUp => Some(When::BackupSucceeded),
            _ if dumping => Some(When::BackupSucceeded),
            Phase::Cloning => Some(When::CloneDone),
            _ => None,
        }
        .map(|when| Count {
            databases: targets.sources(),
            when,
        }),
        clone_shape: (phase == Phase::Cloning).then(|| Count {
            databases: targets.clones(),
            when: When::CloneDone,
        }),
        clone_documents: (phase == Phase::Cloning
            && spec.backup.clone_method == CloneMethod::Restore)
            .then(|| Count {
                databases: targets.clones(),
                when: When::CloneRunning,
            }),
        clone_collections: obsolete_open.then(|| targets.clones()),
        migration_doc: spec
            .migration
            .mongo_document
            .as_ref()
            .filter(|_| migrating)
            .map(|gate| DocumentRead {
                database: targets
                    .clone_of(&gate.database)
                    .unwrap_or(&gate.database)
                    .to_string(),
                collection: gate.collection.clone(),
                filter: gate.filter.clone(),
                version_field: gate.version_field.clone(),
                lock_field: gate.lock_field.clone(),
            }),
        // For stale-lock detection and the HTTP gate.
        source_migration_doc: spec
            .migration
            .mongo_document
            .as_ref()
            .filter(|_| matches!(phase, Phase::EnteringReadOnly | Phase::RollingBack) && !deleting)
            .map(|gate| DocumentRead {
                database: gate.database.clone(),
                collection: gate.collection.clone(),
                filter: gate.filter.clone(),
                version_field: gate.version_field.clone(),
                lock_field: gate.lock_field.clone(),
            }),
        green_pods: migrating.then(|| GreenPods {
            deployment: targets.green.clone(),
            health: spec.migration.http_get.as_ref().map(|h| Probe {
                deployment: targets.green.clone(),
                port: h.port,
                method: "GET",
                path: h.path.clone(),
                body: None,
                accept: Accept::Status(h.expect_status),
                when: When::GreenReady,
            }),
        }),
        // Pending claims; a plan that may hold claims reads them until they are given back.
        claims: (phase == Phase::Pending
            || deleting
            || super::conditions::is_true(&status.conditions, super::conditions::CLAIMED))
        .then(|| ClaimRead {
            ids: super::claims::wanted(targets, &plan.namespace)
                .into_iter()
                .map(|w| w.id)
                .collect(),
            uid: plan.uid.clone(),
        }),
        change_streams: (phase == Phase::Pending
            && spec.backup.clone_method == CloneMethod::Auto
            && !deleting)
            .then(|| targets.sources().into_iter().next())
            .flatten(),
        backup_compare: verifying.then(|| targets.scratch_pairs()),
        read_only_probe: spec
            .read_only
            .verify
            .as_ref()
            .and_then(|v| v.http.as_ref())
            .filter(|_| phase == Phase::EnteringReadOnly)
            .map(|w| Probe {
                deployment: targets.blue.clone(),
                port: w.port,
                method: method(w.method),
                path: w.path.clone(),
                body: w.body.clone(),
                // Read-only holds when no pod accepts the write.
                accept: Accept::Refusal,
                when: When::BlueRolledOut,
            }),
    }
}

/// The Secrets and Services whose owner is checked in `phase`: every one the plan will create
/// while Pending, then each in the phases that write it (so a foreign one fails the plan
/// instead of the write being refused again and again).
fn owned(spec: &UpgradePlanSpec, phase: Phase, targets: &Targets) -> Vec<(ObjectKind, String)> {
    let pending = phase == Phase::Pending;
    // `online` writes the tools' Secret after the switch, for the backup taken then.
    let tools = pending
        || matches!(phase, Phase::BackingUp | Phase::Cloning)
        || (spec.backup.clone_method == CloneMethod::Online
            && matches!(phase, Phase::VerifyingBackup | Phase::RollingBack));
    let green = pending || phase == Phase::DeployingGreen;
    let migration_env = (pending || matches!(phase, Phase::DeployingGreen | Phase::Migrating))
        && spec
            .migration
            .job
            .as_ref()
            .is_some_and(|j| j.credentials_secret.is_some());
    let secret = |name: &String| (ObjectKind::Secret, name.clone());
    let mut out = Vec::new();
    if tools {
        out.push(secret(&targets.tools_secret));
    }
    if green {
        out.push(secret(&targets.green_env_secret));
        if spec.mode == Mode::Rehearsal {
            out.push((ObjectKind::Service, targets.preview_service.clone()));
        }
    }
    if migration_env {
        out.push(secret(&targets.migration_env_secret));
    }
    out
}

impl Reads {
    /// Whether anything is asked of the MongoDB server.
    pub fn mongo(&self) -> bool {
        self.databases.is_some()
            || self.source_counts.is_some()
            || self.clone_counts.is_some()
            || self.source_shape.is_some()
            || self.clone_shape.is_some()
            || self.clone_documents.is_some()
            || self.clone_collections.is_some()
            || self.sync_compare.is_some()
            || self.migration_doc.is_some()
            || self.source_migration_doc.is_some()
            || self.claims.is_some()
            || self.change_streams.is_some()
            || self.backup_compare.is_some()
    }
}

fn method(m: HttpMethod) -> &'static str {
    match m {
        HttpMethod::Post => "POST",
        HttpMethod::Put => "PUT",
        HttpMethod::Patch => "PATCH",
        HttpMethod::Delete => "DELETE",
    }
}

#[cfg(test)]
mod tests;
