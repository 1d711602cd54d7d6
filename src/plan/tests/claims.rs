//! Claims: `Pending` reserves every database and the Deployment in the registry on the MongoDB
//! server before any side effect, and goes on only when all are this plan's; a plan at rest
//! gives back what it no longer needs; a rehearsal drops only the clones it claimed.

use super::table::{Case, no_spec, run};
use super::*;
use crate::plan::claims::{Claim, ClaimRole, Holder, Wanted};

fn all_wanted() -> Vec<Wanted> {
    crate::plan::claims::wanted(&targets(&spec(), PLAN, None), NS)
}

fn other(id: &str, role: ClaimRole) -> Claim {
    Claim {
        id: id.into(),
        role,
        holder: Holder {
            namespace: "team-b".into(),
            plan: "v2".into(),
            uid: "uid-other".into(),
        },
    }
}

fn mine(id: &str, role: ClaimRole) -> Claim {
    Claim {
        id: id.into(),
        role,
        holder: Holder {
            namespace: NS.into(),
            plan: PLAN.into(),
            uid: UID.into(),
        },
    }
}

pub(super) fn cases() -> Vec<Case> {
    use Phase::*;
    vec![
        Case {
            name: "pending: everything checked, names free: claim them all, nothing else yet",
            phase: Pending,
            spec: no_spec,
            world: |w| w.claims = Some(Ok(vec![])),
            now: 0,
            want_phase: Pending,
            want_action: Some(Action::Claim {
                claims: all_wanted(),
            }),
            want_message: "Claiming db:Squidex, db:SquidexContent, db:Squidex-up7, db:SquidexContent-up7, deployment:ns/squidex in cutover.claims",
        },
        Case {
            name: "pending: half claimed (a crash between inserts): claim the rest",
            phase: Pending,
            spec: no_spec,
            world: |w| {
                w.claims = Some(Ok(vec![
                    mine("db:Squidex", ClaimRole::Source),
                    mine("db:Squidex-up7", ClaimRole::Clone),
                ]))
            },
            now: 0,
            want_phase: Pending,
            want_action: Some(Action::Claim {
                claims: all_wanted()
                    .into_iter()
                    .filter(|w| w.id != "db:Squidex" && w.id != "db:Squidex-up7")
                    .collect(),
            }),
            want_message: "Claiming db:SquidexContent, db:SquidexContent-up7, deployment:ns/squidex",
        },
        Case {
            name: "pending: a clone name claimed by a plan in another namespace fails, naming it",
            phase: Pending,
            spec: no_spec,
            world: |w| {
                let mut held = held_claims(&spec(), UID);
                held.retain(|c| c.id != "db:SquidexContent-up7");
                held.push(other("db:SquidexContent-up7", ClaimRole::Clone));
                w.claims = Some(Ok(held));
            },
            now: 0,
            want_phase: Failed,
            want_action: None,
            want_message: "database \"SquidexContent-up7\" is claimed by UpgradePlan team-b/v2 (as its clone, uid uid-other)",
        },
        Case {
            name: "pending: the Deployment claimed by another plan (say one being deleted) fails",
            phase: Pending,
            spec: no_spec,
            world: |w| {
                w.claims = Some(Ok(vec![other(
                    "deployment:ns/squidex",
                    ClaimRole::Deployment,
                )]))
            },
            now: 0,
            want_phase: Failed,
            want_action: None,
            want_message: "Wait for that plan to finish, delete it, or choose other names",
        },
        Case {
            name: "pending: the registry cannot be read: fail before any side effect",
            phase: Pending,
            spec: no_spec,
            world: |w| w.claims = Some(Err("not authorized on cutover".into())),
            now: 0,
            want_phase: Failed,
            want_action: None,
            want_message: "let the connection Secret's user read and write database \"cutover\"",
        },
        Case {
            name: "pending: the registry not read yet: wait",
            phase: Pending,
            spec: no_spec,
            world: |w| w.claims = None,
            now: 0,
            want_phase: Pending,
            want_action: None,
            want_message: "Reading the claim registry",
        },
        Case {
            name: "pending: a claim taken for a name the spec no longer has is given back first",
            phase: Pending,
            spec: no_spec,
            world: |w| {
                let mut held = held_claims(&spec(), UID);
                held.push(mine("db:old-clone", ClaimRole::Clone));
                w.claims = Some(Ok(held));
            },
            now: 0,
            want_phase: Pending,
            want_action: Some(Action::ReleaseClaims {
                ids: vec!["db:old-clone".into()],
            }),
            want_message: "Releasing claims the plan no longer needs: db:old-clone",
        },
    ]
}

#[test]
fn claim_rows() {
    run(cases());
}

/// A status in `phase` whose `Claimed` condition is True.
fn claimed_in(phase: Phase) -> UpgradePlanStatus {
    let mut st = status_in(phase);
    cond::set(
        &mut st.conditions,
        cond::CLAIMED,
        true,
        "ClaimsHeld",
        "held",
        Some(1),
        t(0),
    );
    st
}

fn released(d: &Decision) -> Vec<String> {
    match &d.action {
        Some(Action::ReleaseClaims { ids }) => ids.clone(),
        other => panic!("expected ReleaseClaims, got {other:?}"),
    }
}

fn ids(role: Option<ClaimRole>) -> Vec<String> {
    all_wanted()
        .into_iter()
        .filter(|w| role.is_none_or(|r| r == w.role))
        .map(|w| w.id)
        .collect()
}

#[test]
fn claiming_records_the_intent_first() {
    let mut w = world();
    w.claims = Some(Ok(vec![]));
    let d = decide(&spec(), None, &w, t(0));
    assert!(matches!(d.action, Some(Action::Claim { .. })));
    let c = cond::get(&d.status.conditions, cond::CLAIMED).expect("Claimed");
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "Claiming"));

    // Next reconcile: all held, the plan goes on and says what it holds.
    let mut w = world();
    w.claims = Some(Ok(held_claims(&spec(), UID)));
    let d = decide(&spec(), Some(&d.status), &w, t(1));
    assert_eq!(d.status.phase, Phase::EnteringReadOnly);
    let c = cond::get(&d.status.conditions, cond::CLAIMED).unwrap();
    assert_eq!(c.reason, "ClaimsHeld");
    assert!(c.message.contains("db:Squidex-up7"), "{}", c.message);
}

#[test]
fn a_conflict_gives_back_what_the_plan_got_in_the_same_reconcile() {
    let mut st = claimed_in(Phase::Pending);
    st.phases.clear();
    let mut w = world();
    w.claims = Some(Ok(vec![
        mine("db:Squidex", ClaimRole::Source),
        other("db:Squidex-up7", ClaimRole::Clone),
    ]));
    let d = decide(&spec(), Some(&st), &w, t(0));
    assert_eq!(d.status.phase, Phase::Failed);
    let f = d.status.failure.as_ref().unwrap();
    assert_eq!(
        (f.phase, f.reason.as_str()),
        (Phase::Pending, "ClaimConflict")
    );
    assert!(f.message.contains("nothing was changed"), "{}", f.message);
    assert_eq!(released(&d), vec!["db:Squidex".to_string()]);
    // The terminal message stays the failure's.
    assert!(
        d.status.message.contains("team-b/v2"),
        "{}",
        d.status.message
    );
}

#[test]
fn a_plan_that_ended_otherwise_than_succeeded_gives_back_every_claim() {
    for phase in [Phase::Failed, Phase::RolledBack, Phase::Rehearsed] {
        let st = claimed_in(phase);
        let mut w = world_in(phase);
        w.claims = Some(Ok(held_claims(&spec(), UID)));
        let d = decide(&spec(), Some(&st), &w, t(5));
        assert_eq!(d.status.phase, phase);
        assert_eq!(released(&d), ids(None), "{phase}");

        // Given back: the condition turns False, nothing more to do.
        w.claims = Some(Ok(vec![other("db:Squidex", ClaimRole::Source)]));
        let d = decide(&spec(), Some(&st), &w, t(6));
        assert_eq!(d.action, None, "{phase}");
        let c = cond::get(&d.status.conditions, cond::CLAIMED).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "ClaimsReleased")
        );
    }
}

#[test]
fn a_deleted_plan_gives_back_its_claims_before_the_finalizer_goes() {
    // Deleted after success, with a source drop still to come: everything is given back.
    let mut s = spec();
    s.cleanup.drop_source_databases_after = Some("168h".parse().unwrap());
    let mut st = claimed_in(Phase::Succeeded);
    st.read_only_lifted_at = Some(t(-10));
    let mut w = world_in(Phase::Succeeded);
    w.plan.deleting = true;
    w.claims = Some(Ok(held_claims(&s, UID)));
    let d = decide(&s, Some(&st), &w, t(5));
    assert_eq!(released(&d), ids(None));

    // Deleted in Pending after claiming: Failed (PlanDeleted), and released at once.
    let mut st = claimed_in(Phase::Pending);
    st.phases.clear();
    let mut w = world();
    w.plan.deleting = true;
    let d = decide(&spec(), Some(&st), &w, t(0));
    assert_eq!(d.status.phase, Phase::Failed);
    assert_eq!(released(&d), ids(None));
}

#[test]
fn success_hands_the_clones_over_and_keeps_what_cleanup_may_still_destroy() {
    let mut s = spec();
    s.cleanup.drop_source_databases_after = Some("168h".parse().unwrap());
    s.cleanup.delete_blue_after = Some("168h".parse().unwrap());
    let mut st = claimed_in(Phase::Succeeded);
    st.read_only_lifted_at = Some(t(-10));
    let mut w = world_in(Phase::Succeeded);
    w.blue.as_mut().unwrap().replicas = 0; // scaled down already: no cleanup action now
    w.claims = Some(Ok(held_claims(&s, UID)));
    let d = decide(&s, Some(&st), &w, t(5));
    assert_eq!(d.status.phase, Phase::Succeeded);
    assert_eq!(released(&d), ids(Some(ClaimRole::Clone)));

    // Clones given back; the sources and the Deployment stay while their steps are open.
    w.claims = Some(Ok(held_claims(&s, UID)
        .into_iter()
        .filter(|c| c.role != ClaimRole::Clone)
        .collect()));
    let d = decide(&s, Some(&st), &w, t(6));
    assert_eq!(d.action, None, "{:?}", d.status.message);
    assert!(cond::is_true(&d.status.conditions, cond::CLAIMED));

    // Without those steps asked for, everything goes.
    let mut w = world_in(Phase::Succeeded);
    w.blue.as_mut().unwrap().replicas = 0;
    w.claims = Some(Ok(held_claims(&spec(), UID)));
    let d = decide(&spec(), Some(&st), &w, t(5));
    assert_eq!(released(&d), ids(None));
}

#[test]
fn a_rehearsal_drops_only_the_clones_it_claimed() {
    let mut s = spec();
    s.mode = Mode::Rehearsal;
    let st = claimed_in(Phase::CleaningUp);
    let mut w = world_in(Phase::CleaningUp);
    w.green = None;
    if let DatabaseView::Reachable { databases } = &mut w.database {
        for c in ["Squidex-up7", "SquidexContent-up7"] {
            databases.insert(c.into(), DatabaseInfo::default());
        }
    }
    let mut held = held_claims(&s, UID);
    held.retain(|c| c.id != "db:SquidexContent-up7");
    held.push(other("db:SquidexContent-up7", ClaimRole::Clone));
    w.claims = Some(Ok(held));
    let d = decide(&s, Some(&st), &w, t(5));
    assert_eq!(
        d.action,
        Some(Action::DropDatabases {
            names: vec!["Squidex-up7".into()]
        })
    );

    // That one dropped, the other is left to its holder, said in a Warning event.
    if let DatabaseView::Reachable { databases } = &mut w.database {
        databases.remove("Squidex-up7");
    }
    let d = decide(&s, Some(&st), &w, t(6));
    assert_eq!(d.status.phase, Phase::Rehearsed);
    assert!(
        d.events
            .iter()
            .any(|e| e.reason == Reason::NotClaimed && e.note.contains("SquidexContent-up7")),
        "{:?}",
        d.events
    );
    // And then the plan gives back its own claims.
    assert_eq!(
        released(&d),
        ids(None)
            .into_iter()
            .filter(|i| i != "db:SquidexContent-up7")
            .collect::<Vec<_>>()
    );

    // A claim registry that cannot be read: nothing is dropped, the plan retries.
    w.claims = Some(Err("timed out".into()));
    let d = decide(&s, Some(&st), &w, t(7));
    assert_eq!(d.status.phase, Phase::CleaningUp);
    assert_eq!(d.action, None);
}

#[test]
fn cleanup_drops_only_sources_the_plan_holds() {
    let mut s = spec();
    s.cleanup.drop_source_databases_after = Some("0s".parse().unwrap());
    let mut st = claimed_in(Phase::Succeeded);
    st.read_only_lifted_at = Some(t(-10));
    st.cleanup = Some(CleanupStatus {
        steps: vec![CleanupStep {
            name: CleanupStepName::ScaleDownBlue,
            state: CleanupState::Done,
            due: None,
            done_at: Some(t(-5)),
            message: String::new(),
        }],
        ..Default::default()
    });
    let mut w = world_in(Phase::Succeeded);
    w.workloads = Some(Workloads::default());
    // A plan started before claims existed holds none: the sources are kept, and it says so.
    w.claims = None;
    let d = decide(&s, Some(&st), &w, t(5));
    let drop = d
        .status
        .cleanup
        .as_ref()
        .and_then(|c| {
            c.steps
                .iter()
                .find(|x| x.name == CleanupStepName::DropSourceDatabases)
        })
        .unwrap();
    assert_eq!(drop.state, CleanupState::Refused, "{}", drop.message);
    assert!(drop.message.contains("holds no claim"), "{}", drop.message);
    assert!(!matches!(d.action, Some(Action::DropDatabases { .. })));

    // Held: dropped.
    w.claims = Some(Ok(held_claims(&s, UID)));
    let d = decide(&s, Some(&st), &w, t(6));
    assert_eq!(
        d.action,
        Some(Action::DropDatabases {
            names: vec!["Squidex".into(), "SquidexContent".into()]
        }),
        "{}",
        d.status.message
    );
}
