//! `backup.cloneMethod: online`. `Syncing` (before read-only, the app still takes writes):
//! the sync engine (`crate::sync`) bulk-copies every source into its clone and applies the
//! sources' change streams; once every bulk copy finished and the clones are at most
//! `backup.online.maxLag` behind, the app is made read-only as usual. Then `Cloning` drains the
//! sync (a marker in each source, applied up to it), compares each source with its clone
//! (counts and sampled documents) and goes on to the new version. No backup is taken before
//! the switch.
//!
//! A failure in `Syncing` happens before read-only: the plan unwinds with nothing to restore
//! (the sync is stopped because the plan no longer reads it, the clones are kept). In `Cloning`
//! it is inside the window and unwinds like a clone verification failure: the old version
//! becomes read-write again.

use std::collections::BTreeMap;

use crate::crd::{CloneMethod, CopyProgress, Mode, Phase, ShapeDigest, SyncStatus};
use crate::sync::{OpTime, SyncState, SyncView};

use super::super::conditions as cond;
use super::super::decision::Action;
use super::super::reason::Reason;
use super::data::bounded_list;
use super::progress::PROGRESS_EVERY;
use super::{Machine, NEXT, POLL};

/// How often where the sync stands (its resume tokens) is recorded when it moved: an operator
/// restarted every few seconds then resumes from a recent point (soak finding 6); the lag
/// alone is refreshed every `PROGRESS_EVERY`.
const RESUME_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// How soon to look again while the drain runs: inside the read-only window, so more often
/// than `POLL` (the drain itself takes milliseconds once the clones are caught up).
const DRAIN_POLL: std::time::Duration = std::time::Duration::from_millis(200);

impl Machine<'_> {
    pub(super) fn online(&self) -> bool {
        self.method() == CloneMethod::Online
    }

    pub(super) fn syncing(&mut self) {
        let limit = self.spec.timeouts.clone.clone();
        let Some(v) = self.obs.sync.clone() else {
            return self.sync_wait("Looking at the online sync".into(), NEXT);
        };
        self.record_sync(&v);
        match &v.state {
            SyncState::NotStarted => self.start_sync(
                "Copying the databases into the clones while the app still takes writes".into(),
            ),
            // `auto` chose online: restore instead, once.
            SyncState::HistoryLost(lost)
                if self.fall_back_to_restore(&format!("lost its history ({lost})")) => {}
            SyncState::Failed(e) if self.fall_back_to_restore(&format!("failed ({e})")) => {}
            SyncState::HistoryLost(lost) => self.fail(
                Reason::SyncHistoryLost,
                format!(
                    "The online sync cannot continue: {lost}. The app was never read-only; the clones are kept"
                ),
            ),
            SyncState::Failed(e) => self.fail(
                Reason::SyncFailed,
                format!(
                    "The online sync failed: {e}. The app was never read-only; the clones are kept"
                ),
            ),
            SyncState::Streaming if self.caught_up(&v) && self.spec.mode == Mode::Rehearsal => {
                let detail = format!(
                    "Rehearsal: the clones are {} s behind the sources (backup.online.maxLag {}); draining the sync without read-only",
                    v.lag_seconds.unwrap_or(0),
                    self.spec.backup.online.max_lag
                );
                self.advance(Phase::Cloning, &detail);
            }
            SyncState::Streaming if self.caught_up(&v) => {
                let detail = format!(
                    "The clones are {} s behind the sources (backup.online.maxLag {}); making the app read-only for the last changes",
                    v.lag_seconds.unwrap_or(0),
                    self.spec.backup.online.max_lag
                );
                let env = &self.spec.read_only.env;
                let detail = format!(
                    "{detail} ({}={} on Deployment {})",
                    env.name, env.value, self.spec.app.deployment
                );
                self.advance(Phase::EnteringReadOnly, &detail);
                if self.spec.suspend {
                    // Held here, the sync keeps running: keep its record current.
                    self.requeue = Some(POLL);
                }
            }
            _ => {
                let msg = format!("Online sync: {}", self.recorded_summary(&v));
                if self.phase_deadline_passed(&limit) {
                    let behind = format!(
                        "did not catch up to within backup.online.maxLag ({}) in timeouts.clone ({limit}): {}",
                        self.spec.backup.online.max_lag,
                        sync_summary(&v)
                    );
                    if !self.fall_back_to_restore(&behind) {
                        self.fail(
                            Reason::SyncTimedOut,
                            format!(
                                "The online sync {behind}. The app was never read-only; the clones are kept"
                            ),
                        );
                    }
                } else {
                    self.sync_wait(msg, POLL);
                }
            }
        }
    }

    /// `Cloning` of an online plan: the app is read-only; drain, compare, go on.
    pub(super) fn cloning_online(&mut self) {
        let limit = self.spec.timeouts.clone.clone();
        let Some(v) = self.obs.sync.clone() else {
            return self.sync_wait("Looking at the online sync".into(), NEXT);
        };
        self.record_sync(&v);
        match &v.state {
            // The operator restarted: the sync resumes from status.sync, then drains.
            SyncState::NotStarted => self.start_sync(
                "Resuming the online sync from status.sync to drain it (the app is read-only)"
                    .into(),
            ),
            SyncState::HistoryLost(lost) => self.fail(
                Reason::SyncHistoryLost,
                format!("The online sync cannot drain: {lost}"),
            ),
            SyncState::Failed(e) => self.fail(
                Reason::SyncFailed,
                format!("The online sync failed while draining: {e}"),
            ),
            SyncState::BulkCopying | SyncState::Streaming => {
                if self.phase_deadline_passed(&limit) {
                    return self.fail(
                        Reason::SyncTimedOut,
                        format!(
                            "The online sync did not drain within timeouts.clone ({limit}): {}",
                            sync_summary(&v)
                        ),
                    );
                }
                if v.draining {
                    // The markers are written: only wait (no action, so nothing is logged on
                    // every look).
                    return self.sync_wait(
                        format!(
                            "The app is read-only; draining the online sync up to a marker in each source: {}",
                            self.recorded_summary(&v)
                        ),
                        DRAIN_POLL,
                    );
                }
                // Idempotent: a source already holding this process's marker gets no other.
                let app = if self.spec.mode == Mode::Rehearsal {
                    "Rehearsal: the app stays read-write"
                } else {
                    "The app is read-only"
                };
                self.act(
                    Action::DrainSync,
                    format!(
                        "{app}; draining the online sync up to a marker in each source: {}",
                        self.recorded_summary(&v)
                    ),
                );
                self.requeue = Some(DRAIN_POLL);
            }
            SyncState::Drained => self.verify_online(),
        }
    }

    /// After the drain: each clone equals its frozen source (collections, counts, sampled
    /// documents).
    fn verify_online(&mut self) {
        let limit = self.spec.timeouts.clone.clone();
        let diffs = match &self.obs.sync_compare {
            None => return self.sync_wait("Comparing the clones with the sources".into(), NEXT),
            Some(Err(e)) => {
                let msg = format!("Comparing the clones with the sources failed, retrying: {e}");
                if self.phase_deadline_passed(&limit) {
                    return self.fail(
                        Reason::SyncTimedOut,
                        format!("{msg} (gave up after {limit})"),
                    );
                }
                return self.sync_wait(msg, POLL);
            }
            Some(Ok(d)) => d.clone(),
        };
        let counts = match &self.obs.clone_counts {
            Some(Ok(c)) => c.clone(),
            Some(Err(e)) if !self.phase_deadline_passed(&limit) => {
                let msg = format!("Counting documents in the clones failed, retrying: {e}");
                return self.sync_wait(msg, POLL);
            }
            Some(Err(e)) => {
                return self.fail(
                    Reason::SyncTimedOut,
                    format!("Counting documents in the clones failed: {e} (gave up after {limit})"),
                );
            }
            None => return self.sync_wait("Counting documents in the clones".into(), NEXT),
        };
        // Documents that differ already fail the copy; the shape is read only for clones
        // whose documents match.
        let (shape, diffs) = if diffs.is_empty() {
            let Some((shape, shape_diffs)) = self.online_shape_diffs() else {
                return;
            };
            (Some(shape), shape_diffs)
        } else {
            (None, diffs)
        };
        let clone = self.st.clone.get_or_insert_with(Default::default);
        clone.record_counts(&counts);
        clone.shape = shape;
        if !diffs.is_empty() && self.spec.mode == Mode::Rehearsal {
            // The app kept writing: the sources moved on after the marker.
            let detail = format!(
                "Rehearsal: online sync drained; the live sources changed after the drain marker, the clones differ ({}); continuing",
                bounded_list(&diffs)
            );
            self.set_cond(cond::BACKUP_VERIFIED, false, Reason::SourcesInUse, &detail);
            self.advance(Phase::DeployingGreen, &detail);
        } else if diffs.is_empty() {
            clone.verified = true;
            self.set_cond(
                cond::BACKUP_VERIFIED,
                false,
                Reason::BackupAfterSwitch,
                "No backup is taken before the switch with backup.cloneMethod online: the clones followed the sources and, drained, match the frozen sources (collections, counts and sampled documents); the backup is taken after the switch and verified by restoring it (VerifyingBackup); until then nothing is dropped that needs it",
            );
            self.advance(
                Phase::DeployingGreen,
                "Online sync drained; the clones match the frozen sources (counts and sampled documents); deploying the new version against them",
            );
        } else {
            let msg = format!(
                "The clones do not match the frozen sources after the drain: {}. The copy cannot be trusted; the clones are kept for inspection",
                bounded_list(&diffs)
            );
            self.set_cond(cond::BACKUP_VERIFIED, false, Reason::CountsDiffer, &msg);
            self.fail(Reason::CloneVerificationFailed, msg);
        }
    }

    /// How the drained clones' collections, views and index specs differ from the frozen
    /// sources' (both read now: the sources are read-only); `None` while waiting for the reads.
    fn online_shape_diffs(&mut self) -> Option<(ShapeDigest, Vec<String>)> {
        let limit = self.spec.timeouts.clone.clone();
        let (source, clone) = match (&self.obs.source_shape, &self.obs.clone_shape) {
            (Some(Ok(s)), Some(Ok(c))) => (s.clone(), c.clone()),
            (Some(Err(e)), _) | (_, Some(Err(e))) => {
                let msg =
                    format!("Reading the collections, views and indexes failed, retrying: {e}");
                if self.phase_deadline_passed(&limit) {
                    self.fail(
                        Reason::SyncTimedOut,
                        format!("{msg} (gave up after {limit})"),
                    );
                } else {
                    self.sync_wait(msg, POLL);
                }
                return None;
            }
            _ => {
                self.sync_wait(
                    "Reading the collections, views and indexes of sources and clones".into(),
                    NEXT,
                );
                return None;
            }
        };
        let to_source: BTreeMap<String, String> = self
            .targets
            .pairs()
            .into_iter()
            .map(|(s, c)| (c, s))
            .collect();
        let clone = clone.renamed(&to_source);
        Some((clone.digest(), source.diff(&clone)))
    }

    /// The summary as last recorded (messages change only when status is refreshed anyway).
    fn recorded_summary(&self, v: &SyncView) -> String {
        self.st
            .progress
            .as_ref()
            .map_or_else(|| sync_summary(v), |p| p.summary.clone())
    }

    fn start_sync(&mut self, message: String) {
        let resume = self
            .st
            .sync
            .as_ref()
            .map(|s| s.sources.clone())
            .unwrap_or_default();
        self.act(Action::StartSync { resume }, message);
        self.requeue = Some(POLL);
    }

    fn sync_wait(&mut self, message: String, requeue: std::time::Duration) {
        self.st.message = message;
        self.requeue = Some(requeue);
    }

    /// Every bulk copy finished and the clones are at most `maxLag` behind.
    fn caught_up(&self, v: &SyncView) -> bool {
        let max = self.spec.backup.online.max_lag.as_std().as_secs_f64();
        v.state == SyncState::Streaming && v.lag_seconds.is_some_and(|l| l as f64 <= max)
    }

    /// Records where the sync stands (`status.sync`, the Progress column): at most every few
    /// seconds, as copy progress (each status write wakes the next reconcile), and at once when
    /// a bulk copy finished. Only sources whose start point was captured are recorded: a
    /// restart resumes those and starts the others afresh.
    fn record_sync(&mut self, v: &SyncView) {
        if v.state == SyncState::NotStarted || v.resume.is_empty() {
            return;
        }
        let sources: Vec<_> = v
            .resume
            .iter()
            .filter(|r| r.start_at != OpTime::default())
            .cloned()
            .collect();
        if let Some(old) = &self.st.sync
            && let Some(age) = old.updated_at.map(|at| self.now.since(at))
            && age < PROGRESS_EVERY
            && (age < RESUME_EVERY || old.sources == sources)
            && (old.collections_done == v.collections_done || v.collections_total == 0)
            && old.sources.len() == sources.len()
            && old
                .sources
                .iter()
                .zip(&sources)
                .all(|(a, b)| a.bulk_finished == b.bulk_finished)
            && !matches!(v.state, SyncState::Drained)
        {
            return;
        }
        if sources.is_empty() && self.st.sync.is_some() {
            return;
        }
        // A sync resumed with every bulk copy finished counts no collections: keep the totals
        // of the copy that was done.
        let (done, total) = match &self.st.sync {
            Some(old) if v.collections_total == 0 && old.collections_total > 0 => {
                (old.collections_done, old.collections_total)
            }
            _ => (v.collections_done, v.collections_total),
        };
        let shown = SyncView {
            collections_done: done,
            collections_total: total,
            ..v.clone()
        };
        self.st.sync = Some(SyncStatus {
            sources,
            collections_done: done,
            collections_total: total,
            events_applied: v.events_applied,
            lag_seconds: v.lag_seconds,
            updated_at: Some(self.now),
        });
        let since = self.st.progress.as_ref().map_or(self.now, |p| p.since);
        self.st.progress = Some(CopyProgress {
            documents_done: 0,
            documents_total: 0,
            collections_done: Some(done),
            collections_total: Some(total),
            since,
            rate: 0.0,
            eta: None,
            summary: sync_summary(&shown),
            updated_at: Some(self.now),
        });
    }
}

/// One line for `kubectl get` and messages: bulk copies done, events applied, lag.
fn sync_summary(v: &SyncView) -> String {
    let what = match v.state {
        SyncState::BulkCopying => "copying",
        SyncState::Streaming => "streaming",
        SyncState::Drained => "drained",
        _ => "starting",
    };
    let lag = v
        .lag_seconds
        .map_or("lag ?".to_string(), |l| format!("lag {l}s"));
    format!(
        "{what}: {}/{} colls copied, {} events, {lag}",
        v.collections_done, v.collections_total, v.events_applied
    )
}
