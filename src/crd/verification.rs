//! The restore-verify of a backup taken after the switch (`backup.cloneMethod: online`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::time::Timestamp;

/// What restoring the backup into scratch databases and comparing them with the frozen
/// sources found. Every collection is compared by its document count and a content hash:
/// the sum (mod 2^128) of the first 128 bits of the SHA-256 of each document's BSON bytes,
/// independent of the order the documents are read in; `hash` combines them over all
/// collections (SHA-256 of the sorted `namespace count hash` lines, first 128 bits).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupVerification {
    /// True when every collection of the restored backup equals its frozen source.
    #[serde(default)]
    pub verified: bool,
    /// Collections compared (in the frozen sources).
    #[serde(default)]
    pub collections: i64,
    /// Documents in the frozen sources.
    #[serde(default)]
    pub documents: i64,
    /// The frozen sources' content hash, over every collection.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hash: String,
    /// What differs (the first ten; the rest counted), or why the restore failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub differences: Vec<String>,
    /// When the comparison was made.
    pub at: Timestamp,
}
