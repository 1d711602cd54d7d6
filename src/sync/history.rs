//! Does the server's history still reach where a stream must start? Read from the oplog
//! (`local.oplog.rs`, its oldest and newest entries by `ts`), because SecantusDB 0.5.3 does
//! not fail a change stream whose start point was pruned: it silently starts at the oldest
//! entry it still holds (checked: `startAtOperationTime` and `resumeAfter` both do).

use mongodb::bson::{Document, doc};
use mongodb::change_stream::event::ResumeToken;

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

/// An event of a stream that a proof stream can show still held by the oplog (then nothing
/// after it was pruned): the event's token and time, and the token of the stream's event just
/// before it (a stream resumed after that one must return this event first).
#[derive(Clone, Debug, PartialEq)]
pub struct Anchor {
    pub prev: Option<ResumeToken>,
    pub event: ResumeToken,
    pub at: OpTime,
}

impl Anchor {
    /// The anchor of the event after this one.
    pub fn next(last: Option<&Anchor>, event: ResumeToken, at: OpTime) -> Anchor {
        Anchor {
            prev: last.map(|a| a.event.clone()),
            event,
            at,
        }
    }
}

/// What a proof stream's first event says about an anchor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proof {
    /// The anchor is still in the oplog: nothing after it was pruned.
    Held,
    /// A later event came first: the anchor was pruned.
    Lost,
    /// Nothing to tell (no event, an event at the same time, the stream failed): a full
    /// oplog check has to decide.
    Unknown,
}

/// The first event (`token`, `at`) of a stream opened after the anchor's previous event (or at
/// its time, inclusive) against the anchor.
pub fn judge(anchor: &Anchor, first: Option<(&ResumeToken, Option<OpTime>)>) -> Proof {
    match first {
        Some((t, _)) if *t == anchor.event => Proof::Held,
        Some((_, Some(at))) if at > anchor.at => Proof::Lost,
        _ => Proof::Unknown,
    }
}

/// The reads of one change stream not yet proven complete. This server's stream silently jumps
/// over pruned history, so a read is proven complete only by something seen after it: the
/// oplog's oldest entry still at or before where the stream stood before the read (a history
/// check, `watcher`), or the last event before the read still in the oplog (a proof stream,
/// `anchor`, at the drain): the oldest entry only moves forward.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Unverified {
    /// Where the stream stood before the first read not yet proven; `None`: all proven.
    pub from: Option<OpTime>,
    /// The stream's last event before that read, when known.
    pub anchor: Option<Anchor>,
    /// Reads completed (to tell whether a read finished during a check).
    pub reads: u64,
}

impl Unverified {
    /// Something still to prove before any read (the start point, while copying).
    pub fn starting_at(at: OpTime, anchor: Option<Anchor>) -> Unverified {
        Unverified {
            from: Some(at),
            anchor,
            reads: 0,
        }
    }

    /// A read finished that started with the stream at `before`, after the event `last`.
    pub fn read(&mut self, before: OpTime, last: Option<&Anchor>) {
        if self.from.is_none() {
            self.from = Some(before);
            self.anchor = last.cloned();
        }
        self.reads += 1;
    }

    /// A check that began when this was `seen` and the stream stood at `at` after the event
    /// `last` found the history intact at `seen.from`: reads finished before it began are
    /// proven; reads finished since started at or after `at`, which the next check must prove.
    pub fn proven(&mut self, seen: &Unverified, at: OpTime, last: Option<Anchor>) {
        if self.reads == seen.reads {
            self.from = None;
            self.anchor = None;
        } else {
            self.from = Some(at);
            // The newest event known before those reads (an older one proves as much).
            self.anchor = last.or(self.anchor.take());
        }
    }

    /// Every read so far is proven (a proof stream opened after the last one).
    pub fn all_proven(&mut self) {
        self.from = None;
        self.anchor = None;
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
        let mut u = Unverified::starting_at(at(10, 0), None);
        // A check with nothing read since it began proves everything.
        let seen = u.clone();
        u.proven(&seen, at(10, 0), None);
        assert_eq!(u.from, None);
        // Two reads: what must be proven starts before the first, after its last event.
        let e1 = Anchor::next(None, token("e1"), at(9, 0));
        let e2 = Anchor::next(Some(&e1), token("e2"), at(11, 0));
        u.read(at(10, 0), Some(&e1));
        u.read(at(12, 0), Some(&e2));
        assert_eq!(u.from, Some(at(10, 0)));
        assert_eq!(u.anchor.as_ref(), Some(&e1));
        // A check begins; a read finishes while it runs (it may have started after the
        // check read the oplog): still to prove, from where the stream stood when it began.
        let seen = u.clone();
        u.read(at(13, 0), Some(&e2));
        u.proven(&seen, at(13, 0), Some(e2.clone()));
        assert_eq!(u.from, Some(at(13, 0)));
        assert_eq!(u.anchor.as_ref(), Some(&e2));
        let seen = u.clone();
        u.proven(&seen, at(14, 0), Some(e2.clone()));
        assert_eq!((u.from, u.anchor), (None, None));
    }

    fn token(s: &str) -> ResumeToken {
        mongodb::bson::from_bson(mongodb::bson::Bson::Document(doc! {"_data": s})).unwrap()
    }

    #[test]
    fn an_anchor_is_held_when_a_stream_after_its_previous_event_returns_it_first() {
        let e1 = Anchor::next(None, token("e1"), at(10, 0));
        let e2 = Anchor::next(Some(&e1), token("e2"), at(10, 1));
        assert_eq!(e2.prev, Some(token("e1")));
        assert_eq!(
            judge(&e2, Some((&token("e2"), Some(at(10, 1))))),
            Proof::Held
        );
        // A later event first: e2 was pruned, and maybe more after it.
        assert_eq!(
            judge(&e2, Some((&token("e3"), Some(at(10, 2))))),
            Proof::Lost
        );
        assert_eq!(
            judge(&e2, Some((&token("e3"), Some(at(11, 0))))),
            Proof::Lost
        );
        // Another event at the same time (opened at a time, inclusive), no time, no event:
        // a full oplog check decides.
        assert_eq!(
            judge(&e2, Some((&token("x"), Some(at(10, 1))))),
            Proof::Unknown
        );
        assert_eq!(judge(&e2, Some((&token("x"), None))), Proof::Unknown);
        assert_eq!(judge(&e2, None), Proof::Unknown);
    }
}
