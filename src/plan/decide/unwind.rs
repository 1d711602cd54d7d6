//! Unwinding: deletion and a requested rollback pre-empt the forward sequence, and
//! `RollingBack` restores the old version step by step before the plan ends.

use std::time::Duration;

use crate::crd::{Color, Failure, Mode, Outcome, Phase, Timestamp};

use super::super::conditions as cond;
use super::super::decision::{Action, EventKind, EventNote};
use super::super::names;
use super::super::observed::JobState;
use super::super::reason::Reason;
use super::{Machine, SAFETY};

/// A deleted plan lets go at most this many `timeouts.rollout` after its deletion: an unwind
/// waits on up to three rollouts (the new version read-only, the old one ready, the old one
/// read-write).
const DELETION_ROLLOUTS: u32 = 3;

impl Machine<'_> {
    /// Deletion and `spec.traffic: blue` pre-empt the forward sequence. True when handled.
    pub(super) fn interrupted(&mut self) -> bool {
        let phase = self.st.phase;
        if self.obs.plan.deleting {
            if phase.is_terminal() {
                return true;
            }
            if let Some(at) = self.obs.plan.deleted_at
                && self.now.since(at) > self.deletion_bound()
            {
                self.let_go_after_deletion(at);
                return true;
            }
            if phase == Phase::RollingBack && !self.rollback_would_lose_writes() {
                return false;
            }
            if self.lifted() {
                self.hand_over_on_deletion();
                return true;
            }
            self.fail(
                Reason::PlanDeleted,
                "The plan was deleted mid-way; restoring the old version before letting go".into(),
            );
            return true;
        }

        let rollback_possible = self.spec.mode == Mode::Upgrade
            && !matches!(
                phase,
                Phase::RollingBack | Phase::RolledBack | Phase::Failed | Phase::Rehearsed
            );
        if self.spec.traffic == Color::Green || !rollback_possible {
            // A rollback waiting for the dump of the frozen sources says so until it is done.
            let awaiting_dump = phase == Phase::RollingBack
                && cond::get(&self.st.conditions, cond::ROLLBACK_BLOCKED)
                    .is_some_and(|c| c.reason == Reason::AwaitingBackup.as_str());
            if cond::is_true(&self.st.conditions, cond::ROLLBACK_BLOCKED) && !awaiting_dump {
                self.set_cond(
                    cond::ROLLBACK_BLOCKED,
                    false,
                    Reason::TrafficOnGreen,
                    "spec.traffic is green again; no rollback pending",
                );
            }
            if cond::is_true(&self.st.conditions, cond::DATA_DIVERGED) {
                self.set_cond(
                    cond::DATA_DIVERGED,
                    false,
                    Reason::TrafficOnGreen,
                    "spec.traffic is green again; no rollback pending",
                );
            }
            return false;
        }

        if phase == Phase::Pending {
            self.close_current(Outcome::Interrupted, "");
            self.enter_terminal(
                Phase::RolledBack,
                "spec.traffic is blue before anything was changed; nothing to undo",
            );
            return true;
        }

        if let Some(why) = self.rollback_impossible() {
            let msg = format!(
                "Rollback refused: {why}. The new version keeps serving; set spec.traffic back to green"
            );
            if self.set_cond(cond::ROLLBACK_BLOCKED, true, Reason::CleanedUp, &msg) {
                self.warn(Reason::RollbackBlocked, &msg);
            }
            self.st.message = msg;
            self.requeue = Some(SAFETY);
            return true;
        }

        if self.st.read_only_lifted_at.is_some() && !self.spec.rollback.accept_data_loss {
            self.refuse_data_loss();
            return true;
        }

        self.close_current(Outcome::Interrupted, "rollback requested");
        self.set_cond(
            cond::DATA_DIVERGED,
            false,
            Reason::RollbackAccepted,
            "Rolling back; writes made on the new version since read-only was lifted are left in the clones",
        );
        self.enter(
            Phase::RollingBack,
            "Rolling back to the old version as requested (spec.traffic: blue)",
        );
        true
    }

    /// A rollback after the lift without `rollback.acceptDataLoss`: DataDiverged, nothing moves.
    fn refuse_data_loss(&mut self) {
        let lifted = self
            .st
            .read_only_lifted_at
            .map_or_else(|| "an earlier reconcile".to_string(), |t| t.to_string());
        let writes = self.writes_since_lift();
        let msg = format!(
            "Rollback refused: read-only was lifted on the new version at {lifted}; writes since then exist only in the clones{writes} and would be lost. \
             Set spec.rollback.acceptDataLoss: true to roll back anyway, or set spec.traffic back to green."
        );
        if self.set_cond(cond::DATA_DIVERGED, true, Reason::WritesSinceLift, &msg) {
            self.warn(Reason::DataDiverged, &msg);
        }
        self.st.message = msg;
        self.requeue = Some(SAFETY);
    }

    /// " (N documents added since read-only was lifted)", when the clones were counted then
    /// and now. Compared with the counts at the lift, not after the restore: the new version's
    /// own migration writes to the clones too, and those writes are not lost by a rollback.
    fn writes_since_lift(&self) -> String {
        let (Some(Ok(now)), Some(clone)) = (&self.obs.clone_counts, &self.st.clone) else {
            return String::new();
        };
        match clone.added_since_lift(now) {
            None => String::new(),
            Some((added, true)) => format!(" ({added} documents added since read-only was lifted)"),
            Some((added, false)) => {
                format!(" (at least {added} documents added since read-only was lifted)")
            }
        }
    }

    pub(super) fn rolling_back(&mut self) {
        let failed = self.st.failure.is_some();
        // After the lift an online plan's backup Job dumps the frozen sources the rollback
        // waits for: never stopped.
        let dump_awaited = self.backup_after_switch() && self.st.read_only_lifted_at.is_some();
        let any_job_running = [
            (!dump_awaited).then_some(&self.obs.backup_job),
            Some(&self.obs.clone_job),
            Some(&self.obs.migration_job),
            Some(&self.obs.verify_job),
        ]
        .into_iter()
        .flatten()
        .flatten()
        .any(|j| j.state == JobState::Active);
        if any_job_running {
            self.act(Action::StopJobs, "Stopping this plan's running Jobs".into());
            return;
        }
        let green_name = self.green_name();
        let on_green = self.service_tracks(&green_name);

        // Every path back after the lift obeys DataDiverged: until the new version is frozen,
        // moving traffic back needs rollback.acceptDataLoss (a failure alone is not enough).
        if self.rollback_would_lose_writes() {
            self.refuse_data_loss();
            return;
        }

        // Writes may have reached the new version: freeze it before traffic moves back.
        if self.st.read_only_lifted_at.is_some()
            && on_green
            && let Some(g) = &self.obs.green
            && g.replicas > 0
        {
            if !g.read_only_env {
                self.act(
                    Action::SetReadOnly {
                        color: Color::Green,
                        enabled: true,
                    },
                    format!("Making {green_name} read-only before traffic moves back"),
                );
                return;
            }
            if !g.rolled_out() && !self.phase_deadline_passed(&self.spec.timeouts.rollout) {
                self.wait(
                    format!(
                        "Waiting for {green_name} to roll out read-only: {}",
                        g.rollout_summary()
                    ),
                    SAFETY,
                );
                return;
            }
        }

        let Some(blue) = self.obs.blue.clone() else {
            self.finish_unwinding(format!(
                "Deployment {} no longer exists, so cutover cannot restore it; traffic was not moved. Restore the old version by hand",
                self.spec.app.deployment
            ));
            return;
        };
        let blue_replicas = self.st.blue_replicas.unwrap_or(1);
        if blue.replicas == 0 && blue_replicas > 0 {
            self.act(
                Action::Scale {
                    color: Color::Blue,
                    replicas: blue_replicas,
                },
                format!(
                    "Scaling the old version {} back to {blue_replicas}",
                    blue.name
                ),
            );
            return;
        }
        if on_green {
            if blue.ready_replicas == 0 {
                self.rollback_stuck(
                    format!(
                        "Waiting for a ready pod of {} before moving traffic back ({}); traffic stays on {green_name} meanwhile",
                        blue.name,
                        blue.rollout_summary(),
                    ),
                    &blue.name,
                );
                return;
            }
            self.act(
                Action::PinService { color: Color::Blue },
                format!(
                    "Switching Service {} back to {}",
                    self.spec.app.service, blue.name
                ),
            );
            return;
        }
        self.st.active_color = Some(Color::Blue);
        if blue.read_only_env && self.rollback_waits_for_dump() {
            return;
        }
        if blue.read_only_env {
            self.act(
                Action::SetReadOnly {
                    color: Color::Blue,
                    enabled: false,
                },
                format!("Lifting read-only on the old version {}", blue.name),
            );
            return;
        }
        if !blue.rolled_out() {
            self.rollback_stuck(
                format!(
                    "Waiting for {} to roll out read-write ({})",
                    blue.name,
                    blue.rollout_summary()
                ),
                &blue.name,
            );
            return;
        }
        // Rolled out: a source-lock report raised while it waited is cleared.
        self.old_version_lock(&blue);
        self.set_cond(
            cond::READ_ONLY,
            false,
            Reason::LiftedOnBlue,
            "The old version serves read-write again",
        );
        if let Some(g) = &self.obs.green {
            if failed || self.spec.mode == Mode::Rehearsal {
                self.act(
                    Action::DeleteGreen,
                    format!(
                        "Removing Deployment {}; the clones are kept for inspection",
                        g.name
                    ),
                );
                return;
            }
            if g.replicas > 0 {
                self.act(
                    Action::Scale {
                        color: Color::Green,
                        replicas: 0,
                    },
                    format!("Scaling Deployment {} to 0; the clones are kept", g.name),
                );
                return;
            }
        }
        if self.rollback_drops_scratch() {
            return;
        }
        self.finish_unwinding(String::new());
    }

    // ---- deletion ----------------------------------------------------------------------------

    /// Read-only was lifted on the new version: writes since then exist only in the clones.
    fn lifted(&self) -> bool {
        self.spec.mode == Mode::Upgrade
            && (self.st.read_only_lifted_at.is_some()
                || matches!(
                    self.st.phase,
                    Phase::VerifyingBackup | Phase::CleaningUp | Phase::Succeeded
                ))
    }

    /// Moving traffic back now would drop writes nobody accepted losing: read-only was lifted,
    /// the new version still takes writes with traffic, and `rollback.acceptDataLoss` is off.
    fn rollback_would_lose_writes(&self) -> bool {
        let green = self.green_name();
        self.lifted()
            && !self.spec.rollback.accept_data_loss
            && self.service_tracks(&green)
            && self
                .obs
                .green
                .as_ref()
                .is_some_and(|g| g.replicas > 0 && !g.read_only_env)
    }

    fn deletion_bound(&self) -> Duration {
        self.spec.timeouts.rollout.as_std() * DELETION_ROLLOUTS
    }

    /// The plan was deleted after the lift: rolling back would drop every write since, so
    /// the new version is kept, read-write, handed over (no longer owned by the plan, so not
    /// garbage-collected with it), and the plan lets go. No cleanup step runs: the old
    /// version, the sources, the clones' other copies and the backups stay as they are.
    fn hand_over_on_deletion(&mut self) {
        let green = self.green_name();
        let blue = self.spec.app.deployment.clone();
        let service = self.spec.app.service.clone();
        let lifted = self
            .st
            .read_only_lifted_at
            .map_or_else(|| "an earlier reconcile".to_string(), |t| t.to_string());
        let Some(g) = self.obs.green.clone() else {
            let msg = format!(
                "The plan was deleted after read-only was lifted on the new version at {lifted}, but its Deployment {green} is gone, so there is nothing to hand over. \
                 cutover does not move traffic back to {blue}: writes made since the lift exist only in the clones ({clones}). \
                 Restore {green} against the clones, or carry those writes over before pointing Service {service} at {blue}. Letting go of the plan.",
                clones = self.targets.clones().join(", "),
            );
            self.st.failure = Some(Failure {
                phase: self.st.phase,
                reason: Reason::GreenDeploymentMissing.as_str().into(),
                message: msg.clone(),
            });
            self.warn(Reason::GreenDeploymentMissing, &msg);
            self.close_current(Outcome::Interrupted, "the plan was deleted");
            self.enter_terminal(Phase::Failed, &msg);
            return;
        };
        if g.read_only_env {
            self.act(
                Action::SetReadOnly {
                    color: Color::Green,
                    enabled: false,
                },
                format!(
                    "The plan was deleted after read-only was lifted: making {green} read-write before letting go"
                ),
            );
            return;
        }
        if g.owned_by_plan {
            self.act(
                Action::ReleaseGreen,
                format!(
                    "The plan was deleted after read-only was lifted: handing Deployment {green} over (the plan no longer owns it) before letting go"
                ),
            );
            return;
        }
        self.set_cond(
            cond::READ_ONLY,
            false,
            Reason::Lifted,
            "The application serves read-write",
        );
        let msg = format!(
            "The plan was deleted after read-only was lifted on the new version at {lifted}: writes made since then exist only in the clones, so a rollback would lose them. \
             The new version {green} ({image}) was kept, read-write, behind Service {service}, and handed over (the plan no longer owns it). \
             No cleanup step ran: Deployment {blue} (the old version), the source databases and the backups were left as they are; remove them when no longer needed.",
            image = self.spec.target.image,
        );
        self.events.push(EventNote {
            kind: EventKind::Normal,
            reason: Reason::NewVersionKept,
            note: msg.clone(),
        });
        self.close_current(Outcome::Interrupted, "the plan was deleted");
        self.enter_terminal(Phase::Succeeded, &msg);
    }

    /// What runs after deletion did not finish within its bound: say where things stand and
    /// let go, so the plan object goes away.
    fn let_go_after_deletion(&mut self, deleted_at: Timestamp) {
        let msg = format!(
            "The plan was deleted at {deleted_at} and what cutover still had to do did not finish within {bound} ({DELETION_ROLLOUTS} × spec.timeouts.rollout); letting go so the deletion completes. \
             It was at: {last}. Where things stand: {state}",
            bound = human(self.deletion_bound()),
            last = self.st.message,
            state = self.where_things_stand(),
        );
        self.st.failure = Some(Failure {
            phase: self.st.phase,
            reason: Reason::DeletionTimedOut.as_str().into(),
            message: msg.clone(),
        });
        self.warn(Reason::DeletionTimedOut, &msg);
        self.close_current(Outcome::Interrupted, "the plan was deleted");
        self.enter_terminal(Phase::Failed, &msg);
    }

    /// Which version takes traffic, which is read-only, and what the plan still owns: for a
    /// person taking over by hand.
    fn where_things_stand(&self) -> String {
        let var = &self.spec.read_only.env.name;
        let mut parts = Vec::new();
        let tracked = self
            .obs
            .service
            .as_ref()
            .and_then(|s| s.selector.get(names::TRACK_LABEL).cloned());
        parts.push(match tracked {
            Some(d) => format!("Service {} selects {d}", self.spec.app.service),
            None => format!(
                "Service {} selects no version by track",
                self.spec.app.service
            ),
        });
        for (what, d) in [("old", &self.obs.blue), ("new", &self.obs.green)] {
            let Some(d) = d else { continue };
            parts.push(format!(
                "the {what} version {} has {} replicas ({}){}{}",
                d.name,
                d.replicas,
                d.rollout_summary(),
                if d.read_only_env {
                    format!(", read-only (remove variable {var} to lift it)")
                } else {
                    ", read-write".into()
                },
                if d.owned_by_plan {
                    ", still owned by the plan (Kubernetes deletes it with the plan)"
                } else {
                    ""
                },
            ));
        }
        format!("{}.", parts.join("; "))
    }

    /// A rollback step waits on the old version `deployment`; past `timeouts.rollout`,
    /// Degraded with what to check and a Warning event once; the rollback keeps trying.
    fn rollback_stuck(&mut self, waiting: String, deployment: &str) {
        if let Some(blue) = self.obs.blue.clone()
            && let Some(lock) = self.old_version_lock(&blue)
        {
            self.wait(format!("{waiting}. {lock}"), SAFETY);
            return;
        }
        let check = format!(
            "Check its pods: kubectl describe pods -l {}={deployment}",
            names::TRACK_LABEL
        );
        if self.phase_deadline_passed(&self.spec.timeouts.rollout) {
            let msg = format!(
                "{waiting}, for more than {} (spec.timeouts.rollout). {check} (image, resources, quota, readiness probe). cutover keeps trying; a deleted plan lets go within {} of its deletion",
                self.spec.timeouts.rollout,
                human(self.deletion_bound())
            );
            if self.set_cond(cond::DEGRADED, true, Reason::RollbackStuck, &msg) {
                self.warn(Reason::RollbackStuck, &msg);
            }
            self.wait(msg, SAFETY);
        } else {
            self.wait(format!("{waiting}. {check}"), SAFETY);
        }
    }

    fn finish_unwinding(&mut self, problem: String) {
        if let Some(f) = self.st.failure.clone() {
            let mut msg = format!(
                "{} The old version serves read-write; the clones are kept for inspection.",
                f.message
            );
            if !problem.is_empty() {
                msg = format!("{} {problem}", f.message);
            }
            self.enter_terminal(Phase::Failed, &msg);
        } else if !problem.is_empty() {
            self.st.failure = Some(Failure {
                phase: Phase::RollingBack,
                reason: Reason::BlueDeploymentMissing.as_str().into(),
                message: problem.clone(),
            });
            self.enter_terminal(Phase::Failed, &problem);
        } else {
            self.enter_terminal(
                Phase::RolledBack,
                "Traffic is back on the old version, which serves read-write; the new version is scaled to 0 and the clones are kept",
            );
        }
    }
}

/// 30m, 1h, 45s: a bound as a person reads it.
fn human(d: Duration) -> String {
    match d.as_secs() {
        s if s > 0 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s > 0 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}
