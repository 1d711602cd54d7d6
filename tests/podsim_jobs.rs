//! The local environment's pod simulator drives real Jobs through the real Job controller:
//! `mongodump` into a mapped volume completes the Job; a failing command fails it.

mod common;

use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::json;

async fn run_job(env: &Env, ns: &str, name: &str, script: &str) -> Job {
    let job: Job = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "tools", "image": "mongo:7.0",
                "command": ["/bin/sh", "-c", script],
                "env": [{"name": "MONGODB_URI", "valueFrom": {"secretKeyRef": {"name": "mongo", "key": "uri"}}}],
                "volumeMounts": [{"name": "out", "mountPath": "/out"}]
            }],
            "volumes": [{"name": "out", "persistentVolumeClaim": {"claimName": "backups"}}]
        }}}
    }))
    .unwrap();
    let jobs = Api::<Job>::namespaced(env.client.clone(), ns);
    jobs.create(&PostParams::default(), &job)
        .await
        .expect("create job");
    let start = Instant::now();
    loop {
        let j = jobs.get(name).await.unwrap();
        let done = j
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
            });
        if done {
            return j;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "job {name} did not finish: {:?}",
            j.status
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn condition(j: &Job, t: &str) -> bool {
    j.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == t && c.status == "True"))
}

#[tokio::test]
async fn podsim_completes_a_mongodump_job_and_fails_a_failing_one() {
    let Some(env) = env().await else { return };
    let app = env
        .blue_app(
            "podsim-jobs",
            AppOptions {
                documents: 50,
                ..Default::default()
            },
        )
        .await;

    let dump = run_job(
        &env,
        &app.ns,
        "dump",
        &format!("mkdir -p /out/dump && mongodump --uri=\"$MONGODB_URI\" --db={} --archive=/out/dump/{}.archive.gz --gzip", app.db, app.db),
    )
    .await;
    assert!(condition(&dump, "Complete"), "{:?}", dump.status);
    let env_dir = std::env::var("CUTOVER_ENV_DIR").expect("CUTOVER_ENV_DIR from hack/dev-env env");
    let archive = std::path::Path::new(&env_dir).join(format!(
        "podsim/volumes/{}/pvc-backups/dump/{}.archive.gz",
        app.ns, app.db
    ));
    let size = std::fs::metadata(&archive).map(|m| m.len()).unwrap_or(0);
    assert!(size > 100, "archive {archive:?} is {size} bytes");

    let failing = run_job(&env, &app.ns, "fails", "echo about to fail; exit 3").await;
    assert!(condition(&failing, "Failed"), "{:?}", failing.status);
    let pods = Api::<Pod>::namespaced(env.client.clone(), &app.ns)
        .list(&ListParams::default().labels("job-name=fails"))
        .await
        .unwrap();
    let terminated = pods.items[0]
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0]
        .state
        .as_ref()
        .unwrap()
        .terminated
        .clone()
        .unwrap();
    assert_eq!(terminated.exit_code, 3);

    env.cleanup(&app.ns, &[app.db.clone(), app.content_db.clone()])
        .await;
}
