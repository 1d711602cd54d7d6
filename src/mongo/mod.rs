//! MongoDB access: a pool of clients by connection string (`pool`) and the operations the
//! operator runs (`ops`). Every error message is redacted of the connection string before it
//! can reach a log, an event or the status. Connection strings themselves are `crate::uri`.

mod claims;
mod digest;
mod ops;
mod pool;
pub mod shape;

pub use claims::{claim, not_held, read_claims, release};
pub use digest::{collection_digests, digest_pairs};

pub use ops::{
    SYNC_MARKERS, collections_with_reads, count_documents, drop_collections, drop_databases,
    is_user_collection, list_databases, migration_doc, user_collections,
};
pub use pool::Clients;

/// A command's error, redacted of the connection string.
fn command(uri: &crate::uri::Uri) -> impl Fn(mongodb::error::Error) -> MongoError + '_ {
    move |e| MongoError::Command(uri.redact(&e.to_string()))
}

/// Why a MongoDB operation failed. Messages are already redacted; `label()` is stable for
/// metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MongoError {
    /// No client could be built from the connection string.
    #[error("{0}")]
    Client(String),
    /// A command failed, on the server or on the way to it.
    #[error("{0}")]
    Command(String),
    #[error("the server's top command (read counters, needs the clusterMonitor role) failed: {0}")]
    Top(String),
    #[error("{0:?} is not database.collection")]
    NotQualified(String),
    /// A database about to be dropped that this plan holds no claim on.
    #[error(
        "refusing to drop {0}: this plan holds no claim on it in cutover.claims (it may be another plan's)"
    )]
    NotClaimed(String),
    #[error("copying {namespace} to {clone}: {message}")]
    Copy {
        namespace: String,
        clone: String,
        message: String,
    },
}

impl MongoError {
    pub fn label(&self) -> &'static str {
        match self {
            MongoError::Client(_) => "client",
            MongoError::Command(_) => "command",
            MongoError::Top(_) => "top",
            MongoError::NotQualified(_) => "not_qualified",
            MongoError::Copy { .. } => "copy",
            MongoError::NotClaimed(_) => "not_claimed",
        }
    }
}
