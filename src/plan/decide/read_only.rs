//! `EnteringReadOnly`: the old version restarts with the read-only variable, the Service is
//! pinned to its pods by the track label, and (if configured) a write proves it is refused.

use crate::crd::{Color, Phase};

use super::super::conditions as cond;
use super::super::decision::Action;
use super::super::names;
use super::super::reason::Reason;
use super::{Machine, POLL, SAFETY};

impl Machine<'_> {
    pub(super) fn entering_read_only(&mut self) {
        let Some(blue) = self.obs.blue.clone() else {
            self.fail_missing_blue();
            return;
        };
        if !blue.read_only_env || !blue.tracked {
            self.st.read_only_since.get_or_insert(self.now);
            let since = self.st.read_only_since.expect("set above");
            self.set_cond(
                cond::READ_ONLY,
                true,
                Reason::ReadOnlyRequested,
                &format!("The old version is being restarted read-only (since {since})"),
            );
            self.act(
                Action::SetReadOnly {
                    color: Color::Blue,
                    enabled: true,
                },
                format!("Restarting Deployment {} read-only", blue.name),
            );
            return;
        }
        if !blue.rolled_out() {
            if self.phase_deadline_passed(&self.spec.timeouts.rollout) {
                self.fail(
                    Reason::ReadOnlyRolloutTimedOut,
                    format!(
                        "Deployment {} did not roll out read-only within {} ({}); check its pods' events",
                        blue.name, self.spec.timeouts.rollout, blue.rollout_summary()
                    ),
                );
            } else {
                self.wait(
                    format!(
                        "Waiting for Deployment {} to roll out read-only: {}",
                        blue.name,
                        blue.rollout_summary()
                    ),
                    SAFETY,
                );
            }
            return;
        }
        if !self.service_tracks(&blue.name) {
            self.act(
                Action::PinService { color: Color::Blue },
                format!(
                    "Pinning Service {} to the old version's pods by label {}={} (same pods, no traffic change)",
                    self.spec.app.service,
                    names::TRACK_LABEL,
                    blue.name
                ),
            );
            return;
        }
        if self
            .spec
            .read_only
            .verify
            .as_ref()
            .is_some_and(|v| v.http.is_some())
        {
            match &self.obs.read_only_probe {
                None => {
                    let msg = "Verifying that the old version refuses writes".to_string();
                    if self.phase_deadline_passed(&self.spec.timeouts.rollout) {
                        self.fail(
                            Reason::ReadOnlyUnverified,
                            format!(
                                "The readOnly.verify write to Deployment {} got no answer within {} (spec.timeouts.rollout); check that its pods are reachable on the probe's port",
                                blue.name, self.spec.timeouts.rollout
                            ),
                        );
                    } else {
                        self.wait(msg, POLL);
                    }
                    return;
                }
                Some(p) if !p.ok => {
                    self.fail(
                        Reason::ReadOnlyNotEffective,
                        format!(
                            "The old version still accepts writes with {}={}: {}. Check spec.readOnly.env",
                            self.spec.read_only.env.name, self.spec.read_only.env.value, p.detail
                        ),
                    );
                    return;
                }
                Some(_) => {}
            }
        }
        self.set_cond(
            cond::READ_ONLY,
            true,
            Reason::ReadOnly,
            "The old version refuses writes; the sources are frozen",
        );
        if self.online() {
            // No backup before the switch: the clones follow the sources; drain them.
            self.advance(
                Phase::Cloning,
                "The old version is read-only; draining the online sync into the clones",
            );
            return;
        }
        self.advance(
            Phase::BackingUp,
            "The old version is read-only; backing up the databases",
        );
    }

    fn fail_missing_blue(&mut self) {
        self.fail(
            Reason::BlueDeploymentMissing,
            format!(
                "Deployment {} disappeared during the upgrade",
                self.spec.app.deployment
            ),
        );
    }
}
