//! The reading plan, one row per phase and situation: what a reconcile looks at, and what it
//! leaves alone.

use crate::crd::*;
use crate::plan::targets::tests::spec;
use crate::plan::{
    CopyState, CopyView, DeploymentView, JobState, JobView, Observed, PlanMeta, targets,
};

use super::*;

const PLAN: &str = "up7";

/// The reads of a plan in `status`, one short word per read that is on; database lists are
/// shown as `sources`/`clones`.
fn summary(spec: &UpgradePlanSpec, status: &UpgradePlanStatus, deleting: bool) -> Vec<String> {
    let t = targets(spec, PLAN, Some(status));
    let meta = PlanMeta {
        name: PLAN.into(),
        namespace: "ns".into(),
        uid: "uid-up7".into(),
        generation: Some(1),
        deleting,
        ignored_changes: Vec::new(),
        failing: None,
        deleted_at: None,
    };
    let r = needs(spec, Some(status), &meta, &t);
    assert_eq!(
        (r.blue.as_str(), r.green.as_str(), r.service.as_str()),
        ("squidex", "squidex-up7", "squidex-svc"),
        "the Deployments and the Service are always read"
    );
    let dbs = |d: &[String]| {
        if d == [t.sources(), t.clones()].concat() {
            "sources+clones".to_string()
        } else if d == t.sources() {
            "sources".to_string()
        } else if d == t.clones() {
            "clones".to_string()
        } else {
            d.join(",")
        }
    };
    let count = |c: &Count| format!("{}@{:?}", dbs(&c.databases), c.when);
    let mut out = Vec::new();
    let mut on = |word: &str, value: Option<String>| {
        if let Some(v) = value {
            out.push(if v.is_empty() {
                word.to_string()
            } else {
                format!("{word}:{v}")
            });
        }
    };
    on("jobs", r.jobs.as_ref().map(|_| String::new()));
    on("workloads", r.workloads.then(String::new));
    on("copy", r.server_copy.then(String::new));
    on("sync", r.sync.then(String::new));
    on(
        "sync_compare",
        r.sync_compare
            .as_ref()
            .map(|p| format!("{} pairs", p.len())),
    );
    on("others", r.other_plans.then(String::new));
    on("databases", r.databases.as_deref().map(dbs));
    on("source_counts", r.source_counts.as_ref().map(count));
    on("clone_counts", r.clone_counts.as_ref().map(count));
    on("source_shape", r.source_shape.as_ref().map(count));
    on("clone_shape", r.clone_shape.as_ref().map(count));
    on("clone_documents", r.clone_documents.as_ref().map(count));
    on("clone_collections", r.clone_collections.as_deref().map(dbs));
    on(
        "migration_doc",
        r.migration_doc.as_ref().map(|d| d.database.clone()),
    );
    on(
        "source_migration_doc",
        r.source_migration_doc.as_ref().map(|d| d.database.clone()),
    );
    on(
        "green_pods",
        r.green_pods.as_ref().map(|g| {
            format!(
                "{}{}",
                g.deployment,
                if g.health.is_some() { "+health" } else { "" }
            )
        }),
    );
    on(
        "read_only_probe",
        r.read_only_probe.as_ref().map(|p| p.deployment.clone()),
    );
    on("claims", r.claims.as_ref().map(|_| String::new()));
    on(
        "backup_compare",
        r.backup_compare
            .as_ref()
            .map(|p| format!("{} pairs", p.len())),
    );
    assert_eq!(
        r.mongo(),
        out.iter().any(|w| {
            [
                "databases",
                "source_counts",
                "clone_counts",
                "source_shape",
                "clone_shape",
                "clone_documents",
                "clone_collections",
                "sync_compare",
                "migration_doc",
                "source_migration_doc",
                "claims",
                "backup_compare",
            ]
            .iter()
            .any(|m| w.starts_with(m))
        })
    );
    out
}

fn recorded(phase: Phase) -> UpgradePlanStatus {
    UpgradePlanStatus {
        phase,
        green_deployment: Some("squidex-up7".into()),
        clone: Some(CloneStatus {
            databases: [
                ("Squidex".to_string(), "Squidex-up7".to_string()),
                ("SquidexContent".to_string(), "content-next".to_string()),
            ]
            .into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The plan took claims (the `Claimed` condition is true).
fn claimed(mut st: UpgradePlanStatus) -> UpgradePlanStatus {
    crate::plan::conditions::set(
        &mut st.conditions,
        crate::plan::conditions::CLAIMED,
        true,
        "ClaimsHeld",
        "held",
        Some(1),
        Timestamp::from_millis(0),
    );
    st
}

fn lifted(mut st: UpgradePlanStatus) -> UpgradePlanStatus {
    st.read_only_lifted_at = Some(Timestamp::from_millis(1_800_000_000_000));
    st
}

fn cleanup_done(mut st: UpgradePlanStatus, done: &[CleanupStepName]) -> UpgradePlanStatus {
    st.cleanup = Some(CleanupStatus {
        steps: done
            .iter()
            .map(|n| CleanupStep {
                name: *n,
                state: CleanupState::Done,
                due: None,
                done_at: None,
                message: String::new(),
            })
            .collect(),
        ..Default::default()
    });
    st
}

fn with(f: impl FnOnce(&mut UpgradePlanSpec)) -> UpgradePlanSpec {
    let mut s = spec();
    f(&mut s);
    s
}

#[test]
fn reads_by_phase_and_situation() {
    use CleanupStepName::*;
    let server_side = || with(|s| s.backup.clone_method = CloneMethod::ServerSide);
    let rehearsal = || with(|s| s.mode = Mode::Rehearsal);
    let online = || with(|s| s.backup.clone_method = CloneMethod::Online);
    let bare = || {
        with(|s| {
            s.backup.keep_last = 0;
            s.cleanup = CleanupSpec::default();
            s.migration.mongo_document = None;
            s.migration.http_get = None;
            s.read_only.verify = None;
        })
    };
    let cleaned = [
        PruneBackups,
        DropSourceDatabases,
        DeleteBlue,
        DropObsoleteCollections,
    ];
    #[rustfmt::skip]
    let rows: Vec<(&str, UpgradePlanSpec, UpgradePlanStatus, bool, &[&str])> = vec![
        ("a new plan checks its databases and the other plans", spec(),
            UpgradePlanStatus::default(), false,
            &["jobs", "others", "databases:sources+clones", "claims"]),
        ("pending, names recorded", spec(), recorded(Phase::Pending), false,
            &["jobs", "others", "databases:sources+clones", "claims"]),
        ("syncing follows the online sync, nothing else of MongoDB", online(),
            recorded(Phase::Syncing), false, &["jobs", "sync"]),
        ("a deleted plan in Syncing lets go of its sync", online(),
            recorded(Phase::Syncing), true, &["jobs", "claims"]),
        ("entering read-only keeps the online sync running", online(),
            recorded(Phase::EnteringReadOnly), false,
            &["jobs", "sync", "source_migration_doc:Squidex", "read_only_probe:squidex"]),
        ("cloning online: the drain, then counts and the comparison", online(),
            recorded(Phase::Cloning), false,
            &["jobs", "sync", "sync_compare:2 pairs", "clone_counts:clones@CloneDone", "source_shape:sources@CloneDone", "clone_shape:clones@CloneDone"]),
        ("rolling back lets go of the online sync, watches the source's migration lock", online(),
            recorded(Phase::RollingBack), false, &["jobs", "source_migration_doc:Squidex"]),
        ("rolling back online after the lift counts the dump the old version waits for", online(),
            lifted(recorded(Phase::RollingBack)), false,
            &["jobs", "databases:Squidex-verify-up7,SquidexContent-verify-up7",
                "source_counts:sources@BackupSucceeded", "source_shape:sources@BackupSucceeded",
                "source_migration_doc:Squidex"]),
        ("verifying the backup after the switch: dump, restore, scratch databases, comparison",
            online(), recorded(Phase::VerifyingBackup), false,
            &["jobs", "databases:Squidex-verify-up7,SquidexContent-verify-up7",
                "source_counts:sources@BackupSucceeded", "source_shape:sources@BackupSucceeded",
                "backup_compare:2 pairs"]),
        ("a deleted plan verifying its backup reads only its Jobs and claims", online(),
            recorded(Phase::VerifyingBackup), true, &["jobs", "claims"]),
        ("past the drain the sync is let go", online(),
            recorded(Phase::DeployingGreen), false, &["jobs"]),
        ("entering read-only probes the old version once it rolled out", spec(),
            recorded(Phase::EnteringReadOnly), false,
            &["jobs", "source_migration_doc:Squidex", "read_only_probe:squidex"]),
        ("entering read-only without a write probe", bare(),
            recorded(Phase::EnteringReadOnly), false, &["jobs"]),
        ("backing up counts the sources once the backup succeeded", spec(),
            recorded(Phase::BackingUp), false,
            &["jobs", "source_counts:sources@BackupSucceeded",
                "source_shape:sources@BackupSucceeded"]),
        ("backing up beside a server-side copy", server_side(),
            recorded(Phase::BackingUp), false,
            &["jobs", "copy", "source_counts:sources@BackupSucceeded",
                "source_shape:sources@BackupSucceeded"]),
        ("cloning by restore: progress while running, counts once done", spec(),
            recorded(Phase::Cloning), false,
            &["jobs", "clone_counts:clones@CloneDone", "source_shape:sources@CloneDone",
                "clone_shape:clones@CloneDone", "clone_documents:clones@CloneRunning"]),
        ("cloning server-side", server_side(), recorded(Phase::Cloning), false,
            &["jobs", "copy", "clone_counts:clones@CloneDone", "source_shape:sources@CloneDone",
                "clone_shape:clones@CloneDone"]),
        ("a deleted plan lets go of its copy, and reads its claims", server_side(),
            recorded(Phase::Cloning), true, &["jobs", "clone_counts:clones@CloneDone", "source_shape:sources@CloneDone",
                "clone_shape:clones@CloneDone", "claims"]),
        ("deploying", spec(), recorded(Phase::DeployingGreen), false, &["jobs"]),
        ("migrating reads the document, the pods and the health gate", spec(),
            recorded(Phase::Migrating), false,
            &["jobs", "migration_doc:Squidex-up7", "green_pods:squidex-up7+health"]),
        ("migrating without gates still counts pods", bare(), recorded(Phase::Migrating), false,
            &["jobs", "green_pods:squidex-up7"]),
        ("awaiting promotion", spec(), recorded(Phase::AwaitingPromotion), false, &["jobs"]),
        ("switching", spec(), recorded(Phase::SwitchingTraffic), false, &["jobs"]),
        ("the clones are counted just before read-only is lifted", spec(),
            recorded(Phase::LiftingReadOnly), false,
            &["jobs", "clone_counts:clones@Always"]),
        ("and not again once it was lifted", spec(),
            lifted(recorded(Phase::LiftingReadOnly)), false, &["jobs"]),
        ("traffic back on the old version after the lift: watch the clones diverge",
            with(|s| s.traffic = Color::Blue), lifted(recorded(Phase::RollingBack)), false,
            &["jobs", "clone_counts:clones@Always", "source_migration_doc:Squidex"]),
        ("even once rolled back", with(|s| s.traffic = Color::Blue),
            lifted(recorded(Phase::RolledBack)), false, &["clone_counts:clones@Always"]),
        ("cleaning up an upgrade", spec(), recorded(Phase::CleaningUp), false, &["jobs"]),
        ("tearing a rehearsal down checks what is left", rehearsal(),
            recorded(Phase::CleaningUp), false, &["jobs", "databases:sources+clones"]),
        ("rolling back watches the source's migration lock (the old version restarts)", spec(),
            recorded(Phase::RollingBack), false, &["jobs", "source_migration_doc:Squidex"]),
        ("succeeded with every cleanup step open", spec(), recorded(Phase::Succeeded), false,
            &["jobs", "workloads", "databases:sources", "clone_collections:clones"]),
        ("succeeded, only pruning left", spec(),
            cleanup_done(recorded(Phase::Succeeded), &[DropSourceDatabases, DeleteBlue, DropObsoleteCollections]),
            false, &["jobs"]),
        ("succeeded, only deleting the old version left", spec(),
            cleanup_done(recorded(Phase::Succeeded), &[PruneBackups, DropSourceDatabases, DropObsoleteCollections]),
            false, &["workloads"]),
        ("succeeded, only dropping the sources left", spec(),
            cleanup_done(recorded(Phase::Succeeded), &[PruneBackups, DeleteBlue, DropObsoleteCollections]),
            false, &["workloads", "databases:sources"]),
        ("succeeded, only obsolete collections left", spec(),
            cleanup_done(recorded(Phase::Succeeded), &[PruneBackups, DropSourceDatabases, DeleteBlue]),
            false, &["clone_collections:clones"]),
        ("succeeded and cleaned up", spec(), cleanup_done(recorded(Phase::Succeeded), &cleaned),
            false, &[]),
        ("succeeded with no cleanup asked for", bare(), recorded(Phase::Succeeded), false, &[]),
        ("a deleted succeeded plan cleans nothing but still sees its Jobs", spec(),
            recorded(Phase::Succeeded), true, &["jobs", "claims"]),
        ("a rehearsal does not clean up after itself this way", rehearsal(),
            recorded(Phase::Succeeded), false, &[]),
        ("rehearsed", spec(), recorded(Phase::Rehearsed), false, &[]),
        ("rolled back", spec(), recorded(Phase::RolledBack), false, &[]),
        ("failed", spec(), recorded(Phase::Failed), false, &[]),
        ("a deleted failed plan looks at its Jobs and claims", spec(), recorded(Phase::Failed),
            true, &["jobs", "claims"]),
        ("a plan that may hold claims reads them until they are given back", spec(),
            claimed(recorded(Phase::RollingBack)), false,
            &["jobs", "source_migration_doc:Squidex", "claims"]),
        ("even once it ended", bare(), claimed(recorded(Phase::Succeeded)), false, &["claims"]),
    ];
    for phase in Phase::ALL {
        // A phase added later gets its reads written down here.
        assert!(
            rows.iter().any(|r| r.2.phase == phase),
            "no row for {phase}"
        );
    }
    let mut failures = Vec::new();
    for (what, spec, status, deleting, want) in rows {
        let got = summary(&spec, &status, deleting);
        if got != want {
            failures.push(format!("{what}:\n   want {want:?}\n    got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_details_of_each_read() {
    let spec = spec();
    let t = targets(&spec, PLAN, None);
    let meta = PlanMeta::default();
    let migrating = needs(&spec, Some(&recorded(Phase::Migrating)), &meta, &t);
    assert_eq!(
        migrating.migration_doc,
        Some(DocumentRead {
            database: "Squidex-up7".into(),
            collection: "Migration".into(),
            filter: Default::default(),
            version_field: "Version".into(),
            lock_field: "IsLocked".into(),
        })
    );
    assert_eq!(
        migrating.green_pods.and_then(|g| g.health),
        Some(Probe {
            deployment: "squidex-up7".into(),
            port: 8080,
            method: "GET",
            path: "/healthz".into(),
            body: None,
            accept: Accept::Status(204),
            when: When::GreenReady,
        })
    );
    let pending = needs(&spec, None, &meta, &t);
    assert_eq!(
        pending.databases,
        Some(
            ["Squidex", "SquidexContent", "Squidex-up7", "content-next"]
                .map(String::from)
                .to_vec()
        )
    );
    // Claims on every source, clone and the Deployment, and on whatever the plan holds.
    let meta = PlanMeta {
        namespace: "ns".into(),
        uid: "uid-up7".into(),
        ..PlanMeta::default()
    };
    assert_eq!(
        needs(&spec, None, &meta, &t).claims,
        Some(crate::plan::needs::ClaimRead {
            ids: [
                "db:Squidex",
                "db:SquidexContent",
                "db:Squidex-up7",
                "db:content-next",
                "deployment:ns/squidex",
            ]
            .map(String::from)
            .to_vec(),
            uid: "uid-up7".into(),
        })
    );
    let entering = needs(&spec, Some(&recorded(Phase::EnteringReadOnly)), &meta, &t);
    assert_eq!(
        entering.read_only_probe,
        Some(Probe {
            deployment: "squidex".into(),
            port: 8080,
            method: "PUT",
            path: "/api/ping".into(),
            body: Some("{}".into()),
            accept: Accept::Refusal,
            when: When::BlueRolledOut,
        })
    );
    assert_eq!(
        entering.jobs,
        Some(JobNames {
            plan: "up7".into(),
            backup: "up7-backup".into(),
            clone: "up7-clone".into(),
            migration: "up7-migrate".into(),
            prune: "up7-prune".into(),
            verify: String::new(),
        })
    );
}

#[test]
fn a_gate_on_a_database_outside_the_plan_reads_that_database() {
    let spec = with(|s| {
        s.migration.mongo_document.as_mut().unwrap().database = "Elsewhere".into();
    });
    let t = targets(&spec, PLAN, None);
    let r = needs(
        &spec,
        Some(&recorded(Phase::Migrating)),
        &PlanMeta::default(),
        &t,
    );
    assert_eq!(r.migration_doc.unwrap().database, "Elsewhere");
}

#[test]
fn write_methods_are_sent_as_spelled_in_the_spec() {
    for m in [
        HttpMethod::Post,
        HttpMethod::Put,
        HttpMethod::Patch,
        HttpMethod::Delete,
    ] {
        assert_eq!(serde_json::to_value(m).unwrap(), method(m));
    }
}

#[test]
fn accepted_answers() {
    let rows = [
        (Accept::Status(204), 204, true),
        (Accept::Status(204), 200, false),
        (Accept::Refusal, 200, false),
        (Accept::Refusal, 299, false),
        (Accept::Refusal, 300, true),
        (Accept::Refusal, 403, true),
        (Accept::Refusal, 503, true),
    ];
    for (accept, code, want) in rows {
        assert_eq!(accept.accepts(code), want, "{accept:?} {code}");
    }
}

#[test]
fn reads_that_wait_on_what_was_read_first() {
    let job = |state| {
        Some(JobView {
            name: "j".into(),
            state,
            message: String::new(),
            disruption: None,
        })
    };
    let deployment = |ready: i32, rolled_out: bool| DeploymentView {
        name: "d".into(),
        uid: None,
        base_names: None,
        replicas: 2,
        generation: 2,
        observed_generation: if rolled_out { 2 } else { 1 },
        current_replicas: 2,
        updated_replicas: 2,
        ready_replicas: ready,
        container: Ok("app".into()),
        read_only_env: false,
        tracked: false,
        image: String::new(),
        pod_labels: Default::default(),
        running_pods: 0,
        restarts: 0,
        owned_by_plan: false,
        env: Vec::new(),
    };
    let copy = |state| {
        Some(CopyView {
            state,
            ..Default::default()
        })
    };
    let nothing = Observed::default();
    #[rustfmt::skip]
    let rows: Vec<(When, Observed, bool)> = vec![
        (When::Always, nothing.clone(), true),
        (When::BackupSucceeded, nothing.clone(), false),
        (When::BackupSucceeded, Observed { backup_job: job(JobState::Active), ..Default::default() }, false),
        (When::BackupSucceeded, Observed { backup_job: job(JobState::Failed), ..Default::default() }, false),
        (When::BackupSucceeded, Observed { backup_job: job(JobState::Succeeded), ..Default::default() }, true),
        (When::BackupSucceeded, Observed { clone_job: job(JobState::Succeeded), ..Default::default() }, false),
        (When::CloneDone, nothing.clone(), false),
        (When::CloneDone, Observed { clone_job: job(JobState::Succeeded), ..Default::default() }, true),
        (When::CloneDone, Observed { clone_job: job(JobState::Failed), ..Default::default() }, false),
        (When::CloneDone, Observed { server_copy: copy(CopyState::Succeeded), ..Default::default() }, true),
        (When::CloneDone, Observed { server_copy: copy(CopyState::Running), ..Default::default() }, false),
        (When::CloneRunning, Observed { clone_job: job(JobState::Active), ..Default::default() }, true),
        (When::CloneRunning, Observed { clone_job: job(JobState::Succeeded), ..Default::default() }, false),
        (When::CloneRunning, nothing.clone(), false),
        (When::GreenReady, nothing.clone(), false),
        (When::GreenReady, Observed { green: Some(deployment(0, true)), ..Default::default() }, false),
        (When::GreenReady, Observed { green: Some(deployment(1, false)), ..Default::default() }, true),
        (When::BlueRolledOut, nothing.clone(), false),
        (When::BlueRolledOut, Observed { blue: Some(deployment(2, false)), ..Default::default() }, false),
        (When::BlueRolledOut, Observed { blue: Some(deployment(1, true)), ..Default::default() }, false),
        (When::BlueRolledOut, Observed { blue: Some(deployment(2, true)), ..Default::default() }, true),
    ];
    for (i, (when, obs, want)) in rows.into_iter().enumerate() {
        assert_eq!(when.holds(&obs), want, "row {i}: {when:?}");
    }
}

#[test]
fn owners_are_checked_before_the_plan_creates_under_a_name() {
    let with_credentials = || {
        with(|s| {
            s.migration.job = Some(JobGate {
                command: vec!["migrate".into()],
                args: vec![],
                credentials_secret: Some(CredentialsRef {
                    name: "migrator".into(),
                    key: "uri".into(),
                    env: "STORE__URI".into(),
                }),
            })
        })
    };
    let rehearsal = || with(|s| s.mode = Mode::Rehearsal);
    #[rustfmt::skip]
    let rows: Vec<(&str, UpgradePlanSpec, UpgradePlanStatus, bool, &[&str])> = vec![
        ("pending: every Secret the plan will create", spec(), recorded(Phase::Pending), false,
            &["Secret up7-mongo-tools", "Secret squidex-up7-env"]),
        ("pending, a rehearsal: and its preview Service", rehearsal(), recorded(Phase::Pending), false,
            &["Secret up7-mongo-tools", "Secret squidex-up7-env", "Service squidex-up7-preview"]),
        ("pending, a migration Job with credentials: and their Secret", with_credentials(),
            recorded(Phase::Pending), false,
            &["Secret up7-mongo-tools", "Secret squidex-up7-env", "Secret up7-migrate-env"]),
        ("backing up writes the tools' Secret", spec(), recorded(Phase::BackingUp), false,
            &["Secret up7-mongo-tools"]),
        ("so does cloning", spec(), recorded(Phase::Cloning), false, &["Secret up7-mongo-tools"]),
        ("deploying writes the new version's Secret", rehearsal(),
            recorded(Phase::DeployingGreen), false,
            &["Secret squidex-up7-env", "Service squidex-up7-preview"]),
        ("migrating writes the migration user's", with_credentials(),
            recorded(Phase::Migrating), false, &["Secret up7-migrate-env"]),
        ("nothing else is created afterwards", spec(), recorded(Phase::SwitchingTraffic), false, &[]),
        ("a plan being deleted creates nothing", spec(), recorded(Phase::Pending), true, &[]),
    ];
    for (what, spec, status, deleting, want) in rows {
        let t = targets(&spec, PLAN, Some(&status));
        let meta = PlanMeta {
            name: PLAN.into(),
            generation: Some(1),
            deleting,
            ..Default::default()
        };
        let got: Vec<String> = needs(&spec, Some(&status), &meta, &t)
            .owned
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        assert_eq!(got, want.to_vec(), "{what}");
    }
}
