//! After the gates: `SwitchingTraffic` points the Service at the new version,
//! `LiftingReadOnly` lets it write, and `CleaningUp` hands it over.

use crate::crd::{Color, Phase};

use super::super::conditions as cond;
use super::super::decision::Action;
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
            self.set_cond(
                cond::DEGRADED,
                true,
                Reason::GreenDeploymentMissing,
                "The new version's Deployment is gone after the switch",
            );
            self.wait(
                format!("Deployment {} is missing after the switch; restore it or roll back with spec.traffic: blue", self.green_name()),
                SAFETY,
            );
            return;
        };
        if green.read_only_env {
            if self.st.read_only_lifted_at.is_none() && self.obs.clone_counts.is_none() {
                // Entered in this reconcile from the switch: the clones were not counted yet,
                // and that count is the baseline DataDiverged measures writes against.
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
            if self.phase_deadline_passed(&self.spec.timeouts.rollout) {
                self.set_cond(
                    cond::DEGRADED,
                    true,
                    Reason::RolloutSlow,
                    &format!(
                        "Deployment {} has not rolled out read-write within {}",
                        green.name, self.spec.timeouts.rollout
                    ),
                );
            }
            self.wait(
                format!(
                    "Waiting for Deployment {} to roll out read-write: {}",
                    green.name,
                    green.rollout_summary()
                ),
                SAFETY,
            );
            return;
        }
        self.set_cond(cond::DEGRADED, false, Reason::Healthy, "");
        self.advance(
            Phase::CleaningUp,
            "The new version serves read-write; handing it over",
        );
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
