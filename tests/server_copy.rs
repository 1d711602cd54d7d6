//! `backup.cloneMethod: serverSide` on the real control plane and MongoDB-wire server: the
//! clones are copied inside the server (with their indexes) while the backup Job runs, no
//! clone Job is created, and the plan succeeds on counts that match.

mod common;

use std::time::Duration;

use common::*;
use cutover::crd::Phase;
use futures::TryStreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::ListParams;
use mongodb::bson::Document;
use serde_json::json;

async fn index_names(env: &Env, db: &str, coll: &str) -> Vec<String> {
    let mut names: Vec<String> = env
        .mongo
        .database(db)
        .collection::<Document>(coll)
        .list_indexes()
        .await
        .unwrap()
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .into_iter()
        .filter_map(|i| i.options.and_then(|o| o.name))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn server_side_clone_copies_collections_and_indexes() {
    let Some(env) = env().await else { return };
    let (app, op) = env.app_with_operator("srvcopy").await;
    let mut plan = squidex_plan("fast", &app, 2);
    plan["spec"]["backup"]["cloneMethod"] = json!("serverSide");
    plan["spec"]["backup"]["parallelism"] = json!(2);
    let timeout = Duration::from_secs(180);
    let done = env
        .apply_until(&op, &app.ns, plan, Phase::Succeeded, timeout)
        .await;
    let st = status(&done);

    // The clones match the frozen sources, and carry the sources' indexes.
    assert!(st.clone.as_ref().unwrap().verified);
    let clone_content = app.clone_of(&app.content_db, "fast");
    let source_indexes = index_names(&env, &app.content_db, "States_Contents_All1").await;
    assert!(
        source_indexes.len() > 1,
        "the seed creates secondary indexes: {source_indexes:?}"
    );
    assert_eq!(
        index_names(&env, &clone_content, "States_Contents_All1").await,
        source_indexes
    );
    for (ns, n) in &st.backup.as_ref().unwrap().collections {
        let (db, coll) = ns.split_once('.').unwrap();
        let clone_ns = format!("{}.{coll}", app.clone_of(db, "fast"));
        assert_eq!(
            st.clone.as_ref().unwrap().collections.get(&clone_ns),
            Some(n),
            "{clone_ns}"
        );
    }

    // The backup was still taken; it is not called verified, as it was never restored.
    assert_backup_checksummed(&st);
    let bv = condition(&done, "BackupVerified").unwrap();
    assert_eq!(
        (bv.status.as_str(), bv.reason.as_str()),
        ("False", "NotRestored")
    );
    let jobs = Api::<Job>::namespaced(env.client.clone(), &app.ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    let names: Vec<String> = jobs
        .items
        .iter()
        .filter_map(|j| j.metadata.name.clone())
        .collect();
    assert!(names.contains(&"fast-backup".to_string()), "{names:?}");
    assert!(!names.iter().any(|n| n.ends_with("-clone")), "{names:?}");
    assert!(st.progress.is_none(), "progress is cleared after the copy");

    env.finish(&op, &app.ns, &all_dbs(&app, &["fast"])).await;
}
