//! What the controller keeps of each plan in its watch cache.
//!
//! Reconcile reads its own plan afresh from the API server. The cache serves only:
//! - the watch mappers (which plan names this Deployment or Service: `spec.app`, the green
//!   Deployment's name, refused cleanup steps);
//! - the plans-by-phase metric (`status.phase`);
//! - what a reconcile reads of the *other* plans: conflicts (namespace, creation and deletion
//!   time, phase, `spec.app` and `spec.database`) and the latest rehearsal's prediction
//!   (`spec.mode`, phase, `status.prediction`).
//!
//! A finished plan's full status (audit trail, conditions, counts per collection, cleanup)
//! and the server's bookkeeping (managedFields, kubectl's last-applied annotation) would
//! otherwise stay in memory for as long as the plan exists: with 1,000 plans that was most of
//! the operator's resident memory.

use kube::ResourceExt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use crate::crd::{BackupStatus, CleanupState, CleanupStatus, UpgradePlan, UpgradePlanStatus};
use crate::metrics::PLAN_CONDITIONS;

/// Drops what nothing reads from the cache; keeps the metadata but managedFields and
/// annotations, the spec the plan acts on, and of the status the phase, the recorded targets,
/// the green Deployment's name, the rehearsal's prediction, refused cleanup steps, and what the
/// per-plan gauges read (read-only times, exported conditions without their text, copy
/// progress, the backup's size).
pub fn slim(plan: &mut UpgradePlan) {
    plan.managed_fields_mut().clear();
    plan.annotations_mut().clear();
    // What other plans and the mappers read is the spec the plan acts on (the one it accepted,
    // steered by the live one), kept once instead of beside the frozen copy.
    let name = plan.name_any();
    plan.spec = crate::plan::frozen::effective(&plan.spec, plan.status.as_ref(), &name).spec;
    if let Some(status) = plan.status.take() {
        plan.status = Some(UpgradePlanStatus {
            phase: status.phase,
            targets: status.targets,
            green_deployment: status.green_deployment,
            prediction: status.prediction,
            cleanup: status.cleanup.and_then(refused_steps),
            // What the per-plan gauges read (`metrics`), a few hundred bytes per plan.
            read_only_since: status.read_only_since,
            read_only_lifted_at: status.read_only_lifted_at,
            conditions: status
                .conditions
                .into_iter()
                .filter(|c| PLAN_CONDITIONS.contains(&c.type_.as_str()))
                .map(|c| Condition {
                    message: String::new(),
                    reason: String::new(),
                    ..c
                })
                .collect(),
            progress: status.progress.map(|mut p| {
                p.summary.clear();
                p
            }),
            backup: status
                .backup
                .and_then(|b| b.bytes)
                .map(|bytes| BackupStatus {
                    bytes: Some(bytes),
                    ..Default::default()
                }),
            ..Default::default()
        });
    }
}

fn refused_steps(cleanup: CleanupStatus) -> Option<CleanupStatus> {
    let steps: Vec<_> = cleanup
        .steps
        .into_iter()
        .filter(|s| s.state == CleanupState::Refused)
        .collect();
    (!steps.is_empty()).then(|| CleanupStatus {
        steps,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{CleanupStep, CleanupStepName, Phase, UpgradePlanSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
    use kube::api::ObjectMeta;

    fn step(name: CleanupStepName, state: CleanupState) -> CleanupStep {
        serde_json::from_value(serde_json::json!({
            "name": name, "state": state, "message": "m"
        }))
        .unwrap()
    }

    fn plan(status: UpgradePlanStatus) -> UpgradePlan {
        let spec: UpgradePlanSpec = serde_json::from_value(serde_json::json!({
            "app": {"deployment": "web", "service": "web"},
            "target": {"image": "app:2"},
            "readOnly": {"env": {"name": "READONLY", "value": "true"}},
            "database": {"connectionSecret": {"name": "s", "key": "uri"}, "databases": [{"name": "a"}]},
            "backup": {"volume": {"claimName": "b"}},
            "migration": {"job": {"command": ["./migrate"]}}
        }))
        .unwrap();
        UpgradePlan {
            metadata: ObjectMeta {
                name: Some("up".into()),
                namespace: Some("ns".into()),
                annotations: Some(
                    [(
                        "kubectl.kubernetes.io/last-applied-configuration".to_string(),
                        "{}".to_string(),
                    )]
                    .into(),
                ),
                managed_fields: Some(vec![ManagedFieldsEntry::default()]),
                ..Default::default()
            },
            spec,
            status: Some(status),
        }
    }

    fn prediction(read_only_seconds: f64) -> crate::crd::Prediction {
        serde_json::from_value(serde_json::json!({
            "readOnlySeconds": read_only_seconds, "rehearsal": "rehearse", "at": "2026-01-01T00:00:00Z"
        }))
        .unwrap()
    }

    #[test]
    fn keeps_what_the_mappers_metrics_and_other_plans_read_and_drops_the_rest() {
        let prediction = prediction(12.5);
        let mut p = plan(UpgradePlanStatus {
            phase: Phase::Succeeded,
            message: "done".into(),
            green_deployment: Some("web-green".into()),
            prediction: Some(prediction.clone()),
            phases: serde_json::from_value(serde_json::json!([
                {"name": "Pending", "startedAt": "2026-01-01T00:00:00Z"}
            ]))
            .unwrap(),
            cleanup: Some(CleanupStatus {
                steps: vec![
                    step(CleanupStepName::ScaleDownBlue, CleanupState::Done),
                    step(CleanupStepName::DropSourceDatabases, CleanupState::Refused),
                ],
                obsolete_collections: vec![],
                listed_at: None,
            }),
            ..Default::default()
        });
        let before = p.spec.clone();
        slim(&mut p);
        assert!(p.metadata.managed_fields.unwrap_or_default().is_empty());
        assert!(p.metadata.annotations.unwrap_or_default().is_empty());
        assert_eq!(p.spec, before);
        assert_eq!(p.metadata.name.as_deref(), Some("up"));
        let s = p.status.unwrap();
        assert_eq!(s.phase, Phase::Succeeded);
        assert_eq!(s.green_deployment.as_deref(), Some("web-green"));
        assert_eq!(s.prediction, Some(prediction));
        assert!(s.message.is_empty() && s.phases.is_empty());
        let steps = s.cleanup.unwrap().steps;
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0].state, CleanupState::Refused);
    }

    #[test]
    fn a_cleanup_with_nothing_refused_is_dropped_and_no_status_stays_none() {
        let mut p = plan(UpgradePlanStatus {
            cleanup: Some(CleanupStatus {
                steps: vec![step(CleanupStepName::ScaleDownBlue, CleanupState::Done)],
                ..Default::default()
            }),
            ..Default::default()
        });
        slim(&mut p);
        assert!(p.status.unwrap().cleanup.is_none());
        let mut q = plan(UpgradePlanStatus::default());
        q.status = None;
        slim(&mut q);
        assert!(q.status.is_none());
    }

    #[test]
    fn other_plans_read_from_slim_copies_give_the_same_conflicts_and_prediction() {
        use crate::k8s::views::{conflicts, latest_rehearsal};
        use std::sync::Arc;
        let prediction = prediction(40.0);
        let mut rehearsed = plan(UpgradePlanStatus {
            phase: Phase::Rehearsed,
            prediction: Some(prediction.clone()),
            message: "rehearsed".into(),
            ..Default::default()
        });
        rehearsed.metadata.name = Some("rehearse".into());
        rehearsed.spec.mode = crate::crd::Mode::Rehearsal;
        let mut running = plan(UpgradePlanStatus {
            phase: Phase::Cloning,
            message: "copying".into(),
            ..Default::default()
        });
        running.metadata.name = Some("running".into());
        let mut me = plan(UpgradePlanStatus::default());
        me.metadata.name = Some("me".into());

        let full = vec![Arc::new(rehearsed.clone()), Arc::new(running.clone())];
        let slimmed: Vec<_> = [rehearsed, running]
            .into_iter()
            .map(|mut p| {
                slim(&mut p);
                Arc::new(p)
            })
            .collect();
        let found = conflicts(&me, &full);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(conflicts(&me, &slimmed), found);
        assert_eq!(latest_rehearsal(&me, &full), Some(prediction));
        assert_eq!(
            latest_rehearsal(&me, &slimmed),
            latest_rehearsal(&me, &full)
        );
    }

    #[test]
    fn the_cache_keeps_the_spec_the_plan_acts_on_once() {
        let accepted = crate::fixtures::SquidexPlan::unit().spec();
        let mut live = accepted.clone();
        live.app.deployment = "edited".into();
        live.traffic = crate::crd::Color::Blue;
        let mut p = UpgradePlan::new("p", live);
        p.status = Some(UpgradePlanStatus {
            frozen_spec: Some(Box::new(accepted.clone())),
            ..Default::default()
        });
        slim(&mut p);
        assert_eq!(
            p.spec.app.deployment, accepted.app.deployment,
            "the accepted spec"
        );
        assert_eq!(
            p.spec.traffic,
            crate::crd::Color::Blue,
            "steered by the live one"
        );
        assert!(p.status.unwrap().frozen_spec.is_none(), "not kept twice");
    }
}
