//! Per-plan gauges for alerts and the dashboard (charts/cutover/files/rules.yaml,
//! charts/cutover/dashboards/cutover.json), computed at scrape time from the controller's
//! plan cache, so a deleted plan disappears from the next scrape and the series are bounded
//! by the plans that exist.
//!
//! Every gauge carries `namespace` and `plan`:
//! - `cutover_plan_phase{phase}`: 1 for the plan's current phase (no series for the others);
//! - `cutover_plan_read_only_seconds`: how long the app has been read-only while it is (the
//!   `ReadOnly` condition is True), else 0;
//! - `cutover_plan_read_only_window_seconds`: the measured window once read-only was lifted;
//! - `cutover_plan_predicted_read_only_seconds`: the rehearsal's prediction, when there is one;
//! - `cutover_plan_condition{condition}`: 1 while a condition is True, 0 while False/Unknown;
//! - `cutover_plan_condition_last_transition_timestamp_seconds{condition}`: when it last changed;
//! - `cutover_plan_copy_documents_done`, `_total`, `cutover_plan_copy_documents_per_second`,
//!   `cutover_plan_copy_eta_seconds`: the copy's progress while it runs;
//! - `cutover_plan_backup_bytes`: the size of the plan's backup once taken.

use std::sync::atomic::AtomicU64;

use kube::ResourceExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::crd::{Phase, Timestamp, UpgradePlan, UpgradePlanStatus};

type Value = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PlanLabels {
    namespace: String,
    plan: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PlanPhaseLabels {
    namespace: String,
    plan: String,
    phase: Phase,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PlanConditionLabels {
    namespace: String,
    plan: String,
    condition: String,
}

/// The condition types exported: the standard ones of docs/operations.md. Others (a type a
/// newer operator version adds) are left out until listed here, so the label stays bounded.
pub const PLAN_CONDITIONS: [&str; 12] = [
    "Ready",
    "Progressing",
    "Degraded",
    "ReadOnly",
    "BackupVerified",
    "Migrated",
    "MigrationLockStale",
    "DataDiverged",
    "CleanupBlocked",
    "RollbackBlocked",
    "SpecChangeIgnored",
    "ReconcileFailing",
];

fn condition_true(status: &UpgradePlanStatus, type_: &str) -> bool {
    status
        .conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

/// Seconds the app has been read-only at `now`, or 0 when it is not read-only.
fn read_only_seconds(status: &UpgradePlanStatus, now: Timestamp) -> f64 {
    match status.read_only_since {
        Some(since) if condition_true(status, "ReadOnly") => now.since(since).as_secs_f64(),
        _ => 0.0,
    }
}

struct Gauges {
    phase: Family<PlanPhaseLabels, Gauge>,
    read_only: Family<PlanLabels, Value>,
    window: Family<PlanLabels, Value>,
    predicted: Family<PlanLabels, Value>,
    condition: Family<PlanConditionLabels, Gauge>,
    condition_since: Family<PlanConditionLabels, Value>,
    copy_done: Family<PlanLabels, Gauge>,
    copy_total: Family<PlanLabels, Gauge>,
    copy_rate: Family<PlanLabels, Value>,
    copy_eta: Family<PlanLabels, Value>,
    backup_bytes: Family<PlanLabels, Gauge>,
}

impl Gauges {
    fn register(registry: &mut Registry) -> Gauges {
        let g = Gauges {
            phase: Family::default(),
            read_only: Family::default(),
            window: Family::default(),
            predicted: Family::default(),
            condition: Family::default(),
            condition_since: Family::default(),
            copy_done: Family::default(),
            copy_total: Family::default(),
            copy_rate: Family::default(),
            copy_eta: Family::default(),
            backup_bytes: Family::default(),
        };
        let r = registry;
        r.register(
            "plan_phase",
            "1 for the phase each UpgradePlan is in",
            g.phase.clone(),
        );
        r.register(
            "plan_read_only_seconds",
            "How long the app has been read-only, while it is (ReadOnly True); else 0",
            g.read_only.clone(),
        );
        r.register(
            "plan_read_only_window_seconds",
            "The measured read-only window, once read-only was lifted on the new version",
            g.window.clone(),
        );
        r.register(
            "plan_predicted_read_only_seconds",
            "The read-only window the latest rehearsal predicts (status.prediction)",
            g.predicted.clone(),
        );
        r.register(
            "plan_condition",
            "1 while a condition of the plan is True, 0 while False or Unknown",
            g.condition.clone(),
        );
        r.register(
            "plan_condition_last_transition_timestamp_seconds",
            "When a condition of the plan last changed status (Unix seconds)",
            g.condition_since.clone(),
        );
        r.register(
            "plan_copy_documents_done",
            "Documents copied into the clones so far, while the copy runs",
            g.copy_done.clone(),
        );
        r.register(
            "plan_copy_documents_total",
            "Documents in the sources, while the copy runs",
            g.copy_total.clone(),
        );
        r.register(
            "plan_copy_documents_per_second",
            "Copy throughput since the copy started, while it runs",
            g.copy_rate.clone(),
        );
        r.register(
            "plan_copy_eta_seconds",
            "Seconds until the copy should end at its current rate, while it runs",
            g.copy_eta.clone(),
        );
        r.register(
            "plan_backup_bytes",
            "Size of the plan's backup archive",
            g.backup_bytes.clone(),
        );
        g
    }

    fn add(&self, plan: &UpgradePlan, now: Timestamp) {
        let namespace = plan.namespace().unwrap_or_default();
        let name = plan.name_any();
        let labels = PlanLabels {
            namespace: namespace.clone(),
            plan: name.clone(),
        };
        let default = UpgradePlanStatus::default();
        let status = plan.status.as_ref().unwrap_or(&default);
        self.phase
            .get_or_create(&PlanPhaseLabels {
                namespace: namespace.clone(),
                plan: name.clone(),
                phase: status.phase,
            })
            .set(1);
        self.read_only
            .get_or_create(&labels)
            .set(read_only_seconds(status, now));
        if let (Some(since), Some(lifted)) = (status.read_only_since, status.read_only_lifted_at) {
            self.window
                .get_or_create(&labels)
                .set(lifted.since(since).as_secs_f64());
        }
        if let Some(p) = &status.prediction {
            self.predicted
                .get_or_create(&labels)
                .set(p.read_only_seconds);
        }
        for c in &status.conditions {
            if !PLAN_CONDITIONS.contains(&c.type_.as_str()) {
                continue;
            }
            let labels = PlanConditionLabels {
                namespace: namespace.clone(),
                plan: name.clone(),
                condition: c.type_.clone(),
            };
            self.condition
                .get_or_create(&labels)
                .set(i64::from(c.status == "True"));
            self.condition_since
                .get_or_create(&labels)
                .set(c.last_transition_time.0.as_millisecond() as f64 / 1000.0);
        }
        if let Some(p) = &status.progress {
            self.copy_done.get_or_create(&labels).set(p.documents_done);
            self.copy_total
                .get_or_create(&labels)
                .set(p.documents_total);
            self.copy_rate.get_or_create(&labels).set(p.rate);
            if let Some(eta) = p.eta {
                self.copy_eta
                    .get_or_create(&labels)
                    .set(eta.since(now).as_secs_f64());
            }
        }
        if let Some(bytes) = status.backup.as_ref().and_then(|b| b.bytes) {
            self.backup_bytes.get_or_create(&labels).set(bytes);
        }
    }
}

/// A registry (prefix `cutover`) holding the per-plan gauges of `plans` at `now`; built
/// afresh for each scrape.
pub(super) fn registry<'a>(
    plans: impl IntoIterator<Item = &'a UpgradePlan>,
    now: Timestamp,
) -> Registry {
    let mut registry = Registry::with_prefix("cutover");
    let gauges = Gauges::register(&mut registry);
    for p in plans {
        gauges.add(p, now);
    }
    registry
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::BackupStatus;
    use crate::fixtures::SquidexPlan;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use prometheus_client::encoding::text::encode;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_millis(s * 1000)
    }

    fn cond(type_: &str, status: &str, at: i64) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: "R".into(),
            message: "a long message".into(),
            observed_generation: None,
            last_transition_time: Time(t(at).0),
        }
    }

    fn plan(ns: &str, name: &str, status: UpgradePlanStatus) -> UpgradePlan {
        let mut p = SquidexPlan::unit().object(name);
        p.metadata.namespace = Some(ns.into());
        p.status = Some(status);
        p
    }

    fn render(plans: &[UpgradePlan], now: Timestamp) -> String {
        let mut out = String::new();
        encode(&mut out, &registry(plans, now)).unwrap();
        out
    }

    fn read_only_plan() -> UpgradePlan {
        plan(
            "apps",
            "up",
            UpgradePlanStatus {
                phase: Phase::Cloning,
                read_only_since: Some(t(1000)),
                conditions: vec![
                    cond("ReadOnly", "True", 1000),
                    cond("MigrationLockStale", "False", 900),
                    cond("SomethingNew", "True", 900),
                ],
                prediction: Some(
                    serde_json::from_value(serde_json::json!({
                        "readOnlySeconds": 40.0, "rehearsal": "r", "at": "2026-01-01T00:00:00Z"
                    }))
                    .unwrap(),
                ),
                progress: Some(
                    serde_json::from_value(serde_json::json!({
                        "documentsDone": 250, "documentsTotal": 1000, "since": "1970-01-01T00:16:40Z",
                        "rate": 12.5, "eta": "1970-01-01T00:18:10Z", "summary": "25%"
                    }))
                    .unwrap(),
                ),
                backup: Some(BackupStatus {
                    bytes: Some(4096),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
    }

    #[test]
    fn a_read_only_plan_reports_its_phase_window_prediction_conditions_copy_and_backup() {
        let text = render(&[read_only_plan()], t(1030));
        let l = "namespace=\"apps\",plan=\"up\"";
        for line in [
            format!("cutover_plan_phase{{{l},phase=\"Cloning\"}} 1"),
            format!("cutover_plan_read_only_seconds{{{l}}} 30.0"),
            format!("cutover_plan_predicted_read_only_seconds{{{l}}} 40.0"),
            format!("cutover_plan_condition{{{l},condition=\"ReadOnly\"}} 1"),
            format!("cutover_plan_condition{{{l},condition=\"MigrationLockStale\"}} 0"),
            format!(
                "cutover_plan_condition_last_transition_timestamp_seconds{{{l},condition=\"ReadOnly\"}} 1000.0"
            ),
            format!("cutover_plan_copy_documents_done{{{l}}} 250"),
            format!("cutover_plan_copy_documents_total{{{l}}} 1000"),
            format!("cutover_plan_copy_documents_per_second{{{l}}} 12.5"),
            format!("cutover_plan_copy_eta_seconds{{{l}}} 60.0"),
            format!("cutover_plan_backup_bytes{{{l}}} 4096"),
        ] {
            assert!(text.contains(&format!("{line}\n")), "{line}\n{text}");
        }
        // One series for the current phase only; no window before the lift; unknown
        // condition types are left out.
        assert_eq!(text.matches("cutover_plan_phase{").count(), 1, "{text}");
        assert!(!text.contains("cutover_plan_read_only_window_seconds{"));
        assert!(!text.contains("SomethingNew"));
    }

    #[test]
    fn after_the_lift_the_window_is_measured_and_read_only_is_zero() {
        let mut p = read_only_plan();
        let s = p.status.as_mut().unwrap();
        s.phase = Phase::Succeeded;
        s.read_only_lifted_at = Some(t(1045));
        s.conditions = vec![
            cond("ReadOnly", "False", 1045),
            cond("CleanupBlocked", "True", 2000),
        ];
        s.progress = None;
        let text = render(&[p], t(5000));
        let l = "namespace=\"apps\",plan=\"up\"";
        for line in [
            format!("cutover_plan_phase{{{l},phase=\"Succeeded\"}} 1"),
            format!("cutover_plan_read_only_seconds{{{l}}} 0.0"),
            format!("cutover_plan_read_only_window_seconds{{{l}}} 45.0"),
            format!("cutover_plan_condition{{{l},condition=\"CleanupBlocked\"}} 1"),
            format!(
                "cutover_plan_condition_last_transition_timestamp_seconds{{{l},condition=\"CleanupBlocked\"}} 2000.0"
            ),
        ] {
            assert!(text.contains(&format!("{line}\n")), "{line}\n{text}");
        }
        assert!(
            !text.contains("cutover_plan_copy_documents_done{"),
            "{text}"
        );
    }

    #[test]
    fn a_failed_plan_whose_read_only_was_undone_is_not_read_only() {
        // read_only_since stays in status after a rollback; the condition tells.
        let mut p = read_only_plan();
        let s = p.status.as_mut().unwrap();
        s.phase = Phase::Failed;
        s.conditions = vec![cond("ReadOnly", "False", 1100)];
        let text = render(&[p], t(9000));
        assert!(
            text.contains("cutover_plan_read_only_seconds{namespace=\"apps\",plan=\"up\"} 0.0\n")
        );
        assert!(
            text.contains(
                "cutover_plan_phase{namespace=\"apps\",plan=\"up\",phase=\"Failed\"} 1\n"
            )
        );
    }

    #[test]
    fn only_plans_in_the_cache_have_series() {
        let a = plan("apps", "a", UpgradePlanStatus::default());
        let mut b = plan("other", "b", UpgradePlanStatus::default());
        b.status = None;
        let text = render(&[a.clone(), b], t(0));
        assert!(
            text.contains(
                "cutover_plan_phase{namespace=\"apps\",plan=\"a\",phase=\"Pending\"} 1\n"
            )
        );
        assert!(
            text.contains(
                "cutover_plan_phase{namespace=\"other\",plan=\"b\",phase=\"Pending\"} 1\n"
            )
        );
        let text = render(&[a], t(0));
        assert!(
            !text.contains("plan=\"b\""),
            "a deleted plan disappears: {text}"
        );
        let text = render(&[], t(0));
        assert_eq!(text, "# EOF\n", "no plan, no per-plan family");
    }

    #[test]
    fn the_cache_keeps_what_the_gauges_read_and_nothing_else_of_the_status() {
        let full = read_only_plan();
        let mut slimmed = full.clone();
        slimmed.status.as_mut().unwrap().message = "long".into();
        crate::k8s::cache::slim(&mut slimmed);
        let s = slimmed.status.as_ref().unwrap();
        assert!(s.message.is_empty());
        assert!(s.conditions.iter().all(|c| c.message.is_empty()));
        assert_eq!(s.progress.as_ref().unwrap().summary, "");
        assert_eq!(s.backup.as_ref().unwrap().bytes, Some(4096));
        // The same series (the encoder's order within a family is a hash map's).
        let sorted = |text: String| {
            let mut lines: Vec<String> = text.lines().map(String::from).collect();
            lines.sort();
            lines
        };
        assert_eq!(
            sorted(render(&[slimmed], t(1030))),
            sorted(render(&[full], t(1030)))
        );
    }
}
