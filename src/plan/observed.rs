//! What the executor saw of the world, reduced to the facts `decide` needs. Plain data, so
//! every situation can be written down in a test.

use std::collections::BTreeMap;

use crate::crd::Timestamp;

/// Facts about the plan object itself.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PlanMeta {
    pub name: String,
    /// The plan's namespace and uid: who holds its claims (see `claims`).
    pub namespace: String,
    pub uid: String,
    pub generation: Option<i64>,
    /// The plan has a deletionTimestamp: compensate, then let go.
    pub deleting: bool,
    /// That deletionTimestamp: what runs after deletion is bounded from it.
    pub deleted_at: Option<Timestamp>,
    /// Live edits of the spec the plan does not act on (see `plan::frozen`).
    pub ignored_changes: Vec<String>,
    /// The reconciles of this plan failing in a row (an action the API or the database
    /// refused, a read that failed), while they do.
    pub failing: Option<ReconcileFailure>,
}

/// What the operator remembers of a plan's failing reconciles.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReconcileFailure {
    /// Failed reconciles in a row.
    pub attempts: u32,
    /// The step that failed (`set_read_only`, `observe`, …).
    pub step: String,
    /// What the API or the database answered (credentials redacted).
    pub message: String,
}

/// One Deployment (the old version or the new one).
#[derive(Clone, Debug, PartialEq)]
pub struct DeploymentView {
    pub name: String,
    /// `metadata.uid`: tells the Deployment the plan started with from one given its name later.
    pub uid: Option<String>,
    /// What a previous plan that created this Deployment derived its names from (its
    /// `cutover.dev/base-*` annotations); `None` for a Deployment cutover did not create.
    pub base_names: Option<crate::crd::BaseNames>,
    /// `spec.replicas`.
    pub replicas: i32,
    pub generation: i64,
    pub observed_generation: i64,
    /// `status.replicas`: pods of every revision.
    pub current_replicas: i32,
    pub updated_replicas: i32,
    pub ready_replicas: i32,
    /// The resolved application container, or why none could be chosen.
    pub container: Result<String, String>,
    /// The app container carries the read-only variable with the configured value.
    pub read_only_env: bool,
    /// The pod template carries the track label naming this Deployment.
    pub tracked: bool,
    pub image: String,
    pub pod_labels: BTreeMap<String, String>,
    /// Pods whose app container is running right now.
    pub running_pods: i32,
    /// Container restarts summed over its pods (a crash leaves a trace here).
    pub restarts: i32,
    /// Controlled by this plan (owner reference).
    pub owned_by_plan: bool,
    /// The app container's variables, without their values (see [`EnvFact`]).
    pub env: Vec<EnvFact>,
}

impl DeploymentView {
    /// The latest template is rolled out to every replica and all of them are ready.
    pub fn rolled_out(&self) -> bool {
        self.observed_generation >= self.generation
            && self.updated_replicas >= self.replicas
            && self.ready_replicas >= self.replicas
            && self.current_replicas == self.replicas
    }

    pub fn rollout_summary(&self) -> String {
        format!(
            "{}/{} updated, {}/{} ready",
            self.updated_replicas, self.replicas, self.ready_replicas, self.replicas
        )
    }
}

/// One variable of a Deployment's app container, reduced to what the database guard needs:
/// its name, where its value comes from and which of the plan's source databases it names.
/// Never the value itself.
#[derive(Clone, Debug, PartialEq)]
pub struct EnvFact {
    pub name: String,
    /// Where the value is held, for messages: `None` for a literal `value`, otherwise e.g.
    /// `Secret "mongo" key "uri"` or `ConfigMap "cfg" (envFrom)`.
    pub held_in: Option<String>,
    pub value: EnvValue,
}

/// What is known of a variable's value.
#[derive(Clone, Debug, PartialEq)]
pub enum EnvValue {
    /// The value was read (literal, or from its Secret or ConfigMap).
    Resolved {
        /// It is a `mongodb://` or `mongodb+srv://` connection string.
        uri: bool,
        /// The plan's source database it names: the value itself, or a connection string's
        /// path.
        source: Option<String>,
    },
    /// Held in a Secret or ConfigMap that was not read in this reconcile.
    NotRead,
    /// Held in a Secret or ConfigMap that cannot be read: why (names only, no value).
    Unresolvable(String),
    /// A pod or resource field (`fieldRef`, `resourceFieldRef`): names no database.
    Field,
}

impl EnvFact {
    /// The source database this variable names, when its value is known to name one.
    pub fn source(&self) -> Option<&str> {
        match &self.value {
            EnvValue::Resolved { source, .. } => source.as_deref(),
            _ => None,
        }
    }

    /// `STORE__URI (Secret "app" key "uri")`, or the bare name for a literal.
    pub fn describe(&self) -> String {
        match &self.held_in {
            Some(h) => format!("{} ({h})", self.name),
            None => self.name.clone(),
        }
    }
}

/// The Service in front of the app.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceView {
    pub selector: BTreeMap<String, String>,
}

/// The connection Secret, without its value.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum SecretView {
    #[default]
    Unknown,
    Missing,
    /// The Secret exists but lacks the key; the keys it has are listed (names only).
    KeyMissing {
        keys: Vec<String>,
    },
    /// The value is not a MongoDB connection string.
    Invalid {
        why: String,
    },
    Present,
}

/// What the MongoDB server said, when it was asked.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum DatabaseView {
    /// Not probed in this reconcile.
    #[default]
    Unknown,
    /// The server could not be reached or refused the credentials (message carries no secret).
    Unreachable(String),
    /// The plan's databases (sources and clones) present on the server, with their counts.
    Reachable {
        databases: BTreeMap<String, DatabaseInfo>,
    },
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct DatabaseInfo {
    pub collections: i64,
    pub documents: i64,
}

/// What `backup.cloneMethod: auto` reads of the server.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamSupport {
    /// A replica set (`hello.setName`) on which a change stream opened on a source database.
    Streams { set_name: String },
    /// Why not (not a replica set, or the change stream was refused: the server's answer).
    No(String),
}

/// A Job cutover owns.
#[derive(Clone, Debug, PartialEq)]
pub struct JobView {
    pub name: String,
    pub state: JobState,
    /// The pod's termination message or the Job's failure condition; never a secret.
    pub message: String,
    /// A failed backup or clone Job whose pod did not end by the script's own failure (it was
    /// killed, deleted, evicted, or is gone): what happened to it. `None` for a script failure
    /// and for every other Job.
    pub disruption: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    Active,
    Succeeded,
    Failed,
}

/// The migration document as read from the clone.
#[derive(Clone, Debug, PartialEq)]
pub struct MigrationDoc {
    pub version: Option<i64>,
    pub locked: bool,
    /// The document as relaxed extended JSON, for the message that tells how to release a stale lock.
    pub raw: String,
}

/// The result of an HTTP probe (health gate or read-only write probe).
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeView {
    /// Every probed pod answered as wanted (and there was at least one).
    pub ok: bool,
    pub detail: String,
    /// Each probed pod's answer, by pod name (empty: no ready pod to probe).
    pub pods: Vec<(String, PodAnswer)>,
}

/// One pod's answer to a probe.
#[derive(Clone, Debug, PartialEq)]
pub enum PodAnswer {
    /// Answered as wanted: the health status, or (read-only probe) the write refused.
    Wanted,
    /// Answered otherwise: for the read-only probe, the write was accepted. What it answered.
    Unwanted(String),
    /// Could not be asked (connection refused or reset, no HTTP answer in time): no evidence
    /// either way. Why.
    Unreachable(String),
}

impl ProbeView {
    /// The pods that answered otherwise than wanted, with what they answered.
    pub fn unwanted(&self) -> Vec<&str> {
        self.pods
            .iter()
            .filter_map(|(_, a)| match a {
                PodAnswer::Unwanted(d) => Some(d.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The pods that could not be asked, as `name (why)`.
    pub fn unreachable(&self) -> Vec<String> {
        self.pods
            .iter()
            .filter_map(|(pod, a)| match a {
                PodAnswer::Unreachable(why) => Some(format!("{pod} ({why})")),
                _ => None,
            })
            .collect()
    }
}

/// Everything the executor observed for one reconcile. `None` means "not looked at".
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    pub plan: PlanMeta,
    pub blue: Option<DeploymentView>,
    pub green: Option<DeploymentView>,
    pub service: Option<ServiceView>,
    pub secret: SecretView,
    pub database: DatabaseView,
    /// Other active plans on the same Deployment or databases, one message each.
    pub conflicts: Vec<String>,
    pub backup_job: Option<JobView>,
    pub clone_job: Option<JobView>,
    pub migration_job: Option<JobView>,
    /// Documents per `database.collection` of the sources, or why counting failed.
    pub source_counts: Option<Result<BTreeMap<String, i64>, String>>,
    /// Documents per `database.collection` of the clones, or why counting failed.
    pub clone_counts: Option<Result<BTreeMap<String, i64>, String>>,
    /// The sources' collections, views and indexes, or why reading them failed.
    pub source_shape: Option<Result<super::shape::Shape, String>>,
    /// The clones' collections, views and indexes, or why reading them failed.
    pub clone_shape: Option<Result<super::shape::Shape, String>>,
    /// The migration document (`Ok(None)`: not there yet), or why reading failed.
    pub migration_doc: Option<Result<Option<MigrationDoc>, String>>,
    /// The migration document as read from the SOURCE database, while cutover waits for the
    /// old version's rollout (a lock left there keeps the old version from starting).
    pub source_migration_doc: Option<Result<Option<MigrationDoc>, String>>,
    /// The httpGet gate over the new version's ready pods.
    pub health: Option<ProbeView>,
    /// The read-only write probe over the old version's ready pods.
    pub read_only_probe: Option<ProbeView>,
    /// The latest finished rehearsal's prediction for the same Deployment (looked up while Pending).
    pub rehearsal: Option<crate::crd::Prediction>,
    /// The namespace's Services and Deployments (looked at before cleanup deletes the old
    /// version or drops the sources).
    pub workloads: Option<Workloads>,
    /// The clones' collections with their read counters, or why they could not be read
    /// (looked at while obsolete collections are cleaned up).
    pub clone_collections: Option<Result<Vec<CollectionReads>, String>>,
    /// The backup retention Job.
    pub prune_job: Option<JobView>,
    /// The server-side copy into the clones (`backup.cloneMethod: serverSide`).
    pub server_copy: Option<CopyView>,
    /// The online sync into the clones (`backup.cloneMethod: online`) as this operator process
    /// knows it.
    pub sync: Option<crate::sync::SyncView>,
    /// Whether the server streams changes (`backup.cloneMethod: auto`, read in `Pending`).
    pub change_streams: Option<StreamSupport>,
    /// After the drain: how the clones differ from the sources (counts, sampled documents),
    /// one sentence each, empty when they agree; or why comparing failed.
    pub sync_compare: Option<Result<Vec<String>, String>>,
    /// Documents in the clones so far (estimated), while a restore runs: progress and ETA.
    pub clone_documents: Option<i64>,
    /// Objects with a name the plan needs that are not its own (among those read): never
    /// adopted, overwritten, waited on or deleted. A foreign new-version Deployment is here,
    /// not in `green`.
    pub foreign: Vec<ForeignObject>,
    /// The claim registry's documents on the plan's names and those the plan holds, or why
    /// the registry could not be read.
    pub claims: Option<Result<Vec<super::claims::Claim>, String>>,
    /// The Job restoring the backup into the scratch databases (`online`, after the switch).
    pub verify_job: Option<JobView>,
    /// Each frozen source and its scratch database (the restored backup), every collection's
    /// count and content hash, or why reading them failed (read once the verify Job succeeded).
    pub backup_compare: Option<Result<Vec<DigestPair>, String>>,
}

/// A collection's document count and content hash (see `crd::BackupVerification`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CollectionDigest {
    pub count: i64,
    /// 32 hex digits.
    pub hash: String,
}

/// A frozen source and the scratch database its backup was restored into, by collection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DigestPair {
    pub source: String,
    pub scratch: String,
    pub source_collections: BTreeMap<String, CollectionDigest>,
    pub scratch_collections: BTreeMap<String, CollectionDigest>,
}

/// The kinds of Kubernetes object a plan creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ObjectKind {
    Deployment,
    Secret,
    Service,
    Job,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Deployment => "Deployment",
            ObjectKind::Secret => "Secret",
            ObjectKind::Service => "Service",
            ObjectKind::Job => "Job",
        }
    }
}

impl std::fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An object that exists under a name the plan needs and does not carry the plan's mark (an
/// owner reference to this plan's uid; the plan label alone proves nothing, anyone can copy
/// it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForeignObject {
    pub kind: ObjectKind,
    pub name: String,
    /// Owned by an earlier UpgradePlan of the same name, since deleted: the garbage collector
    /// removes it (a plan re-created under its old name finds its predecessor's objects).
    pub previous_plan: bool,
}

impl ForeignObject {
    /// `Secret "squidex-v7-env"`.
    pub fn describe(&self) -> String {
        format!("{} {:?}", self.kind, self.name)
    }
}

/// The server-side copy as the operator's registry knows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CopyView {
    pub state: CopyState,
    pub documents_done: i64,
    pub documents_total: i64,
    pub collections_done: i64,
    pub collections_total: i64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub enum CopyState {
    /// Not running in this operator process (never started, or the operator restarted).
    #[default]
    Absent,
    Running,
    Succeeded,
    /// Why it failed (scrubbed of the connection string).
    Failed(String),
}

/// What runs in the namespace, reduced to who selects whom and which databases a Deployment's
/// environment names.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Workloads {
    pub services: Vec<ServiceSelector>,
    pub deployments: Vec<WorkloadView>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceSelector {
    pub name: String,
    pub selector: BTreeMap<String, String>,
}

/// A Deployment's pod labels and the literal environment values of its containers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkloadView {
    pub name: String,
    pub pod_labels: BTreeMap<String, String>,
    /// `(variable, value)` of every container; values from Secrets are not read.
    pub env: Vec<(String, String)>,
}

/// A collection and the reads the server counted on it (`top`, readLock count).
#[derive(Clone, Debug, PartialEq)]
pub struct CollectionReads {
    /// `database.collection`.
    pub name: String,
    pub reads: i64,
}

/// What the backup Job reports as its termination message.
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
pub struct BackupResult {
    #[serde(default)]
    pub bytes: Option<i64>,
    #[serde(default)]
    pub sha256: Option<String>,
}
