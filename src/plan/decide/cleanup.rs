//! Guarded cleanup after `Succeeded`: each configured step waits for its time, checks its
//! guard, and issues at most one action per reconcile. A refused step says why in its entry,
//! in the `CleanupBlocked` condition and in a Warning event; it is looked at again, so fixing
//! the cause (a Service's selector, an approval) lets it run.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::crd::{
    CleanupState, CleanupStatus, CleanupStep, CleanupStepName, GoDuration, ObsoleteCollection,
    Outcome, Phase, PhaseRecord, Timestamp,
};

use super::super::conditions as cond;
use super::super::decision::{Action, EventKind, EventNote};
use super::super::names;
use super::super::observed::{DatabaseView, JobState, Workloads};
use super::super::obsolete;
use super::super::reason::Reason;
use super::{Machine, SAFETY};

/// How often a refused step is looked at again (its cause is usually fixed by hand).
const RECHECK: Duration = Duration::from_secs(300);

/// What one step's evaluation concluded.
struct Verdict {
    state: CleanupState,
    due: Option<Timestamp>,
    message: String,
    action: Option<Action>,
}

impl Verdict {
    fn new(state: CleanupState, message: String) -> Self {
        Verdict {
            state,
            due: None,
            message,
            action: None,
        }
    }
    fn scheduled(due: Timestamp, message: String) -> Self {
        Verdict {
            due: Some(due),
            ..Verdict::new(CleanupState::Scheduled, message)
        }
    }
    fn act(action: Action, message: String) -> Self {
        Verdict {
            action: Some(action),
            ..Verdict::new(CleanupState::Running, message)
        }
    }
}

impl Machine<'_> {
    /// The steps this plan asks for, in order.
    fn cleanup_steps(&self) -> Vec<CleanupStepName> {
        let c = &self.spec.cleanup;
        let mut steps = vec![CleanupStepName::ScaleDownBlue];
        if c.delete_blue_after.is_some() {
            steps.push(CleanupStepName::DeleteBlue);
        }
        if c.drop_source_databases_after.is_some() {
            steps.push(CleanupStepName::DropSourceDatabases);
        }
        if c.obsolete_collections.is_some() {
            steps.push(CleanupStepName::DropObsoleteCollections);
        }
        if self.spec.backup.keep_last > 0 {
            steps.push(CleanupStepName::PruneBackups);
        }
        steps
    }

    pub(super) fn clean_up_after_success(&mut self) {
        let Some(lifted) = self.st.read_only_lifted_at else {
            return;
        };
        let mut cleanup = self.st.cleanup.clone().unwrap_or_default();
        let mut refusals = Vec::new();
        let mut next: Option<Duration> = None;
        let mut wake = |d: Duration| next = Some(next.map_or(d, |n: Duration| n.min(d)));

        for name in self.cleanup_steps() {
            let previous = cleanup.steps.iter().find(|s| s.name == name).cloned();
            if previous
                .as_ref()
                .is_some_and(|p| p.state == CleanupState::Done)
            {
                continue;
            }
            let verdict = match name {
                CleanupStepName::ScaleDownBlue => self.scale_down_blue(lifted),
                CleanupStepName::DeleteBlue => self.delete_blue(lifted),
                CleanupStepName::DropSourceDatabases => self.drop_sources(lifted),
                CleanupStepName::DropObsoleteCollections => self.drop_obsolete(&mut cleanup),
                CleanupStepName::PruneBackups => self.prune_backups(),
            };
            let Verdict {
                state,
                due,
                message,
                mut action,
            } = verdict;
            // One side effect per reconcile: a later step waits for the next one.
            if action.is_some() && self.action.is_some() {
                action = None;
                wake(Duration::from_secs(1));
            }
            let was = previous.as_ref().map(|p| p.state);
            match state {
                CleanupState::Done => {
                    self.cleanup_done(name, &message);
                }
                CleanupState::Refused => {
                    if was != Some(CleanupState::Refused)
                        || previous.as_ref().is_some_and(|p| p.message != message)
                    {
                        self.events.push(EventNote {
                            kind: EventKind::Warning,
                            reason: Reason::CleanupRefused,
                            note: format!("{name:?}: {message}"),
                        });
                    }
                    refusals.push(format!("{name:?}: {message}"));
                    wake(RECHECK);
                }
                CleanupState::Scheduled => {
                    if let Some(d) = due {
                        wake(d.since(self.now).max(Duration::from_secs(1)));
                    }
                }
                CleanupState::Running | CleanupState::AwaitingApproval => wake(SAFETY),
            }
            if let Some(a) = action {
                self.action = Some(a);
            }
            let step = CleanupStep {
                name,
                state,
                due: due.or(previous.as_ref().and_then(|p| p.due)),
                done_at: (state == CleanupState::Done).then_some(self.now),
                message,
            };
            match cleanup.steps.iter_mut().find(|s| s.name == name) {
                Some(s) => *s = step,
                None => cleanup.steps.push(step),
            }
        }
        cleanup.steps.sort_by_key(|s| s.name);

        if refusals.is_empty() {
            if cond::is_true(&self.st.conditions, cond::CLEANUP_BLOCKED) {
                self.set_cond(
                    cond::CLEANUP_BLOCKED,
                    false,
                    Reason::Unblocked,
                    "No cleanup step is refused",
                );
            }
        } else {
            self.set_cond(
                cond::CLEANUP_BLOCKED,
                true,
                Reason::GuardFailed,
                &refusals.join("; "),
            );
        }
        let pending: Vec<String> = cleanup
            .steps
            .iter()
            .filter(|s| s.state != CleanupState::Done)
            .map(|s| format!("{:?} {:?}: {}", s.name, s.state, s.message))
            .collect();
        let base = format!("Upgrade to {} complete", self.spec.target.image);
        self.st.message = if pending.is_empty() {
            format!("{base}; cleanup finished")
        } else {
            format!("{base}; cleanup: {}", pending.join("; "))
        };
        self.st.cleanup = Some(cleanup);
        self.requeue = next;
    }

    /// A finished step goes into the audit trail as a closed `CleaningUp` record.
    fn cleanup_done(&mut self, name: CleanupStepName, message: &str) {
        self.st.phases.push(PhaseRecord {
            name: Phase::CleaningUp,
            started_at: self.now,
            finished_at: Some(self.now),
            outcome: Some(Outcome::Succeeded),
            detail: format!("{name:?}: {message}"),
        });
        self.events.push(EventNote {
            kind: EventKind::Normal,
            reason: name.into(),
            note: message.into(),
        });
    }

    fn due(&self, lifted: Timestamp, after: &GoDuration) -> Timestamp {
        lifted.plus(after.as_std())
    }

    fn scale_down_blue(&self, lifted: Timestamp) -> Verdict {
        let Some(blue) = &self.obs.blue else {
            return Verdict::new(
                CleanupState::Done,
                format!("Deployment {} is gone", self.spec.app.deployment),
            );
        };
        if blue.replicas == 0 {
            return Verdict::new(
                CleanupState::Done,
                format!("The old version {} is scaled to 0", blue.name),
            );
        }
        let due = self.due(lifted, &self.spec.cleanup.scale_down_blue_after);
        if self.now < due {
            return Verdict::scheduled(
                due,
                format!(
                    "The old version {} keeps running until {due} for a quick rollback",
                    blue.name
                ),
            );
        }
        Verdict::act(
            Action::Scale {
                color: crate::crd::Color::Blue,
                replicas: 0,
            },
            format!("Scaling the old version {} to 0", blue.name),
        )
    }

    fn delete_blue(&self, lifted: Timestamp) -> Verdict {
        let Some(after) = &self.spec.cleanup.delete_blue_after else {
            return Verdict::new(CleanupState::Done, "not asked for".into());
        };
        let Some(blue) = &self.obs.blue else {
            return Verdict::new(
                CleanupState::Done,
                format!("Deployment {} is deleted", self.spec.app.deployment),
            );
        };
        let due = self.due(lifted, after);
        if self.now < due {
            return Verdict::scheduled(
                due,
                format!("Deployment {} will be deleted at {due}", blue.name),
            );
        }
        let Some(w) = &self.obs.workloads else {
            return Verdict::new(
                CleanupState::Running,
                "Looking at the namespace's Services".into(),
            );
        };
        let selecting: Vec<String> = w
            .services
            .iter()
            .filter(|s| names::selects(&s.selector, &blue.pod_labels))
            .map(|s| format!("Service {}", s.name))
            .collect();
        if !selecting.is_empty() {
            return Verdict::new(
                CleanupState::Refused,
                format!(
                    "Deployment {} is kept: {} selects its pods; point it elsewhere or delete it and the step runs",
                    blue.name,
                    selecting.join(", ")
                ),
            );
        }
        Verdict::act(
            Action::DeleteBlue,
            format!("Deleting the old version's Deployment {}", blue.name),
        )
    }

    fn drop_sources(&self, lifted: Timestamp) -> Verdict {
        let Some(after) = &self.spec.cleanup.drop_source_databases_after else {
            return Verdict::new(CleanupState::Done, "not asked for".into());
        };
        let sources = self.targets.sources();
        let due = self.due(lifted, after);
        if self.now < due {
            return Verdict::scheduled(
                due,
                format!(
                    "Source databases {} will be dropped at {due}",
                    sources.join(", ")
                ),
            );
        }
        let backup_ok = self
            .st
            .backup
            .as_ref()
            .is_some_and(|b| b.checksum.is_some() && b.completed_at.is_some())
            && self.st.clone.as_ref().is_some_and(|c| c.verified)
            && cond::is_true(&self.st.conditions, cond::BACKUP_VERIFIED);
        if !backup_ok {
            return Verdict::new(
                CleanupState::Refused,
                format!(
                    "Source databases {} are kept: no verified backup of them is recorded (status.backup with a checksum, restored and counted)",
                    sources.join(", ")
                ),
            );
        }
        let Some(w) = &self.obs.workloads else {
            return Verdict::new(
                CleanupState::Running,
                "Looking at the namespace's Services".into(),
            );
        };
        let users = source_users(w, &sources);
        if !users.is_empty() {
            return Verdict::new(
                CleanupState::Refused,
                format!(
                    "Source databases are kept: {}; point the Service elsewhere or remove the Deployment and the step runs",
                    users.join("; ")
                ),
            );
        }
        match &self.obs.database {
            DatabaseView::Unknown => {
                Verdict::new(CleanupState::Running, "Listing databases".into())
            }
            DatabaseView::Unreachable(e) => Verdict::new(
                CleanupState::Running,
                format!("Cannot reach MongoDB to drop the sources, retrying: {e}"),
            ),
            DatabaseView::Reachable { databases } => {
                let left: Vec<String> = sources
                    .iter()
                    .filter(|d| databases.contains_key(*d))
                    .cloned()
                    .collect();
                if left.is_empty() {
                    let path = self
                        .st
                        .backup
                        .as_ref()
                        .map(|b| b.path.clone())
                        .unwrap_or_default();
                    Verdict::new(
                        CleanupState::Done,
                        format!(
                            "Source databases {} are dropped; their backup is {path}",
                            sources.join(", ")
                        ),
                    )
                } else {
                    Verdict::act(
                        Action::DropDatabases {
                            names: left.clone(),
                        },
                        format!(
                            "Dropping source databases {} (backup verified)",
                            left.join(", ")
                        ),
                    )
                }
            }
        }
    }

    fn drop_obsolete(&self, cleanup: &mut CleanupStatus) -> Verdict {
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

    fn prune_backups(&self) -> Verdict {
        let keep = self.spec.backup.keep_last;
        match &self.obs.prune_job {
            None => Verdict::act(
                Action::CreatePruneJob,
                format!(
                    "Backup retention Job {} keeps the last {keep} backup(s) of {}",
                    self.targets.prune_job, self.spec.app.deployment
                ),
            ),
            Some(j) => match j.state {
                JobState::Active => Verdict::new(
                    CleanupState::Running,
                    format!("Backup retention Job {} is running", j.name),
                ),
                JobState::Succeeded => Verdict::new(
                    CleanupState::Done,
                    format!(
                        "Kept the last {keep} backup(s): {}",
                        super::one_line(&j.message)
                    ),
                ),
                JobState::Failed => Verdict::new(
                    CleanupState::Refused,
                    format!(
                        "Backup retention Job {} failed: {}; delete the Job to try again",
                        j.name,
                        super::one_line(&j.message)
                    ),
                ),
            },
        }
    }

    /// Why a rollback from `Succeeded` cannot work any more, if cleanup took away what it needs.
    pub(super) fn rollback_impossible(&self) -> Option<String> {
        let done = |n: CleanupStepName| {
            self.st.cleanup.as_ref().is_some_and(|c| {
                c.steps.iter().any(|s| {
                    s.name == n && matches!(s.state, CleanupState::Done | CleanupState::Running)
                })
            })
        };
        if self.st.phase != Phase::Succeeded {
            return None;
        }
        if self.obs.blue.is_none() || done(CleanupStepName::DeleteBlue) {
            return Some(format!(
                "the old version's Deployment {} was deleted at cleanup",
                self.spec.app.deployment
            ));
        }
        if done(CleanupStepName::DropSourceDatabases) {
            return Some(
                "the source databases were dropped at cleanup; restore them from the backup in status.backup first"
                    .into(),
            );
        }
        None
    }
}

/// "Service S selects Deployment D, whose environment names database X", one per finding.
fn source_users(w: &Workloads, sources: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for d in &w.deployments {
        let named: Vec<&String> = sources
            .iter()
            .filter(|db| d.env.iter().any(|(_, v)| names_database(v, db)))
            .collect();
        if named.is_empty() {
            continue;
        }
        for s in w
            .services
            .iter()
            .filter(|s| names::selects(&s.selector, &d.pod_labels))
        {
            out.push(format!(
                "Service {} selects Deployment {}, whose environment names database {}",
                s.name,
                d.name,
                named
                    .iter()
                    .map(|n| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    out
}

/// An environment value names a database when it is the name itself or a MongoDB connection
/// string whose path is that database.
fn names_database(value: &str, db: &str) -> bool {
    value == db || crate::uri::database(value) == Some(db)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::observed::{ServiceSelector, WorkloadView};

    #[test]
    fn database_names_in_environment_values() {
        assert!(names_database("Squidex", "Squidex"));
        assert!(names_database(
            "mongodb://u:p@h:27017/Squidex?authSource=admin",
            "Squidex"
        ));
        assert!(names_database("mongodb+srv://h/Squidex", "Squidex"));
        assert!(!names_database(
            "mongodb://h:27017/?directConnection=true",
            "Squidex"
        ));
        assert!(!names_database(
            "mongodb://h:27017/SquidexContent",
            "Squidex"
        ));
        assert!(!names_database("Squidex-up2", "Squidex"));
    }

    #[test]
    fn a_service_selecting_a_deployment_on_the_sources_blocks_the_drop() {
        let labels = |v: &str| BTreeMap::from([("app".to_string(), v.to_string())]);
        let w = Workloads {
            services: vec![ServiceSelector {
                name: "squidex-headless".into(),
                selector: labels("squidex"),
            }],
            deployments: vec![
                WorkloadView {
                    name: "squidex".into(),
                    pod_labels: labels("squidex"),
                    env: vec![("STORE__MONGODB__DATABASE".into(), "Squidex".into())],
                },
                WorkloadView {
                    name: "other".into(),
                    pod_labels: labels("other"),
                    env: vec![("DB".into(), "Squidex".into())],
                },
            ],
        };
        let users = source_users(&w, &["Squidex".into()]);
        assert_eq!(users.len(), 1, "{users:?}");
        assert!(users[0].contains("Service squidex-headless selects Deployment squidex"));
        assert!(source_users(&w, &["Other".into()]).is_empty());
    }
}
