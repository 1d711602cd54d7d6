//! Carries out a `Reads` (see `plan::needs`) and maps the answers into `Observed`. What to read
//! is decided there; here it is only fetched, in an order that lets each conditional read see
//! the answers it depends on.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

use crate::copy::Copies;
use crate::crd::UpgradePlan;
use crate::mongo::{self, Clients};
use crate::plan::names::{MAX_K8S_NAME, PLAN_LABEL, TRACK_LABEL};
use crate::plan::needs::{Count, JobNames, Probe};
use crate::plan::{
    DatabaseView, DeploymentView, EnvFact, EnvValue, JobState, Observed, ProbeView, Reads,
    SecretView,
};
use crate::probe;
use crate::uri::Uri;

use super::{databases, views};

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
    reads: &Reads,
    others: &[Arc<UpgradePlan>],
) -> Result<World> {
    let ns = plan.namespace().unwrap_or_default();
    let uid = plan.uid().unwrap_or_default();

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let blue = deployments.get_opt(&reads.blue).await?;
    let green = deployments.get_opt(&reads.green).await?;
    let service = Api::<Service>::namespaced(client.clone(), &ns)
        .get_opt(&reads.service)
        .await?;
    let secret = Api::<Secret>::namespaced(client.clone(), &ns)
        .get_opt(&plan.spec.database.connection_secret.name)
        .await?;
    let (secret, uri) =
        views::secret_view(secret.as_ref(), &plan.spec.database.connection_secret.key);

    let mut obs = Observed {
        plan: views::plan_meta(plan),
        blue: blue.as_ref().map(|d| views::deployment_view(d, plan, &uid)),
        green: green
            .as_ref()
            .map(|d| views::deployment_view(d, plan, &uid)),
        service: service.as_ref().map(views::service_view),
        secret,
        ..Default::default()
    };
    if reads.blue_env
        && let (Some(d), Some(v)) = (&blue, obs.blue.as_mut())
    {
        resolve_env(client, &ns, d, v, &views::plan_sources(plan)).await?;
    }
    if reads.green_env
        && let (Some(d), Some(v)) = (&green, obs.green.as_mut())
    {
        resolve_env(client, &ns, d, v, &views::plan_sources(plan)).await?;
    }
    if reads.workloads {
        let services = Api::<Service>::namespaced(client.clone(), &ns)
            .list(&ListParams::default())
            .await?
            .items;
        let deployments = deployments.list(&ListParams::default()).await?.items;
        obs.workloads = Some(views::workloads(services, deployments));
    }
    if let Some(names) = &reads.jobs {
        read_jobs(client, plan, uri.as_ref(), names, &mut obs).await?;
    }
    if reads.server_copy {
        obs.server_copy = Some(copies.view(&databases::copy_key(plan)));
    }
    if reads.other_plans {
        obs.conflicts = views::conflicts(plan, others);
        obs.rehearsal = views::latest_rehearsal(plan, others);
    }
    if let Some(uri) = &uri
        && obs.secret == SecretView::Present
        && reads.mongo()
    {
        read_mongo(mongo, uri, reads, &mut obs).await;
    }
    if let Some(wanted) = &reads.green_pods
        && obs.green.is_some()
    {
        let pods = pods_of(client, &ns, &wanted.deployment).await?;
        if let Some(g) = obs.green.as_mut() {
            g.running_pods = pods.iter().filter(|p| views::running(p)).count() as i32;
            g.restarts = pods.iter().map(views::restarts).sum();
        }
        if let Some(h) = &wanted.health
            && h.when.holds(&obs)
        {
            obs.health = Some(probe_pods(&pods, h).await);
        }
    }
    if let Some(p) = &reads.read_only_probe
        && p.when.holds(&obs)
    {
        let pods = pods_of(client, &ns, &p.deployment).await?;
        obs.read_only_probe = Some(probe_pods(&pods, p).await);
    }

    Ok(World {
        observed: obs,
        uri,
        blue,
        green,
        service,
    })
}

/// Reads the Secrets and ConfigMaps the app container takes variables from (`valueFrom`,
/// `envFrom`) and records what each value names; the values themselves are dropped here.
/// A missing object or key is an observation; any other API error is an error.
async fn resolve_env(
    client: &Client,
    ns: &str,
    d: &Deployment,
    view: &mut DeploymentView,
    sources: &[String],
) -> Result<()> {
    let Ok(container) = &view.container else {
        return Ok(());
    };
    let Some(c) = d
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.iter().find(|c| &c.name == container))
    else {
        return Ok(());
    };
    let mut objects = EnvObjects::new(client, ns);
    for e in c.env.iter().flatten() {
        let Some(r) = e.value_from.as_ref().and_then(views::env_ref) else {
            continue;
        };
        let value = match objects.get(r.secret, &r.name).await? {
            None => EnvValue::Unresolvable(format!(
                "{} {:?} not found",
                if r.secret { "Secret" } else { "ConfigMap" },
                r.name
            )),
            Some(data) => match data.get(&r.key) {
                None => EnvValue::Unresolvable(format!("{} not found", r.describe())),
                Some(v) => views::value_fact(v, sources),
            },
        };
        if let Some(f) = view.env.iter_mut().find(|f| f.name == e.name) {
            f.value = value;
        }
    }
    // envFrom: each key a variable, unless `env` sets it; a later source wins over an earlier.
    let explicit: Vec<String> = c.env.iter().flatten().map(|e| e.name.clone()).collect();
    for from in c.env_from.iter().flatten() {
        let (secret, name) = match (&from.secret_ref, &from.config_map_ref) {
            (Some(s), _) => (true, s.name.clone()),
            (None, Some(m)) => (false, m.name.clone()),
            (None, None) => continue,
        };
        let Some(data) = objects.get(secret, &name).await? else {
            continue;
        };
        let held_in = format!(
            "{} {name:?} (envFrom)",
            if secret { "Secret" } else { "ConfigMap" }
        );
        for (key, value) in data {
            let var = format!("{}{key}", from.prefix.as_deref().unwrap_or(""));
            if explicit.contains(&var) {
                continue;
            }
            view.env.retain(|f| f.name != var);
            view.env.push(EnvFact {
                name: var,
                held_in: Some(held_in.clone()),
                value: views::value_fact(&value, sources),
            });
        }
    }
    Ok(())
}

/// Secrets and ConfigMaps read once per reconcile, as key → value.
struct EnvObjects {
    secrets: Api<Secret>,
    config_maps: Api<ConfigMap>,
    seen: BTreeMap<(bool, String), Option<BTreeMap<String, String>>>,
}

impl EnvObjects {
    fn new(client: &Client, ns: &str) -> Self {
        EnvObjects {
            secrets: Api::namespaced(client.clone(), ns),
            config_maps: Api::namespaced(client.clone(), ns),
            seen: BTreeMap::new(),
        }
    }

    async fn get(&mut self, secret: bool, name: &str) -> Result<Option<BTreeMap<String, String>>> {
        let key = (secret, name.to_string());
        if let Some(v) = self.seen.get(&key) {
            return Ok(v.clone());
        }
        let data = if secret {
            self.secrets
                .get_opt(name)
                .await?
                .map(|s| views::secret_strings(&s))
        } else {
            self.config_maps
                .get_opt(name)
                .await?
                .map(|m| m.data.unwrap_or_default())
        };
        self.seen.insert(key, data.clone());
        Ok(data)
    }
}

/// The plan's own Jobs (owned by this very plan, not one deleted and recreated by that name).
async fn read_jobs(
    client: &Client,
    plan: &UpgradePlan,
    uri: Option<&Uri>,
    names: &JobNames,
    obs: &mut Observed,
) -> Result<()> {
    let ns = &plan.namespace().unwrap_or_default();
    let uid = &plan.uid().unwrap_or_default();
    // A plan name over 63 characters is no label value: nothing can carry it (the plan is
    // refused at Pending), and the API server would refuse the selector, leaving the plan
    // unanswered.
    if names.plan.len() > MAX_K8S_NAME {
        return Ok(());
    }
    let listed = Api::<Job>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!("{PLAN_LABEL}={}", names.plan)))
        .await?;
    let mut known: Option<Vec<String>> = None;
    for j in listed {
        if !j.owner_references().iter().any(|o| o.uid == *uid) {
            continue;
        }
        let state = views::job_state(&j);
        let pods = if state == JobState::Active {
            Vec::new()
        } else {
            Api::<Pod>::namespaced(client.clone(), ns)
                .list(&ListParams::default().labels(&format!("job-name={}", j.name_any())))
                .await?
                .items
        };
        if known.is_none() && state != JobState::Active {
            known = Some(known_secrets(client, plan, uri).await?);
        }
        let view = Some(views::job_view(
            &j,
            state,
            &pods,
            known.as_deref().unwrap_or_default(),
        ));
        let name = j.name_any();
        if name == names.backup {
            obs.backup_job = view;
        } else if name == names.clone {
            obs.clone_job = view;
        } else if name == names.migration {
            obs.migration_job = view;
        } else if name == names.prune {
            obs.prune_job = view;
        }
    }
    Ok(())
}

/// The secret values a Job of this plan may print, to scrub from its output: the connection
/// string and its password, and the migration Job's credentials.
async fn known_secrets(
    client: &Client,
    plan: &UpgradePlan,
    uri: Option<&Uri>,
) -> Result<Vec<String>> {
    let mut known = uri.map(Uri::secret_values).unwrap_or_default();
    if let Some(c) = plan
        .spec
        .migration
        .job
        .as_ref()
        .and_then(|j| j.credentials_secret.as_ref())
    {
        let ns = plan.namespace().unwrap_or_default();
        let value = Api::<Secret>::namespaced(client.clone(), &ns)
            .get_opt(&c.name)
            .await?
            .and_then(|s| views::secret_strings(&s).remove(&c.key));
        if let Some(v) = value {
            match Uri::parse(v.trim()) {
                Ok(u) => known.extend(u.secret_values()),
                Err(_) => known.push(v),
            }
        }
    }
    Ok(known)
}

/// The document counts `count` asks for, when its condition holds on what is observed so far.
async fn count_if_due(
    c: &mongodb::Client,
    uri: &Uri,
    count: Option<&Count>,
    obs: &Observed,
) -> Option<std::result::Result<BTreeMap<String, i64>, String>> {
    let count = count.filter(|count| count.when.holds(obs))?;
    Some(
        mongo::count_documents(c, uri, &count.databases)
            .await
            .map_err(|e| e.to_string()),
    )
}

/// MongoDB reads. A server that cannot be reached is an observation: the listing and the
/// migration document report it; counts are left unread.
async fn read_mongo(mongo: &Clients, uri: &Uri, reads: &Reads, obs: &mut Observed) {
    let c = match mongo.get(uri).await {
        Ok(c) => c,
        Err(e) => {
            let e = e.to_string();
            if reads.databases.is_some() {
                obs.database = DatabaseView::Unreachable(e.clone());
            }
            if reads.migration_doc.is_some() {
                obs.migration_doc = Some(Err(e));
            }
            return;
        }
    };
    if let Some(wanted) = &reads.databases {
        obs.database = match mongo::list_databases(&c, uri, wanted).await {
            Ok(databases) => DatabaseView::Reachable { databases },
            Err(e) => DatabaseView::Unreachable(e.to_string()),
        };
    }
    if let Some(counts) = count_if_due(&c, uri, reads.source_counts.as_ref(), obs).await {
        obs.source_counts = Some(counts);
    }
    if let Some(counts) = count_if_due(&c, uri, reads.clone_counts.as_ref(), obs).await {
        obs.clone_counts = Some(counts);
    }
    if let Some(count) = &reads.clone_documents
        && count.when.holds(obs)
        && let Ok(dbs) = mongo::list_databases(&c, uri, &count.databases).await
    {
        obs.clone_documents = Some(dbs.values().map(|d| d.documents).sum());
    }
    if let Some(clones) = &reads.clone_collections {
        obs.clone_collections = Some(
            mongo::collections_with_reads(&c, uri, clones)
                .await
                .map_err(|e| e.to_string()),
        );
    }
    if let Some(doc) = &reads.migration_doc {
        obs.migration_doc = Some(
            mongo::migration_doc(
                &c,
                uri,
                &doc.database,
                &doc.collection,
                &doc.filter,
                &doc.version_field,
                &doc.lock_field,
            )
            .await
            .map_err(|e| e.to_string()),
        );
    }
}

/// The live pods of a Deployment, found by the track label cutover puts on both versions.
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

/// Sends the request to every ready pod; ok when all of them answer as the probe wants.
async fn probe_pods(pods: &[Pod], p: &Probe) -> ProbeView {
    let targets = views::probe_targets(pods);
    if targets.is_empty() {
        return ProbeView {
            ok: false,
            detail: "no ready pod to probe".into(),
        };
    }
    let mut bad = Vec::new();
    for (pod, ip) in &targets {
        let addr = SocketAddr::new(*ip, p.port as u16);
        match probe::request(addr, p.method, &p.path, p.body.as_deref()).await {
            Ok(code) if p.accept.accepts(code) => {}
            Ok(code) => bad.push(format!("{pod} answered {code} to {} {}", p.method, p.path)),
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
