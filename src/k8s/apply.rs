//! Kubernetes writes. Every one is idempotent: a server-side apply with force under cutover's
//! field manager on the objects cutover creates, a create that accepts "already exists", a
//! delete that accepts "not found", or a merge patch of named keys on objects it does not own.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::api::{
    DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions, PropagationPolicy,
};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::crd::{Color, Mode, UpgradePlan};
use crate::plan::Targets;
use crate::plan::names::PLAN_LABEL;
use crate::uri::Uri;

use super::build;
use super::error::ExecError;
use super::observe::World;

/// The single field manager of everything cutover writes.
pub const MANAGER: &str = "cutover";

type Result<T = ()> = std::result::Result<T, ExecError>;

fn apply() -> PatchParams {
    PatchParams::apply(MANAGER).force()
}

fn merge() -> PatchParams {
    PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    }
}

/// The writes of one plan, in its namespace, on the world as observed in this reconcile.
pub struct Writer<'a> {
    client: &'a Client,
    plan: &'a UpgradePlan,
    targets: &'a Targets,
    world: &'a World,
    ns: String,
    deployments: Api<Deployment>,
    jobs: Api<Job>,
    services: Api<Service>,
    secrets: Api<Secret>,
}

impl<'a> Writer<'a> {
    pub fn new(
        client: &'a Client,
        plan: &'a UpgradePlan,
        targets: &'a Targets,
        world: &'a World,
    ) -> Self {
        let ns = plan.namespace().unwrap_or_default();
        Writer {
            deployments: Api::namespaced(client.clone(), &ns),
            jobs: Api::namespaced(client.clone(), &ns),
            services: Api::namespaced(client.clone(), &ns),
            secrets: Api::namespaced(client.clone(), &ns),
            client,
            plan,
            targets,
            world,
            ns,
        }
    }

    fn blue(&self) -> Result<&'a Deployment> {
        self.world
            .blue
            .as_ref()
            .ok_or_else(|| ExecError::BlueMissing(self.targets.blue.clone()))
    }

    fn green(&self) -> Result<&'a Deployment> {
        self.world.green.as_ref().ok_or(ExecError::GreenMissing)
    }

    fn container(&self, d: &Deployment) -> Result<String> {
        Ok(build::app_container(
            d,
            self.plan.spec.app.container.as_deref(),
        )?)
    }

    pub async fn set_read_only(&self, color: Color, enabled: bool) -> Result {
        match color {
            Color::Blue => {
                let b = self.blue()?;
                let container = self.container(b)?;
                let patch = build::blue_read_only_patch(
                    &b.name_any(),
                    &container,
                    &self.plan.spec.read_only.env,
                    enabled,
                );
                self.deployments
                    .patch(&b.name_any(), &merge(), &Patch::Strategic(patch))
                    .await?;
            }
            Color::Green => {
                let g = self.green()?.clone();
                let container = self.container(&g)?;
                let name = g.name_any();
                let d = build::for_reapply(build::with_env(
                    g,
                    &container,
                    &self.plan.spec.read_only.env,
                    enabled,
                ));
                self.deployments
                    .patch(&name, &apply(), &Patch::Apply(d))
                    .await?;
            }
        }
        Ok(())
    }

    pub async fn pin_service(&self, color: Color) -> Result {
        let track = self.targets.deployment(color);
        self.services
            .patch(
                &self.targets.service,
                &merge(),
                &Patch::Merge(build::service_track_patch(track)),
            )
            .await?;
        Ok(())
    }

    /// The connection string for the backup and clone Jobs, as the tools' config file in a
    /// plan-owned Secret (never on their command line).
    pub async fn apply_tools_secret(&self, uri: &Uri) -> Result {
        let s = build::tools_secret(self.plan, self.targets, uri);
        self.secrets
            .patch(&s.name_any(), &apply(), &Patch::Apply(s))
            .await?;
        Ok(())
    }

    pub async fn create_job(&self, job: Job) -> Result {
        match self
            .jobs
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
            Err(e) => Err(e.into()),
        }
    }

    pub async fn apply_green(&self, replicas: i32) -> Result {
        let plan = self.plan;
        let b = self.blue()?;
        let container = self.container(b)?;
        let uri_values = self.uri_env_values(b, &container).await?;
        let selector = self
            .world
            .observed
            .service
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        let (d, secret) = build::green(&build::GreenInputs {
            plan,
            targets: self.targets,
            blue: b,
            container: &container,
            replicas,
            uri_values: &uri_values,
            service_selector: &selector,
        })?;
        if let Some(s) = secret {
            self.secrets
                .patch(&s.name_any(), &apply(), &Patch::Apply(s))
                .await?;
        }
        self.deployments
            .patch(&d.name_any(), &apply(), &Patch::Apply(&d))
            .await?;
        if plan.spec.mode == Mode::Rehearsal
            && let Some(svc) = &self.world.service
        {
            let preview = build::preview_service(plan, self.targets, svc);
            self.services
                .patch(&preview.name_any(), &apply(), &Patch::Apply(preview))
                .await?;
        }
        Ok(())
    }

    pub async fn create_migration_job(&self) -> Result {
        let plan = self.plan;
        let g = self.green()?;
        let container = self.container(g)?;
        let job = build::migration_job(plan, self.targets, g, &container)
            .ok_or(ExecError::NoMigrationJob)?;
        if let Some(cred) = plan
            .spec
            .migration
            .job
            .as_ref()
            .and_then(|j| j.credentials_secret.as_ref())
            .filter(|_| build::migration_credentials_clone(plan, self.targets).is_some())
        {
            let value = self
                .secrets
                .get_opt(&cred.name)
                .await?
                .and_then(|s| s.data)
                .and_then(|d| {
                    d.get(&cred.key)
                        .map(|b| String::from_utf8_lossy(&b.0).trim().to_string())
                })
                .ok_or_else(|| ExecError::MigrationCredentialsMissing {
                    name: cred.name.clone(),
                    key: cred.key.clone(),
                })?;
            if let Some(s) = build::migration_env_secret(plan, self.targets, &value) {
                self.secrets
                    .patch(&s.name_any(), &apply(), &Patch::Apply(s))
                    .await?;
            }
        }
        self.create_job(job).await
    }

    pub async fn scale(&self, color: Color, replicas: i32) -> Result {
        self.deployments
            .patch(
                self.targets.deployment(color),
                &merge(),
                &Patch::Merge(json!({"spec": {"replicas": replicas}})),
            )
            .await?;
        Ok(())
    }

    pub async fn delete_green(&self) -> Result {
        let t = self.targets;
        let dp = DeleteParams::background();
        ignore_not_found(self.deployments.delete(&t.green, &dp).await.map(|_| ()))?;
        ignore_not_found(
            self.services
                .delete(&t.preview_service, &dp)
                .await
                .map(|_| ()),
        )?;
        ignore_not_found(
            self.secrets
                .delete(&t.green_env_secret, &dp)
                .await
                .map(|_| ()),
        )?;
        Ok(())
    }

    pub async fn stop_jobs(&self) -> Result {
        let listed = self
            .jobs
            .list(&ListParams::default().labels(&format!("{PLAN_LABEL}={}", self.targets.plan)))
            .await?;
        for j in listed {
            let active = j.status.as_ref().and_then(|s| s.active).unwrap_or(0) > 0;
            if active {
                let dp = DeleteParams {
                    propagation_policy: Some(PropagationPolicy::Background),
                    ..Default::default()
                };
                ignore_not_found(self.jobs.delete(&j.name_any(), &dp).await.map(|_| ()))?;
            }
        }
        Ok(())
    }

    /// After the switch the new Deployment is the application: deleting the plan must not
    /// garbage-collect it, nor the Secret its pods read.
    pub async fn release_green(&self) -> Result {
        let release = Patch::Merge(json!({"metadata": {"ownerReferences": null}}));
        self.deployments
            .patch(&self.targets.green, &merge(), &release)
            .await?;
        ignore_not_found(
            self.secrets
                .patch(&self.targets.green_env_secret, &merge(), &release)
                .await
                .map(|_| ()),
        )?;
        Ok(())
    }

    pub async fn delete_blue(&self) -> Result {
        let b = self.blue()?;
        // Only the Deployment that was looked at: never one recreated under the same name.
        let dp = DeleteParams {
            preconditions: b.uid().map(|uid| Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..DeleteParams::background()
        };
        ignore_not_found(
            self.deployments
                .delete(&b.name_any(), &dp)
                .await
                .map(|_| ()),
        )?;
        Ok(())
    }

    /// Current values of the `uriEnv` variables of the old version's app container, resolved
    /// from Secrets and ConfigMaps. One that is not set, cannot be read or is not a MongoDB
    /// connection string is an error (Pending refuses such a plan; this guards a race): the
    /// operator's own connection string is never handed to the app in its place.
    async fn uri_env_values(
        &self,
        blue: &Deployment,
        container: &str,
    ) -> Result<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        let env = blue
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|p| p.containers.iter().find(|c| c.name == container))
            .and_then(|c| c.env.clone())
            .unwrap_or_default();
        for db in &self.plan.spec.database.databases {
            for var in &db.uri_env {
                let e = env.iter().find(|e| &e.name == var);
                let value = match e.and_then(|e| e.value_from.as_ref()) {
                    Some(from) => {
                        if let Some(s) = &from.secret_key_ref {
                            self.secrets
                                .get_opt(&s.name)
                                .await?
                                .and_then(|sec| sec.data)
                                .and_then(|d| {
                                    d.get(&s.key)
                                        .map(|b| String::from_utf8_lossy(&b.0).to_string())
                                })
                        } else if let Some(c) = &from.config_map_key_ref {
                            Api::<ConfigMap>::namespaced(self.client.clone(), &self.ns)
                                .get_opt(&c.name)
                                .await?
                                .and_then(|cm| cm.data)
                                .and_then(|d| d.get(&c.key).cloned())
                        } else {
                            None
                        }
                    }
                    None => e.and_then(|e| e.value.clone()),
                };
                let value = value
                    .filter(|v| {
                        let v = v.trim();
                        v.starts_with("mongodb://") || v.starts_with("mongodb+srv://")
                    })
                    .ok_or_else(|| ExecError::UriEnvUnresolvable { var: var.clone() })?;
                out.insert(var.clone(), value);
            }
        }
        Ok(out)
    }
}

fn ignore_not_found(
    r: std::result::Result<(), kube::Error>,
) -> std::result::Result<(), kube::Error> {
    match r {
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        other => other,
    }
}
