//! The new version: `DeployingGreen`, the migration gates in `Migrating` (Job, migration
//! document with its stale-lock detection, health probe) and `AwaitingPromotion`.

use super::table::{Case, no_spec, no_world, run};
use super::*;

pub(super) fn cases() -> Vec<Case> {
    use Phase::*;
    vec![
        // DeployingGreen
        Case {
            name: "green: applies deployment",
            phase: DeployingGreen,
            spec: no_spec,
            world: no_world,
            now: 1,
            want_phase: DeployingGreen,
            want_action: Some(Action::ApplyGreen { replicas: 2 }),
            want_message: "Creating Deployment squidex-up7",
        },
        Case {
            name: "green: with a job gate starts at 0 replicas",
            phase: DeployingGreen,
            spec: |s| {
                s.migration.job = Some(JobGate {
                    command: vec!["./upgrade_schema.sh".into()],
                    args: vec!["upgrade".into()],
                    credentials_secret: None,
                })
            },
            world: no_world,
            now: 1,
            want_phase: DeployingGreen,
            want_action: Some(Action::ApplyGreen { replicas: 0 }),
            want_message: "Creating",
        },
        Case {
            name: "green: created, migrating",
            phase: DeployingGreen,
            spec: no_spec,
            world: |w| w.green = Some(green_view(2)),
            now: 2,
            want_phase: Migrating,
            want_action: None,
            want_message: "migration gates",
        },
        Case {
            name: "green: the live deployment names a source",
            phase: DeployingGreen,
            spec: no_spec,
            world: |w| {
                let mut g = green_view(2);
                g.env = env_naming(&["Squidex-up7", "SquidexContent"]);
                w.green = Some(g);
            },
            now: 2,
            want_phase: RollingBack,
            want_action: Some(Action::SetReadOnly {
                color: Color::Blue,
                enabled: false,
            }),
            want_message: "Deployment squidex-up7 (the new version) would use a source database: STORE__MONGODB__CONTENTDATABASE names \"SquidexContent\"",
        },
        Case {
            name: "green: waits for the variables of the live deployment",
            phase: DeployingGreen,
            spec: no_spec,
            world: |w| {
                let mut g = green_view(2);
                g.env.push(EnvFact {
                    name: "STORE__URI".into(),
                    held_in: Some("Secret \"squidex-up7-env\" key \"STORE__URI\"".into()),
                    value: EnvValue::NotRead,
                });
                w.green = Some(g);
            },
            now: 2,
            want_phase: DeployingGreen,
            want_action: None,
            want_message: "Reading the variables of Deployment squidex-up7",
        },
        // Migrating
        Case {
            name: "migrate: a source-named secret on the live deployment fails before the gate",
            phase: Migrating,
            spec: no_spec,
            world: |w| {
                w.green.as_mut().unwrap().env.push(EnvFact {
                    name: "STORE__URI".into(),
                    held_in: Some("Secret \"app\" key \"uri\"".into()),
                    value: EnvValue::Resolved {
                        uri: true,
                        source: Some("Squidex".into()),
                    },
                });
                w.migration_doc = Some(Ok(Some(MigrationDoc {
                    version: Some(2),
                    locked: false,
                    raw: "{}".into(),
                })));
            },
            now: 5,
            want_phase: RollingBack,
            want_action: Some(Action::SetReadOnly {
                color: Color::Blue,
                enabled: false,
            }),
            want_message: "STORE__URI (Secret \"app\" key \"uri\") names \"Squidex\"",
        },
        Case {
            name: "migrate: doc not there yet",
            phase: Migrating,
            spec: no_spec,
            world: |w| w.migration_doc = Some(Ok(None)),
            now: 5,
            want_phase: Migrating,
            want_action: None,
            want_message: "no migration document",
        },
        Case {
            name: "migrate: locked, in progress",
            phase: Migrating,
            spec: no_spec,
            world: |w| {
                w.migration_doc = Some(Ok(Some(MigrationDoc {
                    version: Some(1),
                    locked: true,
                    raw: "{}".into(),
                })));
                w.green.as_mut().unwrap().ready_replicas = 0;
            },
            now: 5,
            want_phase: Migrating,
            want_action: None,
            want_message: "version 1 of 2, locked",
        },
        Case {
            name: "migrate: done",
            phase: Migrating,
            spec: no_spec,
            world: |w| {
                w.migration_doc = Some(Ok(Some(MigrationDoc {
                    version: Some(2),
                    locked: false,
                    raw: "{}".into(),
                })))
            },
            now: 5,
            want_phase: SwitchingTraffic,
            want_action: Some(Action::PinService {
                color: Color::Green,
            }),
            want_message: "switching Service",
        },
        Case {
            name: "migrate: done, manual promotion waits",
            phase: Migrating,
            spec: |s| s.promotion.mode = PromotionMode::Manual,
            world: |w| {
                w.migration_doc = Some(Ok(Some(MigrationDoc {
                    version: Some(2),
                    locked: false,
                    raw: "{}".into(),
                })))
            },
            now: 5,
            want_phase: AwaitingPromotion,
            want_action: None,
            want_message: "kubectl patch upgradeplan up7",
        },
        Case {
            name: "migrate: timeout compensates",
            phase: Migrating,
            spec: no_spec,
            world: |w| {
                w.migration_doc = Some(Ok(Some(MigrationDoc {
                    version: Some(1),
                    locked: true,
                    raw: "{}".into(),
                })))
            },
            now: 601,
            want_phase: RollingBack,
            want_action: Some(Action::SetReadOnly {
                color: Color::Blue,
                enabled: false,
            }),
            want_message: "did not pass within 10m",
        },
        Case {
            name: "migrate: job gate creates the job",
            phase: Migrating,
            spec: |s| {
                s.migration.mongo_document = None;
                s.migration.job = Some(JobGate {
                    command: vec![],
                    args: vec!["upgrade".into()],
                    credentials_secret: None,
                });
            },
            world: |w| w.green = Some(green_view(0)),
            now: 1,
            want_phase: Migrating,
            want_action: Some(Action::CreateMigrationJob),
            want_message: "up7-migrate",
        },
        Case {
            name: "migrate: job gate failed",
            phase: Migrating,
            spec: |s| {
                s.migration.mongo_document = None;
                s.migration.job = Some(JobGate {
                    command: vec![],
                    args: vec![],
                    credentials_secret: None,
                });
            },
            world: |w| {
                w.green = Some(green_view(0));
                w.migration_job = job("up7-migrate", JobState::Failed, "schema error");
            },
            now: 1,
            want_phase: RollingBack,
            want_action: Some(Action::SetReadOnly {
                color: Color::Blue,
                enabled: false,
            }),
            want_message: "schema error",
        },
        Case {
            name: "migrate: job gate done scales green up",
            phase: Migrating,
            spec: |s| {
                s.migration.mongo_document = None;
                s.migration.job = Some(JobGate {
                    command: vec![],
                    args: vec![],
                    credentials_secret: None,
                });
            },
            world: |w| {
                w.green = Some(green_view(0));
                w.migration_job = job("up7-migrate", JobState::Succeeded, "");
            },
            now: 1,
            want_phase: Migrating,
            want_action: Some(Action::ApplyGreen { replicas: 2 }),
            want_message: "2 replicas",
        },
        Case {
            name: "migrate: health gate failing waits",
            phase: Migrating,
            spec: |s| {
                s.migration.http_get = Some(HttpGetGate {
                    path: "/healthz".into(),
                    port: 8080,
                    expect_status: 200,
                })
            },
            world: |w| {
                w.migration_doc = Some(Ok(Some(MigrationDoc {
                    version: Some(2),
                    locked: false,
                    raw: "{}".into(),
                })));
                w.health = Some(ProbeView {
                    ok: false,
                    detail: "503 from 127.0.0.5".into(),
                    pods: vec![],
                });
            },
            now: 5,
            want_phase: Migrating,
            want_action: None,
            want_message: "503 from",
        },
        Case {
            name: "migrate: green vanished",
            phase: Migrating,
            spec: no_spec,
            world: |w| w.green = None,
            now: 5,
            want_phase: RollingBack,
            want_action: Some(Action::SetReadOnly {
                color: Color::Blue,
                enabled: false,
            }),
            want_message: "disappeared",
        },
        // AwaitingPromotion
        Case {
            name: "promotion: waits for approval",
            phase: AwaitingPromotion,
            spec: |s| s.promotion.mode = PromotionMode::Manual,
            world: no_world,
            now: 5,
            want_phase: AwaitingPromotion,
            want_action: None,
            want_message: "approved",
        },
        Case {
            name: "promotion: no approval within timeouts.promotion compensates",
            phase: AwaitingPromotion,
            spec: |s| s.promotion.mode = PromotionMode::Manual,
            world: no_world,
            now: 3601,
            want_phase: RollingBack,
            want_action: Some(Action::SetReadOnly {
                color: Color::Blue,
                enabled: false,
            }),
            want_message: "No approval within 1h",
        },
        Case {
            name: "promotion: approved",
            phase: AwaitingPromotion,
            spec: |s| {
                s.promotion.mode = PromotionMode::Manual;
                s.promotion.approved = true;
            },
            world: no_world,
            now: 5,
            want_phase: SwitchingTraffic,
            want_action: Some(Action::PinService {
                color: Color::Green,
            }),
            want_message: "Approved",
        },
    ]
}

#[test]
fn table() {
    run(cases());
}

#[test]
fn stale_migration_lock_is_reported_not_waited_on() {
    let s = spec();
    let mut st = status_in(Phase::Migrating);
    let mut w = world_in(Phase::Migrating);
    let g = w.green.as_mut().unwrap();
    g.ready_replicas = 0;
    g.restarts = 3;
    w.migration_doc = Some(Ok(Some(MigrationDoc {
        version: Some(1),
        locked: true,
        raw: r#"{"_id":"Default","Version":1,"IsLocked":true}"#.into(),
    })));

    // First sighting records since=now; not stale yet.
    let d = decide(&s, Some(&st), &w, t(10));
    assert!(!cond::is_true(
        &d.status.conditions,
        cond::MIGRATION_LOCK_STALE
    ));
    st = d.status;
    // A minute later with nothing moving: stale, with the release command, and no failure.
    let d = decide(&s, Some(&st), &w, t(71));
    assert_eq!(d.status.phase, Phase::Migrating);
    let c = cond::get(&d.status.conditions, cond::MIGRATION_LOCK_STALE).unwrap();
    assert_eq!(c.status, "True");
    assert!(
        c.message
            .contains("updateOne({}, {$set: {\"IsLocked\": false}})"),
        "{}",
        c.message
    );
    assert!(c.message.contains("Squidex-up7"));
    assert!(c.message.contains("\"Version\":1"));
    assert!(
        d.events
            .iter()
            .any(|e| e.reason.as_str() == "MigrationLockStale")
    );
    // Until the migration timeout a stale lock waits for a human instead of failing.
    let d2 = decide(&s, Some(&d.status), &w, t(590));
    assert_eq!(d2.status.phase, Phase::Migrating);
    assert!(d2.events.is_empty(), "the warning is emitted once");
    // Past it, the old version is restored (the app is not left read-only), saying why.
    let late = decide(&s, Some(&d2.status), &w, t(601));
    assert_eq!(late.status.phase, Phase::RollingBack);
    let f = late.status.failure.as_ref().unwrap();
    assert_eq!(f.reason, "MigrationTimedOut");
    assert!(
        f.message
            .contains("the migration lock was stale and nobody released it")
            && f.message.contains("updateOne("),
        "{}",
        f.message
    );
    // Released in time: the condition clears and the plan goes on.
    w.migration_doc = Some(Ok(Some(MigrationDoc {
        version: Some(2),
        locked: false,
        raw: "{}".into(),
    })));
    w.green.as_mut().unwrap().ready_replicas = 2;
    let d3 = decide(&s, Some(&d2.status), &w, t(591));
    assert!(!cond::is_true(
        &d3.status.conditions,
        cond::MIGRATION_LOCK_STALE
    ));
    assert_eq!(d3.status.phase, Phase::SwitchingTraffic);
}

#[test]
fn a_live_migrating_pod_is_not_stale() {
    let s = spec();
    let mut w = world_in(Phase::Migrating);
    w.green.as_mut().unwrap().ready_replicas = 0; // still migrating, never crashed
    w.migration_doc = Some(Ok(Some(MigrationDoc {
        version: Some(1),
        locked: true,
        raw: "{}".into(),
    })));
    let d = decide(&s, Some(&status_in(Phase::Migrating)), &w, t(1));
    let d = decide(&s, Some(&d.status), &w, t(200));
    assert!(!cond::is_true(
        &d.status.conditions,
        cond::MIGRATION_LOCK_STALE
    ));
}
