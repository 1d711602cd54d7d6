//! The `cutover` command: the operator (`run`), its CRD (`crd`), and helpers for people.

use clap::{Parser, Subcommand};

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
    /// Print the phase timeline, durations and conditions of a plan.
    Status(cutover::cli::StatusArgs),
    /// Print the change to make in Git after a plan ended, or make it in manifest files (-f).
    GitPatch(cutover::gitops::cli::GitPatchArgs),
    /// Print the version.
    Version,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
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
        Command::GitPatch(args) => cutover::gitops::cli::git_patch(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cutover: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
