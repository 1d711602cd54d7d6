//! Claims (issue 13 items 5 and 7): `Pending` reserves every database and the Deployment the
//! plan will touch in the registry on the MongoDB server before its first side effect, and
//! goes on only when all of them are this plan's; terminal phases give them back. The registry
//! is the authority; the watch-cache conflict check in `preflight` only answers sooner.

use crate::crd::{CleanupState, CleanupStepName, Mode, Phase};

use super::super::claims::{self, Claim, ClaimRole, Wanted};
use super::super::conditions as cond;
use super::super::decision::Action;
use super::super::reason::Reason;
use super::super::targets::Targets;
use super::{Machine, NEXT, POLL};

/// Claims of other plans named in a refusal; the rest are counted.
const MAX_HELD_LISTED: usize = 3;

impl Machine<'_> {
    /// The end of `Pending`: true when every claim of `fresh` is this plan's. Otherwise it
    /// claims what is free, releases what it no longer wants, waits for the registry, or fails
    /// naming the plan that holds a name.
    pub(super) fn claimed(&mut self, fresh: &Targets) -> bool {
        let held = match &self.obs.claims {
            None => {
                self.wait(
                    "Reading the claim registry on the MongoDB server".into(),
                    POLL,
                );
                return false;
            }
            Some(Err(e)) => {
                let msg = format!(
                    "The plan cannot start (nothing was changed): the claim registry {db}.{coll} on the MongoDB server cannot be read: {e}. cutover reserves every database there before touching it; let the connection Secret's user read and write database {db:?}",
                    db = claims::DATABASE,
                    coll = claims::COLLECTION,
                );
                self.fail(Reason::ClaimsUnavailable, msg);
                return false;
            }
            Some(Ok(held)) => held.clone(),
        };
        let uid = self.obs.plan.uid.clone();
        let wanted = claims::wanted(fresh, &self.obs.plan.namespace);

        let others: Vec<&Claim> = wanted
            .iter()
            .filter_map(|w| held.iter().find(|c| c.id == w.id && c.holder.uid != uid))
            .collect();
        if !others.is_empty() {
            let mut listed: Vec<String> = others
                .iter()
                .take(MAX_HELD_LISTED)
                .map(|c| {
                    format!(
                        "{} is claimed by UpgradePlan {} (as its {}, uid {})",
                        describe(&c.id),
                        c.holder.describe(),
                        c.role.as_str(),
                        c.holder.uid
                    )
                })
                .collect();
            if others.len() > MAX_HELD_LISTED {
                listed.push(format!("and {} more", others.len() - MAX_HELD_LISTED));
            }
            self.fail(
                Reason::ClaimConflict,
                format!(
                    "The plan cannot start (nothing was changed): {}. Wait for that plan to finish, delete it, or choose other names (spec.database.databases[].cloneName)",
                    listed.join("; ")
                ),
            );
            return false;
        }

        // Claims this plan took for names it no longer wants (the spec changed while Pending).
        let stale: Vec<String> = held
            .iter()
            .filter(|c| c.holder.uid == uid && !wanted.iter().any(|w| w.id == c.id))
            .map(|c| c.id.clone())
            .collect();
        if !stale.is_empty() {
            let msg = format!(
                "Releasing claims the plan no longer needs: {}",
                stale.join(", ")
            );
            self.act(Action::ReleaseClaims { ids: stale }, msg);
            return false;
        }

        let ids: Vec<String> = wanted.iter().map(|w| w.id.clone()).collect();
        let missing: Vec<Wanted> = wanted
            .into_iter()
            .filter(|w| !held.iter().any(|c| c.id == w.id))
            .collect();
        if !missing.is_empty() {
            let msg = format!(
                "Claiming {} in {}.{} before changing anything",
                missing
                    .iter()
                    .map(|w| w.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                claims::DATABASE,
                claims::COLLECTION
            );
            // Intent first: a crash after the insert still finds the claims to give back.
            self.set_cond(cond::CLAIMED, true, Reason::Claiming, &msg);
            self.act(Action::Claim { claims: missing }, msg);
            return false;
        }
        self.set_cond(
            cond::CLAIMED,
            true,
            Reason::ClaimsHeld,
            &format!("This plan holds {}", ids.join(", ")),
        );
        true
    }

    /// A plan at rest gives back what it no longer needs: everything once it ended otherwise
    /// than `Succeeded` or is being deleted; after success the clones at once (they are the
    /// app's databases now), the sources and the Deployment once no cleanup step may still
    /// drop or delete them. One action, only when no other was chosen.
    pub(super) fn settle_claims(&mut self) {
        if self.action.is_some()
            || !self.st.phase.is_terminal()
            || !cond::is_true(&self.st.conditions, cond::CLAIMED)
        {
            return;
        }
        let Some(Ok(held)) = &self.obs.claims else {
            return;
        };
        let mine: Vec<&Claim> = held
            .iter()
            .filter(|c| c.holder.uid == self.obs.plan.uid)
            .collect();
        let release: Vec<String> = mine
            .iter()
            .filter(|c| self.releasable(c.role))
            .map(|c| c.id.clone())
            .collect();
        if !release.is_empty() {
            // Not `act`: the terminal message says how the plan ended and stays.
            self.action = Some(Action::ReleaseClaims { ids: release });
            self.requeue = Some(NEXT);
            return;
        }
        if mine.is_empty() {
            self.set_cond(
                cond::CLAIMED,
                false,
                Reason::ClaimsReleased,
                "This plan holds no claim any more",
            );
        }
    }

    fn releasable(&self, role: ClaimRole) -> bool {
        if self.st.phase != Phase::Succeeded
            || self.spec.mode != Mode::Upgrade
            || self.obs.plan.deleting
        {
            return true;
        }
        let open = |step: CleanupStepName, asked: bool| {
            asked
                && !self.st.cleanup.as_ref().is_some_and(|c| {
                    c.steps
                        .iter()
                        .any(|s| s.name == step && s.state == CleanupState::Done)
                })
        };
        let c = &self.spec.cleanup;
        match role {
            ClaimRole::Clone | ClaimRole::Scratch => true,
            ClaimRole::Source => !open(
                CleanupStepName::DropSourceDatabases,
                c.drop_source_databases_after.is_some(),
            ),
            ClaimRole::Deployment => {
                !open(CleanupStepName::DeleteBlue, c.delete_blue_after.is_some())
            }
        }
    }

    /// This plan holds the claim on database `name`, as observed (unread: it does not).
    pub(super) fn holds_database(&self, name: &str) -> bool {
        let id = claims::database_id(name);
        matches!(&self.obs.claims, Some(Ok(held))
            if held.iter().any(|c| c.id == id && c.holder.uid == self.obs.plan.uid))
    }
}

/// `database "x"` or `Deployment ns/name`, from a claim's `_id`.
fn describe(id: &str) -> String {
    if let Some(db) = id.strip_prefix("db:") {
        format!("database {db:?}")
    } else if let Some(d) = id.strip_prefix("deployment:") {
        format!("Deployment {d}")
    } else {
        id.to_string()
    }
}
