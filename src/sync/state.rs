//! What the engine reports (`SyncView`, `SyncState`) and what it resumes from
//! (`SourceResume`, recorded in status by the plan).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::token::OpTime;

/// Where the sync of one source stands, as the plan records it in status so an operator
/// restart resumes instead of starting again. Small: names, two times, one bounded token.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceResume {
    /// The source database.
    pub source: String,
    /// Its clone.
    pub clone: String,
    /// The cluster time captured before the bulk copy: the stream starts here.
    pub start_at: OpTime,
    /// The resume token after the last applied event (relaxed extended JSON), once streaming.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The cluster time of the last applied event (the token's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<OpTime>,
    /// Change events applied to the clone so far.
    #[serde(default)]
    pub events_applied: i64,
    /// Collections whose bulk copy finished.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bulk_done: Vec<String>,
    /// Every collection's bulk copy finished: the stream is what remains.
    #[serde(default)]
    pub bulk_finished: bool,
}

impl SourceResume {
    /// How far the stream must reach back: the last applied event, else the start point.
    pub fn needed(&self) -> OpTime {
        self.position.unwrap_or(self.start_at)
    }
}

/// The oplog no longer reaches where a stream must start: the events in between are gone, and
/// a stream opened there would silently skip them (this server does not fail).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryLost {
    pub source: String,
    /// The cluster time the stream must start from.
    pub needed_from: OpTime,
    /// The oldest entry the oplog still holds.
    pub oldest: OpTime,
    /// How many seconds of history the oplog must hold (from the start point until now).
    pub needed_seconds: i64,
    /// About how many entries the oplog must hold for that, at the write rate it saw.
    pub needed_entries: i64,
}

impl std::fmt::Display for HistoryLost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the server's oplog no longer reaches back to the sync's start point for {} \
             (needed from {}, oldest entry {}): changes in between are lost; the oplog must \
             hold at least {} s and about {} entries (mongod: a larger oplogSizeMB / \
             oplogMinRetentionHours; SecantusDB: --oplog-retention-seconds / \
             --oplog-max-entries), or the sync must start again",
            self.source, self.needed_from, self.oldest, self.needed_seconds, self.needed_entries
        )
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum SyncState {
    /// No sync for this plan in this process.
    #[default]
    NotStarted,
    BulkCopying,
    /// Every bulk copy finished; change streams are being applied.
    Streaming,
    /// Every stream applied past its drain marker, and stopped.
    Drained,
    Failed(String),
    HistoryLost(HistoryLost),
}

/// What a reconcile reads about a plan's sync.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncView {
    pub state: SyncState,
    pub collections_done: i64,
    pub collections_total: i64,
    pub events_applied: i64,
    /// Seconds between the newest oplog entry and the last applied event (the largest over
    /// the sources; `None` until first measured).
    pub lag_seconds: Option<i64>,
    /// Events not yet applied, when cheaply known (not measured yet: `None`).
    pub events_behind: Option<i64>,
    /// What to record in status to resume after an operator restart.
    pub resume: Vec<SourceResume>,
    /// The drain markers were written (by this process): the drain only has to be waited for.
    pub draining: bool,
}
