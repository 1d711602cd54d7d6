use std::collections::BTreeMap;

use serde_json::json;

use super::{blue, plan, value};
use crate::k8s::build::*;

#[test]
fn jobs_take_the_uri_from_the_secret_and_never_retry() {
    let p = plan(json!({}));
    for job in [backup_job(&p), clone_job(&p)] {
        let spec = job.spec.as_ref().unwrap();
        assert_eq!(spec.backoff_limit, Some(0));
        let pod = spec.template.spec.as_ref().unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        let c = &pod.containers[0];
        assert_eq!(c.image.as_deref(), Some("mongo:7.0"));
        let uri = c
            .env
            .as_ref()
            .unwrap()
            .iter()
            .find(|e| e.name == "MONGODB_URI")
            .unwrap();
        let r = uri
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!((r.name.as_str(), r.key.as_str()), ("mongo", "uri"));
        assert_eq!(
            pod.volumes.as_ref().unwrap()[0]
                .persistent_volume_claim
                .as_ref()
                .unwrap()
                .claim_name,
            "backups"
        );
        assert_eq!(
            job.metadata.owner_references.as_ref().unwrap()[0].uid,
            "uid-1"
        );
    }
    let clone = clone_job(&p);
    let env = clone.spec.unwrap().template.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap();
    assert_eq!(
        value(&env, "CUTOVER_CLONES"),
        Some("Squidex=Squidex-up7 SquidexContent=SquidexContent-up7")
    );
    assert_eq!(
        value(&env, "CUTOVER_ARCHIVE_DIR"),
        Some("/backup/squidex/up7")
    );
}

#[test]
fn migration_credentials_naming_a_database_are_rewritten_to_the_clone() {
    // The credentials variable is also the app's uriEnv: its database is the source's.
    let p = plan(
        json!({"app": {"deployment": "squidex", "service": "squidex", "container": "squidex"}}),
    );
    assert_eq!(
        migration_credentials_clone(&p).as_deref(),
        Some("Squidex-up7")
    );
    let (g, _) = green(&GreenInputs {
        plan: &p,
        blue: &blue(),
        container: "squidex",
        replicas: 0,
        uri_values: &BTreeMap::new(),
        service_selector: &BTreeMap::new(),
    })
    .unwrap();
    let job = migration_job(&p, &g, "squidex").unwrap();
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
    let s = migration_env_secret(&p, "mongodb://migrator:pw@db/Squidex?authSource=admin").unwrap();
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
    assert!(migration_credentials_clone(&p).is_none());
    let (g, _) = green(&GreenInputs {
        plan: &p,
        blue: &blue(),
        container: "squidex",
        replicas: 0,
        uri_values: &BTreeMap::new(),
        service_selector: &BTreeMap::new(),
    })
    .unwrap();
    let job = migration_job(&p, &g, "squidex").unwrap();
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
