//! `backup.cloneMethod: online`: the backup leaves the read-only window. After the lift,
//! `VerifyingBackup` dumps the frozen sources, restores the dump into scratch databases,
//! compares counts and content hashes, drops the scratch databases, then hands over; a
//! difference leaves `BackupVerified` False (the plan still succeeds, source drops refused). A
//! rollback after the lift keeps the old version read-only until the dump is complete.

use super::table::{Case, run_with};
use super::*;

fn online_spec(s: &mut UpgradePlanSpec) {
    s.backup.clone_method = CloneMethod::Online;
}

fn online() -> UpgradePlanSpec {
    let mut s = spec();
    online_spec(&mut s);
    s
}

/// An online plan after the lift: no backup yet, the clones compared after the drain.
fn after_lift(st: &mut UpgradePlanStatus) {
    st.backup = None;
    st.read_only_lifted_at = Some(t(-10));
    st.active_color = Some(Color::Green);
    cond::set(
        &mut st.conditions,
        cond::BACKUP_VERIFIED,
        false,
        "BackupAfterSwitch",
        "taken after the switch",
        Some(1),
        t(-80),
    );
}

/// Traffic on the new version, read-write; the old one read-only; the plan holds the online
/// claims (scratch databases included).
fn switched(w: &mut Observed) {
    w.green = Some(green_view(2));
    traffic_on_green(w);
    w.green.as_mut().unwrap().read_only_env = false;
    w.claims = Some(Ok(held_claims(&online(), UID)));
}

fn dumped(w: &mut Observed) {
    switched(w);
    w.backup_job = job(
        "up7-backup",
        JobState::Succeeded,
        r#"{"bytes":1234,"sha256":"cafe"}"#,
    );
    w.source_counts = Some(Ok(source_counts()));
    w.source_shape = Some(Ok(source_shape()));
}

fn with_scratch(w: &mut Observed) {
    if let DatabaseView::Reachable { databases } = &mut w.database {
        for d in digests_of_backup(None) {
            databases.insert(
                d.scratch,
                DatabaseInfo {
                    collections: 2,
                    documents: 500,
                },
            );
        }
    }
}

fn restored(w: &mut Observed) {
    dumped(w);
    with_scratch(w);
    w.verify_job = job("up7-verify", JobState::Succeeded, "");
}

fn scratch() -> Vec<String> {
    digests_of_backup(None)
        .into_iter()
        .map(|d| d.scratch)
        .collect()
}

pub(super) fn cases() -> Vec<Case> {
    use Phase::*;
    vec![
        Case {
            name: "after the lift: the frozen sources are dumped first",
            phase: VerifyingBackup,
            spec: online_spec,
            world: switched,
            now: 1,
            want_phase: VerifyingBackup,
            want_action: Some(Action::CreateBackupJob),
            want_message: "dumping the frozen sources",
        },
        Case {
            name: "the dump runs: wait, the old version stays read-only",
            phase: VerifyingBackup,
            spec: online_spec,
            world: |w| {
                switched(w);
                w.backup_job = job("up7-backup", JobState::Active, "");
            },
            now: 5,
            want_phase: VerifyingBackup,
            want_action: None,
            want_message: "the old version stays read-only meanwhile",
        },
        Case {
            name: "dumped but not counted yet: wait for the count",
            phase: VerifyingBackup,
            spec: online_spec,
            world: |w| {
                dumped(w);
                w.source_counts = None;
            },
            now: 5,
            want_phase: VerifyingBackup,
            want_action: None,
            want_message: "Counting documents in the frozen sources",
        },
        Case {
            name: "dumped and recorded: restore it into the scratch databases",
            phase: VerifyingBackup,
            spec: online_spec,
            world: dumped,
            now: 5,
            want_phase: VerifyingBackup,
            want_action: Some(Action::CreateVerifyJob),
            want_message: "restoring the backup into the scratch databases Squidex-verify-up7, SquidexContent-verify-up7",
        },
        Case {
            name: "the restore runs: wait",
            phase: VerifyingBackup,
            spec: online_spec,
            world: |w| {
                dumped(w);
                w.verify_job = job("up7-verify", JobState::Active, "");
            },
            now: 5,
            want_phase: VerifyingBackup,
            want_action: None,
            want_message: "is restoring the backup",
        },
        Case {
            name: "a dump hung past timeouts.backup + timeouts.clone: unverified, its Job stopped",
            phase: VerifyingBackup,
            spec: online_spec,
            world: |w| {
                switched(w);
                w.backup_job = job("up7-backup", JobState::Active, "");
            },
            now: 4 * 3600 + 1,
            want_phase: VerifyingBackup,
            want_action: Some(Action::StopJobs),
            want_message: "Stopping the backup Jobs that did not finish in time",
        },
        Case {
            name: "a restore hung past the deadline: unverified, its Job stopped",
            phase: VerifyingBackup,
            spec: online_spec,
            world: |w| {
                dumped(w);
                w.verify_job = job("up7-verify", JobState::Active, "");
            },
            now: 4 * 3600 + 1,
            want_phase: VerifyingBackup,
            want_action: Some(Action::StopJobs),
            want_message: "Stopping the backup Jobs that did not finish in time",
        },
        Case {
            name: "past the deadline with nothing running: unverified, the scratch databases dropped",
            phase: VerifyingBackup,
            spec: online_spec,
            world: |w| {
                dumped(w);
                with_scratch(w);
                w.verify_job = job("up7-verify", JobState::Failed, "DeadlineExceeded");
            },
            now: 4 * 3600 + 1,
            want_phase: VerifyingBackup,
            want_action: Some(Action::DropDatabases { names: scratch() }),
            want_message: "Dropping the scratch databases",
        },
        Case {
            name: "restored, not compared yet: wait for the comparison",
            phase: VerifyingBackup,
            spec: online_spec,
            world: restored,
            now: 5,
            want_phase: VerifyingBackup,
            want_action: None,
            want_message: "Comparing the restored backup with the frozen sources",
        },
        Case {
            name: "restored and equal: the scratch databases are dropped",
            phase: VerifyingBackup,
            spec: online_spec,
            world: |w| {
                restored(w);
                w.backup_compare = Some(Ok(digests_of_backup(None)));
            },
            now: 5,
            want_phase: VerifyingBackup,
            want_action: Some(Action::DropDatabases { names: scratch() }),
            want_message: "Dropping the scratch databases",
        },
        Case {
            name: "restored and different: the scratch databases are dropped all the same",
            phase: VerifyingBackup,
            spec: online_spec,
            world: |w| {
                restored(w);
                w.backup_compare = Some(Ok(digests_of_backup(Some("Events"))));
            },
            now: 5,
            want_phase: VerifyingBackup,
            want_action: Some(Action::DropDatabases { names: scratch() }),
            want_message: "Dropping the scratch databases",
        },
        Case {
            name: "the dump failed: not verified, nothing to drop, handed over",
            phase: VerifyingBackup,
            spec: online_spec,
            world: |w| {
                switched(w);
                w.backup_job = job("up7-backup", JobState::Failed, "mongodump: boom");
            },
            now: 5,
            want_phase: CleaningUp,
            want_action: Some(Action::ReleaseGreen),
            want_message: "could not be verified",
        },
        Case {
            name: "the restore failed: not verified, the scratch databases dropped",
            phase: VerifyingBackup,
            spec: online_spec,
            world: |w| {
                dumped(w);
                with_scratch(w);
                w.verify_job = job("up7-verify", JobState::Failed, "sha256sum: FAILED");
            },
            now: 5,
            want_phase: VerifyingBackup,
            want_action: Some(Action::DropDatabases { names: scratch() }),
            want_message: "Dropping the scratch databases",
        },
        Case {
            name: "scratch databases this plan does not hold are kept, not waited on",
            phase: VerifyingBackup,
            spec: online_spec,
            world: |w| {
                restored(w);
                w.backup_compare = Some(Ok(digests_of_backup(None)));
                w.claims = Some(Ok(held_claims(&spec(), UID)));
            },
            now: 5,
            want_phase: CleaningUp,
            want_action: Some(Action::ReleaseGreen),
            want_message: "taken and verified",
        },
        Case {
            name: "online: the new version read-write goes on to verify the backup",
            phase: LiftingReadOnly,
            spec: online_spec,
            world: switched,
            now: 5,
            want_phase: VerifyingBackup,
            want_action: Some(Action::CreateBackupJob),
            want_message: "backing up the frozen sources",
        },
    ]
}

#[test]
fn table() {
    run_with(cases(), after_lift);
}

fn decide_in(w: &Observed, st: &UpgradePlanStatus) -> Decision {
    decide(&online(), Some(st), w, t(5))
}

fn verifying() -> UpgradePlanStatus {
    let mut st = status_in(Phase::VerifyingBackup);
    after_lift(&mut st);
    st
}

#[test]
fn a_verified_backup_sets_backup_verified_with_collections_documents_and_hash() {
    let mut w = world_in(Phase::VerifyingBackup);
    restored(&mut w);
    w.backup_compare = Some(Ok(digests_of_backup(None)));
    let d = decide_in(&w, &verifying());
    let bv = cond::get(&d.status.conditions, cond::BACKUP_VERIFIED).unwrap();
    assert_eq!(
        (bv.status.as_str(), bv.reason.as_str()),
        ("True", "RestoredAndCompared")
    );
    let docs: i64 = source_counts().values().sum();
    let n = source_counts().len();
    assert!(
        bv.message
            .contains(&format!("{n} collections, {docs} documents, content hash ")),
        "{}",
        bv.message
    );
    let b = d.status.backup.as_ref().unwrap();
    assert_eq!(b.checksum.as_deref(), Some("cafe"));
    let v = b.verification.as_ref().unwrap();
    assert!(v.verified);
    assert_eq!((v.collections, v.documents), (n as i64, docs));
    assert_eq!(v.hash.len(), 32);
    assert!(d.events.iter().all(|e| e.kind == EventKind::Normal));
}

#[test]
fn a_difference_is_a_warning_and_backup_verified_false_naming_it() {
    let mut w = world_in(Phase::VerifyingBackup);
    restored(&mut w);
    w.backup_compare = Some(Ok(digests_of_backup(Some("Events"))));
    let d = decide_in(&w, &verifying());
    let bv = cond::get(&d.status.conditions, cond::BACKUP_VERIFIED).unwrap();
    assert_eq!(
        (bv.status.as_str(), bv.reason.as_str()),
        ("False", "BackupDiffers")
    );
    assert!(
        bv.message.contains("Squidex.Events: source"),
        "{}",
        bv.message
    );
    assert!(bv.message.contains("DropSourceDatabases refuses"));
    assert!(
        d.events
            .iter()
            .any(|e| e.kind == EventKind::Warning && e.reason == Reason::BackupDiffers)
    );
    let v = d.status.backup.unwrap().verification.unwrap();
    assert!(!v.verified);
    assert_eq!(v.differences.len(), 1);
}

#[test]
fn a_recorded_result_is_not_compared_again_and_the_phase_ends_once_scratch_is_gone() {
    let mut w = world_in(Phase::VerifyingBackup);
    restored(&mut w);
    // The comparison was recorded and the scratch databases dropped before a restart.
    let first = {
        let mut w = w.clone();
        w.backup_compare = Some(Ok(digests_of_backup(None)));
        decide_in(&w, &verifying()).status
    };
    let mut gone = w.clone();
    if let DatabaseView::Reachable { databases } = &mut gone.database {
        for s in scratch() {
            databases.remove(&s);
        }
    }
    // Comparing now would differ (the scratch databases are gone): the record stands.
    gone.backup_compare = Some(Ok(digests_of_backup(Some("Events"))));
    let d = decide_in(&gone, &first);
    assert_eq!(d.status.phase, Phase::CleaningUp);
    assert!(cond::is_true(&d.status.conditions, cond::BACKUP_VERIFIED));
}

#[test]
fn the_scratch_names_are_the_recorded_ones_whatever_the_spec_says() {
    let mut st = verifying();
    let mut t0 = targets(&online(), PLAN, None);
    t0.scratch[0].clone = "recorded-scratch".into();
    st.targets = Some(t0.record(None));
    let mut w = world_in(Phase::VerifyingBackup);
    restored(&mut w);
    if let DatabaseView::Reachable { databases } = &mut w.database {
        databases.insert(
            "recorded-scratch".into(),
            DatabaseInfo {
                collections: 1,
                documents: 1,
            },
        );
    }
    w.backup_compare = Some(Ok(digests_of_backup(None)));
    let mut held = held_claims(&online(), UID);
    held.push(crate::plan::claims::Claim {
        id: "db:recorded-scratch".into(),
        role: crate::plan::claims::ClaimRole::Scratch,
        holder: held[0].holder.clone(),
    });
    w.claims = Some(Ok(held));
    let d = decide_in(&w, &st);
    let Some(Action::DropDatabases { names }) = d.action else {
        panic!("{:?}", d.action)
    };
    assert!(names.contains(&"recorded-scratch".to_string()), "{names:?}");
    assert!(!names.contains(&"Squidex-verify-up7".to_string()));
}

#[test]
fn restore_and_server_side_plans_never_verify_after_the_switch() {
    for method in [CloneMethod::Restore, CloneMethod::ServerSide] {
        let mut s = spec();
        s.backup.clone_method = method;
        let mut w = world_in(Phase::LiftingReadOnly);
        switched(&mut w);
        w.claims = Some(Ok(held_claims(&s, UID)));
        let d = decide(&s, Some(&status_in(Phase::LiftingReadOnly)), &w, t(5));
        assert_eq!(d.status.phase, Phase::CleaningUp, "{method:?}");
        assert!(targets(&s, PLAN, None).scratch.is_empty());
    }
}

// ---- the rollback after the lift -------------------------------------------------------------

/// Rolling back after the lift with acceptDataLoss: traffic is back on the old version,
/// which is still read-only.
fn rolling_back() -> (UpgradePlanSpec, UpgradePlanStatus, Observed) {
    let mut s = online();
    s.traffic = Color::Blue;
    s.rollback.accept_data_loss = true;
    let mut st = status_in(Phase::RollingBack);
    after_lift(&mut st);
    let mut w = world_in(Phase::RollingBack);
    w.green = Some(green_view(2));
    w.green.as_mut().unwrap().read_only_env = true;
    w.claims = Some(Ok(held_claims(&online(), UID)));
    (s, st, w)
}

#[test]
fn a_rollback_after_the_lift_dumps_the_frozen_sources_before_the_old_version_writes() {
    let (s, st, w) = rolling_back();
    let d = decide(&s, Some(&st), &w, t(5));
    assert_eq!(d.status.phase, Phase::RollingBack);
    assert_eq!(d.action, Some(Action::CreateBackupJob));
    let c = cond::get(&d.status.conditions, cond::ROLLBACK_BLOCKED).unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", "AwaitingBackup")
    );
    assert!(
        c.message
            .contains("made writable again only once the backup")
    );
    assert!(d.status.message.contains("The rollback waits"));
    assert!(d.events.iter().any(|e| e.reason == Reason::AwaitingBackup));
    assert_eq!(d.status.backup.as_ref().unwrap().job, "up7-backup");

    // Running: never stopped, waited for.
    let mut running = w.clone();
    running.backup_job = job("up7-backup", JobState::Active, "");
    let d = decide(&s, Some(&d.status), &running, t(6));
    assert_eq!(d.action, None);
    assert!(d.status.message.contains("is dumping the frozen sources"));

    // Complete: recorded, then the old version is made writable.
    let mut done = w.clone();
    dumped(&mut done);
    done.green = w.green.clone();
    done.service = w.service.clone();
    let d = decide(&s, Some(&d.status), &done, t(7));
    assert_eq!(
        d.action,
        Some(Action::SetReadOnly {
            color: Color::Blue,
            enabled: false
        })
    );
    assert!(d.status.backup.as_ref().unwrap().completed_at.is_some());
    let c = cond::get(&d.status.conditions, cond::ROLLBACK_BLOCKED).unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "BackupComplete")
    );
}

#[test]
fn a_failed_dump_keeps_the_old_version_read_only_and_says_how_to_retry() {
    let (s, st, mut w) = rolling_back();
    w.backup_job = job("up7-backup", JobState::Failed, "disk full");
    let d = decide(&s, Some(&st), &w, t(5));
    assert_eq!(d.action, None);
    assert!(
        d.status
            .message
            .contains("Delete Job up7-backup to dump again")
    );
}

#[test]
fn a_rollback_drops_the_scratch_databases_an_interrupted_verification_left() {
    let (s, st, mut w) = rolling_back();
    dumped(&mut w);
    with_scratch(&mut w);
    // Traffic back, the old version read-write, the new one scaled down: only scratch is left.
    w.blue.as_mut().unwrap().read_only_env = false;
    w.green.as_mut().unwrap().replicas = 0;
    w.service
        .as_mut()
        .unwrap()
        .selector
        .insert(names::TRACK_LABEL.into(), "squidex".into());
    let mut st = st;
    st.backup = decide(&s, Some(&st), &w, t(5)).status.backup;
    let d = decide(&s, Some(&st), &w, t(6));
    assert_eq!(d.action, Some(Action::DropDatabases { names: scratch() }));
    // Gone: the rollback ends.
    if let DatabaseView::Reachable { databases } = &mut w.database {
        for n in scratch() {
            databases.remove(&n);
        }
    }
    let d = decide(&s, Some(&d.status), &w, t(7));
    assert_eq!(d.status.phase, Phase::RolledBack);
}

#[test]
fn a_restore_plan_rolls_back_after_the_lift_as_before() {
    let (mut s, st, w) = rolling_back();
    s.backup.clone_method = CloneMethod::Restore;
    let d = decide(&s, Some(&st), &w, t(5));
    assert_eq!(
        d.action,
        Some(Action::SetReadOnly {
            color: Color::Blue,
            enabled: false
        })
    );
}

// ---- walks -----------------------------------------------------------------------------------

#[test]
fn an_online_walk_verifies_the_backup_after_the_switch_and_drops_the_scratch_databases() {
    let mut sim = Sim::new();
    sim.w.sync = Some(crate::sync::SyncView::default());
    let (st, actions) = walk(&online(), &mut sim, None, |_, _, _, _| {});
    assert_eq!(st.phase, Phase::Succeeded);
    let phases = phase_names(&st);
    let at = |p: Phase| phases.iter().position(|q| *q == p).unwrap();
    assert!(at(Phase::LiftingReadOnly) < at(Phase::VerifyingBackup));
    assert!(at(Phase::VerifyingBackup) < at(Phase::CleaningUp));
    let pos = |a: &Action| actions.iter().position(|b| b == a).unwrap();
    // The dump comes after the traffic switch and the lift, the drop after the restore.
    assert!(
        pos(&Action::PinService {
            color: Color::Green
        }) < pos(&Action::CreateBackupJob)
    );
    assert!(pos(&Action::CreateBackupJob) < pos(&Action::CreateVerifyJob));
    assert!(pos(&Action::CreateVerifyJob) < pos(&Action::DropDatabases { names: scratch() }));
    assert!(cond::is_true(&st.conditions, cond::BACKUP_VERIFIED));
    let DatabaseView::Reachable { databases } = &sim.w.database else {
        panic!()
    };
    assert!(scratch().iter().all(|s| !databases.contains_key(s)));
}

#[test]
fn a_differing_backup_still_succeeds_and_the_source_drop_is_refused() {
    let mut s = online();
    s.cleanup.drop_source_databases_after = Some(dur("0s"));
    let mut sim = Sim::new();
    sim.w.sync = Some(crate::sync::SyncView::default());
    let (st, _) = walk(&s, &mut sim, None, |_, st, _, sim| {
        if st.phase == Phase::VerifyingBackup && sim.w.verify_job.is_some() {
            // Written into a source after the dump.
            sim.w.backup_compare = Some(Ok(digests_of_backup(Some("Events"))));
        }
    });
    assert_eq!(st.phase, Phase::Succeeded);
    let bv = cond::get(&st.conditions, cond::BACKUP_VERIFIED).unwrap();
    assert_eq!(bv.reason, "BackupDiffers");
    // Cleanup after success: the source drop refuses without a verified backup.
    let d = decide(&s, Some(&st), &sim.w, t(1000));
    let step = d
        .status
        .cleanup
        .as_ref()
        .unwrap()
        .steps
        .iter()
        .find(|s| s.name == CleanupStepName::DropSourceDatabases)
        .unwrap()
        .clone();
    assert_eq!(step.state, CleanupState::Refused, "{}", step.message);
}

#[test]
fn a_hung_verification_is_reported_stopped_and_handed_over() {
    let mut w = world_in(Phase::VerifyingBackup);
    dumped(&mut w);
    with_scratch(&mut w);
    w.verify_job = job("up7-verify", JobState::Active, "");
    let late = t(4 * 3600 + 1);
    let d = decide(&online(), Some(&verifying()), &w, late);
    assert_eq!(d.action, Some(Action::StopJobs));
    let c = cond::get(&d.status.conditions, cond::BACKUP_VERIFIED).expect("condition");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "BackupTimedOut")
    );
    assert!(
        c.message.contains("timeouts.backup + timeouts.clone"),
        "{}",
        c.message
    );
    // Stopped: the scratch databases go, then the plan hands over, unverified.
    w.verify_job = job("up7-verify", JobState::Failed, "DeadlineExceeded");
    let d = decide(&online(), Some(&d.status), &w, late);
    assert_eq!(d.action, Some(Action::DropDatabases { names: scratch() }));
    if let DatabaseView::Reachable { databases } = &mut w.database {
        for s in scratch() {
            databases.remove(&s);
        }
    }
    let d = decide(&online(), Some(&d.status), &w, late);
    assert_eq!(d.status.phase, Phase::CleaningUp);
    assert!(!cond::is_true(&d.status.conditions, cond::BACKUP_VERIFIED));
}

#[test]
fn before_the_deadline_a_long_restore_is_waited_on() {
    let mut w = world_in(Phase::VerifyingBackup);
    dumped(&mut w);
    w.verify_job = job("up7-verify", JobState::Active, "");
    let d = decide(&online(), Some(&verifying()), &w, t(4 * 3600 - 1));
    assert_eq!(d.action, None);
    assert!(d.status.message.contains("is restoring the backup"));
}

#[test]
fn a_stopped_dump_is_not_started_again() {
    let mut w = world_in(Phase::VerifyingBackup);
    switched(&mut w);
    w.backup_job = job("up7-backup", JobState::Active, "");
    let late = t(4 * 3600 + 1);
    let d = decide(&online(), Some(&verifying()), &w, late);
    assert_eq!(d.action, Some(Action::StopJobs));
    // The Job deleted: nothing dumps again; no scratch database was made, so the plan hands over.
    w.backup_job = None;
    let d = decide(&online(), Some(&d.status), &w, late);
    assert_ne!(d.action, Some(Action::CreateBackupJob));
    assert_eq!(d.status.phase, Phase::CleaningUp, "{}", d.status.message);
}
