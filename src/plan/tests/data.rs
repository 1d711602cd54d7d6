//! `BackingUp` and `Cloning` with a restore Job: the Jobs, their failures and deadlines, and
//! the clone verification against the frozen sources' counts and shape.

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
                w.source_shape = Some(Ok(source_shape()));
            },
            now: 60,
            want_phase: Cloning,
            want_action: Some(Action::CreateCloneJob),
            want_message: "4096 bytes",
        },
        Case {
            name: "backup: counted, the shape not read yet",
            phase: BackingUp,
            spec: no_spec,
            world: |w| {
                w.backup_job = job("up7-backup", JobState::Succeeded, "");
                w.source_counts = Some(Ok(source_counts()));
            },
            now: 60,
            want_phase: BackingUp,
            want_action: None,
            want_message: "Reading the sources' collections, views and indexes",
        },
        Case {
            name: "backup: reading the shape failed, retrying",
            phase: BackingUp,
            spec: no_spec,
            world: |w| {
                w.backup_job = job("up7-backup", JobState::Succeeded, "");
                w.source_counts = Some(Ok(source_counts()));
                w.source_shape = Some(Err("connection reset".into()));
            },
            now: 60,
            want_phase: BackingUp,
            want_action: None,
            want_message: "failed, retrying: connection reset",
        },
        Case {
            name: "backup: pod disrupted, retried under a new name",
            phase: BackingUp,
            spec: no_spec,
            world: |w| {
                w.backup_job = disrupted_job("up7-backup", "its pod is gone (deleted or evicted)")
            },
            now: 60,
            want_phase: BackingUp,
            want_action: None,
            want_message: "Backup Job up7-backup was disrupted (its pod is gone (deleted or evicted)); retrying as Job up7-backup-2 (attempt 2 of 3)",
        },
        Case {
            name: "backup: second attempt disrupted",
            phase: BackingUp,
            spec: no_spec,
            world: |w| {
                w.backup_job = disrupted_job(
                    "up7-backup-2",
                    "pod up7-backup-2-x was killed by signal 9 (exit 137)",
                )
            },
            now: 60,
            want_phase: BackingUp,
            want_action: None,
            want_message: "retrying as Job up7-backup-3 (attempt 3 of 3)",
        },
        Case {
            name: "backup: last attempt disrupted fails",
            phase: BackingUp,
            spec: no_spec,
            world: |w| w.backup_job = disrupted_job("up7-backup-3", "pod up7-backup-3-x evicted"),
            now: 60,
            want_phase: RollingBack,
            want_action: Some(Action::SetReadOnly {
                color: Color::Blue,
                enabled: false,
            }),
            want_message: "up7-backup-3's pod was disrupted on attempt 3 of 3 (pod up7-backup-3-x evicted)",
        },
        Case {
            name: "backup: retried job running",
            phase: BackingUp,
            spec: no_spec,
            world: |w| w.backup_job = job("up7-backup-2", JobState::Active, ""),
            now: 60,
            want_phase: BackingUp,
            want_action: None,
            want_message: "Backup Job up7-backup-2 is running",
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
            name: "clone: pod disrupted, retried under a new name",
            phase: Cloning,
            spec: no_spec,
            world: |w| {
                w.clone_job = disrupted_job(
                    "up7-clone",
                    "pod up7-clone-x was killed by signal 9 (exit 137)",
                )
            },
            now: 10,
            want_phase: Cloning,
            want_action: None,
            want_message: "Clone Job up7-clone was disrupted (pod up7-clone-x was killed by signal 9 (exit 137)); retrying as Job up7-clone-2 (attempt 2 of 3)",
        },
        Case {
            name: "clone: last attempt disrupted fails",
            phase: Cloning,
            spec: no_spec,
            world: |w| {
                w.clone_job = disrupted_job("up7-clone-3", "its pod is gone (deleted or evicted)")
            },
            now: 10,
            want_phase: RollingBack,
            want_action: Some(Action::SetReadOnly {
                color: Color::Blue,
                enabled: false,
            }),
            want_message: "Clone Job up7-clone-3's pod was disrupted on attempt 3 of 3",
        },
        Case {
            name: "clone: counts match",
            phase: Cloning,
            spec: no_spec,
            world: |w| {
                w.clone_job = job("up7-clone", JobState::Succeeded, "");
                w.clone_counts = Some(Ok(clone_counts_of(&source_counts())));
                w.clone_shape = Some(Ok(clone_shape_of(&source_shape())));
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
                w.clone_shape = Some(Ok(clone_shape_of(&source_shape())));
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
            name: "clone: counts match, the clones' shape not read yet",
            phase: Cloning,
            spec: no_spec,
            world: |w| {
                w.clone_job = job("up7-clone", JobState::Succeeded, "");
                w.clone_counts = Some(Ok(clone_counts_of(&source_counts())));
            },
            now: 10,
            want_phase: Cloning,
            want_action: None,
            want_message: "Reading the clones' collections, views and indexes",
        },
        Case {
            name: "clone: an index missing in the clone fails naming it",
            phase: Cloning,
            spec: no_spec,
            world: |w| {
                w.clone_job = job("up7-clone", JobState::Succeeded, "");
                w.clone_counts = Some(Ok(clone_counts_of(&source_counts())));
                w.source_shape = Some(Ok(source_shape()));
                let mut c = clone_shape_of(&source_shape());
                c.collections
                    .get_mut("Squidex-up7.Events")
                    .unwrap()
                    .indexes
                    .remove("Stream_1");
                w.clone_shape = Some(Ok(c));
            },
            now: 10,
            want_phase: RollingBack,
            want_action: Some(Action::SetReadOnly {
                color: Color::Blue,
                enabled: false,
            }),
            want_message: "Squidex.Events: index Stream_1 missing in the clone",
        },
        Case {
            name: "clone: a view copied as a collection fails naming it",
            phase: Cloning,
            spec: no_spec,
            world: |w| {
                w.clone_job = job("up7-clone", JobState::Succeeded, "");
                w.clone_counts = Some(Ok(clone_counts_of(&source_counts())));
                w.source_shape = Some(Ok(source_shape()));
                let mut c = clone_shape_of(&source_shape());
                let v = c.collections.get_mut("Squidex-up7.RecentEvents").unwrap();
                v.kind = "collection".into();
                v.options.clear();
                w.clone_shape = Some(Ok(c));
            },
            now: 10,
            want_phase: RollingBack,
            want_action: Some(Action::SetReadOnly {
                color: Color::Blue,
                enabled: false,
            }),
            want_message: "Squidex.RecentEvents: a view in the source, a collection in the clone",
        },
        Case {
            name: "clone: a lost option without the sources' shape to name it",
            phase: Cloning,
            spec: no_spec,
            world: |w| {
                w.clone_job = job("up7-clone", JobState::Succeeded, "");
                w.clone_counts = Some(Ok(clone_counts_of(&source_counts())));
                let mut c = clone_shape_of(&source_shape());
                c.collections.remove("Squidex-up7.RecentEvents");
                w.clone_shape = Some(Ok(c));
            },
            now: 10,
            want_phase: RollingBack,
            want_action: Some(Action::SetReadOnly {
                color: Color::Blue,
                enabled: false,
            }),
            want_message: "source 3 collections, 1 views, 4 indexes; clone 3 collections, 0 views",
        },
        Case {
            name: "clone: reading the clones' shape failed, retrying",
            phase: Cloning,
            spec: no_spec,
            world: |w| {
                w.clone_job = job("up7-clone", JobState::Succeeded, "");
                w.clone_counts = Some(Ok(clone_counts_of(&source_counts())));
                w.clone_shape = Some(Err("cursor killed".into()));
            },
            now: 10,
            want_phase: Cloning,
            want_action: None,
            want_message: "failed, retrying: cursor killed",
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

/// 5,000 source collections: `SquidexContent.C00000` … with 1 to 7 documents, and
/// `Squidex.Big` … the largest.
fn many_sources() -> BTreeMap<String, i64> {
    (0..5000)
        .map(|i| (format!("SquidexContent.C{i:05}"), i % 7 + 1))
        .chain([("Squidex.Events".to_string(), 50)])
        .collect()
}

/// The plan after its backup of `many_sources` was counted, in `Cloning`.
fn cloning_many() -> UpgradePlanStatus {
    let st = status_in(Phase::BackingUp);
    let mut w = world_in(Phase::BackingUp);
    w.backup_job = job(
        "up7-backup",
        JobState::Succeeded,
        r#"{"bytes":4096,"sha256":"ab"}"#,
    );
    w.source_counts = Some(Ok(many_sources()));
    w.source_shape = Some(Ok(source_shape()));
    let d = decide(&spec(), Some(&st), &w, t(60));
    assert_eq!(d.status.phase, Phase::Cloning, "{}", d.status.message);
    let said: Vec<&str> = d.status.phases.iter().map(|r| r.detail.as_str()).collect();
    assert!(said.join(" ").contains("5001 collections"), "{said:?}");
    d.status
}

fn verify(st: &UpgradePlanStatus, clone: BTreeMap<String, i64>) -> Decision {
    let mut w = world_in(Phase::Cloning);
    w.clone_job = job("up7-clone", JobState::Succeeded, "");
    w.clone_counts = Some(Ok(clone));
    w.clone_shape = Some(Ok(clone_shape_of(&source_shape())));
    decide(&spec(), Some(st), &w, t(70))
}

#[test]
fn status_keeps_a_sample_and_a_digest_of_many_collections() {
    let st = cloning_many();
    let b = st.backup.as_ref().unwrap();
    assert_eq!(b.collections.len(), SAMPLE);
    assert_eq!(b.collections.get("Squidex.Events"), Some(&50));
    let digest = b.counts.as_ref().unwrap();
    assert_eq!(
        (digest.collections, digest.omitted),
        (5001, 5001 - SAMPLE as i64)
    );
    assert_eq!(digest.documents, many_sources().values().sum::<i64>());
    assert!(serde_json::to_string(&st).unwrap().len() < 16 * 1024);

    let d = verify(&st, clone_counts_of(&many_sources()));
    assert_eq!(
        d.status.phase,
        Phase::DeployingGreen,
        "{}",
        d.status.message
    );
    let c = d.status.clone.as_ref().unwrap();
    assert!(c.verified);
    assert_eq!(c.collections.len(), SAMPLE);
    assert_eq!(c.counts.as_ref().unwrap().collections, 5001);
}

/// The sample is for people; verification still sees every collection.
#[test]
fn a_difference_outside_the_sample_fails_verification() {
    let st = cloning_many();
    assert!(
        !st.backup
            .as_ref()
            .unwrap()
            .collections
            .contains_key("SquidexContent.C00007")
    );
    for change in [
        |c: &mut BTreeMap<String, i64>| {
            *c.get_mut("SquidexContent-up7.C00007").unwrap() += 1;
        },
        |c: &mut BTreeMap<String, i64>| {
            c.remove("SquidexContent-up7.C00007");
        },
        |c: &mut BTreeMap<String, i64>| {
            c.insert("SquidexContent-up7.Extra".into(), 0);
        },
        // Same total, moved between two collections.
        |c: &mut BTreeMap<String, i64>| {
            *c.get_mut("SquidexContent-up7.C00007").unwrap() += 1;
            *c.get_mut("SquidexContent-up7.C00008").unwrap() -= 1;
        },
    ] {
        let mut clone = clone_counts_of(&many_sources());
        change(&mut clone);
        let d = verify(&st, clone);
        assert_eq!(d.status.phase, Phase::RollingBack, "{}", d.status.message);
        let f = d.status.failure.as_ref().unwrap();
        assert_eq!(f.reason, "CloneVerificationFailed");
        assert!(
            f.message.contains("in all: source 5001 collections"),
            "{}",
            f.message
        );
    }
}

/// Thousands of differences are counted, not listed: the message stays short.
#[test]
fn mismatch_lists_are_truncated() {
    let sources = source_counts()
        .into_iter()
        .chain((0..50).map(|i| (format!("Squidex.C{i:02}"), 10)))
        .collect::<BTreeMap<_, _>>();
    let mut st = status_in(Phase::Cloning);
    st.backup.as_mut().unwrap().record_counts(&sources);
    let clone: BTreeMap<String, i64> = clone_counts_of(&sources)
        .into_iter()
        .map(|(k, v)| (k, v + 1))
        .collect();
    let d = verify(&st, clone);
    let f = d.status.failure.as_ref().unwrap();
    assert!(f.message.contains("; and 43 more"), "{}", f.message);
    assert!(f.message.len() < 1200, "{}", f.message.len());
}

/// A status written before digests existed holds every collection in its map: it still
/// verifies, and a difference in it is still named.
#[test]
fn a_status_without_digest_still_verifies() {
    let st = status_in(Phase::Cloning);
    assert!(st.backup.as_ref().unwrap().counts.is_none());
    let d = verify(&st, clone_counts_of(&source_counts()));
    assert_eq!(d.status.phase, Phase::DeployingGreen);
    let mut clone = clone_counts_of(&source_counts());
    clone.insert("Squidex-up7.Events".into(), 49);
    let d = verify(&st, clone);
    assert!(
        d.status
            .failure
            .unwrap()
            .message
            .contains("Squidex.Events: source 50, clone 49")
    );
}

/// The sources' shape is recorded beside their counts; the clones' beside theirs.
#[test]
fn the_shape_digest_is_recorded_with_the_counts() {
    let st = cloning_many();
    assert_eq!(
        st.backup.as_ref().unwrap().shape,
        Some(source_shape().digest())
    );
    let d = verify(&st, clone_counts_of(&many_sources()));
    assert_eq!(
        d.status.phase,
        Phase::DeployingGreen,
        "{}",
        d.status.message
    );
    assert_eq!(
        d.status.clone.as_ref().unwrap().shape,
        Some(source_shape().digest()),
        "the clones' shape is recorded under the sources' names"
    );
}

/// A shape difference fails like a count difference, with its own condition reason; a
/// rehearsal (live sources) warns and goes on, as it does for counts.
#[test]
fn a_shape_difference_fails_an_upgrade_and_warns_a_rehearsal() {
    let lost_validator = |w: &mut Observed| {
        w.clone_job = job("up7-clone", JobState::Succeeded, "");
        w.clone_counts = Some(Ok(clone_counts_of(&source_counts())));
        let mut source = source_shape();
        source
            .collections
            .get_mut("Squidex.Events")
            .unwrap()
            .options
            .insert(
                "validator".into(),
                serde_json::json!({"$jsonSchema": {"required": ["Stream"]}}),
            );
        w.source_shape = Some(Ok(source.clone()));
        w.clone_shape = Some(Ok(clone_shape_of(&source_shape())));
        source
    };
    let mut w = world_in(Phase::Cloning);
    let source = lost_validator(&mut w);
    let mut st = status_in(Phase::Cloning);
    st.backup.as_mut().unwrap().shape = Some(source.digest());
    let d = decide(&spec(), Some(&st), &w, t(70));
    assert_eq!(d.status.phase, Phase::RollingBack, "{}", d.status.message);
    let f = d.status.failure.as_ref().unwrap();
    assert_eq!(f.reason, "CloneVerificationFailed");
    assert!(
        f.message.contains(
            "Squidex.Events: option validator differs (source {\"$jsonSchema\":{\"required\":[\"Stream\"]}}, clone absent)"
        ),
        "{}",
        f.message
    );
    let c = cond::get(&d.status.conditions, cond::BACKUP_VERIFIED).unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "ShapeDiffers")
    );

    let mut rehearsal = spec();
    rehearsal.mode = Mode::Rehearsal;
    let d = decide(&rehearsal, Some(&st), &w, t(70));
    assert_eq!(
        d.status.phase,
        Phase::DeployingGreen,
        "{}",
        d.status.message
    );
    let c = cond::get(&d.status.conditions, cond::BACKUP_VERIFIED).unwrap();
    assert_eq!(c.reason, "SourcesInUse");
    assert!(
        c.message.contains("option validator differs"),
        "{}",
        c.message
    );
}

/// A status recorded before shapes existed verifies by counts alone.
#[test]
fn a_status_without_a_shape_verifies_by_counts() {
    let mut st = status_in(Phase::Cloning);
    st.backup.as_mut().unwrap().shape = None;
    let mut w = world_in(Phase::Cloning);
    w.clone_job = job("up7-clone", JobState::Succeeded, "");
    w.clone_counts = Some(Ok(clone_counts_of(&source_counts())));
    let d = decide(&spec(), Some(&st), &w, t(70));
    assert_eq!(
        d.status.phase,
        Phase::DeployingGreen,
        "{}",
        d.status.message
    );
}

/// A disrupted backup: the next attempt's name is in `status.targets` (and the backup status)
/// before anything creates it; the next reconcile, finding no Job under it, creates it; its
/// success goes on as a first attempt's would. A script failure is not retried.
#[test]
fn a_disrupted_job_is_recorded_then_created_under_a_new_name() {
    let mut w = world_in(Phase::BackingUp);
    w.backup_job = disrupted_job("up7-backup", "its pod is gone (deleted or evicted)");
    let st = status_in(Phase::BackingUp);
    let d = decide(&spec(), Some(&st), &w, t(60));
    assert_eq!(
        d.action, None,
        "the new name is recorded before anything is created"
    );
    let targets = d.status.targets.clone().unwrap();
    assert_eq!(targets.jobs.backup, "up7-backup-2");
    assert_eq!(
        targets.jobs.clone, "up7-clone",
        "the clone Job keeps its name"
    );
    let ev = d
        .events
        .iter()
        .find(|e| e.reason == Reason::JobPodDisrupted)
        .unwrap();
    assert!(
        ev.note.contains("retrying as Job up7-backup-2"),
        "{}",
        ev.note
    );
    let c = cond::get(&d.status.conditions, cond::PROGRESSING).unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", "JobPodDisrupted")
    );
    assert!(d.status.failure.is_none());

    // Next reconcile: nothing under the new name yet.
    w.backup_job = None;
    let d = decide(&spec(), Some(&d.status), &w, t(61));
    assert_eq!(d.action, Some(Action::CreateBackupJob));
    assert_eq!(d.status.backup.as_ref().unwrap().job, "up7-backup-2");
    assert_eq!(
        d.status.targets.as_ref().unwrap().jobs.backup,
        "up7-backup-2"
    );

    // It succeeds: the plan goes on to Cloning.
    w.backup_job = job(
        "up7-backup-2",
        JobState::Succeeded,
        r#"{"bytes":4096,"sha256":"ab"}"#,
    );
    w.source_counts = Some(Ok(source_counts()));
    w.source_shape = Some(Ok(source_shape()));
    let d = decide(&spec(), Some(&d.status), &w, t(90));
    assert_eq!(d.status.phase, Phase::Cloning, "{}", d.status.message);

    // The script's own failure on a retried Job fails at once, with today's reason.
    let mut w = world_in(Phase::BackingUp);
    w.backup_job = job("up7-backup-2", JobState::Failed, "mongodump: auth failed");
    let d = decide(&spec(), Some(&st), &w, t(60));
    assert_eq!(d.status.failure.unwrap().reason, "BackupJobFailed");
}

/// Attempt names: the first Job's name, then `-2`, `-3`, shortened like every name.
#[test]
fn attempt_names() {
    let long = "p".repeat(56) + "-backup";
    let d = |name: &str| {
        let mut w = world_in(Phase::BackingUp);
        w.backup_job = disrupted_job(name, "gone");
        w.plan.name = "p".repeat(56);
        decide(&spec(), Some(&status_in(Phase::BackingUp)), &w, t(60))
    };
    let next = d(&long).status.targets.unwrap().jobs.backup;
    assert!(next.len() <= 63 && next != long, "{next}");
    assert!(d(&next).status.failure.is_none());
    // A name the rule did not give is not retried.
    assert_eq!(
        d("other").status.failure.unwrap().reason,
        "JobKeptBeingDisrupted"
    );
}
