//! `backup.cloneMethod: serverSide` on the real control plane and MongoDB-wire server: the
//! clones are copied inside the server (with their indexes) while the backup Job runs, no
//! clone Job is created, and the plan succeeds on counts that match. And every method keeps a
//! database's shape: collection options (validator, collation, capped), views and index specs
//! read back from the clone as from the source.

mod common;

use std::time::Duration;

use common::*;
use cutover::crd::Phase;
use futures::TryStreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::ListParams;
use mongodb::bson::{Bson, Document, doc};
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

/// Gives the app's content database one of each thing a clone must keep, in collections named
/// `Shape*` that the app never touches; with `more`, also a clustered and a time series
/// collection (this server refuses the time series options mongorestore sends back, see
/// docs/operations.md, so `restore` is tested without them).
async fn add_shapes(env: &Env, db: &str, more: bool) {
    let db = env.mongo.database(db);
    let run = |cmd: Document| {
        let db = db.clone();
        async move { db.run_command(cmd).await.unwrap() }
    };
    run(doc! {"create": "ShapeValidated",
    "validator": {"$jsonSchema": {"bsonType": "object", "required": ["a"]}},
    "validationLevel": "moderate", "validationAction": "error"})
    .await;
    run(doc! {"insert": "ShapeValidated", "documents": [{"a": 1}, {"a": 2}, {"a": 3}]}).await;
    // A document older than its collection's validator: a copy must not re-validate it.
    run(doc! {"insert": "ShapeStrict", "documents": [{"b": 1}, {"a": 1}]}).await;
    run(
        doc! {"collMod": "ShapeStrict", "validator": {"a": {"$exists": true}},
        "validationLevel": "strict"},
    )
    .await;
    run(doc! {"create": "ShapeCollated", "collation": {"locale": "en", "strength": 2}}).await;
    run(doc! {"insert": "ShapeCollated", "documents": [{"x": "A"}, {"x": "a"}]}).await;
    run(doc! {"create": "ShapeCapped", "capped": true, "size": 100000, "max": 5}).await;
    let docs: Vec<Document> = (0..10).map(|i| doc! {"i": i}).collect();
    run(doc! {"insert": "ShapeCapped", "documents": docs}).await;
    run(doc! {"create": "ShapeView", "viewOn": "ShapeValidated",
    "pipeline": [{"$match": {"a": {"$gt": 1}}}, {"$project": {"a": 1}}]})
    .await;
    let docs: Vec<Document> = (0..20)
        .map(|i| doc! {"a": i, "b": i % 3, "t": mongodb::bson::DateTime::now()})
        .collect();
    run(doc! {"insert": "ShapeIndexed", "documents": docs}).await;
    run(doc! {"createIndexes": "ShapeIndexed", "indexes": [
        {"key": {"a": 1}, "name": "a_1", "unique": true},
        {"key": {"b": 1, "a": -1}, "name": "b_1_a_-1"},
        {"key": {"t": 1}, "name": "t_1", "expireAfterSeconds": 86400},
        {"key": {"b": 1}, "name": "b_partial", "partialFilterExpression": {"b": {"$gt": 0}}},
    ]})
    .await;
    if more {
        run(doc! {"create": "ShapeClustered",
        "clusteredIndex": {"key": {"_id": 1}, "unique": true}})
        .await;
        run(doc! {"insert": "ShapeClustered", "documents": [{"_id": 2}, {"_id": 1}]}).await;
        run(doc! {"create": "ShapeSeries",
        "timeseries": {"timeField": "t", "metaField": "m", "granularity": "minutes"}})
        .await;
        let docs: Vec<Document> = (0..4)
            .map(|i| doc! {"t": mongodb::bson::DateTime::now(), "m": i % 2, "v": i})
            .collect();
        run(doc! {"insert": "ShapeSeries", "documents": docs}).await;
    }
}

/// `listCollections` of the `Shape*` collections and views: name → (type, options), and
/// `listIndexes` of each collection: name → specs without `ns` (the database's name).
async fn raw_shape(env: &Env, db: &str) -> Vec<(String, String, Document, Vec<Document>)> {
    let db = env.mongo.database(db);
    let mut cursor = db
        .run_cursor_command(doc! {"listCollections": 1, "filter": {"name": {"$regex": "^Shape"}}})
        .await
        .unwrap();
    let mut out = Vec::new();
    while let Some(c) = cursor.try_next().await.unwrap() {
        let name = c.get_str("name").unwrap().to_string();
        let kind = c.get_str("type").unwrap().to_string();
        let mut indexes = Vec::new();
        if kind != "view" {
            let mut ix = db
                .run_cursor_command(doc! {"listIndexes": &name})
                .await
                .unwrap();
            while let Some(mut i) = ix.try_next().await.unwrap() {
                i.remove("ns");
                indexes.push(i);
            }
            indexes.sort_by_key(|i| i.get_str("name").unwrap_or_default().to_string());
        }
        out.push((
            name,
            kind,
            c.get_document("options").unwrap().clone(),
            indexes,
        ));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Runs a plan with `method` over an app whose content database has every kind of shape, and
/// compares what the clone reads back with the source.
async fn clone_keeps_the_shape(method: &str, prefix: &str) {
    let Some(env) = env().await else { return };
    let (app, op) = env.app_with_operator(prefix).await;
    // The server-side copies (serverSide, and online's bulk copy) also keep clustered and time
    // series collections.
    let more = method != "restore";
    add_shapes(&env, &app.content_db, more).await;
    let source = raw_shape(&env, &app.content_db).await;
    let names: Vec<&str> = source
        .iter()
        .map(|s| s.0.as_str())
        .filter(|n| !["ShapeClustered", "ShapeSeries"].contains(n))
        .collect();
    assert_eq!(source.len(), names.len() + if more { 2 } else { 0 });
    assert_eq!(
        names,
        [
            "ShapeCapped",
            "ShapeCollated",
            "ShapeIndexed",
            "ShapeStrict",
            "ShapeValidated",
            "ShapeView"
        ]
    );
    let mut plan = squidex_plan("shape", &app, 2);
    plan["spec"]["backup"]["cloneMethod"] = json!(method);
    let done = env
        .apply_until(
            &op,
            &app.ns,
            plan,
            Phase::Succeeded,
            Duration::from_secs(180),
        )
        .await;
    let st = status(&done);
    let shape = st.backup.as_ref().unwrap().shape.clone().unwrap();
    assert!(shape.views >= 1 && shape.indexes >= 9, "{shape:?}");
    assert_eq!(st.clone.as_ref().unwrap().shape.as_ref(), Some(&shape));

    let clone_db = app.clone_of(&app.content_db, "shape");
    let clone = raw_shape(&env, &clone_db).await;
    for (s, c) in source.iter().zip(&clone) {
        assert_eq!(s, c, "{method}: {} differs", s.0);
    }
    assert_eq!(source.len(), clone.len());
    // The shape at work: the view is a view, the capped collection keeps its cap, the
    // validator still refuses, the unique index still holds, the old document is there.
    let c = env.mongo.database(&clone_db);
    let count = |coll: &str| {
        let c = c.clone();
        let coll = coll.to_string();
        async move {
            c.collection::<Document>(&coll)
                .count_documents(doc! {})
                .await
                .unwrap()
        }
    };
    assert_eq!(count("ShapeView").await, 2);
    assert_eq!(count("ShapeCapped").await, 5);
    assert_eq!(count("ShapeStrict").await, 2);
    if more {
        assert_eq!(count("ShapeSeries").await, 4);
        assert_eq!(count("ShapeClustered").await, 2);
    }
    let refused = c
        .run_command(doc! {"insert": "ShapeCapped", "documents": (0..3).map(|i| doc! {"i": 100 + i}).collect::<Vec<_>>()})
        .await;
    assert!(refused.is_ok());
    assert_eq!(count("ShapeCapped").await, 5, "still capped at 5 documents");
    let invalid = c
        .run_command(doc! {"insert": "ShapeValidated", "documents": [{"b": 1}]})
        .await
        .unwrap();
    assert!(
        matches!(invalid.get("writeErrors"), Some(Bson::Array(e)) if !e.is_empty()),
        "{method}: the validator refuses: {invalid}"
    );
    let duplicate = c
        .run_command(doc! {"insert": "ShapeIndexed", "documents": [{"a": 1}]})
        .await
        .unwrap();
    assert!(
        matches!(duplicate.get("writeErrors"), Some(Bson::Array(e)) if !e.is_empty()),
        "{method}: the unique index holds: {duplicate}"
    );

    env.finish(&op, &app.ns, &all_dbs(&app, &["shape"])).await;
}

#[tokio::test]
async fn server_side_clone_keeps_options_views_and_index_specs() {
    clone_keeps_the_shape("serverSide", "shapesrv").await;
}

#[tokio::test]
async fn restore_keeps_options_views_and_index_specs() {
    clone_keeps_the_shape("restore", "shaperst").await;
}

#[tokio::test]
async fn online_keeps_options_views_and_index_specs() {
    clone_keeps_the_shape("online", "shapeonl").await;
}
