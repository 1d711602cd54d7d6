//! Kubernetes objects reduced to the facts `decide` needs. Pure: the observer fetches, these
//! map.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Container, EnvVarSource, Pod, Secret, Service};
use kube::ResourceExt;

use crate::crd::{Mode, Phase, Prediction, Timestamp, UpgradePlan};
use crate::plan::names::TRACK_LABEL;
use crate::plan::{
    DeploymentView, EnvFact, EnvValue, JobState, JobView, PlanMeta, SecretView, ServiceSelector,
    ServiceView, WorkloadView, Workloads,
};
use crate::uri::{self, Uri};

use super::build;

pub fn plan_meta(plan: &UpgradePlan) -> PlanMeta {
    PlanMeta {
        name: plan.name_any(),
        namespace: plan.namespace().unwrap_or_default(),
        uid: plan.uid().unwrap_or_default(),
        generation: plan.metadata.generation,
        deleting: plan.metadata.deletion_timestamp.is_some(),
        ignored_changes: Vec::new(),
        failing: None,
        deleted_at: plan
            .metadata
            .deletion_timestamp
            .as_ref()
            .map(|t| Timestamp(t.0)),
    }
}

/// The base names a previous plan annotated on a Deployment it created. An annotation that
/// does not parse is ignored: names then derive from the Deployment's own, as for any app.
fn base_names(d: &Deployment) -> Option<crate::crd::BaseNames> {
    let a = d.metadata.annotations.as_ref()?;
    let deployment = a
        .get(crate::plan::names::BASE_DEPLOYMENT_ANNOTATION)?
        .clone();
    let databases = a
        .get(crate::plan::names::BASE_DATABASES_ANNOTATION)
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or_default();
    Some(crate::crd::BaseNames {
        deployment,
        databases,
    })
}

pub fn deployment_view(d: &Deployment, plan: &UpgradePlan, plan_uid: &str) -> DeploymentView {
    let name = d.name_any();
    let spec = d.spec.clone().unwrap_or_default();
    let status = d.status.clone().unwrap_or_default();
    let container =
        build::app_container(d, plan.spec.app.container.as_deref()).map_err(|e| e.to_string());
    let pod_spec = spec.template.spec.clone().unwrap_or_default();
    let app = container
        .as_ref()
        .ok()
        .and_then(|c| pod_spec.containers.iter().find(|x| &x.name == c));
    let ro = &plan.spec.read_only.env;
    let read_only_env = app.is_some_and(|c| {
        c.env
            .iter()
            .flatten()
            .any(|e| e.name == ro.name && e.value.as_deref().unwrap_or("") == ro.value)
    });
    let pod_labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    DeploymentView {
        name: name.clone(),
        uid: d.metadata.uid.clone(),
        base_names: base_names(d),
        replicas: spec.replicas.unwrap_or(1),
        generation: d.metadata.generation.unwrap_or(0),
        observed_generation: status.observed_generation.unwrap_or(0),
        current_replicas: status.replicas.unwrap_or(0),
        updated_replicas: status.updated_replicas.unwrap_or(0),
        ready_replicas: status.ready_replicas.unwrap_or(0),
        container,
        read_only_env,
        tracked: pod_labels.get(TRACK_LABEL) == Some(&name),
        image: app.and_then(|c| c.image.clone()).unwrap_or_default(),
        pod_labels,
        running_pods: status.ready_replicas.unwrap_or(0),
        restarts: 0,
        owned_by_plan: d.owner_references().iter().any(|o| o.uid == plan_uid),
        env: app
            .map(|c| env_facts(c, &plan_sources(plan)))
            .unwrap_or_default(),
    }
}

/// The plan's source database names, as the environment guard compares values with them.
pub fn plan_sources(plan: &UpgradePlan) -> Vec<String> {
    plan.spec
        .database
        .databases
        .iter()
        .map(|d| d.name.clone())
        .collect()
}

/// The container's `env`, without values: literals are judged here, `valueFrom` references
/// are left `NotRead` for the observer to resolve (`envFrom` is added by it too).
pub fn env_facts(c: &Container, sources: &[String]) -> Vec<EnvFact> {
    c.env
        .iter()
        .flatten()
        .map(|e| {
            let (held_in, value) = match &e.value_from {
                None => (None, value_fact(e.value.as_deref().unwrap_or(""), sources)),
                Some(from) => match env_ref(from) {
                    Some(r) => (Some(r.describe()), EnvValue::NotRead),
                    None => (None, EnvValue::Field),
                },
            };
            EnvFact {
                name: e.name.clone(),
                held_in,
                value,
            }
        })
        .collect()
}

/// What a value names, without keeping it: whether it is a connection string and which
/// source database it names (the value itself, or a connection string's path).
pub fn value_fact(value: &str, sources: &[String]) -> EnvValue {
    let value = value.trim();
    let is_uri = value.starts_with("mongodb://") || value.starts_with("mongodb+srv://");
    let named = if is_uri {
        uri::database(value)
    } else {
        Some(value)
    };
    EnvValue::Resolved {
        uri: is_uri,
        source: named
            .and_then(|n| sources.iter().find(|s| s.as_str() == n))
            .cloned(),
    }
}

/// A `valueFrom` that points at a Secret or ConfigMap key.
pub struct EnvRef {
    pub secret: bool,
    pub name: String,
    pub key: String,
}

impl EnvRef {
    pub fn describe(&self) -> String {
        format!(
            "{} {:?} key {:?}",
            if self.secret { "Secret" } else { "ConfigMap" },
            self.name,
            self.key
        )
    }
}

pub fn env_ref(from: &EnvVarSource) -> Option<EnvRef> {
    if let Some(s) = &from.secret_key_ref {
        Some(EnvRef {
            secret: true,
            name: s.name.clone(),
            key: s.key.clone(),
        })
    } else {
        from.config_map_key_ref.as_ref().map(|c| EnvRef {
            secret: false,
            name: c.name.clone(),
            key: c.key.clone(),
        })
    }
}

/// The string values of a Secret's or ConfigMap's keys (Secret bytes read as UTF-8).
pub fn secret_strings(s: &Secret) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = s
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).to_string()))
        .collect();
    for (k, v) in s.string_data.iter().flatten() {
        out.insert(k.clone(), v.clone());
    }
    out
}

pub fn service_view(s: &Service) -> ServiceView {
    ServiceView {
        selector: s
            .spec
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default(),
    }
}

/// The connection Secret without its value, and the connection string when it is one.
pub fn secret_view(secret: Option<&Secret>, key: &str) -> (SecretView, Option<Uri>) {
    let Some(secret) = secret else {
        return (SecretView::Missing, None);
    };
    let mut keys: Vec<String> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, _)| k.clone())
        .collect();
    keys.extend(secret.string_data.iter().flatten().map(|(k, _)| k.clone()));
    keys.sort();
    keys.dedup();
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).trim().to_string());
    let Some(value) = value else {
        return (SecretView::KeyMissing { keys }, None);
    };
    match Uri::parse(value) {
        Ok(uri) => (SecretView::Present, Some(uri)),
        Err(why) => (
            SecretView::Invalid {
                why: why.to_string(),
            },
            None,
        ),
    }
}

pub fn job_state(job: &Job) -> JobState {
    let status = job.status.clone().unwrap_or_default();
    let conds = status.conditions.unwrap_or_default();
    let has = |t: &str| conds.iter().any(|c| c.type_ == t && c.status == "True");
    if has("Complete")
        || status.succeeded.unwrap_or(0) > 0 && status.active.unwrap_or(0) == 0 && !has("Failed")
    {
        JobState::Succeeded
    } else if has("Failed") {
        JobState::Failed
    } else {
        JobState::Active
    }
}

/// A finished Job with the message its pods left: the pod's termination message carries the
/// Job's result (backup size and checksum) or the tail of its log on failure. Scrubbed of
/// credentials (the `known` secret values among them) before it can reach status or events.
pub fn job_view(job: &Job, state: JobState, pods: &[Pod], known: &[String]) -> JobView {
    let mut message = String::new();
    for p in pods {
        for cs in p
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .into_iter()
            .flatten()
        {
            if let Some(m) = cs
                .state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .and_then(|t| t.message.as_ref())
            {
                message = m.clone();
            }
        }
    }
    if message.is_empty() && state == JobState::Failed {
        message = job
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Failed"))
            .and_then(|c| c.message.clone())
            .unwrap_or_default();
    }
    JobView {
        name: job.name_any(),
        state,
        message: crate::scrub::scrub(&message, known),
        disruption: None,
    }
}

/// Who selects whom, and which literal environment values each Deployment carries.
pub fn workloads(services: Vec<Service>, deployments: Vec<Deployment>) -> Workloads {
    let services = services
        .into_iter()
        .map(|s| ServiceSelector {
            name: s.name_any(),
            selector: s.spec.and_then(|s| s.selector).unwrap_or_default(),
        })
        .collect();
    let deployments = deployments
        .into_iter()
        .map(|d| {
            let template = d
                .spec
                .as_ref()
                .map(|s| s.template.clone())
                .unwrap_or_default();
            let pod_labels = template.metadata.and_then(|m| m.labels).unwrap_or_default();
            let env = template
                .spec
                .map(|p| p.containers)
                .unwrap_or_default()
                .into_iter()
                .flat_map(|c| c.env.unwrap_or_default())
                .filter_map(|e| e.value.map(|v| (e.name, v)))
                .collect();
            WorkloadView {
                name: d.name_any(),
                pod_labels,
                env,
            }
        })
        .collect();
    Workloads {
        services,
        deployments,
    }
}

/// Pods whose app container runs right now.
pub fn running(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
        })
}

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

pub fn restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |cs| cs.iter().map(|c| c.restart_count).sum())
}

/// The ready pods with an address, by name: what an HTTP probe asks.
pub fn probe_targets(pods: &[Pod]) -> Vec<(String, IpAddr)> {
    pods.iter()
        .filter(|p| ready(p))
        .filter_map(|p| {
            let ip = p.status.as_ref()?.pod_ip.as_ref()?.parse().ok()?;
            Some((p.name_any(), ip))
        })
        .collect()
}

/// The source databases a plan names.
fn database_names(plan: &UpgradePlan) -> impl Iterator<Item = &str> {
    plan.spec.database.databases.iter().map(|d| d.name.as_str())
}

/// Other active plans (being deleted or rolling back included) that target the same
/// Deployment or any of the same databases, as the watch cache shows them: an early, friendly
/// refusal. The claim registry on the MongoDB server decides (see `plan::claims`). Between two
/// new plans, the older one goes first.
pub fn conflicts(plan: &UpgradePlan, others: &[Arc<UpgradePlan>]) -> Vec<String> {
    let ns = plan.namespace();
    let mine: BTreeSet<&str> = database_names(plan).collect();
    let key = |p: &UpgradePlan| {
        (
            p.metadata.creation_timestamp.clone().map(|t| t.0),
            p.name_any(),
        )
    };
    let mut out = Vec::new();
    for o in others {
        // A plan being deleted still counts: it may be rolling back, and lifts read-only on
        // the Deployment when done.
        if o.namespace() != ns || o.name_any() == plan.name_any() {
            continue;
        }
        let phase = o.status.as_ref().map(|s| s.phase).unwrap_or_default();
        if phase.is_terminal() || (phase == Phase::Pending && key(o) > key(plan)) {
            continue;
        }
        if o.spec.app.deployment == plan.spec.app.deployment {
            out.push(format!(
                "UpgradePlan {} is already upgrading Deployment {:?} (phase {phase}); wait for it to finish or delete it",
                o.name_any(),
                plan.spec.app.deployment
            ));
            continue;
        }
        let shared: Vec<&str> = database_names(o).filter(|d| mine.contains(d)).collect();
        if !shared.is_empty() {
            out.push(format!(
                "UpgradePlan {} is already working on database(s) {} (phase {phase}); wait for it to finish or delete it",
                o.name_any(),
                shared.join(", ")
            ));
        }
    }
    out
}

/// The latest finished rehearsal of the same Deployment in the same namespace.
pub fn latest_rehearsal(plan: &UpgradePlan, others: &[Arc<UpgradePlan>]) -> Option<Prediction> {
    others
        .iter()
        .filter(|o| {
            o.namespace() == plan.namespace()
                && o.spec.mode == Mode::Rehearsal
                && o.spec.app.deployment == plan.spec.app.deployment
        })
        .filter_map(|o| o.status.as_ref())
        .filter(|s| s.phase == Phase::Rehearsed)
        .filter_map(|s| s.prediction.clone())
        .max_by_key(|p| p.at)
}

#[cfg(test)]
mod env_tests {
    use super::*;

    fn sources() -> Vec<String> {
        vec!["Squidex".into(), "SquidexContent".into()]
    }

    #[test]
    fn a_value_is_reduced_to_the_source_it_names() {
        let rows = [
            ("Squidex", false, Some("Squidex")),
            (" SquidexContent ", false, Some("SquidexContent")),
            ("Squidex-up7", false, None),
            (
                "mongodb://u:pw@db:27017/Squidex?authSource=admin",
                true,
                Some("Squidex"),
            ),
            (
                "mongodb+srv://cluster.example/SquidexContent",
                true,
                Some("SquidexContent"),
            ),
            ("mongodb://db:27017/?authSource=Squidex", true, None),
            ("mongodb://db:27017", true, None),
            ("mongodb://db/Other", true, None),
        ];
        for (value, uri, source) in rows {
            assert_eq!(
                value_fact(value, &sources()),
                EnvValue::Resolved {
                    uri,
                    source: source.map(str::to_string)
                },
                "{value}"
            );
        }
    }

    #[test]
    fn references_are_left_for_the_observer_and_values_are_never_kept() {
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "app",
            "env": [
                {"name": "DB", "value": "Squidex"},
                {"name": "URI", "valueFrom": {"secretKeyRef": {"name": "app", "key": "uri"}}},
                {"name": "CFG", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "db"}}},
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "PASSWORD", "value": "hunter2"}
            ]
        }))
        .unwrap();
        let facts = env_facts(&c, &sources());
        let names: Vec<&str> = facts.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["DB", "URI", "CFG", "POD", "PASSWORD"]);
        assert_eq!(facts[0].source(), Some("Squidex"));
        assert_eq!(facts[1].value, EnvValue::NotRead);
        assert_eq!(facts[1].describe(), "URI (Secret \"app\" key \"uri\")");
        assert_eq!(
            facts[2].held_in.as_deref(),
            Some("ConfigMap \"cfg\" key \"db\"")
        );
        assert_eq!(facts[3].value, EnvValue::Field);
        assert!(!format!("{facts:?}").contains("hunter2"));
    }
}

#[cfg(test)]
mod conflict_tests {
    use super::*;
    use crate::crd::UpgradePlanStatus;
    use crate::fixtures::SquidexPlan;

    fn plan(name: &str, phase: Phase) -> UpgradePlan {
        let mut p = SquidexPlan::unit().object(name);
        p.metadata.namespace = Some("ns".into());
        p.status = Some(UpgradePlanStatus {
            phase,
            ..Default::default()
        });
        p
    }

    #[test]
    fn plans_being_deleted_or_rolling_back_count() {
        let me = plan("me", Phase::Pending);
        let mut deleted = plan("deleted", Phase::RollingBack);
        deleted.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
        );
        let found = conflicts(&me, &[Arc::new(deleted)]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("UpgradePlan deleted"), "{}", found[0]);
        assert!(found[0].contains("phase RollingBack"), "{}", found[0]);

        // Ended plans (even being deleted, waiting for their finalizer) do not.
        let ended = plan("ended", Phase::Failed);
        assert!(conflicts(&me, &[Arc::new(ended)]).is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a failed Job's pod printed reaches the plan scrubbed.
    #[test]
    fn job_output_is_scrubbed() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "status": {"containerStatuses": [{
                "name": "migrate", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 1, "message":
                    "connecting to mongodb://migrator:Hunter2pw@db:27017/app\nauth failed for Hunter2pw\nMONGO_PASSWORD=other"}}
            }]}
        }))
        .unwrap();
        let job: Job =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "p-migrate"}})).unwrap();
        let uri = Uri::parse("mongodb://migrator:Hunter2pw@db:27017/app").unwrap();
        let v = job_view(&job, JobState::Failed, &[pod], &uri.secret_values());
        assert!(!v.message.contains("Hunter2pw"), "{}", v.message);
        assert!(!v.message.contains("other"), "{}", v.message);
        assert!(v.message.starts_with("connecting to ***"), "{}", v.message);
    }
}
