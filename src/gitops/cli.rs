//! `cutover git-patch PLAN [-n NS] [-f FILE]... [--in-place]`: the Git change after a plan,
//! printed as a patch, or made in the given manifest files.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::{Api, Client};

use super::{GitChange, change, render_patch, rewrite_manifests};
use crate::crd::UpgradePlan;

#[derive(Args, Debug, Clone)]
pub struct GitPatchArgs {
    /// The UpgradePlan's name.
    pub plan: String,
    /// Its namespace (default: the kubeconfig's).
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// A manifest file Git holds for the app (multi-document YAML with the Deployment and/or
    /// the Service); repeatable. The rewritten manifests are printed to stdout.
    #[arg(long = "file", short = 'f')]
    pub files: Vec<PathBuf>,
    /// Write the rewritten manifests back to the files instead of printing them.
    #[arg(long, requires = "files")]
    pub in_place: bool,
}

pub async fn git_patch(args: GitPatchArgs) -> anyhow::Result<()> {
    let client = Client::try_default()
        .await
        .context("connecting to Kubernetes")?;
    let ns = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let change = read_change(&client, &ns, &args.plan).await?;
    if args.files.is_empty() {
        print!("{}", render_patch(&change));
        return Ok(());
    }
    if let GitChange::Nothing { plan, phase, why } = &change {
        eprintln!("UpgradePlan {plan} ended {phase}: nothing to change in Git ({why}).");
    }
    let mut outputs = Vec::new();
    let (mut deployment, mut svc) = (false, false);
    for f in &args.files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        let r = rewrite_manifests(&text, &change).with_context(|| format!("in {}", f.display()))?;
        deployment |= r.deployment;
        svc |= r.service;
        outputs.push((f, text, r.text));
    }
    if let GitChange::Converge(c) = &change {
        if !deployment && !svc {
            bail!(
                "{} hold(s) neither Deployment {} (or {}) nor Service {}: pass the file(s) that declare them",
                args.files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                c.old_deployment,
                c.new_deployment,
                c.service
            );
        }
        if !deployment {
            eprintln!(
                "note: no Deployment {} in the files: declare {} in Git by hand (`cutover git-patch {}` prints it)",
                c.old_deployment, c.new_deployment, c.plan
            );
        }
        if !svc {
            eprintln!(
                "note: no Service {} in the files: its selector must become the one `cutover git-patch {}` prints",
                c.service, c.plan
            );
        }
    }
    for (i, (f, before, after)) in outputs.iter().enumerate() {
        if args.in_place {
            if before != after {
                std::fs::write(f, after).with_context(|| format!("writing {}", f.display()))?;
                eprintln!("rewrote {}", f.display());
            } else {
                eprintln!("unchanged {}", f.display());
            }
        } else {
            if i > 0 && !after.starts_with("---") {
                println!("---");
            }
            print!("{after}");
        }
    }
    Ok(())
}

/// The Git change after plan `ns/name`, from the plan and the live objects it names.
pub async fn read_change(client: &Client, ns: &str, name: &str) -> anyhow::Result<GitChange> {
    let plans: Api<UpgradePlan> = Api::namespaced(client.clone(), ns);
    let plan = plans
        .get_opt(name)
        .await?
        .with_context(|| format!("UpgradePlan {ns}/{name} not found"))?;
    let st = plan.status.clone().unwrap_or_default();
    let spec = crate::plan::frozen::effective(&plan.spec, Some(&st), name).spec;
    let targets = crate::plan::targets(&spec, name, Some(&st));
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let green = deployments.get_opt(&targets.green).await?;
    let blue = deployments
        .get_opt(&targets.blue)
        .await?
        // Only the Deployment the plan started from, not one re-created under its name.
        .filter(|b| targets.blue_uid.is_none() || b.metadata.uid == targets.blue_uid);
    let service = Api::<Service>::namespaced(client.clone(), ns)
        .get_opt(&targets.service)
        .await?;
    Ok(change(
        &plan,
        green.as_ref(),
        service.as_ref(),
        blue.as_ref(),
    )?)
}
