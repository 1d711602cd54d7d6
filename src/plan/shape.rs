//! A database's shape: what it holds besides its documents, and must hold the same in a
//! clone: each collection's type and options (validator, collation, capped size and max,
//! clustered index, time series), each view's `viewOn` and pipeline, and each collection's
//! index specs. Pure: `mongo::shape` reads it from the server, normalized; here it is compared,
//! fingerprinted for status and turned into sentences where two shapes differ.
//!
//! Normalized means: the keys of options and index specs are compared as sets, nested ones
//! included (their order is not part of the shape), except in an index's `key` and a view's
//! `pipeline`, where order means something and is kept; `uuid`, an index's `v`, `ns` and
//! `background` are left out, and every number is compared by value (an integral double is
//! the integer).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use crate::crd::ShapeDigest;

/// Collections and views by `database.name`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Shape {
    pub collections: BTreeMap<String, CollectionShape>,
}

/// One collection or view.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CollectionShape {
    /// As `listCollections` says: `collection`, `view` or `timeseries`.
    pub kind: String,
    /// The options it was created with (a view's are `viewOn` and `pipeline`).
    pub options: BTreeMap<String, Value>,
    /// Index specs by name, without the name itself (none for a view).
    pub indexes: BTreeMap<String, BTreeMap<String, Value>>,
}

impl CollectionShape {
    pub fn is_view(&self) -> bool {
        self.kind == "view"
    }
}

/// How long one value may be in a sentence: a validator can be kilobytes.
const VALUE_CHARS: usize = 80;

impl Shape {
    /// The same shape with each database renamed by `mapping` (unchanged when it has none):
    /// a clone's shape under its sources' names, to compare with theirs.
    pub fn renamed(&self, mapping: &BTreeMap<String, String>) -> Shape {
        let collections = self
            .collections
            .iter()
            .map(|(ns, c)| {
                let ns = match ns.split_once('.') {
                    Some((db, name)) => {
                        format!("{}.{name}", mapping.get(db).map_or(db, String::as_str))
                    }
                    None => ns.clone(),
                };
                (ns, c.clone())
            })
            .collect();
        Shape { collections }
    }

    /// Counts and a SHA-256 of the whole shape as canonical JSON: equal shapes, equal digests.
    pub fn digest(&self) -> ShapeDigest {
        use sha2::{Digest, Sha256};
        let json = serde_json::to_vec(self).unwrap_or_default();
        let hash = Sha256::digest(&json);
        let views = self.collections.values().filter(|c| c.is_view()).count();
        ShapeDigest {
            collections: (self.collections.len() - views) as i64,
            views: views as i64,
            indexes: self
                .collections
                .values()
                .map(|c| c.indexes.len() as i64)
                .sum(),
            sha256: hash.iter().map(|b| format!("{b:02x}")).collect(),
        }
    }

    /// True when this shape is the one `digest` was made of.
    pub fn matches(&self, digest: &ShapeDigest) -> bool {
        self.digest() == *digest
    }

    /// How `clone` differs from this shape (the source's), one short sentence per
    /// difference, naming the collection or view, the index and the option; empty when equal.
    pub fn diff(&self, clone: &Shape) -> Vec<String> {
        let mut out = Vec::new();
        let names: BTreeSet<&String> = self
            .collections
            .keys()
            .chain(clone.collections.keys())
            .collect();
        for ns in names {
            match (self.collections.get(ns), clone.collections.get(ns)) {
                (Some(s), None) => out.push(format!("{ns}: {} missing in the clone", s.what())),
                (None, Some(c)) => out.push(format!(
                    "{ns}: {} in the clone but not in the source",
                    c.what()
                )),
                (Some(s), Some(c)) if s.kind != c.kind => out.push(format!(
                    "{ns}: {} in the source, {} in the clone",
                    s.what(),
                    c.what()
                )),
                (Some(s), Some(c)) => {
                    let opts = diff_map(&s.options, &c.options);
                    for (key, sv, cv) in opts {
                        out.push(format!(
                            "{ns}: option {key} differs (source {sv}, clone {cv})"
                        ));
                    }
                    let indexes: BTreeSet<&String> =
                        s.indexes.keys().chain(c.indexes.keys()).collect();
                    for name in indexes {
                        match (s.indexes.get(name), c.indexes.get(name)) {
                            (Some(_), None) => {
                                out.push(format!("{ns}: index {name} missing in the clone"))
                            }
                            (None, Some(_)) => out.push(format!(
                                "{ns}: index {name} in the clone but not in the source"
                            )),
                            (Some(si), Some(ci)) => {
                                for (key, sv, cv) in diff_map(si, ci) {
                                    out.push(format!(
                                        "{ns}: index {name}: {key} differs (source {sv}, clone {cv})"
                                    ));
                                }
                            }
                            (None, None) => {}
                        }
                    }
                }
                (None, None) => {}
            }
        }
        out
    }
}

impl CollectionShape {
    fn what(&self) -> &str {
        match self.kind.as_str() {
            "view" => "a view",
            "timeseries" => "a time series collection",
            _ => "a collection",
        }
    }
}

/// The keys whose values differ, with both values shown (bounded; `absent` when missing).
fn diff_map(
    source: &BTreeMap<String, Value>,
    clone: &BTreeMap<String, Value>,
) -> Vec<(String, String, String)> {
    let keys: BTreeSet<&String> = source.keys().chain(clone.keys()).collect();
    keys.into_iter()
        // As text: nested keys keep their order (an index key {b, a} is not {a, b}).
        .filter(|k| show_all(source.get(*k)) != show_all(clone.get(*k)))
        .map(|k| (k.clone(), show(source.get(k)), show(clone.get(k))))
        .collect()
}

fn show_all(v: Option<&Value>) -> Option<String> {
    v.map(Value::to_string)
}

fn show(v: Option<&Value>) -> String {
    let Some(v) = v else {
        return "absent".into();
    };
    let s = v.to_string();
    if s.chars().count() <= VALUE_CHARS {
        s
    } else {
        format!("{}…", s.chars().take(VALUE_CHARS).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(v: Value) -> BTreeMap<String, Value> {
        v.as_object()
            .expect("object")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn coll(kind: &str, options: Value, indexes: &[(&str, Value)]) -> CollectionShape {
        CollectionShape {
            kind: kind.into(),
            options: map(options),
            indexes: indexes
                .iter()
                .map(|(n, v)| (n.to_string(), map(v.clone())))
                .collect(),
        }
    }

    fn squidex() -> Shape {
        let id = ("_id_", json!({"key": {"_id": 1}}));
        Shape {
            collections: BTreeMap::from([
                (
                    "Squidex.Events".to_string(),
                    coll(
                        "collection",
                        json!({"validator": {"$jsonSchema": {"required": ["a"]}}, "validationLevel": "moderate"}),
                        &[
                            id.clone(),
                            ("a_1", json!({"key": {"a": 1}, "unique": true})),
                            ("b_1_a_-1", json!({"key": {"b": 1, "a": -1}})),
                            ("t_1", json!({"key": {"t": 1}, "expireAfterSeconds": 3600})),
                        ],
                    ),
                ),
                (
                    "Squidex.Log".to_string(),
                    coll(
                        "collection",
                        json!({"capped": true, "size": 100000, "max": 5}),
                        &[id],
                    ),
                ),
                (
                    "Squidex.Recent".to_string(),
                    coll(
                        "view",
                        json!({"viewOn": "Events", "pipeline": [{"$match": {"a": {"$gt": 1}}}]}),
                        &[],
                    ),
                ),
            ]),
        }
    }

    #[test]
    fn a_renamed_clone_of_the_same_shape_has_the_same_digest() {
        let source = squidex();
        let clone = source.renamed(&BTreeMap::from([(
            "Squidex".to_string(),
            "Squidex-v7".to_string(),
        )]));
        assert!(clone.collections.contains_key("Squidex-v7.Events"));
        assert_ne!(clone.digest(), source.digest());
        let back = clone.renamed(&BTreeMap::from([(
            "Squidex-v7".to_string(),
            "Squidex".to_string(),
        )]));
        assert!(back.matches(&source.digest()));
        assert!(source.diff(&back).is_empty());
        let d = source.digest();
        assert_eq!((d.collections, d.views, d.indexes), (2, 1, 5));
        assert_eq!(d.sha256.len(), 64);
    }

    #[test]
    fn every_difference_is_named() {
        let source = squidex();
        #[rustfmt::skip]
        type Edit = fn(&mut Shape);
        let rows: Vec<(&str, Edit, &str)> = vec![
            (
                "an index dropped",
                |s| {
                    s.collections
                        .get_mut("Squidex.Events")
                        .unwrap()
                        .indexes
                        .remove("a_1");
                },
                "Squidex.Events: index a_1 missing in the clone",
            ),
            (
                "an index no longer unique",
                |s| {
                    s.collections
                        .get_mut("Squidex.Events")
                        .unwrap()
                        .indexes
                        .get_mut("a_1")
                        .unwrap()
                        .remove("unique");
                },
                "Squidex.Events: index a_1: unique differs (source true, clone absent)",
            ),
            (
                "a compound index in another order",
                |s| {
                    s.collections
                        .get_mut("Squidex.Events")
                        .unwrap()
                        .indexes
                        .insert("b_1_a_-1".into(), map(json!({"key": {"a": -1, "b": 1}})));
                },
                "Squidex.Events: index b_1_a_-1: key differs (source {\"b\":1,\"a\":-1}, clone {\"a\":-1,\"b\":1})",
            ),
            (
                "the validator lost",
                |s| {
                    s.collections
                        .get_mut("Squidex.Events")
                        .unwrap()
                        .options
                        .clear();
                },
                "Squidex.Events: option validationLevel differs (source \"moderate\", clone absent)",
            ),
            (
                "not capped",
                |s| {
                    s.collections
                        .get_mut("Squidex.Log")
                        .unwrap()
                        .options
                        .clear();
                },
                "Squidex.Log: option capped differs (source true, clone absent)",
            ),
            (
                "a view copied as a collection",
                |s| {
                    s.collections.insert(
                        "Squidex.Recent".into(),
                        coll(
                            "collection",
                            json!({}),
                            &[("_id_", json!({"key": {"_id": 1}}))],
                        ),
                    );
                },
                "Squidex.Recent: a view in the source, a collection in the clone",
            ),
            (
                "a view missing",
                |s| {
                    s.collections.remove("Squidex.Recent");
                },
                "Squidex.Recent: a view missing in the clone",
            ),
            (
                "an extra collection",
                |s| {
                    s.collections
                        .insert("Squidex.tmp".into(), coll("collection", json!({}), &[]));
                },
                "Squidex.tmp: a collection in the clone but not in the source",
            ),
        ];
        for (what, edit, want) in rows {
            let mut clone = source.clone();
            edit(&mut clone);
            assert!(!clone.matches(&source.digest()), "{what}: digest");
            let diff = source.diff(&clone);
            assert!(diff.iter().any(|d| d == want), "{what}: {diff:?}");
        }
    }

    #[test]
    fn option_order_is_not_part_of_the_shape_and_long_values_are_cut() {
        let a = coll("collection", json!({"capped": true, "size": 1}), &[]);
        let b = coll("collection", json!({"size": 1, "capped": true}), &[]);
        assert_eq!(a, b);
        let long = json!({"validator": {"x": "y".repeat(500)}});
        let source = Shape {
            collections: BTreeMap::from([("d.c".to_string(), coll("collection", long, &[]))]),
        };
        let clone = Shape {
            collections: BTreeMap::from([("d.c".to_string(), coll("collection", json!({}), &[]))]),
        };
        let diff = source.diff(&clone);
        assert_eq!(diff.len(), 1);
        assert!(diff[0].len() < 200, "{}", diff[0]);
    }
}
