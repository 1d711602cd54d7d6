//! Does the server's history still reach where a stream must start? Read from the oplog
//! (`local.oplog.rs`, its oldest and newest entries by `ts`), because SecantusDB 0.5.3 does
//! not fail a change stream whose start point was pruned: it silently starts at the oldest
//! entry it still holds (checked: `startAtOperationTime` and `resumeAfter` both do).

use mongodb::bson::{Document, doc};

use super::state::HistoryLost;
use super::token::OpTime;

/// The oldest and newest entries of the oplog and how many it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Oplog {
    pub oldest: OpTime,
    pub newest: OpTime,
    pub entries: i64,
}

/// The oplog's bounds; `None` when it is empty. Costly on SecantusDB 0.5.3: any read of
/// `local.oplog.rs` (sorted or not, filtered or not, `$natural` or not) materializes the whole
/// oplog, about 8 µs per entry (0.7 s at 76,000 entries), so this is one `$group` pass and the
/// engine runs it off the path that applies events, at an interval that grows with its cost.
pub async fn oplog(client: &mongodb::Client) -> Result<Option<Oplog>, mongodb::error::Error> {
    use futures::TryStreamExt;
    let coll = client.database("local").collection::<Document>("oplog.rs");
    let rows: Vec<Document> = coll
        .aggregate(vec![doc! {"$group": {
            "_id": null,
            "oldest": {"$min": "$ts"},
            "newest": {"$max": "$ts"},
            "entries": {"$sum": 1},
        }}])
        .await?
        .try_collect()
        .await?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let (Ok(oldest), Ok(newest)) = (row.get_timestamp("oldest"), row.get_timestamp("newest"))
    else {
        return Ok(None);
    };
    let entries = match row.get("entries") {
        Some(mongodb::bson::Bson::Int32(n)) => i64::from(*n),
        Some(mongodb::bson::Bson::Int64(n)) => *n,
        _ => 0,
    };
    Ok(Some(Oplog {
        oldest: oldest.into(),
        newest: newest.into(),
        entries,
    }))
}

/// `Err` when the oplog no longer holds `needed` (the entry at that time, or the start point,
/// is older than its oldest entry). Conservative: if the entries up to `needed` were pruned
/// but none after it, this still says lost, since nothing tells the two apart.
pub fn covers(oplog: Option<&Oplog>, source: &str, needed: OpTime) -> Result<(), HistoryLost> {
    let Some(o) = oplog else { return Ok(()) };
    if o.oldest <= needed {
        return Ok(());
    }
    let needed_seconds = i64::from(o.newest.t.saturating_sub(needed.t)).max(1);
    let held_seconds = i64::from(o.newest.t.saturating_sub(o.oldest.t)).max(1);
    // The rate it saw over what it holds, over the span it must hold; never less than one more
    // than it holds now.
    let needed_entries =
        ((o.entries * needed_seconds + held_seconds - 1) / held_seconds).max(o.entries + 1);
    Err(HistoryLost {
        source: source.to_string(),
        needed_from: needed,
        oldest: o.oldest,
        needed_seconds,
        needed_entries,
    })
}

/// Seconds from `position` to `now` (0 when the position is at or past it).
pub fn lag_seconds(now: OpTime, position: OpTime) -> i64 {
    i64::from(now.t.saturating_sub(position.t))
}

/// The reads of one change stream not yet proven complete. This server's stream silently jumps
/// over pruned history, so a read is proven complete only by an oplog check made after it:
/// if the oldest entry is then still at or before where the stream stood before the read,
/// nothing the read needed was pruned when it ran (the oldest entry only moves forward).
/// Checks are costly and run beside the stream; this tracks what they still have to prove.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unverified {
    /// Where the stream stood before the first read not yet proven; `None`: all proven.
    pub from: Option<OpTime>,
    /// Reads completed (to tell whether a read finished during a check).
    pub reads: u64,
}

impl Unverified {
    /// Something still to prove before any read (the start point, while copying).
    pub fn starting_at(at: OpTime) -> Unverified {
        Unverified {
            from: Some(at),
            reads: 0,
        }
    }

    /// A read finished that started with the stream at `before`.
    pub fn read(&mut self, before: OpTime) {
        self.from.get_or_insert(before);
        self.reads += 1;
    }

    /// A check that began when this was `seen` and the stream stood at `at` found the history
    /// intact at `seen.from`: reads finished before it began are proven; reads finished since
    /// started at or after `at`, which the next check must prove.
    pub fn proven(&mut self, seen: Unverified, at: OpTime) {
        self.from = (self.reads != seen.reads).then_some(at);
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn at(t: u32, i: u32) -> OpTime {
        OpTime { t, i }
    }

    #[test]
    fn history_covers_a_start_point_at_or_after_the_oldest_entry() {
        let o = Oplog {
            oldest: at(100, 5),
            newest: at(200, 1),
            entries: 50,
        };
        assert!(covers(Some(&o), "db", at(100, 5)).is_ok());
        assert!(covers(Some(&o), "db", at(150, 0)).is_ok());
        assert!(covers(None, "db", at(1, 0)).is_ok(), "an empty oplog");
        let lost = covers(Some(&o), "db", at(100, 4)).unwrap_err();
        assert_eq!(lost.oldest, at(100, 5));
        assert_eq!(lost.needed_seconds, 100);
        assert_eq!(lost.needed_entries, 51, "at least one more than it holds");
        let lost = covers(Some(&o), "db", at(0, 0)).unwrap_err();
        assert_eq!(lost.needed_seconds, 200);
        assert_eq!(lost.needed_entries, 100, "50 entries per 100 s, over 200 s");
        let text = lost.to_string();
        assert!(
            text.contains("200 s") && text.contains("100 entries"),
            "{text}"
        );
    }

    #[test]
    fn lag_is_now_minus_the_position() {
        assert_eq!(lag_seconds(at(200, 1), at(190, 9)), 10);
        assert_eq!(lag_seconds(at(200, 1), at(205, 0)), 0);
    }

    #[test]
    fn a_read_is_proven_only_by_a_check_that_began_after_it() {
        let mut u = Unverified::starting_at(at(10, 0));
        // A check with nothing read since it began proves everything.
        let seen = u;
        u.proven(seen, at(10, 0));
        assert_eq!(u.from, None);
        // Two reads: what must be proven starts before the first.
        u.read(at(10, 0));
        u.read(at(12, 0));
        assert_eq!(u.from, Some(at(10, 0)));
        // A check begins; a read finishes while it runs (it may have started after the
        // check read the oplog): still to prove, from where the stream stood when it began.
        let seen = u;
        u.read(at(13, 0));
        u.proven(seen, at(13, 0));
        assert_eq!(u.from, Some(at(13, 0)));
        let seen = u;
        u.proven(seen, at(14, 0));
        assert_eq!(u.from, None);
    }
}
