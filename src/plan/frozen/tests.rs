//! Which live edits a running plan acts on.

use crate::crd::{Color, UpgradePlanSpec, UpgradePlanStatus, dur};
use crate::fixtures::SquidexPlan;

use super::{effective, ignored_message};

fn spec() -> UpgradePlanSpec {
    SquidexPlan::unit().spec()
}

fn frozen(spec: &UpgradePlanSpec) -> UpgradePlanStatus {
    UpgradePlanStatus {
        frozen_spec: Some(Box::new(spec.clone())),
        ..Default::default()
    }
}

#[test]
fn before_the_freeze_the_live_spec_is_acted_on() {
    let mut live = spec();
    live.app.deployment = "other".into();
    let e = effective(&live, Some(&UpgradePlanStatus::default()), "up");
    assert_eq!(e.spec, live);
    assert!(e.ignored.is_empty());
    assert_eq!(effective(&live, None, "up").spec, live);
}

#[test]
fn steering_fields_are_live() {
    let start = spec();
    let mut live = start.clone();
    live.traffic = Color::Blue;
    live.promotion.approved = true;
    live.rollback.accept_data_loss = true;
    live.suspend = true;
    live.cleanup.delete_blue_after = Some(dur("2h"));
    let e = effective(&live, Some(&frozen(&start)), "up");
    assert_eq!(e.spec, live, "every steering edit is acted on");
    assert!(e.ignored.is_empty(), "{:?}", e.ignored);
}

/// One row per frozen field: (what the edit is, the path reported).
#[test]
fn edits_that_retarget_are_ignored_and_named() {
    type Edit = fn(&mut UpgradePlanSpec);
    let rows: &[(Edit, &str)] = &[
        (|s| s.app.deployment = "other".into(), "spec.app.deployment"),
        (|s| s.app.service = "other".into(), "spec.app.service"),
        (
            |s| s.target.deployment_name = Some("other".into()),
            "spec.target.deploymentName",
        ),
        (|s| s.target.image = "other:1".into(), "spec.target.image"),
        (
            |s| s.database.databases[0].clone_name = Some("Elsewhere".into()),
            "spec.database.databases",
        ),
        (
            |s| {
                let mut extra = s.database.databases[0].clone();
                extra.name = "Added".into();
                s.database.databases.push(extra);
            },
            "spec.database.databases",
        ),
        (
            |s| s.database.connection_secret.name = "other".into(),
            "spec.database.connectionSecret.name",
        ),
        (
            |s| s.read_only.env.value = "0".into(),
            "spec.readOnly.env.value",
        ),
        (|s| s.backup.keep_last = 9, "spec.backup.keepLast"),
        (|s| s.timeouts.clone = dur("1s"), "spec.timeouts.clone"),
        (|s| s.mode = crate::crd::Mode::Rehearsal, "spec.mode"),
        (
            |s| s.promotion.mode = crate::crd::PromotionMode::Manual,
            "spec.promotion.mode",
        ),
    ];
    let start = spec();
    for (edit, path) in rows {
        let mut live = start.clone();
        edit(&mut live);
        assert_ne!(live, start, "{path}: the row edits something");
        let e = effective(&live, Some(&frozen(&start)), "up");
        assert_eq!(e.spec, start, "{path}: the started spec is acted on");
        assert!(
            e.ignored.iter().any(|i| i.starts_with(path)),
            "{path} not in {:?}",
            e.ignored
        );
        let msg = ignored_message(&e.ignored).expect("a message");
        assert!(msg.contains(path), "{msg}");
    }
}

#[test]
fn an_invalid_cleanup_edit_is_not_acted_on() {
    let start = spec();
    let mut live = start.clone();
    live.cleanup.obsolete_collections = Some(
        serde_json::from_value(serde_json::json!({
            "patterns": [{"database": "NotInThePlan", "pattern": "Old*"}]
        }))
        .expect("patterns parse"),
    );
    let e = effective(&live, Some(&frozen(&start)), "up");
    assert_eq!(e.spec.cleanup, start.cleanup);
    assert!(
        e.ignored.iter().any(|i| i.starts_with("spec.cleanup (")),
        "{:?}",
        e.ignored
    );
}

#[test]
fn reverting_clears_the_report() {
    let start = spec();
    let e = effective(&start.clone(), Some(&frozen(&start)), "up");
    assert!(e.ignored.is_empty());
    assert_eq!(ignored_message(&e.ignored), None);
}
