//! Unwinding: deletion and a requested rollback pre-empt the forward sequence, and
//! `RollingBack` restores the old version step by step before the plan ends.

use crate::crd::{Color, Failure, Mode, Outcome, Phase};

use super::super::conditions as cond;
use super::super::decision::Action;
use super::super::observed::JobState;
use super::super::reason::Reason;
use super::{Machine, SAFETY};

impl Machine<'_> {
    /// Deletion and `spec.traffic: blue` pre-empt the forward sequence. True when handled.
    pub(super) fn interrupted(&mut self) -> bool {
        let phase = self.st.phase;
        if self.obs.plan.deleting {
            if phase == Phase::RollingBack {
                return false;
            }
            if !phase.is_terminal() {
                self.fail(
                    Reason::PlanDeleted,
                    "The plan was deleted mid-way; restoring the old version before letting go"
                        .into(),
                );
            }
            return true;
        }

        let rollback_possible = self.spec.mode == Mode::Upgrade
            && !matches!(
                phase,
                Phase::RollingBack | Phase::RolledBack | Phase::Failed | Phase::Rehearsed
            );
        if self.spec.traffic == Color::Green || !rollback_possible {
            if cond::is_true(&self.st.conditions, cond::ROLLBACK_BLOCKED) {
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

        if let Some(lifted) = self.st.read_only_lifted_at
            && !self.spec.rollback.accept_data_loss
        {
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
        let any_job_running = [
            &self.obs.backup_job,
            &self.obs.clone_job,
            &self.obs.migration_job,
        ]
        .into_iter()
        .flatten()
        .any(|j| j.state == JobState::Active);
        if any_job_running {
            self.act(Action::StopJobs, "Stopping this plan's running Jobs".into());
            return;
        }
        let green_name = self.green_name();
        let on_green = self.service_tracks(&green_name);

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
                self.wait(
                    format!(
                        "Waiting for a ready pod of {} before moving traffic back",
                        blue.name
                    ),
                    SAFETY,
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
            self.wait(
                format!(
                    "Waiting for {} to roll out read-write: {}",
                    blue.name,
                    blue.rollout_summary()
                ),
                SAFETY,
            );
            return;
        }
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
        self.finish_unwinding(String::new());
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
