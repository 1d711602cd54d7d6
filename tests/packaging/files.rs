//! Files that must agree with each other: the CRD copies, the versions, the example plans.

use cutover::crd::UpgradePlan;
use serde_json::Value;

use crate::support::{read, repo, yaml_docs};

#[test]
fn crd_copies_are_the_generated_crd() {
    let generated = cutover::crd::crd_yaml();
    for copy in [
        "charts/cutover/crds/upgradeplan.yaml",
        "manifests/crd/upgradeplan.yaml",
    ] {
        assert!(
            read(copy) == generated,
            "{copy} differs from `cutover crd`: cargo run -- crd | tee crds/upgradeplan.yaml {copy} > /dev/null"
        );
    }
}

#[test]
fn versions_agree() {
    let chart: Value = serde_norway::from_str(&read("charts/cutover/Chart.yaml")).unwrap();
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        chart["appVersion"], version,
        "Chart.yaml appVersion is the crate version"
    );
    let base = read("manifests/deployment.yaml");
    assert!(
        base.contains(&format!("image: \"cutover:{version}\"")),
        "manifests/ image tag"
    );
    // The Dockerfile and hack/build-static build the same binary the same way.
    let dockerfile = read("Dockerfile");
    let script = read("hack/build-static");
    for needle in [
        "x86_64-unknown-linux-musl",
        "-C target-feature=+crt-static",
        "CARGO_PROFILE_RELEASE_STRIP=symbols",
        "--locked",
    ] {
        assert!(dockerfile.contains(needle), "Dockerfile lacks {needle}");
        assert!(script.contains(needle), "hack/build-static lacks {needle}");
    }
}

#[test]
fn example_plans_are_valid_for_cutover() {
    let dir = repo().join("manifests/examples");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        for doc in yaml_docs(&std::fs::read_to_string(&path).unwrap()) {
            let plan: UpgradePlan = serde_json::from_value(doc)
                .unwrap_or_else(|e| panic!("{}: not an UpgradePlan: {e}", path.display()));
            let name = plan.metadata.name.clone().unwrap();
            let errors = cutover::plan::validate(&plan.spec, &name);
            assert!(errors.is_empty(), "{}: {errors:?}", path.display());
            n += 1;
        }
    }
    assert_eq!(n, 3, "three example plans");
}
