//! The checker: from the write log, what each item must look like now, and whether the app
//! (or a database) shows it so. Per item the writes are strictly ordered (one writer, one
//! write at a time), so the final state is exact: after an acknowledged insert or update of
//! version `k` the item is present with a version ≥ `k`, after an acknowledged delete it is
//! absent. A write in doubt (sent, never answered) may or may not have happened; it is the
//! item's last write (the writer leaves the item alone afterwards), so both outcomes pass.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use futures::{StreamExt, TryStreamExt};
use mongodb::bson::{Bson, Document, doc};
use serde::Serialize;

use super::endpoints::{self, Target};
use super::http;
use super::log::{Op, Outcome, Record};

/// What the log says of one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    /// The state after its last acknowledged write (None: no write of it was acknowledged).
    pub acked: Option<Acked>,
    /// Its last write, when that one is in doubt.
    pub in_doubt: Option<(Op, u64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acked {
    /// Present, with at least this version.
    Present(u64),
    Deleted,
}

/// What was found of one item: its version when present (None if it carries none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    Present(Option<u64>),
    Absent,
}

/// Each written item's expectation, by id. Refused, never-sent and unexpected writes
/// changed nothing and are skipped.
pub fn expected(records: &[Record]) -> BTreeMap<String, Expectation> {
    let mut out: BTreeMap<String, Expectation> = BTreeMap::new();
    for r in records {
        if !matches!(r.outcome, Outcome::Acked | Outcome::InDoubt) {
            continue;
        }
        let e = out.entry(r.id.clone()).or_insert(Expectation {
            acked: None,
            in_doubt: None,
        });
        if r.outcome == Outcome::InDoubt {
            e.in_doubt = Some((r.op, r.v));
            continue;
        }
        e.acked = Some(match r.op {
            Op::Insert | Op::Update => Acked::Present(r.v),
            Op::Delete => Acked::Deleted,
        });
        // A write acknowledged after one in doubt (the log is per item ordered): the doubt
        // is settled, whatever it was.
        e.in_doubt = None;
    }
    out
}

/// Why an item's acknowledged state is not what was found; None when it is.
pub fn judge(e: &Expectation, found: Observed) -> Option<String> {
    match (e.acked, found) {
        (None, _) | (Some(Acked::Deleted), Observed::Absent) => None,
        (Some(Acked::Present(k)), Observed::Present(Some(v))) if v >= k => None,
        (Some(Acked::Present(k)), Observed::Present(v)) => Some(format!(
            "acknowledged at version {k}, found at version {}",
            v.map_or("(none)".to_owned(), |v| v.to_string())
        )),
        (Some(Acked::Present(_)), Observed::Absent)
            if matches!(e.in_doubt, Some((Op::Delete, _))) =>
        {
            None
        }
        (Some(Acked::Present(k)), Observed::Absent) => {
            Some(format!("acknowledged at version {k}, absent"))
        }
        (Some(Acked::Deleted), Observed::Present(v)) => Some(format!(
            "acknowledged deleted, present at version {}",
            v.map_or("(none)".to_owned(), |v| v.to_string())
        )),
    }
}

/// One item whose acknowledged state is not there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lost {
    pub id: String,
    pub why: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Acknowledged writes in the log.
    pub acked: u64,
    /// Writes in doubt in the log.
    pub in_doubt: u64,
    /// Items checked (any acknowledged or in-doubt write).
    pub items: u64,
    /// Items found present.
    pub present: u64,
    /// Items whose last acknowledged write was a delete.
    pub deleted: u64,
    /// Items whose acknowledged state is not there: must be empty.
    pub lost: Vec<Lost>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "writes acknowledged: {}, acknowledged writes lost: {} (items checked: {}, present: {}, deleted: {}; writes in doubt: {})",
            self.acked,
            self.lost.len(),
            self.items,
            self.present,
            self.deleted,
            self.in_doubt
        )?;
        for l in self.lost.iter().take(20) {
            write!(f, "\n  lost {}: {}", l.id, l.why)?;
        }
        if self.lost.len() > 20 {
            write!(f, "\n  … and {} more", self.lost.len() - 20)?;
        }
        Ok(())
    }
}

/// Compares the log's expectations with what was found (`found` has an entry per item).
pub fn report(records: &[Record], found: &BTreeMap<String, Observed>) -> Report {
    let exp = expected(records);
    let count = |o: Outcome| records.iter().filter(|r| r.outcome == o).count() as u64;
    let mut rep = Report {
        acked: count(Outcome::Acked),
        in_doubt: count(Outcome::InDoubt),
        items: exp.len() as u64,
        ..Report::default()
    };
    for (id, e) in &exp {
        let seen = found.get(id).copied().unwrap_or(Observed::Absent);
        if matches!(seen, Observed::Present(_)) {
            rep.present += 1;
        }
        if e.acked == Some(Acked::Deleted) {
            rep.deleted += 1;
        }
        if let Some(why) = judge(e, seen) {
            rep.lost.push(Lost {
                id: id.clone(),
                why,
            });
        }
    }
    rep
}

/// The version field of an item as the load writes it.
fn version(v: Option<&Bson>) -> Option<u64> {
    match v? {
        Bson::Int32(n) => u64::try_from(*n).ok(),
        Bson::Int64(n) => u64::try_from(*n).ok(),
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Bson::Double(n) if *n >= 0.0 => Some(*n as u64),
        _ => None,
    }
}

const HTTP_ATTEMPTS: u32 = 10;
const HTTP_CONCURRENCY: usize = 8;

/// Reads every item through the app, as its users would (`GET /api/contents/{id}` on the
/// pods the Service selects now, i.e. the data the version holding the traffic serves).
/// An item that cannot be read (no ready pod, 5xx, no answer) after a few attempts (the
/// pods re-resolved from the third) makes the check fail with an error, never counts as lost.
pub async fn check_http(
    client: &kube::Client,
    target: &Target,
    records: &[Record],
) -> anyhow::Result<Report> {
    let mut eps = vec![];
    for _ in 0..60 {
        eps = endpoints::resolve(client, target).await?;
        if !eps.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    anyhow::ensure!(
        !eps.is_empty(),
        "no ready pod behind Service {}/{} to check through",
        target.namespace,
        target.service
    );
    let ids: Vec<String> = expected(records).into_keys().collect();
    let first = &eps;
    let found: BTreeMap<String, Observed> = futures::stream::iter(ids.into_iter().enumerate())
        .map(|(i, id)| async move {
            let path = format!("/api/contents/{id}");
            let mut eps = first.clone();
            let mut last = String::new();
            for attempt in 0..HTTP_ATTEMPTS {
                if attempt >= 2 {
                    // The pods may have changed under the check (a restart, a rollout).
                    if let Ok(now) = endpoints::resolve(client, target).await
                        && !now.is_empty()
                    {
                        eps = now;
                    }
                }
                let ep = &eps[(i + attempt as usize) % eps.len()];
                match http::request(ep.addr, "GET", &path, None, Duration::from_secs(5)).await {
                    Ok(r) if r.status == 200 => {
                        let v = serde_json::from_str::<serde_json::Value>(&r.body)
                            .ok()
                            .and_then(|b| b.get("v").and_then(serde_json::Value::as_u64));
                        return Ok((id, Observed::Present(v)));
                    }
                    Ok(r) if r.status == 404 => return Ok((id, Observed::Absent)),
                    Ok(r) => last = format!("{} answered {}: {}", ep.pod, r.status, r.body.trim()),
                    Err(e) => last = format!("{}: {}", ep.pod, e.message),
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            anyhow::bail!("GET {path}: {last}")
        })
        .buffer_unordered(HTTP_CONCURRENCY)
        .try_collect()
        .await?;
    Ok(report(records, &found))
}

/// Reads every item from `collection` of a database directly (behind the app's back).
pub async fn check_database(
    db: &mongodb::Database,
    collection: &str,
    records: &[Record],
) -> anyhow::Result<Report> {
    let ids: Vec<String> = expected(records).into_keys().collect();
    let coll = db.collection::<Document>(collection);
    let mut found = BTreeMap::new();
    for chunk in ids.chunks(500) {
        let mut cursor = coll
            .find(doc! {"_id": {"$in": chunk}})
            .projection(doc! {"v": 1})
            .await
            .with_context(|| format!("reading {}.{collection}", db.name()))?;
        while let Some(d) = cursor.try_next().await? {
            if let Ok(id) = d.get_str("_id") {
                found.insert(id.to_owned(), Observed::Present(version(d.get("v"))));
            }
        }
    }
    Ok(report(records, &found))
}

/// The contents collection the newest schema version of a database serves from (the highest
/// `States_Contents_All<N>`).
pub async fn contents_collection(db: &mongodb::Database) -> anyhow::Result<String> {
    let names = db.list_collection_names().await?;
    names
        .into_iter()
        .filter_map(|n| crate::appsim::steps::generation(&n).map(|g| (g, n)))
        .max()
        .map(|(_, n)| n)
        .with_context(|| format!("no contents collection in {}", db.name()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(op: Op, id: &str, v: u64, outcome: Outcome) -> Record {
        Record {
            op,
            id: id.into(),
            v,
            outcome,
            status: None,
            sent_ms: 0,
            done_ms: 0,
            pod: None,
            writer: 0,
            error: None,
        }
    }

    use Observed::{Absent, Present};
    use Op::{Delete, Insert, Update};
    use Outcome::{Acked, Failed, InDoubt, Refused, Unexpected};

    #[test]
    fn the_last_acknowledged_write_decides() {
        let log = [
            rec(Insert, "a", 1, Acked),
            rec(Update, "a", 2, Acked),
            rec(Update, "a", 3, Refused),
            rec(Insert, "b", 1, Acked),
            rec(Delete, "b", 2, Acked),
            rec(Insert, "c", 1, Failed),
            rec(Insert, "d", 1, Acked),
            rec(Update, "d", 2, Unexpected),
        ];
        let exp = expected(&log);
        assert_eq!(exp.len(), 3, "c was never written: {exp:?}");
        assert_eq!(exp["a"].acked, Some(super::Acked::Present(2)));
        assert_eq!(exp["b"].acked, Some(super::Acked::Deleted));
        assert_eq!(exp["d"].acked, Some(super::Acked::Present(1)));

        let table: [(&str, Observed, bool); 8] = [
            ("a", Present(Some(2)), true),
            ("a", Present(Some(3)), true),
            ("a", Present(Some(1)), false),
            ("a", Present(None), false),
            ("a", Absent, false),
            ("b", Absent, true),
            ("b", Present(Some(1)), false),
            ("d", Present(Some(1)), true),
        ];
        for (id, seen, ok) in table {
            assert_eq!(judge(&exp[id], seen).is_none(), ok, "{id} {seen:?}");
        }
    }

    #[test]
    fn a_write_in_doubt_passes_either_way() {
        let log = [
            rec(Insert, "a", 1, InDoubt),
            rec(Insert, "b", 1, Acked),
            rec(Delete, "b", 2, InDoubt),
            rec(Insert, "c", 1, Acked),
            rec(Update, "c", 2, InDoubt),
        ];
        let exp = expected(&log);
        for (id, seen, ok) in [
            ("a", Absent, true),
            ("a", Present(Some(1)), true),
            ("b", Absent, true),
            ("b", Present(Some(1)), true),
            ("c", Present(Some(1)), true),
            ("c", Present(Some(2)), true),
            ("c", Absent, false),
        ] {
            assert_eq!(judge(&exp[id], seen).is_none(), ok, "{id} {seen:?}");
        }
    }

    #[test]
    fn a_report_counts_and_names_what_is_lost() {
        let log = [
            rec(Insert, "a", 1, Acked),
            rec(Insert, "b", 1, Acked),
            rec(Delete, "b", 2, Acked),
            rec(Insert, "c", 1, InDoubt),
        ];
        let found = BTreeMap::from([("c".to_owned(), Present(Some(1)))]);
        let r = report(&log, &found);
        assert_eq!(
            (r.acked, r.in_doubt, r.items, r.present, r.deleted),
            (3, 1, 3, 1, 1)
        );
        assert_eq!(
            r.lost,
            vec![Lost {
                id: "a".into(),
                why: "acknowledged at version 1, absent".into()
            }]
        );
        assert!(
            r.to_string()
                .starts_with("writes acknowledged: 3, acknowledged writes lost: 1")
        );
    }
}
