//! `appsim seed`: a Squidex-shaped data set at a given schema version, for tests and the
//! demo: the `Migration` document, `States_Contents_All{V}` with N content items and indexes,
//! plus `Events` and `States_Assets` in the main database that migrations must not touch.

use mongodb::{
    Client, Collection, IndexModel,
    bson::{DateTime, Document, doc},
    options::IndexOptions,
};

use super::{migrate::COLLECTION, steps::contents_collection};

pub struct Seed {
    pub uri: String,
    pub database: String,
    pub content_database: String,
    pub documents: u64,
    pub version: u32,
}

const BATCH: u64 = 500;

/// Creates (replaces) the data set.
pub async fn seed(s: &Seed) -> anyhow::Result<()> {
    let client = Client::with_uri_str(&s.uri).await?;
    let main = client.database(&s.database);
    let content = client.database(&s.content_database);

    main.collection::<Document>(COLLECTION)
        .replace_one(
            doc! {"_id": "Default"},
            doc! {"_id": "Default", "Version": i32::try_from(s.version)?, "IsLocked": false},
        )
        .upsert(true)
        .await?;

    let contents: Collection<Document> = content.collection(&contents_collection(s.version));
    contents.drop().await?;
    let events: Collection<Document> = main.collection("Events");
    events.drop().await?;
    let now = DateTime::now();
    let mut start = 0;
    while start < s.documents {
        let end = (start + BATCH).min(s.documents);
        contents
            .insert_many((start..end).map(|i| content_doc(i, now)))
            .await?;
        events
            .insert_many((start..end).map(|i| event_doc(i, now)))
            .await?;
        start = end;
    }
    if s.documents == 0 {
        content.create_collection(contents.name()).await?;
        main.create_collection(events.name()).await?;
    }
    contents
        .create_index(index(
            doc! {"IndexedAppId": 1, "IsDeleted": 1, "LastModified": -1},
            "app_deleted_modified",
            false,
        ))
        .await?;
    contents
        .create_index(index(doc! {"IndexedSchemaId": 1}, "schema", false))
        .await?;
    events
        .create_index(index(
            doc! {"EventStream": 1, "EventStreamNumber": 1},
            "stream_number",
            true,
        ))
        .await?;

    let assets: Collection<Document> = main.collection("States_Assets");
    assets.drop().await?;
    assets
        .insert_many((0..3).map(|i| {
            doc! {"_id": format!("asset-{i}"), "FileName": format!("image-{i}.png"), "FileSize": 1024 * (i + 1), "IndexedAppId": "app-1"}
        }))
        .await?;

    println!(
        "seeded {}.{} with {} documents at version {} (main database {})",
        s.content_database,
        contents.name(),
        s.documents,
        s.version,
        s.database
    );
    // Dropping a live client at process exit races its connection pool's tasks (the driver
    // panics with SendError); shut it down first.
    client.shutdown().await;
    Ok(())
}

fn index(keys: Document, name: &str, unique: bool) -> IndexModel {
    IndexModel::builder()
        .keys(keys)
        .options(
            IndexOptions::builder()
                .name(name.to_owned())
                .unique(unique)
                .build(),
        )
        .build()
}

fn content_doc(i: u64, now: DateTime) -> Document {
    let id = format!("content-{i:06}");
    doc! {
        "_id": &id,
        "IndexedAppId": "app-1",
        "IndexedSchemaId": if i.is_multiple_of(3) { "schema-pages" } else { "schema-blog" },
        "Status": if i.is_multiple_of(4) { "Draft" } else { "Published" },
        "IsDeleted": false,
        "Version": i64::try_from(i % 7).unwrap_or(0),
        "Created": now,
        "LastModified": now,
        "Data": {
            "title": {"iv": format!("Post number {i}")},
            "slug": {"iv": format!("post-{i}")},
            "body": {"iv": "Lorem ipsum dolor sit amet, consectetur adipiscing elit."},
            "tags": {"iv": ["news", if i.is_multiple_of(2) { "even" } else { "odd" }]},
        },
    }
}

fn event_doc(i: u64, now: DateTime) -> Document {
    doc! {
        "_id": format!("event-{i:06}"),
        "EventStream": format!("content-app-1--content-{i:06}"),
        "EventStreamNumber": 0_i64,
        "Timestamp": now,
        "Type": "ContentCreatedEvent",
        "Payload": format!("{{\"title\":\"Post number {i}\"}}"),
    }
}
