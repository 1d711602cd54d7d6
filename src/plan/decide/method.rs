//! `backup.cloneMethod`: the method a plan acts on. `auto` is resolved once, in `Pending`,
//! from what the server said (`Observed::change_streams`): `online` when it streams changes,
//! else `restore`. The choice and why are recorded in `status.clone` (`method`, `reason`);
//! from there on every phase acts on the recorded method (the frozen spec keeps `auto`, and
//! `plan::frozen::effective` hands the recorded method to observe and execute), so a restart
//! never chooses again. An auto-chosen online sync that loses its history before read-only
//! falls back to `restore`, once: the app never was read-only.

use crate::crd::{CloneMethod, Mode, Phase};

use super::super::decision::{EventKind, EventNote};
use super::super::observed::StreamSupport;
use super::super::reason::Reason;
use super::{Machine, NEXT};

/// `auto`'s choice from what the server said, and why.
pub fn choose(support: &StreamSupport) -> (CloneMethod, String) {
    match support {
        StreamSupport::Streams { set_name } => (
            CloneMethod::Online,
            format!(
                "auto: the server streams changes (replica set {set_name}); the clones are copied and follow the sources while the app takes writes"
            ),
        ),
        StreamSupport::No(why) => (
            CloneMethod::Restore,
            format!(
                "auto: {why}; the clones are restored from the backup inside the read-only window"
            ),
        ),
    }
}

/// How a method is written in the spec.
pub fn spelled(m: CloneMethod) -> &'static str {
    match m {
        CloneMethod::Restore => "restore",
        CloneMethod::Auto => "auto",
        CloneMethod::ServerSide => "serverSide",
        CloneMethod::Online => "online",
    }
}

impl Machine<'_> {
    /// The method this plan acts on (see [`crate::plan::frozen::resolved`]): also right within the reconcile that
    /// chose it or fell back.
    pub(super) fn method(&self) -> CloneMethod {
        self.st
            .clone
            .as_ref()
            .and_then(|c| c.method)
            .unwrap_or(self.spec.backup.clone_method)
    }

    /// The spec as the plan started says `auto` (the acting spec holds the resolved method).
    fn auto(&self) -> bool {
        self.spec.backup.clone_method == CloneMethod::Auto
            || self
                .st
                .frozen_spec
                .as_ref()
                .is_some_and(|f| f.backup.clone_method == CloneMethod::Auto)
    }

    /// `Pending`: the method and why; `None` (waiting) until the server was asked.
    pub(super) fn choose_method(&mut self) -> Option<(CloneMethod, String)> {
        match self.spec.backup.clone_method {
            CloneMethod::Auto => match &self.obs.change_streams {
                Some(s) => Some(choose(s)),
                None => {
                    self.wait(
                        "Asking the server whether it streams changes (backup.cloneMethod: auto)"
                            .into(),
                        NEXT,
                    );
                    None
                }
            },
            m => Some((m, format!("backup.cloneMethod: {}", spelled(m)))),
        }
    }

    /// Records the method in `status.clone`; an event says what `auto` chose, once.
    pub(super) fn record_method(
        &mut self,
        (method, reason): (CloneMethod, String),
        was: Option<CloneMethod>,
    ) {
        if self.auto() && was != Some(method) {
            self.events.push(EventNote {
                kind: EventKind::Normal,
                reason: Reason::CloneMethodChosen,
                note: format!("cloneMethod {}: {reason}", spelled(method)),
            });
        }
        let clone = self.st.clone.get_or_insert_with(Default::default);
        clone.method = Some(method);
        clone.reason = Some(reason);
    }

    /// `Syncing`: an online sync `auto` chose that cannot go on (`why`: its history lost, it
    /// failed, or it did not catch up in `timeouts.clone`) falls back to `restore` (the app was
    /// never read-only, nothing is lost), once per plan: after it the plan acts on `restore`.
    /// False when the plan must fail instead (an explicit `online`).
    pub(super) fn fall_back_to_restore(&mut self, why: &str) -> bool {
        if !self.auto() || self.method() != CloneMethod::Online {
            return false;
        }
        let reason = format!(
            "auto: fell back to restore: the online sync {why}; the app never went read-only"
        );
        self.warn(Reason::CloneMethodFallback, &reason);
        let clone = self.st.clone.get_or_insert_with(Default::default);
        clone.method = Some(CloneMethod::Restore);
        clone.reason = Some(reason);
        self.st.sync = None;
        self.st.progress = None;
        self.leave_syncing_for_restore(why);
        true
    }

    /// `Syncing` of a plan that acts on `restore` now (it fell back): on to restore's order.
    /// The clones the sync wrote are replaced by the restore (`mongorestore --drop`).
    pub(super) fn leave_syncing_for_restore(&mut self, why: &str) {
        match self.spec.mode {
            Mode::Upgrade => {
                let env = &self.spec.read_only.env;
                let detail = format!(
                    "The online sync {why}; cloning by restore instead (backup.cloneMethod: auto). Making Deployment {} read-only ({}={})",
                    self.spec.app.deployment, env.name, env.value
                );
                self.advance(Phase::EnteringReadOnly, &detail);
            }
            Mode::Rehearsal => {
                let detail = format!(
                    "The online sync {why}; rehearsing with restore instead (backup.cloneMethod: auto): backing up the live databases without read-only"
                );
                self.advance(Phase::BackingUp, &detail);
            }
        }
    }
}
