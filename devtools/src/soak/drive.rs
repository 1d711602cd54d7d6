//! One app's plan, driven as its owner would: applied in its wave, approved after a delay,
//! rolled back before or after the lift, followed to a terminal phase.

use std::time::{Duration, Instant};

use kube::api::{Patch, PatchParams};
use serde_json::json;

use super::scenario::{Kind, Scenario};
use crate::bench::cluster::Cluster;
use crate::bench::plan::TARGET_VERSION;

pub const TERMINAL: [&str; 4] = ["Succeeded", "Rehearsed", "RolledBack", "Failed"];

/// What the driver saw and did.
#[derive(Debug, Clone, Default)]
pub struct Driven {
    /// Unix milliseconds of the apply and of the terminal phase (0: never reached).
    pub applied_ms: i64,
    pub done_ms: i64,
    /// What the driver did, in order (approval, rollback request), or why it gave up.
    pub actions: Vec<String>,
    pub error: Option<String>,
    /// A refused rollback: the `DataDiverged` condition's message as the driver saw it.
    pub refused: Option<String>,
    /// Migration locks the driver released by hand (see [`release_lost_lock`]).
    pub locks_released: u32,
}

/// The environment's MongoDB-wire server (secantusd) can lose an acknowledged update that
/// races a `findAndModify` upsert failing with E11000 (reproduced outside cutover: the
/// holder's `IsLocked: false` is acknowledged and gone, the document stays locked). With two
/// replicas, appsim's migration lock then stays held after the migration completed, and the
/// plan would wait in `Migrating` until `migration.timeout`. The driver does what
/// docs/operations.md tells an owner to do for a lock held by no one: after 20 s at the target
/// version, still locked, it releases the lock in the clone (never the source), and the row
/// says so.
async fn release_lost_lock(c: &Cluster, s: &Scenario, st: &serde_json::Value) -> bool {
    let clone = st["targets"]["databases"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["source"] == s.db.as_str())
        .and_then(|p| p["clone"].as_str());
    let Some(clone) = clone else { return false };
    let migration = c
        .mongo
        .database(clone)
        .collection::<mongodb::bson::Document>("Migration");
    matches!(
        migration
            .update_one(
                mongodb::bson::doc! {"_id": "Default", "IsLocked": true, "Version": TARGET_VERSION as i64},
                mongodb::bson::doc! {"$set": {"IsLocked": false}},
            )
            .await,
        Ok(r) if r.modified_count == 1
    )
}

/// A merge patch of the plan, retried for 60 s (the API server may be restarting).
async fn merge(c: &Cluster, s: &Scenario, patch: serde_json::Value) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        match c
            .plans(&s.namespace)
            .patch(&s.plan, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if start.elapsed() < Duration::from_secs(60) => {
                tracing::debug!(error = %e, "patching the plan; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The message of the plan's condition of this type, if it is there and True.
fn condition(st: &serde_json::Value, type_: &str) -> Option<String> {
    st["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_ && c["status"] == "True")
        .map(|c| c["message"].as_str().unwrap_or_default().to_string())
}

pub async fn drive(c: &Cluster, s: &Scenario, timeout: Duration) -> Driven {
    let mut d = Driven::default();
    if let Err(e) = drive_inner(c, s, timeout, &mut d).await {
        d.error = Some(format!("{e:#}"));
    }
    d
}

async fn drive_inner(
    c: &Cluster,
    s: &Scenario,
    timeout: Duration,
    d: &mut Driven,
) -> anyhow::Result<()> {
    let apply_start = Instant::now();
    while let Err(e) = c.apply_plan(&s.namespace, &s.plan_json()).await {
        // The API server may be restarting.
        anyhow::ensure!(
            apply_start.elapsed() < Duration::from_secs(60),
            "applying the plan: {e:#}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    d.applied_ms = crate::watchlog::now_ms();
    let start = Instant::now();
    let mut waiting_since: Option<Instant> = None;
    let mut lifted_since: Option<Instant> = None;
    let mut requested = false;
    let mut requested_at: Option<Instant> = None;
    let mut locked_done_since: Option<Instant> = None;
    let mut refused_at: Option<Instant> = None;
    let mut steered_back = false;
    loop {
        // A status read may fail while the API server or the network has a bad moment.
        let st = match c.plan_status(&s.namespace, &s.plan).await {
            Ok(st) => st,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let phase = st["phase"].as_str().unwrap_or("Pending");
        // A late rollback may come after Succeeded (the old version is kept, scaled down
        // after `scaleDownBlueAfter`): Succeeded is not its end.
        let rollback_due = matches!(s.kind, Kind::RollbackLate { .. }) && !requested;
        // A refused rollback ends when the refusal is seen on a Succeeded plan.
        if let Kind::RollbackRefused { .. } = s.kind {
            if d.refused.is_none()
                && let Some(m) = condition(&st, "DataDiverged")
            {
                d.actions.push(format!("refused ({phase}): {m}"));
                d.refused = Some(m);
                refused_at = Some(Instant::now());
            }
            // Refused and held: the owner steers back to the new version (as the condition
            // says), and the plan goes on to Succeeded.
            if let (Some(_), Some(at)) = (&d.refused, refused_at)
                && !steered_back
                && at.elapsed() >= Duration::from_secs(3)
            {
                merge(c, s, json!({"spec": {"traffic": "green"}})).await?;
                d.actions.push(format!("traffic: green again ({phase})"));
                steered_back = true;
            }
            let waited = requested_at.is_some_and(|t| t.elapsed() > Duration::from_secs(60));
            if TERMINAL.contains(&phase) && phase != "Succeeded"
                || phase == "Succeeded" && (steered_back || waited)
            {
                d.done_ms = crate::watchlog::now_ms();
                return Ok(());
            }
        } else if TERMINAL.contains(&phase) && !(rollback_due && phase == "Succeeded") {
            d.done_ms = crate::watchlog::now_ms();
            return Ok(());
        }
        let locked_done = phase == "Migrating"
            && st["migration"]["locked"] == true
            && st["migration"]["version"].as_i64() == Some(TARGET_VERSION as i64);
        match (locked_done, locked_done_since) {
            (false, _) => locked_done_since = None,
            (true, None) => locked_done_since = Some(Instant::now()),
            (true, Some(t)) if t.elapsed() > Duration::from_secs(20) => {
                if release_lost_lock(c, s, &st).await {
                    d.locks_released += 1;
                    d.actions.push(
                        "released the clone's migration lock, held 20 s at the target version (the server lost the holder's release)".into(),
                    );
                }
                locked_done_since = None;
            }
            (true, Some(_)) => {}
        }
        let awaiting = phase == "AwaitingPromotion";
        if awaiting && waiting_since.is_none() {
            waiting_since = Some(Instant::now());
        }
        let lifted = st["readOnlyLiftedAt"].is_string();
        if lifted && lifted_since.is_none() {
            lifted_since = Some(Instant::now());
        }
        match s.kind {
            Kind::Manual { delay_s }
                if !requested
                    && waiting_since
                        .is_some_and(|t| t.elapsed() >= Duration::from_secs(delay_s)) =>
            {
                merge(c, s, json!({"spec": {"promotion": {"approved": true}}})).await?;
                d.actions
                    .push(format!("approved {delay_s} s after AwaitingPromotion"));
                requested = true;
            }
            Kind::RollbackEarly if !requested && awaiting => {
                merge(c, s, json!({"spec": {"traffic": "blue"}})).await?;
                d.actions
                    .push("traffic: blue while AwaitingPromotion".into());
                requested = true;
            }
            Kind::RollbackLate { after_s }
                if !requested
                    && lifted_since
                        .is_some_and(|t| t.elapsed() >= Duration::from_secs(after_s)) =>
            {
                merge(
                    c,
                    s,
                    json!({"spec": {"traffic": "blue", "rollback": {"acceptDataLoss": true}}}),
                )
                .await?;
                d.actions.push(format!(
                    "traffic: blue + acceptDataLoss {after_s} s after the lift ({phase})"
                ));
                requested = true;
            }
            Kind::RollbackRefused { after_s }
                if !requested
                    && lifted_since
                        .is_some_and(|t| t.elapsed() >= Duration::from_secs(after_s)) =>
            {
                merge(c, s, json!({"spec": {"traffic": "blue"}})).await?;
                d.actions.push(format!(
                    "traffic: blue without acceptDataLoss {after_s} s after the lift ({phase})"
                ));
                requested = true;
                requested_at = Some(Instant::now());
            }
            _ => {}
        }
        if start.elapsed() > timeout {
            anyhow::bail!("still {phase} after {timeout:?}: {}", st["message"]);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
