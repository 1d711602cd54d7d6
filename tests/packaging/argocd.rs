//! The Argo CD health check (docs/argocd/health.lua), run in Lua 5.1 as Argo CD runs it.

use serde_json::{Value, json};

use crate::support::read;

/// Runs docs/argocd/health.lua on an object, as Argo CD does: global `obj`, returns a table.
pub fn argocd_health(obj: &Value) -> (String, String) {
    use mlua::serde::SerializeOptions;
    use mlua::{Lua, LuaSerdeExt, Table};
    let lua = Lua::new();
    // JSON null means absent, as in Argo CD's conversion of unstructured objects.
    let opts = SerializeOptions::new()
        .serialize_none_to_null(false)
        .serialize_unit_to_null(false);
    lua.globals()
        .set("obj", lua.to_value_with(obj, opts).unwrap())
        .unwrap();
    let hs: Table = lua
        .load(read("docs/argocd/health.lua"))
        .set_name("health.lua")
        .eval()
        .unwrap_or_else(|e| panic!("health.lua failed on {obj}: {e}"));
    (hs.get("status").unwrap(), hs.get("message").unwrap())
}

fn plan_with_status(generation: i64, status: Value) -> Value {
    json!({"apiVersion": "cutover.dev/v1alpha1", "kind": "UpgradePlan",
           "metadata": {"name": "p", "namespace": "n", "generation": generation},
           "spec": {}, "status": status})
}

fn cond(type_: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({"type": type_, "status": status, "reason": reason, "message": message,
           "lastTransitionTime": "2026-01-01T00:00:00Z"})
}

#[test]
fn argocd_health_check_judges_sample_statuses() {
    let running = |phase: &str, conditions: Vec<Value>| {
        plan_with_status(
            2,
            json!({"phase": phase, "observedGeneration": 2, "message": format!("in {phase}"), "conditions": conditions}),
        )
    };
    let failure = json!({"phase": "Migrating", "reason": "MigrationTimedOut", "message": "gates did not pass"});
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            "no status",
            json!({"apiVersion": "cutover.dev/v1alpha1", "kind": "UpgradePlan", "metadata": {"name": "p", "generation": 1}, "spec": {}}),
            "Progressing",
            "Waiting for status",
        ),
        (
            "status without phase",
            plan_with_status(1, json!({})),
            "Progressing",
            "Waiting for status",
        ),
        (
            "null status",
            plan_with_status(1, Value::Null),
            "Progressing",
            "Waiting for status",
        ),
        (
            "spec change not yet observed",
            plan_with_status(3, json!({"phase": "Succeeded", "observedGeneration": 2})),
            "Progressing",
            "Waiting for cutover to observe generation 3",
        ),
        (
            "pending",
            running("Pending", vec![]),
            "Progressing",
            "in Pending",
        ),
        (
            "backing up",
            running(
                "BackingUp",
                vec![cond("Progressing", "True", "BackingUp", "x")],
            ),
            "Progressing",
            "in BackingUp",
        ),
        (
            "migrating",
            running(
                "Migrating",
                vec![cond("MigrationLockStale", "False", "LockMoved", "released")],
            ),
            "Progressing",
            "in Migrating",
        ),
        (
            "stale lock",
            running(
                "Migrating",
                vec![cond(
                    "MigrationLockStale",
                    "True",
                    "LockHeldByNoOne",
                    "release it with mongosh",
                )],
            ),
            "Degraded",
            "MigrationLockStale: release it with mongosh",
        ),
        (
            "awaiting promotion",
            running("AwaitingPromotion", vec![]),
            "Suspended",
            "in AwaitingPromotion",
        ),
        (
            "suspended",
            running(
                "Cloning",
                vec![cond(
                    "Progressing",
                    "False",
                    "Suspended",
                    "Suspended before DeployingGreen",
                )],
            ),
            "Suspended",
            "in Cloning",
        ),
        (
            "rollback refused",
            running(
                "CleaningUp",
                vec![cond(
                    "DataDiverged",
                    "True",
                    "WritesSinceLift",
                    "Rollback refused",
                )],
            ),
            "Degraded",
            "DataDiverged: Rollback refused",
        ),
        (
            "requested rollback running",
            running("RollingBack", vec![]),
            "Progressing",
            "in RollingBack",
        ),
        (
            "rollback after failure",
            plan_with_status(
                1,
                json!({"phase": "RollingBack", "observedGeneration": 1, "failure": failure}),
            ),
            "Degraded",
            "Rolling back after MigrationTimedOut: gates did not pass",
        ),
        (
            "failed",
            plan_with_status(
                1,
                json!({"phase": "Failed", "observedGeneration": 1, "message": "m", "failure": failure}),
            ),
            "Degraded",
            "MigrationTimedOut in Migrating: gates did not pass",
        ),
        (
            "failed without failure record",
            plan_with_status(1, json!({"phase": "Failed", "observedGeneration": 1})),
            "Degraded",
            "Failed",
        ),
        (
            "succeeded",
            running(
                "Succeeded",
                vec![cond("Ready", "True", "Succeeded", "done")],
            ),
            "Healthy",
            "in Succeeded",
        ),
        (
            "rehearsed",
            running("Rehearsed", vec![]),
            "Healthy",
            "in Rehearsed",
        ),
        (
            "rolled back on request",
            running("RolledBack", vec![]),
            "Healthy",
            "in RolledBack",
        ),
    ];
    for (what, obj, status, message) in cases {
        assert_eq!(
            argocd_health(&obj),
            (status.to_string(), message.to_string()),
            "{what}"
        );
    }
}

#[test]
fn argocd_doc_includes_the_tested_lua() {
    let doc = read("docs/argocd.md");
    let lua = read("docs/argocd/health.lua");
    let indented: String = lua
        .lines()
        .map(|l| {
            if l.is_empty() {
                "\n".to_string()
            } else {
                format!("      {l}\n")
            }
        })
        .collect();
    assert!(
        doc.contains(&indented),
        "docs/argocd.md must carry docs/argocd/health.lua verbatim (indented 6 spaces in the snippet)"
    );
}
