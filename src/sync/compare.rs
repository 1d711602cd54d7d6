//! Source and clone compared after the drain: the same collections, the same count in each,
//! and up to `SAMPLE` random documents per collection (`$sample` of `_id`s in the source)
//! equal field for field, in order, in both.

use std::collections::BTreeMap;

use std::future::IntoFuture;

use futures::{StreamExt, TryStreamExt};
use mongodb::bson::{Bson, Document, doc};

use crate::mongo::{MongoError, user_collections};
use crate::uri::Uri;

/// Documents compared per collection.
pub const SAMPLE: i64 = 1000;
/// Differing documents named per collection before the rest are only counted.
const NAMED: usize = 3;

/// Sentences saying how the clone differs from the source; empty when they agree.
pub async fn compare(
    client: &mongodb::Client,
    uri: &Uri,
    source: &str,
    clone: &str,
) -> Result<Vec<String>, MongoError> {
    let err = |e: mongodb::error::Error| MongoError::Command(uri.redact(&e.to_string()));
    let (s, c) = (client.database(source), client.database(clone));
    let (sc, cc) = (
        user_collections(&s).await.map_err(err)?,
        user_collections(&c).await.map_err(err)?,
    );
    let mut out = Vec::new();
    for name in sc.iter().filter(|n| !cc.contains(n)) {
        out.push(format!("{source}.{name} has no copy in {clone}"));
    }
    for name in cc.iter().filter(|n| !sc.contains(n)) {
        out.push(format!("{clone}.{name} is not in {source}"));
    }
    // Collections side by side (each its counts, its sample and its two `$in` reads at once):
    // this runs inside the read-only window.
    let jobs: Vec<_> = sc
        .iter()
        .filter(|n| cc.contains(n))
        .map(|name| {
            (
                s.collection::<Document>(name),
                c.collection::<Document>(name),
                format!("{source}.{name}"),
            )
        })
        .collect();
    let per_collection: Vec<Vec<String>> = futures::stream::iter(jobs)
        .map(|(a, b, what)| async move { compare_collection(a, b, what).await })
        .buffered(PARALLEL)
        .try_collect()
        .await
        .map_err(err)?;
    out.extend(per_collection.into_iter().flatten());
    Ok(out)
}

/// Collections compared at a time.
const PARALLEL: usize = 4;

/// One collection (`what`: `db.coll` of the source) and its clone's.
async fn compare_collection(
    a: mongodb::Collection<Document>,
    b: mongodb::Collection<Document>,
    what: String,
) -> Result<Vec<String>, mongodb::error::Error> {
    let mut out = Vec::new();
    let sample = async {
        a.aggregate(vec![
            doc! {"$sample": {"size": SAMPLE}},
            doc! {"$project": {"_id": 1}},
        ])
        .await?
        .try_collect::<Vec<Document>>()
        .await
    };
    let (na, nb, sampled) = futures::try_join!(
        a.count_documents(doc! {}).into_future(),
        b.count_documents(doc! {}).into_future(),
        sample
    )?;
    if na != nb {
        out.push(format!("{what} has {na} documents, its clone {nb}"));
    }
    let ids: Vec<Bson> = sampled
        .into_iter()
        .filter_map(|d| d.get("_id").cloned())
        .collect();
    if ids.is_empty() {
        return Ok(out);
    }
    let (da, db) = futures::try_join!(by_id(&a, &ids), by_id(&b, &ids))?;
    let differing = differing(&da, &db);
    for id in differing.iter().take(NAMED) {
        out.push(format!(
            "{what}: the document with _id {id} differs in the clone"
        ));
    }
    if differing.len() > NAMED {
        out.push(format!(
            "{what}: {} more sampled documents differ",
            differing.len() - NAMED
        ));
    }
    Ok(out)
}

async fn by_id(
    c: &mongodb::Collection<Document>,
    ids: &[Bson],
) -> Result<BTreeMap<String, Document>, mongodb::error::Error> {
    let docs: Vec<Document> = c
        .find(doc! {"_id": {"$in": ids.to_vec()}})
        .await?
        .try_collect()
        .await?;
    Ok(docs.into_iter().map(|d| (key(d.get("_id")), d)).collect())
}

fn key(id: Option<&Bson>) -> String {
    id.map_or_else(String::new, |b| {
        b.clone().into_relaxed_extjson().to_string()
    })
}

/// The `_id`s (as extended JSON) of sampled documents missing from either side or different:
/// the same fields with the same values in the same order.
fn differing(a: &BTreeMap<String, Document>, b: &BTreeMap<String, Document>) -> Vec<String> {
    let mut out: Vec<String> = a
        .iter()
        .filter(|(k, d)| b.get(*k).is_none_or(|o| !d.iter().eq(o.iter())))
        .map(|(k, _)| k.clone())
        .collect();
    out.extend(b.keys().filter(|k| !a.contains_key(*k)).cloned());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(docs: Vec<Document>) -> BTreeMap<String, Document> {
        docs.into_iter().map(|d| (key(d.get("_id")), d)).collect()
    }

    #[test]
    fn documents_differ_by_value_missing_field_or_order() {
        let a = map(vec![
            doc! {"_id": 1, "x": 1, "y": 2},
            doc! {"_id": 2, "x": 1},
            doc! {"_id": 3, "x": 1, "y": 2},
            doc! {"_id": 4},
        ]);
        let b = map(vec![
            doc! {"_id": 1, "x": 1, "y": 2},
            doc! {"_id": 2, "x": 2},
            doc! {"_id": 3, "y": 2, "x": 1},
        ]);
        assert_eq!(differing(&a, &b), vec!["2", "3", "4"]);
        assert!(differing(&a, &a).is_empty());
    }
}
