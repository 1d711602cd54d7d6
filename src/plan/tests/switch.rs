//! After the gates: `SwitchingTraffic`, `LiftingReadOnly` (with the baseline counts a later
//! rollback measures lost writes against) and `CleaningUp`.

use super::table::{Case, no_spec, no_world, run};
use super::*;

pub(super) fn cases() -> Vec<Case> {
    use Phase::*;
    vec![
        // SwitchingTraffic
        Case {
            name: "switch: pins green",
            phase: SwitchingTraffic,
            spec: no_spec,
            world: no_world,
            now: 1,
            want_phase: SwitchingTraffic,
            want_action: Some(Action::PinService {
                color: Color::Green,
            }),
            want_message: "Switching",
        },
        Case {
            name: "switch: already on green",
            phase: SwitchingTraffic,
            spec: no_spec,
            world: |w| {
                traffic_on_green(w);
            },
            now: 1,
            want_phase: LiftingReadOnly,
            want_action: None,
            want_message: "Counting the clones before lifting",
        },
        Case {
            name: "switch: service vanished",
            phase: SwitchingTraffic,
            spec: no_spec,
            world: |w| w.service = None,
            now: 1,
            want_phase: RollingBack,
            want_action: Some(Action::SetReadOnly {
                color: Color::Blue,
                enabled: false,
            }),
            want_message: "disappeared",
        },
        // LiftingReadOnly
        Case {
            name: "lift: removes env from green",
            phase: LiftingReadOnly,
            spec: no_spec,
            world: no_world,
            now: 1,
            want_phase: LiftingReadOnly,
            want_action: Some(Action::SetReadOnly {
                color: Color::Green,
                enabled: false,
            }),
            want_message: "Lifting",
        },
        Case {
            name: "lift: rolled out",
            phase: LiftingReadOnly,
            spec: no_spec,
            world: |w| w.green.as_mut().unwrap().read_only_env = false,
            now: 3,
            want_phase: CleaningUp,
            want_action: Some(Action::ReleaseGreen),
            want_message: "read-write",
        },
        // CleaningUp
        Case {
            name: "cleanup: releases green",
            phase: CleaningUp,
            spec: no_spec,
            world: no_world,
            now: 1,
            want_phase: CleaningUp,
            want_action: Some(Action::ReleaseGreen),
            want_message: "no longer owns",
        },
        Case {
            name: "cleanup: green handed over, the plan succeeds and scales blue down at once",
            phase: CleaningUp,
            spec: no_spec,
            world: |w| w.green.as_mut().unwrap().owned_by_plan = false,
            now: 1,
            want_phase: Succeeded,
            want_action: Some(Action::Scale {
                color: Color::Blue,
                replicas: 0,
            }),
            want_message: "Scaling the old version",
        },
        Case {
            name: "cleanup: succeeds while blue keeps running for a quick rollback",
            phase: CleaningUp,
            spec: |s| s.cleanup.scale_down_blue_after = dur("5m"),
            world: |w| w.green.as_mut().unwrap().owned_by_plan = false,
            now: 1,
            want_phase: Succeeded,
            want_action: None,
            want_message: "keeps running until",
        },
        Case {
            name: "succeeded: scales blue down when due",
            phase: Succeeded,
            spec: |s| s.cleanup.scale_down_blue_after = dur("1m"),
            world: no_world,
            now: 60,
            want_phase: Succeeded,
            want_action: Some(Action::Scale {
                color: Color::Blue,
                replicas: 0,
            }),
            want_message: "Scaling",
        },
        Case {
            name: "succeeded: cleanup finished",
            phase: Succeeded,
            spec: no_spec,
            world: |w| w.blue.as_mut().unwrap().replicas = 0,
            now: 1,
            want_phase: Succeeded,
            want_action: None,
            want_message: "cleanup finished",
        },
    ]
}

#[test]
fn table() {
    run(cases());
}

#[test]
fn lifting_read_only_records_the_clone_counts_the_data_diverged_check_starts_from() {
    let st = status_in(Phase::LiftingReadOnly);
    let mut w = world_in(Phase::LiftingReadOnly);
    w.clone_counts = Some(Ok(migrated_clone_counts()));
    let d = decide(&spec(), Some(&st), &w, t(1));
    assert_eq!(
        d.action,
        Some(Action::SetReadOnly {
            color: Color::Green,
            enabled: false
        })
    );
    assert_eq!(d.status.read_only_lifted_at, Some(t(1)));
    let clone = d.status.clone.clone().unwrap();
    assert_eq!(clone.collections_at_lift, migrated_clone_counts());

    // Recorded once, in the same status write as the lift: later counts do not move it.
    w.clone_counts = Some(Ok(BTreeMap::new()));
    let d2 = decide(&spec(), Some(&d.status), &w, t(2));
    assert_eq!(
        d2.status.clone.unwrap().collections_at_lift,
        migrated_clone_counts()
    );

    // Without counts (MongoDB unreachable at that moment) the lift is not held up; a refused
    // rollback then says when read-only was lifted but not how many documents were added.
    let mut w3 = world_in(Phase::LiftingReadOnly);
    w3.clone_counts = Some(Err("connection refused".into()));
    let d3 = decide(&spec(), Some(&st), &w3, t(1));
    assert!(
        d3.status
            .clone
            .as_ref()
            .unwrap()
            .collections_at_lift
            .is_empty()
    );
    assert!(d3.action.is_some());
    let mut s = spec();
    s.traffic = Color::Blue;
    let mut cleaning = d3.status.clone();
    cleaning.phase = Phase::CleaningUp;
    let mut w4 = world_in(Phase::CleaningUp);
    w4.clone_counts = Some(Ok(migrated_clone_counts()));
    let d4 = decide(&s, Some(&cleaning), &w4, t(5));
    assert!(
        d4.status
            .message
            .contains("exist only in the clones and would be lost")
    );
}
