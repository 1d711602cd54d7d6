//! The Jobs that run the MongoDB tools and the backup retention: one-shot pods of the
//! plan's backup image, their shell in `scripts/*.sh`.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use super::{owned_meta, plain, secret_env};
use crate::crd::UpgradePlan;
use crate::plan::names::{self, BACKUP_MOUNT, PLAN_LABEL, ROLE_LABEL};

pub(super) fn backup_volume(plan: &UpgradePlan, read_only: bool) -> (Volume, VolumeMount) {
    (
        Volume {
            name: "backup".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: plan.spec.backup.volume.claim_name.clone(),
                read_only: Some(read_only),
            }),
            ..Default::default()
        },
        VolumeMount {
            name: "backup".into(),
            mount_path: BACKUP_MOUNT.into(),
            read_only: Some(read_only),
            ..Default::default()
        },
    )
}

/// Turns `$MONGODB_URI` into `$TOOLS_URI`: the tools refuse a database in the URI that differs
/// from the one they work on, so the path moves into `authSource` where it served as such.
const TOOLS_URI_SH: &str = include_str!("scripts/tools_uri.sh");

const BACKUP_SH: &str = include_str!("scripts/backup.sh");

const CLONE_SH: &str = include_str!("scripts/clone.sh");

fn tools_job(
    plan: &UpgradePlan,
    name: String,
    role: &str,
    env: Vec<EnvVar>,
    script: &str,
    read_only: bool,
) -> Job {
    let (volume, mount) = backup_volume(plan, read_only);
    let secret = &plan.spec.database.connection_secret;
    let mut all_env = vec![
        secret_env("MONGODB_URI", &secret.name, &secret.key),
        plain("CUTOVER_ARCHIVE_DIR", archive_dir(plan)),
    ];
    all_env.extend(env);
    let container = Container {
        name: role.into(),
        image: Some(plan.spec.backup.image.clone()),
        command: Some(vec![
            "/bin/sh".into(),
            "-c".into(),
            format!("set -eu\n{TOOLS_URI_SH}{script}"),
        ]),
        env: Some(all_env),
        volume_mounts: Some(vec![mount]),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    };
    one_shot_job(
        plan,
        name,
        role,
        PodSpec {
            containers: vec![container],
            volumes: Some(vec![volume]),
            ..Default::default()
        },
    )
}

/// A Job that runs its pod once: no retries (a failed backup or migration must be looked at,
/// not repeated), owned by the plan, labelled with the plan and the Job's role.
pub(super) fn one_shot_job(plan: &UpgradePlan, name: String, role: &str, pod: PodSpec) -> Job {
    Job {
        metadata: owned_meta(plan, name, role),
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(BTreeMap::from([
                        (PLAN_LABEL.to_string(), plan.name_any()),
                        (ROLE_LABEL.to_string(), role.to_string()),
                    ])),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    ..pod
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

/// Keeps the newest `$CUTOVER_KEEP_LAST` complete backups (a `SHA256SUMS` marks one complete)
/// of the application, this plan's always among them; an incomplete directory may be a backup
/// in progress or a failed one kept for inspection, so it is left alone and reported.
const PRUNE_SH: &str = include_str!("scripts/prune.sh");

/// The backup retention Job: the backup volume read-write, no database access.
pub fn prune_job(plan: &UpgradePlan) -> Job {
    let (volume, mount) = backup_volume(plan, false);
    let role = "prune";
    let container = Container {
        name: role.into(),
        image: Some(plan.spec.backup.image.clone()),
        command: Some(vec![
            "/bin/sh".into(),
            "-c".into(),
            format!("set -eu\n{PRUNE_SH}"),
        ]),
        env: Some(vec![
            plain("CUTOVER_ARCHIVE_DIR", archive_dir(plan)),
            plain("CUTOVER_KEEP_LAST", plan.spec.backup.keep_last.to_string()),
        ]),
        volume_mounts: Some(vec![mount]),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    };
    one_shot_job(
        plan,
        names::prune_job(&plan.name_any()),
        role,
        PodSpec {
            containers: vec![container],
            volumes: Some(vec![volume]),
            ..Default::default()
        },
    )
}

/// Directory of this plan's archives on the backup volume (one archive per database).
pub fn archive_dir(plan: &UpgradePlan) -> String {
    names::backup_dir(&plan.spec, &plan.name_any())
}

pub fn backup_job(plan: &UpgradePlan) -> Job {
    let dbs: Vec<&str> = plan
        .spec
        .database
        .databases
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    tools_job(
        plan,
        names::backup_job(&plan.name_any()),
        "backup",
        vec![plain("CUTOVER_DATABASES", dbs.join(" "))],
        BACKUP_SH,
        false,
    )
}

pub fn clone_job(plan: &UpgradePlan) -> Job {
    let plan_name = plan.name_any();
    let pairs: Vec<String> = plan
        .spec
        .database
        .databases
        .iter()
        .map(|d| format!("{}={}", d.name, names::clone_database(d, &plan_name)))
        .collect();
    tools_job(
        plan,
        names::clone_job(&plan_name),
        "clone",
        vec![plain("CUTOVER_CLONES", pairs.join(" "))],
        CLONE_SH,
        true,
    )
}
