//! `backup.cloneMethod: online` takes its backup after the switch, off the read-only window:
//! traffic is on the new version and the old one stays read-only until cleanup scales it down,
//! so the sources are frozen. `VerifyingBackup` dumps them with the same `mongodump` Job and
//! checksum as `BackingUp`, restores the dump into scratch databases (named and claimed when the
//! plan started), compares every collection's count and content hash with the frozen source,
//! drops the scratch databases, and only then hands over (`CleaningUp`). The plan waits in the
//! phase until the backup is verified or found wanting: either way traffic is fine and the plan
//! succeeds, but only a verified backup sets `BackupVerified` True, which `DropSourceDatabases`
//! requires.
//!
//! A rollback after the lift (with `rollback.acceptDataLoss`) makes the old version writable
//! again, after which the sources are no longer what the new version started from: it moves
//! traffic back (the old version still read-only) but lifts read-only only once the dump of
//! the frozen sources is complete (`RollbackBlocked`, `AwaitingBackup`).
//!
//! Every step is decided from what status recorded and what is observed: the intent (the
//! backup's Job and path) is recorded before its Job is created, the comparison is recorded
//! before the scratch databases are dropped, so an operator killed anywhere resumes where it was.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::crd::{BackupVerification, CopyProgress, Mode, Phase};

use super::super::conditions as cond;
use super::super::decision::Action;
use super::super::observed::{DatabaseView, DigestPair, JobState};
use super::super::reason::Reason;
use super::data::bounded_list;
use super::{Machine, NEXT, POLL, SAFETY, one_line};

/// Where the dump of the frozen sources stands.
pub(super) enum Dump {
    /// Recorded in status with its checksum and counts.
    Complete,
    /// Running, being created or being recorded: the message and requeue are set.
    Waiting,
    /// The backup Job failed: why.
    Failed(String),
}

impl Machine<'_> {
    /// An online upgrade takes its backup after the switch.
    pub(super) fn backup_after_switch(&self) -> bool {
        self.online() && self.spec.mode == Mode::Upgrade
    }

    pub(super) fn verifying_backup(&mut self) {
        if !self.verification_recorded() && self.verification_overdue() {
            let limit = format!(
                "{} + {}",
                self.spec.timeouts.backup, self.spec.timeouts.clone
            );
            let why = format!(
                "the dump of the frozen sources and its restore did not finish within {limit} (timeouts.backup + timeouts.clone); last seen: {}",
                self.st.message
            );
            self.record_verification(false, Reason::BackupTimedOut, vec![why], None);
        }
        if self.verification_recorded() && self.backup_jobs_running() {
            // Only a deadline records a result while a Job runs: it is stopped, so the scratch
            // databases it fills can be dropped for good.
            self.act(
                Action::StopJobs,
                "Stopping the backup Jobs that did not finish in time".into(),
            );
            return;
        }
        // A recorded result stands (a stopped dump is never started again).
        if !self.verification_recorded() {
            match self.dump_frozen_sources() {
                Dump::Waiting => {
                    self.show("dumping the frozen sources");
                    return;
                }
                Dump::Failed(why) => {
                    self.record_verification(false, Reason::BackupDumpFailed, vec![why], None);
                }
                Dump::Complete => {
                    if !self.verify_restored_backup() {
                        return;
                    }
                }
            }
        }
        if !self.scratch_dropped() {
            return;
        }
        let verified = self
            .st
            .backup
            .as_ref()
            .and_then(|b| b.verification.as_ref())
            .is_some_and(|v| v.verified);
        let detail = if verified {
            "Backup of the frozen sources taken and verified by restoring it; handing the new version over"
        } else {
            "The backup of the frozen sources could not be verified (see BackupVerified); the new version serves fine, handing it over"
        };
        self.advance(Phase::CleaningUp, detail);
    }

    /// The phase has had the backup's and the restore's deadlines together (a hung Job would
    /// otherwise hold the hand-over for ever; traffic is fine either way).
    fn verification_overdue(&self) -> bool {
        let limit = self.spec.timeouts.backup.as_std() + self.spec.timeouts.clone.as_std();
        self.now.since(self.phase_started()) > limit
    }

    fn backup_jobs_running(&self) -> bool {
        [&self.obs.backup_job, &self.obs.verify_job]
            .into_iter()
            .flatten()
            .any(|j| j.state == JobState::Active)
    }

    fn verification_recorded(&self) -> bool {
        self.st
            .backup
            .as_ref()
            .is_some_and(|b| b.verification.is_some())
    }

    /// The Progress column while the phase runs.
    fn show(&mut self, step: &str) {
        let total = self.st.backup.as_ref().map_or(0, |b| b.digest().documents);
        let since = self.phase_started();
        self.st.progress = Some(CopyProgress {
            documents_done: 0,
            documents_total: total,
            collections_done: None,
            collections_total: None,
            since,
            rate: 0.0,
            eta: None,
            summary: format!("backup: {step}"),
            updated_at: None,
        });
    }

    /// The `mongodump` Job of the frozen sources and its record in status, as in `BackingUp`
    /// but never failing the plan (traffic is on the new version): a failure is reported.
    pub(super) fn dump_frozen_sources(&mut self) -> Dump {
        if self
            .st
            .backup
            .as_ref()
            .is_some_and(|b| b.checksum.is_some() && b.completed_at.is_some())
        {
            return Dump::Complete;
        }
        let job = self.targets.backup_job.clone();
        let path = self.targets.backup_dir.clone();
        let Some(j) = self.obs.backup_job.clone() else {
            self.create_backup_job("the frozen sources");
            return Dump::Waiting;
        };
        match j.state {
            JobState::Active => {
                self.wait(
                    format!(
                        "Backup Job {job} is dumping the frozen sources to {path} (the old version stays read-only meanwhile)"
                    ),
                    SAFETY,
                );
                Dump::Waiting
            }
            JobState::Failed => Dump::Failed(format!(
                "Backup Job {job} failed: {}. The sources are unchanged and still frozen; the backup in {path} may be partial",
                one_line(&j.message)
            )),
            JobState::Succeeded => {
                let counts = match &self.obs.source_counts {
                    None => {
                        self.wait("Counting documents in the frozen sources".into(), NEXT);
                        return Dump::Waiting;
                    }
                    Some(Err(e)) => {
                        let e = e.clone();
                        self.wait(
                            format!(
                                "Counting documents in the frozen sources failed, retrying: {e}"
                            ),
                            POLL,
                        );
                        return Dump::Waiting;
                    }
                    Some(Ok(c)) => c.clone(),
                };
                let shape = match &self.obs.source_shape {
                    Some(Ok(s)) => Some(s.digest()),
                    None => {
                        self.wait(
                            "Reading the frozen sources' collections, views and indexes".into(),
                            NEXT,
                        );
                        return Dump::Waiting;
                    }
                    Some(Err(e)) => {
                        let e = e.clone();
                        self.wait(
                            format!("Reading the frozen sources' collections, views and indexes failed, retrying: {e}"),
                            POLL,
                        );
                        return Dump::Waiting;
                    }
                };
                let result = super::data::parse_backup_result(&j.message);
                let backup = self.st.backup.get_or_insert_with(Default::default);
                backup.job = j.name.clone();
                backup.path = path;
                backup.bytes = result.bytes;
                backup.checksum = result.sha256;
                backup.record_counts(&counts);
                backup.shape = shape;
                backup.completed_at = Some(self.now);
                if backup.checksum.is_none() {
                    // A Job that printed no checksum: recorded as failed, never as a backup.
                    backup.completed_at = None;
                    return Dump::Failed(format!(
                        "Backup Job {} succeeded but reported no checksum",
                        j.name
                    ));
                }
                Dump::Complete
            }
        }
    }

    /// Restores the backup into the scratch databases and compares: true once the result is
    /// recorded (verified or not), false while waiting or acting.
    fn verify_restored_backup(&mut self) -> bool {
        if self.targets.scratch.is_empty() || self.targets.verify_job.is_empty() {
            self.record_verification(
                false,
                Reason::NoScratchRecorded,
                vec!["status.targets names no scratch database or verify Job to restore the backup into (the plan started before cutover verified backups after the switch)".into()],
                None,
            );
            return true;
        }
        let job = self.targets.verify_job.clone();
        let scratch = self.targets.scratch_databases().join(", ");
        let Some(j) = self.obs.verify_job.clone() else {
            self.act(
                Action::CreateVerifyJob,
                format!(
                    "Verify Job {job} is restoring the backup into the scratch databases {scratch}"
                ),
            );
            self.show("restoring into scratch databases");
            return false;
        };
        match j.state {
            JobState::Active => {
                self.wait(
                    format!("Verify Job {job} is restoring the backup into the scratch databases {scratch}"),
                    SAFETY,
                );
                self.show("restoring into scratch databases");
                false
            }
            JobState::Failed => {
                let why = format!(
                    "Verify Job {job} could not restore the backup (checksums or mongorestore): {}",
                    one_line(&j.message)
                );
                self.record_verification(false, Reason::BackupRestoreFailed, vec![why], None);
                true
            }
            JobState::Succeeded => match self.obs.backup_compare.clone() {
                None => {
                    self.wait(
                        "Comparing the restored backup with the frozen sources".into(),
                        NEXT,
                    );
                    self.show("comparing");
                    false
                }
                Some(Err(e)) => {
                    self.wait(
                        format!("Comparing the restored backup with the frozen sources failed, retrying: {e}"),
                        POLL,
                    );
                    self.show("comparing");
                    false
                }
                Some(Ok(pairs)) => {
                    let (differences, totals) = compare_digests(&pairs);
                    let verified = differences.is_empty();
                    let reason = if verified {
                        Reason::RestoredAndCompared
                    } else {
                        Reason::BackupDiffers
                    };
                    self.record_verification(verified, reason, differences, Some(totals));
                    true
                }
            },
        }
    }

    /// Records the verification and sets `BackupVerified`; a failed one is also a Warning event.
    fn record_verification(
        &mut self,
        verified: bool,
        reason: Reason,
        differences: Vec<String>,
        totals: Option<Totals>,
    ) {
        let t = totals.unwrap_or_default();
        let path = self.targets.backup_dir.clone();
        let message = if verified {
            format!(
                "The backup of the frozen sources in {path} was restored into scratch databases and equals them: {} collections, {} documents, content hash {}",
                t.collections, t.documents, t.hash
            )
        } else {
            format!(
                "The backup of the frozen sources in {path} is not verified: {}. The new version serves normally; the source databases are kept (DropSourceDatabases refuses without a verified backup)",
                bounded_list(&differences)
            )
        };
        let shown: Vec<String> = differences.into_iter().take(10).collect();
        let backup = self.st.backup.get_or_insert_with(Default::default);
        backup.verification = Some(BackupVerification {
            verified,
            collections: t.collections,
            documents: t.documents,
            hash: t.hash,
            differences: shown,
            at: self.now,
        });
        self.set_cond(cond::BACKUP_VERIFIED, verified, reason, &message);
        if !verified {
            self.warn(reason, &message);
        }
        self.st.message = message;
    }

    /// Drops the scratch databases this plan claimed: true once none is left (or those left
    /// are not the plan's to drop, which is said and not waited on).
    fn scratch_dropped(&mut self) -> bool {
        let scratch = self.targets.scratch_databases();
        if scratch.is_empty() {
            return true;
        }
        let left: Vec<String> = match &self.obs.database {
            DatabaseView::Unknown => {
                self.wait("Listing the scratch databases".into(), NEXT);
                return false;
            }
            DatabaseView::Unreachable(e) => {
                let e = e.clone();
                self.wait(
                    format!("Cannot reach MongoDB to drop the scratch databases, retrying: {e}"),
                    POLL,
                );
                return false;
            }
            DatabaseView::Reachable { databases } => scratch
                .iter()
                .filter(|d| databases.contains_key(*d))
                .cloned()
                .collect(),
        };
        if left.is_empty() {
            return true;
        }
        if let Some(Err(e)) = &self.obs.claims {
            let e = e.clone();
            self.wait(
                format!(
                    "Cannot read the claim registry to drop the scratch databases, retrying: {e}"
                ),
                POLL,
            );
            return false;
        }
        let (mine, not_mine): (Vec<String>, Vec<String>) =
            left.into_iter().partition(|d| self.holds_database(d));
        if !not_mine.is_empty() {
            // Never dropped on a name alone.
            let msg = format!(
                "Scratch databases {} are kept: this plan holds no claim on them in cutover.claims; drop them by hand",
                not_mine.join(", ")
            );
            self.warn(Reason::NotClaimed, &msg);
        }
        if mine.is_empty() {
            return true;
        }
        self.act(
            Action::DropDatabases {
                names: mine.clone(),
            },
            format!("Dropping the scratch databases {}", mine.join(", ")),
        );
        self.show("dropping scratch databases");
        false
    }

    /// In `RollingBack` after the lift, `online`: drops the scratch databases a verification
    /// interrupted by the rollback left (those this plan claimed; best effort: an unreachable
    /// server does not hold the rollback up). True when it acts.
    pub(super) fn rollback_drops_scratch(&mut self) -> bool {
        if !self.backup_after_switch() || self.st.read_only_lifted_at.is_none() {
            return false;
        }
        let DatabaseView::Reachable { databases } = &self.obs.database else {
            return false;
        };
        let left: Vec<String> = self
            .targets
            .scratch_databases()
            .into_iter()
            .filter(|d| databases.contains_key(d) && self.holds_database(d))
            .collect();
        if left.is_empty() {
            return false;
        }
        self.act(
            Action::DropDatabases {
                names: left.clone(),
            },
            format!(
                "Dropping the scratch databases {} the backup verification left",
                left.join(", ")
            ),
        );
        true
    }

    /// In `RollingBack` after the lift, `online`: true while the old version must stay
    /// read-only because the dump of the frozen sources is not complete (acting or waiting,
    /// with `RollbackBlocked` saying so).
    pub(super) fn rollback_waits_for_dump(&mut self) -> bool {
        if !self.backup_after_switch() || self.st.read_only_lifted_at.is_none() {
            return false;
        }
        let waiting = match self.dump_frozen_sources() {
            Dump::Complete => {
                if cond::get(&self.st.conditions, cond::ROLLBACK_BLOCKED).is_some_and(|c| {
                    c.status == "True" && c.reason == Reason::AwaitingBackup.as_str()
                }) {
                    self.set_cond(
                        cond::ROLLBACK_BLOCKED,
                        false,
                        Reason::BackupComplete,
                        "The dump of the frozen sources is complete; the old version is made writable again",
                    );
                }
                return false;
            }
            Dump::Waiting => self.st.message.clone(),
            Dump::Failed(why) => {
                let msg = format!(
                    "{why}. Delete Job {} to dump again; the old version stays read-only until a dump is complete",
                    self.targets.backup_job
                );
                self.wait(msg.clone(), SAFETY);
                msg
            }
        };
        let msg = format!(
            "The rollback waits: the old version is made writable again only once the backup of the frozen sources is complete, since its writes would change them. {waiting}"
        );
        if self.set_cond(cond::ROLLBACK_BLOCKED, true, Reason::AwaitingBackup, &msg) {
            self.warn(Reason::AwaitingBackup, &msg);
        }
        self.st.message = msg;
        true
    }
}

/// Totals of the frozen sources over every collection.
#[derive(Default)]
pub(super) struct Totals {
    pub collections: i64,
    pub documents: i64,
    pub hash: String,
}

/// How each scratch database differs from its frozen source, collection by collection
/// (counts and content hashes), and the sources' totals with one hash over them all.
pub(super) fn compare_digests(pairs: &[DigestPair]) -> (Vec<String>, Totals) {
    let mut out = Vec::new();
    let mut lines = Vec::new();
    let mut t = Totals::default();
    for p in pairs {
        for (coll, s) in &p.source_collections {
            t.collections += 1;
            t.documents += s.count;
            lines.push(format!("{}.{coll} {} {}", p.source, s.count, s.hash));
            match p.scratch_collections.get(coll) {
                None => out.push(format!(
                    "{}.{coll}: {} documents in the source, missing from the backup",
                    p.source, s.count
                )),
                Some(b) if b.count != s.count => out.push(format!(
                    "{}.{coll}: source {} documents, backup {}",
                    p.source, s.count, b.count
                )),
                Some(b) if b.hash != s.hash => out.push(format!(
                    "{}.{coll}: same count ({}), different content (hash {} in the source, {} in the backup)",
                    p.source, s.count, s.hash, b.hash
                )),
                Some(_) => {}
            }
        }
        let extra: BTreeMap<&String, i64> = p
            .scratch_collections
            .iter()
            .filter(|(c, _)| !p.source_collections.contains_key(*c))
            .map(|(c, d)| (c, d.count))
            .collect();
        for (coll, n) in extra {
            out.push(format!(
                "{}.{coll}: {n} documents in the backup, not in the source",
                p.source
            ));
        }
    }
    lines.sort();
    let digest = Sha256::digest(lines.join("\n").as_bytes());
    t.hash = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    (out, t)
}
