//! Kubernetes writes. Every one is idempotent: a server-side apply under cutover's field
//! manager, a create that accepts "already exists" (of its own object), a delete that accepts
//! "not found", or a merge patch of named keys (the old version's read-only variable and track label).
//!
//! Own before you destroy: an object the plan creates is written, patched or deleted only when
//! it carries the plan's mark (`observe::mark`: an owner reference to the plan's uid, or the
//! uid the hand-over left). One that exists under the name and does not is refused
//! (`ExecError::NotOwned`), never forced over. A write to an object that was read carries its
//! uid (a delete as `preconditions.uid`, a patch as `metadata.uid`), so the API server refuses
//! it when the object was deleted and re-created by someone else in between.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::api::{
    DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions, PropagationPolicy,
};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;

use crate::crd::{Color, Mode, UpgradePlan};
use crate::plan::names::PLAN_LABEL;
use crate::plan::{ObjectKind, Targets};
use crate::uri::Uri;

use super::build;
use super::error::ExecError;
use super::observe::{self, RELEASED_BY, World};

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

    /// The object carries this plan's mark (see `observe::mark`).
    fn ours(&self, obj: &impl Resource) -> bool {
        observe::mark(
            obj.meta(),
            &self.plan.name_any(),
            self.plan.uid().as_deref().unwrap_or(""),
        )
        .is_ours()
    }

    /// Server-side applies an object the plan creates, only onto its own: one that exists
    /// under the name without the plan's mark is refused; the plan's own is applied with its
    /// uid (refused if it was deleted and re-created in between); an absent one is created by
    /// an apply without force, which fails rather than take over the fields of an object
    /// someone else created in the meantime.
    async fn apply_owned<K>(&self, api: &Api<K>, kind: ObjectKind, mut obj: K) -> Result
    where
        K: Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let name = obj.name_any();
        let params = match api.get_opt(&name).await? {
            None => PatchParams::apply(MANAGER),
            Some(existing) if self.ours(&existing) => {
                obj.meta_mut().uid = existing.uid();
                apply()
            }
            Some(_) => return Err(ExecError::NotOwned { kind, name }),
        };
        api.patch(&name, &params, &Patch::Apply(&obj)).await?;
        Ok(())
    }

    /// Deletes an object the plan created, when it is there and its own (by its uid).
    async fn delete_owned<K>(&self, api: &Api<K>, kind: ObjectKind, name: &str) -> Result
    where
        K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let Some(obj) = api.get_opt(name).await? else {
            return Ok(());
        };
        if !self.ours(&obj) {
            return Err(ExecError::NotOwned {
                kind,
                name: name.to_string(),
            });
        }
        ignore_not_found(api.delete(name, &with_uid(obj.uid())).await.map(|_| ()))?;
        Ok(())
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
                // The Deployment that was looked at, not one re-created under its name.
                let mut patch = patch;
                patch["metadata"] = json!({"uid": b.uid()});
                self.deployments
                    .patch(&b.name_any(), &merge(), &Patch::Strategic(patch))
                    .await?;
            }
            Color::Green => {
                let g = self.green()?.clone();
                let container = self.container(&g)?;
                let name = g.name_any();
                let uid = g.uid();
                let mut d = build::for_reapply(build::with_env(
                    g,
                    &container,
                    &self.plan.spec.read_only.env,
                    enabled,
                ));
                // `green` is the plan's own (observe leaves a foreign one out); the uid makes
                // the apply fail on one re-created under its name since.
                d.metadata.uid = uid;
                self.deployments
                    .patch(&name, &apply(), &Patch::Apply(d))
                    .await?;
            }
        }
        Ok(())
    }

    pub async fn pin_service(&self, color: Color) -> Result {
        let track = self.targets.deployment(color);
        let mut patch = build::service_track_patch(track);
        if let Some(uid) = self.world.service.as_ref().and_then(|s| s.uid()) {
            patch["metadata"]["uid"] = json!(uid);
        }
        self.services
            .patch(&self.targets.service, &merge(), &Patch::Merge(patch))
            .await?;
        Ok(())
    }

    /// The connection string for the backup and clone Jobs, as the tools' config file in a
    /// plan-owned Secret (never on their command line).
    pub async fn apply_tools_secret(&self, uri: &Uri) -> Result {
        let s = build::tools_secret(self.plan, self.targets, uri);
        self.apply_owned(&self.secrets, ObjectKind::Secret, s).await
    }

    pub async fn create_job(&self, job: Job) -> Result {
        let name = job.name_any();
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
            // Created by an earlier attempt whose status write did not land (the Job is the
            // record), or by someone else: never taken for the plan's own.
            Err(kube::Error::Api(s)) if s.code == 409 => match self.jobs.get_opt(&name).await? {
                Some(j) if !self.ours(&j) => Err(ExecError::NotOwned {
                    kind: ObjectKind::Job,
                    name,
                }),
                // Deleted since: the next reconcile creates it.
                _ => Ok(()),
            },
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
            self.apply_owned(&self.secrets, ObjectKind::Secret, s)
                .await?;
        }
        self.apply_owned(&self.deployments, ObjectKind::Deployment, d)
            .await?;
        if plan.spec.mode == Mode::Rehearsal
            && let Some(svc) = &self.world.service
        {
            let preview = build::preview_service(plan, self.targets, svc);
            self.apply_owned(&self.services, ObjectKind::Service, preview)
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
                self.apply_owned(&self.secrets, ObjectKind::Secret, s)
                    .await?;
            }
        }
        self.create_job(job).await
    }

    /// Scales the Deployment that was looked at (the new version only as the plan's own).
    pub async fn scale(&self, color: Color, replicas: i32) -> Result {
        let d = match color {
            Color::Blue => self.blue()?,
            Color::Green => self.green()?,
        };
        self.deployments
            .patch(
                &d.name_any(),
                &merge(),
                &Patch::Merge(json!({
                    "metadata": {"uid": d.uid()},
                    "spec": {"replicas": replicas},
                })),
            )
            .await?;
        Ok(())
    }

    /// Deletes the new version's Deployment, preview Service and Secret, each only as the
    /// plan's own; a foreign one under those names is left alone (and reported as refused once
    /// the others are gone).
    pub async fn delete_green(&self) -> Result {
        let t = self.targets;
        let results = [
            self.delete_owned(&self.deployments, ObjectKind::Deployment, &t.green)
                .await,
            self.delete_owned(&self.services, ObjectKind::Service, &t.preview_service)
                .await,
            self.delete_owned(&self.secrets, ObjectKind::Secret, &t.green_env_secret)
                .await,
        ];
        results.into_iter().collect()
    }

    pub async fn stop_jobs(&self) -> Result {
        let listed = self
            .jobs
            .list(&ListParams::default().labels(&format!("{PLAN_LABEL}={}", self.targets.plan)))
            .await?;
        for j in listed {
            let active = j.status.as_ref().and_then(|s| s.active).unwrap_or(0) > 0;
            // The label is no proof: a Job someone else labelled is not stopped.
            if active && self.ours(&j) {
                ignore_not_found(
                    self.jobs
                        .delete(&j.name_any(), &with_uid(j.uid()))
                        .await
                        .map(|_| ()),
                )?;
            }
        }
        Ok(())
    }

    /// After the switch the new Deployment is the application: deleting the plan must not
    /// garbage-collect it, nor the Secret its pods read. The owner reference gives way to the
    /// plan's uid in an annotation, so the plan still knows them for its own (a rollback
    /// after success scales the new version down).
    pub async fn release_green(&self) -> Result {
        let plan_uid = self.plan.uid().unwrap_or_default();
        let release = |uid: Option<String>| {
            Patch::Merge(json!({"metadata": {
                "uid": uid,
                "ownerReferences": null,
                "annotations": {RELEASED_BY: plan_uid},
            }}))
        };
        let g = self.green()?;
        self.deployments
            .patch(&g.name_any(), &merge(), &release(g.uid()))
            .await?;
        match self.secrets.get_opt(&self.targets.green_env_secret).await? {
            None => {}
            Some(s) if self.ours(&s) => {
                ignore_not_found(
                    self.secrets
                        .patch(&s.name_any(), &merge(), &release(s.uid()))
                        .await
                        .map(|_| ()),
                )?;
            }
            Some(s) => {
                return Err(ExecError::NotOwned {
                    kind: ObjectKind::Secret,
                    name: s.name_any(),
                });
            }
        }
        Ok(())
    }

    pub async fn delete_blue(&self) -> Result {
        let b = self.blue()?;
        // Only the Deployment that was looked at: never one recreated under the same name.
        ignore_not_found(
            self.deployments
                .delete(&b.name_any(), &with_uid(b.uid()))
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

/// A background delete of exactly the object with this uid (the API server refuses it, 409,
/// when the name now belongs to another object).
fn with_uid(uid: Option<String>) -> DeleteParams {
    DeleteParams {
        preconditions: uid.map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        propagation_policy: Some(PropagationPolicy::Background),
        ..Default::default()
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
