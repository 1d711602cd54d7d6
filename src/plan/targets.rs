//! Every object and database a plan creates or acts on, named once. The naming rules live in
//! `names`; this is where they are applied, preferring what the plan's status recorded, so a
//! name chosen when the plan started stays the name even if the spec is edited afterwards.
//!
//! Plain data on purpose: the step that freezes the targets into status only has to store
//! this value and return the stored one when present.

use crate::crd::{Color, UpgradePlanSpec, UpgradePlanStatus};

use super::names;

/// A source database and the clone the new version runs on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatabaseTarget {
    pub source: String,
    pub clone: String,
}

/// The names one plan works with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Targets {
    /// The plan's name: the value of the plan label on everything it creates.
    pub plan: String,
    /// The old version's Deployment.
    pub blue: String,
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
    pub backup_job: String,
    pub clone_job: String,
    pub migration_job: String,
    pub prune_job: String,
    /// The Secret holding the migration user's connection string to the clone.
    pub migration_env_secret: String,
    /// The Secret holding the MongoDB tools' config file (the connection string) for the
    /// backup and clone Jobs.
    pub tools_secret: String,
    /// Where the backup goes on the volume.
    pub backup_dir: String,
}

/// The targets of the plan named `plan`: recorded names from `status` where there are any,
/// otherwise the rules of `names`.
pub fn targets(spec: &UpgradePlanSpec, plan: &str, status: Option<&UpgradePlanStatus>) -> Targets {
    let green = status
        .and_then(|s| s.green_deployment.clone())
        .unwrap_or_else(|| names::green_deployment(spec, plan));
    let recorded_clone = |source: &str| {
        status
            .and_then(|s| s.clone.as_ref())
            .and_then(|c| c.databases.get(source).cloned())
    };
    Targets {
        plan: plan.to_string(),
        blue: spec.app.deployment.clone(),
        service: spec.app.service.clone(),
        green_env_secret: names::env_secret(&green),
        preview_service: names::preview_service_of(&green),
        green,
        databases: spec
            .database
            .databases
            .iter()
            .map(|d| DatabaseTarget {
                source: d.name.clone(),
                clone: recorded_clone(&d.name).unwrap_or_else(|| names::clone_database(d, plan)),
            })
            .collect(),
        backup_job: names::backup_job(plan),
        clone_job: names::clone_job(plan),
        migration_job: names::migration_job(plan),
        prune_job: names::prune_job(plan),
        migration_env_secret: names::migration_env_secret(plan),
        tools_secret: tools_secret(plan),
        backup_dir: names::backup_dir(spec, plan),
    }
}

/// The tools' config Secret of plan `plan`. The one naming rule not in `names` yet (that module
/// is being changed elsewhere); it belongs beside `migration_env_secret` there.
fn tools_secret(plan: &str) -> String {
    names::shorten(&format!("{plan}-mongo-tools"), names::MAX_K8S_NAME)
}

impl Targets {
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
