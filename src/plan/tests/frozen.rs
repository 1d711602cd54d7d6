//! A running plan acts on what it accepted: the targets and spec recorded when it left
//! `Pending`; edits of anything but the steering fields are reported, not acted on.

use super::*;

#[test]
fn leaving_pending_records_the_targets_and_the_spec() {
    let spec = spec();
    let d = decide(&spec, None, &world(), t(0));
    assert_eq!(d.status.phase, Phase::EnteringReadOnly);
    let recorded = d.status.targets.as_ref().expect("targets recorded");
    assert_eq!(recorded.blue_deployment.name, "squidex");
    assert_eq!(recorded.blue_deployment.uid.as_deref(), Some("uid-squidex"));
    assert_eq!(recorded.green_deployment, "squidex-up7");
    assert_eq!(recorded.green_env_secret, "squidex-up7-env");
    assert_eq!(recorded.jobs.backup, "up7-backup");
    assert_eq!(recorded.backup_dir, "/backup/squidex/up7");
    assert_eq!(
        recorded
            .databases
            .iter()
            .map(|p| (p.source.as_str(), p.clone.as_str()))
            .collect::<Vec<_>>(),
        vec![
            ("Squidex", "Squidex-up7"),
            ("SquidexContent", "SquidexContent-up7")
        ]
    );
    assert_eq!(d.status.frozen_spec.as_deref(), Some(&spec));
}

#[test]
fn a_plan_suspended_in_pending_freezes_nothing_yet() {
    let mut spec = spec();
    spec.suspend = true;
    let d = decide(&spec, None, &world(), t(0));
    assert_eq!(d.status.phase, Phase::Pending);
    assert!(d.status.targets.is_none() && d.status.frozen_spec.is_none());
}

/// The holes the safety review found, walked: mid-plan the Deployment name, a clone name
/// and the database list are edited; the plan finishes on what it started with, and the
/// cleanup drops only the recorded sources.
#[test]
fn edits_after_pending_retarget_nothing() {
    let mut start = spec();
    start.cleanup.drop_source_databases_after = Some(dur("1s"));
    let mut sim = Sim::new();
    let (st, actions) = walk(&start, &mut sim, None, |_, st, spec, _| {
        if st.phase == Phase::Cloning {
            spec.target.deployment_name = Some("someone-elses".into());
            spec.database.databases[0].clone_name = Some("Unchecked".into());
            let mut added = spec.database.databases[0].clone();
            added.name = "Innocent".into();
            added.clone_name = None;
            spec.database.databases.push(added);
        }
    });
    assert_eq!(st.phase, Phase::Succeeded, "{}", st.message);
    let recorded = st.targets.as_ref().unwrap();
    assert_eq!(recorded.green_deployment, "squidex-up7");
    assert_eq!(recorded.databases.len(), 2);
    let dropped: Vec<&String> = actions
        .iter()
        .filter_map(|a| match a {
            Action::DropDatabases { names } => Some(names),
            _ => None,
        })
        .flatten()
        .collect();
    assert!(
        !dropped
            .iter()
            .any(|d| *d == "Innocent" || *d == "Unchecked"),
        "dropped {dropped:?}"
    );
    let c = cond::get(&st.conditions, cond::SPEC_CHANGE_IGNORED).expect("reported");
    assert_eq!(c.status, "True");
    assert!(
        c.message.contains("spec.target.deploymentName")
            && c.message.contains("spec.database.databases"),
        "{}",
        c.message
    );
}

#[test]
fn ignored_changes_are_a_condition_and_one_warning_until_reverted() {
    let spec = spec();
    let st = status_in(Phase::Migrating);
    let mut w = world_in(Phase::Migrating);
    w.plan.ignored_changes = vec!["spec.target.image".into()];
    let d = decide(&spec, Some(&st), &w, t(100));
    let c = cond::get(&d.status.conditions, cond::SPEC_CHANGE_IGNORED).expect("set");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", "SpecChangeIgnored")
    );
    assert!(c.message.contains("spec.target.image"), "{}", c.message);
    let warned = |d: &Decision| {
        d.events
            .iter()
            .filter(|e| e.reason == Reason::SpecChangeIgnored && e.kind == EventKind::Warning)
            .count()
    };
    assert_eq!(warned(&d), 1);
    // The same edit seen again: no second event.
    let again = decide(&spec, Some(&d.status), &w, t(101));
    assert_eq!(warned(&again), 0);
    // Reverted: the condition turns False.
    w.plan.ignored_changes.clear();
    let reverted = decide(&spec, Some(&again.status), &w, t(102));
    let c = cond::get(&reverted.status.conditions, cond::SPEC_CHANGE_IGNORED).unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "SpecAsStarted")
    );
}

#[test]
fn a_failing_step_is_in_status_until_one_succeeds() {
    let spec = spec();
    let st = status_in(Phase::EnteringReadOnly);
    let mut w = world_in(Phase::EnteringReadOnly);
    w.plan.failing = Some(ReconcileFailure {
        attempts: 3,
        step: "set_read_only".into(),
        message: "Deployment.apps \"squidex\" is invalid:\n spec.selector: Required value".into(),
    });
    let d = decide(&spec, Some(&st), &w, t(100));
    let c = cond::get(&d.status.conditions, cond::RECONCILE_FAILING).expect("set");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", "ReconcileError")
    );
    assert!(
        c.message.contains("set_read_only failed (3 attempt(s)")
            && c.message.contains("spec.selector: Required value"),
        "{}",
        c.message
    );
    w.plan.failing = None;
    let ok = decide(&spec, Some(&d.status), &w, t(101));
    let c = cond::get(&ok.status.conditions, cond::RECONCILE_FAILING).unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "Recovered")
    );
}
