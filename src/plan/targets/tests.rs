//! The targets of a plan: derived from the spec by the naming rules until status records them,
//! then taken from status.

use serde_json::json;

use crate::crd::{CloneStatus, Color, UpgradePlanSpec, UpgradePlanStatus};
use crate::fixtures::SquidexPlan;
use crate::plan::names;

use super::{DatabaseTarget, Targets, targets};

/// The shared Squidex plan with every optional gate set, so that each read has something to
/// read, and a `cloneName` and a Service name of its own to tell recorded names from rules.
pub(in crate::plan) fn spec() -> UpgradePlanSpec {
    let mut spec = SquidexPlan {
        service: "squidex-svc".into(),
        ..SquidexPlan::unit()
    }
    .spec_json();
    spec["readOnly"]["verify"] =
        json!({"http": {"method": "PUT", "path": "/api/ping", "port": 8080, "body": "{}"}});
    spec["database"]["databases"][1]["cloneName"] = json!("content-next");
    spec["backup"]["keepLast"] = json!(3);
    let migration = spec["migration"]
        .as_object_mut()
        .expect("the fixture has a migration");
    migration.remove("timeout");
    migration["mongoDocument"]
        .as_object_mut()
        .expect("the fixture has a migration document")
        .remove("staleLockAfter");
    migration.insert(
        "httpGet".into(),
        json!({"path": "/healthz", "port": 8080, "expectStatus": 204}),
    );
    let cleanup = &mut spec["cleanup"];
    cleanup["deleteBlueAfter"] = json!("1h");
    cleanup["dropSourceDatabasesAfter"] = json!("24h");
    cleanup["obsoleteCollections"] =
        json!({"patterns": [{"database": "Squidex", "pattern": "Old*"}]});
    serde_json::from_value(spec).expect("fixture spec parses")
}

fn s(v: &str) -> String {
    v.to_string()
}

#[test]
fn before_anything_is_recorded_the_rules_name_everything() {
    let spec = spec();
    assert_eq!(
        targets(&spec, "up7", None),
        Targets {
            plan: s("up7"),
            blue: s("squidex"),
            blue_uid: None,
            service: s("squidex-svc"),
            green: s("squidex-up7"),
            green_env_secret: s("squidex-up7-env"),
            preview_service: s("squidex-up7-preview"),
            databases: vec![
                DatabaseTarget {
                    source: s("Squidex"),
                    clone: s("Squidex-up7"),
                },
                DatabaseTarget {
                    source: s("SquidexContent"),
                    clone: s("content-next"),
                },
            ],
            scratch: Vec::new(),
            backup_job: s("up7-backup"),
            clone_job: s("up7-clone"),
            migration_job: s("up7-migrate"),
            prune_job: s("up7-prune"),
            verify_job: String::new(),
            migration_env_secret: s("up7-migrate-env"),
            tools_secret: s("up7-mongo-tools"),
            backup_dir: s("/backup/squidex/up7"),
            base_deployment: s("squidex"),
            base_databases: [
                (s("Squidex-up7"), s("Squidex")),
                (s("content-next"), s("SquidexContent")),
            ]
            .into(),
        }
    );
}

#[test]
fn what_status_recorded_wins_over_an_edited_spec() {
    let mut spec = spec();
    spec.target.deployment_name = Some("edited".into());
    let status = UpgradePlanStatus {
        green_deployment: Some("squidex-up7".into()),
        clone: Some(CloneStatus {
            databases: [("Squidex".to_string(), "recorded".to_string())].into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let t = targets(&spec, "up7", Some(&status));
    assert_eq!(t.green, "squidex-up7");
    assert_eq!(t.green_env_secret, "squidex-up7-env");
    assert_eq!(t.preview_service, "squidex-up7-preview");
    assert_eq!(t.clones(), vec![s("recorded"), s("content-next")]);
    assert_eq!(t.sources(), vec![s("Squidex"), s("SquidexContent")]);
    assert_eq!(
        targets(&spec, "up7", None).green,
        "edited",
        "without a record the spec decides"
    );
}

#[test]
fn the_record_is_the_targets_whatever_the_spec_says() {
    let spec = spec();
    let mut resolved = targets(&spec, "up7", None);
    resolved.blue_uid = Some("uid-1".into());
    let status = UpgradePlanStatus {
        targets: Some(resolved.record(Some("uid-1".into()))),
        ..Default::default()
    };
    let mut edited = spec.clone();
    edited.app.deployment = "other".into();
    edited.app.service = "other-svc".into();
    edited.target.deployment_name = Some("edited".into());
    edited.database.databases.remove(0);
    edited.database.databases[0].clone_name = Some("elsewhere".into());
    assert_eq!(targets(&edited, "up7", Some(&status)), resolved);
}

/// The second upgrade in a row derives from what the first started from: `squidex-v3` on
/// `Squidex-v3`, not `squidex-v2-v3` on `Squidex-v2-v3`.
#[test]
fn names_derive_from_the_base_names() {
    let mut spec = spec();
    spec.app.deployment = "squidex-v2".into();
    spec.database.databases[0].name = "Squidex-v2".into();
    let status = UpgradePlanStatus {
        base_names: Some(crate::crd::BaseNames {
            deployment: "squidex".into(),
            databases: [(s("Squidex-v2"), s("Squidex"))].into(),
        }),
        ..Default::default()
    };
    let t = targets(&spec, "v3", Some(&status));
    assert_eq!(t.blue, "squidex-v2");
    assert_eq!(t.green, "squidex-v3");
    assert_eq!(t.clone_of("Squidex-v2"), Some("Squidex-v3"));
    assert_eq!(
        t.clone_of("SquidexContent"),
        Some("content-next"),
        "cloneName wins"
    );
    assert_eq!(t.backup_dir, "/backup/squidex/v3");
    assert_eq!(
        t.base_databases.get("Squidex-v3").map(String::as_str),
        Some("Squidex")
    );
}

#[test]
fn lookups() {
    let t = targets(&spec(), "up7", None);
    assert_eq!(t.deployment(Color::Blue), "squidex");
    assert_eq!(t.deployment(Color::Green), "squidex-up7");
    assert_eq!(t.clone_of("SquidexContent"), Some("content-next"));
    assert_eq!(t.clone_of("Other"), None);
    assert_eq!(
        t.pairs(),
        vec![
            (s("Squidex"), s("Squidex-up7")),
            (s("SquidexContent"), s("content-next"))
        ]
    );
}

/// The targets are the rules applied, long names shortened the rules' way.
#[test]
fn apply_the_rules() {
    let spec = spec();
    let plan = &format!("a-plan-with-a-very-long-name-{}", "x".repeat(40));
    let t = targets(&spec, plan, None);
    assert_eq!(t.green, names::green_deployment(&spec, plan));
    assert_eq!(
        t.preview_service,
        names::shorten(&format!("{}-preview", t.green), names::MAX_K8S_NAME)
    );
    assert_eq!(
        t.green_env_secret,
        names::shorten(&format!("{}-env", t.green), names::MAX_K8S_NAME)
    );
    assert!(t.green_env_secret.len() <= names::MAX_K8S_NAME);
    assert_eq!(t.backup_job, names::backup_job(plan));
    assert_eq!(t.clone_job, names::clone_job(plan));
    assert_eq!(t.migration_job, names::migration_job(plan));
    assert_eq!(t.prune_job, names::prune_job(plan));
    assert_eq!(t.backup_dir, names::backup_dir(&spec, plan));
    assert_eq!(
        t.clone_of("Squidex"),
        Some(names::clone_database(&spec.database.databases[0], plan).as_str())
    );
}
