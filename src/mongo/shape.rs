//! Reads a database's shape (`plan::shape`) from the server: `listCollections` for each
//! collection's and view's type and options, `listIndexes` for each collection's index specs,
//! normalized (see `plan::shape`) so that a faithful copy reads back equal to its source.
//! The copy (`crate::copy`) uses the raw specs read here to create what it copies.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use serde_json::Value;

use super::{MongoError, command};
use crate::plan::shape::{CollectionShape, Shape};
use crate::uri::Uri;

/// One entry of `listCollections` as the server returned it (what the copy recreates).
#[derive(Clone, Debug)]
pub struct CollectionSpec {
    pub name: String,
    /// `collection`, `view` or `timeseries`.
    pub kind: String,
    pub options: Document,
}

impl CollectionSpec {
    pub fn is_view(&self) -> bool {
        self.kind == "view"
    }

    /// Capped collections refuse `$out`; they are filled with `$merge`.
    pub fn is_capped(&self) -> bool {
        matches!(self.options.get("capped"), Some(Bson::Boolean(true)))
    }
}

/// The collections and views of a database that belong to the app, by name: not the
/// server's own (`system.*`, a time series' `system.buckets.*`), nor a `$out` temporary.
pub async fn collection_specs(
    db: &mongodb::Database,
) -> Result<Vec<CollectionSpec>, mongodb::error::Error> {
    let mut cursor = db
        .run_cursor_command(doc! {"listCollections": 1, "filter": {}})
        .await?;
    let mut out = Vec::new();
    while let Some(d) = cursor.try_next().await? {
        let name = d.get_str("name").unwrap_or_default().to_string();
        if !super::ops::is_user_collection(&name) {
            continue;
        }
        out.push(CollectionSpec {
            kind: d.get_str("type").unwrap_or("collection").to_string(),
            options: d.get_document("options").cloned().unwrap_or_default(),
            name,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The shape of `databases`, keyed `database.name`.
pub async fn read_shape(
    client: &mongodb::Client,
    uri: &Uri,
    databases: &[String],
) -> Result<Shape, MongoError> {
    let mut shape = Shape::default();
    for name in databases {
        let db = client.database(name);
        for spec in collection_specs(&db).await.map_err(command(uri))? {
            let mut indexes = BTreeMap::new();
            if !spec.is_view() {
                let mut cursor = db
                    .run_cursor_command(doc! {"listIndexes": &spec.name})
                    .await
                    .map_err(command(uri))?;
                while let Some(i) = cursor.try_next().await.map_err(command(uri))? {
                    let index = i.get_str("name").unwrap_or_default().to_string();
                    indexes.insert(index, normalize_index(&i));
                }
            }
            shape.collections.insert(
                format!("{name}.{}", spec.name),
                CollectionShape {
                    kind: spec.kind.clone(),
                    options: top_level(&spec.options, &[], &["pipeline"]),
                    indexes,
                },
            );
        }
    }
    Ok(shape)
}

/// An index spec without what is not its shape: its name (the key it is listed under), the
/// index version `v`, the namespace `ns` older servers add, and the build option `background`.
pub fn normalize_index(spec: &Document) -> BTreeMap<String, Value> {
    top_level(spec, &["name", "v", "ns", "background"], &["key"])
}

/// A document's top-level fields, except `skip`, as JSON values with numbers normalized and
/// the keys of nested documents sorted, except under `ordered` (an index's key, a view's
/// pipeline), where their order means something. (`mongorestore` rewrites a validator's
/// `$jsonSchema` in another key order; the server reads both the same.)
fn top_level(d: &Document, skip: &[&str], ordered: &[&str]) -> BTreeMap<String, Value> {
    d.iter()
        .filter(|(k, _)| !skip.contains(&k.as_str()))
        .map(|(k, v)| {
            let sort = !ordered.contains(&k.as_str());
            (k.clone(), normalize(v.clone().into_relaxed_extjson(), sort))
        })
        .collect()
}

/// Every integral double as an integer (the server and the tools may write `1` as a
/// double), and, when `sort`, every object's keys in order.
fn normalize(v: Value, sort: bool) -> Value {
    match v {
        Value::Number(n) if n.is_f64() => match n.as_f64() {
            #[allow(clippy::cast_possible_truncation)]
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Value::from(f as i64),
            _ => Value::Number(n),
        },
        Value::Array(a) => Value::Array(a.into_iter().map(|v| normalize(v, sort)).collect()),
        Value::Object(o) => {
            let mut entries: Vec<(String, Value)> = o
                .into_iter()
                .map(|(k, v)| (k, normalize(v, sort)))
                .collect();
            if sort {
                entries.sort_by(|a, b| a.0.cmp(&b.0));
            }
            Value::Object(entries.into_iter().collect())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_specs_lose_their_version_namespace_and_build_options_and_keep_key_order() {
        let spec = doc! {"v": 2, "key": {"b": 1.0, "a": -1}, "name": "b_1_a_-1",
        "ns": "Squidex.Events", "background": true, "unique": true,
        "expireAfterSeconds": 3600_i64};
        let n = normalize_index(&spec);
        assert_eq!(
            serde_json::to_string(&n).unwrap(),
            r#"{"expireAfterSeconds":3600,"key":{"b":1,"a":-1},"unique":true}"#
        );
        // The same index from another writer: other integer widths, another field order.
        let other = doc! {"unique": true, "key": {"b": 1_i64, "a": -1.0}, "v": 1, "name": "x",
        "expireAfterSeconds": 3600};
        assert_eq!(normalize_index(&other), n);
    }

    #[test]
    fn nested_keys_are_sorted_except_where_order_means_something() {
        let options = doc! {"validator": {"$jsonSchema": {"required": ["a"], "bsonType": "object"}},
        "pipeline": [{"$sort": {"b": 1, "a": 1}}]};
        let n = top_level(&options, &[], &["pipeline"]);
        assert_eq!(
            serde_json::to_string(&n).unwrap(),
            r#"{"pipeline":[{"$sort":{"b":1,"a":1}}],"validator":{"$jsonSchema":{"bsonType":"object","required":["a"]}}}"#
        );
    }
}
