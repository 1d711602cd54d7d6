//! `Pending`: the plan is validated and checked against the cluster and the database before
//! any side effect; then the facts later phases rely on are recorded.

use crate::crd::{CloneStatus, Color, Mode, Phase};

use super::super::names;
use super::super::observed::{DatabaseView, SecretView};
use super::super::reason::Reason;
use super::super::targets::targets;
use super::super::validate::validate;
use super::{Machine, POLL};

/// Other active plans named in a refusal; the rest are counted.
const MAX_CONFLICTS_LISTED: usize = 3;

impl Machine<'_> {
    pub(super) fn pending(&mut self) {
        let errors = validate(self.spec, &self.obs.plan.name);
        if !errors.is_empty() {
            self.fail(
                Reason::InvalidSpec,
                format!(
                    "The plan is invalid (nothing was changed); fix it and it is checked again: {}",
                    errors.join("; ")
                ),
            );
            return;
        }

        let mut errors = Vec::new();
        let mut waiting = None;
        self.preflight(&mut errors, &mut waiting);
        if !errors.is_empty() {
            self.fail(
                Reason::PreflightFailed,
                format!(
                    "The plan cannot start (nothing was changed): {}",
                    errors.join("; ")
                ),
            );
            return;
        }
        if let Some(w) = waiting {
            self.wait(w, POLL);
            return;
        }

        let blue = self.obs.blue.as_ref().expect("preflight checked blue");
        self.st.blue_replicas = Some(blue.replicas);
        // The names of the spec as it is now, recorded: from here on they are the plan's.
        let fresh = targets(self.spec, &self.obs.plan.name, None);
        self.st.green_deployment = Some(fresh.green.clone());
        self.st.clone = Some(CloneStatus {
            databases: fresh.pairs().into_iter().collect(),
            ..Default::default()
        });
        self.targets = fresh;
        self.st.active_color = Some(Color::Blue);
        if self.spec.mode == Mode::Upgrade {
            self.st.prediction = self.obs.rehearsal.clone();
        }
        match self.spec.mode {
            Mode::Upgrade => {
                let env = &self.spec.read_only.env;
                let detail = format!(
                    "Making Deployment {} read-only ({}={})",
                    self.spec.app.deployment, env.name, env.value
                );
                self.advance(Phase::EnteringReadOnly, &detail);
            }
            Mode::Rehearsal => self.advance(
                Phase::BackingUp,
                "Rehearsal: backing up the live databases without read-only; the copy is of databases in use, so counts may differ",
            ),
        }
    }

    /// Checks the cluster and the database before any side effect.
    fn preflight(&self, errors: &mut Vec<String>, waiting: &mut Option<String>) {
        let spec = self.spec;
        // Checked against the spec as it is now: these are the names `pending` records.
        let fresh = targets(spec, &self.obs.plan.name, None);
        // Bounded: with many plans on one target the list would grow with their number, in
        // every one of them (statuses of O(N) each, O(N^2) in all).
        errors.extend(
            self.obs
                .conflicts
                .iter()
                .take(MAX_CONFLICTS_LISTED)
                .cloned(),
        );
        if self.obs.conflicts.len() > MAX_CONFLICTS_LISTED {
            errors.push(format!(
                "and {} more active plan(s) on the same target",
                self.obs.conflicts.len() - MAX_CONFLICTS_LISTED
            ));
        }

        let blue = match &self.obs.blue {
            None => {
                errors.push(format!(
                    "Deployment {:?} not found in the plan's namespace: create it or correct spec.app.deployment",
                    spec.app.deployment
                ));
                None
            }
            Some(b) => {
                if let Err(e) = &b.container {
                    errors.push(e.clone());
                }
                if b.replicas == 0 {
                    errors.push(format!(
                        "Deployment {:?} is scaled to 0; scale it up first (the new version gets the same replica count)",
                        b.name
                    ));
                }
                Some(b)
            }
        };

        match &self.obs.service {
            None => errors.push(format!(
                "Service {:?} not found in the plan's namespace: create it or correct spec.app.service",
                spec.app.service
            )),
            Some(svc) if svc.selector.is_empty() => errors.push(format!(
                "Service {:?} has no selector; cutover switches traffic by changing the selector",
                spec.app.service
            )),
            Some(svc) => {
                if let Some(b) = blue
                    && !names::selects(&svc.selector, &b.pod_labels)
                {
                    errors.push(format!(
                        "Service {:?} selects {:?}, which does not match the pods of Deployment {:?} ({:?})",
                        spec.app.service, svc.selector, b.name, b.pod_labels
                    ));
                }
            }
        }

        if let Some(g) = &self.obs.green
            && !g.owned_by_plan
        {
            errors.push(format!(
                "Deployment {:?} already exists and does not belong to this plan: set spec.target.deploymentName to a free name",
                g.name
            ));
        }

        let secret = &spec.database.connection_secret;
        match &self.obs.secret {
            SecretView::Unknown => *waiting = Some("Reading the connection Secret".into()),
            SecretView::Missing => errors.push(format!(
                "Secret {:?} (spec.database.connectionSecret) not found in the plan's namespace",
                secret.name
            )),
            SecretView::KeyMissing { keys } => errors.push(format!(
                "Secret {:?} has no key {:?} (its keys: {})",
                secret.name,
                secret.key,
                if keys.is_empty() { "none".to_string() } else { keys.join(", ") }
            )),
            SecretView::Invalid { why } => errors.push(format!(
                "Secret {:?} key {:?} is not a usable MongoDB connection string: {why}",
                secret.name, secret.key
            )),
            SecretView::Present => match &self.obs.database {
                DatabaseView::Unknown => *waiting = Some("Connecting to MongoDB".into()),
                DatabaseView::Unreachable(why) => errors.push(format!(
                    "Cannot reach MongoDB with the connection Secret {:?}: {why}. Check the host, the credentials and that the operator may connect",
                    secret.name
                )),
                DatabaseView::Reachable { databases } => {
                    for db in &fresh.databases {
                        if !databases.contains_key(&db.source) {
                            errors.push(format!(
                                "Source database {:?} does not exist on the server (or is empty)",
                                db.source
                            ));
                        }
                        let clone = &db.clone;
                        if let Some(info) = databases.get(clone)
                            && info.collections > 0
                        {
                            errors.push(format!(
                                "Clone database {clone:?} already exists with {} collections ({} documents): drop it or choose another cloneName; cutover never restores over existing data",
                                info.collections, info.documents
                            ));
                        }
                    }
                }
            },
        }
    }
}
