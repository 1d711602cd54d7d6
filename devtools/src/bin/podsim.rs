//! podsim: plays the kubelet for a control plane without nodes (see `cutover_devtools::podsim`).

use std::{io::IsTerminal, path::PathBuf};

use clap::Parser;
use cutover_devtools::podsim::ipam;

/// Runs the pods of a node-less Kubernetes control plane on this machine (KUBECONFIG from env).
#[derive(Parser)]
#[command(name = "podsim", version)]
struct Cli {
    /// Directory for pod logs (`pods/<ns>/<pod>.log`), volumes (`volumes/<ns>/<key>`) and state.
    #[arg(long, env = "PODSIM_STATE_DIR")]
    state_dir: PathBuf,
    /// The appsim binary (default: next to podsim, then PATH).
    #[arg(long, env = "PODSIM_APPSIM")]
    appsim: Option<PathBuf>,
    /// The cutover binary, run for `…/cutover:*` images (default: next to podsim, then PATH).
    #[arg(long, env = "PODSIM_CUTOVER")]
    cutover: Option<PathBuf>,
    /// Serve only namespaces labelled podsim.cutover.dev/instance=NAME (default: serve only
    /// namespaces without that label). Lets a test run its own podsim beside the dev env's.
    #[arg(long, env = "PODSIM_INSTANCE")]
    instance: Option<String>,
    /// Pod IPs are taken from this CIDR inside 127.0.0.0/8 (127.0.0.0/16 starts at 127.0.16.1).
    #[arg(long, env = "PODSIM_POD_NETWORK", default_value = ipam::DEFAULT_NETWORK)]
    pod_network: ipam::Network,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube_client::client::tls=error".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    cutover_devtools::podsim::run(cutover_devtools::podsim::Options {
        state_dir: cli.state_dir,
        appsim: cli.appsim,
        cutover: cli.cutover,
        instance: cli.instance,
        network: cli.pod_network,
    })
    .await
}
