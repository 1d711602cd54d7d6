//! Every collection of a database counted and hashed, to compare a restored backup with the
//! sources it was taken of (`backup.cloneMethod: online`, after the switch).
//!
//! The hash of a collection is the sum (mod 2^128) of the first 128 bits of the SHA-256 of
//! each document's BSON bytes: independent of the order the server returns the documents in
//! (no sort, so no index or memory limit is involved), and a multiset hash (a document present
//! twice counts twice; XOR would cancel it). The BSON bytes are the document exactly as stored:
//! mongodump and mongorestore keep field order and types, so a faithful backup hashes the same.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use mongodb::bson::{RawDocumentBuf, doc};
use sha2::{Digest, Sha256};

use super::{MongoError, command, user_collections};
use crate::plan::{CollectionDigest, DigestPair};
use crate::uri::Uri;

/// Each collection holding data in `database` (no views, no `system.*`, no sync markers) with
/// its document count and content hash.
pub async fn collection_digests(
    client: &mongodb::Client,
    uri: &Uri,
    database: &str,
) -> Result<BTreeMap<String, CollectionDigest>, MongoError> {
    let db = client.database(database);
    let mut out = BTreeMap::new();
    for name in user_collections(&db).await.map_err(command(uri))? {
        let mut cursor = db
            .collection::<RawDocumentBuf>(&name)
            .find(doc! {})
            .await
            .map_err(command(uri))?;
        let mut sum: u128 = 0;
        let mut count: i64 = 0;
        while let Some(d) = cursor.try_next().await.map_err(command(uri))? {
            sum = sum.wrapping_add(document_hash(d.as_bytes()));
            count += 1;
        }
        out.insert(
            name,
            CollectionDigest {
                count,
                hash: format!("{sum:032x}"),
            },
        );
    }
    Ok(out)
}

/// Each (frozen source, scratch) pair's collections counted and hashed.
pub async fn digest_pairs(
    client: &mongodb::Client,
    uri: &Uri,
    pairs: &[(String, String)],
) -> Result<Vec<DigestPair>, MongoError> {
    let mut out = Vec::new();
    for (source, scratch) in pairs {
        out.push(DigestPair {
            source: source.clone(),
            scratch: scratch.clone(),
            source_collections: collection_digests(client, uri, source).await?,
            scratch_collections: collection_digests(client, uri, scratch).await?,
        });
    }
    Ok(out)
}

/// The first 128 bits of the SHA-256 of one document's bytes.
fn document_hash(bytes: &[u8]) -> u128 {
    let d = Sha256::digest(bytes);
    let mut first = [0u8; 16];
    first.copy_from_slice(&d[..16]);
    u128::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sum_does_not_depend_on_order_and_counts_duplicates() {
        let (a, b) = (document_hash(b"a"), document_hash(b"b"));
        assert_eq!(a.wrapping_add(b), b.wrapping_add(a));
        assert_ne!(a.wrapping_add(a), 0, "a document twice does not cancel out");
        assert_ne!(a, b);
    }
}
