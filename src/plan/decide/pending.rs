//! `Pending`: the plan is validated and checked against the cluster and the database before
//! any side effect; then the facts later phases rely on are recorded.

use crate::crd::{CloneStatus, Color, Mode, Phase};

use super::super::names;
use super::super::observed::{DatabaseView, DeploymentView, EnvFact, EnvValue, SecretView};
use super::super::reason::Reason;
use super::super::targets::targets;
use super::super::validate::validate;
use super::{Machine, NEXT, POLL};

/// Other active plans named in a refusal; the rest are counted.
const MAX_CONFLICTS_LISTED: usize = 3;
/// A container's variables named in a refusal; the rest are counted.
const MAX_VARIABLES_LISTED: usize = 30;
/// How long Pending waits for the garbage collector to remove what an earlier plan of the
/// same name owned, before it refuses the plan.
const PREVIOUS_PLAN_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

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

        if self.resolve_base_names() {
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

        let Some(method) = self.choose_method() else {
            return;
        };

        // The names of the spec as it is now: claimed, then recorded; from here on they are
        // the plan's. No side effect before every claim is this plan's.
        let fresh = self.fresh_targets();
        if !self.claimed(&fresh) {
            return;
        }

        let blue = self.obs.blue.as_ref().expect("preflight checked blue");
        self.st.blue_replicas = Some(blue.replicas);
        self.st.green_deployment = Some(fresh.green.clone());
        let was = self.st.clone.as_ref().and_then(|c| c.method);
        self.st.clone = Some(CloneStatus {
            databases: fresh.pairs().into_iter().collect(),
            ..Default::default()
        });
        self.record_method(method, was);
        self.targets = fresh;
        self.st.active_color = Some(Color::Blue);
        if self.spec.mode == Mode::Upgrade {
            self.st.prediction = self.obs.rehearsal.clone();
        }
        self.freeze_on_leaving(blue.uid.clone());
        match self.spec.mode {
            Mode::Upgrade if self.online() => self.advance(
                Phase::Syncing,
                "Copying the databases into the clones and following their changes while the app still takes writes (cloneMethod: online)",
            ),
            Mode::Upgrade => {
                let env = &self.spec.read_only.env;
                let detail = format!(
                    "Making Deployment {} read-only ({}={})",
                    self.spec.app.deployment, env.name, env.value
                );
                self.advance(Phase::EnteringReadOnly, &detail);
            }
            Mode::Rehearsal if self.online() => self.advance(
                Phase::Syncing,
                "Rehearsal: copying the databases into the clones and following their changes; the app stays read-write throughout (cloneMethod: online)",
            ),
            Mode::Rehearsal => self.advance(
                Phase::BackingUp,
                "Rehearsal: backing up the live databases without read-only; the copy is of databases in use, so counts may differ",
            ),
        }
    }

    /// Before any name is derived: what the old version's names were derived from, when a
    /// previous plan created it, else its own names. Recorded first; when they change a name,
    /// the plan looks again on the next reconcile, which reads the objects under the names
    /// derived from them. True while that is pending.
    fn resolve_base_names(&mut self) -> bool {
        if self.st.base_names.is_some() {
            return false;
        }
        let Some(blue) = &self.obs.blue else {
            // Preflight says the Deployment is missing.
            return false;
        };
        let carried = blue.base_names.clone().unwrap_or_default();
        let deployment = if carried.deployment.is_empty() {
            blue.name.clone()
        } else {
            carried.deployment.clone()
        };
        let databases = self
            .spec
            .database
            .databases
            .iter()
            .map(|d| {
                let base = carried.databases.get(&d.name).cloned();
                (d.name.clone(), base.unwrap_or_else(|| d.name.clone()))
            })
            .collect();
        let before = self.fresh_targets();
        self.st.base_names = Some(crate::crd::BaseNames {
            deployment,
            databases,
        });
        self.retarget();
        // Names unchanged (an app cutover did not create): what was read is what is needed.
        if self.fresh_targets() == before {
            return false;
        }
        self.wait("Resolving the names the plan derives".into(), NEXT);
        true
    }

    /// Once the plan leaves `Pending` (not while suspended there), what it resolved is its
    /// for good: the targets, with the old Deployment's uid, and the spec it accepted.
    fn freeze_on_leaving(&mut self, blue_uid: Option<String>) {
        if self.spec.suspend {
            return;
        }
        self.st.targets = Some(self.targets.record(blue_uid));
        self.st.frozen_spec = Some(Box::new(self.spec.clone()));
    }

    /// The names of the spec as it is now, from the recorded base names: what `pending` records.
    fn fresh_targets(&self) -> crate::plan::Targets {
        let bases = crate::crd::UpgradePlanStatus {
            base_names: self.st.base_names.clone(),
            ..Default::default()
        };
        targets(self.spec, &self.obs.plan.name, Some(&bases))
    }

    /// Checks the cluster and the database before any side effect.
    fn preflight(&self, errors: &mut Vec<String>, waiting: &mut Option<String>) {
        let spec = self.spec;
        // Checked against the spec as it is now: these are the names `pending` records.
        let fresh = self.fresh_targets();
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
                if let Ok(container) = &b.container {
                    self.env_preflight(b, container, errors, waiting);
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

        self.foreign_preflight(&fresh, errors, waiting);
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

impl Machine<'_> {
    /// Own before you destroy: an object under a name the plan needs that is not its own is
    /// never adopted, overwritten or waited on; the plan is refused, naming it. What an earlier
    /// plan of the same name owned is garbage the cluster removes: waited for, a while.
    fn foreign_preflight(
        &self,
        fresh: &super::super::Targets,
        errors: &mut Vec<String>,
        waiting: &mut Option<String>,
    ) {
        for f in &self.obs.foreign {
            let what = f.describe();
            if f.previous_plan {
                if self.now.since(self.phase_started()) <= PREVIOUS_PLAN_WAIT {
                    *waiting = Some(format!(
                        "{what} belongs to an earlier UpgradePlan {:?} (deleted); waiting for the garbage collector to remove it",
                        self.obs.plan.name
                    ));
                } else {
                    errors.push(format!(
                        "{what} still belongs to an earlier, deleted UpgradePlan {:?} after {}s: delete it, and the plan is checked again",
                        self.obs.plan.name,
                        PREVIOUS_PLAN_WAIT.as_secs()
                    ));
                }
                continue;
            }
            let todo = if [
                &fresh.green,
                &fresh.green_env_secret,
                &fresh.preview_service,
            ]
            .contains(&&f.name)
            {
                "set spec.target.deploymentName to a free name, or delete it if it is a leftover"
            } else {
                "delete it if it is a leftover, or give the plan another name"
            };
            errors.push(format!(
                "{what} already exists and does not belong to this plan (it has no owner reference to this plan; cutover never adopts, overwrites or deletes it): {todo}"
            ));
        }
    }

    /// The new version never touches a source: every variable the plan rewires exists in the
    /// old version's container (a `uriEnv` one holds a readable connection string), and no
    /// variable the plan leaves alone, nor one of `spec.target.env`, names a source database.
    fn env_preflight(
        &self,
        blue: &DeploymentView,
        container: &str,
        errors: &mut Vec<String>,
        waiting: &mut Option<String>,
    ) {
        let spec = self.spec;
        let mut rewired: Vec<&str> = Vec::new();
        for (i, db) in spec.database.databases.iter().enumerate() {
            let named = db
                .env
                .iter()
                .map(|v| (v, "env"))
                .chain(db.uri_env.iter().map(|v| (v, "uriEnv")));
            for (var, field) in named {
                rewired.push(var);
                let Some(fact) = blue.env.iter().find(|f| &f.name == var) else {
                    errors.push(format!(
                        "spec.database.databases[{i}].{field} names variable {var:?}, which container {container:?} of Deployment {:?} does not set (its variables: {}): correct the name, or the new version would keep using the source database {:?}",
                        blue.name,
                        variable_list(&blue.env),
                        db.name
                    ));
                    continue;
                };
                if field != "uriEnv" {
                    continue;
                }
                let from_env_from = fact
                    .held_in
                    .as_deref()
                    .is_some_and(|h| h.ends_with("(envFrom)"));
                let why = match &fact.value {
                    // The new version's Secret is built from `env` entries only.
                    EnvValue::Resolved { uri: true, .. } if from_env_from => {
                        "it comes from envFrom; declare it in the container's env (value or valueFrom) so cutover can rewrite it".to_string()
                    }
                    EnvValue::Resolved { uri: true, .. } => continue,
                    EnvValue::Resolved { uri: false, .. } => {
                        "its value is not a mongodb:// or mongodb+srv:// connection string"
                            .to_string()
                    }
                    EnvValue::NotRead => {
                        *waiting = Some("Reading the old version's variables".into());
                        continue;
                    }
                    EnvValue::Unresolvable(why) => format!("its value cannot be read: {why}"),
                    EnvValue::Field => {
                        "it is a pod field reference, not a connection string".into()
                    }
                };
                errors.push(format!(
                    "spec.database.databases[{i}].uriEnv variable {} of container {container:?}: {why}; list a variable holding the connection string to {:?} (a plain database name goes in env)",
                    fact.describe(),
                    db.name
                ));
            }
        }

        for (fact, source) in unrewired_sources(&blue.env, &rewired, spec) {
            let (field, what) = if matches!(fact.value, EnvValue::Resolved { uri: true, .. }) {
                ("uriEnv", "a connection string to")
            } else {
                ("env", "the name of")
            };
            errors.push(format!(
                "variable {} of container {container:?} holds {what} source database {source:?}, and the plan does not rewire it: add {:?} to that database's {field} in spec.database.databases, or the new version would use the live database",
                fact.describe(),
                fact.name
            ));
        }
        if blue
            .env
            .iter()
            .any(|f| f.value == EnvValue::NotRead && !rewired.contains(&f.name.as_str()))
        {
            *waiting = Some("Reading the old version's variables".into());
        }
        for e in &spec.target.env {
            if let Some(source) = names_source(&e.value, spec) {
                errors.push(format!(
                    "spec.target.env {:?} names source database {source:?}: the new version must only use the clones; remove it or let spec.database.databases rewire the variable",
                    e.name
                ));
            }
        }
    }
}

/// Variables the new version would keep from the old one (neither rewired by the plan nor
/// replaced by `spec.target.env`) that name a source database.
pub(super) fn unrewired_sources<'a>(
    env: &'a [EnvFact],
    rewired: &[&str],
    spec: &crate::crd::UpgradePlanSpec,
) -> Vec<(&'a EnvFact, &'a str)> {
    env.iter()
        .filter(|f| !rewired.contains(&f.name.as_str()))
        .filter(|f| !spec.target.env.iter().any(|e| e.name == f.name))
        .filter_map(|f| f.source().map(|s| (f, s)))
        .collect()
}

/// The source database a literal value names: itself, or a connection string's path.
fn names_source<'a>(value: &str, spec: &'a crate::crd::UpgradePlanSpec) -> Option<&'a str> {
    let value = value.trim();
    let named = crate::uri::database(value).unwrap_or(value);
    spec.database
        .databases
        .iter()
        .map(|d| d.name.as_str())
        .find(|s| *s == named)
}

/// `A, B, C and 4 more`, or `none`.
fn variable_list(env: &[EnvFact]) -> String {
    if env.is_empty() {
        return "none".into();
    }
    let mut out: Vec<&str> = env
        .iter()
        .take(MAX_VARIABLES_LISTED)
        .map(|f| f.name.as_str())
        .collect();
    let more = env.len().saturating_sub(MAX_VARIABLES_LISTED);
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    out.sort_unstable();
    format!("{}{more}", out.join(", "))
}
