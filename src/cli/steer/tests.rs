//! The steering verdicts, one plan state at a time.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde_json::json;

use super::*;
use crate::crd::{
    CleanupStatus, CleanupStep, DatabasePair, RecordedTargets, Timestamp, UpgradePlanStatus,
};
use crate::fixtures::SquidexPlan;

fn plan(phase: Phase, edit: impl FnOnce(&mut UpgradePlan)) -> UpgradePlan {
    let mut p = SquidexPlan::unit().object("up");
    p.metadata.namespace = Some("apps".into());
    p.status = Some(UpgradePlanStatus {
        phase,
        green_deployment: Some("squidex-up".into()),
        targets: Some(RecordedTargets {
            databases: vec![
                DatabasePair {
                    source: "Squidex".into(),
                    clone: "Squidex-up".into(),
                },
                DatabasePair {
                    source: "SquidexContent".into(),
                    clone: "SquidexContent-up".into(),
                },
            ],
            ..Default::default()
        }),
        ..Default::default()
    });
    edit(&mut p);
    p
}

fn manual(p: &mut UpgradePlan) {
    p.spec.promotion.mode = PromotionMode::Manual;
}

fn lifted_at(p: &mut UpgradePlan) {
    p.status.as_mut().unwrap().read_only_lifted_at =
        Some(Timestamp::from_millis(1_700_000_000_000));
}

fn patch_of(v: Verdict) -> (Value, Vec<String>, String) {
    match v {
        Verdict::Patch {
            patch,
            changes,
            explain,
        } => (patch, changes, explain),
        other => panic!("expected a patch, got {other:?}"),
    }
}

fn refused(v: Verdict) -> String {
    match v {
        Verdict::Refuse(m) => m,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn promote_approves_a_waiting_manual_promotion() {
    let (patch, changes, explain) = patch_of(promote(&plan(Phase::AwaitingPromotion, manual)));
    assert_eq!(patch, json!({"spec": {"promotion": {"approved": true}}}));
    assert_eq!(changes, ["spec.promotion.approved: false -> true"]);
    assert!(explain.contains("Traffic moves to squidex-up"), "{explain}");
    let again = promote(&plan(Phase::AwaitingPromotion, |p| {
        manual(p);
        p.spec.promotion.approved = true;
    }));
    assert!(matches!(again, Verdict::Nothing(m) if m.contains("approved already")));
}

#[test]
fn promote_refuses_outside_a_manual_promotion_wait() {
    let cases: [(Phase, bool, &str); 5] = [
        (Phase::AwaitingPromotion, false, "promotes automatically"),
        (
            Phase::Migrating,
            true,
            "is Migrating, not AwaitingPromotion: the migration gates have not passed yet",
        ),
        (Phase::Succeeded, true, "promoted already"),
        (Phase::LiftingReadOnly, true, "promoted already"),
        (Phase::Failed, true, "did not get to a promotion"),
    ];
    for (phase, is_manual, want) in cases {
        let m = refused(promote(&plan(phase, |p| {
            if is_manual {
                manual(p)
            }
        })));
        assert!(m.contains(want) && m.contains("apps/up"), "{phase}: {m}");
    }
}

#[test]
fn promote_reads_the_mode_the_plan_started_with() {
    // Manual when frozen; a later live edit to auto is not acted on by the operator.
    let p = plan(Phase::AwaitingPromotion, |p| {
        let mut frozen = p.spec.clone();
        frozen.promotion.mode = PromotionMode::Manual;
        p.status.as_mut().unwrap().frozen_spec = Some(Box::new(frozen));
    });
    assert!(matches!(promote(&p), Verdict::Patch { .. }));
}

#[test]
fn rollback_before_the_lift_is_safe() {
    for phase in [
        Phase::BackingUp,
        Phase::Migrating,
        Phase::AwaitingPromotion,
        Phase::SwitchingTraffic,
    ] {
        let (patch, changes, explain) = patch_of(rollback(&plan(phase, |_| {}), false));
        assert_eq!(patch, json!({"spec": {"traffic": "blue"}}), "{phase}");
        assert_eq!(changes, ["spec.traffic: green -> blue"]);
        assert!(
            explain.starts_with("This is safe") && explain.contains("nothing is lost"),
            "{explain}"
        );
    }
    let (_, _, explain) = patch_of(rollback(&plan(Phase::Pending, |_| {}), false));
    assert!(explain.contains("Nothing was changed yet"), "{explain}");
}

#[test]
fn rollback_after_the_lift_explains_the_refusal_or_the_loss() {
    for phase in [Phase::LiftingReadOnly, Phase::CleaningUp, Phase::Succeeded] {
        let p = plan(phase, |p| {
            if phase == Phase::LiftingReadOnly {
                lifted_at(p)
            }
        });
        let (patch, _, explain) = patch_of(rollback(&p, false));
        assert_eq!(patch, json!({"spec": {"traffic": "blue"}}));
        for part in [
            "DataDiverged",
            "Squidex-up, SquidexContent-up",
            "--accept-data-loss",
        ] {
            assert!(explain.contains(part), "{phase} {part}: {explain}");
        }
        let (patch, changes, explain) = patch_of(rollback(&p, true));
        assert_eq!(
            patch,
            json!({"spec": {"traffic": "blue", "rollback": {"acceptDataLoss": true}}})
        );
        assert_eq!(changes.len(), 2);
        assert!(explain.contains("are NOT carried back"), "{explain}");
    }
    // Refused already: the flag alone is added; without it, the refusal is shown again.
    let refused_already = plan(Phase::Succeeded, |p| {
        p.spec.traffic = Color::Blue;
        p.status.as_mut().unwrap().message =
            "Rollback refused: ... (3 documents added since read-only was lifted)".into();
    });
    let (patch, _, _) = patch_of(rollback(&refused_already, true));
    assert_eq!(
        patch,
        json!({"spec": {"rollback": {"acceptDataLoss": true}}})
    );
    assert!(
        matches!(rollback(&refused_already, false), Verdict::Nothing(m) if m.contains("3 documents added"))
    );
}

#[test]
fn rollback_while_rolling_back_changes_nothing_unless_loss_is_accepted() {
    // Compensating a failure: traffic is still green in the spec, the plan unwinds anyway.
    let p = plan(Phase::RollingBack, |p| {
        p.status.as_mut().unwrap().message = "Restoring Deployment squidex".into();
    });
    assert!(
        matches!(rollback(&p, false), Verdict::Nothing(m) if m.contains("rolling back already: Restoring"))
    );
    let (patch, _, _) = patch_of(rollback(&p, true));
    assert_eq!(
        patch,
        json!({"spec": {"traffic": "blue", "rollback": {"acceptDataLoss": true}}})
    );
}

#[test]
fn rollback_refuses_where_there_is_nothing_to_return_to() {
    for phase in [Phase::RolledBack, Phase::Failed] {
        assert!(refused(rollback(&plan(phase, |_| {}), true)).contains("nothing to roll back"));
    }
    let rehearsal = plan(Phase::Migrating, |p| p.spec.mode = Mode::Rehearsal);
    assert!(refused(rollback(&rehearsal, false)).contains("is a rehearsal"));
    for step in [
        CleanupStepName::DeleteBlue,
        CleanupStepName::DropSourceDatabases,
    ] {
        let p = plan(Phase::Succeeded, |p| {
            p.status.as_mut().unwrap().cleanup = Some(CleanupStatus {
                steps: vec![CleanupStep {
                    name: step,
                    state: CleanupState::Done,
                    due: None,
                    done_at: None,
                    message: String::new(),
                }],
                ..Default::default()
            });
        });
        assert!(
            refused(rollback(&p, true)).contains("nothing to return to"),
            "{step:?}"
        );
    }
    let blocked = plan(Phase::Succeeded, |p| {
        p.status.as_mut().unwrap().conditions.push(Condition {
            type_: "RollbackBlocked".into(),
            status: "True".into(),
            reason: "CleanedUp".into(),
            message: "Rollback refused: the old version was deleted".into(),
            last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
            observed_generation: None,
        });
    });
    assert!(refused(rollback(&blocked, true)).contains("the old version was deleted"));
}

#[test]
fn suspend_and_resume() {
    let (patch, changes, explain) = patch_of(suspend(
        &plan(Phase::Migrating, |p| {
            p.status.as_mut().unwrap().read_only_since =
                Some(Timestamp::from_millis(1_700_000_000_000));
        }),
        true,
    ));
    assert_eq!(patch, json!({"spec": {"suspend": true}}));
    assert_eq!(changes, ["spec.suspend: false -> true"]);
    assert!(
        explain.contains("stays read-only while the plan is suspended"),
        "{explain}"
    );
    assert!(matches!(
        suspend(&plan(Phase::Migrating, |p| p.spec.suspend = true), true),
        Verdict::Nothing(_)
    ));
    for phase in [
        Phase::Succeeded,
        Phase::RolledBack,
        Phase::Failed,
        Phase::RollingBack,
    ] {
        refused(suspend(&plan(phase, |_| {}), true));
    }
    let (patch, changes, _) = patch_of(suspend(
        &plan(Phase::Pending, |p| p.spec.suspend = true),
        false,
    ));
    assert_eq!(patch, json!({"spec": {"suspend": false}}));
    assert_eq!(changes, ["spec.suspend: true -> false"]);
    assert!(
        matches!(suspend(&plan(Phase::Pending, |_| {}), false), Verdict::Nothing(m) if m.contains("spec.suspend: false already"))
    );
}
