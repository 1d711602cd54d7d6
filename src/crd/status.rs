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
    /// The online sync (`backup.cloneMethod: online`): where each source's stream stands, so an
    /// operator restart resumes instead of starting again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncStatus>,
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

/// The online sync as last recorded.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncStatus {
    /// Per source: start point, last applied resume token, events applied, bulk copies done.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<crate::sync::SourceResume>,
    /// Collections whose bulk copy finished, of all.
    #[serde(default)]
    pub collections_done: i64,
    /// Collections to bulk-copy (0 after a restart that found every bulk copy finished).
    #[serde(default)]
    pub collections_total: i64,
    /// Change events applied to the clones, over every source.
    #[serde(default)]
    pub events_applied: i64,
    /// Seconds the clones are behind the sources (the largest over the sources).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<i64>,
    /// When these numbers were taken (refreshed every few seconds while the sync runs).
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
    /// Documents per collection (`database.collection`) in the frozen sources: the
    /// [`SAMPLE`] largest collections only; `counts` covers every one. (A status written
    /// before `counts` existed holds every collection here.)
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub collections: BTreeMap<String, i64>,
    /// Every collection of the frozen sources, summed up and fingerprinted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<CountsDigest>,
    /// The frozen sources' collections, views and indexes, fingerprinted when the counts were
    /// taken: every clone must have the same shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<ShapeDigest>,
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
    /// The clone method the plan acts on, chosen in `Pending` (`backup.cloneMethod: auto`
    /// resolves to `online` or `restore` here; a restart never chooses again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<super::CloneMethod>,
    /// Why that method: `auto`'s reading of the server, or the spec's choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// True once every collection of the clones has the same document count as its frozen source.
    #[serde(default)]
    pub verified: bool,
    /// Documents per collection (`clone.collection`) right after the restore: the [`SAMPLE`]
    /// largest collections only; `counts` covers every one.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub collections: BTreeMap<String, i64>,
    /// Every collection of the clones right after the restore, summed up and fingerprinted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<CountsDigest>,
    /// The clones' collections, views and indexes right after the copy (under the sources'
    /// database names), fingerprinted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<ShapeDigest>,
    /// Documents per collection (`clone.collection`) just before read-only was lifted on the new
    /// version (after its migration): what the clones hold beyond this was written since. The
    /// [`SAMPLE`] largest collections only; `countsAtLift` covers every one.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub collections_at_lift: BTreeMap<String, i64>,
    /// Every collection of the clones just before read-only was lifted, summed up and fingerprinted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts_at_lift: Option<CountsDigest>,
}

/// How many collections a per-collection map in status lists: an object in etcd is at most
/// 1.5 MiB, and the status write precedes every action, so a database with tens of thousands
/// of collections must not make it grow with them.
pub const SAMPLE: usize = 100;

/// Document counts of every collection, in a size that does not grow with their number.
///
/// Sound for verification: `sha256` fingerprints the complete `collection → documents` map
/// (its canonical JSON: keys sorted, no whitespace), so two maps with the same fingerprint
/// are equal collection by collection (up to a SHA-256 collision); the clones are compared
/// with the frozen sources through it, every collection included, not only the sample. The
/// sample next to it names the largest collections for people and for the diagnosis.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CountsDigest {
    /// Collections counted.
    pub collections: i64,
    /// Documents in all of them.
    pub documents: i64,
    /// Collections counted but not listed in the sample beside it ("N more").
    #[serde(default)]
    pub omitted: i64,
    /// SHA-256 (hex) of the complete map as canonical JSON.
    pub sha256: String,
}

impl CountsDigest {
    /// The digest of a complete map.
    pub fn of(counts: &BTreeMap<String, i64>) -> Self {
        use sha2::{Digest, Sha256};
        // A BTreeMap serializes with its keys sorted: the same map, the same bytes.
        let json = serde_json::to_vec(counts).unwrap_or_default();
        let hash = Sha256::digest(&json);
        CountsDigest {
            collections: counts.len() as i64,
            documents: counts.values().sum(),
            omitted: counts.len().saturating_sub(SAMPLE) as i64,
            sha256: hash.iter().map(|b| format!("{b:02x}")).collect(),
        }
    }

    /// True when `counts` is exactly the map this digest was made of.
    pub fn matches(&self, counts: &BTreeMap<String, i64>) -> bool {
        let other = Self::of(counts);
        other.sha256 == self.sha256
            && other.collections == self.collections
            && other.documents == self.documents
    }
}

/// The collections, views and indexes of databases (type, options, view pipelines, index
/// specs), in a size that does not grow with their number: two shapes with the same
/// `sha256` are equal (up to a SHA-256 collision).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShapeDigest {
    /// Collections (time series included).
    pub collections: i64,
    /// Views.
    pub views: i64,
    /// Indexes of all collections, `_id` included.
    pub indexes: i64,
    /// SHA-256 (hex) of the normalized shape as canonical JSON.
    pub sha256: String,
}

/// The [`SAMPLE`] largest collections of `counts` (ties by name), for status.
pub fn sample(counts: &BTreeMap<String, i64>) -> BTreeMap<String, i64> {
    if counts.len() <= SAMPLE {
        return counts.clone();
    }
    let mut by_size: Vec<(&String, &i64)> = counts.iter().collect();
    by_size.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    by_size
        .into_iter()
        .take(SAMPLE)
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

impl BackupStatus {
    /// Records the frozen sources' counts: the sample and the digest of all of them.
    pub fn record_counts(&mut self, counts: &BTreeMap<String, i64>) {
        self.collections = sample(counts);
        self.counts = Some(CountsDigest::of(counts));
    }

    /// The digest of every source collection; for a status written before digests existed,
    /// made from its map, which then holds every collection.
    pub fn digest(&self) -> CountsDigest {
        self.counts
            .clone()
            .unwrap_or_else(|| CountsDigest::of(&self.collections))
    }
}

impl CloneStatus {
    /// Records the clones' counts right after the copy.
    pub fn record_counts(&mut self, counts: &BTreeMap<String, i64>) {
        self.collections = sample(counts);
        self.counts = Some(CountsDigest::of(counts));
    }

    /// Records the clones' counts just before read-only is lifted.
    pub fn record_at_lift(&mut self, counts: &BTreeMap<String, i64>) {
        self.collections_at_lift = sample(counts);
        self.counts_at_lift = Some(CountsDigest::of(counts));
    }

    /// Documents added to the clones since read-only was lifted, given their counts now, and
    /// whether that number is exact; `None` when nothing was recorded at the lift.
    ///
    /// Per collection for the sampled ones (a collection that shrank adds nothing), and the
    /// net growth of all the others together: exact when every collection was sampled (up to
    /// [`SAMPLE`] collections, or a status written before digests existed), otherwise a lower
    /// bound. Informative only: the DataDiverged guard itself rests on `readOnlyLiftedAt`.
    pub fn added_since_lift(&self, now: &BTreeMap<String, i64>) -> Option<(i64, bool)> {
        let at = self.counts_at_lift.clone().or_else(|| {
            (!self.collections_at_lift.is_empty())
                .then(|| CountsDigest::of(&self.collections_at_lift))
        })?;
        let mut added = 0;
        let (mut sampled_now, mut sampled_at) = (0, 0);
        for (c, was) in &self.collections_at_lift {
            let n = now.get(c).copied().unwrap_or(0);
            added += (n - was).max(0);
            sampled_now += n;
            sampled_at += was;
        }
        let exact = at.collections == self.collections_at_lift.len() as i64;
        if exact {
            // Collections created since the lift.
            added += now
                .iter()
                .filter(|(c, _)| !self.collections_at_lift.contains_key(*c))
                .map(|(_, n)| (*n).max(0))
                .sum::<i64>();
        } else {
            let rest_now: i64 = now.values().sum::<i64>() - sampled_now;
            added += (rest_now - (at.documents - sampled_at)).max(0);
        }
        Some((added, exact))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(n: usize, each: i64) -> BTreeMap<String, i64> {
        (0..n).map(|i| (format!("db.c{i:05}"), each)).collect()
    }

    #[test]
    fn the_digest_tells_maps_apart() {
        let a = counts(300, 2);
        let d = CountsDigest::of(&a);
        assert_eq!((d.collections, d.documents, d.omitted), (300, 600, 200));
        assert_eq!(d.sha256.len(), 64);
        assert!(d.matches(&a));
        let mut b = a.clone();
        *b.get_mut("db.c00001").unwrap() += 1;
        *b.get_mut("db.c00002").unwrap() -= 1;
        assert!(!d.matches(&b), "same totals, other map");
        let mut renamed = a.clone();
        let v = renamed.remove("db.c00001").unwrap();
        renamed.insert("db.c0000x".into(), v);
        assert!(!d.matches(&renamed));
        // Stable across releases: the same map always gives this fingerprint.
        assert_eq!(
            CountsDigest::of(&BTreeMap::from([("db.c".to_string(), 1)])).sha256,
            "4de9134b7c7aa46ce508ee4db94f4dccd5f6ca4d1c65236184155ef1a87780f7"
        );
    }

    #[test]
    fn the_sample_keeps_the_largest() {
        let mut a = counts(300, 1);
        a.insert("db.big".into(), 10);
        let s = sample(&a);
        assert_eq!(s.len(), SAMPLE);
        assert_eq!(s.get("db.big"), Some(&10));
        assert_eq!(sample(&counts(5, 1)).len(), 5);
    }

    #[test]
    fn writes_since_the_lift() {
        // Every collection sampled: exact, per collection.
        let mut c = CloneStatus::default();
        let at = counts(3, 10);
        c.record_at_lift(&at);
        let mut now = at.clone();
        *now.get_mut("db.c00000").unwrap() += 5;
        *now.get_mut("db.c00001").unwrap() -= 3;
        now.insert("db.new".into(), 2);
        assert_eq!(c.added_since_lift(&now), Some((7, true)));

        // More than the sample: the sampled ones per collection, the rest net, a lower bound.
        let mut c = CloneStatus::default();
        let at = counts(500, 10);
        c.record_at_lift(&at);
        assert_eq!(c.collections_at_lift.len(), SAMPLE);
        let mut now = at.clone();
        *now.get_mut("db.c00499").unwrap() += 4;
        now.insert("db.new".into(), 1);
        assert_eq!(c.added_since_lift(&now), Some((5, false)));

        // A status from before digests: its map is complete.
        let legacy = CloneStatus {
            collections_at_lift: counts(2, 1),
            ..Default::default()
        };
        assert_eq!(legacy.added_since_lift(&counts(2, 3)), Some((4, true)));
        assert_eq!(CloneStatus::default().added_since_lift(&counts(2, 3)), None);
    }

    #[test]
    fn old_statuses_decode() {
        let old = serde_json::json!({
            "databases": {"a": "a-x"},
            "verified": true,
            "collections": {"a-x.c": 3},
            "collectionsAtLift": {"a-x.c": 4}
        });
        let c: CloneStatus = serde_json::from_value(old).unwrap();
        assert_eq!(c.counts, None);
        assert_eq!(
            c.added_since_lift(&BTreeMap::from([("a-x.c".into(), 6)])),
            Some((2, true))
        );
        let b: BackupStatus =
            serde_json::from_value(serde_json::json!({"collections": {"a.c": 3}})).unwrap();
        assert_eq!(
            b.digest(),
            CountsDigest::of(&BTreeMap::from([("a.c".into(), 3)]))
        );
    }
}
