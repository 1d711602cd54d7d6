//! Seeds a benchmark's two databases: small documents through `appsim seed` (the data set the
//! tests and the demo use), large ones by filling the same Squidex-shaped collections with
//! documents carrying a big text body (content items) or payload (events).

use std::time::Instant;

use mongodb::bson::{DateTime, Document, doc};

use super::sizes::{DataSet, Size};
use crate::appsim::seed::{Seed, seed};
use crate::appsim::steps::contents_collection;

/// Where to seed and what.
pub struct Target<'a> {
    pub uri: &'a str,
    pub database: &'a str,
    pub content_database: &'a str,
    pub size: &'a Size,
}

/// Seeds the data set at schema version 1; returns the seconds it took.
pub async fn seed_size(t: &Target<'_>) -> anyhow::Result<f64> {
    let started = Instant::now();
    let documents = match t.size.data {
        DataSet::Small { documents } => documents,
        DataSet::Large { .. } => 0,
    };
    seed(&Seed {
        uri: t.uri.to_string(),
        database: t.database.to_string(),
        content_database: t.content_database.to_string(),
        documents,
        version: 1,
    })
    .await?;
    if let DataSet::Large {
        bytes,
        document_bytes,
    } = t.size.data
    {
        fill_large(t, bytes / document_bytes / 2, document_bytes).await?;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// About 1 MiB per insert: few round trips, far below the 16 MiB message limit.
const LARGE_BATCH_BYTES: u64 = 1024 * 1024;

async fn fill_large(t: &Target<'_>, per_db: u64, document_bytes: u64) -> anyhow::Result<()> {
    let client = mongodb::Client::with_uri_str(t.uri).await?;
    let contents = client
        .database(t.content_database)
        .collection::<Document>(&contents_collection(1));
    let events = client.database(t.database).collection::<Document>("Events");
    let mut text = Text::new(0x5eed_cafe_f00d_beef);
    let now = DateTime::now();
    let batch = (LARGE_BATCH_BYTES / document_bytes).max(1);
    let mut start = 0;
    while start < per_db {
        let end = (start + batch).min(per_db);
        let body: Vec<Document> = (start..end)
            .map(|i| large_content(i, now, text.take(document_bytes as usize)))
            .collect();
        contents.insert_many(body).await?;
        let payload: Vec<Document> = (start..end)
            .map(|i| large_event(i, now, text.take(document_bytes as usize)))
            .collect();
        events.insert_many(payload).await?;
        start = end;
    }
    client.shutdown().await;
    Ok(())
}

fn large_content(i: u64, now: DateTime, body: String) -> Document {
    doc! {
        "_id": format!("content-{i:06}"),
        "IndexedAppId": "app-1",
        "IndexedSchemaId": "schema-articles",
        "Status": "Published",
        "IsDeleted": false,
        "Version": 0_i64,
        "Created": now,
        "LastModified": now,
        "Data": {
            "title": {"iv": format!("Article number {i}")},
            "body": {"iv": body},
        },
    }
}

fn large_event(i: u64, now: DateTime, payload: String) -> Document {
    doc! {
        "_id": format!("event-{i:06}"),
        "EventStream": format!("content-app-1--content-{i:06}"),
        "EventStreamNumber": 0_i64,
        "Timestamp": now,
        "Type": "ContentUpdatedEvent",
        "Payload": payload,
    }
}

/// Deterministic text of letters, digits and spaces (xorshift64): about 6 bits of entropy a
/// byte, so gzip saves about a quarter, as with real text bodies, not the 99% it would save
/// on a repeated string.
struct Text(u64);

const ALPHABET: &[u8; 64] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789  ";

impl Text {
    fn new(seed: u64) -> Self {
        Text(seed)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn take(&mut self, len: usize) -> String {
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let mut r = self.next();
            for _ in 0..10 {
                if out.len() == len {
                    break;
                }
                out.push(ALPHABET[(r & 63) as usize]);
                r >>= 6;
            }
        }
        String::from_utf8(out).expect("ASCII alphabet")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_deterministic_and_sized() {
        let a = Text::new(1).take(1000);
        let b = Text::new(1).take(1000);
        assert_eq!(a, b);
        assert_eq!(a.len(), 1000);
        assert!(a.bytes().all(|c| ALPHABET.contains(&c)));
        // Not a repeated pattern: many distinct 8-byte windows.
        let windows: std::collections::BTreeSet<&[u8]> = a.as_bytes().windows(8).collect();
        assert!(windows.len() > 900);
    }
}
