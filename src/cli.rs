//! The command-line entry points: `cutover run`, `cutover status`, and the commands people
//! steer a plan with (also as the kubectl plugin `kubectl cutover`, see `plugin`).

pub mod lock;
pub mod plugin;
pub mod steer;
pub mod watch;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{Api, Client, ResourceExt};

use crate::controller::{self, Settings};
use crate::crd::{Phase, UpgradePlan};
use crate::lease;

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "CUTOVER_NAMESPACE")]
    pub namespace: Option<String>,
    /// Log format.
    #[arg(long, env = "CUTOVER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
    /// Log filter in RUST_LOG syntax.
    #[arg(long, env = "RUST_LOG", default_value = "info,kube=warn")]
    pub log_filter: String,
    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(long, env = "CUTOVER_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: std::net::SocketAddr,
    /// Expect standby replicas: wait quietly for the lease instead of warning about a second instance.
    /// Every instance takes the lease before acting, so two never act at once either way.
    #[arg(long, env = "CUTOVER_LEADER_ELECTION")]
    pub leader_election: bool,
    /// Name of the coordination.k8s.io Lease.
    #[arg(long, env = "CUTOVER_LEASE_NAME", default_value = "cutover")]
    pub lease_name: String,
    /// Namespace of the Lease (default: POD_NAMESPACE, else the watched namespace, else `default`).
    #[arg(long, env = "CUTOVER_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// How long a lease holder may go without renewing before another instance takes over.
    #[arg(long, env = "CUTOVER_LEASE_DURATION", default_value = "15s")]
    pub lease_duration: crate::crd::GoDuration,
    /// This instance's identity in the Lease and in events (default: POD_NAME, else host-pid).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Plans reconciled at the same time. Bounded so that starting with many plans does not
    /// hold every one of them in flight at once (memory, API load).
    #[arg(long, env = "CUTOVER_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,
    /// How long to wait at start for an unreachable API server (checking for the UpgradePlan
    /// CRD, with back-off) before exiting; 0 checks once.
    #[arg(long, env = "CUTOVER_STARTUP_WAIT", default_value = "2m")]
    pub startup_wait: crate::crd::GoDuration,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Args, Debug, Clone)]
pub struct StatusArgs {
    /// The UpgradePlan's name.
    pub plan: String,
    /// Its namespace (default: the kubeconfig's).
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Print the view again on every change of the plan until it reaches a terminal phase
    /// (Ctrl-C stops watching; the plan goes on).
    #[arg(long, short = 'w')]
    pub watch: bool,
}

pub fn init_tracing(format: LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

/// Fails with a clear message when the CRD is missing, instead of a watch erroring forever.
/// An API server that cannot be reached (restarting, like the operator itself after a node
/// restart) is asked again with back-off for up to `wait`, each failure logged once; then
/// the operator exits saying so. An answer (the CRD missing, access denied) is final.
pub async fn ensure_crd(client: &Client, wait: std::time::Duration) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let start = std::time::Instant::now();
    let mut backoff = std::time::Duration::from_secs(1);
    loop {
        let e = match crds.get_opt("upgradeplans.cutover.dev").await {
            Ok(Some(_)) => return Ok(()),
            Ok(None) => bail!(
                "the UpgradePlan CRD is not installed in this cluster; install it with `cutover crd | kubectl apply -f -` (or the Helm chart) and start again"
            ),
            Err(e) if !crate::k8s::error::api_unreachable(&e) => {
                return Err(e).context("checking for the UpgradePlan CRD");
            }
            Err(e) => e,
        };
        let waited = start.elapsed();
        if waited >= wait {
            return Err(e).context(format!(
                "checking for the UpgradePlan CRD: the API server was unreachable for {}s (--startup-wait {}s); check the API server and the kubeconfig / in-cluster configuration",
                waited.as_secs(),
                wait.as_secs()
            ));
        }
        let pause = backoff.min(wait - waited);
        tracing::warn!(
            "the API server is unreachable (checking for the UpgradePlan CRD: {e}); trying again in {}s, for up to {}s in all",
            pause.as_secs_f32().ceil(),
            wait.as_secs()
        );
        tokio::time::sleep(pause).await;
        backoff = (backoff * 2).min(std::time::Duration::from_secs(15));
    }
}

impl RunArgs {
    /// The controller's settings, with the defaults that depend on the environment filled in.
    pub fn settings(&self) -> Settings {
        let identity = self.identity.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        });
        let lease_namespace = self
            .lease_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .or_else(|| self.namespace.clone())
            .unwrap_or_else(|| "default".into());
        Settings {
            namespace: self.namespace.clone(),
            http_addr: self.http_addr,
            lease: lease::Config {
                namespace: lease_namespace,
                name: self.lease_name.clone(),
                identity,
                duration: self.lease_duration.as_std(),
                election: self.leader_election,
            },
            concurrency: self.concurrency,
        }
    }
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    init_tracing(args.log_format, &args.log_filter);
    let client = Client::try_default()
        .await
        .context("connecting to Kubernetes (kubeconfig or in-cluster config)")?;
    ensure_crd(&client, args.startup_wait.as_std()).await?;
    controller::run(client, args.settings()).await
}

pub async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let client = Client::try_default()
        .await
        .context("connecting to Kubernetes")?;
    let ns = args
        .namespace
        .unwrap_or_else(|| client.default_namespace().to_string());
    let api: Api<UpgradePlan> = Api::namespaced(client, &ns);
    let plan = api
        .get_opt(&args.plan)
        .await?
        .with_context(|| format!("UpgradePlan {ns}/{} not found", args.plan))?;
    if args.watch {
        return watch::watch(api, &ns, &args.plan).await;
    }
    print!("{}", render_status(&plan));
    Ok(())
}

/// The human view of a plan: where it is, the timeline with durations, and the conditions.
pub fn render_status(plan: &UpgradePlan) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let st = plan.status.clone().unwrap_or_default();
    let _ = writeln!(
        out,
        "UpgradePlan {}/{}: {} -> {}",
        plan.namespace().unwrap_or_default(),
        plan.name_any(),
        plan.spec.app.deployment,
        plan.spec.target.image
    );
    let _ = writeln!(out, "Phase:   {}", st.phase);
    let _ = writeln!(out, "Message: {}", st.message);
    if let Some(c) = st.active_color {
        let _ = writeln!(out, "Active:  {}", c.as_str());
    }
    if let Some(c) = &st.clone
        && let Some(m) = c.method
    {
        let why = c.reason.as_deref().unwrap_or_default();
        let _ = writeln!(out, "Clone method: {} ({why})", crate::plan::spelled(m));
    }
    let predicted = st.prediction.as_ref().map(|p| {
        format!(
            "{:.1}s predicted by rehearsal {}",
            p.read_only_seconds, p.rehearsal
        )
    });
    if let Some(since) = st.read_only_since {
        let until = st
            .read_only_lifted_at
            .map_or("still read-only".to_string(), |l| {
                let p = predicted
                    .as_ref()
                    .map_or(String::new(), |p| format!("; {p}"));
                format!(
                    "lifted {l} ({:.1}s measured{p})",
                    l.since(since).as_secs_f64()
                )
            });
        let _ = writeln!(out, "Read-only: since {since}, {until}");
    } else if let Some(p) = &predicted {
        let _ = writeln!(out, "Read-only window: {p}");
    }
    let _ = writeln!(
        out,
        "\n{:<20} {:<26} {:>10}  {:<12} DETAIL",
        "PHASE", "STARTED", "DURATION", "OUTCOME"
    );
    for r in &st.phases {
        let duration = r.finished_at.map_or("running".to_string(), |f| {
            format!("{:.1}s", f.since(r.started_at).as_secs_f64())
        });
        let outcome = r.outcome.map_or(String::new(), |o| format!("{o:?}"));
        let _ = writeln!(
            out,
            "{:<20} {:<26} {:>10}  {:<12} {}",
            r.name.as_str(),
            r.started_at.to_string(),
            duration,
            outcome,
            r.detail
        );
    }
    if !st.conditions.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<20} {:<7} {:<24} MESSAGE",
            "CONDITION", "STATUS", "REASON"
        );
        for c in &st.conditions {
            let _ = writeln!(
                out,
                "{:<20} {:<7} {:<24} {}",
                c.type_, c.status, c.reason, c.message
            );
        }
    }
    if let Some(c) = st.cleanup.as_ref().filter(|c| !c.steps.is_empty()) {
        let _ = writeln!(
            out,
            "\n{:<24} {:<17} {:<26} MESSAGE",
            "CLEANUP STEP", "STATE", "DUE / DONE"
        );
        for s in &c.steps {
            let when = s
                .done_at
                .or(s.due)
                .map_or_else(|| "-".to_string(), |t| t.to_string());
            let _ = writeln!(
                out,
                "{:<24} {:<17} {:<26} {}",
                format!("{:?}", s.name),
                format!("{:?}", s.state),
                when,
                s.message
            );
        }
        for o in &c.obsolete_collections {
            let _ = writeln!(
                out,
                "  obsolete: {} (reads when listed: {})",
                o.name, o.reads
            );
        }
    }
    if matches!(st.phase, Phase::Succeeded | Phase::RolledBack) {
        let _ = writeln!(
            out,
            "\nGit: `cutover git-patch {} -n {}` prints the change to commit (-f FILE rewrites your manifests)",
            plan.name_any(),
            plan.namespace().unwrap_or_default()
        );
    }
    if st.phase == Phase::Failed
        && let Some(f) = &st.failure
    {
        let _ = writeln!(out, "\nFailed in {} ({}): {}", f.phase, f.reason, f.message);
    }
    out
}
