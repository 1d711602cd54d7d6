use std::collections::BTreeMap;

use serde_json::json;

use super::{blue, env_of, plan, targets_of, value};
use crate::crd::EnvVarSpec;
use crate::k8s::build::*;
use crate::plan::names::TRACK_LABEL;

#[test]
fn picks_the_app_container() {
    let b = blue();
    assert_eq!(app_container(&b, Some("squidex")), Ok("squidex".into()));
    assert!(matches!(
        app_container(&b, None),
        Err(BuildError::AmbiguousContainer { count: 2, .. })
    ));
    assert!(matches!(
        app_container(&b, Some("nope")),
        Err(BuildError::NoSuchContainer { .. })
    ));
}

#[test]
fn blue_patch_names_only_the_label_and_the_variable() {
    let ro = EnvVarSpec {
        name: "MODE__ISREADONLY".into(),
        value: "true".into(),
    };
    let on = blue_read_only_patch("squidex", "squidex", &ro, true);
    assert_eq!(
        on,
        json!({"spec": {"template": {
            "metadata": {"labels": {TRACK_LABEL: "squidex"}},
            "spec": {"containers": [{"name": "squidex", "env": [{"name": "MODE__ISREADONLY", "value": "true"}]}]}
        }}})
    );
    let off = blue_read_only_patch("squidex", "squidex", &ro, false);
    assert_eq!(
        off["spec"]["template"]["spec"]["containers"][0]["env"],
        json!([{"name": "MODE__ISREADONLY", "$patch": "delete"}]),
        "lifting deletes the variable by name, whoever set it"
    );
}

#[test]
fn green_runs_the_target_on_the_clones_read_only() {
    let p = plan(
        json!({"app": {"deployment": "squidex", "service": "squidex", "container": "squidex"}}),
    );
    let b = blue();
    let uris = BTreeMap::from([(
        "STORE__MONGODB__CONFIGURATION".to_string(),
        "mongodb://u:pw@db/Squidex".to_string(),
    )]);
    let selector = BTreeMap::from([("app".to_string(), "squidex".to_string())]);
    let (g, secret) = green(&GreenInputs {
        plan: &p,
        targets: &targets_of(&p),
        blue: &b,
        container: "squidex",
        replicas: 2,
        uri_values: &uris,
        service_selector: &selector,
    })
    .unwrap();
    assert_eq!(g.metadata.name.as_deref(), Some("squidex-up7"));
    let spec = g.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(2));
    let labels = spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap();
    assert_eq!(
        labels.get(TRACK_LABEL).map(String::as_str),
        Some("squidex-up7")
    );
    assert_eq!(
        labels.get("tier").map(String::as_str),
        Some("web"),
        "blue's labels are kept"
    );
    let sel = spec.selector.match_labels.clone().unwrap();
    assert_eq!(
        sel.get(TRACK_LABEL).map(String::as_str),
        Some("squidex-up7"),
        "green's selector never matches blue's pods"
    );
    let containers = &spec.template.spec.as_ref().unwrap().containers;
    assert_eq!(containers[0].image.as_deref(), Some("squidex/squidex:7"));
    assert_eq!(
        containers[1].image.as_deref(),
        Some("envoy:1"),
        "other containers untouched"
    );
    let env = env_of(&g, "squidex");
    assert_eq!(value(&env, "STORE__MONGODB__DATABASE"), Some("Squidex-up7"));
    assert_eq!(
        value(&env, "STORE__MONGODB__CONTENTDATABASE"),
        Some("SquidexContent-up7")
    );
    assert_eq!(value(&env, "MODE__ISREADONLY"), Some("true"));
    assert_eq!(value(&env, "FEATURE"), Some("on"));
    let uri_var = env
        .iter()
        .find(|e| e.name == "STORE__MONGODB__CONFIGURATION")
        .unwrap();
    assert!(
        uri_var.value.is_none(),
        "a Secret-held URI stays in a Secret"
    );
    assert_eq!(
        uri_var
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap()
            .name,
        "squidex-up7-env"
    );
    let secret = secret.expect("env Secret");
    assert_eq!(
        secret
            .string_data
            .unwrap()
            .get("STORE__MONGODB__CONFIGURATION")
            .map(String::as_str),
        Some("mongodb://u:pw@db/Squidex-up7?authSource=Squidex")
    );
    assert_eq!(
        g.metadata.owner_references.as_ref().unwrap()[0].uid,
        "uid-1"
    );
    assert!(
        !serde_json::to_string(&g).unwrap().contains("pw@"),
        "no connection string in the Deployment"
    );
}

#[test]
fn rehearsal_green_never_matches_the_service() {
    let p = plan(
        json!({"mode": "rehearsal", "app": {"deployment": "squidex", "service": "squidex", "container": "squidex"}}),
    );
    let selector = BTreeMap::from([("app".to_string(), "squidex".to_string())]);
    let (g, _) = green(&GreenInputs {
        plan: &p,
        targets: &targets_of(&p),
        blue: &blue(),
        container: "squidex",
        replicas: 1,
        uri_values: &BTreeMap::new(),
        service_selector: &selector,
    })
    .unwrap();
    let labels = g
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap();
    assert!(!crate::plan::names::selects(&selector, &labels));
}

#[test]
fn green_does_not_copy_the_gitops_tracking_label_of_its_deployment() {
    let p = plan(
        json!({"app": {"deployment": "squidex", "service": "squidex", "container": "squidex"}}),
    );
    let mut b = blue();
    let tracked = |labels: &mut BTreeMap<String, String>| {
        labels.insert(GITOPS_TRACKING_LABEL.into(), "squidex-app".into());
    };
    tracked(b.metadata.labels.get_or_insert_with(Default::default));
    let template = b.spec.as_mut().unwrap().template.metadata.as_mut().unwrap();
    tracked(template.labels.get_or_insert_with(Default::default));
    let (g, _) = green(&GreenInputs {
        plan: &p,
        targets: &targets_of(&p),
        blue: &b,
        container: "squidex",
        replicas: 1,
        uri_values: &BTreeMap::new(),
        service_selector: &BTreeMap::from([("app".to_string(), "squidex".to_string())]),
    })
    .unwrap();
    let meta = g.metadata.labels.clone().unwrap();
    assert!(
        !meta.contains_key(GITOPS_TRACKING_LABEL),
        "a handed-over Deployment with Argo CD's instance label would be pruned: {meta:?}"
    );
    assert_eq!(meta.get("app").map(String::as_str), Some("squidex"));
    let pods = g.spec.unwrap().template.metadata.unwrap().labels.unwrap();
    assert_eq!(
        pods.get(GITOPS_TRACKING_LABEL).map(String::as_str),
        Some("squidex-app"),
        "the pods keep it"
    );
}
