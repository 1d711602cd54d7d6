//! Actions on the MongoDB server: dropping what cleanup removes, and the server-side copy into
//! the clones, which runs in the background (see `copy`) and is known by the plan's key.

use kube::ResourceExt;

use crate::copy::Copies;
use crate::crd::UpgradePlan;
use crate::mongo::{self, Clients};
use crate::plan::Targets;
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

pub async fn drop(
    clients: &Clients,
    uri: &Uri,
    what: Dropping,
    names: &[String],
) -> Result<(), ExecError> {
    let c = clients.get(uri).await?;
    match what {
        Dropping::Databases => mongo::drop_databases(&c, uri, names).await?,
        Dropping::Collections => mongo::drop_collections(&c, uri, names).await?,
    }
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
