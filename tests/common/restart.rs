//! Restarting one component of the environment from a test, as a node or control-plane
//! restart would. A test that does it lives in a test binary of its own (cargo runs binaries
//! one after another) and takes turns with the others of its binary.

/// `hack/dev-env restart name` (`podsim`, `kube-apiserver`, `secantusd`), its `cargo build`
/// skipped: a `cargo` that does nothing comes first in PATH, since the binaries are built and a
/// nested build from a test's environment rebuilds the whole workspace (minutes here).
pub fn restart_component(name: &str) -> std::process::Output {
    let shim = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("no-cargo");
    std::fs::create_dir_all(&shim).unwrap();
    let cargo = shim.join("cargo");
    std::fs::write(&cargo, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&cargo, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        shim.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/hack/dev-env"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("PATH", path)
        .args(["restart", name])
        .output()
        .expect("run hack/dev-env")
}

pub fn restart_podsim() -> std::process::Output {
    restart_component("podsim")
}

pub fn restart_apiserver() -> std::process::Output {
    restart_component("kube-apiserver")
}
