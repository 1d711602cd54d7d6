//! Guarded cleanup after `Succeeded`: each step's schedule, guard, refusal and completion,
//! and a rollback refused once cleanup took away what it needs.

use super::*;

/// A world after the switch in which cleanup can look at everything.
fn cleanup_world() -> Observed {
    let mut w = world_in(Phase::Succeeded);
    w.workloads = Some(Workloads {
        services: vec![ServiceSelector {
            name: "squidex".into(),
            selector: labels(&[("app", "squidex"), (names::TRACK_LABEL, "squidex-up7")]),
        }],
        deployments: vec![
            WorkloadView {
                name: "squidex".into(),
                pod_labels: labels(&[("app", "squidex"), (names::TRACK_LABEL, "squidex")]),
                env: vec![("STORE__MONGODB__DATABASE".into(), "Squidex".into())],
            },
            WorkloadView {
                name: "squidex-up7".into(),
                pod_labels: labels(&[("app", "squidex"), (names::TRACK_LABEL, "squidex-up7")]),
                env: vec![("STORE__MONGODB__DATABASE".into(), "Squidex-up7".into())],
            },
        ],
    });
    w.clone_collections = Some(Ok([
        ("Squidex-up7.Migration", 40),
        ("Squidex-up7.Events", 10),
        ("SquidexContent-up7.States_Contents_All", 3),
        ("SquidexContent-up7.States_Contents_All1", 5),
        ("SquidexContent-up7.States_Contents_All2", 90),
    ]
    .into_iter()
    .map(|(n, r)| CollectionReads {
        name: n.into(),
        reads: r,
    })
    .collect()));
    w
}

fn obsolete(approved: bool) -> ObsoleteCollectionsSpec {
    ObsoleteCollectionsSpec {
        patterns: vec![CollectionPattern {
            database: "SquidexContent".into(),
            pattern: "States_Contents_All*".into(),
            keep_highest: true,
        }],
        approved,
    }
}

fn step(st: &UpgradePlanStatus, name: CleanupStepName) -> CleanupStep {
    st.cleanup
        .as_ref()
        .and_then(|c| c.steps.iter().find(|s| s.name == name))
        .cloned()
        .unwrap_or_else(|| panic!("no step {name:?} in {:?}", st.cleanup))
}

#[test]
fn delete_blue_waits_for_its_time_then_deletes() {
    let mut s = spec();
    s.cleanup.delete_blue_after = Some(dur("1h"));
    let mut w = cleanup_world();
    w.blue.as_mut().unwrap().replicas = 0;
    let st = status_in(Phase::Succeeded);

    let d = decide(&s, Some(&st), &w, t(60));
    assert_eq!(d.action, None);
    let del = step(&d.status, CleanupStepName::DeleteBlue);
    assert_eq!(del.state, CleanupState::Scheduled);
    assert_eq!(del.due, Some(t(-10 + 3600)));
    assert!(d.requeue_after.unwrap() <= std::time::Duration::from_secs(3600));

    let d = decide(&s, Some(&d.status), &w, t(3600));
    assert_eq!(d.action, Some(Action::DeleteBlue));
    w.blue = None;
    let d = decide(&s, Some(&d.status), &w, t(3601));
    assert_eq!(
        step(&d.status, CleanupStepName::DeleteBlue).state,
        CleanupState::Done
    );
    let last = d.status.phases.last().unwrap();
    assert_eq!(last.name, Phase::CleaningUp);
    assert!(last.detail.contains("DeleteBlue"), "{}", last.detail);
    assert_eq!(d.status.phase, Phase::Succeeded);
}

#[test]
fn delete_blue_is_refused_while_a_service_selects_its_pods() {
    let mut s = spec();
    s.cleanup.delete_blue_after = Some(dur("0s"));
    let mut w = cleanup_world();
    w.blue.as_mut().unwrap().replicas = 0;
    w.workloads
        .as_mut()
        .unwrap()
        .services
        .push(ServiceSelector {
            name: "squidex-headless".into(),
            selector: labels(&[("app", "squidex")]),
        });
    let d = decide(&s, Some(&status_in(Phase::Succeeded)), &w, t(1));
    assert_eq!(d.action, None);
    let del = step(&d.status, CleanupStepName::DeleteBlue);
    assert_eq!(del.state, CleanupState::Refused);
    assert!(
        del.message
            .contains("Service squidex-headless selects its pods"),
        "{}",
        del.message
    );
    assert!(cond::is_true(&d.status.conditions, cond::CLEANUP_BLOCKED));
    assert!(
        d.events
            .iter()
            .any(|e| e.reason.as_str() == "CleanupRefused")
    );

    // Fixing the Service lets it run; the condition clears.
    w.workloads.as_mut().unwrap().services.pop();
    let d2 = decide(&s, Some(&d.status), &w, t(2));
    assert_eq!(d2.action, Some(Action::DeleteBlue));
    assert!(!cond::is_true(&d2.status.conditions, cond::CLEANUP_BLOCKED));
}

#[test]
fn sources_are_dropped_only_with_a_verified_backup_and_no_service_on_them() {
    let mut s = spec();
    s.cleanup.drop_source_databases_after = Some(dur("0s"));
    let mut w = cleanup_world();
    w.blue.as_mut().unwrap().replicas = 0;

    // A Service that still selects the old version's pods (which name the sources).
    let mut blocked = w.clone();
    blocked
        .workloads
        .as_mut()
        .unwrap()
        .services
        .push(ServiceSelector {
            name: "squidex-admin".into(),
            selector: labels(&[(names::TRACK_LABEL, "squidex")]),
        });
    let d = decide(&s, Some(&status_in(Phase::Succeeded)), &blocked, t(1));
    assert_eq!(d.action, None);
    let drop = step(&d.status, CleanupStepName::DropSourceDatabases);
    assert_eq!(drop.state, CleanupState::Refused);
    assert!(
        drop.message
            .contains("Service squidex-admin selects Deployment squidex, whose environment names database Squidex"),
        "{}",
        drop.message
    );

    // No verified backup.
    let mut st = status_in(Phase::Succeeded);
    st.backup.as_mut().unwrap().checksum = None;
    let d = decide(&s, Some(&st), &w, t(1));
    assert_eq!(d.action, None);
    let drop = step(&d.status, CleanupStepName::DropSourceDatabases);
    assert_eq!(drop.state, CleanupState::Refused);
    assert!(
        drop.message.contains("no verified backup"),
        "{}",
        drop.message
    );

    // Both guards hold: drop, then done.
    let d = decide(&s, Some(&status_in(Phase::Succeeded)), &w, t(1));
    assert_eq!(
        d.action,
        Some(Action::DropDatabases {
            names: vec!["Squidex".into(), "SquidexContent".into()]
        })
    );
    w.database = DatabaseView::Reachable {
        databases: BTreeMap::new(),
    };
    let d = decide(&s, Some(&d.status), &w, t(2));
    let drop = step(&d.status, CleanupStepName::DropSourceDatabases);
    assert_eq!(drop.state, CleanupState::Done);
    assert!(
        drop.message.contains("/backup/squidex/up7"),
        "{}",
        drop.message
    );
}

#[test]
fn obsolete_collections_are_listed_then_dropped_on_approval() {
    let mut s = spec();
    s.cleanup.obsolete_collections = Some(obsolete(false));
    let mut w = cleanup_world();
    w.blue.as_mut().unwrap().replicas = 0;

    let d = decide(&s, Some(&status_in(Phase::Succeeded)), &w, t(1));
    assert_eq!(d.action, None, "a dry run first");
    let c = d.status.cleanup.clone().unwrap();
    let listed: Vec<&str> = c
        .obsolete_collections
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        listed,
        vec![
            "SquidexContent-up7.States_Contents_All",
            "SquidexContent-up7.States_Contents_All1"
        ],
        "the newest generation the app reads is never listed"
    );
    assert_eq!(c.listed_at, Some(t(1)));
    let obs = step(&d.status, CleanupStepName::DropObsoleteCollections);
    assert_eq!(obs.state, CleanupState::AwaitingApproval);
    assert!(obs.message.contains("approved: true"), "{}", obs.message);

    // Approved, nothing read since: drop exactly the listing.
    s.cleanup.obsolete_collections = Some(obsolete(true));
    let d = decide(&s, Some(&d.status), &w, t(5));
    assert_eq!(
        d.action,
        Some(Action::DropCollections {
            names: vec![
                "SquidexContent-up7.States_Contents_All".into(),
                "SquidexContent-up7.States_Contents_All1".into()
            ]
        })
    );
    if let Some(Ok(cs)) = &mut w.clone_collections {
        cs.retain(|c| {
            !c.name.starts_with("SquidexContent-up7.States_Contents_All") || c.name.ends_with('2')
        });
    }
    let d = decide(&s, Some(&d.status), &w, t(6));
    let obs = step(&d.status, CleanupStepName::DropObsoleteCollections);
    assert_eq!(obs.state, CleanupState::Done);
    assert!(
        obs.message.contains("States_Contents_All1"),
        "{}",
        obs.message
    );
}

#[test]
fn an_approved_collection_read_since_the_listing_is_kept() {
    let mut s = spec();
    s.cleanup.obsolete_collections = Some(obsolete(false));
    let mut w = cleanup_world();
    w.blue.as_mut().unwrap().replicas = 0;
    let listed = decide(&s, Some(&status_in(Phase::Succeeded)), &w, t(1)).status;

    if let Some(Ok(cs)) = &mut w.clone_collections {
        for c in cs
            .iter_mut()
            .filter(|c| c.name.ends_with("States_Contents_All1"))
        {
            c.reads += 7;
        }
    }
    s.cleanup.obsolete_collections = Some(obsolete(true));
    let d = decide(&s, Some(&listed), &w, t(5));
    assert_eq!(
        d.action,
        Some(Action::DropCollections {
            names: vec!["SquidexContent-up7.States_Contents_All".into()]
        }),
        "only the unread one"
    );
    if let Some(Ok(cs)) = &mut w.clone_collections {
        cs.retain(|c| c.name != "SquidexContent-up7.States_Contents_All");
    }
    let d = decide(&s, Some(&d.status), &w, t(6));
    assert_eq!(d.action, None);
    let obs = step(&d.status, CleanupStepName::DropObsoleteCollections);
    assert_eq!(obs.state, CleanupState::Refused);
    assert!(
        obs.message
            .contains("States_Contents_All1 (read 7 time(s) since it was listed)"),
        "{}",
        obs.message
    );
    assert!(cond::is_true(&d.status.conditions, cond::CLEANUP_BLOCKED));
}

#[test]
fn obsolete_collections_wait_for_the_migration_gate() {
    let mut s = spec();
    s.cleanup.obsolete_collections = Some(obsolete(true));
    let mut st = status_in(Phase::Succeeded);
    st.conditions.retain(|c| c.type_ != cond::MIGRATED);
    let mut w = cleanup_world();
    w.blue.as_mut().unwrap().replicas = 0;
    let d = decide(&s, Some(&st), &w, t(1));
    assert_eq!(d.action, None);
    let obs = step(&d.status, CleanupStepName::DropObsoleteCollections);
    assert_eq!(obs.state, CleanupState::Refused);
    assert!(obs.message.contains("migration gate"), "{}", obs.message);
}

#[test]
fn backup_retention_runs_a_job_and_records_what_it_deleted() {
    let mut s = spec();
    s.backup.keep_last = 2;
    let mut sim = Sim { w: cleanup_world() };
    sim.w.blue.as_mut().unwrap().replicas = 0;
    let d = decide(&s, Some(&status_in(Phase::Succeeded)), &sim.w, t(1));
    assert_eq!(d.action, Some(Action::CreatePruneJob));
    sim.apply(&Action::CreatePruneJob, &s);
    let d = decide(&s, Some(&d.status), &sim.w, t(2));
    let prune = step(&d.status, CleanupStepName::PruneBackups);
    assert_eq!(prune.state, CleanupState::Done);
    assert!(
        prune.message.contains(r#""deleted":["up5"]"#),
        "{}",
        prune.message
    );
}

#[test]
fn one_action_per_reconcile_and_steps_in_order() {
    let mut s = spec();
    s.cleanup.delete_blue_after = Some(dur("0s"));
    s.cleanup.drop_source_databases_after = Some(dur("0s"));
    s.backup.keep_last = 3;
    let mut sim = Sim { w: cleanup_world() };
    let mut st = Some(status_in(Phase::Succeeded));
    let mut actions = Vec::new();
    for i in 0..20 {
        let d = decide(&s, st.as_ref(), &sim.w, t(i));
        if let Some(a) = &d.action {
            sim.apply(a, &s);
            if a == &Action::DeleteBlue {
                // The old version's Deployment is gone from the namespace too.
                sim.w
                    .workloads
                    .as_mut()
                    .unwrap()
                    .deployments
                    .retain(|d| d.name != "squidex");
            }
            actions.push(a.label());
        }
        st = Some(d.status);
    }
    assert_eq!(
        actions,
        vec!["scale", "delete_blue", "drop_databases", "create_prune_job"]
    );
    let st = st.unwrap();
    assert!(
        st.cleanup
            .as_ref()
            .unwrap()
            .steps
            .iter()
            .all(|s| s.state == CleanupState::Done)
    );
    assert!(st.message.contains("cleanup finished"), "{}", st.message);
    let recorded = st
        .phases
        .iter()
        .filter(|p| p.name == Phase::CleaningUp)
        .count();
    assert!(
        recorded >= 4,
        "each step is in the history: {:?}",
        st.phases
    );
}

#[test]
fn rollback_is_refused_after_cleanup_deleted_the_old_version() {
    let mut s = spec();
    s.traffic = Color::Blue;
    s.rollback.accept_data_loss = true;
    let mut st = status_in(Phase::Succeeded);
    st.cleanup = Some(CleanupStatus {
        steps: vec![CleanupStep {
            name: CleanupStepName::DeleteBlue,
            state: CleanupState::Done,
            due: Some(t(0)),
            done_at: Some(t(0)),
            message: "deleted".into(),
        }],
        ..Default::default()
    });
    let mut w = cleanup_world();
    w.blue = None;
    let d = decide(&s, Some(&st), &w, t(5));
    assert_eq!(d.status.phase, Phase::Succeeded);
    assert_eq!(d.action, None);
    assert!(cond::is_true(&d.status.conditions, cond::ROLLBACK_BLOCKED));
    assert!(
        d.status.message.contains("was deleted at cleanup"),
        "{}",
        d.status.message
    );

    // Traffic back to green clears the refusal.
    s.traffic = Color::Green;
    let d = decide(&s, Some(&d.status), &w, t(6));
    assert!(!cond::is_true(&d.status.conditions, cond::ROLLBACK_BLOCKED));
}

#[test]
fn validation_of_cleanup_settings() {
    let mut s = spec();
    s.cleanup.scale_down_blue_after = dur("1h");
    s.cleanup.delete_blue_after = Some(dur("10m"));
    s.cleanup.obsolete_collections = Some(ObsoleteCollectionsSpec {
        patterns: vec![CollectionPattern {
            database: "Nope".into(),
            pattern: "*".into(),
            keep_highest: true,
        }],
        approved: false,
    });
    let errs = validate(&s, PLAN);
    assert!(
        errs.iter().any(|e| e.contains("deleteBlueAfter")),
        "{errs:?}"
    );
    assert!(
        errs.iter().any(|e| e.contains("patterns[0].database")),
        "{errs:?}"
    );
    assert!(
        errs.iter().any(|e| e.contains("patterns[0].pattern")),
        "{errs:?}"
    );
}
