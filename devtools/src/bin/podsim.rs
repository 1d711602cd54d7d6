//! podsim: plays the kubelet for a control plane without nodes (see `cutover_devtools::podsim`).

use std::path::PathBuf;

use clap::Parser;

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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    cutover_devtools::podsim::run(cutover_devtools::podsim::Options {
        state_dir: cli.state_dir,
        appsim: cli.appsim,
    })
    .await
}
