//! What one change event means for the clone (pure): an event of the source's change stream
//! becomes a [`Change`], applied by `apply` (alone or in a run, `batch`):
//! - insert / replace / update: replace-with-upsert by `_id` from the full document (an update
//!   whose full document is gone: the document was deleted later, and that delete follows);
//! - delete: delete by `_id`;
//! - create, createIndexes, dropIndexes, drop, rename, dropDatabase: the same in the clone;
//! - a marker of this sync (its drain or start point), an invalidate, or nothing to do.

use mongodb::bson::{Bson, Document};

use crate::mongo::{SYNC_MARKERS, is_user_collection};

#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Upsert {
        coll: String,
        id: Bson,
        doc: Document,
    },
    Delete {
        coll: String,
        id: Bson,
    },
    Create {
        coll: String,
    },
    CreateIndexes {
        coll: String,
        indexes: Vec<Document>,
    },
    DropIndexes {
        coll: String,
        names: Vec<String>,
    },
    Drop {
        coll: String,
    },
    /// `to_coll` is `None` when the collection left the database.
    Rename {
        from: String,
        to_coll: Option<String>,
    },
    DropDatabase,
    /// The stream ended (after a dropDatabase): open it again after this event.
    Invalidate,
    /// A drain marker was inserted (its `_id`).
    Marker(Bson),
    /// Nothing to do (why, for a debug log).
    Skip(&'static str),
}

/// What an event (the raw change-stream document) of database `db` means for the clone.
pub fn classify(ev: &Document, db: &str) -> Change {
    let op = ev.get_str("operationType").unwrap_or("");
    let ns = ev.get_document("ns").ok();
    let coll = ns.and_then(|n| n.get_str("coll").ok()).unwrap_or("");
    if op == "invalidate" {
        return Change::Invalidate;
    }
    if op == "dropDatabase" {
        return Change::DropDatabase;
    }
    if coll == SYNC_MARKERS {
        return match (op, ev.get_document("documentKey").ok()) {
            ("insert", Some(k)) => k
                .get("_id")
                .cloned()
                .map_or(Change::Skip("marker without _id"), Change::Marker),
            _ => Change::Skip("the sync's own markers"),
        };
    }
    if coll.is_empty() || !is_user_collection(coll) {
        return Change::Skip("not an app collection");
    }
    let coll = coll.to_string();
    let id = ev
        .get_document("documentKey")
        .ok()
        .and_then(|k| k.get("_id").cloned());
    let description = ev.get_document("operationDescription").ok();
    match op {
        "insert" | "replace" | "update" => match (ev.get_document("fullDocument").ok(), id) {
            (Some(doc), Some(id)) => Change::Upsert {
                coll,
                id,
                doc: doc.clone(),
            },
            _ => Change::Skip("no full document: deleted later, its delete follows"),
        },
        "delete" => match id {
            Some(id) => Change::Delete { coll, id },
            None => Change::Skip("delete without _id"),
        },
        "create" => Change::Create { coll },
        "createIndexes" => Change::CreateIndexes {
            coll,
            indexes: index_specs(description),
        },
        "dropIndexes" => Change::DropIndexes {
            coll,
            names: index_specs(description)
                .iter()
                .filter_map(|i| i.get_str("name").ok().map(str::to_string))
                .collect(),
        },
        "drop" => Change::Drop { coll },
        "rename" => {
            let to = ev
                .get_document("to")
                .ok()
                .or_else(|| description.and_then(|d| d.get_document("to").ok()));
            let to_coll = to
                .filter(|t| t.get_str("db").is_ok_and(|d| d == db))
                .and_then(|t| t.get_str("coll").ok())
                .map(str::to_string);
            Change::Rename {
                from: coll,
                to_coll,
            }
        }
        _ => Change::Skip("an event that does not change documents"),
    }
}

fn index_specs(description: Option<&Document>) -> Vec<Document> {
    description
        .and_then(|d| d.get_array("indexes").ok())
        .map(|a| {
            a.iter()
                .filter_map(|i| i.as_document().cloned())
                .filter(|i| i.get_str("name").is_ok_and(|n| n != "_id_"))
                .collect()
        })
        .unwrap_or_default()
}

/// Applies a data or DDL change to the clone database `clone` of source `source`.
#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::doc;

    fn ev(op: &str, coll: &str, extra: Document) -> Document {
        let mut d = doc! {"operationType": op, "ns": {"db": "src", "coll": coll}};
        d.extend(extra);
        d
    }

    #[test]
    fn document_events() {
        let full = doc! {"_id": 1, "x": 2};
        for op in ["insert", "replace", "update"] {
            assert_eq!(
                classify(
                    &ev(
                        op,
                        "a",
                        doc! {"documentKey": {"_id": 1}, "fullDocument": full.clone()}
                    ),
                    "src"
                ),
                Change::Upsert {
                    coll: "a".into(),
                    id: Bson::Int32(1),
                    doc: full.clone()
                }
            );
        }
        assert!(matches!(
            classify(
                &ev(
                    "update",
                    "a",
                    doc! {"documentKey": {"_id": 1}, "fullDocument": Bson::Null}
                ),
                "src"
            ),
            Change::Skip(_)
        ));
        assert_eq!(
            classify(&ev("delete", "a", doc! {"documentKey": {"_id": 1}}), "src"),
            Change::Delete {
                coll: "a".into(),
                id: Bson::Int32(1)
            }
        );
    }

    #[test]
    fn collection_events() {
        assert_eq!(
            classify(&ev("create", "b", doc! {}), "src"),
            Change::Create { coll: "b".into() }
        );
        assert_eq!(
            classify(&ev("drop", "b", doc! {}), "src"),
            Change::Drop { coll: "b".into() }
        );
        assert_eq!(
            classify(
                &ev(
                    "createIndexes",
                    "b",
                    doc! {"operationDescription": {"indexes": [{"v": 2, "key": {"k": 1}, "name": "k_1"}]}}
                ),
                "src"
            ),
            Change::CreateIndexes {
                coll: "b".into(),
                indexes: vec![doc! {"v": 2, "key": {"k": 1}, "name": "k_1"}]
            }
        );
        assert_eq!(
            classify(
                &ev("rename", "b", doc! {"to": {"db": "src", "coll": "c"}}),
                "src"
            ),
            Change::Rename {
                from: "b".into(),
                to_coll: Some("c".into())
            }
        );
        assert_eq!(
            classify(
                &ev(
                    "rename",
                    "b",
                    doc! {"operationDescription": {"to": {"db": "elsewhere", "coll": "c"}}}
                ),
                "src"
            ),
            Change::Rename {
                from: "b".into(),
                to_coll: None
            }
        );
        assert_eq!(
            classify(
                &doc! {"operationType": "dropDatabase", "ns": {"db": "src"}},
                "src"
            ),
            Change::DropDatabase
        );
        assert_eq!(
            classify(&doc! {"operationType": "invalidate"}, "src"),
            Change::Invalidate
        );
    }

    #[test]
    fn markers_and_other_collections() {
        assert_eq!(
            classify(
                &ev(
                    "insert",
                    SYNC_MARKERS,
                    doc! {"documentKey": {"_id": "m1"}, "fullDocument": {"_id": "m1"}}
                ),
                "src"
            ),
            Change::Marker(Bson::String("m1".into()))
        );
        assert!(matches!(
            classify(&ev("drop", SYNC_MARKERS, doc! {}), "src"),
            Change::Skip(_)
        ));
        assert!(matches!(
            classify(
                &ev(
                    "insert",
                    "system.views",
                    doc! {"documentKey": {"_id": 1}, "fullDocument": {"_id": 1}}
                ),
                "src"
            ),
            Change::Skip(_)
        ));
        assert!(matches!(
            classify(&ev("modify", "a", doc! {}), "src"),
            Change::Skip(_)
        ));
    }
}
