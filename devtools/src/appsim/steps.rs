//! One migration step: like Squidex rebuilding its snapshots into a new numbered collection,
//! step `v` copies `States_Contents_All{v-1}` into `States_Contents_All{v}` (documents get a
//! `schemaVersion: v` field, all original fields kept; indexes copied) and leaves the old
//! collection in place for rollback. Plain reads and batched inserts, no `$out`, so the work
//! takes time proportional to the data, as a real migration does.

use futures::TryStreamExt;
use mongodb::{
    Database, IndexModel,
    bson::{Document, doc},
    options::IndexOptions,
};

pub const CONTENTS_PREFIX: &str = "States_Contents_All";
const BATCH: usize = 500;

pub fn contents_collection(version: u32) -> String {
    format!("{CONTENTS_PREFIX}{version}")
}

/// The generation number of a contents collection name (`States_Contents_All` alone is the
/// first generation, as in Squidex where the unnumbered collection predates `…2`).
pub fn generation(name: &str) -> Option<u32> {
    let suffix = name.strip_prefix(CONTENTS_PREFIX)?;
    if suffix.is_empty() {
        Some(1)
    } else {
        suffix.parse().ok()
    }
}

/// The collection step `target` reads: the previous generation if present, else the highest
/// older one; `None` when there is none (the step then creates an empty collection).
pub fn pick_source(names: &[String], target: u32) -> Option<String> {
    let previous = contents_collection(target.saturating_sub(1));
    if names.contains(&previous) {
        return Some(previous);
    }
    names
        .iter()
        .filter_map(|n| generation(n).filter(|g| *g < target).map(|g| (g, n)))
        .max()
        .map(|(_, n)| n.clone())
}

/// Performs step `target` on the content database; returns the number of documents copied.
/// Re-running a step (after a crash) starts the target collection from scratch.
pub async fn rebuild_contents(content: &Database, target: u32) -> mongodb::error::Result<u64> {
    let names = content.list_collection_names().await?;
    let target_name = contents_collection(target);
    if names.contains(&target_name) {
        content.collection::<Document>(&target_name).drop().await?;
    }
    content.create_collection(&target_name).await?;
    let Some(source_name) = pick_source(&names, target) else {
        return Ok(0);
    };
    let source = content.collection::<Document>(&source_name);
    let dest = content.collection::<Document>(&target_name);

    let mut cursor = source
        .find(doc! {})
        .batch_size(u32::try_from(BATCH).unwrap_or(500))
        .await?;
    let mut batch = Vec::with_capacity(BATCH);
    let mut copied = 0u64;
    while let Some(mut d) = cursor.try_next().await? {
        d.insert("schemaVersion", i64::from(target));
        batch.push(d);
        if batch.len() == BATCH {
            copied += batch.len() as u64;
            dest.insert_many(std::mem::take(&mut batch)).await?;
        }
    }
    if !batch.is_empty() {
        copied += batch.len() as u64;
        dest.insert_many(batch).await?;
    }

    let mut indexes = source.list_indexes().await?;
    while let Some(index) = indexes.try_next().await? {
        let name = index.options.as_ref().and_then(|o| o.name.clone());
        if name.as_deref() == Some("_id_") {
            continue;
        }
        let old = index.options.unwrap_or_default();
        let options = IndexOptions::builder()
            .name(name)
            .unique(old.unique)
            .sparse(old.sparse)
            .partial_filter_expression(old.partial_filter_expression)
            .expire_after(old.expire_after)
            .build();
        dest.create_index(
            IndexModel::builder()
                .keys(index.keys)
                .options(options)
                .build(),
        )
        .await?;
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn picks_previous_generation() {
        let n = names(&["Events", "States_Contents_All1", "States_Contents_All2"]);
        assert_eq!(pick_source(&n, 3).as_deref(), Some("States_Contents_All2"));
        assert_eq!(pick_source(&n, 2).as_deref(), Some("States_Contents_All1"));
    }

    #[test]
    fn falls_back_to_highest_older_or_none() {
        let n = names(&[
            "States_Contents_All",
            "States_Contents_All3",
            "States_Contents_All9",
        ]);
        assert_eq!(pick_source(&n, 6).as_deref(), Some("States_Contents_All3"));
        assert_eq!(pick_source(&n, 3).as_deref(), Some("States_Contents_All"));
        assert_eq!(
            pick_source(&names(&["Events", "States_Contents_Allx"]), 2),
            None
        );
        assert_eq!(pick_source(&[], 1), None);
    }
}
