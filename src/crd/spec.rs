//! The desired state a platform team writes: which app, which new image, how to freeze it,
//! which databases to copy, how to know the migration is done, and what to do afterwards.
//!
//! Every doc comment here becomes `kubectl explain` text; keep them written for the person
//! filling in the plan.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::color::Color;
use super::status::UpgradePlanStatus;
use super::time::{GoDuration, dur};

/// A blue-green upgrade of one application together with its MongoDB data: freeze the
/// running version read-only, back its databases up, clone them, start the new version on
/// the clones, wait for its migration, switch the Service, lift read-only, clean up.
// The printcolumn attributes repeat keys by design; clippy reads them as duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "cutover.dev",
    version = "v1alpha1",
    kind = "UpgradePlan",
    namespaced,
    status = "UpgradePlanStatus",
    shortname = "up",
    category = "cutover",
    derive = "PartialEq",
    doc = "UpgradePlan upgrades an application and its MongoDB data blue-green: read-only, backup, clone, new version on the clone, migration, switch, lift read-only, clean up.",
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Where the upgrade is"
    ),
    printcolumn(
        name = "Active",
        type_ = "string",
        json_path = ".status.activeColor",
        description = "Which version the Service sends traffic to"
    ),
    printcolumn(
        name = "Target",
        type_ = "string",
        json_path = ".spec.target.image",
        description = "The new version's image"
    ),
    printcolumn(
        name = "Method",
        type_ = "string",
        json_path = ".status.clone.method",
        description = "How the clones are made, as chosen in Pending (cloneMethod auto resolves to online or restore)"
    ),
    printcolumn(
        name = "Progress",
        type_ = "string",
        json_path = ".status.progress.summary",
        description = "Copy progress and ETA while the databases are copied; the online sync's collections copied and lag"
    ),
    printcolumn(
        name = "Read-only since",
        type_ = "date",
        json_path = ".status.readOnlySince",
        description = "Since when the app refuses writes"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct UpgradePlanSpec {
    /// The running application ("blue") and the Service in front of it.
    pub app: AppRef,
    /// The new version ("green").
    pub target: Target,
    /// How the application is made read-only while its data is copied and migrated.
    pub read_only: ReadOnly,
    /// The MongoDB server and the databases to copy.
    pub database: DatabaseSpec,
    /// Where and how the databases are backed up before anything else happens.
    pub backup: BackupSpec,
    /// How cutover knows the new version finished migrating its data. All configured gates must pass.
    pub migration: MigrationSpec,
    /// Whether traffic switches as soon as the gates pass (auto) or waits for approval (manual).
    #[serde(default)]
    pub promotion: Promotion,
    /// Which version should receive traffic. Patch to `blue` to roll traffic back.
    #[serde(default)]
    pub traffic: Color,
    /// What a rollback may do.
    #[serde(default)]
    pub rollback: RollbackSpec,
    /// What happens to the old version and the old data after a successful switch.
    #[serde(default)]
    pub cleanup: CleanupSpec,
    /// Deadlines for the steps that wait on the cluster.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Pause at the next phase boundary while true. Rollback and failure handling are never paused.
    #[serde(default)]
    pub suspend: bool,
    /// `upgrade` performs the upgrade; `rehearsal` practises it on a clone without touching the running app.
    #[serde(default)]
    pub mode: Mode,
    /// Options of a rehearsal (`mode: rehearsal`).
    #[serde(default)]
    pub rehearsal: RehearsalSpec,
}

/// Options of a rehearsal.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RehearsalSpec {
    /// Keep the clone databases after the rehearsal for inspection; by default they are dropped.
    #[serde(default)]
    pub keep_clone: bool,
}

/// The schema's rule for a MongoDB database name: no control character (`\p{Cc}`), no
/// whitespace (`\p{Z}`; with `\p{Cc}` that is all of Unicode's White_Space), none of
/// `/ \ . " $ * < > : | ? =`; the length is a separate `maxLength`. Go RE2 syntax, which the API
/// server uses (a literal Unicode space in the YAML would be folded by YAML 1.1 readers).
/// `plan::validate` checks the same rule (and the 63-byte limit) for API servers that skip
/// parts of the schema.
pub const DATABASE_NAME_PATTERN: &str = r#"^[^\p{Cc}\p{Z}/\\."$*<>:|?=]+$"#;

/// The running application.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppRef {
    /// Name of the Deployment running the current version, in the plan's namespace.
    #[schemars(
        length(min = 1, max = 253),
        pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub deployment: String,
    /// Name of the Service whose selector is switched from the old version to the new one.
    #[schemars(length(min = 1, max = 63), pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub service: String,
    /// The application container. May be left out when the pod has a single container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

/// The new version.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// The image of the new version, e.g. `squidex/squidex:7.0.0`.
    #[schemars(length(min = 1, max = 1024))]
    pub image: String,
    /// Extra environment for the new version's application container (added or overriding).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVarSpec>,
    /// Name of the new version's Deployment. Defaults to `<app.deployment>-<plan name>`, shortened to 63 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_name: Option<String>,
}

/// A plain environment variable.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct EnvVarSpec {
    /// Variable name.
    #[schemars(length(min = 1, max = 253), pattern(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"))]
    pub name: String,
    /// Variable value.
    #[serde(default)]
    pub value: String,
}

/// How the application is made read-only.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadOnly {
    /// The variable that puts the application in read-only mode (Squidex: `MODE__ISREADONLY=true`).
    /// It is set on the old version before the backup and on the new version until the switch is complete.
    pub env: EnvVarSpec,
    /// A check that the read-only mode really refuses writes, run once the old version has rolled out with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<ReadOnlyVerify>,
}

/// A write that must be refused once the application is read-only.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadOnlyVerify {
    /// An HTTP request sent to each ready pod of the old version; read-only holds when no pod answers 2xx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpWriteProbe>,
}

/// An HTTP write request used to prove the read-only mode.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpWriteProbe {
    /// HTTP method of the write.
    #[serde(default = "default_write_method")]
    pub method: HttpMethod,
    /// Request path, starting with `/`.
    #[schemars(pattern(r"^/"))]
    pub path: String,
    /// Container port to send it to.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Request body (sent as `application/json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

fn default_write_method() -> HttpMethod {
    HttpMethod::Post
}

/// An HTTP method that writes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Post,
    Put,
    Patch,
    Delete,
}

/// The MongoDB server and the databases the upgrade copies.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseSpec {
    /// A key of a Secret in the plan's namespace holding the MongoDB connection string
    /// (`mongodb://user:password@host/...`). It is never printed, logged or copied into status.
    pub connection_secret: SecretKeyRef,
    /// The databases to back up and clone.
    #[schemars(length(min = 1, max = 64))]
    pub databases: Vec<DatabaseMapping>,
}

/// A key inside a Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SecretKeyRef {
    /// Secret name, in the plan's namespace.
    #[schemars(
        length(min = 1, max = 253),
        pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,
    /// Key within the Secret.
    #[schemars(length(min = 1, max = 253), pattern(r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// One source database, its clone, and how the application finds it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseMapping {
    /// Name of the source database (left untouched until cleanup, and then only if asked).
    /// At most 63 bytes; no whitespace or control characters and none of / \ . " $ * < > : | ? =
    #[schemars(length(min = 1, max = 63), pattern(DATABASE_NAME_PATTERN))]
    pub name: String,
    /// Name of the clone the new version runs on (same rules as `name`). Defaults to `<name>-<plan name>` with each `.` of the plan name written `_` (plan `v7.1` clones `Squidex` into `Squidex-v7_1`), shortened to MongoDB's 63-byte limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), pattern(DATABASE_NAME_PATTERN))]
    pub clone_name: Option<String>,
    /// Environment variables of the application whose value is this database's name; on the new version they name the clone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// Environment variables holding a connection string whose path names this database; on the new version the path names the clone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uri_env: Vec<String>,
}

/// The backup taken before anything changes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    /// Image with `mongodump` and `mongorestore` (and a POSIX shell), used for the backup and clone Jobs.
    #[serde(default = "default_backup_image")]
    pub image: String,
    /// Where backup archives are written.
    pub volume: BackupVolume,
    /// How many backup archives of this application to keep on the volume; older ones are deleted at cleanup. 0 keeps all.
    #[serde(default)]
    #[schemars(range(min = 0, max = 1000))]
    pub keep_last: u32,
    /// How the clones are made. `auto` (the default): `online` when the server streams changes (a replica set on which a change stream opens), else `restore`; the choice and why are in `status.clone` (an online sync that loses its history, fails or does not catch up in `timeouts.clone`, all before read-only, falls back to `restore` once). `restore`: a Job restores the backup archive (mongorestore). `serverSide`: each collection is created with its source's options and copied inside the server (aggregate `$out`, `$merge` for a capped one, then its indexes recreated; views created last) while the backup Job runs, and the backup is kept for safety; counts, collection options, views and index specs are verified either way.
    #[serde(default)]
    pub clone_method: CloneMethod,
    /// Settings of the `online` clone method.
    #[serde(default)]
    pub online: OnlineSpec,
    /// Collections copied at the same time by the `serverSide` method.
    #[serde(default = "default_parallelism")]
    #[schemars(range(min = 1, max = 16))]
    pub parallelism: u32,
}

fn default_parallelism() -> u32 {
    4
}

/// How the clones are made.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum CloneMethod {
    /// Restore the backup archive with mongorestore in a Job (the backup is proven restorable).
    Restore,
    /// The default. `online` when the server streams changes (a replica set on which a change stream opens on the first source database), else `restore`; chosen once, in `Pending`, and recorded in `status.clone.method` with the reason.
    #[default]
    Auto,
    /// Copy inside the server, in parallel with the backup (faster): each collection created with its source's options, filled with `$out` (`$merge` when capped), its indexes recreated; views recreated as views.
    ServerSide,
    /// Copy inside the server while the app still takes writes and follow its changes (change streams) until the lag is under `online.maxLag`; read-only only for the last seconds (drain, compare, new version). No backup is taken before the switch.
    Online,
}

/// Settings of `cloneMethod: online`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OnlineSpec {
    /// The app is made read-only once the clones are at most this far behind the sources.
    #[serde(default = "default_max_lag")]
    pub max_lag: GoDuration,
}

fn default_max_lag() -> GoDuration {
    dur("2s")
}

impl Default for OnlineSpec {
    fn default() -> Self {
        OnlineSpec {
            max_lag: default_max_lag(),
        }
    }
}

fn default_backup_image() -> String {
    "mongo:7.0".into()
}

/// A volume for backup archives.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupVolume {
    /// An existing PersistentVolumeClaim in the plan's namespace.
    #[schemars(
        length(min = 1, max = 253),
        pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub claim_name: String,
}

/// Gates that decide when the new version has migrated its data. All configured gates must pass.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigrationSpec {
    /// Wait for a migration document the application maintains itself (Squidex: `Migration` with `Version` and `IsLocked`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mongo_document: Option<MongoDocumentGate>,
    /// Run a one-shot Job of the new image (e.g. `./upgrade_schema.sh upgrade`) before the new version starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobGate>,
    /// Require an HTTP health endpoint of every new-version pod to answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpGetGate>,
    /// How long all gates together may take before the upgrade is abandoned and the old version restored.
    #[serde(default = "default_migration_timeout")]
    pub timeout: GoDuration,
}

fn default_migration_timeout() -> GoDuration {
    dur("30m")
}

/// A document the application updates as it migrates.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MongoDocumentGate {
    /// The source database holding the document (one of `database.databases`); its clone is read.
    #[schemars(length(min = 1, max = 63), pattern(DATABASE_NAME_PATTERN))]
    pub database: String,
    /// Collection of the document.
    #[serde(default = "default_migration_collection")]
    pub collection: String,
    /// Equality filter selecting the document; the first document of the collection when empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub filter: BTreeMap<String, String>,
    /// Field holding the schema version (a number).
    #[serde(default = "default_version_field")]
    pub version_field: String,
    /// Field that is true while a migration runs.
    #[serde(default = "default_lock_field")]
    pub lock_field: String,
    /// The version the new release migrates to. When unset, the gate passes once the lock is released after the new version started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub target_version: Option<i64>,
    /// A lock held this long with no ready new-version pod, no running migration and no version movement is reported stale.
    #[serde(default = "default_stale_lock_after")]
    pub stale_lock_after: GoDuration,
}

fn default_migration_collection() -> String {
    "Migration".into()
}
fn default_version_field() -> String {
    "Version".into()
}
fn default_lock_field() -> String {
    "IsLocked".into()
}
fn default_stale_lock_after() -> GoDuration {
    dur("5m")
}

/// A one-shot migration Job of the new image.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobGate {
    /// Entrypoint of the migration container (defaults to the image's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Arguments of the migration container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Credentials for the migration (a database user with DDL rights). The Secret's key is
    /// placed in `env`, replacing the application's value; the app containers keep their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<CredentialsRef>,
}

/// A Secret key exposed to the migration Job as an environment variable.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct CredentialsRef {
    /// Secret name, in the plan's namespace.
    #[schemars(
        length(min = 1, max = 253),
        pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,
    /// Key within the Secret.
    #[schemars(length(min = 1, max = 253), pattern(r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
    /// The environment variable that receives it (e.g. the app's connection-string variable).
    #[schemars(length(min = 1, max = 253))]
    pub env: String,
}

/// An HTTP health check on the new version's pods.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpGetGate {
    /// Request path, starting with `/` (e.g. `/api/v1/health/check_up`).
    #[schemars(pattern(r"^/"))]
    pub path: String,
    /// Container port.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Status code that means healthy.
    #[serde(default = "default_expect_status")]
    #[schemars(range(min = 100, max = 599))]
    pub expect_status: u16,
}

fn default_expect_status() -> u16 {
    200
}

/// When traffic switches.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Promotion {
    /// `auto` switches as soon as the gates pass; `manual` waits in `AwaitingPromotion`.
    #[serde(default)]
    pub mode: PromotionMode,
    /// With `manual`, set to true to switch traffic.
    #[serde(default)]
    pub approved: bool,
}

/// How promotion happens.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum PromotionMode {
    #[default]
    Auto,
    Manual,
}

/// What a rollback may do.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollbackSpec {
    /// After read-only was lifted on the new version, writes exist only in the clone; a rollback
    /// then loses them. It is refused (condition `DataDiverged`) unless this is true.
    #[serde(default)]
    pub accept_data_loss: bool,
}

/// What happens after a successful upgrade. The plan reaches `Succeeded` as soon as the new
/// version serves read-write; these steps follow, each opt-in (the scale-down has a default),
/// each checked against its guard and recorded in `status.cleanup` and the phase history.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CleanupSpec {
    /// How long the old version keeps running (ready for a quick rollback) after read-only was lifted, before it is scaled to zero.
    #[serde(default = "default_scale_down_blue_after")]
    pub scale_down_blue_after: GoDuration,
    /// Delete the old version's Deployment this long after read-only was lifted. Unset keeps it (scaled to zero). Refused while a Service selects its pods. A rollback is impossible afterwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_blue_after: Option<GoDuration>,
    /// Drop the source databases this long after read-only was lifted. Unset keeps them. Refused without a verified backup, or while a Service selects a Deployment whose environment names them. A rollback is impossible afterwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_source_databases_after: Option<GoDuration>,
    /// Collections the new version no longer uses, dropped from the clones it now runs on: first listed in `status.cleanup.obsoleteCollections` (a dry run), dropped when `approved` is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub obsolete_collections: Option<ObsoleteCollectionsSpec>,
}

fn default_scale_down_blue_after() -> GoDuration {
    dur("5m")
}

impl Default for CleanupSpec {
    fn default() -> Self {
        CleanupSpec {
            scale_down_blue_after: default_scale_down_blue_after(),
            delete_blue_after: None,
            drop_source_databases_after: None,
            obsolete_collections: None,
        }
    }
}

/// Obsolete collections to drop from the clones once the migration gate passed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObsoleteCollectionsSpec {
    /// Which collections are obsolete.
    #[schemars(length(min = 1, max = 32))]
    pub patterns: Vec<CollectionPattern>,
    /// Drop what `status.cleanup.obsoleteCollections` lists. A listed collection the application read after it was listed is kept, and the refusal says so.
    #[serde(default)]
    pub approved: bool,
}

/// A set of collections in one database.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CollectionPattern {
    /// The source database's name as in `spec.database.databases`; the drop happens in its clone.
    #[schemars(length(min = 1, max = 63), pattern(DATABASE_NAME_PATTERN))]
    pub database: String,
    /// Collection name; `*` matches any run of characters (e.g. `States_Contents_All*`).
    #[schemars(length(min = 1, max = 120), regex(pattern = r"^[A-Za-z0-9_.*-]+$"))]
    pub pattern: String,
    /// Keep the match with the highest trailing number (Squidex's current `States_Contents_All<N>`; an unnumbered name counts as 1).
    #[serde(default = "yes")]
    pub keep_highest: bool,
}

fn yes() -> bool {
    true
}

/// Deadlines for steps that wait on the cluster; exceeding one fails the plan and restores the old version.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Timeouts {
    /// A Deployment rollout (read-only on, read-only off, the new version becoming ready).
    #[serde(default = "default_rollout_timeout")]
    pub rollout: GoDuration,
    /// The backup Job.
    #[serde(default = "default_copy_timeout")]
    pub backup: GoDuration,
    /// The clone Job and its verification.
    #[serde(default = "default_copy_timeout")]
    pub clone: GoDuration,
    /// How long a manual promotion may wait for `promotion.approved`, the app read-only, before
    /// the plan restores the old version (`PromotionTimedOut`).
    #[serde(default = "default_promotion_timeout")]
    pub promotion: GoDuration,
}

fn default_rollout_timeout() -> GoDuration {
    dur("10m")
}
fn default_copy_timeout() -> GoDuration {
    dur("2h")
}
fn default_promotion_timeout() -> GoDuration {
    dur("1h")
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            rollout: default_rollout_timeout(),
            backup: default_copy_timeout(),
            clone: default_copy_timeout(),
            promotion: default_promotion_timeout(),
        }
    }
}

/// What the plan does.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Mode {
    /// Perform the upgrade.
    #[default]
    Upgrade,
    /// Practise it: clone without read-only, deploy and migrate the new version on the clone, time every phase, tear down. The running app is never touched.
    Rehearsal,
}
