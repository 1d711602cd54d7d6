//! The spec a plan acts on once it has started: the one it accepted at the end of `Pending`
//! (`status.frozenSpec`), with only the steering fields taken from the live spec. An edit to
//! anything else — the app, the target, the databases, the backup, the gates, the timeouts —
//! would otherwise retarget a plan half-way (a rollback deleting whatever a new
//! `deploymentName` names, a cleanup dropping a database added after the backup).

use serde_json::Value;

use crate::crd::{CloneMethod, UpgradePlanSpec, UpgradePlanStatus};

use super::validate::validate;

/// Changed fields named in the condition; the rest are counted.
const MAX_FIELDS_LISTED: usize = 8;

/// The spec to act on and the live edits it leaves out.
#[derive(Clone, Debug, PartialEq)]
pub struct Effective {
    pub spec: UpgradePlanSpec,
    /// `spec.`-paths of live edits that are not acted on, sorted; empty when none.
    pub ignored: Vec<String>,
}

/// `live` as far as it may steer the plan, `status.frozenSpec` for everything else. Before the
/// plan froze its spec (in `Pending`, or a status written by an older cutover), `live` itself.
pub fn effective(
    live: &UpgradePlanSpec,
    status: Option<&UpgradePlanStatus>,
    plan: &str,
) -> Effective {
    let Some(frozen) = status.and_then(|s| s.frozen_spec.as_deref()) else {
        return Effective {
            spec: live.clone(),
            ignored: Vec::new(),
        };
    };
    let mut spec = frozen.clone();
    // `auto` acts on the method `Pending` chose (the frozen spec keeps `auto`).
    spec.backup.clone_method = resolved(frozen, status);
    spec.traffic = live.traffic;
    spec.promotion.approved = live.promotion.approved;
    spec.rollback.accept_data_loss = live.rollback.accept_data_loss;
    spec.suspend = live.suspend;
    spec.cleanup = live.cleanup.clone();
    let mut ignored = Vec::new();
    // A cleanup edit is checked like the rest was at `Pending` (its patterns must name the
    // plan's databases, its delays be ordered); an invalid one is not acted on.
    let cleanup_errors: Vec<String> = validate(&spec, plan)
        .into_iter()
        .filter(|e| e.starts_with("spec.cleanup"))
        .collect();
    if !cleanup_errors.is_empty() {
        spec.cleanup = frozen.cleanup.clone();
        ignored.push(format!("spec.cleanup ({})", cleanup_errors.join("; ")));
    }
    let mut steered = live.clone();
    steered.traffic = frozen.traffic;
    steered.promotion.approved = frozen.promotion.approved;
    steered.rollback.accept_data_loss = frozen.rollback.accept_data_loss;
    steered.suspend = frozen.suspend;
    steered.cleanup = frozen.cleanup.clone();
    let (a, b) = (to_value(frozen), to_value(&steered));
    diff("spec", &a, &b, &mut ignored);
    ignored.sort();
    Effective { spec, ignored }
}

/// One line for the `SpecChangeIgnored` condition, or `None` when nothing is ignored.
pub fn ignored_message(ignored: &[String]) -> Option<String> {
    if ignored.is_empty() {
        return None;
    }
    let mut listed: Vec<&str> = ignored
        .iter()
        .take(MAX_FIELDS_LISTED)
        .map(String::as_str)
        .collect();
    let more = ignored.len().saturating_sub(MAX_FIELDS_LISTED);
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    listed.dedup();
    Some(format!(
        "The plan started with another value of {}{more}; it keeps acting on the values it started with. Revert the edit, or let this plan finish (or roll it back) and apply a new plan. Only traffic, promotion.approved, rollback.acceptDataLoss, suspend and cleanup steer a running plan",
        listed.join(", ")
    ))
}

fn to_value(spec: &UpgradePlanSpec) -> Value {
    serde_json::to_value(spec).expect("a spec serializes")
}

/// The paths under `path` where `a` and `b` differ: objects by key, anything else whole.
fn diff(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    if a == b {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let null = Value::Null;
                diff(
                    &format!("{path}.{k}"),
                    x.get(k).unwrap_or(&null),
                    y.get(k).unwrap_or(&null),
                    out,
                );
            }
        }
        _ => out.push(path.to_string()),
    }
}

#[cfg(test)]
mod tests;

/// The method a plan acts on: the one recorded in `status.clone.method` when its spec says
/// `auto`, else the spec's. `auto` itself until `Pending` chose.
pub fn resolved(spec: &UpgradePlanSpec, status: Option<&UpgradePlanStatus>) -> CloneMethod {
    match spec.backup.clone_method {
        CloneMethod::Auto => status
            .and_then(|s| s.clone.as_ref())
            .and_then(|c| c.method)
            .unwrap_or(CloneMethod::Auto),
        m => m,
    }
}
