//! The Jobs that run the MongoDB tools (backup, clone) and the backup retention (prune):
//! one-shot pods of the plan's backup image running a script from `scripts/`. A script gets
//! lists one item per line, never to be word-split, and the connection string as the tools'
//! config file from a plan-owned Secret, never on a command line (`ps` on the node shows it).

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec, Secret,
    SecretVolumeSource, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use super::{owned_meta, owned_secret, plain};
use crate::crd::UpgradePlan;
use crate::plan::Targets;
use crate::plan::names::{BACKUP_MOUNT, PLAN_LABEL, ROLE_LABEL};
use crate::uri::Uri;

const BACKUP_SH: &str = include_str!("scripts/backup.sh");
const CLONE_SH: &str = include_str!("scripts/clone.sh");
const PRUNE_SH: &str = include_str!("scripts/prune.sh");

/// The exit code with which the backup and clone scripts end when they themselves fail (a
/// tool or a step failing): see `k8s::job_outcome`. Any other end of their pod is a disruption.
pub const SCRIPT_FAILED_EXIT: i32 = 97;

/// Where the tools' config Secret is mounted, and its one key (a file there).
const TOOLS_CONFIG_DIR: &str = "/etc/cutover-tools";
const TOOLS_CONFIG_KEY: &str = "config.yaml";

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

/// The plan-owned Secret the backup and clone Jobs read the connection string from: a
/// mongo-tools config file (`--config`) holding it in the form the tools take.
pub fn tools_secret(plan: &UpgradePlan, targets: &Targets, uri: &Uri) -> Secret {
    // A JSON string is a YAML double-quoted scalar: any character of the string survives.
    let quoted = serde_json::Value::String(uri.for_tools()).to_string();
    owned_secret(
        plan,
        targets.tools_secret.clone(),
        "mongo-tools",
        BTreeMap::from([(TOOLS_CONFIG_KEY.to_string(), format!("uri: {quoted}\n"))]),
    )
}

/// One item per line, for `while IFS= read -r` in a script.
fn lines<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    items.into_iter().collect::<Vec<_>>().join("\n")
}

pub fn backup_job(plan: &UpgradePlan, targets: &Targets) -> Job {
    let dbs = lines(targets.databases.iter().map(|d| d.source.as_str()));
    tools_job(
        plan,
        targets,
        targets.backup_job.clone(),
        "backup",
        vec![plain("CUTOVER_DATABASES", dbs)],
        BACKUP_SH,
        false,
    )
}

pub fn clone_job(plan: &UpgradePlan, targets: &Targets) -> Job {
    // Source and clone on alternating lines: no separator a database name could contain.
    let pairs = targets
        .databases
        .iter()
        .flat_map(|d| [d.source.as_str(), d.clone.as_str()]);
    tools_job(
        plan,
        targets,
        targets.clone_job.clone(),
        "clone",
        vec![plain("CUTOVER_CLONES", lines(pairs))],
        CLONE_SH,
        true,
    )
}

/// The backup retention Job: the backup volume read-write, no database access.
pub fn prune_job(plan: &UpgradePlan, targets: &Targets) -> Job {
    let (volume, mount) = backup_volume(plan, false);
    let role = "prune";
    let container = Container {
        name: role.into(),
        image: Some(plan.spec.backup.image.clone()),
        command: Some(vec!["/bin/sh".into(), "-c".into(), PRUNE_SH.into()]),
        env: Some(vec![
            plain("CUTOVER_ARCHIVE_DIR", &targets.backup_dir),
            plain("CUTOVER_KEEP_LAST", plan.spec.backup.keep_last.to_string()),
        ]),
        volume_mounts: Some(vec![mount]),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    };
    one_shot_job(
        plan,
        targets.prune_job.clone(),
        role,
        PodSpec {
            containers: vec![container],
            volumes: Some(vec![volume]),
            ..Default::default()
        },
    )
}

/// A Job of the MongoDB tools: the backup volume and the tools' config Secret mounted.
fn tools_job(
    plan: &UpgradePlan,
    targets: &Targets,
    name: String,
    role: &str,
    env: Vec<EnvVar>,
    script: &str,
    read_only: bool,
) -> Job {
    let (volume, mount) = backup_volume(plan, read_only);
    let config = Volume {
        name: "mongo-tools".into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(targets.tools_secret.clone()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let config_mount = VolumeMount {
        name: "mongo-tools".into(),
        mount_path: TOOLS_CONFIG_DIR.into(),
        read_only: Some(true),
        ..Default::default()
    };
    let mut all_env = vec![
        plain(
            "CUTOVER_TOOLS_CONFIG",
            format!("{TOOLS_CONFIG_DIR}/{TOOLS_CONFIG_KEY}"),
        ),
        plain("CUTOVER_ARCHIVE_DIR", &targets.backup_dir),
    ];
    all_env.extend(env);
    let container = Container {
        name: role.into(),
        image: Some(plan.spec.backup.image.clone()),
        command: Some(vec!["/bin/sh".into(), "-c".into(), script.into()]),
        env: Some(all_env),
        volume_mounts: Some(vec![mount, config_mount]),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    };
    one_shot_job(
        plan,
        name,
        role,
        PodSpec {
            containers: vec![container],
            volumes: Some(vec![volume, config]),
            ..Default::default()
        },
    )
}

/// A Job that runs its pod once: no retries (a failed backup or migration must be looked at,
/// not repeated), owned by the plan, labelled with the plan and the Job's role. A backup or
/// clone pod that was disrupted rather than failed is retried by the plan as a new Job under
/// a new name (`decide::data`), so each Job name is created at most once.
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
