//! Client-free builders for every object cutover writes: the read-only patch of the old
//! version, the new version's Deployment and its env Secret, the backup/clone/prune/migration
//! Jobs, the preview Service. Pure functions of the plan and what was read, so they are tested
//! without a cluster.

mod deployment;
mod green;
mod jobs;
mod migration;
mod service;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, Secret, SecretKeySelector};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use crate::crd::UpgradePlan;
use crate::plan::names::{PLAN_LABEL, ROLE_LABEL};

pub use deployment::{app_container, blue_read_only_patch, for_reapply, with_env};
pub use green::{GITOPS_TRACKING_LABEL, GreenInputs, green};
pub use jobs::{SCRIPT_FAILED_EXIT, backup_job, clone_job, prune_job, tools_secret};
pub use migration::{migration_credentials_clone, migration_env_secret, migration_job};
pub use service::{preview_service, service_track_patch};

/// Why an object could not be built from what was read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BuildError {
    #[error("Deployment {0} has no pod template containers")]
    NoContainers(String),
    #[error("Deployment {deployment} has no container {container:?} (it has: {have})")]
    NoSuchContainer {
        deployment: String,
        container: String,
        have: String,
    },
    #[error(
        "Deployment {deployment} has {count} containers ({have}); set spec.app.container to the application's"
    )]
    AmbiguousContainer {
        deployment: String,
        count: usize,
        have: String,
    },
}

/// Metadata of an object the plan owns: its name, the plan's namespace, the plan and role
/// labels, and the plan as controller owner (so deleting the plan collects it).
fn owned_meta(plan: &UpgradePlan, name: String, role: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: plan.namespace(),
        labels: Some(BTreeMap::from([
            (PLAN_LABEL.to_string(), plan.name_any()),
            (ROLE_LABEL.to_string(), role.to_string()),
        ])),
        owner_references: Some(vec![owner_ref(plan)]),
        ..Default::default()
    }
}

fn owner_ref(plan: &UpgradePlan) -> OwnerReference {
    plan.controller_owner_ref(&()).expect("plan has a uid")
}

/// A plan-owned Opaque Secret.
fn owned_secret(
    plan: &UpgradePlan,
    name: String,
    role: &str,
    data: BTreeMap<String, String>,
) -> Secret {
    Secret {
        metadata: owned_meta(plan, name, role),
        string_data: Some(data),
        type_: Some("Opaque".into()),
        ..Default::default()
    }
}

fn plain(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: None,
            }),
            ..Default::default()
        }),
    }
}

#[cfg(test)]
mod tests;
