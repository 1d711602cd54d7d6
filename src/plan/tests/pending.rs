//! `Pending`: validation and preflight, before any side effect.

use super::table::{Case, no_spec, no_world, run};
use super::*;

pub(super) fn cases() -> Vec<Case> {
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
        // The new version never touches a source: the plan's variables exist, nothing else
        // names a source.
        Case {
            name: "pending: env names a variable the container lacks",
            phase: Pending,
            spec: |s| s.database.databases[0].env = vec!["NOT_IN_THE_POD".into()],
            world: no_world,
            now: 0,
            want_phase: Failed,
            want_action: None,
            want_message: "names variable \"NOT_IN_THE_POD\", which container \"squidex\" of Deployment \"squidex\" does not set (its variables: STORE__MONGODB__CONTENTDATABASE, STORE__MONGODB__DATABASE)",
        },
        Case {
            name: "pending: the typo leaves the real variable naming the source",
            phase: Pending,
            spec: |s| s.database.databases[0].env = vec!["NOT_IN_THE_POD".into()],
            world: no_world,
            now: 0,
            want_phase: Failed,
            want_action: None,
            want_message: "variable STORE__MONGODB__DATABASE of container \"squidex\" holds the name of source database \"Squidex\", and the plan does not rewire it",
        },
        Case {
            name: "pending: an unlisted variable names a source",
            phase: Pending,
            spec: no_spec,
            world: |w| {
                w.blue.as_mut().unwrap().env.push(fact(
                    "REPORTS_DB",
                    None,
                    true,
                    Some("SquidexContent"),
                ))
            },
            now: 0,
            want_phase: Failed,
            want_action: None,
            want_message: "add \"REPORTS_DB\" to that database's uriEnv",
        },
        Case {
            name: "pending: a connection string in a Secret names a source",
            phase: Pending,
            spec: no_spec,
            world: |w| {
                w.blue.as_mut().unwrap().env.push(fact(
                    "STORE__URI",
                    Some("Secret \"app\" key \"uri\""),
                    true,
                    Some("Squidex"),
                ))
            },
            now: 0,
            want_phase: Failed,
            want_action: None,
            want_message: "STORE__URI (Secret \"app\" key \"uri\") of container \"squidex\" holds a connection string to source database \"Squidex\"",
        },
        Case {
            name: "pending: a listed uriEnv variable in a Secret passes",
            phase: Pending,
            spec: |s| s.database.databases[0].uri_env = vec!["STORE__URI".into()],
            world: |w| {
                w.blue.as_mut().unwrap().env.push(fact(
                    "STORE__URI",
                    Some("Secret \"app\" key \"uri\""),
                    true,
                    Some("Squidex"),
                ))
            },
            now: 0,
            want_phase: EnteringReadOnly,
            want_action: Some(Action::SetReadOnly {
                color: Color::Blue,
                enabled: true,
            }),
            want_message: "read-only",
        },
        Case {
            name: "pending: uriEnv in a missing Secret",
            phase: Pending,
            spec: |s| s.database.databases[0].uri_env = vec!["STORE__URI".into()],
            world: |w| {
                w.blue.as_mut().unwrap().env.push(EnvFact {
                    name: "STORE__URI".into(),
                    held_in: Some("Secret \"app\" key \"uri\"".into()),
                    value: EnvValue::Unresolvable("Secret \"app\" not found".into()),
                })
            },
            now: 0,
            want_phase: Failed,
            want_action: None,
            want_message: "its value cannot be read: Secret \"app\" not found",
        },
        Case {
            name: "pending: uriEnv imported with envFrom",
            phase: Pending,
            spec: |s| s.database.databases[0].uri_env = vec!["STORE__URI".into()],
            world: |w| {
                w.blue.as_mut().unwrap().env.push(fact(
                    "STORE__URI",
                    Some("ConfigMap \"cfg\" (envFrom)"),
                    true,
                    Some("Squidex"),
                ))
            },
            now: 0,
            want_phase: Failed,
            want_action: None,
            want_message: "it comes from envFrom; declare it in the container's env",
        },
        Case {
            name: "pending: uriEnv not a connection string",
            phase: Pending,
            spec: |s| s.database.databases[0].uri_env = vec!["STORE__URI".into()],
            world: |w| {
                w.blue
                    .as_mut()
                    .unwrap()
                    .env
                    .push(fact("STORE__URI", None, false, None))
            },
            now: 0,
            want_phase: Failed,
            want_action: None,
            want_message: "its value is not a mongodb:// or mongodb+srv:// connection string",
        },
        Case {
            name: "pending: uriEnv the container lacks",
            phase: Pending,
            spec: |s| s.database.databases[1].uri_env = vec!["CONTENT_URI".into()],
            world: no_world,
            now: 0,
            want_phase: Failed,
            want_action: None,
            want_message: "spec.database.databases[1].uriEnv names variable \"CONTENT_URI\"",
        },
        Case {
            name: "pending: waits for variables held in Secrets",
            phase: Pending,
            spec: no_spec,
            world: |w| {
                w.blue.as_mut().unwrap().env.push(EnvFact {
                    name: "OTHER".into(),
                    held_in: Some("ConfigMap \"cfg\" key \"x\"".into()),
                    value: EnvValue::NotRead,
                })
            },
            now: 0,
            want_phase: Pending,
            want_action: None,
            want_message: "Reading the old version's variables",
        },
        Case {
            name: "pending: a pod field names no database",
            phase: Pending,
            spec: no_spec,
            world: |w| {
                w.blue.as_mut().unwrap().env.push(EnvFact {
                    name: "POD_NAME".into(),
                    held_in: None,
                    value: EnvValue::Field,
                })
            },
            now: 0,
            want_phase: EnteringReadOnly,
            want_action: Some(Action::SetReadOnly {
                color: Color::Blue,
                enabled: true,
            }),
            want_message: "read-only",
        },
        Case {
            name: "pending: target.env names a source",
            phase: Pending,
            spec: |s| {
                s.target.env.push(EnvVarSpec {
                    name: "ARCHIVE_DB".into(),
                    value: "mongodb://db:27017/SquidexContent?tls=false".into(),
                })
            },
            world: no_world,
            now: 0,
            want_phase: Failed,
            want_action: None,
            want_message: "spec.target.env \"ARCHIVE_DB\" names source database \"SquidexContent\"",
        },
        Case {
            name: "pending: target.env overriding a rewired variable with the source",
            phase: Pending,
            spec: |s| {
                s.target.env.push(EnvVarSpec {
                    name: "STORE__MONGODB__DATABASE".into(),
                    value: "Squidex".into(),
                })
            },
            world: no_world,
            now: 0,
            want_phase: Failed,
            want_action: None,
            want_message: "spec.target.env \"STORE__MONGODB__DATABASE\" names source database \"Squidex\"",
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
    ]
}

/// A variable whose value was read: a connection string or not, naming a source or not.
fn fact(name: &str, held_in: Option<&str>, uri: bool, source: Option<&str>) -> EnvFact {
    EnvFact {
        name: name.into(),
        held_in: held_in.map(str::to_string),
        value: EnvValue::Resolved {
            uri,
            source: source.map(str::to_string),
        },
    }
}

#[test]
fn table() {
    run(cases());
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
            .any(|e| e.kind == EventKind::Warning && e.reason.as_str() == "PreflightFailed")
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
