//! Client-free builders for every object cutover writes: the read-only patch of the old
//! version, the new version's Deployment and its env Secret, the backup/clone/migration Jobs,
//! the preview Service. Pure functions of the plan and what was read, so they are tested
//! without a cluster.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec,
    Secret, SecretKeySelector, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::crd::{Color, EnvVarSpec, Mode, UpgradePlan};
use crate::plan::names::{self, BACKUP_MOUNT, PLAN_LABEL, ROLE_LABEL, TRACK_LABEL};

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

/// The application container of a Deployment: the one named in the plan, or the only one.
pub fn app_container(deployment: &Deployment, wanted: Option<&str>) -> Result<String, BuildError> {
    let name = deployment.name_any();
    let containers = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|p| p.containers.as_slice())
        .unwrap_or_default();
    let have = containers
        .iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    match (wanted, containers) {
        (_, []) => Err(BuildError::NoContainers(name)),
        (Some(w), cs) => cs
            .iter()
            .find(|c| c.name == w)
            .map(|c| c.name.clone())
            .ok_or(BuildError::NoSuchContainer {
                deployment: name,
                container: w.into(),
                have,
            }),
        (None, [one]) => Ok(one.name.clone()),
        (None, cs) => Err(BuildError::AmbiguousContainer {
            deployment: name,
            count: cs.len(),
            have,
        }),
    }
}

/// The server-side-apply body cutover owns on the old version: the track label on its pod
/// template and, while `read_only`, the read-only variable. Applying it without the variable
/// removes just that variable; everything else stays with the Deployment's own managers.
pub fn blue_patch(
    blue_name: &str,
    container: &str,
    read_only: Option<&EnvVarSpec>,
) -> serde_json::Value {
    let env: Vec<serde_json::Value> = read_only
        .map(|e| json!({"name": e.name, "value": e.value}))
        .into_iter()
        .collect();
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": blue_name},
        "spec": {"template": {
            "metadata": {"labels": {TRACK_LABEL: blue_name}},
            "spec": {"containers": [{"name": container, "env": env}]}
        }}
    })
}

/// Sets (or removes) a plain env var on a container of an owned Deployment.
pub fn with_env(mut d: Deployment, container: &str, var: &EnvVarSpec, enabled: bool) -> Deployment {
    if let Some(c) = d
        .spec
        .as_mut()
        .and_then(|s| s.template.spec.as_mut())
        .and_then(|p| p.containers.iter_mut().find(|c| c.name == container))
    {
        let env = c.env.get_or_insert_with(Vec::new);
        env.retain(|e| e.name != var.name);
        if enabled {
            env.push(EnvVar {
                name: var.name.clone(),
                value: Some(var.value.clone()),
                value_from: None,
            });
        }
    }
    d
}

/// An object read back from the API, cleaned so it can be server-side applied again.
pub fn for_reapply(mut d: Deployment) -> Deployment {
    d.metadata.managed_fields = None;
    d.metadata.resource_version = None;
    d.metadata.uid = None;
    d.metadata.creation_timestamp = None;
    d.metadata.generation = None;
    d.status = None;
    d
}

/// What the executor read that the new version's Deployment is built from.
pub struct GreenInputs<'a> {
    pub plan: &'a UpgradePlan,
    pub blue: &'a Deployment,
    pub container: &'a str,
    pub replicas: i32,
    /// Current values of the `uriEnv` variables (resolved from Secrets when needed), or the
    /// plan's connection string for a variable the container does not set.
    pub uri_values: &'a BTreeMap<String, String>,
    /// The Service's selector, so a rehearsal's pods never match it.
    pub service_selector: &'a BTreeMap<String, String>,
}

/// The new version's Deployment (read-only on) and, when connection strings had to be
/// rewritten, the Secret holding them.
pub fn green(inputs: &GreenInputs) -> Result<(Deployment, Option<Secret>), BuildError> {
    let plan = inputs.plan;
    let spec = &plan.spec;
    let plan_name = plan.name_any();
    let name = names::green_deployment(spec, &plan_name);
    let env_secret_name = names::shorten(&format!("{name}-env"), names::MAX_K8S_NAME);
    let blue_spec = inputs.blue.spec.clone().unwrap_or_default();

    let mut labels = blue_spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    if spec.mode == Mode::Rehearsal {
        // A rehearsal must never receive live traffic: drop every label the Service selects on.
        for k in inputs.service_selector.keys() {
            labels.remove(k);
        }
    }
    labels.insert(TRACK_LABEL.into(), name.clone());
    let mut match_labels: BTreeMap<String, String> = blue_spec
        .selector
        .match_labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| labels.contains_key(k))
        .collect();
    match_labels.insert(TRACK_LABEL.into(), name.clone());

    let mut pod_spec: PodSpec = blue_spec.template.spec.clone().unwrap_or_default();
    let mut secret_data = BTreeMap::new();
    {
        let have = pod_spec
            .containers
            .iter()
            .map(|c| c.name.clone())
            .collect::<Vec<_>>()
            .join(", ");
        let c = pod_spec
            .containers
            .iter_mut()
            .find(|c| c.name == inputs.container)
            .ok_or_else(|| BuildError::NoSuchContainer {
                deployment: inputs.blue.name_any(),
                container: inputs.container.into(),
                have,
            })?;
        c.image = Some(spec.target.image.clone());
        let env = c.env.get_or_insert_with(Vec::new);
        let set_plain = |env: &mut Vec<EnvVar>, n: &str, v: &str| {
            env.retain(|e| e.name != n);
            env.push(EnvVar {
                name: n.into(),
                value: Some(v.into()),
                value_from: None,
            });
        };
        for db in &spec.database.databases {
            let clone = names::clone_database(db, &plan_name);
            for var in &db.env {
                set_plain(env, var, &clone);
            }
            for var in &db.uri_env {
                let current_plain = env
                    .iter()
                    .find(|e| &e.name == var && e.value_from.is_none())
                    .and_then(|e| e.value.clone());
                match current_plain {
                    // A plain value is already visible in the Deployment; rewrite it in place.
                    Some(v) => set_plain(env, var, &crate::uri::with_database(&v, &clone)),
                    None => {
                        let source = inputs.uri_values.get(var).cloned().unwrap_or_default();
                        secret_data.insert(var.clone(), crate::uri::with_database(&source, &clone));
                        env.retain(|e| &e.name != var);
                        env.push(EnvVar {
                            name: var.clone(),
                            value: None,
                            value_from: Some(EnvVarSource {
                                secret_key_ref: Some(SecretKeySelector {
                                    name: env_secret_name.clone(),
                                    key: var.clone(),
                                    optional: None,
                                }),
                                ..Default::default()
                            }),
                        });
                    }
                }
            }
        }
        for e in &spec.target.env {
            set_plain(env, &e.name, &e.value);
        }
        let ro = &spec.read_only.env;
        set_plain(env, &ro.name, &ro.value);
    }

    let owner = plan.controller_owner_ref(&()).expect("plan has a uid");
    let mut meta_labels = inputs.blue.labels().clone();
    if spec.mode == Mode::Rehearsal {
        for k in inputs.service_selector.keys() {
            meta_labels.remove(k);
        }
    }
    meta_labels.insert(PLAN_LABEL.into(), plan_name.clone());
    meta_labels.insert(ROLE_LABEL.into(), "green".into());
    meta_labels.insert(TRACK_LABEL.into(), name.clone());

    let mut template_meta = blue_spec.template.metadata.clone().unwrap_or_default();
    template_meta.labels = Some(labels);

    let deployment = Deployment {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: plan.namespace(),
            labels: Some(meta_labels),
            annotations: Some(BTreeMap::from([(
                "cutover.dev/source".to_string(),
                inputs.blue.name_any(),
            )])),
            owner_references: Some(vec![owner.clone()]),
            ..Default::default()
        },
        spec: Some(k8s_openapi::api::apps::v1::DeploymentSpec {
            replicas: Some(inputs.replicas),
            selector: LabelSelector {
                match_labels: Some(match_labels),
                match_expressions: None,
            },
            template: PodTemplateSpec {
                metadata: Some(template_meta),
                spec: Some(pod_spec),
            },
            strategy: blue_spec.strategy.clone(),
            min_ready_seconds: blue_spec.min_ready_seconds,
            revision_history_limit: blue_spec.revision_history_limit,
            progress_deadline_seconds: blue_spec.progress_deadline_seconds,
            paused: None,
        }),
        status: None,
    };
    let secret = (!secret_data.is_empty()).then(|| Secret {
        metadata: ObjectMeta {
            name: Some(env_secret_name),
            namespace: plan.namespace(),
            labels: Some(BTreeMap::from([
                (PLAN_LABEL.to_string(), plan_name.clone()),
                (ROLE_LABEL.to_string(), "green-env".to_string()),
            ])),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        string_data: Some(secret_data),
        type_: Some("Opaque".into()),
        ..Default::default()
    });
    Ok((deployment, secret))
}

fn job_meta(plan: &UpgradePlan, name: String, role: &str) -> ObjectMeta {
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

fn backup_volume(plan: &UpgradePlan, read_only: bool) -> (Volume, VolumeMount) {
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

/// Turns `$MONGODB_URI` into `$TOOLS_URI`: the tools refuse a database in the URI that differs
/// from the one they work on, so the path moves into `authSource` where it served as such.
const TOOLS_URI_SH: &str = r#"
base="${MONGODB_URI%%\?*}"
query=""
case "$MONGODB_URI" in *\?*) query="${MONGODB_URI#*\?}" ;; esac
scheme="${base%%://*}"
rest="${base#*://}"
hosts="${rest%%/*}"
path=""
case "$rest" in */*) path="${rest#*/}" ;; esac
# Only with credentials does the path name the authentication database.
case "$hosts" in
  *@*) if [ -n "$path" ]; then
    case "&$query" in *"&authSource="*) ;; *) query="${query:+$query&}authSource=$path" ;; esac
  fi ;;
esac
TOOLS_URI="$scheme://$hosts/${query:+?$query}"
"#;

const BACKUP_SH: &str = r#"
mkdir -p "$CUTOVER_ARCHIVE_DIR"
cd "$CUTOVER_ARCHIVE_DIR"
rm -f ./*.partial
# Word-split the list without globbing.
set -f
for db in $CUTOVER_DATABASES; do
  echo "dumping $db"
  mongodump --uri="$TOOLS_URI" --db="$db" --archive="$db.archive.gz.partial" --gzip
  mv "$db.archive.gz.partial" "$db.archive.gz"
done
set +f
sha256sum ./*.archive.gz > SHA256SUMS
bytes=$(cat ./*.archive.gz | wc -c | tr -d ' ')
sum=$(sha256sum SHA256SUMS | cut -d' ' -f1)
result=$(printf '{"path":"%s","bytes":%s,"sha256":"%s"}' "$CUTOVER_ARCHIVE_DIR" "$bytes" "$sum")
echo "$result"
echo "$result" > "${CUTOVER_RESULT_FILE:-/dev/termination-log}" 2>/dev/null || true
"#;

const CLONE_SH: &str = r#"
cd "$CUTOVER_ARCHIVE_DIR"
sha256sum -c SHA256SUMS
set -f
for pair in $CUTOVER_CLONES; do
  src="${pair%%=*}"
  dst="${pair#*=}"
  echo "restoring $src into $dst"
  mongorestore --uri="$TOOLS_URI" --archive="$src.archive.gz" --gzip --nsInclude="$src.*" --nsFrom="$src.*" --nsTo="$dst.*"
done
"#;

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
fn one_shot_job(plan: &UpgradePlan, name: String, role: &str, pod: PodSpec) -> Job {
    Job {
        metadata: job_meta(plan, name, role),
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
const PRUNE_SH: &str = r#"
app_dir="$(dirname "$CUTOVER_ARCHIVE_DIR")"
current="$(basename "$CUTOVER_ARCHIVE_DIR")"
cd "$app_dir"
kept=""
deleted=""
incomplete=""
n=0
for d in $(ls -1t */SHA256SUMS 2>/dev/null | sed 's,/SHA256SUMS$,,'); do
  if [ "$d" = "$current" ] || [ "$n" -lt "$CUTOVER_KEEP_LAST" ]; then
    kept="$kept,\"$d\""
    n=$((n + 1))
  else
    echo "deleting $app_dir/$d"
    rm -rf -- "./$d"
    deleted="$deleted,\"$d\""
  fi
done
for d in */; do
  d="${d%/}"
  [ -d "$d" ] && [ ! -f "$d/SHA256SUMS" ] && incomplete="$incomplete,\"$d\""
done
result=$(printf '{"kept":[%s],"deleted":[%s],"incomplete":[%s]}' "${kept#,}" "${deleted#,}" "${incomplete#,}")
echo "$result"
echo "$result" > "${CUTOVER_RESULT_FILE:-/dev/termination-log}" 2>/dev/null || true
"#;

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

/// The one-shot migration Job: the new image, the new version's (clone-rewired) environment
/// without read-only, the migration user's credentials, and the backup mounted read-only.
pub fn migration_job(plan: &UpgradePlan, green: &Deployment, container: &str) -> Option<Job> {
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
        if migration_credentials_clone(plan).is_some() {
            let secret = migration_env_secret_name(plan);
            env.push(secret_env(&cred.env, &secret, &cred.env));
        } else {
            env.push(secret_env(&cred.env, &cred.name, &cred.key));
        }
    }
    env.push(plain("CUTOVER_BACKUP_DIR", archive_dir(plan)));
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
        names::migration_job(&plan.name_any()),
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
pub fn migration_credentials_clone(plan: &UpgradePlan) -> Option<String> {
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
        .map(|d| names::clone_database(d, &plan.name_any()))
}

pub fn migration_env_secret_name(plan: &UpgradePlan) -> String {
    names::shorten(
        &format!("{}-migrate-env", plan.name_any()),
        names::MAX_K8S_NAME,
    )
}

/// The plan-owned Secret holding the migration user's connection string rewritten to the clone.
pub fn migration_env_secret(plan: &UpgradePlan, credentials_uri: &str) -> Option<Secret> {
    let clone = migration_credentials_clone(plan)?;
    let cred = plan
        .spec
        .migration
        .job
        .as_ref()?
        .credentials_secret
        .as_ref()?;
    Some(Secret {
        metadata: ObjectMeta {
            name: Some(migration_env_secret_name(plan)),
            namespace: plan.namespace(),
            labels: Some(BTreeMap::from([
                (PLAN_LABEL.to_string(), plan.name_any()),
                (ROLE_LABEL.to_string(), "migrate-env".to_string()),
            ])),
            owner_references: Some(vec![owner_ref(plan)]),
            ..Default::default()
        },
        string_data: Some(BTreeMap::from([(
            cred.env.clone(),
            crate::uri::with_database(credentials_uri, &clone),
        )])),
        type_: Some("Opaque".into()),
        ..Default::default()
    })
}

/// A Service selecting only the new version, for looking at it before the switch.
pub fn preview_service(plan: &UpgradePlan, app_service: &Service, green_name: &str) -> Service {
    let ports: Vec<ServicePort> = app_service
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|p| ServicePort {
            node_port: None,
            protocol: Some(p.protocol.unwrap_or_else(|| "TCP".into())),
            ..p
        })
        .collect();
    Service {
        metadata: ObjectMeta {
            name: Some(names::preview_service(&plan.spec, &plan.name_any())),
            namespace: plan.namespace(),
            labels: Some(BTreeMap::from([
                (PLAN_LABEL.to_string(), plan.name_any()),
                (ROLE_LABEL.to_string(), "preview".to_string()),
            ])),
            owner_references: Some(vec![owner_ref(plan)]),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            selector: Some(BTreeMap::from([(
                TRACK_LABEL.to_string(),
                green_name.to_string(),
            )])),
            ports: Some(ports),
            ..Default::default()
        }),
        status: None,
    }
}

/// The merge patch that points the Service at one version. A merge patch (not an apply)
/// because a Service selector is an atomic map: applying it would take the user's keys over.
pub fn service_track_patch(track: &str) -> serde_json::Value {
    json!({"spec": {"selector": {TRACK_LABEL: track}}})
}

/// Which Deployment name a color refers to in this plan.
pub fn deployment_for(plan: &UpgradePlan, color: Color) -> String {
    match color {
        Color::Blue => plan.spec.app.deployment.clone(),
        Color::Green => names::green_deployment(&plan.spec, &plan.name_any()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::UpgradePlanSpec;
    use serde_json::json;

    fn plan(extra: serde_json::Value) -> UpgradePlan {
        let mut spec = json!({
            "app": {"deployment": "squidex", "service": "squidex"},
            "target": {"image": "squidex/squidex:7", "env": [{"name": "FEATURE", "value": "on"}]},
            "readOnly": {"env": {"name": "MODE__ISREADONLY", "value": "true"}},
            "database": {
                "connectionSecret": {"name": "mongo", "key": "uri"},
                "databases": [
                    {"name": "Squidex", "env": ["STORE__MONGODB__DATABASE"], "uriEnv": ["STORE__MONGODB__CONFIGURATION"]},
                    {"name": "SquidexContent", "env": ["STORE__MONGODB__CONTENTDATABASE"]}
                ]
            },
            "backup": {"volume": {"claimName": "backups"}},
            "migration": {"job": {"command": ["./upgrade_schema.sh"], "args": ["upgrade"],
                                  "credentialsSecret": {"name": "migrator", "key": "uri", "env": "STORE__MONGODB__CONFIGURATION"}}}
        });
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                s.insert(k.clone(), v.clone());
            }
        }
        let spec: UpgradePlanSpec = serde_json::from_value(spec).unwrap();
        let mut p = UpgradePlan::new("up7", spec);
        p.metadata.namespace = Some("apps".into());
        p.metadata.uid = Some("uid-1".into());
        p
    }

    fn blue() -> Deployment {
        serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "squidex", "namespace": "apps", "labels": {"app": "squidex"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "squidex"}},
                "template": {
                    "metadata": {"labels": {"app": "squidex", "tier": "web"}},
                    "spec": {"containers": [
                        {"name": "squidex", "image": "squidex/squidex:6", "env": [
                            {"name": "STORE__MONGODB__CONFIGURATION", "valueFrom": {"secretKeyRef": {"name": "mongo", "key": "uri"}}},
                            {"name": "STORE__MONGODB__DATABASE", "value": "Squidex"}
                        ]},
                        {"name": "sidecar", "image": "envoy:1"}
                    ]}
                }
            }
        }))
        .unwrap()
    }

    fn env_of(d: &Deployment, container: &str) -> Vec<EnvVar> {
        d.spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers
            .iter()
            .find(|c| c.name == container)
            .unwrap()
            .env
            .clone()
            .unwrap()
    }

    fn value<'a>(env: &'a [EnvVar], name: &str) -> Option<&'a str> {
        env.iter()
            .find(|e| e.name == name)
            .and_then(|e| e.value.as_deref())
    }

    #[test]
    fn picks_the_app_container() {
        let b = blue();
        assert_eq!(app_container(&b, Some("squidex")), Ok("squidex".into()));
        assert!(matches!(
            app_container(&b, None),
            Err(BuildError::AmbiguousContainer { count: 2, .. })
        ));
        assert!(matches!(
            app_container(&b, Some("nope")),
            Err(BuildError::NoSuchContainer { .. })
        ));
    }

    #[test]
    fn blue_patch_owns_only_the_label_and_the_variable() {
        let ro = EnvVarSpec {
            name: "MODE__ISREADONLY".into(),
            value: "true".into(),
        };
        let on = blue_patch("squidex", "squidex", Some(&ro));
        assert_eq!(
            on["spec"]["template"]["metadata"]["labels"][TRACK_LABEL],
            "squidex"
        );
        assert_eq!(
            on["spec"]["template"]["spec"]["containers"][0]["env"][0]["name"],
            "MODE__ISREADONLY"
        );
        assert!(on["spec"].get("replicas").is_none() && on["spec"].get("selector").is_none());
        let off = blue_patch("squidex", "squidex", None);
        assert_eq!(
            off["spec"]["template"]["spec"]["containers"][0]["env"],
            json!([])
        );
    }

    #[test]
    fn green_runs_the_target_on_the_clones_read_only() {
        let p = plan(
            json!({"app": {"deployment": "squidex", "service": "squidex", "container": "squidex"}}),
        );
        let b = blue();
        let uris = BTreeMap::from([(
            "STORE__MONGODB__CONFIGURATION".to_string(),
            "mongodb://u:pw@db/Squidex".to_string(),
        )]);
        let selector = BTreeMap::from([("app".to_string(), "squidex".to_string())]);
        let (g, secret) = green(&GreenInputs {
            plan: &p,
            blue: &b,
            container: "squidex",
            replicas: 2,
            uri_values: &uris,
            service_selector: &selector,
        })
        .unwrap();
        assert_eq!(g.metadata.name.as_deref(), Some("squidex-up7"));
        let spec = g.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(2));
        let labels = spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .clone()
            .unwrap();
        assert_eq!(
            labels.get(TRACK_LABEL).map(String::as_str),
            Some("squidex-up7")
        );
        assert_eq!(
            labels.get("tier").map(String::as_str),
            Some("web"),
            "blue's labels are kept"
        );
        let sel = spec.selector.match_labels.clone().unwrap();
        assert_eq!(
            sel.get(TRACK_LABEL).map(String::as_str),
            Some("squidex-up7"),
            "green's selector never matches blue's pods"
        );
        let containers = &spec.template.spec.as_ref().unwrap().containers;
        assert_eq!(containers[0].image.as_deref(), Some("squidex/squidex:7"));
        assert_eq!(
            containers[1].image.as_deref(),
            Some("envoy:1"),
            "other containers untouched"
        );
        let env = env_of(&g, "squidex");
        assert_eq!(value(&env, "STORE__MONGODB__DATABASE"), Some("Squidex-up7"));
        assert_eq!(
            value(&env, "STORE__MONGODB__CONTENTDATABASE"),
            Some("SquidexContent-up7")
        );
        assert_eq!(value(&env, "MODE__ISREADONLY"), Some("true"));
        assert_eq!(value(&env, "FEATURE"), Some("on"));
        let uri_var = env
            .iter()
            .find(|e| e.name == "STORE__MONGODB__CONFIGURATION")
            .unwrap();
        assert!(
            uri_var.value.is_none(),
            "a Secret-held URI stays in a Secret"
        );
        assert_eq!(
            uri_var
                .value_from
                .as_ref()
                .unwrap()
                .secret_key_ref
                .as_ref()
                .unwrap()
                .name,
            "squidex-up7-env"
        );
        let secret = secret.expect("env Secret");
        assert_eq!(
            secret
                .string_data
                .unwrap()
                .get("STORE__MONGODB__CONFIGURATION")
                .map(String::as_str),
            Some("mongodb://u:pw@db/Squidex-up7?authSource=Squidex")
        );
        assert_eq!(
            g.metadata.owner_references.as_ref().unwrap()[0].uid,
            "uid-1"
        );
        assert!(
            !serde_json::to_string(&g).unwrap().contains("pw@"),
            "no connection string in the Deployment"
        );
    }

    #[test]
    fn rehearsal_green_never_matches_the_service() {
        let p = plan(
            json!({"mode": "rehearsal", "app": {"deployment": "squidex", "service": "squidex", "container": "squidex"}}),
        );
        let selector = BTreeMap::from([("app".to_string(), "squidex".to_string())]);
        let (g, _) = green(&GreenInputs {
            plan: &p,
            blue: &blue(),
            container: "squidex",
            replicas: 1,
            uri_values: &BTreeMap::new(),
            service_selector: &selector,
        })
        .unwrap();
        let labels = g
            .spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .clone()
            .unwrap();
        assert!(!crate::plan::names::selects(&selector, &labels));
    }

    #[test]
    fn jobs_take_the_uri_from_the_secret_and_never_retry() {
        let p = plan(json!({}));
        for job in [backup_job(&p), clone_job(&p)] {
            let spec = job.spec.as_ref().unwrap();
            assert_eq!(spec.backoff_limit, Some(0));
            let pod = spec.template.spec.as_ref().unwrap();
            assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
            let c = &pod.containers[0];
            assert_eq!(c.image.as_deref(), Some("mongo:7.0"));
            let uri = c
                .env
                .as_ref()
                .unwrap()
                .iter()
                .find(|e| e.name == "MONGODB_URI")
                .unwrap();
            let r = uri
                .value_from
                .as_ref()
                .unwrap()
                .secret_key_ref
                .as_ref()
                .unwrap();
            assert_eq!((r.name.as_str(), r.key.as_str()), ("mongo", "uri"));
            assert_eq!(
                pod.volumes.as_ref().unwrap()[0]
                    .persistent_volume_claim
                    .as_ref()
                    .unwrap()
                    .claim_name,
                "backups"
            );
            assert_eq!(
                job.metadata.owner_references.as_ref().unwrap()[0].uid,
                "uid-1"
            );
        }
        let clone = clone_job(&p);
        let env = clone.spec.unwrap().template.spec.unwrap().containers[0]
            .env
            .clone()
            .unwrap();
        assert_eq!(
            value(&env, "CUTOVER_CLONES"),
            Some("Squidex=Squidex-up7 SquidexContent=SquidexContent-up7")
        );
        assert_eq!(
            value(&env, "CUTOVER_ARCHIVE_DIR"),
            Some("/backup/squidex/up7")
        );
    }

    #[test]
    fn migration_credentials_naming_a_database_are_rewritten_to_the_clone() {
        // The credentials variable is also the app's uriEnv: its database is the source's.
        let p = plan(
            json!({"app": {"deployment": "squidex", "service": "squidex", "container": "squidex"}}),
        );
        assert_eq!(
            migration_credentials_clone(&p).as_deref(),
            Some("Squidex-up7")
        );
        let (g, _) = green(&GreenInputs {
            plan: &p,
            blue: &blue(),
            container: "squidex",
            replicas: 0,
            uri_values: &BTreeMap::new(),
            service_selector: &BTreeMap::new(),
        })
        .unwrap();
        let job = migration_job(&p, &g, "squidex").unwrap();
        let env = job.spec.unwrap().template.spec.unwrap().containers[0]
            .env
            .clone()
            .unwrap();
        let cred = env
            .iter()
            .find(|e| e.name == "STORE__MONGODB__CONFIGURATION")
            .unwrap();
        let r = cred
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!(
            (r.name.as_str(), r.key.as_str()),
            ("up7-migrate-env", "STORE__MONGODB__CONFIGURATION")
        );
        let s =
            migration_env_secret(&p, "mongodb://migrator:pw@db/Squidex?authSource=admin").unwrap();
        assert_eq!(
            s.string_data
                .unwrap()
                .get("STORE__MONGODB__CONFIGURATION")
                .map(String::as_str),
            Some("mongodb://migrator:pw@db/Squidex-up7?authSource=admin")
        );
    }

    #[test]
    fn migration_job_uses_the_migration_user_and_not_read_only() {
        // Here the credentials variable is not a uriEnv: the Secret is passed through as is.
        let p = plan(json!({
            "app": {"deployment": "squidex", "service": "squidex", "container": "squidex"},
            "database": {
                "connectionSecret": {"name": "mongo", "key": "uri"},
                "databases": [
                    {"name": "Squidex", "env": ["STORE__MONGODB__DATABASE"]},
                    {"name": "SquidexContent", "env": ["STORE__MONGODB__CONTENTDATABASE"]}
                ]
            }
        }));
        assert!(migration_credentials_clone(&p).is_none());
        let (g, _) = green(&GreenInputs {
            plan: &p,
            blue: &blue(),
            container: "squidex",
            replicas: 0,
            uri_values: &BTreeMap::new(),
            service_selector: &BTreeMap::new(),
        })
        .unwrap();
        let job = migration_job(&p, &g, "squidex").unwrap();
        let c = &job
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0];
        assert_eq!(c.image.as_deref(), Some("squidex/squidex:7"));
        assert_eq!(c.command.clone().unwrap(), vec!["./upgrade_schema.sh"]);
        assert_eq!(c.args.clone().unwrap(), vec!["upgrade"]);
        let env = c.env.clone().unwrap();
        assert!(value(&env, "MODE__ISREADONLY").is_none());
        assert_eq!(
            value(&env, "STORE__MONGODB__DATABASE"),
            Some("Squidex-up7"),
            "the migration runs on the clone"
        );
        let cred: Vec<_> = env
            .iter()
            .filter(|e| e.name == "STORE__MONGODB__CONFIGURATION")
            .collect();
        assert_eq!(cred.len(), 1);
        assert_eq!(
            cred[0]
                .value_from
                .as_ref()
                .unwrap()
                .secret_key_ref
                .as_ref()
                .unwrap()
                .name,
            "migrator"
        );
        assert_eq!(
            value(&env, "CUTOVER_BACKUP_DIR"),
            Some("/backup/squidex/up7")
        );
    }
}
