//! What the tests share: the Squidex plan, worlds and statuses as they typically are in each
//! phase, and a small simulated cluster that carries out actions, for walks of whole plans.

use super::*;

pub(super) const PLAN: &str = "up7";
pub(super) const NS: &str = "ns";
pub(super) const UID: &str = "uid-up7";

/// Every claim the plan wants, held by the plan with uid `uid`.
pub(super) fn held_claims(spec: &UpgradePlanSpec, uid: &str) -> Vec<crate::plan::claims::Claim> {
    use crate::plan::claims;
    claims::wanted(&targets(spec, PLAN, None), NS)
        .into_iter()
        .map(|w| claims::Claim {
            id: w.id,
            role: w.role,
            holder: claims::Holder {
                namespace: NS.into(),
                plan: if uid == UID {
                    PLAN.into()
                } else {
                    "other".into()
                },
                uid: uid.into(),
            },
        })
        .collect()
}

/// The shared Squidex plan, as it is: two databases, the migration document, defaults.
pub(super) fn spec() -> UpgradePlanSpec {
    crate::fixtures::SquidexPlan::unit().spec()
}

pub(super) fn t(secs: i64) -> Timestamp {
    Timestamp::from_millis(1_800_000_000_000 + secs * 1000)
}

pub(super) fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(super) fn deployment(name: &str, replicas: i32) -> DeploymentView {
    DeploymentView {
        name: name.into(),
        uid: Some(format!("uid-{name}")),
        base_names: None,
        replicas,
        generation: 1,
        observed_generation: 1,
        current_replicas: replicas,
        updated_replicas: replicas,
        ready_replicas: replicas,
        container: Ok("squidex".into()),
        read_only_env: false,
        tracked: false,
        image: "squidex/squidex:6.0.0".into(),
        pod_labels: labels(&[("app", "squidex")]),
        running_pods: replicas,
        restarts: 0,
        owned_by_plan: false,
        env: env_naming(&["Squidex", "SquidexContent"]),
    }
}

/// The app container's database variables, each naming one of `databases` by value.
pub(super) fn env_naming(databases: &[&str]) -> Vec<EnvFact> {
    [
        "STORE__MONGODB__DATABASE",
        "STORE__MONGODB__CONTENTDATABASE",
    ]
    .iter()
    .zip(databases)
    .map(|(var, db)| EnvFact {
        name: var.to_string(),
        held_in: None,
        value: EnvValue::Resolved {
            uri: false,
            // Only a source database is named; a clone is not one.
            source: (!db.contains('-')).then(|| db.to_string()),
        },
    })
    .collect()
}

pub(super) fn green_view(replicas: i32) -> DeploymentView {
    DeploymentView {
        image: "squidex/squidex:7.0.0".into(),
        read_only_env: true,
        tracked: true,
        owned_by_plan: true,
        pod_labels: labels(&[("app", "squidex"), (names::TRACK_LABEL, "squidex-up7")]),
        env: env_naming(&["Squidex-up7", "SquidexContent-up7"]),
        ..deployment("squidex-up7", replicas)
    }
}

pub(super) fn source_counts() -> BTreeMap<String, i64> {
    [
        ("Squidex.Migration", 1),
        ("Squidex.Events", 50),
        ("SquidexContent.States_Contents_All1", 1000),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The sources' shape: each counted collection with its `_id` index, one with a unique
/// index, and a view.
pub(super) fn source_shape() -> Shape {
    let id = |extra: &[(&str, serde_json::Value)]| {
        let mut m = BTreeMap::from([(
            "_id_".to_string(),
            BTreeMap::from([("key".to_string(), serde_json::json!({"_id": 1}))]),
        )]);
        for (n, key) in extra {
            m.insert(
                n.to_string(),
                BTreeMap::from([
                    ("key".to_string(), key.clone()),
                    ("unique".to_string(), serde_json::json!(true)),
                ]),
            );
        }
        m
    };
    let mut collections: BTreeMap<String, CollectionShape> = source_counts()
        .into_keys()
        .map(|ns| {
            (
                ns,
                CollectionShape {
                    kind: "collection".into(),
                    options: BTreeMap::new(),
                    indexes: id(&[]),
                },
            )
        })
        .collect();
    collections.get_mut("Squidex.Events").unwrap().indexes =
        id(&[("Stream_1", serde_json::json!({"Stream": 1}))]);
    collections.insert(
        "Squidex.RecentEvents".into(),
        CollectionShape {
            kind: "view".into(),
            options: BTreeMap::from([
                ("viewOn".to_string(), serde_json::json!("Events")),
                (
                    "pipeline".to_string(),
                    serde_json::json!([{"$sort": {"Timestamp": -1}}]),
                ),
            ]),
            indexes: BTreeMap::new(),
        },
    );
    Shape { collections }
}

/// A shape under the clones' database names.
pub(super) fn clone_shape_of(src: &Shape) -> Shape {
    let mapping = ["Squidex", "SquidexContent"]
        .into_iter()
        .map(|db| (db.to_string(), crate::fixtures::clone_of(db, PLAN)))
        .collect();
    src.renamed(&mapping)
}

pub(super) fn clone_counts_of(src: &BTreeMap<String, i64>) -> BTreeMap<String, i64> {
    src.iter()
        .map(|(k, v)| {
            let (db, coll) = k.split_once('.').unwrap();
            (
                format!("{}.{coll}", crate::fixtures::clone_of(db, PLAN)),
                *v,
            )
        })
        .collect()
}

pub(super) fn world() -> Observed {
    let mut dbs = BTreeMap::new();
    for d in ["Squidex", "SquidexContent"] {
        dbs.insert(
            d.to_string(),
            DatabaseInfo {
                collections: 2,
                documents: 500,
            },
        );
    }
    Observed {
        plan: PlanMeta {
            name: PLAN.into(),
            namespace: NS.into(),
            uid: UID.into(),
            generation: Some(1),
            deleting: false,
            ignored_changes: Vec::new(),
            failing: None,
            deleted_at: None,
        },
        // The plan holds its claims (Pending takes them before anything else).
        claims: Some(Ok(held_claims(&spec(), UID))),
        blue: Some(deployment("squidex", 2)),
        green: None,
        service: Some(ServiceView {
            selector: labels(&[("app", "squidex")]),
        }),
        secret: SecretView::Present,
        database: DatabaseView::Reachable { databases: dbs },
        ..Default::default()
    }
}

pub(super) fn job(name: &str, state: JobState, message: &str) -> Option<JobView> {
    Some(JobView {
        name: name.into(),
        state,
        message: message.into(),
        disruption: None,
    })
}

/// A backup or clone Job that failed because its pod was disrupted (`why`), not by its script.
pub(super) fn disrupted_job(name: &str, why: &str) -> Option<JobView> {
    Some(JobView {
        name: name.into(),
        state: JobState::Failed,
        message: "dumping Squidex".into(),
        disruption: Some(why.into()),
    })
}

/// A status as it is right after entering `phase` at time 0, with the facts earlier phases recorded.
pub(super) fn status_in(phase: Phase) -> UpgradePlanStatus {
    let mut st = UpgradePlanStatus {
        phase,
        observed_generation: Some(1),
        blue_replicas: Some(2),
        green_deployment: Some("squidex-up7".into()),
        active_color: Some(Color::Blue),
        clone: Some(CloneStatus {
            databases: [
                ("Squidex", "Squidex-up7"),
                ("SquidexContent", "SquidexContent-up7"),
            ]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
            ..Default::default()
        }),
        phases: vec![PhaseRecord {
            name: phase,
            started_at: t(0),
            finished_at: None,
            outcome: None,
            detail: String::new(),
        }],
        ..Default::default()
    };
    let idx = Phase::ALL.iter().position(|p| *p == phase).unwrap();
    let after = |p: Phase| {
        idx > Phase::ALL.iter().position(|q| *q == p).unwrap() && phase.is_before_switch()
            || !phase.is_before_switch()
    };
    if phase != Phase::Pending {
        st.read_only_since = Some(t(-100));
    }
    if after(Phase::BackingUp) {
        st.backup = Some(BackupStatus {
            job: "up7-backup".into(),
            path: "/backup/squidex/up7".into(),
            collections: source_counts(),
            shape: Some(source_shape().digest()),
            checksum: Some("c0ffee".into()),
            completed_at: Some(t(-90)),
            ..Default::default()
        });
    }
    if after(Phase::Cloning) {
        let c = st.clone.as_mut().unwrap();
        c.verified = true;
        c.collections = clone_counts_of(&source_counts());
        cond::set(
            &mut st.conditions,
            cond::BACKUP_VERIFIED,
            true,
            "CountsMatch",
            "verified",
            Some(1),
            t(-80),
        );
    }
    if after(Phase::Migrating) {
        cond::set(
            &mut st.conditions,
            cond::MIGRATED,
            true,
            "Migrated",
            "migrated",
            Some(1),
            t(-20),
        );
    }
    if matches!(phase, Phase::CleaningUp | Phase::Succeeded) {
        st.read_only_lifted_at = Some(t(-10));
        st.active_color = Some(Color::Green);
        st.clone.as_mut().unwrap().collections_at_lift = migrated_clone_counts();
    }
    st
}

/// The clones after the new version migrated them (read-only still on): the migration copied
/// the contents into a new collection.
pub(super) fn migrated_clone_counts() -> BTreeMap<String, i64> {
    let mut c = clone_counts_of(&source_counts());
    c.insert("SquidexContent-up7.States_Contents_All2".into(), 1000);
    c
}

/// Each source of the fixture and its scratch database, digested: equal, or with one more
/// document in the source's `differs` collection (written after the dump).
pub(super) fn digests_of_backup(differs: Option<&str>) -> Vec<crate::plan::DigestPair> {
    use crate::plan::{CollectionDigest, DigestPair};
    let mut by_db: BTreeMap<String, BTreeMap<String, CollectionDigest>> = BTreeMap::new();
    for (ns, n) in source_counts() {
        let (db, coll) = ns.split_once('.').unwrap();
        by_db.entry(db.into()).or_default().insert(
            coll.into(),
            CollectionDigest {
                count: n,
                hash: format!("{n:032x}"),
            },
        );
    }
    by_db
        .into_iter()
        .map(|(db, colls)| {
            let mut source = colls.clone();
            if let Some(c) = differs.and_then(|d| source.get_mut(d)) {
                c.count += 1;
                c.hash = "f".repeat(32);
            }
            DigestPair {
                scratch: names::scratch_database(&db, "up7"),
                source: db,
                source_collections: source,
                scratch_collections: colls,
            }
        })
        .collect()
}

/// The world as it typically is when a plan is in `phase`.
/// The Service's track label names the new version: traffic is on it.
pub(super) fn traffic_on_green(w: &mut Observed) {
    w.service
        .as_mut()
        .expect("the fixture world has the Service")
        .selector
        .insert(names::TRACK_LABEL.into(), "squidex-up7".into());
}

pub(super) fn world_in(phase: Phase) -> Observed {
    let mut w = world();
    let blue = w.blue.as_mut().unwrap();
    if phase != Phase::Pending {
        blue.read_only_env = true;
        blue.tracked = true;
        blue.pod_labels
            .insert(names::TRACK_LABEL.into(), "squidex".into());
        w.service
            .as_mut()
            .unwrap()
            .selector
            .insert(names::TRACK_LABEL.into(), "squidex".into());
    }
    if matches!(
        phase,
        Phase::Migrating
            | Phase::AwaitingPromotion
            | Phase::SwitchingTraffic
            | Phase::LiftingReadOnly
            | Phase::CleaningUp
            | Phase::Succeeded
    ) {
        w.green = Some(green_view(2));
    }
    if matches!(
        phase,
        Phase::LiftingReadOnly | Phase::CleaningUp | Phase::Succeeded
    ) {
        traffic_on_green(&mut w);
    }
    if phase == Phase::LiftingReadOnly {
        // Counted just before the lift: the DataDiverged baseline.
        w.clone_counts = Some(Ok(migrated_clone_counts()));
    }
    if matches!(phase, Phase::CleaningUp | Phase::Succeeded) {
        w.green.as_mut().unwrap().read_only_env = false;
    }
    if phase == Phase::Succeeded {
        w.green.as_mut().unwrap().owned_by_plan = false;
    }
    w
}

/// A tiny world that carries out actions instantly, as a well-behaved cluster would.
pub(super) struct Sim {
    pub(super) w: Observed,
}

impl Sim {
    pub(super) fn new() -> Self {
        Sim { w: world() }
    }

    pub(super) fn apply(&mut self, a: &Action, spec: &UpgradePlanSpec) {
        let w = &mut self.w;
        match a {
            Action::SetReadOnly { color, enabled } => {
                let d = match color {
                    Color::Blue => w.blue.as_mut().unwrap(),
                    Color::Green => w.green.as_mut().unwrap(),
                };
                d.read_only_env = *enabled;
                if *color == Color::Blue && *enabled {
                    d.tracked = true;
                    d.pod_labels
                        .insert(names::TRACK_LABEL.into(), d.name.clone());
                }
                d.generation += 1;
                d.observed_generation = d.generation;
            }
            // Claims are taken (the fixture world holds the restore plan's already).
            Action::Claim { claims } => {
                if let Some(Ok(held)) = &mut w.claims {
                    for c in claims {
                        held.push(crate::plan::claims::Claim {
                            id: c.id.clone(),
                            role: c.role,
                            holder: crate::plan::claims::Holder {
                                namespace: NS.into(),
                                plan: PLAN.into(),
                                uid: UID.into(),
                            },
                        });
                    }
                }
            }
            Action::ReleaseClaims { .. } => {}
            Action::PinService { color } => {
                let name = match color {
                    Color::Blue => "squidex",
                    Color::Green => "squidex-up7",
                };
                w.service
                    .as_mut()
                    .unwrap()
                    .selector
                    .insert(names::TRACK_LABEL.into(), name.into());
            }
            Action::CreateBackupJob => {
                w.backup_job = job(
                    "up7-backup",
                    JobState::Succeeded,
                    r#"{"bytes":1234,"sha256":"cafe"}"#,
                );
                w.source_counts = Some(Ok(source_counts()));
                w.source_shape = Some(Ok(source_shape()));
            }
            Action::CreateCloneJob => {
                w.clone_job = job("up7-clone", JobState::Succeeded, "");
                w.clone_counts = Some(Ok(clone_counts_of(&source_counts())));
                w.source_shape = Some(Ok(source_shape()));
                w.clone_shape = Some(Ok(clone_shape_of(&source_shape())));
                if let DatabaseView::Reachable { databases } = &mut w.database {
                    for c in ["Squidex-up7", "SquidexContent-up7"] {
                        databases.insert(
                            c.into(),
                            DatabaseInfo {
                                collections: 2,
                                documents: 500,
                            },
                        );
                    }
                }
            }
            Action::ApplyGreen { replicas } => {
                w.green = Some(green_view(*replicas));
                if spec.migration.job.is_none() || w.migration_job.is_some() {
                    w.migration_doc = Some(Ok(Some(MigrationDoc {
                        version: Some(2),
                        locked: false,
                        raw: "{}".into(),
                    })));
                }
            }
            Action::CreateMigrationJob => {
                w.migration_job = job("up7-migrate", JobState::Succeeded, "");
            }
            Action::Scale { color, replicas } => {
                let d = match color {
                    Color::Blue => w.blue.as_mut().unwrap(),
                    Color::Green => w.green.as_mut().unwrap(),
                };
                d.replicas = *replicas;
                d.current_replicas = *replicas;
                d.updated_replicas = *replicas;
                d.ready_replicas = *replicas;
            }
            Action::DeleteGreen => w.green = None,
            Action::StopJobs => {
                for j in [&mut w.backup_job, &mut w.clone_job, &mut w.migration_job] {
                    if j.as_ref().is_some_and(|j| j.state == JobState::Active) {
                        *j = None;
                    }
                }
            }
            Action::ReleaseGreen => w.green.as_mut().unwrap().owned_by_plan = false,
            Action::DropDatabases { names } => {
                if let DatabaseView::Reachable { databases } = &mut w.database {
                    for n in names {
                        databases.remove(n);
                    }
                }
            }
            Action::DropCollections { names } => {
                if let Some(Ok(cs)) = &mut w.clone_collections {
                    cs.retain(|c| !names.contains(&c.name));
                }
            }
            Action::DeleteBlue => w.blue = None,
            Action::StartServerSideCopy => {
                w.server_copy = Some(CopyView {
                    state: CopyState::Succeeded,
                    documents_done: 1051,
                    documents_total: 1051,
                    collections_done: 3,
                    collections_total: 3,
                });
                w.clone_counts = Some(Ok(clone_counts_of(&source_counts())));
                w.source_shape = Some(Ok(source_shape()));
                w.clone_shape = Some(Ok(clone_shape_of(&source_shape())));
            }
            // A sync that catches up at once, and drains into clones equal to the sources.
            Action::StartSync { .. } => {
                w.sync = Some(crate::sync::SyncView {
                    state: crate::sync::SyncState::Streaming,
                    collections_done: 3,
                    collections_total: 3,
                    events_applied: 7,
                    lag_seconds: Some(0),
                    events_behind: None,
                    resume: Vec::new(),
                    draining: false,
                });
            }
            Action::DrainSync => {
                if let Some(v) = &mut w.sync {
                    v.state = crate::sync::SyncState::Drained;
                }
                w.sync_compare = Some(Ok(Vec::new()));
                w.source_shape = Some(Ok(source_shape()));
                w.clone_shape = Some(Ok(clone_shape_of(&source_shape())));
                w.clone_counts = Some(Ok(clone_counts_of(&source_counts())));
            }
            // The backup restores into scratch databases equal to the frozen sources.
            Action::CreateVerifyJob => {
                w.verify_job = job("up7-verify", JobState::Succeeded, "");
                w.backup_compare = Some(Ok(digests_of_backup(None)));
                if let DatabaseView::Reachable { databases } = &mut w.database {
                    for d in digests_of_backup(None) {
                        databases.insert(
                            d.scratch,
                            DatabaseInfo {
                                collections: 2,
                                documents: 500,
                            },
                        );
                    }
                }
            }
            Action::CreatePruneJob => {
                w.prune_job = job(
                    "up7-prune",
                    JobState::Succeeded,
                    r#"{"kept":["up7"],"deleted":["up5"],"incomplete":[]}"#,
                );
            }
        }
    }
}

/// Runs decide/apply until the plan is terminal; returns the final status and the actions.
pub(super) fn walk(
    spec: &UpgradePlanSpec,
    sim: &mut Sim,
    mut st: Option<UpgradePlanStatus>,
    mut on_step: impl FnMut(usize, &UpgradePlanStatus, &mut UpgradePlanSpec, &mut Sim),
) -> (UpgradePlanStatus, Vec<Action>) {
    let mut spec = spec.clone();
    let mut actions = Vec::new();
    for step in 0..200 {
        // As the controller does: the accepted spec, steered by the live one.
        let acting = crate::plan::frozen::effective(&spec, st.as_ref(), PLAN);
        sim.w.plan.ignored_changes = acting.ignored;
        let d = decide(&acting.spec, st.as_ref(), &sim.w, t(step as i64));
        if let Some(a) = &d.action {
            sim.apply(a, &acting.spec);
            actions.push(a.clone());
        }
        let done = d.status.phase.is_terminal();
        on_step(step, &d.status, &mut spec, sim);
        st = Some(d.status);
        if done {
            return (st.unwrap(), actions);
        }
    }
    panic!(
        "plan did not finish: {:?}",
        st.map(|s| (s.phase, s.message))
    );
}

pub(super) fn phase_names(st: &UpgradePlanStatus) -> Vec<Phase> {
    st.phases.iter().map(|r| r.name).collect()
}
