//! The end of a rehearsal: the new version and (unless kept) the clones are removed, and the
//! measured phases become the prediction of the real upgrade's read-only window.

use std::time::Duration;

use crate::crd::{Phase, Prediction};

use super::super::claims;
use super::super::decision::Action;
use super::super::observed::DatabaseView;
use super::super::reason::Reason;
use super::{Machine, NEXT, SAFETY};

impl Machine<'_> {
    pub(super) fn rehearsal_teardown(&mut self) {
        if self.obs.green.is_some() {
            self.act(
                Action::DeleteGreen,
                format!("Removing rehearsal Deployment {}", self.green_name()),
            );
            return;
        }
        let clones: Vec<String> = self
            .st
            .clone
            .as_ref()
            .filter(|_| !self.spec.rehearsal.keep_clone)
            .map(|c| c.databases.values().cloned().collect())
            .unwrap_or_default();
        // Only what this plan claimed is dropped: a name alone proves nothing.
        if !clones.is_empty()
            && let Some(Err(e)) = &self.obs.claims
        {
            return self.wait(
                format!(
                    "Cannot read the claim registry to drop the rehearsal clones, retrying: {e}"
                ),
                SAFETY,
            );
        }
        let (clones, unclaimed): (Vec<String>, Vec<String>) =
            clones.into_iter().partition(|c| self.holds_database(c));
        match &self.obs.database {
            _ if clones.is_empty() => {}
            DatabaseView::Unknown => {
                return self.wait(
                    "Listing databases before dropping the rehearsal clones".into(),
                    NEXT,
                );
            }
            DatabaseView::Unreachable(e) => {
                return self.wait(
                    format!("Cannot reach MongoDB to drop the rehearsal clones, retrying: {e}"),
                    SAFETY,
                );
            }
            DatabaseView::Reachable { databases } => {
                let left: Vec<String> = clones
                    .into_iter()
                    .filter(|c| databases.contains_key(c))
                    .collect();
                if !left.is_empty() {
                    self.act(
                        Action::DropDatabases {
                            names: left.clone(),
                        },
                        format!("Dropping rehearsal clones {}", left.join(", ")),
                    );
                    return;
                }
            }
        }
        let predicted: Duration = self
            .st
            .phases
            .iter()
            .filter(|r| {
                matches!(
                    r.name,
                    Phase::BackingUp | Phase::Cloning | Phase::DeployingGreen | Phase::Migrating
                )
            })
            .filter_map(|r| r.finished_at.map(|f| f.since(r.started_at)))
            .sum();
        let kept = if self.spec.rehearsal.keep_clone {
            let names: Vec<String> = self
                .st
                .clone
                .iter()
                .flat_map(|c| c.databases.values().cloned())
                .collect();
            format!("; clones kept: {}", names.join(", "))
        } else {
            String::new()
        };
        // Online: `Cloning` is the drain and the comparison, which the real upgrade does
        // read-only; the sync before it runs while the app takes writes.
        let parts = if self.online() {
            "online sync drain + compare + deploy + migration"
        } else {
            "backup + clone + deploy + migration"
        };
        let mut detail = format!(
            "Rehearsal complete; predicted read-only window for the real upgrade: {:.1}s ({parts}){kept}",
            predicted.as_secs_f64()
        );
        if !unclaimed.is_empty() {
            let note = format!(
                "Rehearsal clones {} were not dropped: this plan holds no claim on them in {}.{}, so they may be another plan's; drop them by hand if they are this rehearsal's",
                unclaimed.join(", "),
                claims::DATABASE,
                claims::COLLECTION
            );
            self.warn(Reason::NotClaimed, &note);
            detail = format!("{detail}. {note}");
        }
        self.st.prediction = Some(Prediction {
            read_only_seconds: (predicted.as_millis() as f64 / 100.0).round() / 10.0,
            rehearsal: self.obs.plan.name.clone(),
            at: self.now,
        });
        self.advance(Phase::Rehearsed, &detail);
    }
}
