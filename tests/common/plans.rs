//! UpgradePlans: the Squidex fixture as the tests apply it, and waiting on and reading a plan.

use std::time::{Duration, Instant};

use cutover::crd::{CleanupState, CleanupStep, CleanupStepName, Phase, UpgradePlan};
use cutover::fixtures::SquidexPlan;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};

use super::{App, Env, Operator, pod_log_tails};

/// The Squidex-style plan the tests start from: two databases, the migration-document gate.
pub fn squidex_plan(name: &str, app: &App, target_version: u32) -> serde_json::Value {
    SquidexPlan::appsim(&app.db, &app.content_db, target_version).object_json(name)
}

/// Makes each migration step of the new version take `ms` milliseconds (appsim's
/// `APPSIM_STEP_DELAY_MS`): the plan stays in Migrating a while, or times out there.
pub fn slow_migration(plan: &mut serde_json::Value, ms: u64) {
    plan["spec"]["target"]["env"] =
        serde_json::json!([{"name": "APPSIM_STEP_DELAY_MS", "value": ms.to_string()}]);
}

impl Env {
    pub fn plans(&self, ns: &str) -> Api<UpgradePlan> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Waits until the plan reaches `phase` (see `wait_plan`).
    pub async fn wait_phase(
        &self,
        op: &Operator,
        ns: &str,
        plan: &str,
        phase: Phase,
        timeout: Duration,
    ) -> UpgradePlan {
        let what = format!("phase {phase}");
        self.wait_plan(op, ns, plan, &what, timeout, |p| {
            p.status.as_ref().map(|s| s.phase).unwrap_or_default() == phase
        })
        .await
    }

    /// Applies a plan (server-side) and waits until it reaches `phase` (see `wait_phase`).
    pub async fn apply_until(
        &self,
        op: &Operator,
        ns: &str,
        plan: serde_json::Value,
        phase: Phase,
        timeout: Duration,
    ) -> UpgradePlan {
        let name = plan["metadata"]["name"].as_str().unwrap().to_string();
        self.apply(ns, plan).await;
        self.wait_phase(op, ns, &name, phase, timeout).await
    }

    /// Waits until the plan's condition `type_` is True (see `wait_plan`).
    pub async fn wait_condition(
        &self,
        op: &Operator,
        ns: &str,
        plan: &str,
        type_: &str,
        timeout: Duration,
    ) -> UpgradePlan {
        let what = format!("{type_}=True");
        self.wait_plan(op, ns, plan, &what, timeout, |p| {
            condition(p, type_).is_some_and(|c| c.status == "True")
        })
        .await
    }

    /// A JSON merge patch of a plan (what `kubectl patch --type merge` sends).
    pub async fn patch_plan(&self, ns: &str, name: &str, patch: serde_json::Value) {
        self.plans(ns)
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap_or_else(|e| panic!("patch plan {ns}/{name}: {e}"));
    }

    /// Server-side apply of a plan, returning the API server's refusal instead of panicking.
    pub async fn try_apply_plan(&self, ns: &str, obj: &serde_json::Value) -> Result<(), String> {
        let name = obj["metadata"]["name"].as_str().unwrap().to_string();
        self.plans(ns)
            .patch(
                &name,
                &PatchParams::apply("test").force(),
                &Patch::Apply(obj),
            )
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Polls the plan until `pred` holds; panics with the status, the operator's log and the
    /// app's pod logs on timeout or when the plan ends in a terminal phase that does not
    /// satisfy `pred` (Succeeded is not final: cleanup runs and a rollback may follow).
    pub async fn wait_plan(
        &self,
        op: &Operator,
        ns: &str,
        plan: &str,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&UpgradePlan) -> bool,
    ) -> UpgradePlan {
        let start = Instant::now();
        loop {
            let p = self.plans(ns).get(plan).await.expect("get plan");
            if pred(&p) {
                return p;
            }
            let phase = p.status.as_ref().map(|s| s.phase).unwrap_or_default();
            if (phase.is_terminal() && phase != Phase::Succeeded) || start.elapsed() > timeout {
                panic!(
                    "plan {ns}/{plan}: waited {:?} for {what}, it is {phase}.\nstatus: {}\noperator log tail:\n{}\n{}",
                    start.elapsed(),
                    serde_json::to_string_pretty(&p.status).unwrap(),
                    op.log_tail(60),
                    pod_log_tails(ns, 12)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until a cleanup step of a Succeeded plan reaches `state` (see `wait_plan`).
    pub async fn wait_cleanup(
        &self,
        op: &Operator,
        ns: &str,
        plan: &str,
        step: CleanupStepName,
        state: CleanupState,
        timeout: Duration,
    ) -> UpgradePlan {
        let what = format!("cleanup step {step:?} to be {state:?}");
        self.wait_plan(op, ns, plan, &what, timeout, |p| {
            cleanup_step(p, step).is_some_and(|s| s.state == state)
        })
        .await
    }

    /// Deletes the namespace's plans and waits until their finalizers ran (the operator must
    /// still be alive), then deletes the namespace and the databases. Without this the
    /// namespace stays Terminating once the operator is gone.
    pub async fn finish(&self, op: &Operator, ns: &str, dbs: &[String]) {
        let plans = self.plans(ns);
        let _ = plans
            .delete_collection(&DeleteParams::default(), &Default::default())
            .await;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            match plans.list(&Default::default()).await {
                Ok(l) if l.items.is_empty() => break,
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        let _ = op;
        self.cleanup(ns, dbs).await;
    }
}

pub fn status(p: &UpgradePlan) -> cutover::crd::UpgradePlanStatus {
    p.status.clone().expect("status")
}

/// The backup is recorded with its SHA-256 checksum (64 hex digits).
pub fn assert_backup_checksummed(st: &cutover::crd::UpgradePlanStatus) {
    let backup = st.backup.as_ref().expect("backup recorded");
    assert_eq!(
        backup.checksum.as_ref().map(String::len),
        Some(64),
        "{backup:?}"
    );
}

/// The phases the plan went through, in order.
pub fn phase_names(p: &UpgradePlan) -> Vec<Phase> {
    status(p).phases.iter().map(|r| r.name).collect()
}

/// The phases an upgrade without a promotion wait walks from `Pending` to `Succeeded`, in order.
pub fn upgrade_walk() -> Vec<Phase> {
    Phase::ALL
        .into_iter()
        .take_while(|p| *p != Phase::Rehearsed)
        // Syncing, VerifyingBackup: `cloneMethod: online` only.
        .filter(|p| {
            !matches!(
                p,
                Phase::AwaitingPromotion | Phase::Syncing | Phase::VerifyingBackup
            )
        })
        .collect()
}

/// A cleanup step as recorded in the plan's status.
pub fn cleanup_step(plan: &UpgradePlan, name: CleanupStepName) -> Option<&CleanupStep> {
    plan.status
        .as_ref()?
        .cleanup
        .as_ref()?
        .steps
        .iter()
        .find(|s| s.name == name)
}

/// The phase and a plan's current condition of `type_`, for assertions.
pub fn condition<'a>(
    plan: &'a UpgradePlan,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    plan.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}
