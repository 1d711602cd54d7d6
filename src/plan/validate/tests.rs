//! Validation of names and values, field by field.

use super::*;

#[test]
fn image_references() {
    for ok in [
        "squidex/squidex:7.0.0",
        "mongo:7.0",
        "nginx",
        "registry.example.com:5000/team/app:1.2.3",
        "localhost/app",
        "ghcr.io/org/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "cutover.dev/appsim:2",
    ] {
        assert!(is_image_reference(ok), "{ok} should be valid");
    }
    for bad in [
        "",
        " ",
        "app:",
        "App/Thing:1",
        "app:tag with space",
        "app@sha256:xyz",
        "-app:1",
        "app//x",
        "app:-1",
    ] {
        assert!(!is_image_reference(bad), "{bad:?} should be invalid");
    }
}

#[test]
fn database_names() {
    assert!(check_db_name("Squidex").is_ok());
    assert!(check_db_name("squidex-content_2").is_ok());
    for bad in [
        "",
        "a/b",
        "a.b",
        "a$b",
        "a b",
        "a\tb",
        "a\nb",
        "a\rb",
        "a=b",
        "a\u{a0}b",
        "a\u{2028}b",
        "a\u{7f}b",
        "admin",
        "cutover", // the claim registry's database
        &"x".repeat(64),
        &"é".repeat(32),
    ] {
        assert!(check_db_name(bad).is_err(), "{bad:?} should be invalid");
    }
}

#[test]
fn env_names() {
    assert!(is_env_name("MODE__ISREADONLY"));
    assert!(is_env_name("store.mongodb.database"));
    assert!(!is_env_name("1ABC"));
    assert!(!is_env_name("A=B"));
    assert!(!is_env_name(""));
}

use crate::crd::{CollectionPattern, Mode, ObsoleteCollectionsSpec, UpgradePlanSpec};
use crate::fixtures::SquidexPlan;

fn spec() -> UpgradePlanSpec {
    SquidexPlan::unit().spec()
}

/// The errors of `spec` as plan `plan`, each required to contain one of `want`, and all of
/// `want` present.
fn assert_errors(spec: &UpgradePlanSpec, plan: &str, want: &[&str]) {
    let errs = validate(spec, plan);
    for w in want {
        assert!(errs.iter().any(|e| e.contains(w)), "no {w:?} in {errs:?}");
    }
    assert_eq!(errs.len(), want.len(), "{errs:?}");
}

#[test]
fn the_fixture_is_valid() {
    assert_errors(&spec(), "up7", &[]);
}

#[test]
fn every_named_database_is_checked() {
    for bad in ["Sq\tevil", "Sq\nevil", "Sq=evil"] {
        let mut s = spec();
        s.database.databases[0].name = bad.into();
        s.migration.mongo_document.as_mut().unwrap().database = bad.into();
        assert_errors(
            &s,
            "up7",
            &[
                &format!("spec.database.databases[0].name: {bad:?} contains"),
                &format!("spec.migration.mongoDocument.database: {bad:?} contains"),
            ],
        );

        let mut s = spec();
        s.database.databases[1].clone_name = Some(bad.into());
        assert_errors(
            &s,
            "up7",
            &[&format!(
                "spec.database.databases[1].cloneName: {bad:?} contains"
            )],
        );

        let mut s = spec();
        s.cleanup.obsolete_collections = Some(ObsoleteCollectionsSpec {
            patterns: vec![CollectionPattern {
                database: bad.into(),
                pattern: "Old*".into(),
                keep_highest: true,
            }],
            approved: false,
        });
        assert_errors(
            &s,
            "up7",
            &[
                &format!("patterns[0].database: {bad:?} contains"),
                "patterns[0].database: ",
            ],
        );
    }
}

#[test]
fn a_plan_name_with_a_dot_derives_valid_names() {
    let s = spec();
    assert_errors(&s, "v7.1", &[]);
    let t = targets::targets(&s, "v7.1", None);
    assert_eq!(t.clones(), ["Squidex-v7_1", "SquidexContent-v7_1"]);
    assert_eq!(t.green, "squidex-v7.1");
    let mut r = spec();
    r.mode = Mode::Rehearsal;
    assert_errors(&r, "v7.1", &[]);
}

#[test]
fn derived_kubernetes_names_are_checked() {
    // Label values (the plan label on everything) are at most 63.
    let long = "p".repeat(64);
    assert_errors(&spec(), &long, &["metadata.name: \"pppp"]);

    // A preview Service must start with a letter; only a rehearsal creates one.
    let mut s = spec();
    s.target.deployment_name = Some("7squidex".into());
    assert_errors(&s, "up7", &[]);
    s.mode = Mode::Rehearsal;
    assert_errors(
        &s,
        "up7",
        &[
            "the rehearsal's preview Service's name \"7squidex-preview\" (from spec.target.deploymentName) is not a valid Service name",
        ],
    );
}

#[test]
fn a_clone_differing_from_its_source_only_in_case_is_refused() {
    let mut s = spec();
    s.database.databases[0].clone_name = Some("SQUIDEX".into());
    assert_errors(&s, "up7", &["only in case"]);
}
