//! Tests of the state machine: a table of phase × observed world, and walks of whole plans
//! against a small simulated world that reacts to each action.

use std::collections::BTreeMap;

use crate::crd::*;

use super::conditions as cond;
use super::*;

mod fixtures;
use fixtures::*;

struct Case {
    name: &'static str,
    phase: Phase,
    spec: fn(&mut UpgradePlanSpec),
    world: fn(&mut Observed),
    now: i64,
    want_phase: Phase,
    want_action: Option<Action>,
    /// A fragment the status message must contain.
    want_message: &'static str,
}

fn no_spec(_: &mut UpgradePlanSpec) {}
fn no_world(_: &mut Observed) {}

fn cases() -> Vec<Case> {
    use Phase::*;
    vec![
        // Pending: validation and preflight before any side effect.
        Case {
            name: "pending: valid plan enters read-only",
            phase: Pending,
            spec: no_spec,
            world: no_world,
            now: 0,
            want_phase: EnteringReadOnly,
            want_action: Some(Action::SetReadOnly {
                color: Color::Blue,
                enabled: true,
            }),
            want_message: "read-only",
        },
        Case {
            name: "pending: invalid spec fails at once",
            phase: Pending,
            spec: |s| s.database.databases.clear(),
            world: no_world,
            now: 0,
            want_phase: Failed,
            want_action: None,
            want_message: "list at least one database",
        },
        Case {
            name: "pending: missing deployment",
            phase: Pending,
            spec: no_spec,
            world: |w| w.blue = None,
            now: 0,
            want_phase: Failed,
            want_action: None,
            want_message: "Deployment \"squidex\" not found",
        },
        Case {
            name: "pending: service selects nothing",
            phase: Pending,
            spec: no_spec,
            world: |w| w.service.as_mut().unwrap().selector.clear(),
            now: 0,
            want_phase: Failed,
            want_action: None,
            want_message: "has no selector",
        },
        Case {
            name: "pending: service selects other pods",
            phase: Pending,
            spec: no_spec,
            world: |w| {
                w.service.as_mut().unwrap().selector = labels(&[("app", "other")]);
            },
            now: 0,
            want_phase: Failed,
            want_action: None,
            want_message: "does not match the pods",
        },
        Case {
            name: "pending: missing service",
            phase: Pending,
            spec: no_spec,
            world: |w| w.service = None,
            now: 0,
            want_phase: Failed,
            want_action: None,
            want_message: "Service \"squidex\" not found",
        },
        Case {
            name: "pending: secret missing",
            phase: Pending,
            spec: no_spec,
            world: |w| w.secret = SecretView::Missing,
            now: 0,
            want_phase: Failed,
            want_action: None,
            want_message: "Secret \"mongo\"",
        },
        Case {
            name: "pending: secret key missing lists keys",
            phase: Pending,
            spec: no_spec,
            world: |w| {
                w.secret = SecretView::KeyMissing {
                    keys: vec!["url".into()],
                }
            },
            now: 0,
            want_phase: Failed,
            want_action: None,
            want_message: "has no key \"uri\" (its keys: url)",
        },
        Case {
            name: "pending: database unreachable",
            phase: Pending,
            spec: no_spec,
            world: |w| w.database = DatabaseView::Unreachable("connection refused".into()),
            now: 0,
            want_phase: Failed,
            want_action: None,
            want_message: "Cannot reach MongoDB",
        },
        Case {
            name: "pending: source database missing",
            phase: Pending,
            spec: no_spec,
            world: |w| {
                if let DatabaseView::Reachable { databases } = &mut w.database {
                    databases.remove("SquidexContent");
                }
            },
            now: 0,
            want_phase: Failed,
            want_action: None,
            want_message: "Source database \"SquidexContent\" does not exist",
        },
        Case {
            name: "pending: clone exists with data",
            phase: Pending,
            spec: no_spec,
            world: |w| {
                if let DatabaseView::Reachable { databases } = &mut w.database {
                    databases.insert(
                        "Squidex-up7".into(),
                        DatabaseInfo {
                            collections: 3,
                            documents: 9,
                        },
                    );
                }
            },
            now: 0,
            want_phase: Failed,
            want_action: None,
            want_message: "already exists with 3 collections",
        },
        Case {
            name: "pending: another plan is active",
            phase: Pending,
            spec: no_spec,
            world: |w| {
                w.conflicts =
                    vec!["UpgradePlan other is already upgrading Deployment squidex".into()]
            },
            now: 0,
            want_phase: Failed,
            want_action: None,
            want_message: "already upgrading",
        },
        Case {
            name: "pending: foreign deployment has the green name",
            phase: Pending,
            spec: no_spec,
            world: |w| {
                let mut g = green_view(1);
                g.owned_by_plan = false;
                w.green = Some(g);
            },
            now: 0,
            want_phase: Failed,
            want_action: None,
            want_message: "does not belong to this plan",
        },
        Case {
            name: "pending: waits for the database probe",
            phase: Pending,
            spec: no_spec,
            world: |w| w.database = DatabaseView::Unknown,
            now: 0,
            want_phase: Pending,
            want_action: None,
            want_message: "Connecting to MongoDB",
        },
        Case {
            name: "pending: rehearsal skips read-only",
            phase: Pending,
            spec: |s| s.mode = Mode::Rehearsal,
            world: no_world,
            now: 0,
            want_phase: BackingUp,
            want_action: Some(Action::CreateBackupJob),
            want_message: "Rehearsal",
        },
        Case {
            name: "pending: suspended stays",
            phase: Pending,
            spec: |s| s.suspend = true,
            world: no_world,
            now: 0,
            want_phase: Pending,
            want_action: None,
            want_message: "Suspended before EnteringReadOnly",
        },
        // EnteringReadOnly
        Case {
            name: "read-only: sets env on blue",
            phase: EnteringReadOnly,
            spec: no_spec,
            world: |w| {
                let b = w.blue.as_mut().unwrap();
                b.read_only_env = false;
                b.tracked = false;
            },
            now: 1,
            want_phase: EnteringReadOnly,
            want_action: Some(Action::SetReadOnly {
                color: Color::Blue,
                enabled: true,
            }),
            want_message: "read-only",
        },
        Case {
            name: "read-only: waits for rollout",
            phase: EnteringReadOnly,
            spec: no_spec,
            world: |w| w.blue.as_mut().unwrap().ready_replicas = 1,
            now: 5,
            want_phase: EnteringReadOnly,
            want_action: None,
            want_message: "1/2 ready",
        },
        Case {
            name: "read-only: rollout timeout compensates",
            phase: EnteringReadOnly,
            spec: no_spec,
            world: |w| w.blue.as_mut().unwrap().ready_replicas = 1,
            now: 601,
            want_phase: RollingBack,
            want_action: Some(Action::SetReadOnly {
                color: Color::Blue,
                enabled: false,
            }),
            want_message: "did not roll out read-only within 10m",
        },
        Case {
            name: "read-only: pins the service to blue",
            phase: EnteringReadOnly,
            spec: no_spec,
            world: |w| {
                w.service
                    .as_mut()
                    .unwrap()
                    .selector
                    .remove(names::TRACK_LABEL);
            },
            now: 5,
            want_phase: EnteringReadOnly,
            want_action: Some(Action::PinService { color: Color::Blue }),
            want_message: "Pinning",
        },
        Case {
            name: "read-only: verify probe pending",
            phase: EnteringReadOnly,
            spec: |s| {
                s.read_only.verify = Some(ReadOnlyVerify {
                    http: Some(HttpWriteProbe {
                        method: HttpMethod::Post,
                        path: "/api/contents".into(),
                        port: 8080,
                        body: None,
                    }),
                })
            },
            world: no_world,
            now: 5,
            want_phase: EnteringReadOnly,
            want_action: None,
            want_message: "Verifying",
        },
        Case {
            name: "read-only: verify probe says writes accepted",
            phase: EnteringReadOnly,
            spec: |s| {
                s.read_only.verify = Some(ReadOnlyVerify {
                    http: Some(HttpWriteProbe {
                        method: HttpMethod::Post,
                        path: "/api/contents".into(),
                        port: 8080,
                        body: None,
                    }),
                })
            },
            world: |w| {
                w.read_only_probe = Some(ProbeView {
                    ok: false,
                    detail: "pod a answered 201".into(),
                })
            },
            now: 5,
            want_phase: RollingBack,
            want_action: Some(Action::SetReadOnly {
                color: Color::Blue,
                enabled: false,
            }),
            want_message: "still accepts writes",
        },
        Case {
            name: "read-only: done, backing up",
            phase: EnteringReadOnly,
            spec: no_spec,
            world: no_world,
            now: 5,
            want_phase: BackingUp,
            want_action: Some(Action::CreateBackupJob),
            want_message: "backing up",
        },
        Case {
            name: "read-only: blue vanished",
            phase: EnteringReadOnly,
            spec: no_spec,
            world: |w| w.blue = None,
            now: 5,
            want_phase: Failed,
            want_action: None,
            want_message: "disappeared",
        },
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
        // Migrating
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
        // SwitchingTraffic
        Case {
            name: "switch: pins green",
            phase: SwitchingTraffic,
            spec: no_spec,
            world: no_world,
            now: 1,
            want_phase: SwitchingTraffic,
            want_action: Some(Action::PinService {
                color: Color::Green,
            }),
            want_message: "Switching",
        },
        Case {
            name: "switch: already on green",
            phase: SwitchingTraffic,
            spec: no_spec,
            world: |w| {
                w.service
                    .as_mut()
                    .unwrap()
                    .selector
                    .insert(names::TRACK_LABEL.into(), "squidex-up7".into());
            },
            now: 1,
            want_phase: LiftingReadOnly,
            want_action: None,
            want_message: "Counting the clones before lifting",
        },
        Case {
            name: "switch: service vanished",
            phase: SwitchingTraffic,
            spec: no_spec,
            world: |w| w.service = None,
            now: 1,
            want_phase: RollingBack,
            want_action: Some(Action::SetReadOnly {
                color: Color::Blue,
                enabled: false,
            }),
            want_message: "disappeared",
        },
        // LiftingReadOnly
        Case {
            name: "lift: removes env from green",
            phase: LiftingReadOnly,
            spec: no_spec,
            world: no_world,
            now: 1,
            want_phase: LiftingReadOnly,
            want_action: Some(Action::SetReadOnly {
                color: Color::Green,
                enabled: false,
            }),
            want_message: "Lifting",
        },
        Case {
            name: "lift: rolled out",
            phase: LiftingReadOnly,
            spec: no_spec,
            world: |w| w.green.as_mut().unwrap().read_only_env = false,
            now: 3,
            want_phase: CleaningUp,
            want_action: Some(Action::ReleaseGreen),
            want_message: "read-write",
        },
        // CleaningUp
        Case {
            name: "cleanup: releases green",
            phase: CleaningUp,
            spec: no_spec,
            world: no_world,
            now: 1,
            want_phase: CleaningUp,
            want_action: Some(Action::ReleaseGreen),
            want_message: "no longer owns",
        },
        Case {
            name: "cleanup: green handed over, the plan succeeds and scales blue down at once",
            phase: CleaningUp,
            spec: no_spec,
            world: |w| w.green.as_mut().unwrap().owned_by_plan = false,
            now: 1,
            want_phase: Succeeded,
            want_action: Some(Action::Scale {
                color: Color::Blue,
                replicas: 0,
            }),
            want_message: "Scaling the old version",
        },
        Case {
            name: "cleanup: succeeds while blue keeps running for a quick rollback",
            phase: CleaningUp,
            spec: |s| s.cleanup.scale_down_blue_after = dur("5m"),
            world: |w| w.green.as_mut().unwrap().owned_by_plan = false,
            now: 1,
            want_phase: Succeeded,
            want_action: None,
            want_message: "keeps running until",
        },
        Case {
            name: "succeeded: scales blue down when due",
            phase: Succeeded,
            spec: |s| s.cleanup.scale_down_blue_after = dur("1m"),
            world: no_world,
            now: 60,
            want_phase: Succeeded,
            want_action: Some(Action::Scale {
                color: Color::Blue,
                replicas: 0,
            }),
            want_message: "Scaling",
        },
        Case {
            name: "succeeded: cleanup finished",
            phase: Succeeded,
            spec: no_spec,
            world: |w| w.blue.as_mut().unwrap().replicas = 0,
            now: 1,
            want_phase: Succeeded,
            want_action: None,
            want_message: "cleanup finished",
        },
        // Rollback requests
        Case {
            name: "rollback requested before lift",
            phase: Migrating,
            spec: |s| s.traffic = Color::Blue,
            world: no_world,
            now: 1,
            want_phase: RollingBack,
            want_action: None,
            want_message: "as requested",
        },
        Case {
            name: "rollback refused after lift",
            phase: CleaningUp,
            spec: |s| s.traffic = Color::Blue,
            // Counted from the lift, not from the restore: the 1000 documents the migration
            // copied are not writes a rollback would lose.
            world: |w| {
                w.clone_counts = Some(Ok({
                    let mut c = migrated_clone_counts();
                    c.insert("SquidexContent-up7.States_Contents_All2".into(), 1007);
                    c
                }))
            },
            now: 1,
            want_phase: CleaningUp,
            want_action: None,
            want_message: "(7 documents added since read-only was lifted)",
        },
        Case {
            name: "rollback after lift with acceptDataLoss",
            phase: CleaningUp,
            spec: |s| {
                s.traffic = Color::Blue;
                s.rollback.accept_data_loss = true;
            },
            world: no_world,
            now: 1,
            want_phase: RollingBack,
            want_action: None,
            want_message: "as requested",
        },
        Case {
            name: "rollback requested while pending: nothing to undo",
            phase: Pending,
            spec: |s| s.traffic = Color::Blue,
            world: no_world,
            now: 0,
            want_phase: RolledBack,
            want_action: None,
            want_message: "nothing to undo",
        },
        // Deletion
        Case {
            name: "deleted mid-way compensates",
            phase: BackingUp,
            spec: no_spec,
            world: |w| w.plan.deleting = true,
            now: 1,
            want_phase: RollingBack,
            want_action: None,
            want_message: "deleted",
        },
        Case {
            name: "deleted while pending fails without side effects",
            phase: Pending,
            spec: no_spec,
            world: |w| w.plan.deleting = true,
            now: 0,
            want_phase: Failed,
            want_action: None,
            want_message: "deleted",
        },
        // Terminal phases stay put.
        Case {
            name: "succeeded stays",
            phase: Succeeded,
            spec: no_spec,
            world: |w| w.blue.as_mut().unwrap().replicas = 0,
            now: 1,
            want_phase: Succeeded,
            want_action: None,
            want_message: "",
        },
        Case {
            name: "failed stays",
            phase: Failed,
            spec: no_spec,
            world: no_world,
            now: 1,
            want_phase: Failed,
            want_action: None,
            want_message: "",
        },
        Case {
            name: "rolled back stays",
            phase: RolledBack,
            spec: |s| s.traffic = Color::Blue,
            world: no_world,
            now: 1,
            want_phase: RolledBack,
            want_action: None,
            want_message: "",
        },
        Case {
            name: "rehearsed stays",
            phase: Rehearsed,
            spec: |s| s.mode = Mode::Rehearsal,
            world: no_world,
            now: 1,
            want_phase: Rehearsed,
            want_action: None,
            want_message: "",
        },
    ]
}

#[test]
fn every_phase_and_world_in_the_table() {
    let mut covered = std::collections::HashSet::new();
    for c in cases() {
        let mut s = spec();
        (c.spec)(&mut s);
        let mut w = world_in(c.phase);
        (c.world)(&mut w);
        let st = status_in(c.phase);
        let d = decide(&s, Some(&st), &w, t(c.now));
        assert_eq!(
            d.status.phase, c.want_phase,
            "{}: phase (message: {})",
            c.name, d.status.message
        );
        assert_eq!(d.action, c.want_action, "{}: action", c.name);
        // Phases chain within one reconcile: what a transition said is in the records it
        // wrote, a failure's cause in status.failure, and the message says what is done next.
        let entered: Vec<&str> = d
            .status
            .phases
            .iter()
            .filter(|r| r.started_at == t(c.now) || r.finished_at == Some(t(c.now)))
            .map(|r| r.detail.as_str())
            .collect();
        let said = format!(
            "{} {} {}",
            d.status.message,
            d.status.failure.as_ref().map_or("", |f| f.message.as_str()),
            entered.join(" ")
        );
        assert!(
            said.contains(c.want_message),
            "{}: message {:?} lacks {:?}",
            c.name,
            said,
            c.want_message
        );
        covered.insert(c.phase);
        covered.insert(c.want_phase);
    }
    for p in Phase::ALL {
        assert!(covered.contains(&p), "no table row covers {p}");
    }
}

#[test]
fn failures_before_any_side_effect_end_failed_with_condition_and_event() {
    let mut w = world();
    w.secret = SecretView::Missing;
    let d = decide(&spec(), None, &w, t(0));
    assert_eq!(d.status.phase, Phase::Failed);
    assert_eq!(d.action, None);
    let ready = cond::get(&d.status.conditions, cond::READY).unwrap();
    assert_eq!(ready.status, "False");
    assert_eq!(ready.reason, "PreflightFailed");
    assert!(cond::is_true(&d.status.conditions, cond::DEGRADED));
    assert!(
        d.events
            .iter()
            .any(|e| e.kind == EventKind::Warning && e.reason == "PreflightFailed")
    );
    assert_eq!(d.status.failure.as_ref().unwrap().phase, Phase::Pending);
}

#[test]
fn a_fixed_plan_is_checked_again() {
    let mut w = world();
    w.secret = SecretView::Missing;
    let failed = decide(&spec(), None, &w, t(0)).status;
    assert_eq!(failed.phase, Phase::Failed);
    // Same generation: stays failed.
    let again = decide(&spec(), Some(&failed), &world(), t(1));
    assert_eq!(again.status.phase, Phase::Failed);
    // The user fixed something (new generation): re-checked, and now it starts.
    let mut w2 = world();
    w2.plan.generation = Some(2);
    let d = decide(&spec(), Some(&failed), &w2, t(2));
    assert_eq!(d.status.phase, Phase::EnteringReadOnly);
    assert!(d.status.failure.is_none());
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
    assert!(d.events.iter().any(|e| e.reason == "MigrationLockStale"));
    // Even past the migration timeout a stale lock waits for a human instead of failing.
    let d2 = decide(&s, Some(&d.status), &w, t(1000));
    assert_eq!(d2.status.phase, Phase::Migrating);
    assert!(d2.events.is_empty(), "the warning is emitted once");
    // Released: the condition clears and the plan goes on.
    w.migration_doc = Some(Ok(Some(MigrationDoc {
        version: Some(2),
        locked: false,
        raw: "{}".into(),
    })));
    w.green.as_mut().unwrap().ready_replicas = 2;
    let d3 = decide(&s, Some(&d2.status), &w, t(1001));
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

#[test]
fn lifting_read_only_records_the_clone_counts_the_data_diverged_check_starts_from() {
    let st = status_in(Phase::LiftingReadOnly);
    let mut w = world_in(Phase::LiftingReadOnly);
    w.clone_counts = Some(Ok(migrated_clone_counts()));
    let d = decide(&spec(), Some(&st), &w, t(1));
    assert_eq!(
        d.action,
        Some(Action::SetReadOnly {
            color: Color::Green,
            enabled: false
        })
    );
    assert_eq!(d.status.read_only_lifted_at, Some(t(1)));
    let clone = d.status.clone.clone().unwrap();
    assert_eq!(clone.collections_at_lift, migrated_clone_counts());

    // Recorded once, in the same status write as the lift: later counts do not move it.
    w.clone_counts = Some(Ok(BTreeMap::new()));
    let d2 = decide(&spec(), Some(&d.status), &w, t(2));
    assert_eq!(
        d2.status.clone.unwrap().collections_at_lift,
        migrated_clone_counts()
    );

    // Without counts (MongoDB unreachable at that moment) the lift is not held up; a refused
    // rollback then says when read-only was lifted but not how many documents were added.
    let mut w3 = world_in(Phase::LiftingReadOnly);
    w3.clone_counts = Some(Err("connection refused".into()));
    let d3 = decide(&spec(), Some(&st), &w3, t(1));
    assert!(
        d3.status
            .clone
            .as_ref()
            .unwrap()
            .collections_at_lift
            .is_empty()
    );
    assert!(d3.action.is_some());
    let mut s = spec();
    s.traffic = Color::Blue;
    let mut cleaning = d3.status.clone();
    cleaning.phase = Phase::CleaningUp;
    let mut w4 = world_in(Phase::CleaningUp);
    w4.clone_counts = Some(Ok(migrated_clone_counts()));
    let d4 = decide(&s, Some(&cleaning), &w4, t(5));
    assert!(
        d4.status
            .message
            .contains("exist only in the clones and would be lost")
    );
}

#[test]
fn data_diverged_condition_says_how_to_proceed_and_clears() {
    let mut s = spec();
    s.traffic = Color::Blue;
    let st = status_in(Phase::CleaningUp);
    let d = decide(&s, Some(&st), &world_in(Phase::CleaningUp), t(1));
    let c = cond::get(&d.status.conditions, cond::DATA_DIVERGED).unwrap();
    assert_eq!(c.status, "True");
    assert!(c.message.contains("acceptDataLoss"));
    assert_eq!(
        d.action, None,
        "nothing moves while the rollback is refused"
    );
    s.traffic = Color::Green;
    let d2 = decide(&s, Some(&d.status), &world_in(Phase::CleaningUp), t(2));
    assert_eq!(
        cond::get(&d2.status.conditions, cond::DATA_DIVERGED)
            .unwrap()
            .status,
        "False"
    );
}

#[test]
fn decide_is_deterministic() {
    let w = world();
    assert_eq!(
        decide(&spec(), None, &w, t(0)),
        decide(&spec(), None, &w, t(0))
    );
}

#[test]
fn an_upgrade_carries_the_latest_rehearsals_prediction() {
    let mut w = world();
    w.rehearsal = Some(Prediction {
        read_only_seconds: 6.2,
        rehearsal: "practice".into(),
        at: t(-3600),
    });
    let d = decide(&spec(), None, &w, t(0));
    assert_eq!(d.status.phase, Phase::EnteringReadOnly);
    assert_eq!(
        d.status.prediction.as_ref().map(|p| p.rehearsal.as_str()),
        Some("practice")
    );
}

#[test]
fn many_conflicting_plans_are_counted_not_listed() {
    let mut w = world();
    w.conflicts = (0..10)
        .map(|i| format!("UpgradePlan other-{i} is already upgrading Deployment \"squidex\""))
        .collect();
    let d = decide(&spec(), None, &w, t(0));
    assert_eq!(d.status.phase, Phase::Failed);
    let msg = &d.status.message;
    assert!(msg.contains("other-2") && !msg.contains("other-3"), "{msg}");
    assert!(msg.contains("and 7 more active plan(s)"), "{msg}");
}

mod cleanup;
mod server_copy;
mod walks;
