//! Carries out the one action `decide` chose. Every write is idempotent: a server-side apply
//! with force under cutover's field manager, a create that accepts "already exists", a delete
//! that accepts "not found", or a merge patch of one key.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::api::{
    DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions, PropagationPolicy,
};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::copy::Copies;
use crate::crd::{Color, Mode, UpgradePlan};
use crate::mongo::{self, Clients, MongoError};
use crate::plan::Action;
use crate::plan::names::{self, PLAN_LABEL};

use super::build;
use super::observe::{World, uri_env_values};

/// The single field manager of everything cutover writes.
pub const MANAGER: &str = "cutover";

/// Why an action could not be carried out; the label is stable for metrics.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Build(#[from] build::BuildError),
    #[error("MongoDB: {0}")]
    Mongo(#[from] MongoError),
    #[error("{0}")]
    Missing(String),
}

impl ExecError {
    pub fn label(&self) -> &'static str {
        match self {
            ExecError::Kube(_) => "kube",
            ExecError::Build(_) => "build",
            ExecError::Mongo(_) => "mongo",
            ExecError::Missing(_) => "missing",
        }
    }
}

fn apply() -> PatchParams {
    PatchParams::apply(MANAGER).force()
}

fn merge() -> PatchParams {
    PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    }
}

pub async fn execute(
    client: &Client,
    mongo_clients: &Clients,
    copies: &Copies,
    plan: &UpgradePlan,
    world: &World,
    action: &Action,
) -> Result<(), ExecError> {
    let ns = plan.namespace().unwrap_or_default();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let blue = || {
        world.blue.as_ref().ok_or_else(|| {
            ExecError::Missing(format!("Deployment {} not found", plan.spec.app.deployment))
        })
    };
    let green = || {
        world
            .green
            .as_ref()
            .ok_or_else(|| ExecError::Missing("the new version's Deployment is not there".into()))
    };
    match action {
        Action::SetReadOnly {
            color: Color::Blue,
            enabled,
        } => {
            let b = blue()?;
            let container = build::app_container(b, plan.spec.app.container.as_deref())?;
            let ro = enabled.then_some(&plan.spec.read_only.env);
            let patch = build::blue_patch(&b.name_any(), &container, ro);
            deployments
                .patch(&b.name_any(), &apply(), &Patch::Apply(patch))
                .await?;
        }
        Action::SetReadOnly {
            color: Color::Green,
            enabled,
        } => {
            let g = green()?.clone();
            let container = build::app_container(&g, plan.spec.app.container.as_deref())?;
            let name = g.name_any();
            let d = build::for_reapply(build::with_env(
                g,
                &container,
                &plan.spec.read_only.env,
                *enabled,
            ));
            deployments.patch(&name, &apply(), &Patch::Apply(d)).await?;
        }
        Action::PinService { color } => {
            let track = build::deployment_for(plan, *color);
            services
                .patch(
                    &plan.spec.app.service,
                    &merge(),
                    &Patch::Merge(build::service_track_patch(&track)),
                )
                .await?;
        }
        Action::CreateBackupJob => {
            apply_tools_secret(&secrets, plan, world).await?;
            create_job(&jobs, build::backup_job(plan)).await?
        }
        Action::CreateCloneJob => {
            apply_tools_secret(&secrets, plan, world).await?;
            create_job(&jobs, build::clone_job(plan)).await?
        }
        Action::ApplyGreen { replicas } => {
            let b = blue()?;
            let container = build::app_container(b, plan.spec.app.container.as_deref())?;
            let uri = world.uri.as_ref().ok_or_else(|| {
                ExecError::Missing("the connection Secret is not readable".into())
            })?;
            let uri_values = uri_env_values(client, &ns, plan, b, &container, uri).await?;
            let selector = world
                .observed
                .service
                .as_ref()
                .map(|s| s.selector.clone())
                .unwrap_or_default();
            let (d, secret) = build::green(&build::GreenInputs {
                plan,
                blue: b,
                container: &container,
                replicas: *replicas,
                uri_values: &uri_values,
                service_selector: &selector,
            })?;
            if let Some(s) = secret {
                secrets
                    .patch(&s.name_any(), &apply(), &Patch::Apply(s))
                    .await?;
            }
            deployments
                .patch(&d.name_any(), &apply(), &Patch::Apply(&d))
                .await?;
            if plan.spec.mode == Mode::Rehearsal
                && let Some(svc) = &world.service
            {
                let preview = build::preview_service(plan, svc, &d.name_any());
                services
                    .patch(&preview.name_any(), &apply(), &Patch::Apply(preview))
                    .await?;
            }
        }
        Action::CreateMigrationJob => {
            let g = green()?;
            let container = build::app_container(g, plan.spec.app.container.as_deref())?;
            let job = build::migration_job(plan, g, &container).ok_or_else(|| {
                ExecError::Missing(
                    "no migration job gate, or no app container on the new version".into(),
                )
            })?;
            if let Some(cred) = plan
                .spec
                .migration
                .job
                .as_ref()
                .and_then(|j| j.credentials_secret.as_ref())
                .filter(|_| build::migration_credentials_clone(plan).is_some())
            {
                let value = secrets
                    .get_opt(&cred.name)
                    .await?
                    .and_then(|s| s.data)
                    .and_then(|d| {
                        d.get(&cred.key)
                            .map(|b| String::from_utf8_lossy(&b.0).trim().to_string())
                    })
                    .ok_or_else(|| {
                        ExecError::Missing(format!(
                            "Secret {:?} key {:?} (migration.job.credentialsSecret) not found",
                            cred.name, cred.key
                        ))
                    })?;
                if let Some(s) = build::migration_env_secret(plan, &value) {
                    secrets
                        .patch(&s.name_any(), &apply(), &Patch::Apply(s))
                        .await?;
                }
            }
            create_job(&jobs, job).await?;
        }
        Action::Scale { color, replicas } => {
            let name = build::deployment_for(plan, *color);
            deployments
                .patch(
                    &name,
                    &merge(),
                    &Patch::Merge(json!({"spec": {"replicas": replicas}})),
                )
                .await?;
        }
        Action::DeleteGreen => {
            let green_name = build::deployment_for(plan, Color::Green);
            ignore_not_found(
                deployments
                    .delete(&green_name, &DeleteParams::background())
                    .await
                    .map(|_| ()),
            )?;
            let preview = names::preview_service(&plan.spec, &plan.name_any());
            ignore_not_found(
                services
                    .delete(&preview, &DeleteParams::background())
                    .await
                    .map(|_| ()),
            )?;
            let env_secret = names::shorten(&format!("{green_name}-env"), names::MAX_K8S_NAME);
            ignore_not_found(
                secrets
                    .delete(&env_secret, &DeleteParams::background())
                    .await
                    .map(|_| ()),
            )?;
        }
        Action::StopJobs => {
            let listed = jobs
                .list(&ListParams::default().labels(&format!("{PLAN_LABEL}={}", plan.name_any())))
                .await?;
            for j in listed {
                let active = j.status.as_ref().and_then(|s| s.active).unwrap_or(0) > 0;
                if active {
                    let dp = DeleteParams {
                        propagation_policy: Some(PropagationPolicy::Background),
                        ..Default::default()
                    };
                    ignore_not_found(jobs.delete(&j.name_any(), &dp).await.map(|_| ()))?;
                }
            }
        }
        Action::ReleaseGreen => {
            // After the switch the new Deployment is the application: deleting the plan must
            // not garbage-collect it, nor the Secret its pods read.
            let release = Patch::Merge(json!({"metadata": {"ownerReferences": null}}));
            let green_name = build::deployment_for(plan, Color::Green);
            deployments.patch(&green_name, &merge(), &release).await?;
            let env_secret = names::shorten(&format!("{green_name}-env"), names::MAX_K8S_NAME);
            ignore_not_found(
                secrets
                    .patch(&env_secret, &merge(), &release)
                    .await
                    .map(|_| ()),
            )?;
        }
        Action::DropDatabases { names } => {
            let uri = world.uri.as_ref().ok_or_else(|| {
                ExecError::Missing("the connection Secret is not readable".into())
            })?;
            let c = mongo_clients.get(uri).await?;
            mongo::drop_databases(&c, uri, names).await?;
        }
        Action::DropCollections { names } => {
            let uri = world.uri.as_ref().ok_or_else(|| {
                ExecError::Missing("the connection Secret is not readable".into())
            })?;
            let c = mongo_clients.get(uri).await?;
            mongo::drop_collections(&c, uri, names).await?;
        }
        Action::DeleteBlue => {
            let b = blue()?;
            // Only the Deployment that was looked at: never one recreated under the same name.
            let dp = DeleteParams {
                preconditions: b.uid().map(|uid| Preconditions {
                    uid: Some(uid),
                    resource_version: None,
                }),
                ..DeleteParams::background()
            };
            ignore_not_found(deployments.delete(&b.name_any(), &dp).await.map(|_| ()))?;
        }
        Action::CreatePruneJob => create_job(&jobs, build::prune_job(plan)).await?,
        Action::StartServerSideCopy => {
            let uri = world.uri.as_ref().ok_or_else(|| {
                ExecError::Missing("the connection Secret is not readable".into())
            })?;
            let c = mongo_clients.get(uri).await?;
            let st = plan.status.clone().unwrap_or_default();
            let pairs = plan
                .spec
                .database
                .databases
                .iter()
                .map(|d| {
                    let clone = st
                        .clone
                        .as_ref()
                        .and_then(|c| c.databases.get(&d.name).cloned())
                        .unwrap_or_else(|| names::clone_database(d, &plan.name_any()));
                    (d.name.clone(), clone)
                })
                .collect();
            copies.start(
                &copy_key(plan),
                c,
                uri.clone(),
                pairs,
                plan.spec.backup.parallelism as usize,
            );
        }
    }
    Ok(())
}

/// The registry key of a plan's server-side copy: a plan recreated under the same name is a
/// different plan.
pub fn copy_key(plan: &UpgradePlan) -> String {
    format!(
        "{}/{}/{}",
        plan.namespace().unwrap_or_default(),
        plan.name_any(),
        plan.uid().unwrap_or_default()
    )
}

/// The connection string for the backup and clone Jobs, as the tools' config file in a
/// plan-owned Secret (never on their command line).
async fn apply_tools_secret(
    secrets: &Api<Secret>,
    plan: &UpgradePlan,
    world: &World,
) -> Result<(), ExecError> {
    let uri = world
        .uri
        .as_ref()
        .ok_or_else(|| ExecError::Missing("the connection Secret is not readable".into()))?;
    let s = build::tools_secret(plan, uri);
    secrets
        .patch(&s.name_any(), &apply(), &Patch::Apply(s))
        .await?;
    Ok(())
}

async fn create_job(jobs: &Api<Job>, job: Job) -> Result<(), kube::Error> {
    match jobs
        .create(
            &PostParams {
                field_manager: Some(MANAGER.into()),
                ..Default::default()
            },
            &job,
        )
        .await
    {
        Ok(_) => Ok(()),
        // Created by an earlier attempt whose status write did not land: the Job is the record.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

fn ignore_not_found(r: Result<(), kube::Error>) -> Result<(), kube::Error> {
    match r {
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        other => other,
    }
}
