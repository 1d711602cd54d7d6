//! The invariants checked at the end of a run, per app, and the table that shows them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::Api;
use kube::api::ListParams;

use super::drive::Driven;
use super::faults::Injected;
use super::scenario::Scenario;
use crate::bench::cluster::Cluster;
use crate::load::check::check_http;
use crate::load::endpoints::{Target, resolve};
use crate::load::log::{Outcome, Record};

/// One app's row of the table and what it violated.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub app: String,
    pub method: String,
    pub kind: String,
    pub intended: String,
    pub actual: String,
    pub faults: Vec<String>,
    pub acked: u64,
    pub lost: u64,
    pub accepted_lost: u64,
    pub read_only_s: f64,
    /// Jobs created in the app's namespace.
    pub jobs: usize,
    /// What the run had to do by hand for this app (not violations; shown under the table).
    pub notes: Vec<String>,
    pub violations: Vec<String>,
}

/// Longest stretch of refused writes (the app answering 503), seconds.
fn read_only_window(records: &[Record]) -> f64 {
    let mut best = 0i64;
    let mut start: Option<i64> = None;
    let mut sorted: Vec<&Record> = records.iter().collect();
    sorted.sort_by_key(|r| r.sent_ms);
    for r in sorted {
        match (r.outcome, start) {
            (Outcome::Refused, None) => start = Some(r.sent_ms),
            (Outcome::Refused, Some(s)) => best = best.max(r.done_ms - s),
            (Outcome::Acked, Some(_)) => start = None,
            _ => {}
        }
    }
    best as f64 / 1000.0
}

/// What the run saw besides the app's own plan and writes.
pub struct RunSeen<'a> {
    pub faults: &'a [Injected],
    pub operator_log: &'a str,
    /// The connection Secret's value, never to be seen anywhere.
    pub secret: &'a str,
    /// Jobs seen in the app's namespace, and those created more than once (name, uids).
    pub jobs: (usize, Vec<(String, Vec<String>)>),
}

/// Checks one app.
pub async fn check_app(
    c: &Cluster,
    s: &Scenario,
    d: &Driven,
    records: &[Record],
    seen: &RunSeen<'_>,
) -> Row {
    let (faults, operator_log, secret, jobs) =
        (seen.faults, seen.operator_log, seen.secret, &seen.jobs);
    let mut row = Row {
        app: s.namespace.clone(),
        method: super::scenario::method_name(s.method).into(),
        kind: format!("{} x{}", s.kind.label(), s.replicas),
        intended: s.kind.intended_phase().into(),
        ..Row::default()
    };
    let v = &mut row.violations;
    if let Some(e) = &d.error {
        v.push(format!("driver: {e}"));
    }
    row.jobs = jobs.0;
    if d.locks_released > 0 {
        row.notes.push(format!(
            "released the clone's migration lock by hand {} time(s): held at the target version after the migration (the server lost the holder's release)",
            d.locks_released
        ));
    }
    for (job, uids) in &jobs.1 {
        v.push(format!(
            "Job {job} created {} times (uids {uids:?})",
            uids.len()
        ));
    }
    if matches!(s.kind, super::scenario::Kind::RollbackRefused { .. }) && d.refused.is_none() {
        v.push(
            "a rollback after the lift without acceptDataLoss was not refused with DataDiverged"
                .into(),
        );
    }
    let end = if d.done_ms > 0 { d.done_ms } else { i64::MAX };
    row.faults = faults
        .iter()
        .filter(|f| f.at_ms >= d.applied_ms && f.at_ms <= end)
        .map(|f| format!("{:?}@{:.0}s", f.fault, f.at_s))
        .collect();

    // The plan: terminal as intended, each phase recorded once, no secret in its status.
    let st = c
        .plan_status(&s.namespace, &s.plan)
        .await
        .unwrap_or_default();
    row.actual = st["phase"].as_str().unwrap_or("?").to_string();
    if row.actual != row.intended {
        v.push(format!(
            "phase {} (intended {}): {}",
            row.actual, row.intended, st["message"]
        ));
    }
    if matches!(s.kind, super::scenario::Kind::FailingMigration)
        && row.actual == "Failed"
        && st["failure"]["phase"].as_str() != Some("Migrating")
    {
        v.push(format!(
            "failed, but not in its migration: {}",
            st["failure"]["message"]
        ));
    }
    // CleaningUp is recorded once per cleanup step ("ScaleDownBlue: ...", by design): a
    // step is the unit there.
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in st["phases"].as_array().into_iter().flatten() {
        let name = p["name"].as_str().unwrap_or("?");
        let detail = p["detail"].as_str().unwrap_or_default();
        let key = match name {
            "CleaningUp" => format!("CleaningUp {}", detail.split(':').next().unwrap_or("")),
            _ => name.to_string(),
        };
        seen.entry(key).or_default().push(detail.to_string());
    }
    for (phase, details) in seen.iter().filter(|(_, d)| d.len() > 1) {
        v.push(format!(
            "{phase} recorded {} times in status.phases: {details:?}",
            details.len()
        ));
    }
    if !secret.is_empty() && st.to_string().contains(secret) {
        v.push("the connection Secret's value is in the plan's status".into());
    }
    match Api::<Event>::namespaced(c.client.clone(), &s.namespace)
        .list(&ListParams::default())
        .await
    {
        Ok(events) => {
            if !secret.is_empty()
                && events
                    .items
                    .iter()
                    .any(|e| e.message.as_deref().unwrap_or_default().contains(secret))
            {
                v.push("the connection Secret's value is in an event".into());
            }
        }
        Err(e) => v.push(format!("listing events: {e}")),
    }
    if !secret.is_empty() && operator_log.contains(secret) {
        v.push("the connection Secret's value is in the operator's log".into());
    }

    // The Service selects exactly one version, the one the outcome says.
    let target = Target {
        namespace: s.namespace.clone(),
        service: crate::bench::app::SERVICE.into(),
        port: None,
    };
    // The version the actual outcome says (a wrong outcome is reported above, once).
    let want = cutover::fixtures::appsim_image(if row.actual == "Succeeded" {
        crate::bench::plan::TARGET_VERSION
    } else {
        1
    });
    match resolve(&c.client, &target).await {
        Ok(eps) if eps.is_empty() => v.push("the Service selects no ready pod".into()),
        Ok(eps) => {
            let pods = Api::<Pod>::namespaced(c.client.clone(), &s.namespace);
            let mut images = std::collections::BTreeSet::new();
            for ep in &eps {
                if let Ok(p) = pods.get(&ep.pod).await {
                    let spec = p.spec.unwrap_or_default();
                    images.extend(spec.containers.into_iter().filter_map(|c| c.image));
                }
            }
            if images.len() != 1 || !images.contains(&want) {
                v.push(format!("the Service selects {images:?}, want only {want}"));
            }
        }
        Err(e) => v.push(format!("resolving the Service: {e:#}")),
    }

    // Writes: the app serves read-write after the plan ended; every acknowledged write is
    // there, except those a rollback with acceptDataLoss was told to lose.
    row.read_only_s = read_only_window(records);
    if d.done_ms > 0
        && !records
            .iter()
            .any(|r| r.outcome == Outcome::Acked && r.sent_ms > d.done_ms + 2000)
    {
        v.push("no write acknowledged after the plan ended: not read-write".into());
    }
    let green = st["greenDeployment"].as_str().map(|g| format!("{g}-"));
    let late = matches!(s.kind, super::scenario::Kind::RollbackLate { .. });
    let (lost_ok, kept): (Vec<Record>, Vec<Record>) = records.iter().cloned().partition(|r| {
        late && r.outcome == Outcome::Acked
            && green
                .as_deref()
                .is_some_and(|g| r.pod.as_deref().is_some_and(|p| p.starts_with(g)))
    });
    row.accepted_lost = lost_ok.len() as u64;
    row.acked = records
        .iter()
        .filter(|r| r.outcome == Outcome::Acked)
        .count() as u64;
    match check_http(&c.client, &target, &kept).await {
        Ok(rep) => {
            row.lost = rep.lost.len() as u64;
            if !rep.lost.is_empty() {
                v.push(format!("{rep}"));
            }
        }
        Err(e) => v.push(format!("reading the writes back: {e:#}")),
    }
    row
}

/// The table, one line per app, then every violation.
pub fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<16} {:<10} {:<24} {:<10} {:<10} {:>4} {:>7} {:>5} {:>9} {:>6}  {}\n",
        "app",
        "method",
        "plan",
        "intended",
        "actual",
        "jobs",
        "acked",
        "lost",
        "acc.lost",
        "ro(s)",
        "faults seen"
    );
    for r in rows {
        out += &format!(
            "{:<16} {:<10} {:<24} {:<10} {:<10} {:>4} {:>7} {:>5} {:>9} {:>6.1}  {}\n",
            r.app,
            r.method,
            r.kind,
            r.intended,
            r.actual,
            r.jobs,
            r.acked,
            r.lost,
            r.accepted_lost,
            r.read_only_s,
            if r.faults.is_empty() {
                "-".to_string()
            } else {
                r.faults.join(", ")
            }
        );
    }
    for r in rows {
        for n in &r.notes {
            out += &format!("NOTE {}: {n}\n", r.app);
        }
    }
    for r in rows {
        for v in &r.violations {
            out += &format!("VIOLATION {}: {v}\n", r.app);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::log::Op;

    fn rec(outcome: Outcome, sent_ms: i64) -> Record {
        Record {
            op: Op::Insert,
            id: "x".into(),
            v: 1,
            outcome,
            status: None,
            sent_ms,
            done_ms: sent_ms + 10,
            pod: None,
            writer: 0,
            error: None,
        }
    }

    #[test]
    fn read_only_window_is_the_longest_refused_stretch() {
        let r = [
            rec(Outcome::Acked, 0),
            rec(Outcome::Refused, 1000),
            rec(Outcome::Refused, 3000),
            rec(Outcome::Acked, 4000),
            rec(Outcome::Refused, 5000),
        ];
        assert_eq!(read_only_window(&r), 2.01);
    }
}
