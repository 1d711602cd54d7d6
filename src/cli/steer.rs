//! The steering commands (`promote`, `rollback`, `suspend`, `resume`): each writes what a
//! person would otherwise patch by hand, after checking that the plan is where the edit means
//! something. The verdicts are pure (a plan in, the patch and what to tell the user out); the
//! runner reads the plan, patches it by JSON merge patch under the field manager
//! `kubectl-cutover`, and prints what changed.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

use crate::crd::{CleanupState, CleanupStepName, Color, Mode, Phase, PromotionMode, UpgradePlan};
use crate::plan::conditions as cond;
use crate::plan::frozen;

/// The field manager of every write the plugin makes (visible in `managedFields`).
pub const FIELD_MANAGER: &str = "kubectl-cutover";

/// A plan by name and namespace.
#[derive(Args, Debug, Clone)]
pub struct PlanArgs {
    /// The UpgradePlan's name.
    pub plan: String,
    /// Its namespace (default: the kubeconfig's).
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub plan: PlanArgs,
    /// After read-only was lifted, also set `spec.rollback.acceptDataLoss: true`: the writes
    /// made on the new version since the lift stay in the clones, the app goes back without them.
    #[arg(long)]
    pub accept_data_loss: bool,
}

/// What a command does to a plan, decided from the plan alone.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Send `patch`; print `changes` (one line each) and `explain`.
    Patch {
        patch: Value,
        changes: Vec<String>,
        explain: String,
    },
    /// Already so: nothing to send; print the text, exit successfully.
    Nothing(String),
    /// The edit would mean nothing or harm: nothing sent, print the text, exit non-zero.
    Refuse(String),
}

/// The plan's namespace/name, for messages.
fn id(plan: &UpgradePlan) -> String {
    format!(
        "{}/{}",
        plan.namespace().unwrap_or_default(),
        plan.name_any()
    )
}

fn phase(plan: &UpgradePlan) -> Phase {
    plan.status.as_ref().map(|s| s.phase).unwrap_or_default()
}

/// The spec the operator acts on: the frozen one with the live steering fields.
fn acting(plan: &UpgradePlan) -> crate::crd::UpgradePlanSpec {
    frozen::effective(&plan.spec, plan.status.as_ref(), &plan.name_any()).spec
}

/// Read-only was lifted on the new version: writes since exist only in the clones.
pub fn lifted(plan: &UpgradePlan) -> bool {
    plan.status.as_ref().is_some_and(|s| {
        s.read_only_lifted_at.is_some() || matches!(s.phase, Phase::CleaningUp | Phase::Succeeded)
    })
}

/// `promote`: `spec.promotion.approved: true`, only where a manual promotion waits for it.
pub fn promote(plan: &UpgradePlan) -> Verdict {
    let spec = acting(plan);
    let phase = phase(plan);
    if spec.promotion.mode != PromotionMode::Manual {
        return Verdict::Refuse(format!(
            "UpgradePlan {} promotes automatically (spec.promotion.mode: auto): traffic switches as soon as the migration gates pass; there is nothing to approve",
            id(plan)
        ));
    }
    if phase != Phase::AwaitingPromotion {
        let why = if phase.is_before_switch() {
            "the migration gates have not passed yet; promote once it is AwaitingPromotion (watch it with `kubectl cutover status --watch`)"
        } else if matches!(
            phase,
            Phase::Failed | Phase::RolledBack | Phase::RollingBack
        ) {
            "the upgrade did not get to a promotion; see `kubectl cutover status`"
        } else {
            "it was promoted already"
        };
        return Verdict::Refuse(format!(
            "UpgradePlan {} is {phase}, not AwaitingPromotion: {why}",
            id(plan)
        ));
    }
    if plan.spec.promotion.approved {
        return Verdict::Nothing(format!(
            "UpgradePlan {} is approved already (spec.promotion.approved: true); the operator switches traffic at its next look",
            id(plan)
        ));
    }
    let green = plan
        .status
        .as_ref()
        .and_then(|s| s.green_deployment.clone())
        .unwrap_or_else(|| "the new version".into());
    Verdict::Patch {
        patch: json!({"spec": {"promotion": {"approved": true}}}),
        changes: vec!["spec.promotion.approved: false -> true".into()],
        explain: format!(
            "Traffic moves to {green}, then read-only is lifted on it. From then on writes go to the clones only, and a rollback loses them (`kubectl cutover rollback --accept-data-loss`)."
        ),
    }
}

/// `rollback`: `spec.traffic: blue` (and `spec.rollback.acceptDataLoss: true` when asked),
/// with what the operator will do about it.
pub fn rollback(plan: &UpgradePlan, accept_data_loss: bool) -> Verdict {
    let spec = acting(plan);
    let phase = phase(plan);
    let st = plan.status.clone().unwrap_or_default();
    if spec.mode == Mode::Rehearsal {
        return Verdict::Refuse(format!(
            "UpgradePlan {} is a rehearsal: it never moves traffic or touches the running app, so there is nothing to roll back (delete the plan to stop it)",
            id(plan)
        ));
    }
    if matches!(phase, Phase::RolledBack | Phase::Failed | Phase::Rehearsed) {
        return Verdict::Refuse(format!(
            "UpgradePlan {} is {phase} already: the old version serves; there is nothing to roll back",
            id(plan)
        ));
    }
    if let Some(why) = rollback_blocked(plan) {
        return Verdict::Refuse(format!(
            "UpgradePlan {}: a rollback would have nothing to return to: {why}. The new version keeps serving",
            id(plan)
        ));
    }
    let want_accept = accept_data_loss && !plan.spec.rollback.accept_data_loss;
    let want_blue = plan.spec.traffic != Color::Blue;
    if phase == Phase::RollingBack && !want_accept {
        return Verdict::Nothing(format!(
            "UpgradePlan {} is rolling back already: {}",
            id(plan),
            st.message
        ));
    }
    if !want_accept && !want_blue {
        let now = if st.message.is_empty() {
            format!("it is {phase}")
        } else {
            st.message.clone()
        };
        return Verdict::Nothing(format!(
            "UpgradePlan {} has spec.traffic: blue already: {now}",
            id(plan)
        ));
    }
    let mut patch = json!({"spec": {}});
    let mut changes = Vec::new();
    if want_blue {
        patch["spec"]["traffic"] = json!("blue");
        changes.push(format!(
            "spec.traffic: {} -> blue",
            plan.spec.traffic.as_str()
        ));
    }
    if want_accept {
        patch["spec"]["rollback"] = json!({"acceptDataLoss": true});
        changes.push("spec.rollback.acceptDataLoss: false -> true".into());
    }
    let blue = &spec.app.deployment;
    let explain = if phase == Phase::Pending {
        "Nothing was changed yet: the plan ends RolledBack without touching anything.".to_string()
    } else if !lifted(plan) {
        format!(
            "This is safe: read-only was not lifted on the new version (the plan is {phase}), so nobody wrote to the clones and the sources are as they were frozen. \
             cutover stops the plan's Jobs, restores Deployment {blue} read-write with its replicas and moves traffic back to it; nothing is lost (the clones are kept for inspection)."
        )
    } else {
        let lifted_at = st
            .read_only_lifted_at
            .map_or_else(|| "the switch".to_string(), |t| t.to_string());
        let clones = spec_clones(plan);
        if accept_data_loss || plan.spec.rollback.accept_data_loss {
            format!(
                "Read-only was lifted on the new version at {lifted_at}: the writes made since then are in the clones ({clones}) only. \
                 cutover makes the new version read-only first, then moves traffic back to Deployment {blue} on the sources; those writes are NOT carried back (they stay in the clones for you to carry over by hand)."
            )
        } else {
            format!(
                "Read-only was lifted on the new version at {lifted_at}: the writes made since then are in the clones ({clones}) only, and a rollback would lose them. \
                 cutover will refuse: condition DataDiverged (WritesSinceLift) with the number of documents added since the lift, and nothing moves; the new version keeps serving. \
                 To go back anyway: `kubectl cutover rollback {} --accept-data-loss`; to cancel: set spec.traffic back to green.",
                plan.name_any()
            )
        }
    };
    Verdict::Patch {
        patch,
        changes,
        explain,
    }
}

/// Why cleanup left nothing to return to (what the operator reports as RollbackBlocked).
fn rollback_blocked(plan: &UpgradePlan) -> Option<String> {
    let st = plan.status.as_ref()?;
    if let Some(c) =
        cond::get(&st.conditions, cond::ROLLBACK_BLOCKED).filter(|c| c.status == "True")
    {
        return Some(c.message.clone());
    }
    let done = |name: CleanupStepName| {
        st.cleanup.as_ref().is_some_and(|c| {
            c.steps
                .iter()
                .any(|s| s.name == name && s.state == CleanupState::Done)
        })
    };
    if done(CleanupStepName::DeleteBlue) {
        return Some("cleanup deleted the old version's Deployment (DeleteBlue)".into());
    }
    if done(CleanupStepName::DropSourceDatabases) {
        return Some(
            "cleanup dropped the source databases (DropSourceDatabases); restore them from the backup in status.backup first".into(),
        );
    }
    None
}

fn spec_clones(plan: &UpgradePlan) -> String {
    let names: Vec<String> = plan
        .status
        .as_ref()
        .and_then(|s| s.targets.as_ref())
        .map(|t| t.databases.iter().map(|d| d.clone.clone()).collect())
        .unwrap_or_default();
    if names.is_empty() {
        "see status.targets".into()
    } else {
        names.join(", ")
    }
}

/// `suspend` (`on`) and `resume`: `spec.suspend`.
pub fn suspend(plan: &UpgradePlan, on: bool) -> Verdict {
    let phase = phase(plan);
    let st = plan.status.clone().unwrap_or_default();
    if plan.spec.suspend == on {
        return Verdict::Nothing(format!(
            "UpgradePlan {} has spec.suspend: {on} already ({phase}: {})",
            id(plan),
            st.message
        ));
    }
    let patch = json!({"spec": {"suspend": on}});
    let changes = vec![format!("spec.suspend: {} -> {on}", !on)];
    if !on {
        return Verdict::Patch {
            patch,
            changes,
            explain: format!("The plan continues from {phase}."),
        };
    }
    if phase.is_terminal() {
        return Verdict::Refuse(format!(
            "UpgradePlan {} is {phase}: it has no phase left to pause",
            id(plan)
        ));
    }
    if phase == Phase::RollingBack {
        return Verdict::Refuse(format!(
            "UpgradePlan {} is RollingBack: a rollback is never paused",
            id(plan)
        ));
    }
    let read_only = match (st.read_only_since, st.read_only_lifted_at) {
        (Some(since), None) => format!(
            " The app has been read-only since {since} and stays read-only while the plan is suspended."
        ),
        _ => String::new(),
    };
    Verdict::Patch {
        patch,
        changes,
        explain: format!(
            "The plan pauses at the next phase boundary: the current step ({phase}) finishes first. Rollback and failure handling are never paused.{read_only} Resume with `kubectl cutover resume {}`.",
            plan.name_any()
        ),
    }
}

/// A client and the plan's API in its namespace (the kubeconfig's by default).
pub async fn plans_api(namespace: Option<String>) -> anyhow::Result<(Api<UpgradePlan>, String)> {
    let client = Client::try_default()
        .await
        .context("connecting to Kubernetes")?;
    let ns = namespace.unwrap_or_else(|| client.default_namespace().to_string());
    Ok((Api::namespaced(client, &ns), ns))
}

/// Reads the plan, with a clear error when it does not exist.
pub async fn get_plan(api: &Api<UpgradePlan>, ns: &str, name: &str) -> anyhow::Result<UpgradePlan> {
    api.get_opt(name)
        .await
        .with_context(|| format!("reading UpgradePlan {ns}/{name}"))?
        .with_context(|| format!("UpgradePlan {ns}/{name} not found"))
}

/// Reads the plan, decides, and sends the patch conditioned on the version it decided on
/// (a plan that changed in between is read and decided again). Returns the plan as read last.
async fn steer(
    args: &PlanArgs,
    decide: impl Fn(&UpgradePlan) -> Verdict,
) -> anyhow::Result<(Api<UpgradePlan>, String, UpgradePlan, bool)> {
    let (api, ns) = plans_api(args.namespace.clone()).await?;
    let pp = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    for _ in 0..10 {
        let plan = get_plan(&api, &ns, &args.plan).await?;
        match decide(&plan) {
            Verdict::Refuse(msg) => bail!("{msg}"),
            Verdict::Nothing(msg) => {
                println!("{msg}");
                return Ok((api, ns, plan, false));
            }
            Verdict::Patch {
                mut patch,
                changes,
                explain,
            } => {
                patch["metadata"] = json!({"resourceVersion": plan.resource_version()});
                match api.patch(&args.plan, &pp, &Patch::Merge(&patch)).await {
                    Ok(p) => {
                        println!("UpgradePlan {ns}/{} patched:", args.plan);
                        for c in changes {
                            println!("  {c}");
                        }
                        println!("{explain}");
                        return Ok((api, ns, p, true));
                    }
                    Err(kube::Error::Api(e)) if e.code == 409 => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Err(e) => {
                        return Err(e)
                            .with_context(|| format!("patching UpgradePlan {ns}/{}", args.plan));
                    }
                }
            }
        }
    }
    bail!(
        "UpgradePlan {ns}/{} kept changing while it was being patched; try again",
        args.plan
    )
}

pub async fn run_promote(args: PlanArgs) -> anyhow::Result<()> {
    steer(&args, promote).await.map(|_| ())
}

pub async fn run_suspend(args: PlanArgs, on: bool) -> anyhow::Result<()> {
    steer(&args, |p| suspend(p, on)).await.map(|_| ())
}

pub async fn run_rollback(args: RollbackArgs) -> anyhow::Result<()> {
    let accept = args.accept_data_loss;
    let (api, ns, plan, patched) = steer(&args.plan, |p| rollback(p, accept)).await?;
    if !patched || !lifted(&plan) || plan.spec.rollback.accept_data_loss {
        return Ok(());
    }
    // After the lift without acceptDataLoss the operator refuses: show its answer, with the
    // writes it counted, once it is in status.
    for _ in 0..60 {
        let p = get_plan(&api, &ns, &args.plan.plan).await?;
        if let Some(c) = p
            .status
            .as_ref()
            .and_then(|s| cond::get(&s.conditions, cond::DATA_DIVERGED))
            .filter(|c| c.status == "True")
        {
            println!("cutover refused (DataDiverged): {}", c.message);
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "The operator has not answered within 30s; `kubectl cutover status {} -n {ns}` shows the DataDiverged condition once it does.",
        args.plan.plan
    );
    Ok(())
}

#[cfg(test)]
mod tests;
