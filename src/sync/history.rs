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

/// The oplog's bounds; `None` when it is empty.
pub async fn oplog(client: &mongodb::Client) -> Result<Option<Oplog>, mongodb::error::Error> {
    let coll = client.database("local").collection::<Document>("oplog.rs");
    let end = |dir: i32| {
        coll.find_one(doc! {})
            .projection(doc! {"ts": 1, "_id": 0})
            .sort(doc! {"ts": dir})
    };
    let (Some(first), Some(last)) = (end(1).await?, end(-1).await?) else {
        return Ok(None);
    };
    let (Ok(oldest), Ok(newest)) = (first.get_timestamp("ts"), last.get_timestamp("ts")) else {
        return Ok(None);
    };
    let entries = coll.estimated_document_count().await? as i64;
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

/// Seconds between the newest entry and `position` (0 when the position is at or past it).
pub fn lag_seconds(oplog: Option<&Oplog>, position: OpTime) -> i64 {
    oplog.map_or(0, |o| i64::from(o.newest.t.saturating_sub(position.t)))
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
    fn lag_is_the_newest_entry_minus_the_position() {
        let o = Oplog {
            oldest: at(100, 5),
            newest: at(200, 1),
            entries: 50,
        };
        assert_eq!(lag_seconds(Some(&o), at(190, 9)), 10);
        assert_eq!(lag_seconds(Some(&o), at(205, 0)), 0);
        assert_eq!(lag_seconds(None, at(1, 0)), 0);
    }
}
