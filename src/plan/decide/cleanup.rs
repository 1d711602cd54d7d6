//! Guarded cleanup after `Succeeded`: each configured step waits for its time, checks its
//! guard, and issues at most one action per reconcile. A refused step says why in its entry,
//! in the `CleanupBlocked` condition and in a Warning event; it is looked at again, so fixing
//! the cause (a Service's selector, an approval) lets it run.
//!
//! Here: the schedule (which steps, in what order, their state and the condition); each step's
//! time and guard are in `steps`, the obsolete-collection dry run and drop in
//! `obsolete_collections`.

use std::time::Duration;

use crate::crd::{
    CleanupState, CleanupStep, CleanupStepName, GoDuration, Outcome, Phase, PhaseRecord, Timestamp,
};

use super::super::conditions as cond;
use super::super::decision::{Action, EventKind, EventNote};
use super::super::reason::Reason;
use super::{Machine, SAFETY};

mod obsolete_collections;
mod steps;

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
