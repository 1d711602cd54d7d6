//! A plan the operator cannot decode is answered on the object (Failed/InvalidSpec, naming the
//! field) and does not stall the watch of the other plans; fixed, it is checked again.

use std::time::{Duration, Instant};

use cutover::crd::Phase;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

use crate::common::*;
use crate::support::*;

const CRD: &str = "upgradeplans.cutover.dev";
/// The duration pattern before the schema bounded it: admits values the operator refuses.
const LOOSE: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";

/// Puts the real CRD back when dropped, even if the test panics.
struct CrdRestore {
    original: CustomResourceDefinition,
}

impl Drop for CrdRestore {
    fn drop(&mut self) {
        // A client of its own: the test's client runs on the runtime this drop blocks.
        let original = self.original.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let client = Client::try_default().await.expect("kube client");
                let api: Api<CustomResourceDefinition> = Api::all(client);
                for _ in 0..20 {
                    let mut crd = original.clone();
                    let current = api.get(CRD).await.expect("get CRD");
                    crd.metadata.resource_version = current.metadata.resource_version;
                    if api.replace(CRD, &PostParams::default(), &crd).await.is_ok() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                panic!("could not restore the CRD");
            })
        })
        .join()
        .expect("restore the CRD");
    }
}

/// Loosens the pattern of `spec.cleanup.scaleDownBlueAfter` only (what a CRD older than the
/// operator would admit); every other field keeps the real schema.
async fn loosen_crd(env: &Env) -> CrdRestore {
    let api: Api<CustomResourceDefinition> = Api::all(env.client.clone());
    let original = api.get(CRD).await.expect("get CRD");
    let mut v = serde_json::to_value(&original).unwrap();
    v["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["cleanup"]
        ["properties"]["scaleDownBlueAfter"]["pattern"] = json!(LOOSE);
    let loose: CustomResourceDefinition = serde_json::from_value(v).unwrap();
    api.replace(CRD, &PostParams::default(), &loose)
        .await
        .expect("loosen the CRD");
    CrdRestore { original }
}

fn raw_plans(env: &Env, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
        "cutover.dev",
        "v1alpha1",
        "UpgradePlan",
    ));
    Api::namespaced_with(env.client.clone(), ns, &ar)
}

/// Applies a plan without decoding the answer (the typed client cannot read it back).
async fn apply_raw(env: &Env, ns: &str, obj: &Value) -> Result<(), String> {
    let name = obj["metadata"]["name"].as_str().unwrap().to_string();
    raw_plans(env, ns)
        .patch(
            &name,
            &PatchParams::apply("test").force(),
            &Patch::Apply(obj),
        )
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

async fn wait_raw(
    env: &Env,
    op: &Operator,
    ns: &str,
    name: &str,
    what: &str,
    pred: impl Fn(&DynamicObject) -> bool,
) -> DynamicObject {
    let start = Instant::now();
    loop {
        let p = raw_plans(env, ns).get(name).await.expect("get plan");
        if pred(&p) {
            return p;
        }
        if start.elapsed() > PLAN_TIMEOUT {
            panic!(
                "plan {ns}/{name}: waited for {what}.\nstatus: {}\noperator log tail:\n{}",
                p.data["status"],
                op.log_tail(40)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn failed_with(p: &DynamicObject, reason: &str) -> bool {
    let s = &p.data["status"];
    s["phase"] == "Failed"
        && s["failure"]["reason"] == reason
        && s["failure"]["phase"] == "Pending"
        && s["observedGeneration"] == json!(p.metadata.generation)
}

/// The schema refuses a duration the operator cannot hold; one it admits nonetheless (an older,
/// looser CRD) gets Failed/InvalidSpec with an event naming the field, written once; another
/// plan in the namespace still succeeds; and fixing the bad plan gets it checked again.
#[tokio::test]
async fn an_undecodable_plan_is_answered_and_others_proceed() {
    let Some(env) = env().await else { return };
    let app = env.blue_app("rel-undecodable", AppOptions::default()).await;
    let ns = app.ns.clone();
    let op = Operator::start(&ns);

    // The real schema: refused at apply time.
    let mut bad = squidex_plan("bad", &app, 2);
    bad["spec"]["app"] = json!({"deployment": "missing", "service": "missing"});
    bad["spec"]["cleanup"] = json!({"scaleDownBlueAfter": "99999999h"});
    let refused = apply_raw(&env, &ns, &bad).await.unwrap_err();
    assert!(refused.contains("scaleDownBlueAfter"), "{refused}");

    // A looser CRD admits it: the operator must answer on the object.
    let restore = loosen_crd(&env).await;
    let start = Instant::now();
    while let Err(e) = apply_raw(&env, &ns, &bad).await {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the loosened CRD still refuses: {e}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let answered = wait_raw(&env, &op, &ns, "bad", "Failed/InvalidSpec", |p| {
        failed_with(p, "InvalidSpec")
    })
    .await;
    let status = &answered.data["status"];
    let message = status["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("spec.cleanup.scaleDownBlueAfter") && message.contains("99999999h"),
        "{message}"
    );
    let ready = status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(
        (&ready["status"], &ready["reason"]),
        (&json!("False"), &json!("InvalidSpec")),
        "{status}"
    );
    assert!(env.has_event(&ns, "InvalidSpec", "Warning").await);
    // The status write comes back as a watch event: it is not written again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = raw_plans(&env, &ns).get("bad").await.unwrap();
    assert_eq!(
        later.resource_version(),
        answered.resource_version(),
        "the answer was written again"
    );

    // Another plan in the same namespace is not stalled by the undecodable one.
    env.apply(&ns, squidex_plan("good", &app, 2)).await;
    env.wait_phase(&op, &ns, "good", Phase::Succeeded, PLAN_TIMEOUT)
        .await;

    // Fixed (a new generation), the plan is checked again from Pending: here its preflight
    // refuses it (its Deployment does not exist), a check it could not reach before.
    raw_plans(&env, &ns)
        .patch(
            "bad",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"cleanup": {"scaleDownBlueAfter": "1h"}}})),
        )
        .await
        .expect("fix the plan");
    let fixed = wait_raw(&env, &op, &ns, "bad", "re-checked after the fix", |p| {
        let s = &p.data["status"];
        s["observedGeneration"] == json!(p.metadata.generation)
            && s["failure"]["reason"] != "InvalidSpec"
            && s["phase"] != "Pending"
    })
    .await;
    assert!(
        fixed.data["status"]["message"]
            .as_str()
            .is_some_and(|m| !m.contains("cannot be read")),
        "{}",
        fixed.data["status"]
    );
    drop(restore);
    env.finish(&op, &ns, &all_dbs(&app, &["good", "bad"])).await;
}
