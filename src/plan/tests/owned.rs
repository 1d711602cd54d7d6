//! Own before you destroy: an object under a name the plan needs that is not its own refuses
//! the plan at `Pending` (nothing changed) and fails it later (the old version restored); it
//! is never adopted or waited on.

use super::table::{Case, no_spec, run};
use super::*;

fn foreign(kind: ObjectKind, name: &str) -> ForeignObject {
    ForeignObject {
        kind,
        name: name.into(),
        previous_plan: false,
    }
}

fn previous(kind: ObjectKind, name: &str) -> ForeignObject {
    ForeignObject {
        previous_plan: true,
        ..foreign(kind, name)
    }
}

pub(super) fn cases() -> Vec<Case> {
    use Phase::*;
    vec![
        Case {
            name: "pending: a foreign Secret under the new version's name refuses the plan",
            phase: Pending,
            spec: no_spec,
            world: |w| w.foreign = vec![foreign(ObjectKind::Secret, "squidex-up7-env")],
            now: 0,
            want_phase: Failed,
            want_action: None,
            want_message: "Secret \"squidex-up7-env\" already exists and does not belong to this plan (it has no owner reference to this plan; cutover never adopts, overwrites or deletes it): set spec.target.deploymentName to a free name",
        },
        Case {
            name: "pending: a foreign Job under the plan's name refuses the plan",
            phase: Pending,
            spec: no_spec,
            world: |w| w.foreign = vec![foreign(ObjectKind::Job, "up7-backup")],
            now: 0,
            want_phase: Failed,
            want_action: None,
            want_message: "Job \"up7-backup\" already exists and does not belong to this plan (it has no owner reference to this plan; cutover never adopts, overwrites or deletes it): delete it if it is a leftover, or give the plan another name",
        },
        Case {
            name: "pending: a foreign new-version Deployment refuses the plan",
            phase: Pending,
            spec: no_spec,
            world: |w| w.foreign = vec![foreign(ObjectKind::Deployment, "squidex-up7")],
            now: 0,
            want_phase: Failed,
            want_action: None,
            want_message: "Deployment \"squidex-up7\" already exists",
        },
        Case {
            name: "pending: an earlier plan's Job is waited for while the cluster removes it",
            phase: Pending,
            spec: no_spec,
            world: |w| w.foreign = vec![previous(ObjectKind::Job, "up7-backup")],
            now: 60,
            want_phase: Pending,
            want_action: None,
            want_message: "Job \"up7-backup\" belongs to an earlier UpgradePlan \"up7\" (deleted); waiting for the garbage collector",
        },
        Case {
            name: "pending: not for ever",
            phase: Pending,
            spec: no_spec,
            world: |w| w.foreign = vec![previous(ObjectKind::Job, "up7-backup")],
            now: 121,
            want_phase: Failed,
            want_action: None,
            want_message: "still belongs to an earlier, deleted UpgradePlan \"up7\" after 120s",
        },
        Case {
            name: "backing up: a foreign Job under the backup's name is not waited on",
            phase: BackingUp,
            spec: no_spec,
            world: |w| {
                w.backup_job = None;
                w.foreign = vec![foreign(ObjectKind::Job, "up7-backup")];
            },
            now: 5,
            want_phase: RollingBack,
            want_action: None,
            want_message: "Job \"up7-backup\" appeared under a name this plan needs and is not its own",
        },
        Case {
            name: "deploying: a foreign Secret under the new version's is not overwritten",
            phase: DeployingGreen,
            spec: no_spec,
            world: |w| w.foreign = vec![foreign(ObjectKind::Secret, "squidex-up7-env")],
            now: 5,
            want_phase: RollingBack,
            want_action: None,
            want_message: "Restoring the old version: Secret \"squidex-up7-env\" appeared",
        },
        Case {
            name: "migrating: a foreign Deployment in place of the new version",
            phase: Migrating,
            spec: no_spec,
            world: |w| {
                w.green = None;
                w.foreign = vec![foreign(ObjectKind::Deployment, "squidex-up7")];
            },
            now: 5,
            want_phase: RollingBack,
            want_action: None,
            want_message: "Deployment \"squidex-up7\" appeared",
        },
    ]
}

#[test]
fn table() {
    run(cases());
}

#[test]
fn a_foreign_object_fails_the_plan_once_with_its_own_reason() {
    let mut w = world_in(Phase::Cloning);
    w.foreign = vec![foreign(ObjectKind::Job, "up7-clone")];
    let d = decide(&spec(), Some(&status_in(Phase::Cloning)), &w, t(5));
    let f = d.status.failure.clone().expect("failed");
    assert_eq!(
        (f.phase, f.reason.as_str()),
        (Phase::Cloning, "ForeignObject")
    );
    assert!(
        d.events
            .iter()
            .any(|e| e.kind == EventKind::Warning && e.reason == Reason::ForeignObject),
        "{:?}",
        d.events
    );
    // Rolling back, the foreign Job is still there: the plan keeps restoring the old version
    // and the failure stays the first one.
    let again = decide(&spec(), Some(&d.status), &w, t(6));
    assert_eq!(again.status.phase, Phase::RollingBack);
    assert_eq!(again.status.failure, Some(f));
    assert!(
        !again
            .events
            .iter()
            .any(|e| e.reason == Reason::ForeignObject),
        "{:?}",
        again.events
    );
}

#[test]
fn after_the_plan_ended_a_foreign_object_changes_nothing() {
    for phase in [Phase::Succeeded, Phase::Failed, Phase::RolledBack] {
        let mut w = world_in(phase);
        w.foreign = vec![foreign(ObjectKind::Job, "up7-prune")];
        let st = status_in(phase);
        let d = decide(&spec(), Some(&st), &w, t(5));
        assert_eq!(d.status.phase, phase);
        assert!(d.status.failure.is_none() || phase == Phase::Failed);
    }
}
