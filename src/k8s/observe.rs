//! Carries out a `Reads` (see `plan::needs`) and maps the answers into `Observed`. What to read
//! is decided there; here it is only fetched, in an order that lets each conditional read see
//! the answers it depends on.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

use crate::copy::Copies;
use crate::crd::UpgradePlan;
use crate::mongo::{self, Clients};
use crate::plan::names::TRACK_LABEL;
use crate::plan::needs::{Count, DocumentRead, JobNames, Probe, When};
use crate::plan::{
    DatabaseView, DeploymentView, EnvFact, EnvValue, ForeignObject, JobState, MigrationDoc,
    ObjectKind, Observed, ProbeView, Reads, SecretView,
};
use crate::probe;
use crate::sync::Syncs;
use crate::uri::Uri;

use super::{databases, views};

mod streams;

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
    syncs: &Syncs,
    plan: &UpgradePlan,
    reads: &Reads,
    others: &[Arc<UpgradePlan>],
) -> Result<World> {
    let ns = plan.namespace().unwrap_or_default();
    let uid = plan.uid().unwrap_or_default();

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let blue = deployments
        .get_opt(&reads.blue)
        .await?
        .filter(|d| reads.blue_uid.is_none() || d.metadata.uid == reads.blue_uid);
    let mut foreign = Vec::new();
    // A Deployment under the new version's name that is not the plan's is not the new
    // version: reported, and never looked at as one.
    let green = deployments
        .get_opt(&reads.green)
        .await?
        .filter(|d| keep_own(d, ObjectKind::Deployment, plan, &mut foreign));
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
    for (kind, name) in &reads.owned {
        let meta = match kind {
            ObjectKind::Secret => meta_of::<Secret>(client, &ns, name).await?,
            ObjectKind::Service => meta_of::<Service>(client, &ns, name).await?,
            ObjectKind::Deployment => meta_of::<Deployment>(client, &ns, name).await?,
            ObjectKind::Job => meta_of::<Job>(client, &ns, name).await?,
        };
        if let Some(meta) = meta {
            keep_own_meta(&meta, *kind, plan, &mut foreign);
        }
    }
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
        read_jobs(
            client,
            &ns,
            plan,
            uri.as_ref(),
            names,
            &mut obs,
            &mut foreign,
        )
        .await?;
    }
    obs.foreign = foreign;
    if reads.server_copy {
        obs.server_copy = Some(copies.view(&databases::copy_key(plan)));
    }
    if reads.sync {
        obs.sync = Some(syncs.view(&databases::copy_key(plan)));
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

/// The plan's Jobs, by name: one owned by this very plan is observed; one that exists under
/// the name and is not (a foreign Job, or one of an earlier plan of this name) is reported as
/// foreign, never taken for the plan's own.
async fn read_jobs(
    client: &Client,
    ns: &str,
    plan: &UpgradePlan,
    uri: Option<&Uri>,
    names: &JobNames,
    obs: &mut Observed,
    foreign: &mut Vec<ForeignObject>,
) -> Result<()> {
    let jobs = Api::<Job>::namespaced(client.clone(), ns);
    let mut known: Option<Vec<String>> = None;
    let all = [&names.backup, &names.clone, &names.migration, &names.prune];
    for name in all
        .into_iter()
        .chain((!names.verify.is_empty()).then_some(&names.verify))
    {
        let Some(j) = jobs.get_opt(name).await? else {
            continue;
        };
        if !keep_own(&j, ObjectKind::Job, plan, foreign) {
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
        let mut view = views::job_view(&j, state, &pods, known.as_deref().unwrap_or_default());
        // Only the backup and clone scripts report their own failures (see `job_outcome`).
        if state == JobState::Failed && (name == &names.backup || name == &names.clone) {
            view.disruption = super::job_outcome::disruption(&pods);
        }
        let view = Some(view);
        if name == &names.backup {
            obs.backup_job = view;
        } else if name == &names.clone {
            obs.clone_job = view;
        } else if name == &names.migration {
            obs.migration_job = view;
        } else if name == &names.verify {
            obs.verify_job = view;
        } else {
            obs.prune_job = view;
        }
    }
    Ok(())
}

/// The annotation `release_green` leaves on the new version's Deployment and Secret in place
/// of the owner reference it removes: the uid of the plan that created them.
pub const RELEASED_BY: &str = "cutover.dev/released-by";

/// Whose an object under a name the plan needs is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    /// An owner reference to this plan's uid.
    Own,
    /// Created by this plan and handed over (`RELEASED_BY` holds its uid).
    Released,
    /// Owned by an earlier UpgradePlan of the same name (a different uid): garbage.
    PreviousPlan,
    /// Anything else, whatever labels it carries.
    Foreign,
}

impl Mark {
    pub fn is_ours(self) -> bool {
        matches!(self, Mark::Own | Mark::Released)
    }
}

/// The mark an object carries for the plan `plan_name` with uid `plan_uid`. The plan label is
/// not looked at: anyone can copy a label, no one can give an object this plan's uid as owner
/// without reading it first.
pub fn mark(meta: &ObjectMeta, plan_name: &str, plan_uid: &str) -> Mark {
    let owners = meta.owner_references.as_deref().unwrap_or_default();
    if !plan_uid.is_empty() && owners.iter().any(|o| o.uid == plan_uid) {
        return Mark::Own;
    }
    if !plan_uid.is_empty()
        && meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(RELEASED_BY))
            .is_some_and(|uid| uid == plan_uid)
    {
        return Mark::Released;
    }
    let previous = owners.iter().any(|o| {
        o.kind == "UpgradePlan" && o.api_version.starts_with("cutover.dev/") && o.name == plan_name
    });
    if previous {
        Mark::PreviousPlan
    } else {
        Mark::Foreign
    }
}

/// True when the object is the plan's; otherwise it is recorded in `foreign`.
fn keep_own<K: kube::Resource>(
    obj: &K,
    kind: ObjectKind,
    plan: &UpgradePlan,
    foreign: &mut Vec<ForeignObject>,
) -> bool {
    keep_own_meta(obj.meta(), kind, plan, foreign)
}

fn keep_own_meta(
    meta: &ObjectMeta,
    kind: ObjectKind,
    plan: &UpgradePlan,
    foreign: &mut Vec<ForeignObject>,
) -> bool {
    let m = mark(meta, &plan.name_any(), plan.uid().as_deref().unwrap_or(""));
    if !m.is_ours() {
        foreign.push(ForeignObject {
            kind,
            name: meta.name.clone().unwrap_or_default(),
            previous_plan: m == Mark::PreviousPlan,
        });
    }
    m.is_ours()
}

/// The metadata of one object, when it exists.
async fn meta_of<K>(client: &Client, ns: &str, name: &str) -> Result<Option<ObjectMeta>>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    Ok(Api::<K>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await?
        .map(|o| o.meta().clone()))
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

/// The shape (collections, views, indexes) `read` asks for, when its condition holds.
async fn shape_if_due(
    c: &mongodb::Client,
    uri: &Uri,
    read: Option<&Count>,
    obs: &Observed,
) -> Option<std::result::Result<crate::plan::shape::Shape, String>> {
    let read = read.filter(|r| r.when.holds(obs))?;
    Some(
        mongo::shape::read_shape(c, uri, &read.databases)
            .await
            .map_err(|e| e.to_string()),
    )
}

/// Each drained clone compared with its source, the differences of all of them together.
async fn compare_pairs(
    c: &mongodb::Client,
    uri: &Uri,
    pairs: &[(String, String)],
) -> std::result::Result<Vec<String>, String> {
    let mut out = Vec::new();
    for (source, clone) in pairs {
        out.extend(
            crate::sync::compare(c, uri, source, clone)
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    Ok(out)
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
            obs.migration_doc = reads.migration_doc.as_ref().map(|_| Err(e.clone()));
            obs.source_migration_doc = reads.source_migration_doc.as_ref().map(|_| Err(e.clone()));
            if reads.claims.is_some() {
                obs.claims = Some(Err(e));
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
    if let Some(shape) = shape_if_due(&c, uri, reads.source_shape.as_ref(), obs).await {
        obs.source_shape = Some(shape);
    }
    if let Some(shape) = shape_if_due(&c, uri, reads.clone_shape.as_ref(), obs).await {
        obs.clone_shape = Some(shape);
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
    if let Some(pairs) = &reads.sync_compare
        && obs
            .sync
            .as_ref()
            .is_some_and(|v| v.state == crate::sync::SyncState::Drained)
    {
        obs.sync_compare = Some(compare_pairs(&c, uri, pairs).await);
    }
    if let Some(source) = &reads.change_streams {
        obs.change_streams = Some(streams::probe(&c, uri, source).await);
    }
    if let Some(pairs) = &reads.backup_compare
        && When::VerifySucceeded.holds(obs)
    {
        let digests = mongo::digest_pairs(&c, uri, pairs).await;
        obs.backup_compare = Some(digests.map_err(|e| e.to_string()));
    }
    if let Some(read) = &reads.claims {
        obs.claims = Some(
            mongo::read_claims(&c, uri, &read.ids, &read.uid)
                .await
                .map_err(|e| e.to_string()),
        );
    }
    obs.migration_doc = read_doc(&c, uri, reads.migration_doc.as_ref()).await;
    obs.source_migration_doc = read_doc(&c, uri, reads.source_migration_doc.as_ref()).await;
}

async fn read_doc(
    c: &mongodb::Client,
    uri: &Uri,
    doc: Option<&DocumentRead>,
) -> Option<std::result::Result<Option<MigrationDoc>, String>> {
    let d = doc?;
    let (db, coll) = (&d.database, &d.collection);
    let read = mongo::migration_doc(c, uri, db, coll, &d.filter, &d.version_field, &d.lock_field);
    Some(read.await.map_err(|e| e.to_string()))
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

async fn probe_pods(pods: &[Pod], p: &Probe) -> ProbeView {
    probe::pods(&views::probe_targets(pods), p).await
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    use super::*;

    fn owner(kind: &str, api_version: &str, name: &str, uid: &str) -> OwnerReference {
        OwnerReference {
            api_version: api_version.into(),
            kind: kind.into(),
            name: name.into(),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    fn meta(owners: Vec<OwnerReference>, released_by: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some("squidex-v7-env".into()),
            labels: Some(BTreeMap::from([(
                crate::plan::names::PLAN_LABEL.to_string(),
                "v7".to_string(),
            )])),
            owner_references: Some(owners),
            annotations: released_by
                .map(|u| BTreeMap::from([(RELEASED_BY.to_string(), u.to_string())])),
            ..Default::default()
        }
    }

    #[test]
    fn only_the_plans_uid_makes_an_object_its_own() {
        let plan = |uid: &str| owner("UpgradePlan", "cutover.dev/v1alpha1", "v7", uid);
        #[rustfmt::skip]
        let rows = [
            ("owner reference to this plan", meta(vec![plan("u1")], None), Mark::Own),
            ("one of several owners", meta(vec![owner("Deployment", "apps/v1", "x", "u9"), plan("u1")], None), Mark::Own),
            ("handed over by this plan", meta(vec![], Some("u1")), Mark::Released),
            ("handed over by another plan", meta(vec![], Some("u2")), Mark::Foreign),
            ("the plan label alone", meta(vec![], None), Mark::Foreign),
            ("an earlier plan of this name", meta(vec![plan("u0")], None), Mark::PreviousPlan),
            ("a plan of another name", meta(vec![owner("UpgradePlan", "cutover.dev/v1alpha1", "v8", "u3")], None), Mark::Foreign),
            ("another kind named like the plan", meta(vec![owner("Deployment", "apps/v1", "v7", "u4")], None), Mark::Foreign),
        ];
        for (what, m, want) in rows {
            assert_eq!(mark(&m, "v7", "u1"), want, "{what}");
        }
        // A plan without a uid (never from the API server) owns nothing.
        assert_eq!(
            mark(&meta(vec![plan("")], Some("")), "v7", ""),
            Mark::PreviousPlan
        );
    }
}
