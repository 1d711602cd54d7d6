//! `backup.cloneMethod: online`: Pending → Syncing (the app still writes) → EnteringReadOnly
//! once caught up → Cloning (drain, compare) → DeployingGreen; no backup before the switch;
//! sync failures before read-only leave the app as it was, inside the window they restore the
//! old version read-write; a restart resumes from `status.sync`.

use crate::sync::{HistoryLost, OpTime, SourceResume, SyncState, SyncView};

use super::table::{Case, run};
use super::*;

fn online_spec(s: &mut UpgradePlanSpec) {
    s.backup.clone_method = CloneMethod::Online;
}

fn online() -> UpgradePlanSpec {
    let mut s = spec();
    online_spec(&mut s);
    s
}

fn resume(source: &str, events: i64) -> SourceResume {
    SourceResume {
        source: source.into(),
        clone: format!("{source}-up7"),
        start_at: OpTime { t: 1000, i: 1 },
        token: Some(r#"{"_data":"00"}"#.into()),
        position: Some(OpTime { t: 1005, i: 3 }),
        events_applied: events,
        bulk_done: vec!["Events".into()],
        bulk_finished: true,
    }
}

fn view(state: SyncState, lag: Option<i64>) -> Option<SyncView> {
    Some(SyncView {
        state,
        collections_done: 3,
        collections_total: 3,
        events_applied: 40,
        lag_seconds: lag,
        events_behind: None,
        resume: vec![resume("Squidex", 30), resume("SquidexContent", 10)],
        draining: false,
    })
}

/// The app is not read-only while Syncing.
fn writable(w: &mut Observed) {
    let b = w.blue.as_mut().unwrap();
    b.read_only_env = false;
    b.tracked = false;
}

fn lost() -> HistoryLost {
    HistoryLost {
        source: "Squidex".into(),
        needed_from: OpTime { t: 1000, i: 1 },
        oldest: OpTime { t: 1100, i: 1 },
        needed_seconds: 300,
        needed_entries: 120_000,
    }
}

pub(super) fn cases() -> Vec<Case> {
    use Phase::*;
    vec![
        Case {
            name: "online: no sync in this process starts one",
            phase: Syncing,
            spec: online_spec,
            world: |w| {
                writable(w);
                w.sync = Some(SyncView::default());
            },
            now: 1,
            want_phase: Syncing,
            want_action: Some(Action::StartSync { resume: Vec::new() }),
            want_message: "while the app still takes writes",
        },
        Case {
            name: "online: bulk copying waits with progress",
            phase: Syncing,
            spec: online_spec,
            world: |w| {
                writable(w);
                w.sync = view(SyncState::BulkCopying, None);
            },
            now: 5,
            want_phase: Syncing,
            want_action: None,
            want_message: "copying: 3/3 colls copied, 40 events, lag ?",
        },
        Case {
            name: "online: streaming but behind waits",
            phase: Syncing,
            spec: online_spec,
            world: |w| {
                writable(w);
                w.sync = view(SyncState::Streaming, Some(5));
            },
            now: 5,
            want_phase: Syncing,
            want_action: None,
            want_message: "lag 5s",
        },
        Case {
            name: "online: caught up makes the app read-only",
            phase: Syncing,
            spec: online_spec,
            world: |w| {
                writable(w);
                w.sync = view(SyncState::Streaming, Some(2));
            },
            now: 5,
            want_phase: EnteringReadOnly,
            want_action: Some(Action::SetReadOnly {
                color: Color::Blue,
                enabled: true,
            }),
            want_message: "2 s behind the sources",
        },
        Case {
            name: "online: the deadline passes before catching up",
            phase: Syncing,
            spec: online_spec,
            world: |w| {
                writable(w);
                w.sync = view(SyncState::Streaming, Some(30));
            },
            now: 7201,
            want_phase: Failed,
            want_action: None,
            want_message: "did not catch up",
        },
        Case {
            name: "online: history lost fails before read-only, saying how much oplog",
            phase: Syncing,
            spec: online_spec,
            world: |w| {
                writable(w);
                w.sync = Some(SyncView {
                    state: SyncState::HistoryLost(lost()),
                    ..Default::default()
                });
            },
            now: 5,
            want_phase: Failed,
            want_action: None,
            want_message: "the oplog must hold at least 300 s",
        },
        Case {
            name: "online: a failed sync fails before read-only",
            phase: Syncing,
            spec: online_spec,
            world: |w| {
                writable(w);
                w.sync = Some(SyncView {
                    state: SyncState::Failed("copying Squidex.Events: boom".into()),
                    ..Default::default()
                });
            },
            now: 5,
            want_phase: Failed,
            want_action: None,
            want_message: "boom",
        },
        Case {
            name: "online: read-only verified goes to the drain, not the backup",
            phase: EnteringReadOnly,
            spec: online_spec,
            world: |w| w.sync = view(SyncState::Streaming, Some(0)),
            now: 5,
            want_phase: Cloning,
            want_action: Some(Action::DrainSync),
            want_message: "draining the online sync",
        },
        Case {
            name: "online: draining, markers written: waits without acting again",
            phase: Cloning,
            spec: online_spec,
            world: |w| {
                w.sync = view(SyncState::Streaming, Some(0));
                if let Some(v) = &mut w.sync {
                    v.draining = true;
                }
            },
            now: 5,
            want_phase: Cloning,
            want_action: None,
            want_message: "draining the online sync",
        },
        Case {
            name: "online: draining, no markers yet (operator restarted): writes them",
            phase: Cloning,
            spec: online_spec,
            world: |w| w.sync = view(SyncState::Streaming, Some(0)),
            now: 5,
            want_phase: Cloning,
            want_action: Some(Action::DrainSync),
            want_message: "draining the online sync",
        },
        Case {
            name: "online: drained, compared equal: the new version",
            phase: Cloning,
            spec: online_spec,
            world: |w| {
                w.sync = view(SyncState::Drained, Some(0));
                w.sync_compare = Some(Ok(Vec::new()));
                w.source_shape = Some(Ok(source_shape()));
                w.clone_shape = Some(Ok(clone_shape_of(&source_shape())));
                w.clone_counts = Some(Ok(clone_counts_of(&source_counts())));
            },
            now: 5,
            want_phase: DeployingGreen,
            want_action: Some(Action::ApplyGreen { replicas: 2 }),
            want_message: "the clones match the frozen sources",
        },
        Case {
            name: "online: drained, compared different: the old version read-write again",
            phase: Cloning,
            spec: online_spec,
            world: |w| {
                w.sync = view(SyncState::Drained, Some(0));
                w.sync_compare = Some(Ok(vec![
                    "Squidex.Events has 10 documents, its clone 9".into(),
                ]));
                w.clone_counts = Some(Ok(clone_counts_of(&source_counts())));
            },
            now: 5,
            want_phase: RollingBack,
            want_action: Some(Action::SetReadOnly {
                color: Color::Blue,
                enabled: false,
            }),
            want_message: "Squidex.Events has 10 documents, its clone 9",
        },
        Case {
            name: "online: drained, equal documents but an index missing in a clone: the old version read-write again",
            phase: Cloning,
            spec: online_spec,
            world: |w| {
                w.sync = view(SyncState::Drained, Some(0));
                w.sync_compare = Some(Ok(Vec::new()));
                w.clone_counts = Some(Ok(clone_counts_of(&source_counts())));
                w.source_shape = Some(Ok(source_shape()));
                let mut clone = clone_shape_of(&source_shape());
                let first = clone
                    .collections
                    .values_mut()
                    .find(|c| !c.indexes.is_empty());
                first.expect("a collection with an index").indexes.clear();
                w.clone_shape = Some(Ok(clone));
            },
            now: 5,
            want_phase: RollingBack,
            want_action: Some(Action::SetReadOnly {
                color: Color::Blue,
                enabled: false,
            }),
            want_message: "index",
        },
        Case {
            name: "online: the operator restarted in the window: resume to drain",
            phase: Cloning,
            spec: online_spec,
            world: |w| w.sync = Some(SyncView::default()),
            now: 5,
            want_phase: Cloning,
            want_action: Some(Action::StartSync { resume: Vec::new() }),
            want_message: "Resuming the online sync",
        },
        Case {
            name: "online: a drain that does not finish in time restores the old version",
            phase: Cloning,
            spec: online_spec,
            world: |w| w.sync = view(SyncState::Streaming, Some(0)),
            now: 7201,
            want_phase: RollingBack,
            want_action: Some(Action::SetReadOnly {
                color: Color::Blue,
                enabled: false,
            }),
            want_message: "did not drain",
        },
    ]
}

#[test]
fn table() {
    run(cases());
}

#[test]
fn pending_goes_to_syncing_only_for_online() {
    let mut w = world();
    w.sync = Some(SyncView::default());
    w.claims = Some(Ok(held_claims(&online(), UID)));
    let d = decide(&online(), None, &w, t(0));
    assert_eq!(d.status.phase, Phase::Syncing);
    assert_eq!(d.action, Some(Action::StartSync { resume: Vec::new() }));
    assert!(d.status.read_only_since.is_none(), "the app still writes");
    let d = decide(&spec(), None, &world(), t(0));
    assert_eq!(d.status.phase, Phase::EnteringReadOnly);
}

#[test]
fn the_sync_is_recorded_and_a_restart_resumes_from_it() {
    let s = online();
    let mut w = world_in(Phase::Syncing);
    writable(&mut w);
    w.sync = view(SyncState::BulkCopying, None);
    let d = decide(&s, Some(&status_in(Phase::Syncing)), &w, t(1));
    let sync = d.status.sync.clone().expect("recorded");
    assert_eq!(sync.sources.len(), 2);
    assert_eq!(sync.events_applied, 40);
    let p = d.status.progress.clone().expect("the Progress column");
    assert_eq!(p.summary, "copying: 3/3 colls copied, 40 events, lag ?");

    // The operator restarted: the sync is started again from what status recorded.
    w.sync = Some(SyncView::default());
    let d2 = decide(&s, Some(&d.status), &w, t(3));
    assert_eq!(
        d2.action,
        Some(Action::StartSync {
            resume: vec![resume("Squidex", 30), resume("SquidexContent", 10)]
        })
    );

    // Resumed with every bulk copy finished, the engine counts no collections: the record
    // keeps the totals of the copy that was done.
    let mut v = view(SyncState::Streaming, Some(0)).unwrap();
    (v.collections_done, v.collections_total) = (0, 0);
    v.events_applied = 60;
    w.sync = Some(v);
    let d3 = decide(&s, Some(&d2.status), &w, t(9));
    let sync = d3.status.sync.clone().unwrap();
    assert_eq!(
        (
            sync.collections_done,
            sync.collections_total,
            sync.events_applied
        ),
        (3, 3, 60)
    );
}

#[test]
fn the_record_is_refreshed_every_few_seconds_and_skips_uncaptured_start_points() {
    let s = online();
    let mut w = world_in(Phase::Syncing);
    writable(&mut w);
    w.sync = view(SyncState::Streaming, Some(9));
    let first = decide(&s, Some(&status_in(Phase::Syncing)), &w, t(1));
    let mut v = view(SyncState::Streaming, Some(8)).unwrap();
    v.events_applied = 41;
    w.sync = Some(v.clone());
    let woken = decide(&s, Some(&first.status), &w, t(2));
    assert_eq!(woken.status, first.status, "nothing new to write 1 s later");
    let later = decide(&s, Some(&woken.status), &w, t(7));
    assert_eq!(later.status.sync.as_ref().unwrap().events_applied, 41);

    // A source whose start point is not captured yet is not recorded (it starts afresh).
    let mut v = view(SyncState::BulkCopying, None).unwrap();
    v.resume[1].start_at = OpTime::default();
    w.sync = Some(v);
    let d = decide(&s, Some(&status_in(Phase::Syncing)), &w, t(1));
    let names: Vec<_> = d
        .status
        .sync
        .unwrap()
        .sources
        .into_iter()
        .map(|r| r.source)
        .collect();
    assert_eq!(names, vec!["Squidex".to_string()]);
}

#[test]
fn held_by_suspend_in_syncing_the_record_stays_current() {
    let mut s = online();
    s.suspend = true;
    let mut w = world_in(Phase::Syncing);
    writable(&mut w);
    w.sync = view(SyncState::Streaming, Some(0));
    let d = decide(&s, Some(&status_in(Phase::Syncing)), &w, t(1));
    assert_eq!(d.status.phase, Phase::Syncing);
    assert!(
        d.status
            .message
            .starts_with("Suspended before EnteringReadOnly")
    );
    assert_eq!(d.requeue_after, Some(std::time::Duration::from_secs(2)));
    let mut v = view(SyncState::Streaming, Some(0)).unwrap();
    v.events_applied = 99;
    w.sync = Some(v);
    let d = decide(&s, Some(&d.status), &w, t(7));
    assert_eq!(d.status.sync.unwrap().events_applied, 99);
}

#[test]
fn no_backup_before_the_switch() {
    let mut w = world_in(Phase::Cloning);
    w.sync = view(SyncState::Drained, Some(0));
    w.sync_compare = Some(Ok(Vec::new()));
    w.source_shape = Some(Ok(source_shape()));
    w.clone_shape = Some(Ok(clone_shape_of(&source_shape())));
    w.clone_counts = Some(Ok(clone_counts_of(&source_counts())));
    let mut st = status_in(Phase::Cloning);
    st.backup = None;
    let d = decide(&online(), Some(&st), &w, t(5));
    assert_eq!(d.status.phase, Phase::DeployingGreen);
    assert!(d.status.clone.as_ref().unwrap().verified);
    let bv = cond::get(&d.status.conditions, cond::BACKUP_VERIFIED).unwrap();
    assert_eq!(
        (bv.status.as_str(), bv.reason.as_str()),
        ("False", "BackupAfterSwitch")
    );
}

#[test]
fn walks_to_succeeded_without_backup_or_clone_jobs() {
    let mut sim = Sim::new();
    sim.w.sync = Some(SyncView::default());
    let (st, actions) = walk(&online(), &mut sim, None, |_, _, _, _| {});
    assert_eq!(st.phase, Phase::Succeeded);
    let phases = phase_names(&st);
    assert_eq!(
        &phases[..5],
        &[
            Phase::Pending,
            Phase::Syncing,
            Phase::EnteringReadOnly,
            Phase::Cloning,
            Phase::DeployingGreen
        ]
    );
    // The backup is taken after the switch (see backup_after_switch), never before it.
    let switch = actions
        .iter()
        .position(|a| {
            *a == Action::PinService {
                color: Color::Green,
            }
        })
        .unwrap();
    assert!(
        actions[..switch]
            .iter()
            .all(|a| *a != Action::CreateBackupJob)
    );
    assert!(!actions.contains(&Action::CreateCloneJob));
    assert!(actions.contains(&Action::DrainSync));
    // Read-only starts only after the sync caught up.
    let start = actions
        .iter()
        .position(|a| matches!(a, Action::StartSync { .. }))
        .unwrap();
    let read_only = actions
        .iter()
        .position(|a| {
            *a == Action::SetReadOnly {
                color: Color::Blue,
                enabled: true,
            }
        })
        .unwrap();
    assert!(start < read_only);
}

#[test]
fn a_sync_failure_before_read_only_never_makes_the_app_read_only() {
    let mut sim = Sim::new();
    sim.w.sync = Some(SyncView::default());
    let (st, actions) = walk(&online(), &mut sim, None, |_, st, _, sim| {
        if st.phase == Phase::Syncing {
            sim.w.sync = Some(SyncView {
                state: SyncState::HistoryLost(lost()),
                ..Default::default()
            });
        }
    });
    assert_eq!(st.phase, Phase::Failed);
    assert_eq!(st.failure.as_ref().unwrap().reason, "SyncHistoryLost");
    assert_eq!(st.failure.as_ref().unwrap().phase, Phase::Syncing);
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::SetReadOnly { enabled: true, .. })),
        "{actions:?}"
    );
    assert!(st.read_only_since.is_none());
}

#[test]
fn a_plan_deleted_while_syncing_ends_without_making_the_app_read_only() {
    let mut sim = Sim::new();
    sim.w.sync = Some(SyncView::default());
    let (st, actions) = walk(&online(), &mut sim, None, |_, st, _, sim| {
        if st.phase == Phase::Syncing {
            // Still copying: the plan is deleted before it caught up.
            sim.w.sync = view(SyncState::BulkCopying, None);
            sim.w.plan.deleting = true;
        }
    });
    assert_eq!(st.phase, Phase::Failed);
    assert_eq!(st.failure.as_ref().unwrap().reason, "PlanDeleted");
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::SetReadOnly { enabled: true, .. })),
        "{actions:?}"
    );
    assert!(!sim.w.blue.as_ref().unwrap().read_only_env);
}
