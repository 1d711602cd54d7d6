//! Runs of document events, applied as one batch (pure). A stream's events are cut into units
//! applied in stream order:
//! - a run: consecutive document events (upserts, deletes, and skipped events between them),
//!   ended when the stream has nothing more to return now, at [`MAX_RUN`] events, or by an
//!   event that must be applied alone;
//! - alone: a collection or database change (create, indexes, drop, rename, dropDatabase), a
//!   marker, an invalidate. The run before it is applied first.
//!
//! A run comes to one set of writes per collection ([`coalesce`]): the last event per `_id`
//! wins. That equals applying the events one by one: an upsert carries the whole document (the
//! lookup's current one, or the inserted one) and replaces whatever the clone holds, a delete
//! deletes; so only the last event of an `_id` decides its state after the run.

use std::collections::HashMap;

use mongodb::bson::{Bson, Document};
use mongodb::change_stream::event::ResumeToken;

use super::change::Change;
use super::token::OpTime;

/// Events in one run at most.
pub const MAX_RUN: usize = 1000;

/// One event as the stream returned it.
#[derive(Clone, Debug)]
pub struct Read {
    pub change: Change,
    /// The stream's token after the event (recorded once the event is applied).
    pub token: Option<ResumeToken>,
    pub at: Option<OpTime>,
}

/// What to apply next, in stream order.
#[derive(Debug)]
pub enum Unit {
    Run(Vec<Read>),
    Alone(Box<Read>),
}

/// Whether an event may be part of a run (else it is applied alone).
pub fn in_run(c: &Change) -> bool {
    matches!(
        c,
        Change::Upsert { .. } | Change::Delete { .. } | Change::Skip(_)
    )
}

/// Cuts a stream's events into units.
#[derive(Debug)]
pub struct Batcher {
    run: Vec<Read>,
    max: usize,
}

impl Batcher {
    pub fn new(max: usize) -> Batcher {
        Batcher {
            run: Vec::new(),
            max: max.max(1),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.run.is_empty()
    }

    /// Takes the next event; returns the units complete now (none while a run grows).
    pub fn push(&mut self, r: Read) -> Vec<Unit> {
        if in_run(&r.change) {
            self.run.push(r);
            if self.run.len() >= self.max {
                return self.flush().into_iter().collect();
            }
            return Vec::new();
        }
        let mut out: Vec<Unit> = self.flush().into_iter().collect();
        out.push(Unit::Alone(Box::new(r)));
        out
    }

    /// The run so far (the stream has nothing more to return now, or the run is old enough).
    pub fn flush(&mut self) -> Option<Unit> {
        (!self.run.is_empty()).then(|| Unit::Run(std::mem::take(&mut self.run)))
    }
}

/// The writes a run comes to in one collection: the `_id`s whose last event is an upsert (with
/// that document) and those whose last event is a delete, each in the order of those last
/// events.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Writes {
    pub coll: String,
    pub upserts: Vec<(Bson, Document)>,
    pub deletes: Vec<Bson>,
}

/// Per collection (in the order they first appear), the last event per `_id`.
pub fn coalesce<'a>(changes: impl IntoIterator<Item = &'a Change>) -> Vec<Writes> {
    // (collection, _id key) -> index of its last event among `last`.
    let mut latest: HashMap<(&str, String), usize> = HashMap::new();
    let mut last: Vec<Option<&Change>> = Vec::new();
    let mut colls: Vec<&str> = Vec::new();
    for c in changes {
        let (coll, id) = match c {
            Change::Upsert { coll, id, .. } | Change::Delete { coll, id } => (coll.as_str(), id),
            _ => continue,
        };
        if !colls.contains(&coll) {
            colls.push(coll);
        }
        if let Some(i) = latest.insert((coll, id_key(id)), last.len()) {
            last[i] = None;
        }
        last.push(Some(c));
    }
    colls
        .into_iter()
        .map(|name| {
            let mut w = Writes {
                coll: name.to_string(),
                ..Writes::default()
            };
            for c in last.iter().flatten() {
                match c {
                    Change::Upsert { coll, id, doc } if coll == name => {
                        w.upserts.push((id.clone(), doc.clone()));
                    }
                    Change::Delete { coll, id } if coll == name => w.deletes.push(id.clone()),
                    _ => {}
                }
            }
            w
        })
        .collect()
}

/// A key equal for `_id`s the server takes as the same document: numbers compare by value
/// (`1`, `1L` and `1.0` are one `_id`), also inside documents and arrays.
fn id_key(id: &Bson) -> String {
    fn norm(b: &Bson) -> Bson {
        match b {
            Bson::Int32(i) => Bson::Int64(i64::from(*i)),
            Bson::Double(d)
                if d.fract() == 0.0 && d.abs() < 9.0e15 && !(*d == 0.0 && d.is_sign_negative()) =>
            {
                Bson::Int64(*d as i64)
            }
            Bson::Document(d) => {
                Bson::Document(d.iter().map(|(k, v)| (k.clone(), norm(v))).collect())
            }
            Bson::Array(a) => Bson::Array(a.iter().map(norm).collect()),
            other => other.clone(),
        }
    }
    norm(id).into_canonical_extjson().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::doc;

    fn up(coll: &str, id: i32, v: i32) -> Change {
        Change::Upsert {
            coll: coll.into(),
            id: Bson::Int32(id),
            doc: doc! {"_id": id, "v": v},
        }
    }

    fn del(coll: &str, id: i32) -> Change {
        Change::Delete {
            coll: coll.into(),
            id: Bson::Int32(id),
        }
    }

    fn read(c: Change) -> Read {
        Read {
            change: c,
            token: None,
            at: None,
        }
    }

    /// A unit as letters: `R<n>` a run of n events, `A` an event alone.
    fn shape(units: &[Unit]) -> Vec<String> {
        units
            .iter()
            .map(|u| match u {
                Unit::Run(r) => format!("R{}", r.len()),
                Unit::Alone(_) => "A".to_string(),
            })
            .collect()
    }

    /// (events, `None` = the stream returned nothing, max run, units).
    type Row = (Vec<Option<Change>>, usize, Vec<&'static str>);

    #[test]
    fn runs_end_at_events_applied_alone_at_the_limit_and_when_flushed() {
        let create = || Change::Create { coll: "c".into() };
        // (events, `None` = the stream returned nothing (flush), max run) -> units in order.
        let table: Vec<Row> = vec![
            (
                vec![Some(up("a", 1, 1)), Some(up("a", 2, 1)), None],
                10,
                vec!["R2"],
            ),
            (
                vec![Some(up("a", 1, 1)), Some(create()), Some(del("a", 1)), None],
                10,
                vec!["R1", "A", "R1"],
            ),
            (vec![Some(create()), Some(create())], 10, vec!["A", "A"]),
            (
                vec![
                    Some(up("a", 1, 1)),
                    Some(Change::Marker(Bson::Int32(7))),
                    None,
                ],
                10,
                vec!["R1", "A"],
            ),
            (
                vec![
                    Some(Change::Skip("x")),
                    Some(del("a", 1)),
                    Some(Change::Invalidate),
                ],
                10,
                vec!["R2", "A"],
            ),
            (
                vec![
                    Some(up("a", 1, 1)),
                    Some(up("a", 2, 1)),
                    Some(up("a", 3, 1)),
                    Some(del("a", 4)),
                    Some(del("a", 5)),
                    None,
                ],
                2,
                vec!["R2", "R2", "R1"],
            ),
            (vec![None, Some(up("a", 1, 1)), None, None], 10, vec!["R1"]),
            (
                vec![
                    Some(up("a", 1, 1)),
                    Some(Change::DropDatabase),
                    Some(Change::Rename {
                        from: "a".into(),
                        to_coll: None,
                    }),
                    Some(Change::Drop { coll: "a".into() }),
                    Some(Change::CreateIndexes {
                        coll: "a".into(),
                        indexes: vec![],
                    }),
                    Some(Change::DropIndexes {
                        coll: "a".into(),
                        names: vec![],
                    }),
                ],
                10,
                vec!["R1", "A", "A", "A", "A", "A"],
            ),
        ];
        for (events, max, want) in table {
            let mut b = Batcher::new(max);
            let mut units = Vec::new();
            for e in events.clone() {
                match e {
                    Some(c) => units.extend(b.push(read(c))),
                    None => units.extend(b.flush()),
                }
            }
            assert_eq!(shape(&units), want, "{events:?} (max {max})");
            // Every event comes out once, in order.
            let out: Vec<Change> = units
                .into_iter()
                .flat_map(|u| match u {
                    Unit::Run(r) => r,
                    Unit::Alone(r) => vec![*r],
                })
                .map(|r| r.change)
                .collect();
            let sent: Vec<Change> = events.into_iter().flatten().collect();
            if b.is_empty() {
                assert_eq!(out, sent);
            }
        }
    }

    #[test]
    fn the_last_event_per_id_wins_per_collection() {
        let doc_of = |id: i32, v: i32| (Bson::Int32(id), doc! {"_id": id, "v": v});
        // (events) -> writes per collection.
        let table: Vec<(Vec<Change>, Vec<Writes>)> = vec![
            (vec![], vec![]),
            (
                vec![up("a", 1, 1), up("a", 1, 2), up("a", 2, 1)],
                vec![Writes {
                    coll: "a".into(),
                    upserts: vec![doc_of(1, 2), doc_of(2, 1)],
                    deletes: vec![],
                }],
            ),
            // Inserted then deleted: a delete; deleted then inserted again: the upsert.
            (
                vec![up("a", 1, 1), del("a", 1), del("a", 2), up("a", 2, 5)],
                vec![Writes {
                    coll: "a".into(),
                    upserts: vec![doc_of(2, 5)],
                    deletes: vec![Bson::Int32(1)],
                }],
            ),
            // The same _id in two collections is two documents; skips are no writes.
            (
                vec![
                    up("b", 1, 1),
                    Change::Skip("x"),
                    up("a", 1, 2),
                    del("b", 1),
                    up("a", 3, 3),
                    up("a", 1, 4),
                ],
                vec![
                    Writes {
                        coll: "b".into(),
                        upserts: vec![],
                        deletes: vec![Bson::Int32(1)],
                    },
                    Writes {
                        coll: "a".into(),
                        upserts: vec![doc_of(3, 3), doc_of(1, 4)],
                        deletes: vec![],
                    },
                ],
            ),
            // 1, 1L and 1.0 are one _id to the server.
            (
                vec![
                    up("a", 1, 1),
                    Change::Delete {
                        coll: "a".into(),
                        id: Bson::Int64(1),
                    },
                    Change::Delete {
                        coll: "a".into(),
                        id: Bson::Double(1.5),
                    },
                    Change::Upsert {
                        coll: "a".into(),
                        id: Bson::Double(1.0),
                        doc: doc! {"_id": 1.0, "v": 9},
                    },
                    Change::Delete {
                        coll: "a".into(),
                        id: Bson::String("1".into()),
                    },
                ],
                vec![Writes {
                    coll: "a".into(),
                    upserts: vec![(Bson::Double(1.0), doc! {"_id": 1.0, "v": 9})],
                    deletes: vec![Bson::Double(1.5), Bson::String("1".into())],
                }],
            ),
        ];
        for (events, want) in table {
            assert_eq!(coalesce(&events), want, "{events:?}");
        }
    }
}
