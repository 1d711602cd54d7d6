//! Requested rollbacks, deletion mid-way, and terminal phases that stay put.

use super::table::{Case, no_spec, no_world, run, run_with};
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

fn deleted(w: &mut Observed) {
    w.plan.deleting = true;
    w.plan.deleted_at = Some(t(0));
}

fn lifted(st: &mut UpgradePlanStatus) {
    st.read_only_lifted_at = Some(t(-5));
    st.active_color = Some(Color::Green);
}

/// A plan deleted after read-only was lifted keeps the new version: made read-write, handed
/// over, then let go, whatever phase it was in; never a rollback.
fn deletion_after_lift() -> Vec<Case> {
    use Phase::*;
    vec![
        Case {
            name: "deleted after the lift, new version still read-only: made read-write first",
            phase: LiftingReadOnly,
            spec: no_spec,
            world: deleted,
            now: 1,
            want_phase: LiftingReadOnly,
            want_action: Some(Action::SetReadOnly {
                color: Color::Green,
                enabled: false,
            }),
            want_message: "making squidex-up7 read-write before letting go",
        },
        Case {
            name: "deleted after the lift, rolling out read-write: handed over without waiting",
            phase: LiftingReadOnly,
            spec: no_spec,
            world: |w| {
                deleted(w);
                let g = w.green.as_mut().unwrap();
                g.read_only_env = false;
                g.ready_replicas = 0;
            },
            now: 1,
            want_phase: LiftingReadOnly,
            want_action: Some(Action::ReleaseGreen),
            want_message: "handing Deployment squidex-up7 over",
        },
        Case {
            name: "deleted while cleaning up: handed over",
            phase: CleaningUp,
            spec: no_spec,
            world: deleted,
            now: 1,
            want_phase: CleaningUp,
            want_action: Some(Action::ReleaseGreen),
            want_message: "handing Deployment squidex-up7 over",
        },
        Case {
            name: "deleted after the lift, handed over: lets go keeping the new version, no cleanup",
            phase: CleaningUp,
            spec: |s| {
                s.cleanup.delete_blue_after = Some(dur("0s"));
                s.cleanup.drop_source_databases_after = Some(dur("0s"));
            },
            world: |w| {
                deleted(w);
                w.green.as_mut().unwrap().owned_by_plan = false;
            },
            now: 1,
            want_phase: Succeeded,
            want_action: None,
            want_message: "The new version squidex-up7 (squidex/squidex:7.0.0) was kept, read-write",
        },
        Case {
            name: "deleted after the lift while suspended: still handed over",
            phase: CleaningUp,
            spec: |s| s.suspend = true,
            world: |w| {
                deleted(w);
                w.green.as_mut().unwrap().owned_by_plan = false;
            },
            now: 1,
            want_phase: Succeeded,
            want_action: None,
            want_message: "was kept, read-write",
        },
        Case {
            name: "deleted after the lift with traffic: blue requested: no rollback",
            phase: CleaningUp,
            spec: |s| s.traffic = Color::Blue,
            world: deleted,
            now: 1,
            want_phase: CleaningUp,
            want_action: Some(Action::ReleaseGreen),
            want_message: "handing Deployment squidex-up7 over",
        },
        Case {
            name: "deleted after the lift, new version gone: lets go, traffic not moved",
            phase: LiftingReadOnly,
            spec: no_spec,
            world: |w| {
                deleted(w);
                w.green = None;
            },
            now: 1,
            want_phase: Failed,
            want_action: None,
            want_message: "cutover does not move traffic back to squidex",
        },
        Case {
            name: "deleted while a rollback would lose writes: handed over instead",
            phase: RollingBack,
            spec: no_spec,
            world: |w| {
                deleted(w);
                w.green = Some(GreenSim::serving());
                traffic_on_green(w);
            },
            now: 1,
            want_phase: RollingBack,
            want_action: Some(Action::ReleaseGreen),
            want_message: "handing Deployment squidex-up7 over",
        },
        Case {
            name: "rolling back after the lift without acceptDataLoss: refused, nothing moves",
            phase: RollingBack,
            spec: no_spec,
            world: |w| {
                w.green = Some(GreenSim::serving());
                traffic_on_green(w);
            },
            now: 1,
            want_phase: RollingBack,
            want_action: None,
            want_message: "Rollback refused",
        },
        Case {
            name: "rolling back after the lift with acceptDataLoss: freezes the new version",
            phase: RollingBack,
            spec: |s| s.rollback.accept_data_loss = true,
            world: |w| {
                w.green = Some(GreenSim::serving());
                traffic_on_green(w);
            },
            now: 1,
            want_phase: RollingBack,
            want_action: Some(Action::SetReadOnly {
                color: Color::Green,
                enabled: true,
            }),
            want_message: "read-only before traffic moves back",
        },
    ]
}

/// Deletion before the lift rolls back (lossless), and whatever runs after a deletion is
/// bounded.
fn deletion_bounded() -> Vec<Case> {
    use Phase::*;
    vec![
        Case {
            name: "deleted in LiftingReadOnly before the lift: rolls back",
            phase: LiftingReadOnly,
            spec: no_spec,
            world: deleted,
            now: 1,
            want_phase: RollingBack,
            want_action: None,
            want_message: "deleted mid-way",
        },
        Case {
            name: "deleted while rolling back, within the bound: keeps unwinding",
            phase: RollingBack,
            spec: no_spec,
            world: deleted,
            now: 1800,
            want_phase: RollingBack,
            want_action: Some(Action::SetReadOnly {
                color: Color::Blue,
                enabled: false,
            }),
            want_message: "Lifting read-only on the old version",
        },
        Case {
            name: "deleted while rolling back, past the bound: lets go, saying where things stand",
            phase: RollingBack,
            spec: no_spec,
            world: deleted,
            now: 1801,
            want_phase: Failed,
            want_action: None,
            want_message: "did not finish within 30m (3 × spec.timeouts.rollout); letting go so the deletion completes. It was at: ",
        },
    ]
}

#[test]
fn deletion_after_the_lift_keeps_the_new_version() {
    run_with(deletion_after_lift(), lifted);
}

#[test]
fn deletion_before_the_lift_rolls_back_and_is_bounded() {
    run(deletion_bounded());
}

struct GreenSim;

impl GreenSim {
    /// The new version serving read-write after the lift.
    fn serving() -> DeploymentView {
        let mut g = green_view(2);
        g.read_only_env = false;
        g
    }
}

#[test]
fn a_deleted_plan_past_its_bound_lets_go_saying_where_things_stand() {
    let st = status_in(Phase::RollingBack);
    let mut w = world_in(Phase::RollingBack);
    deleted(&mut w);
    let d = decide(&spec(), Some(&st), &w, t(1801));
    assert_eq!(d.status.phase, Phase::Failed);
    assert_eq!(d.action, None);
    assert_eq!(
        d.status.failure.as_ref().map(|f| f.reason.as_str()),
        Some("DeletionTimedOut")
    );
    let warning = d
        .events
        .iter()
        .find(|e| e.reason == Reason::DeletionTimedOut)
        .expect("a DeletionTimedOut event");
    assert_eq!(warning.kind, EventKind::Warning);
    for fragment in [
        "selects squidex;",
        "the old version squidex has 2 replicas (2/2 updated, 2/2 ready), read-only (remove variable MODE__ISREADONLY to lift it)",
    ] {
        assert!(
            warning.note.contains(fragment),
            "{fragment}: {}",
            warning.note
        );
    }
    // Within the bound, the same plan keeps unwinding.
    let d2 = decide(&spec(), Some(&st), &w, t(1799));
    assert_eq!(d2.status.phase, Phase::RollingBack);
}

#[test]
fn deletion_after_the_lift_says_the_new_version_was_kept() {
    let mut st = status_in(Phase::CleaningUp);
    lifted(&mut st);
    let mut w = world_in(Phase::CleaningUp);
    deleted(&mut w);
    w.green.as_mut().unwrap().owned_by_plan = false;
    let d = decide(&spec(), Some(&st), &w, t(1));
    let kept: Vec<_> = d
        .events
        .iter()
        .filter(|e| e.reason == Reason::NewVersionKept)
        .collect();
    assert_eq!(kept.len(), 1, "{:?}", d.events);
    assert_eq!(kept[0].kind, EventKind::Normal);
    assert!(kept[0].note.contains("a rollback would lose them"));
    assert!(
        !d.events.iter().any(|e| e.kind == EventKind::Warning),
        "{:?}",
        d.events
    );
    assert!(!cond::is_true(&d.status.conditions, cond::READ_ONLY));
    assert!(d.status.cleanup.is_none(), "no cleanup step ran");
}

#[test]
fn walks_deletion_after_the_lift_to_a_kept_new_version() {
    let mut sim = Sim::new();
    let mut deleted_at = None;
    let (st, actions) = walk(&spec(), &mut sim, None, |step, st, _, sim| {
        if st.read_only_lifted_at.is_some() && deleted_at.is_none() {
            // Deleted right after the lift, while the new version still rolls out.
            deleted_at = Some(t(step as i64));
            sim.w.plan.deleting = true;
            sim.w.plan.deleted_at = deleted_at;
            sim.w.green.as_mut().unwrap().ready_replicas = 0;
        }
    });
    assert!(deleted_at.is_some());
    assert_eq!(st.phase, Phase::Succeeded);
    let after_lift = actions
        .iter()
        .skip_while(|a| {
            **a != Action::SetReadOnly {
                color: Color::Green,
                enabled: false,
            }
        })
        .skip(1)
        .cloned()
        .collect::<Vec<_>>();
    // The new version handed over, then (the plan being deleted) every claim given back.
    assert_eq!(
        after_lift.first(),
        Some(&Action::ReleaseGreen),
        "{actions:?}"
    );
    assert!(
        after_lift[1..]
            .iter()
            .all(|a| matches!(a, Action::ReleaseClaims { .. })),
        "{actions:?}"
    );
    let g = sim.w.green.as_ref().unwrap();
    assert!(!g.read_only_env && !g.owned_by_plan);
    assert_eq!(
        sim.w.blue.as_ref().unwrap().replicas,
        2,
        "blue left as it is"
    );
    assert_eq!(
        sim.w
            .service
            .as_ref()
            .unwrap()
            .selector
            .get(names::TRACK_LABEL)
            .map(String::as_str),
        Some("squidex-up7"),
        "traffic stays on the new version"
    );
    assert!(st.phases.last().unwrap().detail.contains("was kept"));
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

/// Finding 2b of the soak: an old-version pod killed just after it took its start-up migration
/// lock leaves the lock held in the SOURCE; the old version's rollout waits for it forever.
/// While cutover waits for that rollout (RollingBack, EnteringReadOnly) it reports
/// MigrationLockStale naming the source, once `staleLockAfter` passed, and never releases it.
#[test]
fn a_migration_lock_left_in_the_source_is_reported_while_the_old_version_waits() {
    let s = spec();
    let locked = || {
        Some(Ok(Some(MigrationDoc {
            version: Some(1),
            locked: true,
            raw: r#"{"_id":"Default","Version":1,"IsLocked":true}"#.into(),
        })))
    };
    for phase in [Phase::RollingBack, Phase::EnteringReadOnly] {
        let st = status_in(phase);
        let mut w = world_in(phase);
        let b = w.blue.as_mut().unwrap();
        b.read_only_env = phase == Phase::EnteringReadOnly;
        b.ready_replicas = 0;
        w.source_migration_doc = locked();

        // Before staleLockAfter (1m): waiting, nothing said.
        let d = decide(&s, Some(&st), &w, t(30));
        assert_eq!(d.status.phase, phase, "{phase:?}: {}", d.status.message);
        assert!(!cond::is_true(
            &d.status.conditions,
            cond::MIGRATION_LOCK_STALE
        ));
        assert!(d.events.is_empty(), "{phase:?}: {:?}", d.events);

        // Past it: reported, the source named with the release command; no action on it.
        let d = decide(&s, Some(&st), &w, t(61));
        assert_eq!(d.status.phase, phase, "{phase:?}: {}", d.status.message);
        assert_eq!(d.action, None, "{phase:?}");
        let c = cond::get(&d.status.conditions, cond::MIGRATION_LOCK_STALE).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", "SourceLockHeld")
        );
        for part in [
            "The migration lock in the SOURCE database Squidex.Migration is held",
            "\"IsLocked\":true",
            "db.getSiblingDB(\"Squidex\").getCollection(\"Migration\").updateOne({}, {$set: {\"IsLocked\": false}})",
            "cutover never releases it",
        ] {
            assert!(
                c.message.contains(part),
                "{phase:?}: lacks {part:?}: {}",
                c.message
            );
        }
        assert!(
            d.status.message.contains("SOURCE database Squidex"),
            "{}",
            d.status.message
        );
        assert!(cond::is_true(&d.status.conditions, cond::DEGRADED));
        assert!(
            d.events
                .iter()
                .any(|e| e.reason.as_str() == "MigrationLockStale" && e.kind == EventKind::Warning),
            "{phase:?}"
        );
        // Once: the next reconcile says nothing new.
        let again = decide(&s, Some(&d.status), &w, t(90));
        assert!(
            again.events.is_empty(),
            "{phase:?}: the warning is emitted once"
        );

        // Released (and the old version ready): the condition clears.
        w.source_migration_doc = Some(Ok(Some(MigrationDoc {
            version: Some(1),
            locked: false,
            raw: "{}".into(),
        })));
        w.blue.as_mut().unwrap().ready_replicas = 2;
        let after = decide(&s, Some(&again.status), &w, t(95));
        let c = cond::get(&after.status.conditions, cond::MIGRATION_LOCK_STALE).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "LockMoved"),
            "{phase:?}"
        );
    }

    // A lock held while the old version is rolled out is not this problem (a pod starting).
    let st = status_in(Phase::RollingBack);
    let mut w = world_in(Phase::RollingBack);
    w.blue.as_mut().unwrap().read_only_env = false;
    w.source_migration_doc = locked();
    let d = decide(&s, Some(&st), &w, t(61));
    assert!(!cond::is_true(
        &d.status.conditions,
        cond::MIGRATION_LOCK_STALE
    ));
}
