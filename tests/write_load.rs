//! Users keep writing through the app while it is upgraded: every write the app acknowledged
//! is in the data the new version serves, and the app refused writes only while it was
//! read-only (issue #15 item 5). The checker is shown not to be vacuous: an acknowledged
//! item removed, or an acknowledged update undone, behind the app's back is reported lost.

mod common;

use std::time::Duration;

use common::*;
use cutover::crd::Phase;
use cutover_devtools::load::check::{self, Acked};
use cutover_devtools::load::log::{Outcome, read};
use mongodb::bson::{Document, doc};
use serde_json::json;

const PLAN_TIMEOUT: Duration = Duration::from_secs(180);
/// How long after the window's end a write may still meet a pod of the window: the load
/// re-resolves the Service's pods every second, and the API server is slow on a busy machine.
const SLACK_AFTER: Duration = Duration::from_secs(5);

#[tokio::test]
async fn no_acknowledged_write_is_lost_across_an_upgrade_under_write_load() {
    let Some(env) = env().await else { return };
    let app = env
        .blue_app(
            "wload",
            AppOptions {
                replicas: 2,
                ..Default::default()
            },
        )
        .await;
    let op = Operator::start(&app.ns);
    let load = env.start_load(&app, 50.0).await;
    wait_acked(&load, 0, 50).await;

    let mut plan = squidex_plan("wl", &app, 2);
    plan["spec"]["backup"]["cloneMethod"] = json!("serverSide");
    let done = env
        .apply_until(&op, &app.ns, plan, Phase::Succeeded, PLAN_TIMEOUT)
        .await;
    // Past the window's end and its slack below, the new version takes writes.
    tokio::time::sleep(SLACK_AFTER + Duration::from_secs(1)).await;
    let later = load.summary().acked;
    wait_acked(&load, later, 50).await;
    let log = load.log.clone();
    let summary = load.stop().await;
    eprintln!("load: {summary}");
    let records = read(&log).expect("read the write log");

    // The app refused writes only while it was read-only, and took writes before and after.
    let (since, end) = read_only_window(&done);
    let slack = i64::try_from(SLACK_AFTER.as_millis()).unwrap();
    let green = done
        .status
        .as_ref()
        .unwrap()
        .green_deployment
        .clone()
        .unwrap();
    let refused = summary.refused + summary.failed;
    assert!(
        summary.refused > 0,
        "the load saw no read-only window: {summary}"
    );
    for r in records
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Refused | Outcome::Failed))
    {
        // Refused (503) or not sent (a pod going away in a rollout), only in the window: 1 s
        // for the status's clock before it, SLACK_AFTER after it.
        assert!(
            r.done_ms >= since - 1_000 && r.sent_ms <= end + slack,
            "{:?} outside the read-only window [{since}, {end}] ({refused} in all): {r:?}",
            r.outcome
        );
    }
    assert_eq!(summary.unexpected, 0, "{summary}");
    let acked_before = records
        .iter()
        .filter(|r| r.outcome == Outcome::Acked && r.done_ms < since)
        .count();
    let acked_after: Vec<_> = records
        .iter()
        .filter(|r| r.outcome == Outcome::Acked && r.sent_ms > end + slack)
        .collect();
    assert!(acked_before > 0, "no write acknowledged before the window");
    assert!(
        !acked_after.is_empty(),
        "no write acknowledged after the window"
    );
    // The new version took writes only once read-only was lifted on it.
    let lifted = done
        .status
        .as_ref()
        .unwrap()
        .read_only_lifted_at
        .unwrap()
        .as_millis();
    let green_pod = |r: &&cutover_devtools::load::log::Record| {
        r.pod
            .as_deref()
            .unwrap_or_default()
            .starts_with(&format!("{green}-"))
    };
    for r in records
        .iter()
        .filter(|r| r.outcome == Outcome::Acked)
        .filter(green_pod)
    {
        assert!(
            r.done_ms >= lifted,
            "{green} acknowledged a write before the lift at {lifted}: {r:?}"
        );
    }
    for r in &acked_after {
        let pod = r.pod.as_deref().unwrap_or_default();
        assert!(
            pod.starts_with(&format!("{green}-")),
            "after the switch the Service's pods are {green}'s, a write went to {pod}"
        );
    }

    // Every acknowledged write is in what the new version serves, and in its database.
    let target = env.load_target(&app);
    let report = check::check_http(&env.client, &target, &records)
        .await
        .expect("check through the app");
    eprintln!("through the app: {report}");
    assert_eq!(report.acked, summary.acked);
    assert!(report.lost.is_empty(), "{report}");
    assert!(report.present > 0 && report.deleted > 0, "{report}");
    let clone_content = env.mongo.database(&app.clone_of(&app.content_db, "wl"));
    let coll = check::contents_collection(&clone_content).await.unwrap();
    assert_eq!(coll, "States_Contents_All2");
    let direct = check::check_database(&clone_content, &coll, &records)
        .await
        .unwrap();
    assert!(direct.lost.is_empty(), "{direct}");
    assert_eq!(direct.present, report.present);

    // Not vacuous: an acknowledged item deleted and an acknowledged update undone behind the
    // app's back are both reported lost, through the app and in the database.
    let expected = check::expected(&records);
    let mut settled = expected
        .iter()
        .filter(|(_, e)| e.in_doubt.is_none())
        .filter_map(|(id, e)| match e.acked {
            Some(Acked::Present(v)) if v >= 2 => Some((id.clone(), true)),
            Some(Acked::Present(_)) => Some((id.clone(), false)),
            _ => None,
        });
    let removed = settled
        .find(|(_, _)| true)
        .map(|(id, _)| id)
        .expect("an acknowledged item");
    let undone = settled
        .find(|(_, updated)| *updated)
        .map(|(id, _)| id)
        .expect("an acknowledged update");
    let contents = clone_content.collection::<Document>(&coll);
    let del = contents.delete_one(doc! {"_id": &removed}).await.unwrap();
    assert_eq!(del.deleted_count, 1);
    let upd = contents
        .update_one(doc! {"_id": &undone}, doc! {"$set": {"v": 1_i64}})
        .await
        .unwrap();
    assert_eq!(upd.modified_count, 1);
    let report = check::check_http(&env.client, &target, &records)
        .await
        .unwrap();
    let mut lost: Vec<&str> = report.lost.iter().map(|l| l.id.as_str()).collect();
    lost.sort_unstable();
    let mut want = vec![removed.as_str(), undone.as_str()];
    want.sort_unstable();
    assert_eq!(lost, want, "{report}");
    assert!(
        report.to_string().contains("acknowledged writes lost: 2"),
        "{report}"
    );
    let direct = check::check_database(&clone_content, &coll, &records)
        .await
        .unwrap();
    assert_eq!(direct.lost.len(), 2, "{direct}");

    let _ = std::fs::remove_file(&log);
    env.cleanup(&app.ns, &all_dbs(&app, &["wl"])).await;
}
