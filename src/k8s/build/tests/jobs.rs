use std::collections::BTreeMap;

use serde_json::json;

use super::{blue, plan, targets_of, value};
use crate::k8s::build::*;
use crate::plan::names::{PLAN_LABEL, ROLE_LABEL};
use crate::uri::Uri;

#[test]
fn jobs_take_the_uri_from_a_plan_owned_config_file_and_never_retry() {
    let p = plan(json!({}));
    for job in [
        backup_job(&p, &targets_of(&p)),
        clone_job(&p, &targets_of(&p)),
    ] {
        let spec = job.spec.as_ref().unwrap();
        assert_eq!(spec.backoff_limit, Some(0));
        let pod = spec.template.spec.as_ref().unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        let c = &pod.containers[0];
        assert_eq!(c.image.as_deref(), Some("mongo:7.0"));
        let env = c.env.clone().unwrap();
        assert_eq!(
            value(&env, "CUTOVER_TOOLS_CONFIG"),
            Some("/etc/cutover-tools/config.yaml")
        );
        let volumes = pod.volumes.as_ref().unwrap();
        assert_eq!(
            volumes[0]
                .persistent_volume_claim
                .as_ref()
                .unwrap()
                .claim_name,
            "backups"
        );
        let config = volumes.iter().find(|v| v.secret.is_some()).unwrap();
        assert_eq!(
            config.secret.as_ref().unwrap().secret_name.as_deref(),
            Some("up7-mongo-tools")
        );
        let mount = c
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == config.name)
            .unwrap();
        assert_eq!(mount.mount_path, "/etc/cutover-tools");
        assert_eq!(mount.read_only, Some(true));
        let script = &c.command.as_ref().unwrap()[2];
        assert!(
            script.contains("--config=\"$CUTOVER_TOOLS_CONFIG\""),
            "{script}"
        );
        let text = serde_json::to_string(&job).unwrap();
        assert!(
            !text.contains("--uri") && !text.contains("MONGODB_URI"),
            "no connection string on the command line or in the Job: {text}"
        );
        assert_eq!(
            job.metadata.owner_references.as_ref().unwrap()[0].uid,
            "uid-1"
        );
    }
    let backup = backup_job(&p, &targets_of(&p));
    let env = backup.spec.unwrap().template.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap();
    assert_eq!(
        value(&env, "CUTOVER_DATABASES"),
        Some("Squidex\nSquidexContent")
    );
    let clone = clone_job(&p, &targets_of(&p));
    let env = clone.spec.unwrap().template.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap();
    assert_eq!(
        value(&env, "CUTOVER_CLONES"),
        Some("Squidex\nSquidex-up7\nSquidexContent\nSquidexContent-up7")
    );
    assert_eq!(
        value(&env, "CUTOVER_ARCHIVE_DIR"),
        Some("/backup/squidex/up7")
    );
}

#[test]
fn the_tools_config_holds_the_uri_without_its_database() {
    let p = plan(json!({}));
    let uri = Uri::parse("mongodb://u:p\"w@db:27017/Squidex?tls=false").unwrap();
    let s = tools_secret(&p, &targets_of(&p), &uri);
    assert_eq!(s.metadata.name.as_deref(), Some("up7-mongo-tools"));
    assert_eq!(s.metadata.owner_references.unwrap()[0].uid, "uid-1");
    let labels = s.metadata.labels.unwrap();
    assert_eq!(labels.get(PLAN_LABEL).map(String::as_str), Some("up7"));
    assert_eq!(
        labels.get(ROLE_LABEL).map(String::as_str),
        Some("mongo-tools")
    );
    let data = s.string_data.unwrap();
    let config = data.get("config.yaml").unwrap();
    assert_eq!(
        config,
        "uri: \"mongodb://u:p\\\"w@db:27017/?tls=false&authSource=Squidex\"\n"
    );
    let parsed: BTreeMap<String, String> = serde_norway::from_str(config).unwrap();
    assert_eq!(parsed["uri"], uri.for_tools());
}

#[test]
fn scripts_read_lists_by_line_and_never_take_a_uri_argument() {
    let p = plan(json!({}));
    let t = targets_of(&p);
    for (name, script) in [
        ("backup", backup_job(&p, &t)),
        ("clone", clone_job(&p, &t)),
        ("prune", prune_job(&p, &t)),
    ]
    .map(|(n, j)| {
        (
            n,
            j.spec.unwrap().template.spec.unwrap().containers[0]
                .command
                .clone()
                .unwrap()[2]
                .clone(),
        )
    }) {
        assert!(!script.contains("for db in $"), "{name}: {script}");
        assert!(!script.contains("--uri"), "{name}: {script}");
        assert!(script.starts_with("#!/bin/sh\n"), "{name}");
        assert!(script.contains("\nset -eu\n"), "{name}");
    }
}

#[test]
fn migration_credentials_naming_a_database_are_rewritten_to_the_clone() {
    // The credentials variable is also the app's uriEnv: its database is the source's.
    let p = plan(
        json!({"app": {"deployment": "squidex", "service": "squidex", "container": "squidex"}}),
    );
    assert_eq!(
        migration_credentials_clone(&p, &targets_of(&p)),
        Some("Squidex-up7")
    );
    let (g, _) = green(&GreenInputs {
        plan: &p,
        targets: &targets_of(&p),
        blue: &blue(),
        container: "squidex",
        replicas: 0,
        uri_values: &BTreeMap::new(),
        service_selector: &BTreeMap::new(),
    })
    .unwrap();
    let job = migration_job(&p, &targets_of(&p), &g, "squidex").unwrap();
    let env = job.spec.unwrap().template.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap();
    let cred = env
        .iter()
        .find(|e| e.name == "STORE__MONGODB__CONFIGURATION")
        .unwrap();
    let r = cred
        .value_from
        .as_ref()
        .unwrap()
        .secret_key_ref
        .as_ref()
        .unwrap();
    assert_eq!(
        (r.name.as_str(), r.key.as_str()),
        ("up7-migrate-env", "STORE__MONGODB__CONFIGURATION")
    );
    let s = migration_env_secret(
        &p,
        &targets_of(&p),
        "mongodb://migrator:pw@db/Squidex?authSource=admin",
    )
    .unwrap();
    assert_eq!(
        s.string_data
            .unwrap()
            .get("STORE__MONGODB__CONFIGURATION")
            .map(String::as_str),
        Some("mongodb://migrator:pw@db/Squidex-up7?authSource=admin")
    );
}

#[test]
fn migration_job_uses_the_migration_user_and_not_read_only() {
    // Here the credentials variable is not a uriEnv: the Secret is passed through as is.
    let p = plan(json!({
        "app": {"deployment": "squidex", "service": "squidex", "container": "squidex"},
        "database": {
            "connectionSecret": {"name": "mongo", "key": "uri"},
            "databases": [
                {"name": "Squidex", "env": ["STORE__MONGODB__DATABASE"]},
                {"name": "SquidexContent", "env": ["STORE__MONGODB__CONTENTDATABASE"]}
            ]
        }
    }));
    assert!(migration_credentials_clone(&p, &targets_of(&p)).is_none());
    let (g, _) = green(&GreenInputs {
        plan: &p,
        targets: &targets_of(&p),
        blue: &blue(),
        container: "squidex",
        replicas: 0,
        uri_values: &BTreeMap::new(),
        service_selector: &BTreeMap::new(),
    })
    .unwrap();
    let job = migration_job(&p, &targets_of(&p), &g, "squidex").unwrap();
    let c = &job
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    assert_eq!(c.image.as_deref(), Some("squidex/squidex:7"));
    assert_eq!(c.command.clone().unwrap(), vec!["./upgrade_schema.sh"]);
    assert_eq!(c.args.clone().unwrap(), vec!["upgrade"]);
    let env = c.env.clone().unwrap();
    assert!(value(&env, "MODE__ISREADONLY").is_none());
    assert_eq!(
        value(&env, "STORE__MONGODB__DATABASE"),
        Some("Squidex-up7"),
        "the migration runs on the clone"
    );
    let cred: Vec<_> = env
        .iter()
        .filter(|e| e.name == "STORE__MONGODB__CONFIGURATION")
        .collect();
    assert_eq!(cred.len(), 1);
    assert_eq!(
        cred[0]
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap()
            .name,
        "migrator"
    );
    assert_eq!(
        value(&env, "CUTOVER_BACKUP_DIR"),
        Some("/backup/squidex/up7")
    );
}

/// The backup and clone scripts end with `SCRIPT_FAILED_EXIT` on their own failures (the
/// operator fails the plan) and keep a signal's exit code (a disruption, retried); a retry is
/// safe: the backup clears its checksums first, the clone restores with `--drop`.
#[test]
fn scripts_report_their_own_failures_and_can_run_again() {
    let p = plan(json!({}));
    for job in [
        backup_job(&p, &targets_of(&p)),
        clone_job(&p, &targets_of(&p)),
    ] {
        let pod = job.spec.unwrap().template.spec.unwrap();
        let script = pod.containers[0].command.clone().unwrap()[2].clone();
        let report = format!("[ \"$rc\" -gt 128 ] || exit {SCRIPT_FAILED_EXIT}");
        assert!(script.contains(&report), "{script}");
        assert!(script.contains("trap script_exit EXIT"), "{script}");
    }
    let backup = backup_job(&p, &targets_of(&p))
        .spec
        .unwrap()
        .template
        .spec
        .unwrap();
    assert!(
        backup.containers[0].command.as_ref().unwrap()[2].contains("rm -f ./*.partial SHA256SUMS")
    );
    let clone = clone_job(&p, &targets_of(&p))
        .spec
        .unwrap()
        .template
        .spec
        .unwrap();
    assert!(clone.containers[0].command.as_ref().unwrap()[2].contains("--drop"));
}
