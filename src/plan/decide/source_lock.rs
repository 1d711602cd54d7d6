//! `MigrationLockStale` on the SOURCE database: while cutover waits for the OLD version to
//! roll out (`EnteringReadOnly` restarting it read-only, `RollingBack` restarting it
//! read-write), an old-version pod killed just after it took its start-up migration lock
//! (a node restart) leaves the lock held in the source, and every new pod of the old version
//! waits for it: the rollout never completes. Reported like the clone's stale lock in
//! `Migrating` (condition, Warning event, Degraded) with the document and the command that
//! releases it; cutover never releases it itself.

use crate::plan::conditions as cond;
use crate::plan::observed::DeploymentView;
use crate::plan::reason::Reason;

use super::Machine;

impl Machine<'_> {
    /// The stale-lock message while the source's migration lock is held, the old version
    /// has not rolled out and the phase has waited `staleLockAfter`; raises the condition
    /// (Warning event once) and Degraded. Clears the condition it raised once the lock moved.
    pub(super) fn old_version_lock(&mut self, blue: &DeploymentView) -> Option<String> {
        let spec = self.spec;
        let gate = spec.migration.mongo_document.as_ref()?;
        let Some(Ok(doc)) = &self.obs.source_migration_doc else {
            return None; // not read or unreadable: nothing to say either way
        };
        let since = self.phase_started();
        let stale = doc.as_ref().is_some_and(|d| d.locked)
            && !blue.rolled_out()
            && self.now.since(since) >= gate.stale_lock_after.as_std();
        let raised = cond::get(&self.st.conditions, cond::MIGRATION_LOCK_STALE)
            .is_some_and(|c| c.status == "True" && c.reason == Reason::SourceLockHeld.as_str());
        let Some(doc) = doc.as_ref().filter(|_| stale) else {
            if raised {
                self.set_cond(
                    cond::MIGRATION_LOCK_STALE,
                    false,
                    Reason::LockMoved,
                    &format!(
                        "The migration lock in the source {}.{} was released",
                        gate.database, gate.collection
                    ),
                );
                self.set_cond(cond::DEGRADED, false, Reason::Healthy, "");
            }
            return None;
        };
        let filter = if gate.filter.is_empty() {
            "{}".to_string()
        } else {
            serde_json::to_string(&gate.filter).unwrap_or_default()
        };
        let msg = format!(
            "The migration lock in the SOURCE database {db}.{coll} is held while Deployment {blue} (the old version) waits to roll out ({summary}) since {since}: \
             an old-version pod was probably killed just after it took its start-up migration lock (a node restart), and its replacements wait for the lock. Document: {raw}. \
             Check that no pod of {blue} is migrating, then release it: mongosh \"$URI\" --eval 'db.getSiblingDB(\"{db}\").getCollection(\"{coll}\").updateOne({filter}, {{$set: {{\"{lock}\": false}}}})' \
             (URI: the connection string in Secret {secret}). cutover never releases it; the rollout continues once it is released.",
            db = gate.database,
            coll = gate.collection,
            blue = blue.name,
            summary = blue.rollout_summary(),
            raw = doc.raw,
            lock = gate.lock_field,
            secret = spec.database.connection_secret.name,
        );
        self.report_stale_lock(
            Reason::SourceLockHeld,
            &msg,
            "The migration lock in the source is stale; see MigrationLockStale",
        );
        Some(msg)
    }
}
