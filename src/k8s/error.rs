//! Why an action could not be carried out.

use super::build::BuildError;
use crate::mongo::MongoError;
use crate::plan::ObjectKind;

/// An error that says the API server could not answer (connection, TLS handshake, timeout,
/// or a 5xx/429 while it starts), not that it refused the request.
pub fn api_unreachable(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code >= 500 || s.code == 429,
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => true,
        _ => false,
    }
}

/// One variant per kind of failure. `label()` is stable: it ends the reconcile error's metric
/// label (`<action>_<label>`).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Build(#[from] BuildError),
    /// The server's answer, scrubbed of the connection string.
    #[error("MongoDB: {0}")]
    Mongo(#[from] MongoError),
    #[error("Deployment {0} not found")]
    BlueMissing(String),
    #[error("the new version's Deployment is not there")]
    GreenMissing,
    #[error("the connection Secret is not readable")]
    ConnectionUnreadable,
    #[error("no migration job gate, or no app container on the new version")]
    NoMigrationJob,
    #[error("Secret {name:?} key {key:?} (migration.job.credentialsSecret) not found")]
    MigrationCredentialsMissing { name: String, key: String },
    #[error(
        "variable {var:?} (spec.database.databases[].uriEnv) has no readable mongodb:// value in the old version's container"
    )]
    UriEnvUnresolvable { var: String },
    /// An object exists under a name the plan needs and is not the plan's own: it is left
    /// alone (never overwritten, adopted or deleted).
    #[error(
        "{kind} {name:?} exists and is not this plan's (it has no owner reference to this plan): cutover leaves it alone; delete or rename it, or give the plan other names"
    )]
    NotOwned { kind: ObjectKind, name: String },
}

impl ExecError {
    pub fn label(&self) -> &'static str {
        match self {
            ExecError::Kube(_) => "kube",
            ExecError::Build(_) => "build",
            ExecError::Mongo(_) => "mongo",
            ExecError::BlueMissing(_)
            | ExecError::GreenMissing
            | ExecError::ConnectionUnreadable
            | ExecError::NoMigrationJob
            | ExecError::MigrationCredentialsMissing { .. }
            | ExecError::UriEnvUnresolvable { .. } => "missing",
            ExecError::NotOwned { .. } => "not_owned",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_messages_stay_as_they_were() {
        let rows = [
            (
                ExecError::Mongo(MongoError::Command("auth failed".into())),
                "mongo",
                "MongoDB: auth failed",
            ),
            (
                ExecError::BlueMissing("squidex".into()),
                "missing",
                "Deployment squidex not found",
            ),
            (
                ExecError::GreenMissing,
                "missing",
                "the new version's Deployment is not there",
            ),
            (
                ExecError::ConnectionUnreadable,
                "missing",
                "the connection Secret is not readable",
            ),
            (
                ExecError::NoMigrationJob,
                "missing",
                "no migration job gate, or no app container on the new version",
            ),
            (
                ExecError::MigrationCredentialsMissing {
                    name: "migrator".into(),
                    key: "uri".into(),
                },
                "missing",
                "Secret \"migrator\" key \"uri\" (migration.job.credentialsSecret) not found",
            ),
            (
                ExecError::NotOwned {
                    kind: ObjectKind::Job,
                    name: "v7-backup".into(),
                },
                "not_owned",
                "Job \"v7-backup\" exists and is not this plan's (it has no owner reference to this plan): cutover leaves it alone; delete or rename it, or give the plan other names",
            ),
        ];
        for (e, label, message) in rows {
            assert_eq!((e.label(), e.to_string().as_str()), (label, message));
        }
    }
}
