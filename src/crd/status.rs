//! What cutover records: the phase, the audit trail of phases, and the facts each step
//! established (backup, clone, migration). Written only by the operator, by server-side apply.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::color::Color;
use super::phase::Phase;
use super::time::Timestamp;

/// The observed progress of an UpgradePlan.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpgradePlanStatus {
    /// Where the upgrade is.
    #[serde(default)]
    pub phase: Phase,
    /// A human-readable account of the current step, or of what went wrong and what to do.
    #[serde(default)]
    pub message: String,
    /// The plan generation this status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Which version the Service sends traffic to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_color: Option<Color>,
    /// Standard conditions: Ready, Progressing, Degraded, ReadOnly, BackupVerified, Migrated, MigrationLockStale, DataDiverged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The audit trail: every phase entered, when, and how it ended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<PhaseRecord>,
    /// Why the plan is rolling back or failed, once something went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// Replicas of the old version when the plan started; restored on rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_replicas: Option<i32>,
    /// Name of the new version's Deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub green_deployment: Option<String>,
    /// The backup taken of the source databases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupStatus>,
    /// The clones the new version runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clone: Option<CloneStatus>,
    /// Progress of the new version's migration as last observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<MigrationStatus>,
    /// Since when the application refuses writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only_since: Option<Timestamp>,
    /// When read-only was lifted on the new version; writes after this exist only in the clones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only_lifted_at: Option<Timestamp>,
    /// The read-only window a rehearsal predicts: a rehearsal's own prediction, or on an
    /// upgrade the latest rehearsal's for the same Deployment, to compare with the measurement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction: Option<Prediction>,
    /// The cleanup steps after `Succeeded` (spec.cleanup, backup retention): scheduled, waiting for approval, refused (and why) or done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleanup: Option<CleanupStatus>,
    /// Progress of the copy into the clones while it runs, with an estimate of when it ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<CopyProgress>,
    /// The names the plan's derived names start from: the app's Deployment and database names
    /// before any upgrade, carried over from the plan that created the old version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_names: Option<BaseNames>,
    /// Every object and database the plan acts on, resolved once at the end of `Pending`.
    /// From then on the plan acts only on these, whatever the spec says later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<RecordedTargets>,
    /// The spec as accepted at the end of `Pending`. Later edits are acted on only for the
    /// steering fields (traffic, promotion.approved, rollback.acceptDataLoss, suspend,
    /// cleanup); others are reported by the `SpecChangeIgnored` condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::any_object")]
    pub frozen_spec: Option<Box<super::UpgradePlanSpec>>,
}

/// What derived names start from, so they do not grow with each upgrade in a row.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BaseNames {
    /// The app's Deployment name before any upgrade.
    pub deployment: String,
    /// Each source database to the name its clone's name is derived from.
    #[serde(default)]
    pub databases: BTreeMap<String, String>,
}

/// The names a plan resolved when it started.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordedTargets {
    /// The old version's Deployment, as found when the plan started.
    pub blue_deployment: ObjectIdentity,
    /// The Service whose selector moves traffic.
    pub service: String,
    /// The new version's Deployment.
    pub green_deployment: String,
    /// The Secret with the new version's rewritten connection strings.
    pub green_env_secret: String,
    /// The rehearsal's preview Service.
    pub preview_service: String,
    /// Each source database and its clone, in spec order.
    #[serde(default)]
    pub databases: Vec<DatabasePair>,
    /// The backup, clone, migration and retention Jobs.
    pub jobs: RecordedJobs,
    /// The Secret with the migration Job's connection string.
    pub migration_env_secret: String,
    /// The Secret with the MongoDB tools' config file.
    pub tools_secret: String,
    /// Where the backup is written on the volume.
    pub backup_dir: String,
}

/// A Kubernetes object by name and uid: a different object given the same name later is not it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectIdentity {
    /// Its name.
    pub name: String,
    /// Its `metadata.uid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// A source database and its clone.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabasePair {
    /// The source database.
    pub source: String,
    /// Its clone.
    pub clone: String,
}

/// The Jobs a plan runs, by name.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordedJobs {
    /// The `mongodump` Job.
    pub backup: String,
    /// The restore Job.
    pub clone: String,
    /// The migration Job (when the plan has a Job gate).
    pub migration: String,
    /// The backup retention Job.
    pub prune: String,
}

/// Progress of copying the databases.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CopyProgress {
    /// Documents in the clones so far.
    pub documents_done: i64,
    /// Documents in the sources.
    pub documents_total: i64,
    /// Collections finished (server-side copy only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collections_done: Option<i64>,
    /// Collections to copy (server-side copy only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collections_total: Option<i64>,
    /// When the copy was first seen running.
    pub since: Timestamp,
    /// Documents per second since then.
    #[serde(default)]
    pub rate: f64,
    /// When the copy should end at that rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta: Option<Timestamp>,
    /// One line for `kubectl get`: percent, documents, time left.
    pub summary: String,
    /// When these numbers were taken. They are refreshed at most every few seconds: each
    /// status write wakes the next reconcile, so refreshing on every one would be a loop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Timestamp>,
}

/// Cleanup after a successful upgrade.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CleanupStatus {
    /// One entry per configured step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub steps: Vec<CleanupStep>,
    /// The dry run: collections (`clone.collection`) the obsolete-collection patterns match, with the read count the server reported when they were listed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub obsolete_collections: Vec<ObsoleteCollection>,
    /// When the obsolete collections were listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listed_at: Option<Timestamp>,
}

/// A collection listed for dropping.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObsoleteCollection {
    /// `database.collection` in the clone.
    pub name: String,
    /// Reads the server had counted on it (`top`, readLock) when it was listed.
    pub reads: i64,
}

/// One cleanup step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CleanupStep {
    /// The step.
    pub name: CleanupStepName,
    /// Where it is.
    pub state: CleanupState,
    /// When it may run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<Timestamp>,
    /// When it was done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_at: Option<Timestamp>,
    /// What it did, or why it is waiting or refused and what to do.
    #[serde(default)]
    pub message: String,
}

/// The cleanup steps, in the order they are considered.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
pub enum CleanupStepName {
    /// Scale the old version to zero (`scaleDownBlueAfter`).
    ScaleDownBlue,
    /// Delete the old version's Deployment (`deleteBlueAfter`).
    DeleteBlue,
    /// Drop the source databases (`dropSourceDatabasesAfter`).
    DropSourceDatabases,
    /// Drop obsolete collections from the clones (`obsoleteCollections`).
    DropObsoleteCollections,
    /// Delete old backups of the application (`backup.keepLast`).
    PruneBackups,
}

/// The state of a cleanup step.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum CleanupState {
    /// Waiting for its time.
    Scheduled,
    /// Running (an action was issued and its effect is awaited).
    Running,
    /// Listed; waiting for `approved: true`.
    AwaitingApproval,
    /// Its guard failed; the message says why and what to do. Looked at again while it can change.
    Refused,
    /// Done.
    Done,
}

/// A rehearsal's prediction of the read-only window.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Prediction {
    /// Predicted seconds from read-only on to read-write on the new version (backup, clone, deploy, migration as rehearsed).
    pub read_only_seconds: f64,
    /// The rehearsal plan that measured it.
    pub rehearsal: String,
    /// When the rehearsal finished.
    pub at: Timestamp,
}

/// One entry of the audit trail.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PhaseRecord {
    /// The phase.
    pub name: Phase,
    /// When it was entered.
    pub started_at: Timestamp,
    /// When it was left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    /// How it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// What happened, in a sentence.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// How a phase ended.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Outcome {
    /// It did what it had to.
    Succeeded,
    /// It failed; compensation followed.
    Failed,
    /// It was interrupted by a rollback request or deletion.
    Interrupted,
}

/// The reason a plan is being unwound or has failed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// The phase in which it happened.
    pub phase: Phase,
    /// A stable CamelCase reason (e.g. `BackupJobFailed`, `MigrationTimedOut`).
    pub reason: String,
    /// What went wrong and what to do about it.
    pub message: String,
}

/// The backup of the source databases.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupStatus {
    /// The backup Job.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub job: String,
    /// Path of the archive on the backup volume.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// Size of the archive in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<i64>,
    /// SHA-256 of the archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    /// Documents per collection (`database.collection`) in the frozen sources.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub collections: BTreeMap<String, i64>,
    /// When the backup completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Timestamp>,
}

/// The clone databases.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloneStatus {
    /// Source database name to clone database name.
    #[serde(default)]
    pub databases: BTreeMap<String, String>,
    /// True once every collection of the clones has the same document count as its frozen source.
    #[serde(default)]
    pub verified: bool,
    /// Documents per collection (`clone.collection`) right after the restore.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub collections: BTreeMap<String, i64>,
    /// Documents per collection (`clone.collection`) just before read-only was lifted on the new
    /// version (after its migration): what the clones hold beyond this was written since.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub collections_at_lift: BTreeMap<String, i64>,
}

/// The migration as last observed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigrationStatus {
    /// Schema version in the migration document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// Whether the migration lock is held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked: Option<bool>,
    /// Since when version and lock have had these values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
    /// True once the migration Job (if any) completed.
    #[serde(default)]
    pub job_succeeded: bool,
}
