//! The committed CRD must be exactly what the Rust types generate: `cutover crd > crds/upgradeplan.yaml`.

#[test]
fn committed_crd_matches_the_types() {
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crds/upgradeplan.yaml"
    ))
    .expect("crds/upgradeplan.yaml exists");
    let generated = cutover::crd::crd_yaml();
    assert!(
        committed == generated,
        "crds/upgradeplan.yaml is out of date with src/crd: regenerate it with `cargo run -- crd > crds/upgradeplan.yaml`"
    );
}

#[test]
fn crd_has_the_printer_columns_and_short_name() {
    let crd: serde_norway::Value = serde_norway::from_str(&cutover::crd::crd_yaml()).unwrap();
    let version = &crd["spec"]["versions"][0];
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        columns,
        [
            "Phase",
            "Active",
            "Target",
            "Method",
            "Progress",
            "Read-only since",
            "Age"
        ]
    );
    assert_eq!(crd["spec"]["names"]["shortNames"][0], "up");
    assert_eq!(
        version["subresources"]["status"],
        serde_norway::Value::Mapping(Default::default())
    );
    let conditions =
        &version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-list-type"], "map");
    assert_eq!(conditions["x-kubernetes-list-map-keys"][0], "type");
}

#[test]
fn every_spec_field_is_documented() {
    let crd: serde_norway::Value = serde_norway::from_str(&cutover::crd::crd_yaml()).unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let mut undocumented = Vec::new();
    walk(schema, "", &mut undocumented);
    assert!(
        undocumented.is_empty(),
        "fields without a description (kubectl explain would be empty): {undocumented:?}"
    );
}

fn walk(node: &serde_norway::Value, path: &str, out: &mut Vec<String>) {
    if let Some(props) = node["properties"].as_mapping() {
        for (k, v) in props {
            let key = k.as_str().unwrap();
            let p = format!("{path}.{key}");
            // metadata, apiVersion and kind are Kubernetes' own.
            if path.is_empty() && matches!(key, "metadata" | "apiVersion" | "kind") {
                continue;
            }
            if v["description"].as_str().is_none_or(str::is_empty) {
                out.push(p.clone());
            }
            walk(v, &p, out);
            walk(&v["items"], &format!("{p}[]"), out);
        }
    }
}
