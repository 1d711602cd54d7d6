//! From a finished plan's status and the watch history, the per-phase wall times, the
//! read-only window, and the operator's own overhead at each transition: the time from the
//! event that completes a phase (a rollout done, a Job complete, the migration document
//! final, the Service switched) to the next side effect the operator issues for it (the
//! object it creates or patches, as the benchmark's watch sees it arrive). Where the next
//! phase has no side effect of its own, the effect is the status write recording that phase,
//! as the same watches see it (so both ends carry the same watch delay).

use serde::Serialize;

use super::app::rolled_out;
use super::history::{Seen, first_seen};

/// The names the analysis follows.
pub struct Names<'a> {
    pub blue: &'a str,
    pub service: &'a str,
    pub backup_job: &'a str,
    pub clone_job: &'a str,
    pub read_only_env: &'a str,
    /// Delay between read-only lifted and the old version scaled down (`scaleDownBlueAfter`).
    pub scale_down_after_ms: i64,
}

#[derive(Serialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct PhaseTime {
    pub name: String,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    pub seconds: Option<f64>,
}

#[derive(Serialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Transition {
    /// The phase the completing event belongs to.
    pub phase: String,
    pub trigger: String,
    pub trigger_ms: Option<i64>,
    pub effect: String,
    pub effect_ms: Option<i64>,
    /// Milliseconds from the trigger to the effect.
    pub overhead_ms: Option<i64>,
}

#[derive(Serialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct Timeline {
    pub phases: Vec<PhaseTime>,
    pub transitions: Vec<Transition>,
    /// `readOnlyLiftedAt - readOnlySince`.
    pub read_only_ms: Option<i64>,
    /// From the plan being applied to `Succeeded` recorded.
    pub total_ms: Option<i64>,
    pub overhead_total_ms: i64,
    /// Nearest-rank 95th percentile of the transitions' overheads (with 10 transitions, the largest).
    pub overhead_p95_ms: Option<i64>,
    pub overhead_max_ms: Option<i64>,
}

/// Parses an RFC 3339 status timestamp to milliseconds.
pub fn ms(v: &serde_json::Value) -> Option<i64> {
    v.as_str()?
        .parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond())
}

fn env_value<'a>(d: &'a serde_json::Value, var: &str) -> Option<&'a str> {
    d["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == var)
        .map(|e| e["value"].as_str().unwrap_or(""))
}

fn job_complete(j: &serde_json::Value) -> bool {
    let st = &j["status"];
    let complete = st["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Complete" && c["status"] == "True")
    });
    complete
        || (st["succeeded"].as_i64().unwrap_or(0) > 0 && st["active"].as_i64().unwrap_or(0) == 0)
}

fn owned_by_plan(d: &serde_json::Value) -> bool {
    d["metadata"]["ownerReferences"]
        .as_array()
        .is_some_and(|o| o.iter().any(|r| r["kind"] == "UpgradePlan"))
}

fn later(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// Nearest-rank percentile of `values` (`p` in 0..=100).
pub fn percentile(values: &[i64], p: f64) -> Option<i64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_unstable();
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    Some(v[rank.min(v.len()) - 1])
}

pub fn analyse(
    status: &serde_json::Value,
    history: &[Seen],
    applied_ms: i64,
    migration_final_ms: Option<i64>,
    n: &Names<'_>,
) -> Timeline {
    let phases: Vec<PhaseTime> = status["phases"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| {
                    let started_ms = ms(&p["startedAt"])?;
                    let finished_ms = ms(&p["finishedAt"]);
                    Some(PhaseTime {
                        name: p["name"].as_str().unwrap_or("?").to_string(),
                        started_ms,
                        finished_ms,
                        seconds: finished_ms.map(|f| (f - started_ms) as f64 / 1000.0),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let started = |name: &str| phases.iter().find(|p| p.name == name).map(|p| p.started_ms);
    let recorded = |phase: &str| {
        history
            .iter()
            .filter(|s| s.kind == "UpgradePlan" && !s.deleted)
            .find(|s| s.object["status"]["phase"] == phase)
            .map(|s| s.at_ms)
    };
    let green = status["greenDeployment"].as_str().unwrap_or("");
    let ro = n.read_only_env;
    let dep = |name: &str, after: i64, pred: &dyn Fn(&serde_json::Value) -> bool| {
        first_seen(history, "Deployment", name, after, pred)
    };

    let mut t = Vec::new();
    let mut push = |phase: &str,
                    trigger: &str,
                    trigger_ms: Option<i64>,
                    effect: &str,
                    effect_ms: Option<i64>| {
        t.push(Transition {
            phase: phase.into(),
            trigger: trigger.into(),
            trigger_ms,
            effect: effect.into(),
            effect_ms,
            overhead_ms: match (trigger_ms, effect_ms) {
                (Some(a), Some(b)) => Some(b - a),
                _ => None,
            },
        });
    };

    let blue_ro = dep(n.blue, applied_ms, &|d| env_value(d, ro).is_some());
    push(
        "Pending",
        "plan applied",
        Some(applied_ms),
        "old version patched read-only",
        blue_ro,
    );

    let blue_ro_done = dep(n.blue, blue_ro.unwrap_or(applied_ms), &|d| {
        env_value(d, ro).is_some() && rolled_out(d)
    });
    let backup_created = first_seen(history, "Job", n.backup_job, 0, |_| true);
    push(
        "EnteringReadOnly",
        "old version rolled out read-only",
        blue_ro_done,
        "backup Job created",
        backup_created,
    );

    let backup_done = first_seen(history, "Job", n.backup_job, 0, job_complete);
    let clone_created = first_seen(history, "Job", n.clone_job, 0, |_| true);
    push(
        "BackingUp",
        "backup Job complete",
        backup_done,
        "clone Job created",
        clone_created,
    );

    let clone_done = first_seen(history, "Job", n.clone_job, 0, job_complete);
    let green_created = dep(green, 0, &|_| true);
    push(
        "Cloning",
        "clone Job complete",
        clone_done,
        "new version's Deployment created",
        green_created,
    );

    let green_observed = dep(green, 0, &|d| {
        d["status"]["observedGeneration"].as_i64().unwrap_or(0)
            >= d["metadata"]["generation"].as_i64().unwrap_or(1)
    });
    push(
        "DeployingGreen",
        "new Deployment observed",
        green_observed,
        "Migrating recorded",
        recorded("Migrating"),
    );

    let green_ready = dep(green, 0, &|d| env_value(d, ro).is_some() && rolled_out(d));
    let gates = later(green_ready, migration_final_ms);
    let switched = first_seen(history, "Service", n.service, 0, |s| {
        !green.is_empty() && s["spec"]["selector"]["cutover.dev/track"] == green
    });
    push(
        "Migrating",
        "new version ready and migration document final",
        gates,
        "Service switched to the new version",
        switched,
    );

    let green_rw = dep(green, switched.unwrap_or(0), &|d| {
        env_value(d, ro).is_none()
    });
    push(
        "SwitchingTraffic",
        "Service switched (seen)",
        switched,
        "new version patched read-write",
        green_rw,
    );

    let green_rw_done = dep(green, green_rw.unwrap_or(0), &|d| {
        env_value(d, ro).is_none() && rolled_out(d)
    });
    let handed_over = dep(green, green_rw_done.unwrap_or(0), &|d| !owned_by_plan(d));
    push(
        "LiftingReadOnly",
        "new version rolled out read-write",
        green_rw_done,
        "new Deployment handed over",
        handed_over,
    );

    // `Succeeded` is recorded once the handover is seen; the cleanup steps (here the
    // scale-down) run after it, so the scale-down is no trigger for `Succeeded`.
    push(
        "CleaningUp",
        "new Deployment handed over (seen)",
        handed_over,
        "Succeeded recorded",
        recorded("Succeeded"),
    );

    let scale_due = later(
        ms(&status["readOnlyLiftedAt"]).map(|l| l + n.scale_down_after_ms),
        handed_over,
    );
    let blue_down = dep(n.blue, 0, &|d| d["spec"]["replicas"].as_i64() == Some(0));
    push(
        "Succeeded (cleanup)",
        "scale-down delay over (and handed over)",
        scale_due,
        "old version scaled to 0",
        blue_down,
    );

    let overheads: Vec<i64> = t.iter().filter_map(|x| x.overhead_ms).collect();
    Timeline {
        read_only_ms: match (
            ms(&status["readOnlySince"]),
            ms(&status["readOnlyLiftedAt"]),
        ) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        },
        total_ms: started("Succeeded").map(|s| s - applied_ms),
        overhead_total_ms: overheads.iter().sum(),
        overhead_p95_ms: percentile(&overheads, 95.0),
        overhead_max_ms: overheads.iter().max().copied(),
        phases,
        transitions: t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nearest_rank() {
        assert_eq!(percentile(&[], 95.0), None);
        assert_eq!(percentile(&[5], 95.0), Some(5));
        let v: Vec<i64> = (1..=10).collect();
        assert_eq!(percentile(&v, 95.0), Some(10));
        assert_eq!(percentile(&v, 50.0), Some(5));
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&v, 95.0), Some(95));
    }

    fn names() -> Names<'static> {
        Names {
            blue: "squidex",
            service: "squidex",
            backup_job: "p-backup",
            clone_job: "p-clone",
            read_only_env: "MODE__ISREADONLY",
            scale_down_after_ms: 1000,
        }
    }

    fn seen(at_ms: i64, kind: &'static str, name: &str, object: serde_json::Value) -> Seen {
        Seen {
            at_ms,
            kind,
            name: name.into(),
            uid: String::new(),
            rv: 0,
            deleted: false,
            object,
        }
    }

    #[test]
    fn measures_from_trigger_to_effect() {
        let status = json!({
            "greenDeployment": "squidex-p",
            "readOnlySince": "2026-01-01T00:00:00.100Z",
            "readOnlyLiftedAt": "2026-01-01T00:00:10.100Z",
            "phases": [
                {"name": "Pending", "startedAt": "2026-01-01T00:00:00.000Z", "finishedAt": "2026-01-01T00:00:00.050Z"},
                {"name": "BackingUp", "startedAt": "2026-01-01T00:00:00.050Z", "finishedAt": "2026-01-01T00:00:02.050Z"}
            ]
        });
        let t0 = ms(&json!("2026-01-01T00:00:00.000Z")).unwrap();
        let ro_env = json!([{"name": "MODE__ISREADONLY", "value": "true"}]);
        let history = vec![
            seen(
                t0 + 80,
                "Deployment",
                "squidex",
                json!({
                    "metadata": {"generation": 2},
                    "spec": {"replicas": 1, "template": {"spec": {"containers": [{"env": ro_env}]}}},
                    "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 0, "readyReplicas": 1}
                }),
            ),
            seen(
                t0 + 900,
                "Deployment",
                "squidex",
                json!({
                    "metadata": {"generation": 2},
                    "spec": {"replicas": 1, "template": {"spec": {"containers": [{"env": ro_env}]}}},
                    "status": {"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1}
                }),
            ),
            seen(
                t0 + 1200,
                "Job",
                "p-backup",
                json!({"status": {"active": 1}}),
            ),
            seen(
                t0 + 3000,
                "Job",
                "p-backup",
                json!({"status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}}),
            ),
            seen(t0 + 3400, "Job", "p-clone", json!({})),
        ];
        let names = names();
        let tl = analyse(&status, &history, t0 - 20, None, &names);
        assert_eq!(tl.phases.len(), 2);
        assert_eq!(tl.phases[1].seconds, Some(2.0));
        assert_eq!(tl.read_only_ms, Some(10_000));
        let o: Vec<Option<i64>> = tl.transitions.iter().map(|t| t.overhead_ms).collect();
        assert_eq!(&o[..3], &[Some(100), Some(300), Some(400)]);
        assert_eq!(tl.overhead_total_ms, 800);
        assert_eq!(tl.overhead_max_ms, Some(400));
        assert_eq!(tl.total_ms, None);
    }

    #[test]
    fn succeeded_follows_the_handover_and_the_scale_down_follows_succeeded() {
        let status = json!({
            "greenDeployment": "squidex-p",
            "readOnlyLiftedAt": "2026-01-01T00:00:00.000Z",
        });
        let t0 = ms(&json!("2026-01-01T00:00:00.000Z")).unwrap();
        let history = vec![
            seen(
                t0 + 100,
                "Deployment",
                "squidex-p",
                json!({"metadata": {"ownerReferences": []}}),
            ),
            seen(
                t0 + 300,
                "UpgradePlan",
                "p",
                json!({"status": {"phase": "Succeeded"}}),
            ),
            seen(
                t0 + 1500,
                "Deployment",
                "squidex",
                json!({"spec": {"replicas": 0}}),
            ),
        ];
        let names = names();
        let tl = analyse(&status, &history, t0 - 5000, None, &names);
        let row = |phase: &str| {
            tl.transitions
                .iter()
                .find(|t| t.phase == phase)
                .map(|t| (t.effect.as_str(), t.overhead_ms))
        };
        assert_eq!(row("CleaningUp"), Some(("Succeeded recorded", Some(200))));
        // Due 1 s after the lift, later than the handover.
        assert_eq!(
            row("Succeeded (cleanup)"),
            Some(("old version scaled to 0", Some(500)))
        );
    }
}
