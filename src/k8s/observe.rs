//! Reads the world into `Observed`. Only what the plan's phase needs is read from MongoDB or
//! probed over HTTP; Kubernetes objects are cheap GETs.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

use crate::copy::Copies;
use crate::crd::{CleanupState, CleanupStepName, CloneMethod, Color, Mode, Phase, UpgradePlan};
use crate::mongo::{self, Clients};
use crate::plan::names::{self, PLAN_LABEL, TRACK_LABEL};
use crate::plan::{
    DatabaseView, DeploymentView, JobState, JobView, Observed, PlanMeta, ProbeView, SecretView,
    ServiceSelector, ServiceView, WorkloadView, Workloads,
};
use crate::probe;
use crate::uri::Uri;

use super::build;

/// Errors reading the cluster (MongoDB and probe failures are observations, not errors).
pub type Result<T> = std::result::Result<T, kube::Error>;

/// What was read, plus the connection string for the executor (never put into `Observed`).
pub struct World {
    pub observed: Observed,
    pub uri: Option<Uri>,
    pub blue: Option<Deployment>,
    pub green: Option<Deployment>,
    pub service: Option<Service>,
}

pub async fn observe(
    client: &Client,
    mongo: &Clients,
    copies: &Copies,
    plan: &UpgradePlan,
    others: &[std::sync::Arc<UpgradePlan>],
) -> Result<World> {
    let ns = plan.namespace().unwrap_or_default();
    let name = plan.name_any();
    let spec = &plan.spec;
    let status = plan.status.clone().unwrap_or_default();
    let phase = status.phase;
    let uid = plan.uid().unwrap_or_default();

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let blue_obj = deployments.get_opt(&spec.app.deployment).await?;
    let green_name = status
        .green_deployment
        .clone()
        .unwrap_or_else(|| names::green_deployment(spec, &name));
    let green_obj = deployments.get_opt(&green_name).await?;
    let service_obj = Api::<Service>::namespaced(client.clone(), &ns)
        .get_opt(&spec.app.service)
        .await?;

    let mut obs = Observed {
        plan: PlanMeta {
            name: name.clone(),
            generation: plan.metadata.generation,
            deleting: plan.metadata.deletion_timestamp.is_some(),
        },
        ..Default::default()
    };
    obs.blue = blue_obj.as_ref().map(|d| deployment_view(d, plan, &uid));
    obs.green = green_obj.as_ref().map(|d| deployment_view(d, plan, &uid));
    obs.service = service_obj.as_ref().map(|s| ServiceView {
        selector: s
            .spec
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default(),
    });

    let (secret_view, uri) = read_secret(client, &ns, plan).await?;
    obs.secret = secret_view;

    // Cleanup after success: only the steps asked for and not done yet are looked at.
    let cleaning = phase == Phase::Succeeded && spec.mode == Mode::Upgrade && !obs.plan.deleting;
    let open = |n: CleanupStepName, asked: bool| {
        cleaning
            && asked
            && !status.cleanup.as_ref().is_some_and(|c| {
                c.steps
                    .iter()
                    .any(|s| s.name == n && s.state == CleanupState::Done)
            })
    };
    let prune_open = open(CleanupStepName::PruneBackups, spec.backup.keep_last > 0);
    let drop_sources_open = open(
        CleanupStepName::DropSourceDatabases,
        spec.cleanup.drop_source_databases_after.is_some(),
    );
    let delete_blue_open = open(
        CleanupStepName::DeleteBlue,
        spec.cleanup.delete_blue_after.is_some(),
    );
    let obsolete_open = open(
        CleanupStepName::DropObsoleteCollections,
        spec.cleanup.obsolete_collections.is_some(),
    );
    if drop_sources_open || delete_blue_open {
        obs.workloads = Some(workloads(client, &ns).await?);
    }

    if !phase.is_terminal() || obs.plan.deleting || prune_open {
        let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
        let listed = jobs
            .list(&ListParams::default().labels(&format!("{PLAN_LABEL}={name}")))
            .await?;
        for j in listed {
            let owned = j.owner_references().iter().any(|o| o.uid == uid);
            if !owned {
                continue;
            }
            let view = job_view(client, &ns, &j).await?;
            let jn = j.name_any();
            if jn == names::backup_job(&name) {
                obs.backup_job = Some(view);
            } else if jn == names::clone_job(&name) {
                obs.clone_job = Some(view);
            } else if jn == names::migration_job(&name) {
                obs.migration_job = Some(view);
            } else if jn == names::prune_job(&name) {
                obs.prune_job = Some(view);
            }
        }
    }

    let copy_key = super::execute::copy_key(plan);
    if spec.backup.clone_method == CloneMethod::ServerSide
        && matches!(phase, Phase::BackingUp | Phase::Cloning)
        && !obs.plan.deleting
    {
        obs.server_copy = Some(copies.view(&copy_key));
    } else {
        copies.forget(&copy_key);
    }

    if phase == Phase::Pending {
        obs.conflicts = conflicts(plan, others);
        obs.rehearsal = latest_rehearsal(plan, others);
    }

    // MongoDB, only where the phase needs it.
    let mongo_client = match &uri {
        Some(u) if obs.secret == SecretView::Present => {
            Some(mongo.get(u).await.map_err(|e| e.to_string()))
        }
        _ => None,
    };
    let src_dbs: Vec<String> = spec
        .database
        .databases
        .iter()
        .map(|d| d.name.clone())
        .collect();
    let clone_dbs: Vec<String> = spec
        .database
        .databases
        .iter()
        .map(|d| names::clone_database(d, &name))
        .collect();
    if let (Some(mc), Some(u)) = (&mongo_client, &uri) {
        let listing = if phase == Phase::Pending
            || (phase == Phase::CleaningUp && spec.mode == Mode::Rehearsal)
        {
            Some([src_dbs.clone(), clone_dbs.clone()].concat())
        } else if drop_sources_open {
            // Only the sources: counting the clones would register as reads of the
            // collections the obsolete-collection guard watches.
            Some(src_dbs.clone())
        } else {
            None
        };
        if let Some(wanted) = listing {
            obs.database = match mc {
                Err(e) => DatabaseView::Unreachable(e.clone()),
                Ok(c) => match mongo::list_databases(c, u, &wanted).await {
                    Ok(dbs) => DatabaseView::Reachable { databases: dbs },
                    Err(e) => DatabaseView::Unreachable(e.to_string()),
                },
            };
        }
        if let Ok(c) = mc {
            let done =
                |j: &Option<JobView>| j.as_ref().is_some_and(|j| j.state == JobState::Succeeded);
            if phase == Phase::BackingUp && done(&obs.backup_job) {
                obs.source_counts = Some(
                    mongo::count_documents(c, u, &src_dbs)
                        .await
                        .map_err(|e| e.to_string()),
                );
            }
            let diverged_check =
                spec.traffic == Color::Blue && status.read_only_lifted_at.is_some();
            // Counted once more just before read-only is lifted: the baseline of DataDiverged.
            let before_lift =
                phase == Phase::LiftingReadOnly && status.read_only_lifted_at.is_none();
            let copied = obs
                .server_copy
                .as_ref()
                .is_some_and(|c| c.state == crate::plan::CopyState::Succeeded);
            if (phase == Phase::Cloning && (done(&obs.clone_job) || copied))
                || diverged_check
                || before_lift
            {
                obs.clone_counts = Some(
                    mongo::count_documents(c, u, &clone_dbs)
                        .await
                        .map_err(|e| e.to_string()),
                );
            }
            if phase == Phase::Cloning
                && spec.backup.clone_method == CloneMethod::Restore
                && obs
                    .clone_job
                    .as_ref()
                    .is_some_and(|j| j.state == JobState::Active)
                && let Ok(dbs) = mongo::list_databases(c, u, &clone_dbs).await
            {
                obs.clone_documents = Some(dbs.values().map(|d| d.documents).sum());
            }
            if obsolete_open {
                let clones: Vec<String> = spec
                    .database
                    .databases
                    .iter()
                    .map(|d| {
                        status
                            .clone
                            .as_ref()
                            .and_then(|c| c.databases.get(&d.name).cloned())
                            .unwrap_or_else(|| names::clone_database(d, &name))
                    })
                    .collect();
                obs.clone_collections = Some(
                    mongo::collections_with_reads(c, u, &clones)
                        .await
                        .map_err(|e| e.to_string()),
                );
            }
            if phase == Phase::Migrating
                && let Some(gate) = &spec.migration.mongo_document
            {
                let db = spec
                    .database
                    .databases
                    .iter()
                    .find(|d| d.name == gate.database)
                    .map(|d| names::clone_database(d, &name))
                    .unwrap_or_else(|| gate.database.clone());
                obs.migration_doc = Some(
                    mongo::migration_doc(
                        c,
                        u,
                        &db,
                        &gate.collection,
                        &gate.filter,
                        &gate.version_field,
                        &gate.lock_field,
                    )
                    .await
                    .map_err(|e| e.to_string()),
                );
            }
        } else if let Err(e) = mc
            && phase == Phase::Migrating
        {
            obs.migration_doc = Some(Err(e.clone()));
        }
    }

    // Pods: for stale-lock detection and the HTTP gates.
    if phase == Phase::Migrating
        && let Some(g) = obs.green.as_mut()
    {
        let pods = pods_of(client, &ns, &green_name).await?;
        g.running_pods = pods.iter().filter(|p| running(p)).count() as i32;
        g.restarts = pods.iter().map(restarts).sum();
        if let Some(h) = &spec.migration.http_get
            && g.ready_replicas > 0
        {
            obs.health = Some(
                probe_pods(&pods, h.port, "GET", &h.path, None, |code| {
                    code == h.expect_status
                })
                .await,
            );
        }
    }
    if phase == Phase::EnteringReadOnly
        && let Some(b) = &obs.blue
        && b.rolled_out()
        && let Some(w) = spec.read_only.verify.as_ref().and_then(|v| v.http.as_ref())
    {
        let pods = pods_of(client, &ns, &spec.app.deployment).await?;
        let method = serde_json::to_value(w.method)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or("POST".into());
        // Read-only holds when no pod accepts the write.
        obs.read_only_probe = Some(
            probe_pods(&pods, w.port, &method, &w.path, w.body.as_deref(), |code| {
                !(200..300).contains(&code)
            })
            .await,
        );
    }

    Ok(World {
        observed: obs,
        uri,
        blue: blue_obj,
        green: green_obj,
        service: service_obj,
    })
}

/// The namespace's Services (selectors) and Deployments (pod labels, literal env values).
async fn workloads(client: &Client, ns: &str) -> Result<Workloads> {
    let services = Api::<Service>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .map(|s| ServiceSelector {
            name: s.name_any(),
            selector: s.spec.and_then(|s| s.selector).unwrap_or_default(),
        })
        .collect();
    let deployments = Api::<Deployment>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await?
        .items
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
    Ok(Workloads {
        services,
        deployments,
    })
}

fn deployment_view(d: &Deployment, plan: &UpgradePlan, plan_uid: &str) -> DeploymentView {
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
    }
}

async fn read_secret(
    client: &Client,
    ns: &str,
    plan: &UpgradePlan,
) -> Result<(SecretView, Option<Uri>)> {
    let r = &plan.spec.database.connection_secret;
    let Some(secret) = Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(&r.name)
        .await?
    else {
        return Ok((SecretView::Missing, None));
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
        .and_then(|d| d.get(&r.key))
        .map(|b| String::from_utf8_lossy(&b.0).trim().to_string());
    let Some(value) = value else {
        return Ok((SecretView::KeyMissing { keys }, None));
    };
    match Uri::parse(value) {
        Ok(uri) => Ok((SecretView::Present, Some(uri))),
        Err(why) => Ok((
            SecretView::Invalid {
                why: why.to_string(),
            },
            None,
        )),
    }
}

async fn job_view(client: &Client, ns: &str, job: &Job) -> Result<JobView> {
    let status = job.status.clone().unwrap_or_default();
    let conds = status.conditions.unwrap_or_default();
    let has = |t: &str| conds.iter().any(|c| c.type_ == t && c.status == "True");
    let state = if has("Complete")
        || status.succeeded.unwrap_or(0) > 0 && status.active.unwrap_or(0) == 0 && !has("Failed")
    {
        JobState::Succeeded
    } else if has("Failed") {
        JobState::Failed
    } else {
        JobState::Active
    };
    let mut message = String::new();
    if state != JobState::Active {
        // The pod's termination message carries the Job's result (backup size and checksum)
        // or the tail of its log on failure.
        let pods = Api::<Pod>::namespaced(client.clone(), ns)
            .list(&ListParams::default().labels(&format!("job-name={}", job.name_any())))
            .await?;
        for p in pods {
            for cs in p
                .status
                .and_then(|s| s.container_statuses)
                .unwrap_or_default()
            {
                if let Some(t) = cs.state.and_then(|s| s.terminated)
                    && let Some(m) = t.message
                {
                    message = m;
                }
            }
        }
        if message.is_empty() && state == JobState::Failed {
            message = conds
                .iter()
                .find(|c| c.type_ == "Failed")
                .and_then(|c| c.message.clone())
                .unwrap_or_default();
        }
    }
    Ok(JobView {
        name: job.name_any(),
        state,
        message,
    })
}

/// Other active plans that target the same Deployment or any of the same databases. Between
/// two new plans, the older one goes first.
pub(crate) fn conflicts(plan: &UpgradePlan, others: &[std::sync::Arc<UpgradePlan>]) -> Vec<String> {
    let ns = plan.namespace();
    let mine: std::collections::BTreeSet<&str> = plan
        .spec
        .database
        .databases
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    let key = |p: &UpgradePlan| {
        (
            p.metadata.creation_timestamp.clone().map(|t| t.0),
            p.name_any(),
        )
    };
    let mut out = Vec::new();
    for o in others {
        if o.namespace() != ns
            || o.name_any() == plan.name_any()
            || o.metadata.deletion_timestamp.is_some()
        {
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
        let shared: Vec<&str> = o
            .spec
            .database
            .databases
            .iter()
            .map(|d| d.name.as_str())
            .filter(|d| mine.contains(d))
            .collect();
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
pub(crate) fn latest_rehearsal(
    plan: &UpgradePlan,
    others: &[std::sync::Arc<UpgradePlan>],
) -> Option<crate::crd::Prediction> {
    others
        .iter()
        .filter(|o| {
            o.namespace() == plan.namespace()
                && o.spec.mode == crate::crd::Mode::Rehearsal
                && o.spec.app.deployment == plan.spec.app.deployment
        })
        .filter_map(|o| o.status.as_ref())
        .filter(|s| s.phase == Phase::Rehearsed)
        .filter_map(|s| s.prediction.clone())
        .max_by_key(|p| p.at)
}

async fn pods_of(client: &Client, ns: &str, deployment: &str) -> Result<Vec<Pod>> {
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!("{TRACK_LABEL}={deployment}")))
        .await?;
    Ok(pods
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect())
}

fn running(p: &Pod) -> bool {
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

fn restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |cs| cs.iter().map(|c| c.restart_count).sum())
}

/// Sends the request to every ready pod; ok when all of them answer as `accept` wants.
async fn probe_pods(
    pods: &[Pod],
    port: i32,
    method: &str,
    path: &str,
    body: Option<&str>,
    accept: impl Fn(u16) -> bool,
) -> ProbeView {
    let targets: Vec<(String, IpAddr)> = pods
        .iter()
        .filter(|p| ready(p))
        .filter_map(|p| {
            let ip = p.status.as_ref()?.pod_ip.as_ref()?.parse().ok()?;
            Some((p.name_any(), ip))
        })
        .collect();
    if targets.is_empty() {
        return ProbeView {
            ok: false,
            detail: "no ready pod to probe".into(),
        };
    }
    let mut bad = Vec::new();
    for (pod, ip) in &targets {
        let addr = SocketAddr::new(*ip, port as u16);
        match probe::request(addr, method, path, body).await {
            Ok(code) if accept(code) => {}
            Ok(code) => bad.push(format!("{pod} answered {code} to {method} {path}")),
            Err(e) => bad.push(format!("{pod}: {e}")),
        }
    }
    ProbeView {
        ok: bad.is_empty(),
        detail: if bad.is_empty() {
            format!("{} pod(s) answered as expected", targets.len())
        } else {
            bad.join("; ")
        },
    }
}

/// Current values of the `uriEnv` variables of the old version's app container, resolved
/// from Secrets and ConfigMaps; the plan's connection string for one it does not set.
pub async fn uri_env_values(
    client: &Client,
    ns: &str,
    plan: &UpgradePlan,
    blue: &Deployment,
    container: &str,
    connection: &Uri,
) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let env = blue
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.iter().find(|c| c.name == container))
        .and_then(|c| c.env.clone())
        .unwrap_or_default();
    for db in &plan.spec.database.databases {
        for var in &db.uri_env {
            let e = env.iter().find(|e| &e.name == var);
            let value = match e.and_then(|e| e.value_from.as_ref()) {
                Some(from) => {
                    if let Some(s) = &from.secret_key_ref {
                        Api::<Secret>::namespaced(client.clone(), ns)
                            .get_opt(&s.name)
                            .await?
                            .and_then(|sec| sec.data)
                            .and_then(|d| {
                                d.get(&s.key)
                                    .map(|b| String::from_utf8_lossy(&b.0).to_string())
                            })
                    } else if let Some(c) = &from.config_map_key_ref {
                        Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client.clone(), ns)
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
            out.insert(
                var.clone(),
                value.unwrap_or_else(|| connection.expose().to_string()),
            );
        }
    }
    Ok(out)
}
