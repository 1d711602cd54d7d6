//! `BackingUp` and `Cloning` with a restore Job: the Jobs, their failures and deadlines, and
//! the clone verification against the frozen sources' counts.

use super::table::{Case, no_spec, no_world, run};
use super::*;

pub(super) fn cases() -> Vec<Case> {
    use Phase::*;
    vec![
        // BackingUp
        Case {
            name: "backup: creates the job",
            phase: BackingUp,
            spec: no_spec,
            world: no_world,
            now: 1,
            want_phase: BackingUp,
            want_action: Some(Action::CreateBackupJob),
            want_message: "up7-backup",
        },
        Case {
            name: "backup: job running",
            phase: BackingUp,
            spec: no_spec,
            world: |w| w.backup_job = job("up7-backup", JobState::Active, ""),
            now: 60,
            want_phase: BackingUp,
            want_action: None,
            want_message: "is running",
        },
        Case {
            name: "backup: job running past deadline",
            phase: BackingUp,
            spec: no_spec,
            world: |w| w.backup_job = job("up7-backup", JobState::Active, ""),
            now: 7201,
            want_phase: RollingBack,
            want_action: Some(Action::StopJobs),
            want_message: "did not finish within 2h",
        },
        Case {
            name: "backup: job failed",
            phase: BackingUp,
            spec: no_spec,
            world: |w| w.backup_job = job("up7-backup", JobState::Failed, "mongodump: auth failed"),
            now: 60,
            want_phase: RollingBack,
            want_action: Some(Action::SetReadOnly {
                color: Color::Blue,
                enabled: false,
            }),
            want_message: "auth failed",
        },
        Case {
            name: "backup: succeeded, counting",
            phase: BackingUp,
            spec: no_spec,
            world: |w| w.backup_job = job("up7-backup", JobState::Succeeded, ""),
            now: 60,
            want_phase: BackingUp,
            want_action: None,
            want_message: "Counting",
        },
        Case {
            name: "backup: succeeded and counted",
            phase: BackingUp,
            spec: no_spec,
            world: |w| {
                w.backup_job = job(
                    "up7-backup",
                    JobState::Succeeded,
                    r#"{"path":"/backup/squidex/up7.archive.gz","bytes":4096,"sha256":"ab"}"#,
                );
                w.source_counts = Some(Ok(source_counts()));
            },
            now: 60,
            want_phase: Cloning,
            want_action: Some(Action::CreateCloneJob),
            want_message: "4096 bytes",
        },
        // Cloning
        Case {
            name: "clone: creates the job",
            phase: Cloning,
            spec: no_spec,
            world: no_world,
            now: 1,
            want_phase: Cloning,
            want_action: Some(Action::CreateCloneJob),
            want_message: "up7-clone",
        },
        Case {
            name: "clone: job failed",
            phase: Cloning,
            spec: no_spec,
            world: |w| w.clone_job = job("up7-clone", JobState::Failed, "restore error"),
            now: 10,
            want_phase: RollingBack,
            want_action: Some(Action::SetReadOnly {
                color: Color::Blue,
                enabled: false,
            }),
            want_message: "restore error",
        },
        Case {
            name: "clone: counts match",
            phase: Cloning,
            spec: no_spec,
            world: |w| {
                w.clone_job = job("up7-clone", JobState::Succeeded, "");
                w.clone_counts = Some(Ok(clone_counts_of(&source_counts())));
            },
            now: 10,
            want_phase: DeployingGreen,
            want_action: Some(Action::ApplyGreen { replicas: 2 }),
            want_message: "verified",
        },
        Case {
            name: "clone: counts differ fail naming the collection",
            phase: Cloning,
            spec: no_spec,
            world: |w| {
                w.clone_job = job("up7-clone", JobState::Succeeded, "");
                let mut c = clone_counts_of(&source_counts());
                c.insert("SquidexContent-up7.States_Contents_All1".into(), 999);
                w.clone_counts = Some(Ok(c));
            },
            now: 10,
            want_phase: RollingBack,
            want_action: Some(Action::SetReadOnly {
                color: Color::Blue,
                enabled: false,
            }),
            want_message: "SquidexContent.States_Contents_All1: source 1000, clone 999",
        },
        Case {
            name: "clone: counting error retries",
            phase: Cloning,
            spec: no_spec,
            world: |w| {
                w.clone_job = job("up7-clone", JobState::Succeeded, "");
                w.clone_counts = Some(Err("timeout".into()));
            },
            now: 10,
            want_phase: Cloning,
            want_action: None,
            want_message: "retrying",
        },
    ]
}

#[test]
fn table() {
    run(cases());
}
