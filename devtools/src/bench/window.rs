//! Issue #15's view of a finished plan: the read-only window split into the copy (the sync's
//! drain for `online`), the rollouts, the app's migration and the switch; the online sync's
//! bulk throughput and lag; and the backup taken after the switch, when the plan has one.
//! Pure: from the final status and the UpgradePlan versions the benchmark's watch saw.

use serde::Serialize;

use super::history::Seen;
use super::timeline::ms;

/// The read-only window and where its time went (seconds). Each part is the time its phases
/// overlap the window (`readOnlySince` .. `readOnlyLiftedAt`), so the parts add up to the
/// window apart from `other` (time in no phase of a group, e.g. between two status writes).
#[derive(Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WindowSplit {
    pub read_only: Option<f64>,
    /// `BackingUp` + `Cloning`: the backup and the copy; for `online`, the sync's drain and the
    /// comparison (from EnteringReadOnly's verification to Cloning's end).
    pub copy: Option<f64>,
    /// `EnteringReadOnly` (old version restarted read-only), `DeployingGreen` and the part of
    /// `LiftingReadOnly` inside the window.
    pub rollouts: Option<f64>,
    /// `Migrating` (+ `AwaitingPromotion`): the new version's start and its own migration.
    pub migration: Option<f64>,
    /// `SwitchingTraffic`.
    pub switch: Option<f64>,
    /// The window minus the parts above.
    pub other: Option<f64>,
    /// The target figure: the window minus the app's migration.
    pub minus_migration: Option<f64>,
}

/// The online sync as the plan's status recorded it over the run.
#[derive(Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SyncStats {
    /// The `Syncing` phase: the app writable, the clones being copied and following.
    pub syncing_seconds: Option<f64>,
    /// From `Syncing` entered to every source's bulk copy recorded finished.
    pub bulk_seconds: Option<f64>,
    /// Seeded documents / `bulk_seconds`.
    pub bulk_docs_per_second: Option<f64>,
    /// Largest `status.sync.lagSeconds` recorded while syncing (whole seconds).
    pub max_lag_seconds: Option<i64>,
    /// The lag recorded when the plan went read-only.
    pub lag_at_read_only_seconds: Option<i64>,
    /// `status.sync.eventsApplied` at the end.
    pub events_applied: Option<i64>,
}

/// The backup of an `online` plan, taken after the switch.
#[derive(Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackupAfterSwitch {
    /// Seconds from read-only lifted to the backup verified (`BackupVerified` True first
    /// seen), or the phases named for the backup after the switch; `None`: the plan has none.
    pub seconds: Option<f64>,
    /// How it was found (phase names or the condition), or why there is none.
    pub how: String,
}

type Phase = (String, i64, Option<i64>);

fn phases(status: &serde_json::Value) -> Vec<Phase> {
    status["phases"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| {
                    Some((
                        p["name"].as_str()?.to_string(),
                        ms(&p["startedAt"])?,
                        ms(&p["finishedAt"]),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

pub fn split(status: &serde_json::Value) -> WindowSplit {
    let (Some(since), Some(lifted)) = (
        ms(&status["readOnlySince"]),
        ms(&status["readOnlyLiftedAt"]),
    ) else {
        return WindowSplit::default();
    };
    let ps = phases(status);
    let overlap = |names: &[&str]| -> i64 {
        ps.iter()
            .filter(|(n, _, _)| names.contains(&n.as_str()))
            .map(|(_, s, f)| {
                let end = f.unwrap_or(lifted).min(lifted);
                (end - (*s).max(since)).max(0)
            })
            .sum()
    };
    let copy = overlap(&["BackingUp", "Cloning"]);
    let rollouts = overlap(&["EnteringReadOnly", "DeployingGreen", "LiftingReadOnly"]);
    let migration = overlap(&["Migrating", "AwaitingPromotion"]);
    let switch = overlap(&["SwitchingTraffic"]);
    let window = lifted - since;
    WindowSplit {
        read_only: Some(secs(window)),
        copy: Some(secs(copy)),
        rollouts: Some(secs(rollouts)),
        migration: Some(secs(migration)),
        switch: Some(secs(switch)),
        other: Some(secs(window - copy - rollouts - migration - switch)),
        minus_migration: Some(secs(window - migration)),
    }
}

fn plan_versions(history: &[Seen]) -> impl Iterator<Item = &Seen> {
    history
        .iter()
        .filter(|s| s.kind == "UpgradePlan" && !s.deleted)
}

/// The sync's figures; `documents`: what was seeded into the sources.
pub fn sync_stats(status: &serde_json::Value, history: &[Seen], documents: u64) -> SyncStats {
    let ps = phases(status);
    let Some((_, sync_start, sync_end)) = ps.iter().find(|(n, _, _)| n == "Syncing").cloned()
    else {
        return SyncStats::default();
    };
    let all_bulk = |st: &serde_json::Value| {
        st["sync"]["sources"]
            .as_array()
            .is_some_and(|s| !s.is_empty() && s.iter().all(|r| r["bulkFinished"] == true))
    };
    let bulk_done = plan_versions(history)
        .find(|s| all_bulk(&s.object["status"]))
        .map(|s| ms(&s.object["status"]["sync"]["updatedAt"]).unwrap_or(s.at_ms));
    let bulk_seconds = bulk_done.map(|b| secs(b - sync_start));
    let lag = |s: &&Seen| s.object["status"]["sync"]["lagSeconds"].as_i64();
    let phase_is = |s: &Seen, p: &str| s.object["status"]["phase"] == p;
    let max_lag = plan_versions(history)
        .filter(|s| phase_is(s, "Syncing"))
        .filter_map(|s| lag(&s))
        .max();
    // The lag the decision to go read-only was taken on, as the Syncing phase's record says
    // ("The clones are N s behind the sources ..."): status.sync is refreshed only every few
    // seconds and may not hold it.
    let decided = status["phases"].as_array().and_then(|a| {
        a.iter()
            .filter(|p| p["name"] == "Syncing")
            .find_map(|p| lag_in(p["detail"].as_str()?))
    });
    let at_read_only = decided
        .or_else(|| {
            plan_versions(history)
                .find(|s| phase_is(s, "EnteringReadOnly"))
                .and_then(|s| lag(&s))
        })
        .or_else(|| {
            plan_versions(history)
                .filter(|s| phase_is(s, "Syncing"))
                .filter_map(|s| lag(&s))
                .last()
        });
    SyncStats {
        syncing_seconds: sync_end.map(|e| secs(e - sync_start)),
        bulk_docs_per_second: bulk_seconds
            .filter(|s| *s > 0.0)
            .map(|s| documents as f64 / s),
        bulk_seconds,
        max_lag_seconds: max_lag.max(at_read_only),
        lag_at_read_only_seconds: at_read_only,
        events_applied: status["sync"]["eventsApplied"].as_i64(),
    }
}

/// N from "... are N s behind ...".
fn lag_in(detail: &str) -> Option<i64> {
    let (before, _) = detail.split_once(" s behind")?;
    before.rsplit(' ').next()?.parse().ok()
}

fn backup_verified_true(st: &serde_json::Value) -> bool {
    st["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "BackupVerified" && c["status"] == "True")
    })
}

/// The backup after the switch: phases whose name speaks of the backup that start after
/// `SwitchingTraffic`, else `BackupVerified` becoming True after the lift.
pub fn backup_after_switch(status: &serde_json::Value, history: &[Seen]) -> BackupAfterSwitch {
    let ps = phases(status);
    let Some(switch_at) = ps
        .iter()
        .find(|(n, _, _)| n == "SwitchingTraffic")
        .map(|p| p.1)
    else {
        return BackupAfterSwitch {
            seconds: None,
            how: "the plan did not switch".into(),
        };
    };
    let after: Vec<&Phase> = ps
        .iter()
        .filter(|(n, s, _)| *s >= switch_at && n.contains("Backup"))
        .collect();
    if !after.is_empty() {
        let total: i64 = after.iter().filter_map(|(_, s, f)| f.map(|f| f - s)).sum();
        let names: Vec<&str> = after.iter().map(|p| p.0.as_str()).collect();
        return BackupAfterSwitch {
            seconds: Some(secs(total)),
            how: format!("phase {}", names.join(" + ")),
        };
    }
    let Some(lifted) = ms(&status["readOnlyLiftedAt"]) else {
        return BackupAfterSwitch {
            seconds: None,
            how: "read-only was not lifted".into(),
        };
    };
    match plan_versions(history)
        .filter(|s| s.at_ms >= lifted)
        .find(|s| backup_verified_true(&s.object["status"]))
    {
        Some(s) => BackupAfterSwitch {
            seconds: Some(secs(s.at_ms - lifted)),
            how: "read-only lifted → BackupVerified True (seen)".into(),
        },
        None => BackupAfterSwitch {
            seconds: None,
            how: "no backup after the switch (BackupVerified never True after the lift)".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(s: f64) -> String {
        let ms = 1_767_225_600_000_i64 + (s * 1000.0) as i64;
        jiff::Timestamp::from_millisecond(ms).unwrap().to_string()
    }

    fn phase(name: &str, a: f64, b: f64) -> serde_json::Value {
        json!({"name": name, "startedAt": t(a), "finishedAt": t(b)})
    }

    fn seen(at: f64, status: serde_json::Value) -> Seen {
        Seen {
            at_ms: 1_767_225_600_000_i64 + (at * 1000.0) as i64,
            kind: "UpgradePlan",
            name: "p".into(),
            uid: String::new(),
            rv: 0,
            deleted: false,
            object: json!({ "status": status }),
        }
    }

    fn online_status() -> serde_json::Value {
        json!({
            "readOnlySince": t(20.0),
            "readOnlyLiftedAt": t(30.5),
            "phases": [
                phase("Pending", 0.0, 0.5),
                json!({"name": "Syncing", "startedAt": t(0.5), "finishedAt": t(20.0),
                    "detail": "The clones are 1 s behind the sources (backup.online.maxLag 2s); making the app read-only"}),
                phase("EnteringReadOnly", 20.0, 21.0),
                phase("Cloning", 21.0, 24.0),
                phase("DeployingGreen", 24.0, 24.5),
                phase("Migrating", 24.5, 28.5),
                phase("SwitchingTraffic", 28.5, 29.0),
                phase("LiftingReadOnly", 29.0, 31.0),
                phase("CleaningUp", 31.0, 31.5),
            ],
            "sync": {"eventsApplied": 900}
        })
    }

    #[test]
    fn splits_the_window_by_phase_overlap() {
        let s = split(&online_status());
        assert_eq!(s.read_only, Some(10.5));
        assert_eq!(s.copy, Some(3.0));
        // EnteringReadOnly 1 + DeployingGreen 0.5 + LiftingReadOnly up to the lift 1.5.
        assert_eq!(s.rollouts, Some(3.0));
        assert_eq!(s.migration, Some(4.0));
        assert_eq!(s.switch, Some(0.5));
        assert_eq!(s.other, Some(0.0));
        assert_eq!(s.minus_migration, Some(6.5));
        assert_eq!(split(&json!({})), WindowSplit::default());
    }

    #[test]
    fn sync_throughput_and_lag_from_the_recorded_status() {
        let src = |done: bool| json!([{"bulkFinished": done}, {"bulkFinished": true}]);
        let history = vec![
            seen(
                2.0,
                json!({"phase": "Syncing", "sync": {"sources": src(false), "lagSeconds": 3}}),
            ),
            seen(
                10.6,
                json!({"phase": "Syncing", "sync": {"sources": src(true), "lagSeconds": 7, "updatedAt": t(10.5)}}),
            ),
            seen(
                15.0,
                json!({"phase": "Syncing", "sync": {"sources": src(true), "lagSeconds": 1}}),
            ),
            seen(
                20.0,
                json!({"phase": "EnteringReadOnly", "sync": {"sources": src(true), "lagSeconds": 0}}),
            ),
        ];
        let s = sync_stats(&online_status(), &history, 20_000);
        assert_eq!(s.syncing_seconds, Some(19.5));
        assert_eq!(s.bulk_seconds, Some(10.0));
        assert_eq!(s.bulk_docs_per_second, Some(2000.0));
        assert_eq!(s.max_lag_seconds, Some(7));
        // The Syncing record's detail, where the decision was taken.
        assert_eq!(s.lag_at_read_only_seconds, Some(1));
        assert_eq!(s.events_applied, Some(900));
        assert_eq!(
            sync_stats(&json!({"phases": []}), &history, 1),
            SyncStats::default()
        );
    }

    #[test]
    fn backup_after_switch_by_phase_or_condition_else_none() {
        let mut st = online_status();
        let verified = json!({"phase": "Succeeded", "conditions": [{"type": "BackupVerified", "status": "True"}]});
        let history = vec![seen(40.5, verified)];
        let b = backup_after_switch(&st, &history);
        assert_eq!(b.seconds, Some(10.0));
        assert_eq!(backup_after_switch(&st, &[]).seconds, None);
        st["phases"]
            .as_array_mut()
            .unwrap()
            .push(phase("VerifyingBackup", 31.0, 43.0));
        let b = backup_after_switch(&st, &[]);
        assert_eq!(
            (b.seconds, b.how.as_str()),
            (Some(12.0), "phase VerifyingBackup")
        );
        // restore/serverSide: BackingUp is before the switch, not after it.
        let before =
            json!({"phases": [phase("BackingUp", 1.0, 3.0), phase("SwitchingTraffic", 9.0, 9.5)]});
        assert_eq!(backup_after_switch(&before, &[]).seconds, None);
    }
}
