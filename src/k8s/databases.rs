//! Actions on the MongoDB server: dropping what cleanup removes, and the server-side copy into
//! the clones, which runs in the background (see `copy`) and is known by the plan's key.

use kube::ResourceExt;

use crate::copy::Copies;
use crate::crd::UpgradePlan;
use crate::mongo::{self, Clients, MongoError};
use crate::plan::Targets;
use crate::plan::claims::{self, Holder, Wanted};
use crate::sync::{SourceResume, SyncInput, Syncs};
use crate::uri::Uri;

use super::error::ExecError;

/// The registry key of a plan's server-side copy: a plan recreated under the same name is a
/// different plan.
pub fn copy_key(plan: &UpgradePlan) -> String {
    format!(
        "{}/{}/{}",
        plan.namespace().unwrap_or_default(),
        plan.name_any(),
        plan.uid().unwrap_or_default()
    )
}

/// What a cleanup step drops.
pub enum Dropping {
    Databases,
    /// Collections given as `database.collection`.
    Collections,
}

/// Drops databases only where this plan holds their claim (a clone it created, a source its
/// cleanup may drop): a database is never dropped on its name alone.
pub async fn drop(
    clients: &Clients,
    uri: &Uri,
    plan: &UpgradePlan,
    what: Dropping,
    names: &[String],
) -> Result<(), ExecError> {
    let c = clients.get(uri).await?;
    match what {
        Dropping::Databases => {
            let ids: Vec<String> = names.iter().map(|n| claims::database_id(n)).collect();
            let not_held = mongo::not_held(&c, uri, &plan.uid().unwrap_or_default(), &ids).await?;
            if !not_held.is_empty() {
                let names: Vec<&str> = not_held
                    .iter()
                    .map(|id| id.strip_prefix("db:").unwrap_or(id))
                    .collect();
                return Err(MongoError::NotClaimed(names.join(", ")).into());
            }
            mongo::drop_databases(&c, uri, names).await?
        }
        Dropping::Collections => mongo::drop_collections(&c, uri, names).await?,
    }
    Ok(())
}

/// Who holds this plan's claims.
fn holder(plan: &UpgradePlan) -> Holder {
    Holder {
        namespace: plan.namespace().unwrap_or_default(),
        plan: plan.name_any(),
        uid: plan.uid().unwrap_or_default(),
    }
}

/// Claims `wanted` for the plan, all or none (see `mongo::claim`).
pub async fn claim(
    clients: &Clients,
    uri: &Uri,
    plan: &UpgradePlan,
    wanted: &[Wanted],
) -> Result<(), ExecError> {
    let c = clients.get(uri).await?;
    mongo::claim(&c, uri, &holder(plan), wanted).await?;
    Ok(())
}

/// Releases those of `ids` the plan holds.
pub async fn release_claims(
    clients: &Clients,
    uri: &Uri,
    plan: &UpgradePlan,
    ids: &[String],
) -> Result<(), ExecError> {
    let c = clients.get(uri).await?;
    mongo::release(&c, uri, &holder(plan).uid, ids).await?;
    Ok(())
}

/// Starts copying every source into its clone, unless the copy already runs or succeeded.
pub async fn start_copy(
    clients: &Clients,
    copies: &Copies,
    plan: &UpgradePlan,
    targets: &Targets,
    uri: &Uri,
) -> Result<(), ExecError> {
    let c = clients.get(uri).await?;
    copies.start(
        &copy_key(plan),
        c,
        uri.clone(),
        targets.pairs(),
        plan.spec.backup.parallelism as usize,
    );
    Ok(())
}

/// Lets go of the plan's copy, stopping it if it still runs: called whenever the plan's reads
/// leave the copy out (another phase, or the plan is being deleted), so a rollback or a
/// deletion keeps the clones as they are.
pub fn release_copy(copies: &Copies, plan: &UpgradePlan) {
    copies.forget(&copy_key(plan));
}

/// Starts the plan's online sync from the recorded state, unless it runs or drained (same key
/// as the copy: a plan recreated under the same name is a different plan).
pub async fn start_sync(
    clients: &Clients,
    syncs: &Syncs,
    plan: &UpgradePlan,
    targets: &Targets,
    uri: &Uri,
    resume: &[SourceResume],
) -> Result<(), ExecError> {
    let c = clients.get(uri).await?;
    syncs.start(
        &copy_key(plan),
        c,
        uri.clone(),
        SyncInput {
            pairs: targets.pairs(),
            resume: resume.to_vec(),
            parallelism: plan.spec.backup.parallelism as usize,
        },
    );
    Ok(())
}

/// Writes the drain markers (once per source in this process).
pub async fn drain_sync(syncs: &Syncs, plan: &UpgradePlan) -> Result<(), ExecError> {
    syncs.request_drain(&copy_key(plan)).await?;
    Ok(())
}

/// Stops and forgets the plan's sync: called whenever the plan's reads leave the sync out
/// (failed, rolled back, past Cloning, deleted), so no stream keeps writing to the clones.
pub fn release_sync(syncs: &Syncs, plan: &UpgradePlan) {
    syncs.forget(&copy_key(plan));
}
