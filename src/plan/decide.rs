//! The state machine. `decide` is pure: the same spec, status, observation and `now` always
//! give the same decision, so every situation is a table row in the tests.
//!
//! Here: the `Machine` a call works on, its step loop, and the bookkeeping every phase shares
//! (wait, act, enter, advance, fail). Each phase group's handlers are an `impl Machine` block
//! of their own: `pending`, `read_only`, `data` (backup and clone), `green` (new version and
//! migration gates), `switch`, `rehearsal`, `unwind` (interrupts and rollback), `cleanup`
//! (guarded steps after success) and `progress` (copy progress).

use std::time::Duration;

use crate::crd::{
    Failure, GoDuration, Mode, Outcome, Phase, PhaseRecord, Timestamp, UpgradePlanSpec,
    UpgradePlanStatus,
};

use super::conditions as cond;
use super::decision::{Action, Decision, EventKind, EventNote};
use super::frozen;
use super::names;
use super::observed::{JobView, Observed};
use super::reason::Reason;
use super::targets::{Targets, targets};

mod claims;
mod cleanup;
mod data;
mod green;
mod method;
mod owned;
mod pending;
mod progress;
mod read_only;
mod rehearsal;
mod source_lock;
mod switch;
mod syncing;
mod unwind;
mod verify_backup;

pub use method::spelled;

/// How soon to look again while something external is expected to change without a watch
/// event (MongoDB documents, HTTP probes).
const POLL: Duration = Duration::from_secs(2);
/// Safety-net requeue while waiting for watched objects (Jobs, Deployments).
const SAFETY: Duration = Duration::from_secs(30);
/// After a phase change the status write wakes the controller; this is only a fallback.
const NEXT: Duration = Duration::from_secs(1);

/// Decide the next step of a plan from what was observed. No I/O, no clock.
pub fn decide(
    spec: &UpgradePlanSpec,
    status: Option<&UpgradePlanStatus>,
    observed: &Observed,
    now: Timestamp,
) -> Decision {
    let mut m = Machine {
        spec,
        obs: observed,
        targets: targets(spec, &observed.plan.name, status),
        now,
        st: status.cloned().unwrap_or_default(),
        action: None,
        events: Vec::new(),
        requeue: None,
    };
    m.run();
    Decision {
        status: m.st,
        action: m.action,
        events: m.events,
        requeue_after: m.requeue,
    }
}

struct Machine<'a> {
    spec: &'a UpgradePlanSpec,
    obs: &'a Observed,
    /// Every name the plan works with, as `st` records them (see `retarget`).
    targets: Targets,
    now: Timestamp,
    st: UpgradePlanStatus,
    action: Option<Action>,
    events: Vec<EventNote>,
    requeue: Option<Duration>,
}

impl Machine<'_> {
    fn run(&mut self) {
        let generation_changed = self.st.observed_generation != self.obs.plan.generation;
        self.st.observed_generation = self.obs.plan.generation;
        if self.st.phases.is_empty() {
            self.push_record(Phase::Pending, "Plan accepted");
            self.st.message = "Checking the plan against the cluster".into();
        }

        // A plan rejected before any side effect is re-checked when the user fixes it.
        if self.st.phase == Phase::Failed
            && generation_changed
            && self
                .st
                .failure
                .as_ref()
                .is_some_and(|f| f.phase == Phase::Pending)
            && !self.obs.plan.deleting
        {
            self.st = UpgradePlanStatus {
                observed_generation: self.obs.plan.generation,
                phases: std::mem::take(&mut self.st.phases),
                conditions: std::mem::take(&mut self.st.conditions),
                ..Default::default()
            };
            self.retarget();
            self.push_record(Phase::Pending, "The plan changed; checking it again");
        }

        self.report_ignored_changes();
        self.report_failing_reconciles();
        if self.interrupted() || self.foreign_found() {
            self.settle_claims();
            return;
        }

        // A phase entered in this reconcile acts at once, on the same observation (no action
        // was issued, so nothing changed), instead of waiting for its own status write to wake
        // the next reconcile: one reconcile per transition instead of two.
        for _ in 0..4 {
            let before = self.st.phase;
            self.step();
            if self.action.is_some() || self.st.phase == before || self.st.phase.is_terminal() {
                break;
            }
        }
        if !matches!(
            self.st.phase,
            Phase::Syncing | Phase::BackingUp | Phase::Cloning | Phase::VerifyingBackup
        ) {
            self.st.progress = None;
        }
        self.settle_claims();
    }

    fn step(&mut self) {
        match self.st.phase {
            Phase::Pending => self.pending(),
            Phase::Syncing if !self.online() => {
                self.leave_syncing_for_restore("was given up before read-only")
            }
            Phase::Syncing => self.syncing(),
            Phase::EnteringReadOnly => self.entering_read_only(),
            Phase::BackingUp => self.backing_up(),
            Phase::Cloning => self.cloning(),
            Phase::DeployingGreen => self.deploying_green(),
            Phase::Migrating => self.migrating(),
            Phase::AwaitingPromotion => self.awaiting_promotion(),
            Phase::SwitchingTraffic => self.switching_traffic(),
            Phase::LiftingReadOnly => self.lifting_read_only(),
            Phase::VerifyingBackup => self.verifying_backup(),
            Phase::CleaningUp if self.spec.mode == Mode::Rehearsal => self.rehearsal_teardown(),
            Phase::CleaningUp => self.cleaning_up(),
            Phase::RollingBack => self.rolling_back(),
            Phase::Succeeded if self.spec.mode == Mode::Upgrade => self.clean_up_after_success(),
            Phase::Succeeded | Phase::Rehearsed | Phase::RolledBack | Phase::Failed => {}
        }
    }

    // ---- helpers ---------------------------------------------------------------------------

    /// A step that keeps failing is in status, not only in events and the log: which step, the
    /// API's or the database's answer, how many attempts; it turns False once one succeeds.
    fn report_failing_reconciles(&mut self) {
        match &self.obs.plan.failing {
            Some(f) => {
                let message = format!(
                    "{} failed ({} attempt(s) so far, retrying with backoff up to every 5 minutes): {}",
                    f.step,
                    f.attempts,
                    one_line(&f.message)
                );
                self.set_cond(
                    cond::RECONCILE_FAILING,
                    true,
                    Reason::ReconcileError,
                    &message,
                );
            }
            None if cond::is_true(&self.st.conditions, cond::RECONCILE_FAILING) => {
                self.set_cond(
                    cond::RECONCILE_FAILING,
                    false,
                    Reason::Recovered,
                    "The last reconcile succeeded",
                );
            }
            None => {}
        }
    }

    /// Live edits the plan does not act on are named in `SpecChangeIgnored` (a Warning event
    /// each time the set changes), until they are reverted.
    fn report_ignored_changes(&mut self) {
        match frozen::ignored_message(&self.obs.plan.ignored_changes) {
            Some(message) => {
                let was = cond::get(&self.st.conditions, cond::SPEC_CHANGE_IGNORED)
                    .filter(|c| c.status == "True")
                    .map(|c| c.message.clone());
                self.set_cond(
                    cond::SPEC_CHANGE_IGNORED,
                    true,
                    Reason::SpecChangeIgnored,
                    &message,
                );
                if was.as_deref() != Some(message.as_str()) {
                    self.warn(Reason::SpecChangeIgnored, &message);
                }
            }
            None if cond::is_true(&self.st.conditions, cond::SPEC_CHANGE_IGNORED) => {
                self.set_cond(
                    cond::SPEC_CHANGE_IGNORED,
                    false,
                    Reason::SpecAsStarted,
                    "The spec matches what the plan started with",
                );
            }
            None => {}
        }
    }

    /// Resolves the targets again after `st`'s recorded names changed (reset or recorded).
    fn retarget(&mut self) {
        self.targets = targets(self.spec, &self.obs.plan.name, Some(&self.st));
    }

    fn green_name(&self) -> String {
        self.targets.green.clone()
    }

    /// The clone of `source`, one of the plan's databases (validation checks every database a
    /// gate or a cleanup pattern names is one).
    fn clone_of(&self, source: &str) -> String {
        self.targets.clone_of(source).unwrap_or(source).to_string()
    }

    /// The Service's track label names this Deployment.
    fn service_tracks(&self, deployment: &str) -> bool {
        self.obs.service.as_ref().is_some_and(|s| {
            s.selector.get(names::TRACK_LABEL).map(String::as_str) == Some(deployment)
        })
    }

    fn phase_started(&self) -> Timestamp {
        self.st.phases.last().map_or(self.now, |r| r.started_at)
    }

    fn phase_deadline_passed(&self, limit: &GoDuration) -> bool {
        self.now.since(self.phase_started()) > limit.as_std()
    }

    fn wait(&mut self, message: String, requeue: Duration) {
        self.st.message = message;
        self.requeue = Some(requeue);
    }

    fn wait_or_timeout(&mut self, message: String, limit: &GoDuration, reason: Reason) {
        if self.phase_deadline_passed(limit) {
            self.fail(reason, format!("{message} (gave up after {limit})"));
        } else {
            self.wait(message, POLL);
        }
    }

    fn wait_job(&mut self, j: &JobView, limit: &GoDuration, reason: Reason, what: &str) {
        if self.phase_deadline_passed(limit) {
            self.fail(
                reason,
                format!("{what} Job {} did not finish within {limit}", j.name),
            );
        } else {
            self.wait(format!("{what} Job {} is running", j.name), SAFETY);
        }
    }

    fn act(&mut self, action: Action, message: String) {
        self.st.message = message;
        self.action = Some(action);
        self.requeue = Some(SAFETY);
    }

    fn warn(&mut self, reason: Reason, note: &str) {
        self.events.push(EventNote {
            kind: EventKind::Warning,
            reason,
            note: note.into(),
        });
    }

    /// A migration lock nobody releases (in the clone or the source): `MigrationLockStale`
    /// True with `reason` and a Warning when it is first raised, and `Degraded` pointing to it.
    fn report_stale_lock(&mut self, reason: Reason, msg: &str, degraded: &str) {
        if self.set_cond(cond::MIGRATION_LOCK_STALE, true, reason, msg) {
            self.warn(Reason::MigrationLockStale, msg);
        }
        self.set_cond(cond::DEGRADED, true, Reason::MigrationLockStale, degraded);
    }

    fn set_cond(&mut self, type_: &str, status: bool, reason: Reason, message: &str) -> bool {
        self.set_cond_recorded(type_, status, reason.as_str(), message)
    }

    /// `set_cond` with a reason read back from status (a failure's), where it is a string.
    fn set_cond_recorded(
        &mut self,
        type_: &str,
        status: bool,
        reason: &str,
        message: &str,
    ) -> bool {
        cond::set(
            &mut self.st.conditions,
            type_,
            status,
            reason,
            message,
            self.obs.plan.generation,
            self.now,
        )
    }

    fn push_record(&mut self, phase: Phase, detail: &str) {
        self.st.phase = phase;
        self.st.phases.push(PhaseRecord {
            name: phase,
            started_at: self.now,
            finished_at: None,
            outcome: None,
            detail: detail.into(),
        });
    }

    fn close_current(&mut self, outcome: Outcome, detail: &str) {
        if let Some(r) = self.st.phases.last_mut()
            && r.finished_at.is_none()
        {
            r.finished_at = Some(self.now);
            r.outcome = Some(outcome);
            if !detail.is_empty() {
                r.detail = detail.into();
            }
        }
    }

    /// Leaves the current phase successfully, unless the plan is suspended.
    fn advance(&mut self, next: Phase, detail: &str) {
        if self.spec.suspend {
            let msg = format!("Suspended before {next}: set spec.suspend to false to continue");
            self.set_cond(cond::PROGRESSING, false, Reason::Suspended, &msg);
            self.st.message = msg;
            self.requeue = None;
            return;
        }
        self.close_current(Outcome::Succeeded, "");
        if next.is_terminal() {
            self.enter_terminal(next, detail);
        } else {
            self.enter(next, detail);
        }
    }

    fn enter(&mut self, next: Phase, detail: &str) {
        self.push_record(next, detail);
        self.st.message = detail.into();
        self.set_cond(cond::PROGRESSING, true, Reason::Phase(next), detail);
        self.set_cond(
            cond::READY,
            false,
            Reason::Phase(next),
            "The upgrade is in progress",
        );
        self.events.push(EventNote {
            kind: EventKind::Normal,
            reason: Reason::Phase(next),
            note: detail.into(),
        });
        self.requeue = Some(NEXT);
    }

    fn enter_terminal(&mut self, phase: Phase, detail: &str) {
        self.push_record(phase, detail);
        let outcome = if phase == Phase::Failed {
            Outcome::Failed
        } else {
            Outcome::Succeeded
        };
        self.close_current(outcome, "");
        self.st.message = detail.into();
        self.requeue = None;
        let reason = self
            .st
            .failure
            .as_ref()
            .filter(|_| phase == Phase::Failed)
            .map_or(phase.as_str().to_string(), |f| f.reason.clone());
        // A requested rollback is the declared outcome (GitOps tools wait for Ready).
        let ready = matches!(
            phase,
            Phase::Succeeded | Phase::Rehearsed | Phase::RolledBack
        );
        self.set_cond_recorded(cond::READY, ready, &reason, detail);
        self.set_cond(cond::PROGRESSING, false, Reason::Phase(phase), detail);
        self.set_cond_recorded(
            cond::DEGRADED,
            phase == Phase::Failed,
            &reason,
            if phase == Phase::Failed { detail } else { "" },
        );
        self.events.push(EventNote {
            kind: if phase == Phase::Failed {
                EventKind::Warning
            } else {
                EventKind::Normal
            },
            reason: Reason::Phase(phase),
            note: detail.into(),
        });
    }

    /// Something went wrong: before any side effect the plan simply fails; afterwards it first
    /// restores the old version (RollingBack) and ends Failed.
    fn fail(&mut self, reason: Reason, message: String) {
        let phase = self.st.phase;
        self.st.failure = Some(Failure {
            phase,
            reason: reason.as_str().into(),
            message: message.clone(),
        });
        self.warn(reason, &message);
        self.close_current(Outcome::Failed, &message);
        if phase == Phase::Pending {
            self.enter_terminal(Phase::Failed, &message);
        } else {
            self.enter(
                Phase::RollingBack,
                &format!("Restoring the old version: {message}"),
            );
        }
    }
}

fn one_line(s: &str) -> String {
    let s = s.trim();
    let joined: Vec<&str> = s.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let mut out = joined.join(" | ");
    if out.len() > 600 {
        let mut cut = 600;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    if out.is_empty() {
        "no message".into()
    } else {
        out
    }
}
