//! Walks of whole plans against a simulated world that reacts to each action: the phases
//! a plan goes through and the actions it takes, forward, rolled back, failed and rehearsed.

use super::*;

#[test]
fn walks_from_pending_to_succeeded() {
    let mut sim = Sim::new();
    let (st, actions) = walk(&spec(), &mut sim, None, |_, _, _, _| {});
    assert_eq!(st.phase, Phase::Succeeded);
    use Phase::*;
    assert_eq!(
        phase_names(&st),
        vec![
            Pending,
            EnteringReadOnly,
            BackingUp,
            Cloning,
            DeployingGreen,
            Migrating,
            SwitchingTraffic,
            LiftingReadOnly,
            CleaningUp,
            Succeeded
        ]
    );
    assert!(
        st.phases
            .iter()
            .all(|r| r.finished_at.is_some() && r.outcome == Some(Outcome::Succeeded))
    );
    assert_eq!(st.active_color, Some(Color::Green));
    assert!(st.read_only_since.is_some() && st.read_only_lifted_at.is_some());
    assert_eq!(st.backup.as_ref().unwrap().bytes, Some(1234));
    assert!(st.clone.as_ref().unwrap().verified);
    assert!(
        !st.clone.as_ref().unwrap().collections_at_lift.is_empty(),
        "the clones were counted before read-only was lifted (the DataDiverged baseline)"
    );
    assert!(cond::is_true(&st.conditions, cond::READY));
    assert!(cond::is_true(&st.conditions, cond::BACKUP_VERIFIED));
    assert!(cond::is_true(&st.conditions, cond::MIGRATED));
    assert!(!cond::is_true(&st.conditions, cond::READ_ONLY));
    // Every one-shot step happened exactly once.
    for once in [
        Action::CreateBackupJob,
        Action::CreateCloneJob,
        Action::ReleaseGreen,
    ] {
        assert_eq!(
            actions.iter().filter(|a| **a == once).count(),
            1,
            "{once:?}"
        );
    }
    assert_eq!(sim.w.blue.as_ref().unwrap().replicas, 0, "blue scaled down");
    assert_eq!(
        sim.w
            .service
            .as_ref()
            .unwrap()
            .selector
            .get(names::TRACK_LABEL)
            .map(String::as_str),
        Some("squidex-up7")
    );
}

#[test]
fn walks_with_manual_promotion_and_job_gate() {
    let mut s = spec();
    s.promotion.mode = PromotionMode::Manual;
    s.migration.job = Some(JobGate {
        command: vec!["./upgrade_schema.sh".into()],
        args: vec!["upgrade".into()],
        credentials_secret: None,
    });
    let mut sim = Sim::new();
    let mut waited = 0;
    let (st, actions) = walk(&s, &mut sim, None, |_, st, spec, _| {
        if st.phase == Phase::AwaitingPromotion {
            waited += 1;
            if waited == 3 {
                spec.promotion.approved = true;
            }
        }
    });
    assert_eq!(st.phase, Phase::Succeeded);
    assert!(waited >= 3, "waited for approval");
    let job_at = actions
        .iter()
        .position(|a| *a == Action::CreateMigrationJob)
        .unwrap();
    let scaled_up = actions
        .iter()
        .position(|a| *a == Action::ApplyGreen { replicas: 2 })
        .unwrap();
    assert!(actions.contains(&Action::ApplyGreen { replicas: 0 }));
    assert!(
        job_at < scaled_up,
        "the migration Job runs before the new version starts"
    );
}

#[test]
fn walks_to_rolled_back_when_traffic_is_patched_to_blue() {
    let mut sim = Sim::new();
    let (st, _) = walk(&spec(), &mut sim, None, |_, st, spec, _| {
        if st.phase == Phase::SwitchingTraffic || st.phase == Phase::LiftingReadOnly {
            spec.traffic = Color::Blue;
        }
    });
    assert_eq!(st.phase, Phase::RolledBack);
    assert!(st.failure.is_none());
    let blue = sim.w.blue.as_ref().unwrap();
    assert!(!blue.read_only_env, "blue serves read-write again");
    assert_eq!(blue.replicas, 2);
    assert_eq!(
        sim.w.green.as_ref().unwrap().replicas,
        0,
        "green scaled down, kept"
    );
    assert_eq!(
        sim.w
            .service
            .as_ref()
            .unwrap()
            .selector
            .get(names::TRACK_LABEL)
            .map(String::as_str),
        Some("squidex")
    );
    assert_eq!(st.active_color, Some(Color::Blue));
    assert!(phase_names(&st).contains(&Phase::RollingBack));
    assert!(
        cond::is_true(&st.conditions, cond::READY),
        "a requested rollback is the declared outcome: Ready, not Degraded"
    );
    assert!(!cond::is_true(&st.conditions, cond::DEGRADED));
}

#[test]
fn rollback_after_lift_with_accepted_loss_freezes_green_first() {
    let mut s = spec();
    s.cleanup.scale_down_blue_after = dur("1h");
    let mut sim = Sim::new();
    let mut requested = false;
    let (st, actions) = walk(&s, &mut sim, None, |_, st, spec, _| {
        if st.phase == Phase::CleaningUp && !requested {
            requested = true;
            spec.traffic = Color::Blue;
            spec.rollback.accept_data_loss = true;
        }
    });
    assert_eq!(st.phase, Phase::RolledBack);
    let freeze = actions
        .iter()
        .rposition(|a| {
            *a == Action::SetReadOnly {
                color: Color::Green,
                enabled: true,
            }
        })
        .unwrap();
    let back = actions
        .iter()
        .position(|a| *a == Action::PinService { color: Color::Blue })
        .unwrap();
    let pinned_blue_last = actions
        .iter()
        .rposition(|a| *a == Action::PinService { color: Color::Blue })
        .unwrap();
    assert!(freeze < pinned_blue_last && back <= pinned_blue_last);
}

#[test]
fn a_failure_compensates_and_ends_failed_with_app_read_write() {
    let mut sim = Sim::new();
    // The clone Job fails when it is created.
    let mut s = spec();
    s.migration.timeout = dur("10m");
    let mut st = None;
    let mut actions = Vec::new();
    for step in 0..100 {
        let d = decide(&s, st.as_ref(), &sim.w, t(step));
        if let Some(a) = &d.action {
            if *a == Action::CreateCloneJob {
                sim.w.clone_job = job(
                    "up7-clone",
                    JobState::Failed,
                    "mongorestore: E11000 duplicate key",
                );
            } else {
                sim.apply(a, &s);
            }
            actions.push(a.clone());
        }
        let done = d.status.phase.is_terminal();
        st = Some(d.status);
        if done {
            break;
        }
    }
    let st = st.unwrap();
    assert_eq!(st.phase, Phase::Failed);
    let f = st.failure.as_ref().unwrap();
    assert_eq!(f.reason, "CloneJobFailed");
    assert_eq!(f.phase, Phase::Cloning);
    assert!(st.message.contains("E11000"));
    assert!(
        !sim.w.blue.as_ref().unwrap().read_only_env,
        "never left read-only"
    );
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::DropDatabases { .. })),
        "nothing dropped"
    );
    assert!(cond::is_true(&st.conditions, cond::DEGRADED));
    assert_eq!(
        cond::get(&st.conditions, cond::READY).unwrap().reason,
        "CloneJobFailed"
    );
    let cloning = st.phases.iter().find(|r| r.name == Phase::Cloning).unwrap();
    assert_eq!(cloning.outcome, Some(Outcome::Failed));
}

#[test]
fn rehearsal_never_touches_blue_and_predicts_the_window() {
    let mut s = spec();
    s.mode = Mode::Rehearsal;
    let mut sim = Sim::new();
    let blue_before = sim.w.blue.clone();
    let svc_before = sim.w.service.clone();
    let (st, actions) = walk(&s, &mut sim, None, |_, _, _, _| {});
    assert_eq!(st.phase, Phase::Rehearsed);
    assert_eq!(sim.w.blue, blue_before);
    assert_eq!(sim.w.service, svc_before);
    assert!(sim.w.green.is_none(), "green torn down");
    assert!(actions.iter().all(|a| !matches!(
        a,
        Action::SetReadOnly {
            color: Color::Blue,
            ..
        } | Action::PinService { .. }
            | Action::Scale {
                color: Color::Blue,
                ..
            }
    )));
    assert!(st.message.contains("predicted read-only window"));
    let p = st.prediction.expect("a rehearsal records its prediction");
    assert_eq!(p.rehearsal, PLAN);
    assert!(p.read_only_seconds > 0.0);
    assert!(actions.contains(&Action::DropDatabases {
        names: vec!["Squidex-up7".into(), "SquidexContent-up7".into()]
    }));
}

#[test]
fn suspend_holds_at_the_next_boundary_and_resumes() {
    let mut sim = Sim::new();
    let mut suspended_steps = 0;
    let (st, _) = walk(&spec(), &mut sim, None, |step, st, spec, _| {
        if st.phase == Phase::Cloning && step < 30 && suspended_steps == 0 {
            spec.suspend = true;
        }
        if spec.suspend {
            suspended_steps += 1;
            if suspended_steps > 5 {
                spec.suspend = false;
            }
        }
    });
    assert_eq!(st.phase, Phase::Succeeded);
    assert!(suspended_steps > 5);
}

#[test]
fn deletion_mid_way_unwinds_then_terminates() {
    let mut sim = Sim::new();
    let (st, actions) = walk(&spec(), &mut sim, None, |_, st, _, sim| {
        // Phases chain within a reconcile; delete once the new version exists.
        if matches!(st.phase, Phase::DeployingGreen | Phase::Migrating) && sim.w.green.is_some() {
            sim.w.plan.deleting = true;
        }
    });
    assert_eq!(st.phase, Phase::Failed);
    assert_eq!(st.failure.as_ref().unwrap().reason, "PlanDeleted");
    assert!(actions.contains(&Action::DeleteGreen));
    assert!(!sim.w.blue.as_ref().unwrap().read_only_env);
}

#[test]
fn a_rehearsal_can_keep_its_clones() {
    let mut s = spec();
    s.mode = Mode::Rehearsal;
    s.rehearsal.keep_clone = true;
    let mut sim = Sim::new();
    let (st, actions) = walk(&s, &mut sim, None, |_, _, _, _| {});
    assert_eq!(st.phase, Phase::Rehearsed);
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::DropDatabases { .. }))
    );
    assert!(
        st.message
            .contains("clones kept: Squidex-up7, SquidexContent-up7"),
        "{}",
        st.message
    );
}
