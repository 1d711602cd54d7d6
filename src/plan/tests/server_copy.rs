//! `backup.cloneMethod: serverSide`: the copy starts while the backup Job runs, survives an
//! operator restart (started again), reports progress with an ETA, and a failure unwinds.

use super::*;

fn server_side() -> UpgradePlanSpec {
    let mut s = spec();
    s.backup.clone_method = CloneMethod::ServerSide;
    s
}

fn copy(state: CopyState, done: i64) -> Option<CopyView> {
    Some(CopyView {
        state,
        documents_done: done,
        documents_total: 1051,
        collections_done: 1,
        collections_total: 3,
    })
}

#[test]
fn the_copy_starts_while_the_backup_job_runs() {
    let s = server_side();
    let mut w = world_in(Phase::BackingUp);
    w.backup_job = job("up7-backup", JobState::Active, "");
    w.server_copy = copy(CopyState::Absent, 0);
    let d = decide(&s, Some(&status_in(Phase::BackingUp)), &w, t(1));
    assert_eq!(d.action, Some(Action::StartServerSideCopy));
    assert_eq!(d.status.phase, Phase::BackingUp);

    // Running: the backup is still awaited, progress is in status.
    w.server_copy = copy(CopyState::Running, 500);
    let d2 = decide(&s, Some(&d.status), &w, t(11));
    assert_eq!(d2.action, None);
    let p = d2.status.progress.clone().expect("progress");
    assert_eq!((p.documents_done, p.documents_total), (500, 1051));
    assert_eq!(
        (p.collections_done, p.collections_total),
        (Some(1), Some(3))
    );
}

#[test]
fn cloning_waits_for_the_copy_with_an_eta_then_verifies() {
    let s = server_side();
    let mut w = world_in(Phase::Cloning);
    w.server_copy = copy(CopyState::Running, 100);
    let d = decide(&s, Some(&status_in(Phase::Cloning)), &w, t(0));
    assert_eq!(d.action, None);
    w.server_copy = copy(CopyState::Running, 600);
    let d = decide(&s, Some(&d.status), &w, t(10));
    let p = d.status.progress.clone().unwrap();
    assert_eq!(p.rate, 60.0, "600 documents in 10 s");
    // 451 left at 60/s: about 7.5 s.
    assert_eq!(
        p.eta,
        Some(t(10).plus(std::time::Duration::from_millis(7516)))
    );
    assert!(
        p.summary.starts_with("57% 600/1.1k docs, 1/3 colls"),
        "{}",
        p.summary
    );
    assert!(
        d.status.message.contains(&p.summary),
        "{}",
        d.status.message
    );

    w.server_copy = copy(CopyState::Succeeded, 1051);
    w.clone_counts = Some(Ok(clone_counts_of(&source_counts())));
    w.clone_shape = Some(Ok(clone_shape_of(&source_shape())));
    let d = decide(&s, Some(&d.status), &w, t(12));
    assert_eq!(d.status.phase, Phase::DeployingGreen);
    assert!(
        d.status.progress.is_none(),
        "progress is cleared after the copy"
    );
    assert!(d.status.clone.as_ref().unwrap().verified);
    let bv = cond::get(&d.status.conditions, cond::BACKUP_VERIFIED).unwrap();
    assert_eq!(
        (bv.status.as_str(), bv.reason.as_str()),
        ("False", "NotRestored"),
        "the archive was not restored, so it is not called verified"
    );
}

/// Each status write wakes the next reconcile: progress that changed with every count would
/// be written back-to-back for the whole copy.
#[test]
fn progress_is_refreshed_at_most_every_few_seconds() {
    let s = server_side();
    let mut w = world_in(Phase::Cloning);
    w.server_copy = copy(CopyState::Running, 100);
    let first = decide(&s, Some(&status_in(Phase::Cloning)), &w, t(0));
    w.server_copy = copy(CopyState::Running, 300);
    let woken = decide(&s, Some(&first.status), &w, t(1));
    assert_eq!(woken.status, first.status, "nothing new to write 1 s later");
    assert!(woken.requeue_after <= Some(std::time::Duration::from_secs(5)));
    w.server_copy = copy(CopyState::Running, 600);
    let later = decide(&s, Some(&woken.status), &w, t(5));
    let p = later.status.progress.clone().unwrap();
    assert_eq!(p.documents_done, 600, "refreshed after 5 s");
    assert_eq!(p.updated_at, Some(t(5)));
    // The end of the copy is never held back.
    w.server_copy = copy(CopyState::Succeeded, 1051);
    w.clone_counts = Some(Ok(clone_counts_of(&source_counts())));
    w.clone_shape = Some(Ok(clone_shape_of(&source_shape())));
    let done = decide(&s, Some(&later.status), &w, t(6));
    assert_eq!(done.status.phase, Phase::DeployingGreen);

    // A restore's progress likewise.
    let mut w = world_in(Phase::Cloning);
    w.clone_job = job("up7-clone", JobState::Active, "");
    w.clone_documents = Some(100);
    let first = decide(&spec(), Some(&status_in(Phase::Cloning)), &w, t(0));
    w.clone_documents = Some(400);
    let woken = decide(&spec(), Some(&first.status), &w, t(2));
    assert_eq!(woken.status, first.status);
}

#[test]
fn a_copy_lost_to_an_operator_restart_is_started_again() {
    let s = server_side();
    let mut w = world_in(Phase::Cloning);
    w.server_copy = copy(CopyState::Absent, 0);
    let d = decide(&s, Some(&status_in(Phase::Cloning)), &w, t(1));
    assert_eq!(d.action, Some(Action::StartServerSideCopy));
}

#[test]
fn a_failed_copy_restores_the_old_version() {
    let s = server_side();
    let mut w = world_in(Phase::Cloning);
    w.server_copy = copy(CopyState::Failed("copying Squidex.Events: boom".into()), 0);
    let d = decide(&s, Some(&status_in(Phase::Cloning)), &w, t(1));
    assert_eq!(d.status.phase, Phase::RollingBack);
    let f = d.status.failure.unwrap();
    assert_eq!(f.reason, "ServerSideCopyFailed");
    assert!(f.message.contains("boom"));
}

#[test]
fn a_restore_reports_progress_from_the_clones_counts() {
    let s = spec();
    let mut w = world_in(Phase::Cloning);
    w.clone_job = job("up7-clone", JobState::Active, "");
    w.clone_documents = Some(0);
    let d = decide(&s, Some(&status_in(Phase::Cloning)), &w, t(0));
    w.clone_documents = Some(525);
    let d = decide(&s, Some(&d.status), &w, t(5));
    let p = d.status.progress.clone().unwrap();
    assert_eq!((p.documents_done, p.documents_total), (525, 1051));
    assert_eq!(p.collections_total, None);
    assert!(
        d.status.message.contains("50% 525/1.1k docs"),
        "{}",
        d.status.message
    );
}

#[test]
fn walks_to_succeeded_without_a_clone_job() {
    let mut sim = Sim::new();
    sim.w.server_copy = copy(CopyState::Absent, 0);
    let (st, actions) = walk(&server_side(), &mut sim, None, |_, _, _, _| {});
    assert_eq!(st.phase, Phase::Succeeded);
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == Action::StartServerSideCopy)
            .count(),
        1
    );
    assert!(!actions.contains(&Action::CreateCloneJob));
    assert!(
        actions.contains(&Action::CreateBackupJob),
        "the backup is still taken"
    );
    assert!(st.clone.as_ref().unwrap().verified);
}
