//! The new version: `DeployingGreen` creates it against the clones, read-only; `Migrating`
//! waits for the migration gates; `AwaitingPromotion` waits for an approval.

use std::ops::ControlFlow;

use crate::crd::{MigrationStatus, Mode, Phase, PromotionMode};

use super::super::conditions as cond;
use super::super::decision::Action;
use super::super::observed::{DeploymentView, EnvValue, JobState};
use super::super::reason::Reason;
use super::{Machine, POLL, SAFETY, one_line};

impl Machine<'_> {
    /// Replicas the new version runs with: none until a migration Job has finished.
    fn green_replicas(&self) -> i32 {
        let job_pending = self.spec.migration.job.is_some()
            && !self.st.migration.as_ref().is_some_and(|m| m.job_succeeded);
        if job_pending {
            0
        } else {
            self.st.blue_replicas.unwrap_or(1).max(1)
        }
    }

    pub(super) fn deploying_green(&mut self) {
        let want = self.green_replicas();
        let name = self.green_name();
        if let Some(g) = self.obs.green.clone()
            && self.green_env_guard(&g).is_break()
        {
            return;
        }
        match self.obs.green.clone() {
            Some(g) if self.green_matches(&g, want) => {
                if g.observed_generation < g.generation {
                    if self.phase_deadline_passed(&self.spec.timeouts.rollout) {
                        self.fail(
                            Reason::GreenRolloutTimedOut,
                            format!(
                                "Deployment {name} was not observed by its controller within {} (spec.timeouts.rollout): check that kube-controller-manager runs",
                                self.spec.timeouts.rollout
                            ),
                        );
                    } else {
                        self.wait(
                            format!("Waiting for Deployment {name} to be observed"),
                            SAFETY,
                        );
                    }
                } else {
                    self.advance(
                        Phase::Migrating,
                        &format!("Deployment {name} created; waiting for the migration gates"),
                    );
                }
            }
            _ => self.act(
                Action::ApplyGreen { replicas: want },
                format!(
                    "Creating Deployment {name} ({}) against the clones, read-only",
                    self.spec.target.image
                ),
            ),
        }
    }

    /// The new version as it runs must not name a source database in any variable (its
    /// Secrets and ConfigMaps read): checked before its pods are scaled up, before the
    /// migration Job starts and before a migration gate is trusted. Breaks when it failed the
    /// plan or waits for the variables to be read.
    fn green_env_guard(&mut self, g: &DeploymentView) -> ControlFlow<()> {
        let named: Vec<String> = g
            .env
            .iter()
            .filter_map(|f| f.source().map(|s| format!("{} names {s:?}", f.describe())))
            .collect();
        if !named.is_empty() {
            self.fail(
                Reason::GreenEnvNamesSource,
                format!(
                    "Deployment {} (the new version) would use a source database: {}. List each such variable in spec.database.databases[].env (a database name) or uriEnv (a connection string) so it is rewired to the clone",
                    g.name,
                    named.join("; ")
                ),
            );
            return ControlFlow::Break(());
        }
        if g.env.iter().any(|f| f.value == EnvValue::NotRead) {
            // Migrating's deadline covers its gates; DeployingGreen's is a rollout's.
            let (limit, reason) = if self.st.phase == Phase::Migrating {
                (
                    self.spec.migration.timeout.clone(),
                    Reason::MigrationTimedOut,
                )
            } else {
                (
                    self.spec.timeouts.rollout.clone(),
                    Reason::GreenRolloutTimedOut,
                )
            };
            self.wait_or_timeout(
                format!("Reading the variables of Deployment {}", g.name),
                &limit,
                reason,
            );
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    fn green_matches(&self, g: &DeploymentView, replicas: i32) -> bool {
        g.image == self.spec.target.image && g.read_only_env && g.replicas == replicas && g.tracked
    }

    /// Every configured gate is looked at each time, so the message lists all that are pending.
    pub(super) fn migrating(&mut self) {
        if let Some(g) = self.obs.green.clone()
            && self.green_env_guard(&g).is_break()
        {
            return;
        }
        let mut pending: Vec<String> = Vec::new();
        if self.job_gate(&mut pending).is_break() {
            return;
        }

        let want = self.green_replicas();
        let Some(green) = self.obs.green.clone() else {
            self.fail(
                Reason::GreenDeploymentMissing,
                format!(
                    "Deployment {} disappeared while migrating",
                    self.green_name()
                ),
            );
            return;
        };
        if !self.green_matches(&green, want) && pending.is_empty() {
            self.act(
                Action::ApplyGreen { replicas: want },
                format!("Starting Deployment {} with {want} replicas", green.name),
            );
            return;
        }
        if !green.rolled_out() {
            pending.push(format!(
                "Deployment {}: {}",
                green.name,
                green.rollout_summary()
            ));
        }

        let stale = self.mongo_document_gate(&green, &mut pending);
        self.http_get_gate(&mut pending);
        if self.stale_lock(stale).is_break() {
            return;
        }
        self.gates_verdict(pending);
    }

    /// `migration.job`: the Job runs to completion before the new version starts. Breaks when
    /// this reconcile created the Job or failed the plan.
    fn job_gate(&mut self, pending: &mut Vec<String>) -> ControlFlow<()> {
        if self.spec.migration.job.is_none()
            || self.st.migration.as_ref().is_some_and(|m| m.job_succeeded)
        {
            return ControlFlow::Continue(());
        }
        match self.obs.migration_job.clone() {
            None => {
                let job = self.targets.migration_job.clone();
                self.act(
                    Action::CreateMigrationJob,
                    format!(
                        "Migration Job {job} ({}) is migrating the clones",
                        self.spec.target.image
                    ),
                );
                return ControlFlow::Break(());
            }
            Some(j) if j.state == JobState::Failed => {
                self.fail(
                    Reason::MigrationJobFailed,
                    format!("Migration Job {} failed: {}", j.name, one_line(&j.message)),
                );
                return ControlFlow::Break(());
            }
            Some(j) if j.state == JobState::Succeeded => {
                self.st
                    .migration
                    .get_or_insert_with(Default::default)
                    .job_succeeded = true;
            }
            Some(j) => pending.push(format!("migration Job {} is running", j.name)),
        }
        ControlFlow::Continue(())
    }

    /// `migration.mongoDocument`: the app's own migration record in the clone reaches the
    /// target version with its lock released. Records what it saw in status; returns the
    /// stale-lock message when the lock is held by no one.
    fn mongo_document_gate(
        &mut self,
        green: &DeploymentView,
        pending: &mut Vec<String>,
    ) -> Option<String> {
        let spec = self.spec;
        let gate = spec.migration.mongo_document.as_ref()?;
        let doc = match &self.obs.migration_doc {
            None => {
                pending.push("reading the migration document".into());
                return None;
            }
            Some(Err(e)) => {
                pending.push(format!("the migration document cannot be read: {e}"));
                return None;
            }
            Some(Ok(None)) => {
                pending.push(format!(
                    "no migration document in {}.{} yet",
                    self.clone_of(&gate.database),
                    gate.collection
                ));
                return None;
            }
            Some(Ok(Some(doc))) => doc,
        };
        let mig = self
            .st
            .migration
            .get_or_insert_with(MigrationStatus::default);
        if mig.version != doc.version || mig.locked != Some(doc.locked) || mig.since.is_none() {
            mig.version = doc.version;
            mig.locked = Some(doc.locked);
            mig.since = Some(self.now);
        }
        let since = mig.since.expect("set above");
        let version_ok = match gate.target_version {
            Some(t) => doc.version.is_some_and(|v| v >= t),
            // Without a target the lock released after the new version started is the signal.
            None => green.ready_replicas > 0,
        };
        if doc.locked || !version_ok {
            pending.push(format!(
                "migration document: version {}{}, {}",
                doc.version.map_or("?".into(), |v| v.to_string()),
                gate.target_version
                    .map_or(String::new(), |t| format!(" of {t}")),
                if doc.locked { "locked" } else { "unlocked" }
            ));
        }
        let job_running = self
            .obs
            .migration_job
            .as_ref()
            .is_some_and(|j| j.state == JobState::Active);
        let stale = doc.locked
            && self.now.since(since) >= gate.stale_lock_after.as_std()
            && green.ready_replicas == 0
            && (green.restarts > 0 || green.running_pods == 0)
            && !job_running;
        if !stale {
            return None;
        }
        let filter = if gate.filter.is_empty() {
            "{}".to_string()
        } else {
            serde_json::to_string(&gate.filter).unwrap_or_default()
        };
        Some(format!(
            "The migration lock in {db}.{coll} has been held since {since} with no version movement, no ready pod of the new version and no running migration (the migrating process probably crashed). Document: {raw}. \
             Check that no migration is running, then release it: mongosh \"$URI\" --eval 'db.getSiblingDB(\"{db}\").getCollection(\"{coll}\").updateOne({filter}, {{$set: {{\"{lock}\": false}}}})' \
             (URI: the connection string in Secret {secret}). The plan continues once the lock is released; set spec.traffic: blue to abandon it.",
            db = self.clone_of(&gate.database),
            coll = gate.collection,
            raw = doc.raw,
            lock = gate.lock_field,
            secret = spec.database.connection_secret.name,
        ))
    }

    /// `migration.httpGet`: every pod of the new version answers the health probe.
    fn http_get_gate(&self, pending: &mut Vec<String>) {
        if let Some(h) = &self.spec.migration.http_get {
            match &self.obs.health {
                None => pending.push(format!("probing {}:{}", h.path, h.port)),
                Some(p) if !p.ok => pending.push(format!("health gate: {}", p.detail)),
                Some(_) => {}
            }
        }
    }

    /// A stale lock holds the plan until a person releases it, reported long before the
    /// timeout; `migration.timeout` still bounds it (the old version is restored, the app is
    /// not left read-only). Breaks then. Clears the condition once the lock moved.
    fn stale_lock(&mut self, stale: Option<String>) -> ControlFlow<()> {
        if let Some(msg) = stale {
            if self.phase_deadline_passed(&self.spec.migration.timeout) {
                self.fail(
                    Reason::MigrationTimedOut,
                    format!(
                        "The migration gates did not pass within {}: the migration lock was stale and nobody released it. {msg}",
                        self.spec.migration.timeout
                    ),
                );
                return ControlFlow::Break(());
            }
            self.report_stale_lock(
                Reason::LockHeldByNoOne,
                &msg,
                "The migration lock is stale; see MigrationLockStale",
            );
            self.wait(msg, SAFETY);
            return ControlFlow::Break(());
        }
        if cond::is_true(&self.st.conditions, cond::MIGRATION_LOCK_STALE) {
            self.set_cond(
                cond::MIGRATION_LOCK_STALE,
                false,
                Reason::LockMoved,
                "The migration lock was released or the version moved",
            );
            self.set_cond(cond::DEGRADED, false, Reason::MigrationProceeding, "");
        }
        ControlFlow::Continue(())
    }

    /// All gates passed: on to the promotion (or the rehearsal's teardown); otherwise wait
    /// until `migration.timeout`.
    fn gates_verdict(&mut self, pending: Vec<String>) {
        let spec = self.spec;
        if pending.is_empty() {
            self.set_cond(
                cond::MIGRATED,
                true,
                Reason::GatesPassed,
                "Every migration gate passed",
            );
            if spec.mode == Mode::Rehearsal {
                self.advance(
                    Phase::CleaningUp,
                    "Rehearsal gates passed; tearing the new version down",
                );
            } else {
                let next = self
                    .st
                    .phase
                    .on_success(spec.promotion.mode == PromotionMode::Manual);
                let detail = if next == Phase::AwaitingPromotion {
                    self.approval_hint()
                } else {
                    format!(
                        "Migration done; switching Service {} to the new version",
                        spec.app.service
                    )
                };
                self.advance(next, &detail);
            }
        } else if self.phase_deadline_passed(&spec.migration.timeout) {
            self.fail(
                Reason::MigrationTimedOut,
                format!(
                    "The migration gates did not pass within {}: {}",
                    spec.migration.timeout,
                    pending.join("; ")
                ),
            );
        } else {
            self.wait(
                format!("Waiting for the migration: {}", pending.join("; ")),
                POLL,
            );
        }
    }

    fn approval_hint(&self) -> String {
        format!(
            "Migration done; waiting for approval: kubectl patch upgradeplan {} --type merge -p '{{\"spec\":{{\"promotion\":{{\"approved\":true}}}}}}'",
            self.obs.plan.name
        )
    }

    pub(super) fn awaiting_promotion(&mut self) {
        if self.spec.promotion.approved || self.spec.promotion.mode == PromotionMode::Auto {
            let detail = format!(
                "Approved; switching Service {} to the new version",
                self.spec.app.service
            );
            self.advance(Phase::SwitchingTraffic, &detail);
        } else if self.phase_deadline_passed(&self.spec.timeouts.promotion) {
            // The app is read-only while it waits: a forgotten approval must not leave it so.
            self.fail(
                Reason::PromotionTimedOut,
                format!(
                    "No approval within {} (spec.timeouts.promotion) while the app was read-only; the old version is restored. Apply the plan again when someone can approve, or raise spec.timeouts.promotion",
                    self.spec.timeouts.promotion
                ),
            );
        } else {
            self.st.message = self.approval_hint();
            let waited = self.now.since(self.phase_started());
            self.requeue = Some(
                self.spec
                    .timeouts
                    .promotion
                    .as_std()
                    .saturating_sub(waited)
                    .max(std::time::Duration::from_secs(1)),
            );
        }
    }
}
