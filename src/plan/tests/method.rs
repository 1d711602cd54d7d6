//! `backup.cloneMethod: auto` (chosen once in `Pending` from what the server said, recorded in
//! `status.clone`, acted on by every later phase, falling back to `restore` once when the
//! online sync loses its history before read-only) and online rehearsals (the sync and its
//! drain without read-only; the prediction is drain + compare + deploy + migration).

use crate::sync::{HistoryLost, OpTime, SyncState, SyncView};

use super::table::{Case, no_world, run};
use super::*;

fn auto_spec(s: &mut UpgradePlanSpec) {
    s.backup.clone_method = CloneMethod::Auto;
}

fn auto() -> UpgradePlanSpec {
    let mut s = spec();
    auto_spec(&mut s);
    s
}

fn streams() -> StreamSupport {
    StreamSupport::Streams {
        set_name: "rs0".into(),
    }
}

fn standalone() -> StreamSupport {
    StreamSupport::No(
        "the server is not a replica set (hello names no setName), so it has no change streams"
            .into(),
    )
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

/// A plan in `phase` that `auto` resolved to `method`.
fn chosen(st: &mut UpgradePlanStatus, method: CloneMethod) {
    let c = st.clone.as_mut().unwrap();
    c.method = Some(method);
    c.reason = Some("auto: test".into());
    st.frozen_spec = Some(Box::new(auto()));
}

pub(super) fn cases() -> Vec<Case> {
    use Phase::*;
    vec![
        Case {
            name: "auto: Pending waits for the server's answer",
            phase: Pending,
            spec: auto_spec,
            world: no_world,
            now: 0,
            want_phase: Pending,
            want_action: None,
            want_message: "whether it streams changes",
        },
        Case {
            name: "auto: a replica set that streams changes syncs online",
            phase: Pending,
            spec: auto_spec,
            world: |w| {
                w.change_streams = Some(streams());
                w.sync = Some(SyncView::default());
                w.claims = Some(Ok(held_claims(&auto(), UID)));
            },
            now: 0,
            want_phase: Syncing,
            want_action: Some(Action::StartSync { resume: Vec::new() }),
            want_message: "cloneMethod: online",
        },
        Case {
            name: "auto: a server without change streams restores",
            phase: Pending,
            spec: auto_spec,
            world: |w| {
                w.change_streams = Some(standalone());
                w.claims = Some(Ok(held_claims(&auto(), UID)));
            },
            now: 0,
            want_phase: EnteringReadOnly,
            want_action: Some(Action::SetReadOnly {
                color: Color::Blue,
                enabled: true,
            }),
            want_message: "read-only",
        },
        Case {
            name: "online rehearsal: Pending syncs, the app stays read-write",
            phase: Pending,
            spec: |s| {
                s.mode = Mode::Rehearsal;
                s.backup.clone_method = CloneMethod::Online;
            },
            world: |w| w.sync = Some(SyncView::default()),
            now: 0,
            want_phase: Syncing,
            want_action: Some(Action::StartSync { resume: Vec::new() }),
            want_message: "the app stays read-write",
        },
        Case {
            name: "online rehearsal: caught up drains without read-only",
            phase: Syncing,
            spec: |s| {
                s.mode = Mode::Rehearsal;
                s.backup.clone_method = CloneMethod::Online;
            },
            world: |w| {
                let b = w.blue.as_mut().unwrap();
                b.read_only_env = false;
                w.sync = Some(SyncView {
                    state: SyncState::Streaming,
                    lag_seconds: Some(0),
                    ..Default::default()
                });
            },
            now: 5,
            want_phase: Cloning,
            want_action: Some(Action::DrainSync),
            want_message: "draining the sync without read-only",
        },
    ]
}

#[test]
fn table() {
    run(cases());
}

/// The acting spec of a started plan carries the method `Pending` chose; the frozen spec keeps
/// `auto`; a live edit of the method is reported, not acted on.
#[test]
fn the_recorded_choice_is_what_later_phases_act_on() {
    let mut st = status_in(Phase::Syncing);
    chosen(&mut st, CloneMethod::Online);
    let acting = crate::plan::frozen::effective(&auto(), Some(&st), PLAN);
    assert_eq!(acting.spec.backup.clone_method, CloneMethod::Online);
    assert!(acting.ignored.is_empty(), "{:?}", acting.ignored);
    let mut edited = auto();
    edited.backup.clone_method = CloneMethod::Restore;
    let acting = crate::plan::frozen::effective(&edited, Some(&st), PLAN);
    assert_eq!(acting.spec.backup.clone_method, CloneMethod::Online);
    assert_eq!(acting.ignored, vec!["spec.backup.cloneMethod".to_string()]);
    // Only Pending asks the server; a restart reads the recorded choice.
    let t = targets(&acting.spec, PLAN, Some(&st));
    let plan = world().plan;
    let reads = needs::needs(&acting.spec, Some(&st), &plan, &t);
    assert!(reads.change_streams.is_none());
    assert!(reads.sync);
    let pending = needs::needs(&auto(), None, &plan, &t);
    assert_eq!(pending.change_streams.as_deref(), Some("Squidex"));
    let explicit = needs::needs(&spec(), None, &plan, &t);
    assert!(explicit.change_streams.is_none());
}

#[test]
fn auto_records_the_choice_and_why_with_one_event() {
    let mut w = world();
    w.change_streams = Some(streams());
    w.claims = Some(Ok(held_claims(&auto(), UID)));
    let mut st = None;
    let mut chosen_events = 0;
    for step in 0..3 {
        let acting = crate::plan::frozen::effective(&auto(), st.as_ref(), PLAN);
        let d = decide(&acting.spec, st.as_ref(), &w, t(step));
        chosen_events += d
            .events
            .iter()
            .filter(|e| e.reason == Reason::CloneMethodChosen)
            .inspect(|e| assert!(e.note.contains("replica set rs0"), "{}", e.note))
            .count();
        st = Some(d.status);
    }
    let st = st.unwrap();
    assert_eq!(chosen_events, 1);
    let c = st.clone.as_ref().unwrap();
    assert_eq!(c.method, Some(CloneMethod::Online));
    assert!(
        c.reason
            .as_deref()
            .unwrap()
            .starts_with("auto: the server streams changes (replica set rs0)")
    );
    assert_eq!(
        st.frozen_spec.as_ref().unwrap().backup.clone_method,
        CloneMethod::Auto
    );
    // An explicit method is recorded too, without an event.
    let d = decide(&spec(), None, &world(), t(0));
    let c = d.status.clone.unwrap();
    assert_eq!(c.method, Some(CloneMethod::Restore));
    assert_eq!(c.reason.as_deref(), Some("backup.cloneMethod: restore"));
    assert!(
        !d.events
            .iter()
            .any(|e| e.reason == Reason::CloneMethodChosen)
    );
}

#[test]
fn auto_walks_online_on_a_replica_set_and_restore_elsewhere() {
    let mut sim = Sim::new();
    sim.w.change_streams = Some(streams());
    sim.w.sync = Some(SyncView::default());
    let (st, actions) = walk(&auto(), &mut sim, None, |_, _, _, _| {});
    assert_eq!(st.phase, Phase::Succeeded);
    assert_eq!(
        &phase_names(&st)[..4],
        &[
            Phase::Pending,
            Phase::Syncing,
            Phase::EnteringReadOnly,
            Phase::Cloning
        ]
    );
    // No backup before the switch: an online plan dumps the frozen sources after it.
    assert!(phase_names(&st).contains(&Phase::VerifyingBackup));
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == Action::CreateBackupJob)
            .count(),
        1
    );
    assert_eq!(st.clone.unwrap().method, Some(CloneMethod::Online));

    let mut sim = Sim::new();
    sim.w.change_streams = Some(standalone());
    let (st, actions) = walk(&auto(), &mut sim, None, |_, _, _, _| {});
    assert_eq!(st.phase, Phase::Succeeded);
    assert_eq!(
        &phase_names(&st)[..4],
        &[
            Phase::Pending,
            Phase::EnteringReadOnly,
            Phase::BackingUp,
            Phase::Cloning
        ]
    );
    assert!(actions.contains(&Action::CreateCloneJob));
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::StartSync { .. }))
    );
    let c = st.clone.unwrap();
    assert_eq!(c.method, Some(CloneMethod::Restore));
    assert!(c.reason.unwrap().contains("not a replica set"));
}

/// History lost before read-only: an auto-chosen sync falls back to restore (the backup is
/// taken, the clones restored), once; the app went read-only only after the fallback.
#[test]
fn auto_falls_back_to_restore_when_the_sync_loses_its_history() {
    let mut sim = Sim::new();
    sim.w.change_streams = Some(streams());
    sim.w.sync = Some(SyncView::default());
    let (st, actions) = walk(&auto(), &mut sim, None, |_, st, _, sim| {
        if st.phase == Phase::Syncing {
            sim.w.sync = Some(SyncView {
                state: SyncState::HistoryLost(lost()),
                ..Default::default()
            });
        }
    });
    assert_eq!(st.phase, Phase::Succeeded, "{}", st.message);
    assert_eq!(
        &phase_names(&st)[..5],
        &[
            Phase::Pending,
            Phase::Syncing,
            Phase::EnteringReadOnly,
            Phase::BackingUp,
            Phase::Cloning
        ]
    );
    assert!(actions.contains(&Action::CreateBackupJob));
    assert!(actions.contains(&Action::CreateCloneJob));
    let c = st.clone.as_ref().unwrap();
    assert_eq!(c.method, Some(CloneMethod::Restore));
    assert!(
        c.reason
            .as_deref()
            .unwrap()
            .contains("fell back to restore")
    );
    assert!(st.sync.is_none());
    assert!(st.failure.is_none());
}

#[test]
fn the_fallback_says_so_and_an_explicit_online_still_fails() {
    let mut w = world_in(Phase::Syncing);
    w.blue.as_mut().unwrap().read_only_env = false;
    w.sync = Some(SyncView {
        state: SyncState::HistoryLost(lost()),
        ..Default::default()
    });
    let mut st = status_in(Phase::Syncing);
    st.read_only_since = None;
    chosen(&mut st, CloneMethod::Online);
    let acting = crate::plan::frozen::effective(&auto(), Some(&st), PLAN).spec;
    let d = decide(&acting, Some(&st), &w, t(5));
    assert_eq!(d.status.phase, Phase::EnteringReadOnly);
    assert!(
        d.events
            .iter()
            .any(|e| e.reason == Reason::CloneMethodFallback && e.note.contains("oplog"))
    );
    // A fallback held by suspend moves on with restore when resumed.
    let mut suspended = auto();
    suspended.suspend = true;
    let acting = crate::plan::frozen::effective(&suspended, Some(&st), PLAN).spec;
    let d = decide(&acting, Some(&st), &w, t(5));
    assert_eq!(d.status.phase, Phase::Syncing);
    assert_eq!(
        d.status.clone.as_ref().unwrap().method,
        Some(CloneMethod::Restore)
    );
    let acting = crate::plan::frozen::effective(&auto(), Some(&d.status), PLAN).spec;
    assert_eq!(acting.backup.clone_method, CloneMethod::Restore);
    let d = decide(&acting, Some(&d.status), &w, t(6));
    assert_eq!(d.status.phase, Phase::EnteringReadOnly);

    // Explicit online: SyncHistoryLost, as before.
    let mut st = status_in(Phase::Syncing);
    st.read_only_since = None;
    let mut online = spec();
    online.backup.clone_method = CloneMethod::Online;
    st.frozen_spec = Some(Box::new(online.clone()));
    let d = decide(&online, Some(&st), &w, t(5));
    assert_eq!(d.status.phase, Phase::Failed);
    assert_eq!(d.status.failure.unwrap().reason, "SyncHistoryLost");
}

/// An online rehearsal: the sync, its drain and the comparison, then the new version on the
/// clones, never read-only; the prediction is the drain + compare + deploy + migration.
#[test]
fn an_online_rehearsal_never_makes_the_app_read_only_and_predicts_the_window() {
    let mut s = spec();
    s.mode = Mode::Rehearsal;
    s.backup.clone_method = CloneMethod::Online;
    let mut sim = Sim::new();
    sim.w.sync = Some(SyncView::default());
    let blue_before = sim.w.blue.clone();
    let (st, actions) = walk(&s, &mut sim, None, |_, _, _, _| {});
    assert_eq!(st.phase, Phase::Rehearsed, "{}", st.message);
    assert_eq!(sim.w.blue, blue_before);
    assert_eq!(
        &phase_names(&st)[..4],
        &[
            Phase::Pending,
            Phase::Syncing,
            Phase::Cloning,
            Phase::DeployingGreen
        ]
    );
    assert!(!actions.iter().any(|a| matches!(
        a,
        Action::SetReadOnly {
            color: Color::Blue,
            ..
        } | Action::CreateBackupJob
            | Action::PinService { .. }
    )));
    assert!(actions.contains(&Action::DrainSync));
    assert!(st.read_only_since.is_none());
    assert!(
        st.message
            .contains("(online sync drain + compare + deploy + migration)"),
        "{}",
        st.message
    );
    assert!(st.prediction.is_some());
}

/// The app keeps writing during a rehearsal's drain: differences are expected, said, and the
/// rehearsal goes on.
#[test]
fn an_online_rehearsal_goes_on_when_the_live_sources_moved() {
    let mut s = spec();
    s.mode = Mode::Rehearsal;
    s.backup.clone_method = CloneMethod::Online;
    let mut w = world_in(Phase::Cloning);
    w.blue.as_mut().unwrap().read_only_env = false;
    w.sync = Some(SyncView {
        state: SyncState::Drained,
        ..Default::default()
    });
    w.sync_compare = Some(Ok(vec![
        "Squidex.Events: 10 documents in the source, 9 in the clone".into(),
    ]));
    w.source_shape = Some(Ok(source_shape()));
    w.clone_shape = Some(Ok(clone_shape_of(&source_shape())));
    w.clone_counts = Some(Ok(clone_counts_of(&source_counts())));
    let mut st = status_in(Phase::Cloning);
    st.read_only_since = None;
    st.backup = None;
    let d = decide(&s, Some(&st), &w, t(5));
    assert_eq!(
        d.status.phase,
        Phase::DeployingGreen,
        "{}",
        d.status.message
    );
    let bv = cond::get(&d.status.conditions, cond::BACKUP_VERIFIED).unwrap();
    assert_eq!(bv.reason, "SourcesInUse");
    assert!(bv.message.contains("Squidex.Events"));
}

#[test]
fn auto_is_the_default() {
    let b: BackupSpec =
        serde_json::from_value(serde_json::json!({"volume": {"claimName": "backups"}})).unwrap();
    assert_eq!(b.clone_method, CloneMethod::Auto);
    let crd = crate::crd::crd_yaml();
    assert!(
        crd.contains("default: auto"),
        "the CRD defaults cloneMethod to auto"
    );
}

/// An auto-chosen sync that fails (the server restarted under it) or does not catch up within
/// `timeouts.clone` falls back to restore too; an explicit `online` fails as before.
#[test]
fn auto_falls_back_when_the_sync_fails_or_does_not_catch_up() {
    let failed = SyncView {
        state: SyncState::Failed("Connection reset by peer".into()),
        ..Default::default()
    };
    let behind = SyncView {
        state: SyncState::Streaming,
        lag_seconds: Some(600),
        ..Default::default()
    };
    for (view, now, explicit_reason) in [
        (failed, 5, "SyncFailed"),
        (behind, 10 * 24 * 3600, "SyncTimedOut"),
    ] {
        let mut w = world_in(Phase::Syncing);
        w.blue.as_mut().unwrap().read_only_env = false;
        w.sync = Some(view);
        let mut st = status_in(Phase::Syncing);
        st.read_only_since = None;
        chosen(&mut st, CloneMethod::Online);
        let acting = crate::plan::frozen::effective(&auto(), Some(&st), PLAN).spec;
        let d = decide(&acting, Some(&st), &w, t(now));
        assert_eq!(
            d.status.phase,
            Phase::EnteringReadOnly,
            "{}",
            d.status.message
        );
        assert!(d.status.failure.is_none());
        assert_eq!(
            d.status.clone.as_ref().unwrap().method,
            Some(CloneMethod::Restore)
        );
        assert!(
            d.events
                .iter()
                .any(|e| e.reason == Reason::CloneMethodFallback),
            "{explicit_reason}"
        );

        let mut st = status_in(Phase::Syncing);
        st.read_only_since = None;
        let mut online = spec();
        online.backup.clone_method = CloneMethod::Online;
        st.frozen_spec = Some(Box::new(online.clone()));
        let d = decide(&online, Some(&st), &w, t(now));
        assert_eq!(d.status.phase, Phase::Failed, "{}", d.status.message);
        assert_eq!(d.status.failure.unwrap().reason, explicit_reason);
    }
}

/// Targets are recorded before `auto` chooses: an auto upgrade reserves what a backup after the
/// switch needs (scratch databases, the verify Job's name), a rehearsal never does.
#[test]
fn an_auto_upgrade_records_what_a_backup_after_the_switch_needs() {
    let t = targets(&auto(), PLAN, None);
    assert!(!t.verify_job.is_empty());
    assert_eq!(t.scratch.len(), t.databases.len());
    let mut rehearsal = auto();
    rehearsal.mode = Mode::Rehearsal;
    let t = targets(&rehearsal, PLAN, None);
    assert!(t.verify_job.is_empty() && t.scratch.is_empty());
    let t = targets(&spec(), PLAN, None);
    assert!(t.verify_job.is_empty() && t.scratch.is_empty(), "restore");
}
