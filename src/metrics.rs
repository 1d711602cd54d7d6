//! Prometheus metrics of the operator. Counted where things happen (a reconcile, a status
//! transition); the plans-by-phase gauge and the per-plan gauges (see `plans`) are computed
//! from the plan cache at scrape time.

mod plans;

pub use plans::PLAN_CONDITIONS;

use std::collections::HashMap;
use std::fmt::{self, Write};

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::crd::{Phase, Timestamp, UpgradePlan, UpgradePlanStatus};
use crate::plan::Reason;

/// The `label` of a failed reconcile: the step that failed (`observe`, `status`, `finalizer`,
/// or an action such as `apply_green`), then how, where the step tells (`apply_green_kube`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ErrorLabel {
    pub step: &'static str,
    pub cause: Option<&'static str>,
}

impl fmt::Display for ErrorLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.step)?;
        match self.cause {
            Some(cause) => write!(f, "_{cause}"),
            None => Ok(()),
        }
    }
}

impl EncodeLabelValue for ErrorLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        write!(encoder, "{self}")
    }
}

impl EncodeLabelValue for Phase {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        encoder.write_str(self.as_str())
    }
}

// The variants are the exposed label values.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EncodeLabelValue)]
enum ReconcileResult {
    ok,
    error,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabels {
    result: ReconcileResult,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ErrorLabels {
    label: ErrorLabel,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PhaseLabels {
    phase: Phase,
}

pub struct Metrics {
    registry: Registry,
    reconciles: Family<ResultLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    reconcile_duration: Histogram,
    plans: Family<PhaseLabels, Gauge>,
    phase_duration: Family<PhaseLabels, Histogram>,
    read_only_window: Histogram,
    backup_bytes: Histogram,
    clone_verification_failures: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("cutover");
        let reconciles = Family::<ResultLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles by result (ok, error)",
            reconciles.clone(),
        );
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Failed reconciles by error label",
            errors.clone(),
        );
        let reconcile_duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile (observe, decide, record, act)",
            reconcile_duration.clone(),
        );
        let plans = Family::<PhaseLabels, Gauge>::default();
        registry.register("plans", "UpgradePlans by phase", plans.clone());
        let phase_duration = Family::<PhaseLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.1, 2.0, 16))
        });
        registry.register(
            "phase_duration_seconds",
            "Time a plan spent in a phase",
            phase_duration.clone(),
        );
        let read_only_window = Histogram::new(exponential_buckets(1.0, 2.0, 16));
        registry.register(
            "read_only_window_seconds",
            "From read-only on the old version to read-write on the new one",
            read_only_window.clone(),
        );
        let backup_bytes = Histogram::new(exponential_buckets(1024.0, 4.0, 16));
        registry.register(
            "backup_bytes",
            "Size of completed backups",
            backup_bytes.clone(),
        );
        let clone_verification_failures = Counter::default();
        registry.register(
            "clone_verification_failures",
            "Clones whose document counts differed from the frozen sources",
            clone_verification_failures.clone(),
        );
        Metrics {
            registry,
            reconciles,
            errors,
            reconcile_duration,
            plans,
            phase_duration,
            read_only_window,
            backup_bytes,
            clone_verification_failures,
        }
    }
}

impl Metrics {
    pub fn reconciled(&self, seconds: f64, error: Option<ErrorLabel>) {
        self.reconcile_duration.observe(seconds);
        let result = match error {
            Some(_) => ReconcileResult::error,
            None => ReconcileResult::ok,
        };
        self.reconciles
            .get_or_create(&ResultLabels { result })
            .inc();
        if let Some(label) = error {
            self.errors.get_or_create(&ErrorLabels { label }).inc();
        }
    }

    /// Records what a status write establishes: phases finished, the read-only window, a
    /// backup's size, a failed verification. Each only on the write that first shows it.
    pub fn transition(&self, before: Option<&UpgradePlanStatus>, after: &UpgradePlanStatus) {
        let was_finished = |i: usize| {
            before
                .and_then(|b| b.phases.get(i))
                .is_some_and(|r| r.finished_at.is_some())
        };
        for (i, r) in after.phases.iter().enumerate() {
            if let Some(f) = r.finished_at
                && !was_finished(i)
            {
                self.phase_duration
                    .get_or_create(&PhaseLabels { phase: r.name })
                    .observe(f.since(r.started_at).as_secs_f64());
            }
        }
        if let (Some(since), Some(lifted)) = (after.read_only_since, after.read_only_lifted_at)
            && before.and_then(|b| b.read_only_lifted_at).is_none()
        {
            self.read_only_window
                .observe(lifted.since(since).as_secs_f64());
        }
        let bytes =
            |s: Option<&UpgradePlanStatus>| s.and_then(|s| s.backup.as_ref()).and_then(|b| b.bytes);
        if let Some(b) = bytes(Some(after))
            && bytes(before).is_none()
        {
            self.backup_bytes.observe(b as f64);
        }
        let failed_verification = |s: Option<&UpgradePlanStatus>| {
            s.and_then(|s| s.failure.as_ref())
                .is_some_and(|f| f.reason == Reason::CloneVerificationFailed.as_str())
        };
        if failed_verification(Some(after)) && !failed_verification(before) {
            self.clone_verification_failures.inc();
        }
    }

    /// The text exposition at `now`: the counters and histograms, the plans-by-phase gauge
    /// and the per-plan gauges of `plans` (the controller's cache).
    pub fn render<'a>(
        &self,
        plans: impl IntoIterator<Item = &'a UpgradePlan> + Clone,
        now: Timestamp,
    ) -> String {
        let mut by_phase: HashMap<Phase, i64> = Phase::ALL.iter().map(|p| (*p, 0)).collect();
        for p in plans.clone() {
            let phase = p.status.as_ref().map(|s| s.phase).unwrap_or_default();
            *by_phase.entry(phase).or_default() += 1;
        }
        for (p, n) in by_phase {
            self.plans.get_or_create(&PhaseLabels { phase: p }).set(n);
        }
        let mut out = String::new();
        encode_registry(&mut out, &self.registry).expect("metrics encode");
        encode_registry(&mut out, &plans::registry(plans, now)).expect("metrics encode");
        encode_eof(&mut out).expect("metrics encode");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{BackupStatus, PhaseRecord, Timestamp};

    #[test]
    fn counts_transitions_once() {
        let m = Metrics::default();
        let t = Timestamp::from_millis;
        let before = UpgradePlanStatus {
            phases: vec![PhaseRecord {
                name: Phase::BackingUp,
                started_at: t(0),
                finished_at: None,
                outcome: None,
                detail: String::new(),
            }],
            ..Default::default()
        };
        let mut after = before.clone();
        after.phases[0].finished_at = Some(t(2500));
        after.backup = Some(BackupStatus {
            bytes: Some(4096),
            ..Default::default()
        });
        m.transition(Some(&before), &after);
        m.transition(Some(&after), &after);
        m.reconciled(0.01, None);
        m.reconciled(
            0.02,
            Some(ErrorLabel {
                step: "observe",
                cause: None,
            }),
        );
        m.reconciled(
            0.03,
            Some(ErrorLabel {
                step: "apply_green",
                cause: Some("kube"),
            }),
        );
        let plan = |name: &str, phase| {
            let mut p = crate::fixtures::SquidexPlan::unit().object(name);
            p.status = Some(UpgradePlanStatus {
                phase,
                ..Default::default()
            });
            p
        };
        let plans = [
            plan("a", Phase::Succeeded),
            plan("b", Phase::Succeeded),
            plan("c", Phase::Migrating),
        ];
        let text = m.render(&plans, Timestamp::from_millis(0));
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(text.matches("# EOF").count(), 1);
        assert!(
            text.contains("cutover_plan_phase{namespace=\"\",plan=\"c\",phase=\"Migrating\"} 1")
        );
        assert!(
            text.contains("cutover_phase_duration_seconds_count{phase=\"BackingUp\"} 1"),
            "{text}"
        );
        assert!(text.contains("cutover_phase_duration_seconds_sum{phase=\"BackingUp\"} 2.5"));
        assert!(text.contains("cutover_backup_bytes_count 1"));
        assert!(text.contains("cutover_plans{phase=\"Succeeded\"} 2"));
        assert!(text.contains("cutover_plans{phase=\"Failed\"} 0"));
        assert!(text.contains("cutover_reconciles_total{result=\"ok\"} 1"));
        assert!(text.contains("cutover_reconciles_total{result=\"error\"} 2"));
        assert!(text.contains("cutover_reconcile_errors_total{label=\"observe\"} 1"));
        assert!(text.contains("cutover_reconcile_errors_total{label=\"apply_green_kube\"} 1"));
    }
}
