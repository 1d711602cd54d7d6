//! Requested rollbacks, deletion mid-way, and terminal phases that stay put.

use super::table::{Case, no_spec, no_world, run};
use super::*;

pub(super) fn cases() -> Vec<Case> {
    use Phase::*;
    vec![
        // Rollback requests
        Case {
            name: "rollback requested before lift",
            phase: Migrating,
            spec: |s| s.traffic = Color::Blue,
            world: no_world,
            now: 1,
            want_phase: RollingBack,
            want_action: None,
            want_message: "as requested",
        },
        Case {
            name: "rollback refused after lift",
            phase: CleaningUp,
            spec: |s| s.traffic = Color::Blue,
            // Counted from the lift, not from the restore: the 1000 documents the migration
            // copied are not writes a rollback would lose.
            world: |w| {
                w.clone_counts = Some(Ok({
                    let mut c = migrated_clone_counts();
                    c.insert("SquidexContent-up7.States_Contents_All2".into(), 1007);
                    c
                }))
            },
            now: 1,
            want_phase: CleaningUp,
            want_action: None,
            want_message: "(7 documents added since read-only was lifted)",
        },
        Case {
            name: "rollback after lift with acceptDataLoss",
            phase: CleaningUp,
            spec: |s| {
                s.traffic = Color::Blue;
                s.rollback.accept_data_loss = true;
            },
            world: no_world,
            now: 1,
            want_phase: RollingBack,
            want_action: None,
            want_message: "as requested",
        },
        Case {
            name: "rollback requested while pending: nothing to undo",
            phase: Pending,
            spec: |s| s.traffic = Color::Blue,
            world: no_world,
            now: 0,
            want_phase: RolledBack,
            want_action: None,
            want_message: "nothing to undo",
        },
        // Deletion
        Case {
            name: "deleted mid-way compensates",
            phase: BackingUp,
            spec: no_spec,
            world: |w| w.plan.deleting = true,
            now: 1,
            want_phase: RollingBack,
            want_action: None,
            want_message: "deleted",
        },
        Case {
            name: "deleted while pending fails without side effects",
            phase: Pending,
            spec: no_spec,
            world: |w| w.plan.deleting = true,
            now: 0,
            want_phase: Failed,
            want_action: None,
            want_message: "deleted",
        },
        // Terminal phases stay put.
        Case {
            name: "succeeded stays",
            phase: Succeeded,
            spec: no_spec,
            world: |w| w.blue.as_mut().unwrap().replicas = 0,
            now: 1,
            want_phase: Succeeded,
            want_action: None,
            want_message: "",
        },
        Case {
            name: "failed stays",
            phase: Failed,
            spec: no_spec,
            world: no_world,
            now: 1,
            want_phase: Failed,
            want_action: None,
            want_message: "",
        },
        Case {
            name: "rolled back stays",
            phase: RolledBack,
            spec: |s| s.traffic = Color::Blue,
            world: no_world,
            now: 1,
            want_phase: RolledBack,
            want_action: None,
            want_message: "",
        },
        Case {
            name: "rehearsed stays",
            phase: Rehearsed,
            spec: |s| s.mode = Mode::Rehearsal,
            world: no_world,
            now: 1,
            want_phase: Rehearsed,
            want_action: None,
            want_message: "",
        },
    ]
}

#[test]
fn table() {
    run(cases());
}

#[test]
fn data_diverged_condition_says_how_to_proceed_and_clears() {
    let mut s = spec();
    s.traffic = Color::Blue;
    let st = status_in(Phase::CleaningUp);
    let d = decide(&s, Some(&st), &world_in(Phase::CleaningUp), t(1));
    let c = cond::get(&d.status.conditions, cond::DATA_DIVERGED).unwrap();
    assert_eq!(c.status, "True");
    assert!(c.message.contains("acceptDataLoss"));
    assert_eq!(
        d.action, None,
        "nothing moves while the rollback is refused"
    );
    s.traffic = Color::Green;
    let d2 = decide(&s, Some(&d.status), &world_in(Phase::CleaningUp), t(2));
    assert_eq!(
        cond::get(&d2.status.conditions, cond::DATA_DIVERGED)
            .unwrap()
            .status,
        "False"
    );
}
