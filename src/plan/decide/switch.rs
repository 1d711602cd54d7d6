//! After the gates: `SwitchingTraffic` points the Service at the new version,
//! `LiftingReadOnly` lets it write, and `CleaningUp` hands it over.

use crate::crd::{Color, Phase};

use super::super::conditions as cond;
use super::super::decision::Action;
use super::super::names;
use super::super::reason::Reason;
use super::{Machine, NEXT, SAFETY};

impl Machine<'_> {
    pub(super) fn switching_traffic(&mut self) {
        let green = self.green_name();
        if self.obs.service.is_none() {
            self.fail(
                Reason::ServiceMissing,
                format!(
                    "Service {} disappeared before the switch",
                    self.spec.app.service
                ),
            );
            return;
        }
        if self.service_tracks(&green) {
            self.st.active_color = Some(Color::Green);
            self.advance(
                Phase::LiftingReadOnly,
                &format!(
                    "Service {} now sends traffic to {green}; lifting read-only",
                    self.spec.app.service
                ),
            );
        } else {
            self.act(
                Action::PinService {
                    color: Color::Green,
                },
                format!("Switching Service {} to {green}", self.spec.app.service),
            );
        }
    }

    pub(super) fn lifting_read_only(&mut self) {
        let Some(green) = self.obs.green.clone() else {
            self.green_missing_after_switch();
            return;
        };
        if green.read_only_env {
            if self.st.read_only_lifted_at.is_none()
                && self.obs.clone_counts.is_none()
                && !self.phase_deadline_passed(&self.spec.timeouts.rollout)
            {
                // Entered in this reconcile from the switch: the clones were not counted yet,
                // and that count is the baseline DataDiverged measures writes against. Only a
                // measurement: past the deadline the lift goes ahead without it.
                self.wait("Counting the clones before lifting read-only".into(), NEXT);
                return;
            }
            if self.st.read_only_lifted_at.is_none()
                && let Some(Ok(counts)) = &self.obs.clone_counts
            {
                // Still read-only: nothing but the migration has written to the clones yet.
                self.st
                    .clone
                    .get_or_insert_with(Default::default)
                    .record_at_lift(counts);
            }
            let lifted = *self.st.read_only_lifted_at.get_or_insert(self.now);
            self.set_cond(
                cond::READ_ONLY,
                false,
                Reason::Lifted,
                &format!("Read-only lifted on the new version at {lifted}"),
            );
            self.act(
                Action::SetReadOnly {
                    color: Color::Green,
                    enabled: false,
                },
                format!("Lifting read-only on Deployment {}", green.name),
            );
            return;
        }
        if !green.rolled_out() {
            let waiting = format!(
                "Waiting for Deployment {} to roll out read-write: {}",
                green.name,
                green.rollout_summary()
            );
            if self.phase_deadline_passed(&self.spec.timeouts.rollout) {
                let msg = format!(
                    "Deployment {name} (the new version) has not rolled out read-write within {limit} (spec.timeouts.rollout): {summary}. \
                     Service {service} sends traffic to it and read-only was lifted{at}, so writes go to the clones and a rollback would lose them: cutover does not roll back on its own and keeps waiting. \
                     Check its pods: kubectl describe pods -l {label}={name}, and their events and logs (image, resources, quota, readiness probe). \
                     It continues once the rollout completes; to go back to the old version anyway set spec.traffic: blue and spec.rollback.acceptDataLoss: true.",
                    name = green.name,
                    limit = self.spec.timeouts.rollout,
                    summary = green.rollout_summary(),
                    service = self.spec.app.service,
                    at = self
                        .st
                        .read_only_lifted_at
                        .map_or(String::new(), |t| format!(" at {t}")),
                    label = names::TRACK_LABEL,
                );
                if self.set_cond(cond::DEGRADED, true, Reason::RolloutSlow, &msg) {
                    self.warn(Reason::RolloutSlow, &msg);
                }
                self.wait(msg, SAFETY);
            } else {
                self.wait(waiting, SAFETY);
            }
            return;
        }
        self.set_cond(cond::DEGRADED, false, Reason::Healthy, "");
        if self.backup_after_switch() {
            self.advance(
                Phase::VerifyingBackup,
                "The new version serves read-write; backing up the frozen sources",
            );
        } else {
            self.advance(
                Phase::CleaningUp,
                "The new version serves read-write; handing it over",
            );
        }
    }

    /// The new Deployment is gone after the switch. Before the lift nothing was written to the
    /// clones: restoring the old version is lossless. After it, Degraded with instructions and
    /// a Warning event; never a rollback on its own.
    fn green_missing_after_switch(&mut self) {
        let green = self.green_name();
        let Some(lifted) = self.st.read_only_lifted_at else {
            self.fail(
                Reason::GreenDeploymentMissing,
                format!(
                    "Deployment {green} disappeared after the switch, before read-only was lifted"
                ),
            );
            return;
        };
        let msg = format!(
            "Deployment {green} (the new version) is gone after the switch; read-only was lifted at {lifted}, so writes since then are in the clones ({clones}) and a rollback would lose them. \
             Restore {green} (e.g. re-apply it against the clones); cutover keeps waiting and continues once it runs read-write. \
             To go back to the old version anyway set spec.traffic: blue and spec.rollback.acceptDataLoss: true.",
            clones = self.targets.clones().join(", "),
        );
        if self.set_cond(cond::DEGRADED, true, Reason::GreenDeploymentMissing, &msg) {
            self.warn(Reason::GreenDeploymentMissing, &msg);
        }
        self.wait(msg, SAFETY);
    }

    /// Hands the new Deployment over; the guarded cleanup steps run after `Succeeded`.
    pub(super) fn cleaning_up(&mut self) {
        if self.obs.green.as_ref().is_some_and(|g| g.owned_by_plan) {
            self.act(
                Action::ReleaseGreen,
                "Handing Deployment over: the plan no longer owns the new version".into(),
            );
            return;
        }
        self.set_cond(
            cond::READ_ONLY,
            false,
            Reason::Lifted,
            "The application serves read-write",
        );
        let detail = format!("Upgrade to {} complete", self.spec.target.image);
        self.advance(Phase::Succeeded, &detail);
        if self.st.phase == Phase::Succeeded {
            self.clean_up_after_success();
        }
    }
}
