//! The operator loop: observe -> decide -> record -> act, driven by watch events on plans,
//! their Jobs, and the Deployments and Services they name.

mod decode;
mod retry;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::runtime::controller::{Action as Requeue, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{Instrument, info, info_span, warn};

use crate::copy::Copies;
use crate::crd::{Timestamp, UpgradePlan};
use crate::k8s::apply::MANAGER;
use crate::k8s::execute::{ExecError, execute};
use crate::k8s::observe::observe;
use crate::k8s::{databases, views};
use crate::metrics::{ErrorLabel, Metrics};
use crate::mongo::Clients;
use crate::plan::{EventKind, ReconcileFailure, decide, frozen, names::PLAN_LABEL, needs, targets};
use crate::sync::Syncs;
use crate::{http, lease};
use retry::Retries;

pub const FINALIZER: &str = "cutover.dev/finalizer";

/// Why a reconcile failed; `label()` is stable for metrics and event reasons.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading the cluster: {0}")]
    Observe(#[source] kube::Error),
    #[error("writing the plan's status: {0}")]
    Status(#[source] kube::Error),
    #[error("updating the plan's finalizer: {0}")]
    Finalizer(#[source] Box<kube::Error>),
    #[error("{action}: {source}")]
    Execute {
        action: &'static str,
        #[source]
        source: ExecError,
    },
}

impl Error {
    pub fn label(&self) -> ErrorLabel {
        let (step, cause) = match self {
            Error::Observe(_) => ("observe", None),
            Error::Status(_) => ("status", None),
            Error::Finalizer(_) => ("finalizer", None),
            Error::Execute { action, source } => (*action, Some(source.label())),
        };
        ErrorLabel { step, cause }
    }
}

pub struct Context {
    pub client: Client,
    pub mongo: Clients,
    /// Server-side copies running in the background, beside the clients they were started with.
    pub copies: Copies,
    /// Online syncs (`backup.cloneMethod: online`) running in the background, likewise.
    pub syncs: Syncs,
    pub recorder: Recorder,
    pub store: Store<UpgradePlan>,
    pub metrics: Arc<Metrics>,
    pub retries: Retries<ObjectRef<UpgradePlan>>,
}

/// What the operator is told to do, however it was configured (flags, environment).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Watch only this namespace; `None` watches all.
    pub namespace: Option<String>,
    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    pub http_addr: SocketAddr,
    /// The Lease every instance takes before acting; its identity also signs events.
    pub lease: lease::Config,
    /// Plans reconciled at the same time.
    pub concurrency: u16,
}

pub async fn run(client: Client, settings: Settings) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let lease_cfg = settings.lease;
    let identity = lease_cfg.identity.clone();
    let (plans, deployments, services, jobs) = match &settings.namespace {
        Some(ns) => (
            // Untyped: decoded one by one (see decode).
            Api::<DynamicObject>::namespaced_with(client.clone(), ns, &decode::resource()),
            Api::<Deployment>::namespaced(client.clone(), ns),
            Api::<Service>::namespaced(client.clone(), ns),
            Api::<Job>::namespaced(client.clone(), ns),
        ),
        None => (
            Api::all_with(client.clone(), &decode::resource()),
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
        ),
    };
    // The cache keeps a slim copy of each plan, with the spec it acts on (see k8s::cache);
    // reconcile reads plans afresh.
    let (store, writer) = reflector::store();
    // Watched untyped and decoded one by one: an undecodable plan is answered by the
    // reporter (see decode) instead of failing the watch of every plan.
    let (undecodable, bad_plans) = tokio::sync::mpsc::unbounded_channel();
    let plan_events = decode::decoded(
        watcher::watcher(plans.clone(), watcher::Config::default().any_semantic()),
        undecodable,
    )
    .modify(crate::k8s::cache::slim)
    .reflect(writer)
    .applied_objects();
    let controller = Controller::for_stream(plan_events, store.clone()).with_config(
        kube::runtime::controller::Config::default().concurrency(settings.concurrency),
    );
    {
        let store = store.clone();
        let metrics = metrics.clone();
        let addr = http::serve(
            settings.http_addr,
            http::Endpoint {
                ready: ready.clone(),
                metrics: Box::new(move || {
                    let plans = store.state();
                    metrics.render(
                        plans.iter().map(|p| p.as_ref()),
                        Timestamp(jiff::Timestamp::now()),
                    )
                }),
            },
        )
        .await?;
        info!(%addr, "serving /healthz, /readyz and /metrics");
    }
    // Served before the lease is taken: a standby is alive (liveness) but not ready.
    let leases: Api<Lease> = Api::namespaced(client.clone(), &lease_cfg.namespace);
    lease::acquire(&leases, &lease_cfg).await?;
    {
        let leases = leases.clone();
        let cfg = lease_cfg.clone();
        tokio::spawn(async move {
            lease::hold(leases, cfg).await;
            // Another instance may act now; continuing would race it.
            tracing::error!("leadership lost; exiting so that only one instance acts");
            std::process::exit(1);
        });
    }

    // Ready once this instance holds the lease and can list plans (API reachable, RBAC right).
    // Listed untyped, so that one undecodable plan does not make the operator unready.
    match plans.list(&kube::api::ListParams::default().limit(1)).await {
        Ok(_) => ready.store(true, Ordering::Relaxed),
        Err(e) => warn!("listing UpgradePlans failed, not ready: {e}"),
    }
    let ctx = Arc::new(Context {
        client: client.clone(),
        mongo: Clients::default(),
        copies: Copies::default(),
        syncs: Syncs::default(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "cutover".into(),
                instance: Some(identity.clone()),
            },
        ),
        store: store.clone(),
        metrics: metrics.clone(),
        retries: Retries::default(),
    });
    tokio::spawn(decode::reporter(
        client.clone(),
        ctx.recorder.clone(),
        bad_plans,
    ));
    let by_deployment = store.clone();
    let by_service = store.clone();
    info!(
        namespace = settings.namespace.as_deref().unwrap_or("<all>"),
        "cutover controller starting"
    );
    controller
        .owns(jobs, watcher::Config::default().labels(PLAN_LABEL))
        // Blue is not owned by the plan and green is owned only until the handover, so both
        // are mapped by name: a rollout finishing wakes the plan that waits on it.
        .watches(
            deployments,
            watcher::Config::default(),
            move |d: Deployment| {
                plans_naming(&by_deployment, &d.namespace(), |p| {
                    let t = targets_of(p);
                    t.blue == d.name_any() || t.green == d.name_any() || cleanup_refused(p)
                })
            },
        )
        .watches(services, watcher::Config::default(), move |s: Service| {
            plans_naming(&by_service, &s.namespace(), |p| {
                targets_of(p).service == s.name_any() || cleanup_refused(p)
            })
        })
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            // Reconcile errors were already reported by error_policy; only the rest is new here.
            // A plan deleted between a watch event and its reconcile is not news either.
            if let Err(e) = res
                && !matches!(
                    e,
                    kube::runtime::controller::Error::ReconcilerFailed(..)
                        | kube::runtime::controller::Error::ObjectNotFound(..)
                )
            {
                warn!("controller: {e}");
            }
        })
        .await;
    lease::release(&leases, &lease_cfg).await;
    info!("cutover controller stopped");
    Ok(())
}

/// The targets of a cached plan (whose spec is already the one it acts on: `cache::slim`).
fn targets_of(p: &UpgradePlan) -> crate::plan::Targets {
    targets(&p.spec, &p.name_any(), p.status.as_ref())
}

/// A refused cleanup step may hinge on any Service or Deployment of the namespace (who
/// selects the old version, who names the sources): their changes wake the plan.
fn cleanup_refused(p: &UpgradePlan) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.cleanup.as_ref())
        .is_some_and(|c| {
            c.steps
                .iter()
                .any(|s| s.state == crate::crd::CleanupState::Refused)
        })
}

fn plans_naming(
    store: &Store<UpgradePlan>,
    ns: &Option<String>,
    matches: impl Fn(&UpgradePlan) -> bool,
) -> Vec<ObjectRef<UpgradePlan>> {
    store
        .state()
        .iter()
        .filter(|p| &p.namespace() == ns && matches(p))
        .map(|p| ObjectRef::from(p.as_ref()))
        .collect()
}

async fn reconcile(obj: Arc<UpgradePlan>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let span =
        info_span!("reconcile", namespace = %ns, plan = %name, phase = tracing::field::Empty);
    let started = std::time::Instant::now();
    let result = reconcile_inner(ctx.clone(), ns, name)
        .instrument(span)
        .await;
    let label = result.as_ref().err().map(Error::label);
    ctx.metrics
        .reconciled(started.elapsed().as_secs_f64(), label);
    if result.is_ok() {
        ctx.retries.succeeded(&ObjectRef::from(obj.as_ref()));
    }
    result
}

/// Works from a fresh read of the plan, not the triggering (cached) object.
async fn reconcile_inner(ctx: Arc<Context>, ns: String, name: String) -> Result<Requeue, Error> {
    let api: Api<UpgradePlan> = Api::namespaced(ctx.client.clone(), &ns);
    // The cached object may lag behind our own last status write; decide on the latest.
    let Some(mut plan) = api.get_opt(&name).await.map_err(Error::Observe)? else {
        return Ok(Requeue::await_change());
    };
    // From here on the plan is what it accepted when it started, steered by the live spec.
    let effective = frozen::effective(&plan.spec, plan.status.as_ref(), &name);
    plan.spec = effective.spec;
    let deleting = plan.metadata.deletion_timestamp.is_some();
    let has_finalizer = plan.finalizers().iter().any(|f| f == FINALIZER);
    if deleting && !has_finalizer {
        return Ok(Requeue::await_change());
    }
    if !deleting && !has_finalizer {
        add_finalizer(&api, &plan).await?;
    }

    // Cached copies: each with the spec it acts on (`cache::slim`).
    let others = ctx.store.state();
    let targets = targets(&plan.spec, &name, plan.status.as_ref());
    let reads = needs(
        &plan.spec,
        plan.status.as_ref(),
        &views::plan_meta(&plan),
        &targets,
    );
    // A copy runs only while the plan reads its progress; any other state lets go of it.
    if !reads.server_copy {
        databases::release_copy(&ctx.copies, &plan);
    }
    // Likewise the online sync: a plan that failed, rolled back, went past Cloning or is
    // deleted keeps no stream writing to its clones.
    if !reads.sync {
        databases::release_sync(&ctx.syncs, &plan);
    }
    let mut world = observe(
        &ctx.client,
        &ctx.mongo,
        &ctx.copies,
        &ctx.syncs,
        &plan,
        &reads,
        &others,
    )
    .await
    .map_err(Error::Observe)?;
    world.observed.plan.ignored_changes = effective.ignored;
    world.observed.plan.failing =
        ctx.retries
            .failing(&ObjectRef::from(&plan))
            .map(|(attempts, step, message)| ReconcileFailure {
                attempts,
                step,
                message: world
                    .uri
                    .as_ref()
                    .map_or_else(|| message.clone(), |u| u.redact(&message)),
            });
    let now = Timestamp(jiff::Timestamp::now());
    let decision = decide(&plan.spec, plan.status.as_ref(), &world.observed, now);
    tracing::Span::current().record("phase", decision.status.phase.as_str());

    // Intent first: the status (new phase, what is about to happen) is recorded before the
    // side effect, so a restart anywhere resumes from a truthful record.
    if plan.status.as_ref() != Some(&decision.status) {
        let body = json!({
            "apiVersion": "cutover.dev/v1alpha1",
            "kind": "UpgradePlan",
            "status": decision.status,
        });
        api.patch_status(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(body),
        )
        .await
        .map_err(Error::Status)?;
        ctx.metrics
            .transition(plan.status.as_ref(), &decision.status);
    }
    let reference = plan.object_ref(&());
    for e in &decision.events {
        let event = Event {
            type_: match e.kind {
                EventKind::Normal => EventType::Normal,
                EventKind::Warning => EventType::Warning,
            },
            reason: e.reason.as_str().into(),
            note: Some(truncate(&e.note, 1000)),
            action: decision.status.phase.as_str().into(),
            secondary: None,
        };
        if let Err(err) = ctx.recorder.publish(&event, &reference).await {
            warn!("publishing event {}: {err}", e.reason.as_str());
        }
    }
    if let Some(action) = &decision.action {
        info!(action = action.label(), "{}", decision.status.message);
        execute(
            &ctx.client,
            &ctx.mongo,
            &ctx.copies,
            &ctx.syncs,
            &plan,
            &targets,
            &world,
            action,
        )
        .await
        .map_err(|source| Error::Execute {
            action: action.label(),
            source,
        })?;
    }
    if deleting && decision.status.phase.is_terminal() {
        remove_finalizer(&api, &plan).await?;
        return Ok(Requeue::await_change());
    }
    Ok(match decision.requeue_after {
        Some(d) => Requeue::requeue(d),
        None => Requeue::requeue(Duration::from_secs(300)),
    })
}

/// Retries with backoff (see `retry`), and warns once per distinct error rather than on
/// every attempt while it persists.
fn error_policy(plan: Arc<UpgradePlan>, error: &Error, ctx: Arc<Context>) -> Requeue {
    let label = error.label().to_string();
    let message = error.to_string();
    let retry = ctx
        .retries
        .failed(ObjectRef::from(plan.as_ref()), &label, &message);
    warn!(plan = %plan.name_any(), %label, retry_in = ?retry.after, "reconcile failed: {message}");
    if retry.announce {
        // Errors become Warning events in one place.
        let reference = plan.object_ref(&());
        let event = Event {
            type_: EventType::Warning,
            reason: crate::plan::Reason::ReconcileError.as_str().into(),
            note: Some(truncate(&message, 1000)),
            action: label,
            secondary: None,
        };
        tokio::spawn(async move {
            let _ = ctx.recorder.publish(&event, &reference).await;
        });
    }
    Requeue::requeue(retry.after)
}

async fn add_finalizer(api: &Api<UpgradePlan>, plan: &UpgradePlan) -> Result<(), Error> {
    let patch = if plan.metadata.finalizers.is_some() {
        json!([{"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER}])
    } else {
        json!([{"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}])
    };
    patch_finalizers(api, plan, patch).await
}

async fn remove_finalizer(api: &Api<UpgradePlan>, plan: &UpgradePlan) -> Result<(), Error> {
    let Some(idx) = plan.finalizers().iter().position(|f| f == FINALIZER) else {
        return Ok(());
    };
    // The test guards against removing someone else's finalizer if the list moved meanwhile.
    let patch = json!([
        {"op": "test", "path": format!("/metadata/finalizers/{idx}"), "value": FINALIZER},
        {"op": "remove", "path": format!("/metadata/finalizers/{idx}")}
    ]);
    patch_finalizers(api, plan, patch).await
}

/// Sends a JSON patch of the plan's finalizers.
async fn patch_finalizers(
    api: &Api<UpgradePlan>,
    plan: &UpgradePlan,
    patch: serde_json::Value,
) -> Result<(), Error> {
    let patch: json_patch::Patch = serde_json::from_value(patch).expect("valid json patch");
    api.patch(
        &plan.name_any(),
        &PatchParams::default(),
        &Patch::<()>::Json(patch),
    )
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))?;
    Ok(())
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut cut = max - 1;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &s[..cut])
}
