//! The claim registry on the MongoDB server: database `cutover`, collection `claims`, one
//! document per claimed database or Deployment under a unique `_id`, holding the namespace,
//! plan name, plan uid, role and when it was claimed. `_id` is unique in every MongoDB, so two
//! plans can never both hold one name, whatever their namespaces and however their reconciles
//! interleave (issue 13 items 5 and 7).
//!
//! Claiming inserts; a duplicate key is somebody else's claim, unless its holder is this very
//! plan (then it is idempotent). Releasing deletes only documents this plan's uid holds.

use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};

use super::{MongoError, command};
use crate::plan::claims::{COLLECTION, Claim, ClaimRole, DATABASE, Holder, Wanted};
use crate::uri::Uri;

/// MongoDB's duplicate key error.
const DUPLICATE_KEY: i32 = 11000;

fn registry(client: &mongodb::Client) -> mongodb::Collection<Document> {
    client.database(DATABASE).collection::<Document>(COLLECTION)
}

fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    match e.kind.as_ref() {
        mongodb::error::ErrorKind::Write(mongodb::error::WriteFailure::WriteError(w)) => {
            w.code == DUPLICATE_KEY
        }
        mongodb::error::ErrorKind::Command(c) => c.code == DUPLICATE_KEY,
        _ => e.to_string().contains("E11000"),
    }
}

/// The claims on `ids`, and every claim `uid` holds (whatever its name).
pub async fn read_claims(
    client: &mongodb::Client,
    uri: &Uri,
    ids: &[String],
    uid: &str,
) -> Result<Vec<Claim>, MongoError> {
    let mut any = vec![doc! {"_id": {"$in": ids.to_vec()}}];
    if !uid.is_empty() {
        any.push(doc! {"uid": uid});
    }
    let docs: Vec<Document> = registry(client)
        .find(doc! {"$or": any})
        .await
        .map_err(command(uri))?
        .try_collect()
        .await
        .map_err(command(uri))?;
    Ok(docs.iter().filter_map(claim_of).collect())
}

fn claim_of(d: &Document) -> Option<Claim> {
    let s = |k: &str| d.get_str(k).unwrap_or_default().to_string();
    Some(Claim {
        id: d.get_str("_id").ok()?.to_string(),
        // An unknown role (a newer operator's) is held all the same: read as a deployment's.
        role: ClaimRole::parse(d.get_str("role").unwrap_or_default())
            .unwrap_or(ClaimRole::Deployment),
        holder: Holder {
            namespace: s("namespace"),
            plan: s("plan"),
            uid: s("uid"),
        },
    })
}

/// Claims every one of `wanted` for `holder`, all or nothing: when one is held by another
/// plan, those inserted by this call are deleted again and the call still succeeds (the next
/// observation shows the holder, and `decide` fails the plan naming it).
pub async fn claim(
    client: &mongodb::Client,
    uri: &Uri,
    holder: &Holder,
    wanted: &[Wanted],
) -> Result<(), MongoError> {
    if holder.uid.is_empty() {
        return Err(MongoError::Command(
            "the plan has no uid; it cannot claim anything".into(),
        ));
    }
    let coll = registry(client);
    let mut inserted = Vec::new();
    for w in wanted {
        let d = doc! {
            "_id": &w.id,
            "namespace": &holder.namespace,
            "plan": &holder.plan,
            "uid": &holder.uid,
            "role": w.role.as_str(),
            "createdAt": Bson::DateTime(mongodb::bson::DateTime::now()),
        };
        match coll.insert_one(d).await {
            Ok(_) => inserted.push(w.id.clone()),
            Err(e) if is_duplicate_key(&e) => {
                let held = coll
                    .find_one(doc! {"_id": &w.id})
                    .await
                    .map_err(command(uri))?;
                let ours = held
                    .as_ref()
                    .is_some_and(|d| d.get_str("uid").ok() == Some(holder.uid.as_str()));
                if !ours {
                    release(client, uri, &holder.uid, &inserted).await?;
                    return Ok(());
                }
            }
            Err(e) => {
                // Best effort: leave nothing half-claimed behind a failed call.
                let _ = release(client, uri, &holder.uid, &inserted).await;
                return Err(command(uri)(e));
            }
        }
    }
    Ok(())
}

/// Deletes those of `ids` that `uid` holds; another plan's claims are left alone.
pub async fn release(
    client: &mongodb::Client,
    uri: &Uri,
    uid: &str,
    ids: &[String],
) -> Result<(), MongoError> {
    if ids.is_empty() || uid.is_empty() {
        return Ok(());
    }
    registry(client)
        .delete_many(doc! {"_id": {"$in": ids.to_vec()}, "uid": uid})
        .await
        .map_err(command(uri))?;
    Ok(())
}

/// Those of `ids` that `uid` does not hold (unclaimed, or another plan's).
pub async fn not_held(
    client: &mongodb::Client,
    uri: &Uri,
    uid: &str,
    ids: &[String],
) -> Result<Vec<String>, MongoError> {
    let held = read_claims(client, uri, ids, "").await?;
    Ok(ids
        .iter()
        .filter(|id| !held.iter().any(|c| &c.id == *id && c.holder.uid == uid))
        .cloned()
        .collect())
}
