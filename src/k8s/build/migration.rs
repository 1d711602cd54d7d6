//! The migration gate's Job: the new image on the clones, with the migration user's
//! credentials, and the Secret holding those credentials rewritten to the clone.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Container, EnvVar, PodSpec, Secret};

use super::jobs::{backup_volume, one_shot_job};
use super::{owned_secret, plain, secret_env};
use crate::crd::UpgradePlan;
use crate::plan::Targets;
use crate::plan::names::BACKUP_MOUNT;
use crate::uri;

/// The one-shot migration Job: the new image, the new version's (clone-rewired) environment
/// without read-only, the migration user's credentials, and the backup mounted read-only.
pub fn migration_job(
    plan: &UpgradePlan,
    targets: &Targets,
    green: &Deployment,
    container: &str,
) -> Option<Job> {
    let gate = plan.spec.migration.job.as_ref()?;
    let pod = green.spec.as_ref()?.template.spec.clone()?;
    let app = pod.containers.iter().find(|c| c.name == container)?.clone();
    let mut env: Vec<EnvVar> = app
        .env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.name != plan.spec.read_only.env.name)
        .collect();
    if let Some(cred) = &gate.credentials_secret {
        env.retain(|e| e.name != cred.env);
        // A migration user's connection string that names a database is rewritten to the
        // clone (like the app's `uriEnv`), or the migration would run on the source.
        if migration_credentials_clone(plan, targets).is_some() {
            env.push(secret_env(
                &cred.env,
                &targets.migration_env_secret,
                &cred.env,
            ));
        } else {
            env.push(secret_env(&cred.env, &cred.name, &cred.key));
        }
    }
    env.push(plain("CUTOVER_BACKUP_DIR", &targets.backup_dir));
    let (volume, mount) = backup_volume(plan, true);
    let mut mounts = app.volume_mounts.clone().unwrap_or_default();
    mounts.retain(|m| m.mount_path != BACKUP_MOUNT);
    mounts.push(mount);
    let mut volumes = pod.volumes.clone().unwrap_or_default();
    volumes.retain(|v| v.name != "backup");
    volumes.push(volume);
    let role = "migrate";
    let container = Container {
        name: role.into(),
        image: Some(plan.spec.target.image.clone()),
        command: (!gate.command.is_empty()).then(|| gate.command.clone()),
        args: (!gate.args.is_empty()).then(|| gate.args.clone()),
        env: Some(env),
        env_from: app.env_from.clone(),
        volume_mounts: Some(mounts),
        working_dir: app.working_dir.clone(),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    };
    Some(one_shot_job(
        plan,
        targets.migration_job.clone(),
        role,
        PodSpec {
            containers: vec![container],
            volumes: Some(volumes),
            service_account_name: pod.service_account_name.clone(),
            image_pull_secrets: pod.image_pull_secrets.clone(),
            security_context: pod.security_context.clone(),
            ..Default::default()
        },
    ))
}

/// The clone the migration credentials must point at, when the credentials variable is one of
/// the plan's `uriEnv` variables (a connection string whose path names a database).
pub fn migration_credentials_clone<'t>(
    plan: &UpgradePlan,
    targets: &'t Targets,
) -> Option<&'t str> {
    let cred = plan
        .spec
        .migration
        .job
        .as_ref()?
        .credentials_secret
        .as_ref()?;
    plan.spec
        .database
        .databases
        .iter()
        .find(|d| d.uri_env.contains(&cred.env))
        .and_then(|d| targets.clone_of(&d.name))
}

/// The plan-owned Secret holding the migration user's connection string rewritten to the clone.
pub fn migration_env_secret(
    plan: &UpgradePlan,
    targets: &Targets,
    credentials_uri: &str,
) -> Option<Secret> {
    let clone = migration_credentials_clone(plan, targets)?;
    let cred = plan
        .spec
        .migration
        .job
        .as_ref()?
        .credentials_secret
        .as_ref()?;
    Some(owned_secret(
        plan,
        targets.migration_env_secret.clone(),
        "migrate-env",
        BTreeMap::from([(cred.env.clone(), uri::with_database(credentials_uri, clone))]),
    ))
}
