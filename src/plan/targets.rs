//! Every object and database a plan creates or acts on, named once. The naming rules live in
//! `names`; this is where they are applied, preferring what the plan's status recorded, so a
//! name chosen when the plan started stays the name even if the spec is edited afterwards.
//!
//! Plain data on purpose: the step that freezes the targets into status only has to store
//! this value and return the stored one when present.

use std::collections::BTreeMap;

use crate::crd::{
    Color, DatabasePair, ObjectIdentity, RecordedJobs, RecordedTargets, UpgradePlanSpec,
    UpgradePlanStatus,
};

use super::names;

/// A source database and the clone the new version runs on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatabaseTarget {
    pub source: String,
    pub clone: String,
}

/// Whether the plan may take its backup after the switch (`online`, or `auto`, which may
/// choose it): its scratch databases and verify Job are resolved and recorded at the start,
/// before `auto` chooses. A rehearsal never switches.
fn backs_up_after_switch(spec: &UpgradePlanSpec) -> bool {
    spec.mode == crate::crd::Mode::Upgrade
        && matches!(
            spec.backup.clone_method,
            crate::crd::CloneMethod::Online | crate::crd::CloneMethod::Auto
        )
}

/// The names one plan works with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Targets {
    /// The plan's name: the value of the plan label on everything it creates.
    pub plan: String,
    /// The old version's Deployment.
    pub blue: String,
    /// Its uid when the plan started: a Deployment given the same name later is not it.
    pub blue_uid: Option<String>,
    /// The Service in front of the app.
    pub service: String,
    /// The new version's Deployment.
    pub green: String,
    /// The Secret holding the new version's rewritten connection strings.
    pub green_env_secret: String,
    /// The rehearsal's preview Service.
    pub preview_service: String,
    /// Every database of the plan, in spec order.
    pub databases: Vec<DatabaseTarget>,
    /// `online`: each source and the scratch database (`clone` here) its backup is restored
    /// into to verify it after the switch; empty for the other methods, and for an online plan
    /// whose status recorded none (it started before scratch databases existed).
    pub scratch: Vec<DatabaseTarget>,
    pub backup_job: String,
    pub clone_job: String,
    pub migration_job: String,
    pub prune_job: String,
    /// The Job restoring the backup into the scratch databases.
    pub verify_job: String,
    /// The Secret holding the migration user's connection string to the clone.
    pub migration_env_secret: String,
    /// The Secret holding the MongoDB tools' config file (the connection string) for the
    /// backup and clone Jobs.
    pub tools_secret: String,
    /// Where the backup goes on the volume.
    pub backup_dir: String,
    /// The app's Deployment name before any upgrade: annotated on the new Deployment.
    pub base_deployment: String,
    /// Each clone to the database name its name was derived from: annotated on the new Deployment.
    pub base_databases: BTreeMap<String, String>,
}

/// The targets of the plan named `plan`: what `status` recorded when the plan started, else
/// the rules of `names` (with the names recorded by older versions of cutover preferred).
pub fn targets(spec: &UpgradePlanSpec, plan: &str, status: Option<&UpgradePlanStatus>) -> Targets {
    let bases = status.and_then(|s| s.base_names.as_ref());
    let base_deployment = bases.map_or(spec.app.deployment.as_str(), |b| b.deployment.as_str());
    let base_db = |source: &str| -> String {
        bases
            .and_then(|b| b.databases.get(source).cloned())
            .unwrap_or_else(|| source.to_string())
    };
    if let Some(recorded) = status.and_then(|s| s.targets.as_ref()) {
        let mut t = Targets::from_record(plan, recorded);
        if let Some(b) = bases {
            t.base_deployment = b.deployment.clone();
        }
        t.base_databases = t
            .databases
            .iter()
            .map(|d| (d.clone.clone(), base_db(&d.source)))
            .collect();
        return t;
    }
    let green = status
        .and_then(|s| s.green_deployment.clone())
        .unwrap_or_else(|| names::green_deployment_from(spec, plan, base_deployment));
    let recorded_clone = |source: &str| {
        status
            .and_then(|s| s.clone.as_ref())
            .and_then(|c| c.databases.get(source).cloned())
    };
    let databases: Vec<DatabaseTarget> = spec
        .database
        .databases
        .iter()
        .map(|d| DatabaseTarget {
            source: d.name.clone(),
            clone: recorded_clone(&d.name)
                .unwrap_or_else(|| names::clone_database_from(d, plan, &base_db(&d.name))),
        })
        .collect();
    Targets {
        plan: plan.to_string(),
        blue: spec.app.deployment.clone(),
        blue_uid: None,
        service: spec.app.service.clone(),
        green_env_secret: names::env_secret(&green),
        preview_service: names::preview_service_of(&green),
        green,
        base_databases: databases
            .iter()
            .map(|d| (d.clone.clone(), base_db(&d.source)))
            .collect(),
        scratch: if backs_up_after_switch(spec) {
            databases
                .iter()
                .map(|d| DatabaseTarget {
                    source: d.source.clone(),
                    clone: names::scratch_database(&d.source, plan),
                })
                .collect()
        } else {
            Vec::new()
        },
        databases,
        backup_job: names::backup_job(plan),
        clone_job: names::clone_job(plan),
        migration_job: names::migration_job(plan),
        prune_job: names::prune_job(plan),
        verify_job: if backs_up_after_switch(spec) {
            names::verify_job(plan)
        } else {
            String::new()
        },
        migration_env_secret: names::migration_env_secret(plan),
        tools_secret: tools_secret(plan),
        backup_dir: names::backup_dir_from(base_deployment, plan),
        base_deployment: base_deployment.to_string(),
    }
}

/// The tools' config Secret of plan `plan`. The one naming rule not in `names` yet (that module
/// is being changed elsewhere); it belongs beside `migration_env_secret` there.
fn tools_secret(plan: &str) -> String {
    names::shorten(&format!("{plan}-mongo-tools"), names::MAX_K8S_NAME)
}

impl Targets {
    /// What status records, with the old Deployment's uid as observed now.
    pub fn record(&self, blue_uid: Option<String>) -> RecordedTargets {
        RecordedTargets {
            blue_deployment: ObjectIdentity {
                name: self.blue.clone(),
                uid: blue_uid,
            },
            service: self.service.clone(),
            green_deployment: self.green.clone(),
            green_env_secret: self.green_env_secret.clone(),
            preview_service: self.preview_service.clone(),
            databases: self
                .databases
                .iter()
                .map(|d| DatabasePair {
                    source: d.source.clone(),
                    clone: d.clone.clone(),
                })
                .collect(),
            scratch: self
                .scratch
                .iter()
                .map(|d| DatabasePair {
                    source: d.source.clone(),
                    clone: d.clone.clone(),
                })
                .collect(),
            jobs: RecordedJobs {
                backup: self.backup_job.clone(),
                clone: self.clone_job.clone(),
                migration: self.migration_job.clone(),
                prune: self.prune_job.clone(),
                verify: self.verify_job.clone(),
            },
            migration_env_secret: self.migration_env_secret.clone(),
            tools_secret: self.tools_secret.clone(),
            backup_dir: self.backup_dir.clone(),
        }
    }

    fn from_record(plan: &str, r: &RecordedTargets) -> Self {
        Targets {
            plan: plan.to_string(),
            blue: r.blue_deployment.name.clone(),
            blue_uid: r.blue_deployment.uid.clone(),
            service: r.service.clone(),
            green: r.green_deployment.clone(),
            green_env_secret: r.green_env_secret.clone(),
            preview_service: r.preview_service.clone(),
            databases: r
                .databases
                .iter()
                .map(|d| DatabaseTarget {
                    source: d.source.clone(),
                    clone: d.clone.clone(),
                })
                .collect(),
            scratch: r
                .scratch
                .iter()
                .map(|d| DatabaseTarget {
                    source: d.source.clone(),
                    clone: d.clone.clone(),
                })
                .collect(),
            backup_job: r.jobs.backup.clone(),
            clone_job: r.jobs.clone.clone(),
            migration_job: r.jobs.migration.clone(),
            prune_job: r.jobs.prune.clone(),
            verify_job: r.jobs.verify.clone(),
            migration_env_secret: r.migration_env_secret.clone(),
            tools_secret: r.tools_secret.clone(),
            backup_dir: r.backup_dir.clone(),
            // Filled in by `targets` from status.
            base_deployment: r.blue_deployment.name.clone(),
            base_databases: BTreeMap::new(),
        }
    }

    /// The Deployment a color stands for.
    pub fn deployment(&self, color: Color) -> &str {
        match color {
            Color::Blue => &self.blue,
            Color::Green => &self.green,
        }
    }

    pub fn sources(&self) -> Vec<String> {
        self.databases.iter().map(|d| d.source.clone()).collect()
    }

    pub fn clones(&self) -> Vec<String> {
        self.databases.iter().map(|d| d.clone.clone()).collect()
    }

    /// `(source, clone)` pairs, as the copy takes them.
    pub fn pairs(&self) -> Vec<(String, String)> {
        self.databases
            .iter()
            .map(|d| (d.source.clone(), d.clone.clone()))
            .collect()
    }

    /// The scratch databases the backup is verified in.
    pub fn scratch_databases(&self) -> Vec<String> {
        self.scratch.iter().map(|d| d.clone.clone()).collect()
    }

    /// `(source, scratch)` pairs, as the verify Job restores them.
    pub fn scratch_pairs(&self) -> Vec<(String, String)> {
        self.scratch
            .iter()
            .map(|d| (d.source.clone(), d.clone.clone()))
            .collect()
    }

    /// The clone of `source`, when `source` is one of the plan's databases.
    pub fn clone_of(&self, source: &str) -> Option<&str> {
        self.databases
            .iter()
            .find(|d| d.source == source)
            .map(|d| d.clone.as_str())
    }
}

#[cfg(test)]
pub(super) mod tests;
