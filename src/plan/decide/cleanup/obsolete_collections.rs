//! The obsolete collections step: a dry run lists what the patterns select in the clones and
//! waits for approval; once approved, what was listed and not read since is dropped.

use std::collections::BTreeMap;

use crate::crd::{CleanupState, CleanupStatus, ObsoleteCollection};
use crate::plan::conditions as cond;
use crate::plan::decide::Machine;
use crate::plan::decision::Action;
use crate::plan::obsolete;

use super::Verdict;

impl Machine<'_> {
    pub(super) fn drop_obsolete(&self, cleanup: &mut CleanupStatus) -> Verdict {
        let Some(spec) = &self.spec.cleanup.obsolete_collections else {
            return Verdict::new(CleanupState::Done, "not asked for".into());
        };
        if !cond::is_true(&self.st.conditions, cond::MIGRATED) {
            return Verdict::new(
                CleanupState::Refused,
                "Obsolete collections are kept: the migration gate did not pass (condition Migrated)".into(),
            );
        }
        let collections = match &self.obs.clone_collections {
            None => {
                return Verdict::new(
                    CleanupState::Running,
                    "Listing the clones' collections".into(),
                );
            }
            Some(Err(e)) => {
                return Verdict::new(
                    CleanupState::Running,
                    format!("Cannot list the clones' collections, retrying: {e}"),
                );
            }
            Some(Ok(c)) => c,
        };
        let reads: BTreeMap<&str, i64> = collections
            .iter()
            .map(|c| (c.name.as_str(), c.reads))
            .collect();
        let candidates = self.obsolete_candidates(collections.iter().map(|c| c.name.as_str()));

        if !spec.approved || cleanup.listed_at.is_none() {
            // The dry run: list (again, if what matches changed) and wait for approval.
            let listed: Vec<&str> = cleanup
                .obsolete_collections
                .iter()
                .map(|c| c.name.as_str())
                .collect();
            if cleanup.listed_at.is_none()
                || listed != candidates.iter().map(String::as_str).collect::<Vec<_>>()
            {
                cleanup.obsolete_collections = candidates
                    .iter()
                    .map(|n| ObsoleteCollection {
                        name: n.clone(),
                        reads: reads.get(n.as_str()).copied().unwrap_or(0),
                    })
                    .collect();
                cleanup.listed_at = Some(self.now);
            }
            if candidates.is_empty() {
                return Verdict::new(
                    CleanupState::Done,
                    "No collection matches the obsolete-collection patterns; nothing to drop"
                        .into(),
                );
            }
            return Verdict::new(
                CleanupState::AwaitingApproval,
                format!(
                    "Dry run: would drop {} ({} collection(s)); set spec.cleanup.obsoleteCollections.approved: true to drop them",
                    candidates.join(", "),
                    candidates.len()
                ),
            );
        }

        // Approved: drop what was listed, still exists, and was not read since the listing.
        let mut still_read = Vec::new();
        let mut to_drop = Vec::new();
        let mut dropped = Vec::new();
        for listed in &cleanup.obsolete_collections {
            match reads.get(listed.name.as_str()) {
                None => dropped.push(listed.name.clone()),
                Some(&now) if now > listed.reads => still_read.push(format!(
                    "{} (read {} time(s) since it was listed)",
                    listed.name,
                    now - listed.reads
                )),
                Some(_) => to_drop.push(listed.name.clone()),
            }
        }
        if !to_drop.is_empty() {
            return Verdict::act(
                Action::DropCollections {
                    names: to_drop.clone(),
                },
                format!("Dropping obsolete collections {}", to_drop.join(", ")),
            );
        }
        if !still_read.is_empty() {
            let done = if dropped.is_empty() {
                String::new()
            } else {
                format!("dropped {}; ", dropped.join(", "))
            };
            return Verdict::new(
                CleanupState::Refused,
                format!(
                    "{done}kept {}: the application still reads them; remove them from the patterns",
                    still_read.join(", ")
                ),
            );
        }
        Verdict::new(
            CleanupState::Done,
            format!("Dropped obsolete collections {}", dropped.join(", ")),
        )
    }

    /// `clone.collection` names the patterns select among `present`, sorted.
    fn obsolete_candidates<'a>(&self, present: impl Iterator<Item = &'a str>) -> Vec<String> {
        let Some(spec) = &self.spec.cleanup.obsolete_collections else {
            return Vec::new();
        };
        let present: Vec<&str> = present.collect();
        let mut out = Vec::new();
        for p in &spec.patterns {
            let Some(db) = self
                .spec
                .database
                .databases
                .iter()
                .find(|d| d.name == p.database)
            else {
                continue;
            };
            let clone = self.clone_of(&db.name);
            let prefix = format!("{clone}.");
            let in_db: Vec<String> = present
                .iter()
                .filter_map(|n| n.strip_prefix(&prefix).map(String::from))
                .collect();
            let protected: Vec<String> = self
                .spec
                .migration
                .mongo_document
                .iter()
                .filter(|g| g.database == db.name)
                .map(|g| g.collection.clone())
                .collect();
            out.extend(
                obsolete::select(p, &in_db, &protected)
                    .into_iter()
                    .map(|c| format!("{clone}.{c}")),
            );
        }
        out.sort();
        out.dedup();
        out
    }
}
