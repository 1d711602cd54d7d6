//! The `cutover` command: the operator (`run`), its CRD (`crd`), and helpers for people. The
//! same binary answers as the kubectl plugin `kubectl cutover` when invoked as
//! `kubectl-cutover` (a symlink), with every command below.

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use cutover::cli::{lock, plugin, steer};

#[derive(Parser)]
#[command(
    name = "cutover",
    version,
    about = "Blue-green upgrades of an application together with its MongoDB data"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the UpgradePlan CustomResourceDefinition as YAML (pipe it to `kubectl apply -f -`).
    Crd,
    /// Run the operator against the cluster of the current kubeconfig or in-cluster config.
    Run(cutover::cli::RunArgs),
    /// Print the phase timeline, durations and conditions of a plan (--watch: until it ends).
    Status(cutover::cli::StatusArgs),
    /// Approve a manual promotion waiting in AwaitingPromotion (spec.promotion.approved: true).
    Promote(steer::PlanArgs),
    /// Move traffic back to the old version (spec.traffic: blue), explaining what it costs.
    Rollback(steer::RollbackArgs),
    /// Release the stale migration lock the plan reports, after showing it and asking.
    ReleaseLock(lock::ReleaseLockArgs),
    /// Pause the plan at the next phase boundary (spec.suspend: true).
    Suspend(steer::PlanArgs),
    /// Let a suspended plan continue (spec.suspend: false).
    Resume(steer::PlanArgs),
    /// Print the change to make in Git after a plan ended, or make it in manifest files (-f).
    GitPatch(cutover::gitops::cli::GitPatchArgs),
    /// Print the version.
    Version,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let argv0 = std::env::args_os().next();
    let name = if plugin::invoked_as_plugin(argv0.as_deref()) {
        plugin::PLUGIN_NAME
    } else {
        "cutover"
    };
    let matches = plugin::as_invoked(Cli::command(), argv0.as_deref()).get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let result = match cli.command {
        Command::Crd => {
            print!("{}", cutover::crd::crd_yaml());
            Ok(())
        }
        Command::Version => {
            println!("cutover {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Run(args) => cutover::cli::run(args).await,
        Command::Status(args) => cutover::cli::status(args).await,
        Command::Promote(args) => steer::run_promote(args).await,
        Command::Rollback(args) => steer::run_rollback(args).await,
        Command::ReleaseLock(args) => lock::run(args).await,
        Command::Suspend(args) => steer::run_suspend(args, true).await,
        Command::Resume(args) => steer::run_suspend(args, false).await,
        Command::GitPatch(args) => cutover::gitops::cli::git_patch(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
