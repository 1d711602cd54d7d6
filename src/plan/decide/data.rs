//! The data phases: `BackingUp` dumps the frozen sources, `Cloning` restores (or copies inside
//! the server) into the clones, and the clones' counts and shape (collections, views, indexes)
//! must equal the sources'.

use std::collections::{BTreeMap, BTreeSet};

use crate::crd::{BackupStatus, Mode, Phase, ShapeDigest};

use super::super::conditions as cond;
use super::super::decision::Action;
use super::super::names;
use super::super::observed::{BackupResult, CopyState, JobState, JobView};
use super::super::reason::Reason;
use super::{Machine, NEXT, POLL, one_line};

/// How many Jobs a backup or a clone gets in all when their pods keep being disrupted.
pub const JOB_ATTEMPTS: u32 = 3;

#[derive(Clone, Copy)]
enum DataJob {
    Backup,
    Clone,
}

/// The name of attempt `n` of the Job first named `first`: `first`, then `first-2`, ...
fn attempt_name(first: &str, n: u32) -> String {
    if n <= 1 {
        first.to_string()
    } else {
        names::shorten(&format!("{first}-{n}"), names::MAX_K8S_NAME)
    }
}

/// Which attempt the Job named `current` is of the one first named `first`.
fn attempt_of(first: &str, current: &str) -> Option<u32> {
    (1..=JOB_ATTEMPTS).find(|n| attempt_name(first, *n) == current)
}

impl Machine<'_> {
    /// Records the backup Job and where it writes (intent first), then creates it; `dumping`
    /// says what it dumps.
    pub(super) fn create_backup_job(&mut self, dumping: &str) {
        let job = self.targets.backup_job.clone();
        let path = self.targets.backup_dir.clone();
        self.st.backup = Some(BackupStatus {
            job: job.clone(),
            path: path.clone(),
            ..Default::default()
        });
        self.act(
            Action::CreateBackupJob,
            format!("Backup Job {job} is dumping {dumping} to {path}"),
        );
    }

    pub(super) fn backing_up(&mut self) {
        let path = self.targets.backup_dir.clone();
        let Some(j) = self.obs.backup_job.clone() else {
            return self.create_backup_job("the databases");
        };
        if self.server_side() && j.state != JobState::Failed {
            match self.obs.server_copy.as_ref().map(|c| &c.state) {
                Some(CopyState::Absent) => {
                    self.act(
                        Action::StartServerSideCopy,
                        format!(
                            "Backup Job {} is running; copying the collections into the clones inside the server at the same time",
                            j.name
                        ),
                    );
                    return;
                }
                Some(CopyState::Failed(e)) => {
                    let e = e.clone();
                    return self.fail(
                        Reason::ServerSideCopyFailed,
                        format!("The server-side copy into the clones failed: {e}"),
                    );
                }
                _ => self.server_copy_progress(),
            }
        }
        match j.state {
            JobState::Active => {
                self.wait_job(&j, &self.spec.timeouts.backup.clone(), Reason::BackupTimedOut, "Backup");
                if let Some(p) = self.st.progress.as_ref().filter(|_| self.server_side()) {
                    self.st.message = format!("{}; copying inside the server: {}", self.st.message, p.summary);
                    self.requeue = Some(POLL);
                }
            }
            JobState::Failed if j.disruption.is_some() => self.retry_job(DataJob::Backup, &j),
            JobState::Failed => self.fail(
                Reason::BackupJobFailed,
                format!(
                    "Backup Job {} failed: {}. The sources were not changed; the backup in {path} may be partial",
                    j.name,
                    one_line(&j.message)
                ),
            ),
            JobState::Succeeded => {
                let counts = match &self.obs.source_counts {
                    None => {
                        return self.wait_next_or_timeout(
                            "Counting documents in the sources".into(),
                            &self.spec.timeouts.backup.clone(),
                            Reason::BackupTimedOut,
                        );
                    }
                    Some(Err(e)) => {
                        return self.wait_or_timeout(
                            format!("Counting documents in the sources failed, retrying: {e}"),
                            &self.spec.timeouts.backup.clone(),
                            Reason::BackupTimedOut,
                        );
                    }
                    Some(Ok(c)) => c.clone(),
                };
                let shape = match &self.obs.source_shape {
                    None => {
                        return self.wait_next_or_timeout(
                            "Reading the sources' collections, views and indexes".into(),
                            &self.spec.timeouts.backup.clone(),
                            Reason::BackupTimedOut,
                        );
                    }
                    Some(Err(e)) => {
                        return self.wait_or_timeout(
                            format!("Reading the sources' collections, views and indexes failed, retrying: {e}"),
                            &self.spec.timeouts.backup.clone(),
                            Reason::BackupTimedOut,
                        );
                    }
                    Some(Ok(s)) => s.digest(),
                };
                let result = parse_backup_result(&j.message);
                let backup = self.st.backup.get_or_insert_with(Default::default);
                backup.job = j.name.clone();
                // The path inside the volume, not where the Job's process saw it mounted.
                backup.path = path;
                backup.bytes = result.bytes;
                backup.checksum = result.sha256;
                backup.record_counts(&counts);
                backup.shape = Some(shape);
                backup.completed_at = Some(self.now);
                let detail = format!(
                    "Backup complete: {} collections, {} documents, {} bytes; restoring it into the clones",
                    counts.len(),
                    counts.values().sum::<i64>(),
                    backup.bytes.map_or("?".into(), |b| b.to_string())
                );
                self.advance(Phase::Cloning, &detail);
            }
        }
    }

    pub(super) fn cloning(&mut self) {
        if self.online() {
            return self.cloning_online();
        }
        if self.server_side() {
            match self.obs.server_copy.as_ref().map(|c| c.state.clone()) {
                None => self.wait_next_or_timeout(
                    "Looking at the server-side copy".into(),
                    &self.spec.timeouts.clone.clone(),
                    Reason::CloneTimedOut,
                ),
                // Not running in this process: never started, or the operator restarted.
                Some(CopyState::Absent) => self.act(
                    Action::StartServerSideCopy,
                    "Copying the collections into the clones inside the server".into(),
                ),
                Some(CopyState::Running) => {
                    self.server_copy_progress();
                    let msg = format!(
                        "Copying into the clones inside the server: {}",
                        self.st
                            .progress
                            .as_ref()
                            .map_or("starting".into(), |p| p.summary.clone())
                    );
                    self.wait_or_timeout(
                        msg,
                        &self.spec.timeouts.clone.clone(),
                        Reason::CloneTimedOut,
                    );
                }
                Some(CopyState::Failed(e)) => self.fail(
                    Reason::ServerSideCopyFailed,
                    format!("The server-side copy into the clones failed: {e}"),
                ),
                Some(CopyState::Succeeded) => self.verify_clones(),
            }
            return;
        }
        let Some(j) = self.obs.clone_job.clone() else {
            let job = &self.targets.clone_job;
            self.act(
                Action::CreateCloneJob,
                format!("Clone Job {job} is restoring the backup into the clones"),
            );
            return;
        };
        match j.state {
            JobState::Active => {
                self.restore_progress();
                self.wait_job(
                    &j,
                    &self.spec.timeouts.clone.clone(),
                    Reason::CloneTimedOut,
                    "Clone",
                );
                if let Some(p) = &self.st.progress {
                    self.st.message = format!("{}: {}", self.st.message, p.summary);
                    // Progress comes from counting, not from a watch event.
                    self.requeue = Some(POLL);
                }
            }
            JobState::Failed if j.disruption.is_some() => self.retry_job(DataJob::Clone, &j),
            JobState::Failed => self.fail(
                Reason::CloneJobFailed,
                format!("Clone Job {} failed: {}", j.name, one_line(&j.message)),
            ),
            JobState::Succeeded => self.verify_clones(),
        }
    }

    /// A backup or clone Job whose pod was disrupted (not failed by its script): the next
    /// attempt's name is recorded in `status.targets` now, and the next reconcile, finding no
    /// Job under it, creates it (so each name is created at most once). After `JOB_ATTEMPTS`
    /// the plan fails. The scripts are idempotent: the backup dumps everything again, the clone
    /// restores with `--drop` into the plan's own clones.
    fn retry_job(&mut self, role: DataJob, j: &JobView) {
        let why = j.disruption.clone().unwrap_or_default();
        let (what, first) = match role {
            DataJob::Backup => ("Backup", names::backup_job(&self.targets.plan)),
            DataJob::Clone => ("Clone", names::clone_job(&self.targets.plan)),
        };
        // A name this rule did not give (recorded by an older version) is not retried.
        let attempt = attempt_of(&first, &j.name).unwrap_or(JOB_ATTEMPTS);
        if attempt >= JOB_ATTEMPTS {
            return self.fail(
                Reason::JobKeptBeingDisrupted,
                format!(
                    "{what} Job {}'s pod was disrupted on attempt {attempt} of {JOB_ATTEMPTS} ({why}); the Jobs kept being interrupted from outside (pods deleted or killed, the node agent restarting): look at the cluster's events and nodes",
                    j.name
                ),
            );
        }
        let blue_uid = self.targets.blue_uid.clone();
        let recorded = self
            .st
            .targets
            .get_or_insert_with(|| self.targets.record(blue_uid));
        let next = attempt_name(&first, attempt + 1);
        match role {
            DataJob::Backup => recorded.jobs.backup = next.clone(),
            DataJob::Clone => recorded.jobs.clone = next.clone(),
        }
        if let (DataJob::Backup, Some(b)) = (role, self.st.backup.as_mut()) {
            b.job = next.clone();
        }
        self.retarget();
        let message = format!(
            "{what} Job {} was disrupted ({why}); retrying as Job {next} (attempt {} of {JOB_ATTEMPTS})",
            j.name,
            attempt + 1
        );
        self.warn(Reason::JobPodDisrupted, &message);
        self.set_cond(cond::PROGRESSING, true, Reason::JobPodDisrupted, &message);
        self.wait(message, NEXT);
    }

    /// Waits for an observation expected at the next reconcile, until the phase's deadline.
    fn wait_next_or_timeout(
        &mut self,
        message: String,
        limit: &crate::crd::GoDuration,
        reason: Reason,
    ) {
        if self.phase_deadline_passed(limit) {
            self.wait_or_timeout(message, limit, reason);
        } else {
            self.wait(message, NEXT);
        }
    }

    /// The clones' counts must equal the frozen sources'.
    fn verify_clones(&mut self) {
        let counts = match &self.obs.clone_counts {
            None => {
                return self.wait_next_or_timeout(
                    "Counting documents in the clones".into(),
                    &self.spec.timeouts.clone.clone(),
                    Reason::CloneTimedOut,
                );
            }
            Some(Err(e)) => {
                return self.wait_or_timeout(
                    format!("Counting documents in the clones failed, retrying: {e}"),
                    &self.spec.timeouts.clone.clone(),
                    Reason::CloneTimedOut,
                );
            }
            Some(Ok(c)) => c.clone(),
        };
        let Some((clone_shape, shape_mismatches)) = self.compare_shapes() else {
            return;
        };
        let count_mismatches = self.compare_counts(&counts);
        let counts_differ = !count_mismatches.is_empty();
        let mismatches = [count_mismatches, shape_mismatches].concat();
        let clone = self.st.clone.get_or_insert_with(Default::default);
        clone.record_counts(&counts);
        clone.shape = clone_shape;
        if mismatches.is_empty() {
            clone.verified = true;
            if self.server_side() {
                // The clones match, but the archive itself was never restored.
                self.set_cond(
                    cond::BACKUP_VERIFIED,
                    false,
                    Reason::NotRestored,
                        "The clones were copied inside the server and match the frozen sources' counts, collections, views and indexes; the backup archive was written and checksummed but not restored",
                );
            } else {
                self.set_cond(
                    cond::BACKUP_VERIFIED,
                    true,
                    Reason::CountsMatch,
                    "The backup restored into the clones with the same document count in every collection, and the same collections, views and indexes",
                );
            }
            self.advance(
                Phase::DeployingGreen,
                "Clones verified; deploying the new version against them",
            );
        } else if self.spec.mode == Mode::Rehearsal {
            let detail = format!(
                "Rehearsal: the live sources changed during the copy, the clones differ ({}); continuing",
                bounded_list(&mismatches)
            );
            self.set_cond(cond::BACKUP_VERIFIED, false, Reason::SourcesInUse, &detail);
            self.advance(Phase::DeployingGreen, &detail);
        } else {
            let msg = format!(
                "The clones do not match the frozen sources: {}. The copy cannot be trusted; the clones are kept for inspection",
                bounded_list(&mismatches)
            );
            let reason = if counts_differ {
                Reason::CountsDiffer
            } else {
                Reason::ShapeDiffers
            };
            self.set_cond(cond::BACKUP_VERIFIED, false, reason, &msg);
            self.fail(Reason::CloneVerificationFailed, msg);
        }
    }

    /// The clones' shape (under the sources' names) and how it differs from the frozen
    /// sources' as recorded, each difference a sentence; `None` after waiting for the read.
    /// A status recorded before shapes existed has no source shape: counts only.
    fn compare_shapes(&mut self) -> Option<(Option<ShapeDigest>, Vec<String>)> {
        let recorded = self.st.backup.as_ref().and_then(|b| b.shape.clone());
        let clone = match &self.obs.clone_shape {
            None if recorded.is_none() => return Some((None, Vec::new())),
            None => {
                self.wait_next_or_timeout(
                    "Reading the clones' collections, views and indexes".into(),
                    &self.spec.timeouts.clone.clone(),
                    Reason::CloneTimedOut,
                );
                return None;
            }
            Some(Err(e)) => {
                let msg = format!(
                    "Reading the clones' collections, views and indexes failed, retrying: {e}"
                );
                self.wait_or_timeout(
                    msg,
                    &self.spec.timeouts.clone.clone(),
                    Reason::CloneTimedOut,
                );
                return None;
            }
            Some(Ok(c)) => c,
        };
        let to_source: BTreeMap<String, String> = self
            .st
            .clone
            .as_ref()
            .map(|c| {
                c.databases
                    .iter()
                    .map(|(s, c)| (c.clone(), s.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let clone = clone.renamed(&to_source);
        let digest = clone.digest();
        let Some(recorded) = recorded else {
            return Some((Some(digest), Vec::new()));
        };
        if digest == recorded {
            return Some((Some(digest), Vec::new()));
        }
        let mut out = Vec::new();
        if let Some(Ok(source)) = &self.obs.source_shape {
            if !source.matches(&recorded) {
                out.push(
                    "the sources' collections, views or indexes changed since the backup"
                        .to_string(),
                );
            }
            out.extend(source.diff(&clone));
        }
        if out.is_empty() {
            out.push(format!(
                "collections, views and indexes differ: source {} collections, {} views, {} indexes; clone {} collections, {} views, {} indexes",
                recorded.collections,
                recorded.views,
                recorded.indexes,
                digest.collections,
                digest.views,
                digest.indexes
            ));
        }
        Some((Some(digest), out))
    }

    /// How the clones' counts differ from the frozen sources', each as a sentence; empty when
    /// every collection has the same count.
    ///
    /// Status keeps only a sample of the sources' counts and a digest of all of them (see
    /// `CountsDigest`): the clones' counts, read fresh and renamed to the sources' databases,
    /// must have the same digest, so every collection is compared, not only the sampled ones.
    /// Where they differ, the sampled collections are named; differences outside the sample
    /// show in the totals, and the clones are kept for inspection.
    fn compare_counts(&self, clone_counts: &BTreeMap<String, i64>) -> Vec<String> {
        let mapping = self
            .st
            .clone
            .as_ref()
            .map(|c| c.databases.clone())
            .unwrap_or_default();
        let backup = self.st.backup.clone().unwrap_or_default();
        let to_source: BTreeMap<&str, &str> = mapping
            .iter()
            .map(|(s, c)| (c.as_str(), s.as_str()))
            .collect();
        let to_clone_ns = |ns: &str| -> String { rename(ns, &mapping) };
        let as_source: BTreeMap<String, i64> = clone_counts
            .iter()
            .map(|(ns, n)| (rename(ns, &to_source), *n))
            .collect();
        let digest = backup.digest();
        if digest.matches(&as_source) {
            return Vec::new();
        }
        let sampled_all = digest.collections == backup.collections.len() as i64;
        let mut out = Vec::new();
        let mut expected = BTreeSet::new();
        for (ns, n) in &backup.collections {
            let cns = to_clone_ns(ns);
            match clone_counts.get(&cns) {
                Some(m) if m == n => {}
                Some(m) => out.push(format!("{ns}: source {n}, clone {m}")),
                None => out.push(format!("{ns}: source {n}, missing in the clone")),
            }
            expected.insert(cns);
        }
        if sampled_all {
            for (cns, m) in clone_counts {
                if !expected.contains(cns) {
                    out.push(format!(
                        "{cns}: {m} documents in the clone but not in the source"
                    ));
                }
            }
        }
        if out.is_empty() || !sampled_all {
            // The difference lies (also) outside the sampled collections.
            out.insert(
                0,
                format!(
                    "in all: source {} collections with {} documents, clone {} collections with {} documents",
                    digest.collections,
                    digest.documents,
                    as_source.len(),
                    as_source.values().sum::<i64>()
                ),
            );
        }
        out
    }
}

/// `db.collection` with its database renamed by `mapping` (unchanged when it has none).
fn rename<K: std::borrow::Borrow<str> + Ord, V: AsRef<str>>(
    ns: &str,
    mapping: &BTreeMap<K, V>,
) -> String {
    match ns.split_once('.') {
        Some((db, coll)) => format!("{}.{coll}", mapping.get(db).map_or(db, |c| c.as_ref())),
        None => ns.to_string(),
    }
}

/// How many differences a message names; the rest are counted.
const LISTED: usize = 10;

/// The first [`LISTED`] items joined, with "and N more" for the rest: a status message or
/// condition never grows with the number of collections.
pub(super) fn bounded_list(items: &[String]) -> String {
    let mut out = items
        .iter()
        .take(LISTED)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if items.len() > LISTED {
        out.push_str(&format!("; and {} more", items.len() - LISTED));
    }
    out
}

pub(super) fn parse_backup_result(message: &str) -> BackupResult {
    message
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<BackupResult>(l.trim()).ok())
        .unwrap_or_default()
}
