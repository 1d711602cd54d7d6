//! The new version's Deployment: the old pod template with the target image, its database
//! variables rewired to the clones, read-only on; and the Secret for connection strings that
//! were held in Secrets.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{EnvVar, PodSpec, PodTemplateSpec, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::{Resource, ResourceExt};

use super::{BuildError, owned_secret, plain, secret_env};
use crate::crd::{Mode, UpgradePlan};
use crate::plan::Targets;
use crate::plan::names::{
    BASE_DATABASES_ANNOTATION, BASE_DEPLOYMENT_ANNOTATION, PLAN_LABEL, ROLE_LABEL, TRACK_LABEL,
};
use crate::uri;

/// Argo CD's default label for label-based resource tracking (`application.instanceLabelKey`).
pub const GITOPS_TRACKING_LABEL: &str = "app.kubernetes.io/instance";

/// What the executor read that the new version's Deployment is built from.
pub struct GreenInputs<'a> {
    pub plan: &'a UpgradePlan,
    pub targets: &'a Targets,
    pub blue: &'a Deployment,
    pub container: &'a str,
    pub replicas: i32,
    /// Current values of the `uriEnv` variables (resolved from Secrets when needed); every
    /// one is the app's own connection string (Pending refuses a plan where one is not).
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
    let name = inputs.targets.green.clone();
    let env_secret_name = inputs.targets.green_env_secret.clone();
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
    let secret_data;
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
        secret_data = rewire_env(c.env.get_or_insert_with(Vec::new), inputs, &env_secret_name);
    }

    let owner = plan.controller_owner_ref(&()).expect("plan has a uid");
    let mut meta_labels = inputs.blue.labels().clone();
    // Argo CD's label tracking would count a copied instance label as "this Application's
    // object, not in Git": once handed over (no owner reference), prune would delete the
    // running new version before Git declares it. The Git change (`git-patch`) brings the
    // label back under the GitOps tool's own apply; the pods keep it (Services select them).
    meta_labels.remove(GITOPS_TRACKING_LABEL);
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
            annotations: Some(BTreeMap::from([
                ("cutover.dev/source".to_string(), inputs.blue.name_any()),
                (
                    BASE_DEPLOYMENT_ANNOTATION.to_string(),
                    inputs.targets.base_deployment.clone(),
                ),
                (
                    BASE_DATABASES_ANNOTATION.to_string(),
                    serde_json::to_string(&inputs.targets.base_databases)
                        .expect("a map of strings serializes"),
                ),
            ])),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
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
    let secret = (!secret_data.is_empty())
        .then(|| owned_secret(plan, env_secret_name, "green-env", secret_data));
    Ok((deployment, secret))
}

/// Points the app container's database variables at the clones: plain names are set, a
/// connection string visible in the Deployment is rewritten in place, one held in a Secret is
/// rewritten into the returned data (for `env_secret`) and referenced from there. Then the
/// target's variables and read-only on.
fn rewire_env(
    env: &mut Vec<EnvVar>,
    inputs: &GreenInputs,
    env_secret: &str,
) -> BTreeMap<String, String> {
    let spec = &inputs.plan.spec;
    let mut secret_data = BTreeMap::new();
    let set = |env: &mut Vec<EnvVar>, var: EnvVar| {
        env.retain(|e| e.name != var.name);
        env.push(var);
    };
    for db in &spec.database.databases {
        let clone = inputs
            .targets
            .clone_of(&db.name)
            .expect("the targets name a clone for every database of the spec");
        for var in &db.env {
            set(env, plain(var, clone));
        }
        for var in &db.uri_env {
            let current_plain = env
                .iter()
                .find(|e| &e.name == var && e.value_from.is_none())
                .and_then(|e| e.value.clone());
            match current_plain {
                // A plain value is already visible in the Deployment; rewrite it in place.
                Some(v) => set(env, plain(var, uri::with_database(&v, clone))),
                None => {
                    let source = inputs.uri_values.get(var).cloned().unwrap_or_default();
                    secret_data.insert(var.clone(), uri::with_database(&source, clone));
                    set(env, secret_env(var, env_secret, var));
                }
            }
        }
    }
    for e in &spec.target.env {
        set(env, plain(&e.name, &e.value));
    }
    let ro = &spec.read_only.env;
    set(env, plain(&ro.name, &ro.value));
    secret_data
}
