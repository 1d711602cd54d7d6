//! Copy progress and its ETA in status, from what the executor counted: the server-side
//! copy's own counters, or the documents a running restore has put into the clones so far.

use std::time::Duration;

use crate::crd::{CloneMethod, CopyProgress, Timestamp};

use super::Machine;

/// How often progress is refreshed while a copy runs. Our own status write triggers the next
/// reconcile at once; between refreshes that reconcile finds nothing to write, so a running
/// copy costs one status write (and about two reconciles) per period, not a write loop.
pub(super) const PROGRESS_EVERY: Duration = Duration::from_secs(5);

impl Machine<'_> {
    pub(super) fn server_side(&self) -> bool {
        self.method() == CloneMethod::ServerSide
    }

    pub(super) fn server_copy_progress(&mut self) {
        if let Some(c) = self.obs.server_copy.clone() {
            self.set_progress(
                c.documents_done,
                c.documents_total,
                Some((c.collections_done, c.collections_total)),
            );
        }
    }

    pub(super) fn restore_progress(&mut self) {
        let total: i64 = self.st.backup.as_ref().map_or(0, |b| b.digest().documents);
        if let Some(done) = self.obs.clone_documents {
            self.set_progress(done.min(total), total, None);
        }
    }

    fn set_progress(&mut self, done: i64, total: i64, collections: Option<(i64, i64)>) {
        if let Some(p) = &self.st.progress
            && let Some(at) = p.updated_at
            && self.now.since(at) < PROGRESS_EVERY
            && done < total
        {
            return;
        }
        let since = self.st.progress.as_ref().map_or(self.now, |p| p.since);
        let secs = self.now.since(since).as_secs_f64();
        let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
        let eta = (rate > 0.0 && total > done).then(|| {
            let left = (total - done) as f64 / rate;
            self.now
                .plus(std::time::Duration::from_millis((left * 1000.0) as u64))
        });
        self.st.progress = Some(CopyProgress {
            documents_done: done,
            documents_total: total,
            collections_done: collections.map(|c| c.0),
            collections_total: collections.map(|c| c.1),
            since,
            rate: (rate * 10.0).round() / 10.0,
            eta,
            summary: summary(done, total, collections, eta, self.now),
            updated_at: Some(self.now),
        });
    }
}

fn summary(
    done: i64,
    total: i64,
    collections: Option<(i64, i64)>,
    eta: Option<Timestamp>,
    now: Timestamp,
) -> String {
    let pct = if total > 0 {
        (done as f64 * 100.0 / total as f64).min(100.0)
    } else {
        100.0
    };
    let mut s = format!("{pct:.0}% {}/{} docs", short(done), short(total));
    if let Some((d, t)) = collections {
        s.push_str(&format!(", {d}/{t} colls"));
    }
    if let Some(eta) = eta {
        s.push_str(&format!(", ~{}s left", eta.since(now).as_secs()));
    }
    s
}

/// 1234 → 1.2k, 1234567 → 1.2M.
fn short(n: i64) -> String {
    match n {
        n if n >= 1_000_000 => format!("{:.1}M", n as f64 / 1e6),
        n if n >= 10_000 => format!("{:.0}k", n as f64 / 1e3),
        n if n >= 1_000 => format!("{:.1}k", n as f64 / 1e3),
        n => n.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries() {
        let now = Timestamp::from_millis(1_000_000);
        assert_eq!(
            summary(
                450_000,
                1_000_000,
                Some((3, 8)),
                Some(now.plus(std::time::Duration::from_secs(12))),
                now
            ),
            "45% 450k/1.0M docs, 3/8 colls, ~12s left"
        );
        assert_eq!(summary(0, 0, None, None, now), "100% 0/0 docs");
        assert_eq!(short(1234), "1.2k");
    }
}
