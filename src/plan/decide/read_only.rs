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
            // A migration lock left in the source keeps the restarted pods from starting.
            let lock = self.old_version_lock(&blue).map(|m| format!(". {m}"));
            let lock = lock.unwrap_or_default();
            if self.phase_deadline_passed(&self.spec.timeouts.rollout) {
                self.fail(
                    Reason::ReadOnlyRolloutTimedOut,
                    format!(
                        "Deployment {} did not roll out read-only within {} ({}); check its pods' events{lock}",
                        blue.name, self.spec.timeouts.rollout, blue.rollout_summary()
                    ),
                );
            } else {
                self.wait(
                    format!(
                        "Waiting for Deployment {} to roll out read-only: {}{lock}",
                        blue.name,
                        blue.rollout_summary()
                    ),
                    SAFETY,
                );
            }
            return;
        }
        // Rolled out: a source-lock report raised while it waited is cleared.
        self.old_version_lock(&blue);
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
            && !self.read_only_verified(&blue.name)
        {
            return;
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

    /// `readOnly.verify.http`: every ready pod of the old version refuses the write. A pod
    /// that answers 2xx fails the plan at once (read-only is not effective); a pod that cannot
    /// be asked (restarting, its node restarted) is no evidence either way: re-probed until
    /// `timeouts.rollout`, then the plan fails naming the pods never reached. False: waiting
    /// or failed.
    fn read_only_verified(&mut self, blue: &str) -> bool {
        let probe = self.obs.read_only_probe.clone();
        if let Some(p) = &probe
            && p.ok
        {
            return true;
        }
        if let Some(accepted) = probe.as_ref().map(|p| p.unwanted())
            && !accepted.is_empty()
        {
            self.fail(
                Reason::ReadOnlyNotEffective,
                format!(
                    "The old version still accepts writes with {}={}: {}. Check spec.readOnly.env",
                    self.spec.read_only.env.name,
                    self.spec.read_only.env.value,
                    accepted.join("; ")
                ),
            );
            return false;
        }
        // No pod accepted the write, and not every pod refused it: unreachable, or none ready.
        let seen = match &probe {
            None => "no answer yet".to_string(),
            Some(p) if p.pods.is_empty() => p.detail.clone(),
            Some(p) => format!("unreachable: {}", p.unreachable().join(", ")),
        };
        if self.phase_deadline_passed(&self.spec.timeouts.rollout) {
            self.fail(
                Reason::ReadOnlyUnverified,
                format!(
                    "The readOnly.verify write to Deployment {blue} got no answer within {} (spec.timeouts.rollout); last seen: {seen}. No pod accepted it, but read-only is unproven; check that its pods are reachable on the probe's port",
                    self.spec.timeouts.rollout
                ),
            );
        } else {
            self.wait(
                format!("Verifying that the old version refuses writes ({seen}); probing again"),
                POLL,
            );
        }
        false
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
