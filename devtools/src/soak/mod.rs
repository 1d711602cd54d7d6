//! `soak`: many upgrades at once under faults, with users writing (issue #16, first
//! increment). Deploys N appsim apps (each in its own namespace, on two databases, one or two
//! replicas), starts a write load through every app's Service, starts two `cutover run`
//! replicas with leader election, applies one UpgradePlan per app in waves (a seeded mix of
//! clone methods and plan kinds: see [`scenario::Kind`]), injects faults on a seeded
//! schedule ([`faults`]) and checks the invariants at the end ([`check`]). The seed
//! reproduces the draw and the schedule (not the interleaving).

pub mod check;
pub mod drive;
pub mod faults;
pub mod jobs;
pub mod operator;
pub mod scenario;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::bench::cluster::{Cluster, unique};
use crate::load::endpoints::Target;

pub struct Options {
    pub apps: usize,
    pub waves: usize,
    /// Seconds between waves.
    pub wave_gap: u64,
    pub faults: usize,
    pub seed: u64,
    /// Writes per second per app.
    pub rate: f64,
    pub cutover: PathBuf,
    /// The repository (for `hack/dev-env restart`).
    pub repo: PathBuf,
    pub plan_timeout: Duration,
    pub keep: bool,
    /// The clone methods drawn from.
    pub methods: Vec<cutover::crd::CloneMethod>,
    /// The kinds of fault the schedule deals.
    pub fault_kinds: Vec<faults::Fault>,
    /// Print the draw and the fault schedule the seed gives, and stop.
    pub dry_run: bool,
}

pub struct Outcome {
    pub rows: Vec<check::Row>,
    pub faults: Vec<faults::Injected>,
    /// Violations of the whole run (databases nobody reserved).
    pub violations: Vec<String>,
    /// Operator replicas that exited on their own and were started again.
    pub operator_restarts: Vec<String>,
    pub elapsed: Duration,
}

fn say(t0: Instant, msg: impl std::fmt::Display) {
    eprintln!("[{:>6.1}s] {msg}", t0.elapsed().as_secs_f64());
}

pub async fn run(opts: Options) -> anyhow::Result<Outcome> {
    let t0 = Instant::now();
    let run = unique();
    let work = std::env::temp_dir().join(format!("cutover-soak-{run}"));
    if !opts.dry_run {
        std::fs::create_dir_all(&work)?;
    }
    say(
        t0,
        format!("seed {}; logs in {}", opts.seed, work.display()),
    );
    let mut rng = scenario::Rng::new(opts.seed);
    let apps = scenario::draw(&mut rng, opts.apps, opts.waves, &run, &opts.methods);
    let schedule = faults::schedule(
        &mut rng,
        opts.faults,
        opts.waves,
        opts.wave_gap,
        &opts.fault_kinds,
    );
    for s in &apps {
        say(
            t0,
            format!(
                "app {}: {} {} x{} wave {}",
                s.namespace,
                scenario::method_name(s.method),
                s.kind.label(),
                s.replicas,
                s.wave
            ),
        );
    }
    for f in &schedule {
        say(
            t0,
            format!("fault planned at +{} s: {}", f.at_s, f.fault.label()),
        );
    }

    if opts.dry_run {
        return Ok(Outcome {
            rows: vec![],
            faults: vec![],
            violations: vec![],
            operator_restarts: vec![],
            elapsed: t0.elapsed(),
        });
    }
    let c = Arc::new(Cluster::connect().await?);
    let prefix = format!("soak-{run}-");
    let result = soak(&opts, &c, &apps, &schedule, &work, &prefix, t0).await;
    if result.is_err() && !opts.keep {
        // The operator is gone: the plans' finalizers are cleared by hand after a short wait.
        cleanup(&c, &apps, Duration::from_secs(5), t0).await;
    }
    c.mongo.clone().shutdown().await;
    let (rows, injected, violations, operator_restarts) = result?;
    Ok(Outcome {
        rows,
        faults: injected,
        violations,
        operator_restarts,
        elapsed: t0.elapsed(),
    })
}

/// The server's database names.
async fn database_names(c: &Cluster) -> anyhow::Result<std::collections::BTreeSet<String>> {
    Ok(c.mongo.list_database_names().await?.into_iter().collect())
}

/// "No database exists at the end that no plan reserved": every database made during the
/// run is an app's source, a database some plan recorded in `status.targets`, or the
/// server's or the operator's own (`admin`, `local`, `config`; `cutover`, its claims).
/// And no app's source database is gone.
async fn check_databases(
    c: &Cluster,
    apps: &[scenario::Scenario],
    before: &std::collections::BTreeSet<String>,
) -> Vec<String> {
    let mut v = Vec::new();
    let now = match database_names(c).await {
        Ok(n) => n,
        Err(e) => return vec![format!("listing databases: {e:#}")],
    };
    let mut reserved: std::collections::BTreeSet<String> = ["admin", "local", "config", "cutover"]
        .into_iter()
        .map(String::from)
        .collect();
    for s in apps {
        reserved.insert(s.db.clone());
        reserved.insert(s.content_db.clone());
        if !now.contains(&s.db) || !now.contains(&s.content_db) {
            v.push(format!(
                "{}: a source database is gone ({} or {})",
                s.namespace, s.db, s.content_db
            ));
        }
        let st = c
            .plan_status(&s.namespace, &s.plan)
            .await
            .unwrap_or_default();
        for pair in st["targets"]["databases"].as_array().into_iter().flatten() {
            for k in ["source", "clone"] {
                if let Some(name) = pair[k].as_str() {
                    reserved.insert(name.to_string());
                }
            }
        }
    }
    for db in now.difference(before) {
        if !reserved.contains(db) {
            v.push(format!(
                "database {db} exists, made during the run, and no plan reserved it"
            ));
        }
    }
    v
}

async fn soak(
    opts: &Options,
    c: &Arc<Cluster>,
    apps: &[scenario::Scenario],
    schedule: &[faults::Planned],
    work: &std::path::Path,
    prefix: &str,
    t0: Instant,
) -> anyhow::Result<(
    Vec<check::Row>,
    Vec<faults::Injected>,
    Vec<String>,
    Vec<String>,
)> {
    let dbs_before = database_names(c).await?;
    let job_watch = jobs::JobWatch::start(c.client.clone(), prefix.to_string()).await?;
    // 1. The apps, deployed side by side.
    futures::future::try_join_all(apps.iter().map(|s| deploy(c, s))).await?;
    say(t0, format!("{} apps deployed", apps.len()));

    // 2. A write load per app through its Service.
    let mut loads = Vec::new();
    for s in apps {
        let target = Target {
            namespace: s.namespace.clone(),
            service: crate::bench::app::SERVICE.into(),
            port: None,
        };
        let mut cfg =
            crate::load::Config::new(target, work.join(format!("writes-{}.jsonl", s.index)));
        cfg.rate = opts.rate;
        cfg.writers = 2;
        cfg.run = format!("soak{}", s.index);
        cfg.seed = opts.seed.wrapping_add(s.index as u64);
        loads.push(crate::load::start(c.client.clone(), cfg).await?);
    }
    say(t0, "write loads started");

    // 3. The operator: two replicas, leader election.
    let ops = Arc::new(tokio::sync::Mutex::new(
        operator::Operators::start(&opts.cutover, work, 2).await?,
    ));
    let supervisor = {
        let ops = ops.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                for m in ops.lock().await.revive() {
                    say(
                        t0,
                        format!("operator replica {m}; started again after a back-off"),
                    );
                }
            }
        })
    };
    say(t0, "operator started (2 replicas)");
    tokio::time::sleep(Duration::from_secs(3)).await;

    // 4. The plans in waves, and the faults.
    let plans_t0 = Instant::now();
    let drivers: Vec<_> = apps
        .iter()
        .map(|s| {
            let c = c.clone();
            let s = s.clone();
            let delay = Duration::from_secs(opts.wave_gap * s.wave as u64);
            let timeout = opts.plan_timeout;
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                drive::drive(&c, &s, timeout).await
            })
        })
        .collect();
    let namespaces: Vec<String> = apps.iter().map(|s| s.namespace.clone()).collect();
    let mut injected = Vec::new();
    for f in schedule {
        let due = Duration::from_secs(f.at_s);
        if let Some(wait) = due.checked_sub(plans_t0.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        if drivers.iter().all(|d| d.is_finished()) {
            say(
                t0,
                format!("fault {} skipped: every plan has ended", f.fault.label()),
            );
            continue;
        }
        let mut at_ms = crate::watchlog::now_ms();
        let mut at_s = plans_t0.elapsed().as_secs_f64();
        let detail = match faults::inject(f.fault, &c.client, &ops, &opts.repo, &namespaces).await {
            Ok(d) => d,
            Err(e) => format!("FAILED to inject: {e:#}"),
        };
        if f.fault == faults::Fault::DeleteJobPod {
            // It waited for a Job pod: the fault is when the pod was deleted.
            at_ms = crate::watchlog::now_ms();
            at_s = plans_t0.elapsed().as_secs_f64();
        }
        say(
            t0,
            format!("fault {} at +{at_s:.1} s: {detail}", f.fault.label()),
        );
        injected.push(faults::Injected {
            at_s,
            fault: f.fault,
            at_ms,
            detail,
        });
    }
    let mut driven = Vec::new();
    for (s, d) in apps.iter().zip(drivers) {
        let d = d.await.context("a plan driver panicked")?;
        say(
            t0,
            format!(
                "plan {}/{} done: {:?} {}",
                s.namespace,
                s.plan,
                d.actions,
                d.error.as_deref().unwrap_or("")
            ),
        );
        driven.push(d);
    }

    // 5. Users keep writing a while on the version that serves, then the invariants.
    tokio::time::sleep(Duration::from_secs(8)).await;
    for l in loads {
        let sum = l.stop().await;
        say(t0, format!("load stopped: {sum}"));
    }
    let mut rows = Vec::new();
    for (s, d) in apps.iter().zip(&driven) {
        let records = crate::load::log::read(&work.join(format!("writes-{}.jsonl", s.index)))?;
        let log = ops.lock().await.all_logs();
        let seen = check::RunSeen {
            faults: &injected,
            operator_log: &log,
            secret: &c.mongo_uri,
            jobs: job_watch.created_twice(&s.namespace),
        };
        rows.push(check::check_app(c, s, d, &records, &seen).await);
    }
    job_watch.stop();
    let violations = check_databases(c, apps, &dbs_before).await;
    // With the operator still running, so that it finishes the plans' finalizers.
    if !opts.keep {
        cleanup(c, apps, Duration::from_secs(60), t0).await;
    }
    supervisor.abort();
    let mut ops = ops.lock().await;
    ops.stop().await;
    Ok((rows, injected, violations, ops.restarts.clone()))
}

async fn cleanup(c: &Cluster, apps: &[scenario::Scenario], wait: Duration, t0: Instant) {
    say(t0, "removing the apps' namespaces and databases");
    let dbs: Vec<Vec<String>> = apps.iter().map(|s| s.databases()).collect();
    futures::future::join_all(
        apps.iter()
            .zip(&dbs)
            .map(|(s, dbs)| c.cleanup(&s.namespace, dbs, wait)),
    )
    .await;
}

/// The app (Secret, PVC, Deployment, Service) in a namespace of its own, then scaled to
/// its replicas.
async fn deploy(c: &Cluster, s: &scenario::Scenario) -> anyhow::Result<()> {
    c.create_namespace(&s.namespace).await?;
    crate::bench::app::deploy_blue(
        c,
        &s.namespace,
        &s.db,
        &s.content_db,
        Duration::from_secs(120),
    )
    .await
    .with_context(|| format!("deploying the app in {}", s.namespace))?;
    if s.replicas > 1 {
        let api = Api::<Deployment>::namespaced(c.client.clone(), &s.namespace);
        api.patch(
            crate::bench::app::DEPLOYMENT,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": s.replicas}})),
        )
        .await?;
        let start = Instant::now();
        loop {
            let d = api.get(crate::bench::app::DEPLOYMENT).await?;
            if crate::bench::app::rolled_out(&serde_json::to_value(&d)?) {
                break;
            }
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(120),
                "{} did not scale to {} replicas",
                s.namespace,
                s.replicas
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    Ok(())
}
