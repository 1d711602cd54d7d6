//! Carries out the one action `decide` chose: Kubernetes writes through `apply`, MongoDB
//! actions through `databases`.

use kube::Client;

use crate::copy::Copies;
use crate::crd::UpgradePlan;
use crate::mongo::Clients;
use crate::plan::{Action, Targets};
use crate::sync::Syncs;
use crate::uri::Uri;

use super::apply::Writer;
use super::build;
use super::databases;
use super::observe::World;

pub use super::error::ExecError;

#[allow(clippy::too_many_arguments)]
pub async fn execute(
    client: &Client,
    mongo: &Clients,
    copies: &Copies,
    syncs: &Syncs,
    plan: &UpgradePlan,
    targets: &Targets,
    world: &World,
    action: &Action,
) -> Result<(), ExecError> {
    let k8s = Writer::new(client, plan, targets, world);
    let uri =
        || -> Result<&Uri, ExecError> { world.uri.as_ref().ok_or(ExecError::ConnectionUnreadable) };
    match action {
        Action::SetReadOnly { color, enabled } => k8s.set_read_only(*color, *enabled).await,
        Action::PinService { color } => k8s.pin_service(*color).await,
        Action::CreateBackupJob => {
            k8s.apply_tools_secret(uri()?).await?;
            k8s.create_job(build::backup_job(plan, targets)).await
        }
        Action::CreateCloneJob => {
            k8s.apply_tools_secret(uri()?).await?;
            k8s.create_job(build::clone_job(plan, targets)).await
        }
        Action::CreateVerifyJob => {
            k8s.apply_tools_secret(uri()?).await?;
            k8s.create_job(build::verify_job(plan, targets)).await
        }
        Action::ApplyGreen { replicas } => k8s.apply_green(*replicas).await,
        Action::CreateMigrationJob => k8s.create_migration_job().await,
        Action::Scale { color, replicas } => k8s.scale(*color, *replicas).await,
        Action::DeleteGreen => k8s.delete_green().await,
        Action::StopJobs => k8s.stop_jobs().await,
        Action::ReleaseGreen => k8s.release_green().await,
        Action::DropDatabases { names } => {
            databases::drop(mongo, uri()?, plan, databases::Dropping::Databases, names).await
        }
        Action::DropCollections { names } => {
            databases::drop(mongo, uri()?, plan, databases::Dropping::Collections, names).await
        }
        Action::Claim { claims } => databases::claim(mongo, uri()?, plan, claims).await,
        Action::ReleaseClaims { ids } => databases::release_claims(mongo, uri()?, plan, ids).await,
        Action::DeleteBlue => k8s.delete_blue().await,
        Action::CreatePruneJob => k8s.create_job(build::prune_job(plan, targets)).await,
        Action::StartServerSideCopy => {
            databases::start_copy(mongo, copies, plan, targets, uri()?).await
        }
        Action::StartSync { resume } => {
            databases::start_sync(mongo, syncs, plan, targets, uri()?, resume).await
        }
        Action::DrainSync => databases::drain_sync(syncs, plan).await,
    }
}
