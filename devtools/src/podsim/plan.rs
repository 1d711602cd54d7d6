//! What podsim runs for a container: a local binary for the images built in this workspace
//! (`…/appsim:*`, `…/cutover:*`), a Job container's `command`+`args` (after `$(VAR)` expansion
//! and mount-path rewriting), or nothing (other app images are simply reported running and
//! ready). Pure, given the resolved env.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};

use super::{env::Env, mounts::MountTable};
use crate::image::ImageRef;

/// The local binaries standing in for this workspace's images.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub appsim: PathBuf,
    pub cutover: PathBuf,
}

impl Binaries {
    /// The binary of `image`'s entrypoint, if it is one of ours.
    fn for_image(&self, image: &str) -> Option<&Path> {
        match ImageRef::parse(image).name() {
            "appsim" => Some(&self.appsim),
            "cutover" => Some(&self.cutover),
            _ => None,
        }
    }
}

/// True for pods a Job controller created: they run their command to completion.
pub fn is_job_pod(pod: &Pod) -> bool {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.kind == "Job")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Workload {
    /// Run this process.
    Process {
        argv: Vec<String>,
        env: Vec<(String, String)>,
        cwd: PathBuf,
    },
    /// Nothing to run: the container counts as running and ready.
    Idle,
    /// Cannot be simulated; the container fails with this message.
    Unrunnable(String),
}

/// Facts about the pod that shape a container's process.
pub struct Context<'a> {
    pub pod: &'a Pod,
    pub pod_ip: &'a str,
    pub restart_count: i32,
    pub binaries: &'a Binaries,
    /// Scratch directory standing in for the container's image filesystem.
    pub rootfs: &'a Path,
    pub mounts: &'a MountTable,
    /// Env giving the process the pod's API access (see `incluster`); empty without it.
    pub api_env: &'a [(String, String)],
}

pub fn workload(ctx: &Context<'_>, container: &Container, env: &Env) -> Workload {
    let image = container.image.as_deref().unwrap_or_default();
    let local = ctx.binaries.for_image(image);
    let appsim = ImageRef::parse(image).name() == "appsim";
    let job = is_job_pod(ctx.pod);
    if local.is_none() && !job {
        return Workload::Idle;
    }

    let command: Vec<&String> = container.command.iter().flatten().collect();
    let args = container.args.iter().flatten();
    let mut argv: Vec<String> = command
        .iter()
        .copied()
        .chain(args)
        .map(|s| ctx.mounts.rewrite(&env.expand(s)))
        .collect();
    if let Some(binary) = local {
        // The image's entrypoint is the binary: an explicit command naming it is replaced by
        // the local binary, no command means the entrypoint with `args`.
        let entrypoint = binary.file_name();
        let names_binary = command
            .first()
            .is_some_and(|c| Path::new(c.as_str()).file_name() == entrypoint);
        let binary = binary.to_string_lossy().into_owned();
        if names_binary {
            argv[0] = binary;
        } else if command.is_empty() {
            argv.insert(0, binary);
        } else if !job {
            return Workload::Unrunnable(format!(
                "podsim runs {image:?} only with its entrypoint, not {:?}",
                command[0]
            ));
        }
        // No network namespace here: a wildcard bind address would take the port on every
        // loopback address, so two such pods (or a pod and the host) would collide.
        let own_ip = format!("{}:", ctx.pod_ip);
        for a in argv.iter_mut().skip(1) {
            *a = bind_to_pod_ip(a, &own_ip);
        }
    } else if command.is_empty() {
        return Workload::Unrunnable(format!(
            "podsim cannot run the entrypoint of image {image:?}: set command"
        ));
    }

    let mut env = env.clone();
    env.map_values(|v| ctx.mounts.rewrite(v));
    let name = ctx.pod.metadata.name.as_deref().unwrap_or_default();
    let ns = ctx.pod.metadata.namespace.as_deref().unwrap_or_default();
    env.set("HOSTNAME", name.to_owned());
    for (k, v) in ctx.api_env {
        env.set(k, v.clone());
    }
    if appsim {
        let port = container
            .ports
            .iter()
            .flatten()
            .next()
            .map_or(8080, |p| p.container_port);
        env.set("APPSIM_IMAGE", image.to_owned());
        env.set("APPSIM_LISTEN", format!("{}:{port}", ctx.pod_ip));
        env.set("APPSIM_RESTART_COUNT", ctx.restart_count.to_string());
        env.set("APPSIM_POD", format!("{ns}/{name}"));
    }

    let cwd = match container.working_dir.as_deref() {
        Some(dir) => ctx
            .mounts
            .map_path(dir)
            .unwrap_or_else(|| ctx.rootfs.join(dir.trim_start_matches('/'))),
        None => ctx.rootfs.to_path_buf(),
    };
    Workload::Process {
        argv,
        env: env.iter().cloned().collect(),
        cwd,
    }
}

/// `--http-addr=0.0.0.0:8080` → `--http-addr=<pod ip>:8080` (also `[::]:`); an address that
/// merely ends in `0.0.0.0` (`10.0.0.0:`) is left alone.
fn bind_to_pod_ip(arg: &str, own_ip: &str) -> String {
    let mut out = String::with_capacity(arg.len());
    let mut rest = arg;
    while !rest.is_empty() {
        let at_boundary = out
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '.'));
        if at_boundary
            && let Some(after) = rest
                .strip_prefix("0.0.0.0:")
                .or_else(|| rest.strip_prefix("[::]:"))
        {
            out.push_str(own_ip);
            rest = after;
            continue;
        }
        let c = rest.chars().next().unwrap_or_default();
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Volume;
    use serde_json::json;

    fn pod(owner: &str, container: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p1", "namespace": "ns",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": owner, "name": "o", "uid": "u"}]},
            "spec": {"containers": [container], "volumes": [
                {"name": "backup", "persistentVolumeClaim": {"claimName": "bk"}}]}
        }))
        .unwrap()
    }

    fn run(pod: &Pod, env: &Env) -> Workload {
        let spec = pod.spec.as_ref().unwrap();
        let c = &spec.containers[0];
        let volumes: &[Volume] = spec.volumes.as_deref().unwrap_or_default();
        let mounts = MountTable::new("p1", volumes, c, Path::new("/s/volumes/ns"));
        let ctx = Context {
            pod,
            pod_ip: "127.0.16.5",
            restart_count: 2,
            binaries: &binaries(),
            rootfs: Path::new("/s/rootfs/ns/p1/c"),
            mounts: &mounts,
            api_env: &[],
        };
        workload(&ctx, c, env)
    }

    fn binaries() -> Binaries {
        Binaries {
            appsim: "/bin/appsim".into(),
            cutover: "/bin/cutover".into(),
        }
    }

    fn base_env() -> Env {
        let mut e = Env::default();
        e.set("MONGODB_URI", "mongodb://127.0.0.1:9/".into());
        e.set("OUT", "/backup/plan-x".into());
        e
    }

    #[test]
    fn job_commands_are_expanded_and_rewritten() {
        let p = pod(
            "Job",
            json!({"name": "c", "image": "mongo:7.0",
            "command": ["mongodump"],
            "args": ["--archive=/backup/plan-x/dump.archive.gz", "--gzip", "--uri=$(MONGODB_URI)"],
            "workingDir": "/backup",
            "volumeMounts": [{"name": "backup", "mountPath": "/backup"}]}),
        );
        let Workload::Process { argv, env, cwd } = run(&p, &base_env()) else {
            panic!()
        };
        assert_eq!(
            argv,
            [
                "mongodump",
                "--archive=/s/volumes/ns/pvc-bk/plan-x/dump.archive.gz",
                "--gzip",
                "--uri=mongodb://127.0.0.1:9/"
            ]
        );
        assert!(env.contains(&("OUT".into(), "/s/volumes/ns/pvc-bk/plan-x".into())));
        assert!(!env.iter().any(|(k, _)| k.starts_with("APPSIM_")));
        assert_eq!(cwd, PathBuf::from("/s/volumes/ns/pvc-bk"));
    }

    #[test]
    fn termination_message_path_is_rewritten_in_command_and_env() {
        let p = pod(
            "Job",
            json!({"name": "c", "image": "mongo:7.0",
            "command": ["sh", "-c", "echo '{\"ok\":1}' > /dev/termination-log"],
            "env": [{"name": "RESULT", "value": "/dev/termination-log"}]}),
        );
        let c = &p.spec.as_ref().unwrap().containers[0];
        let mounts = MountTable::new("p1", &[], c, Path::new("/s/volumes/ns")).with_file(
            "/dev/termination-log",
            "/s/pods/ns/p1.c.termination-log".into(),
        );
        let ctx = Context {
            pod: &p,
            pod_ip: "127.0.16.5",
            restart_count: 0,
            binaries: &binaries(),
            rootfs: Path::new("/s/rootfs/ns/p1/c"),
            mounts: &mounts,
            api_env: &[],
        };
        let mut env = base_env();
        env.set("RESULT", "/dev/termination-log".into());
        let Workload::Process { argv, env, .. } = workload(&ctx, c, &env) else {
            panic!()
        };
        assert_eq!(
            argv[2],
            "echo '{\"ok\":1}' > /s/pods/ns/p1.c.termination-log"
        );
        assert!(env.contains(&("RESULT".into(), "/s/pods/ns/p1.c.termination-log".into())));
    }

    #[test]
    fn appsim_images_run_the_local_binary() {
        let p = pod(
            "ReplicaSet",
            json!({"name": "c", "image": "cutover.dev/appsim:2",
            "ports": [{"containerPort": 80}]}),
        );
        let Workload::Process { argv, env, cwd } = run(&p, &base_env()) else {
            panic!()
        };
        assert_eq!(argv, ["/bin/appsim"]);
        assert!(env.contains(&("APPSIM_LISTEN".into(), "127.0.16.5:80".into())));
        assert!(env.contains(&("APPSIM_RESTART_COUNT".into(), "2".into())));
        assert!(env.contains(&("APPSIM_POD".into(), "ns/p1".into())));
        assert!(env.contains(&("APPSIM_IMAGE".into(), "cutover.dev/appsim:2".into())));
        assert_eq!(cwd, PathBuf::from("/s/rootfs/ns/p1/c"));

        let p = pod(
            "Job",
            json!({"name": "c", "image": "appsim:3",
            "command": ["/app/appsim", "migrate"]}),
        );
        let Workload::Process { argv, .. } = run(&p, &base_env()) else {
            panic!()
        };
        assert_eq!(argv, ["/bin/appsim", "migrate"]);
        let p = pod(
            "Job",
            json!({"name": "c", "image": "appsim:3", "args": ["migrate"]}),
        );
        let Workload::Process { argv, .. } = run(&p, &base_env()) else {
            panic!()
        };
        assert_eq!(argv, ["/bin/appsim", "migrate"]);
    }

    #[test]
    fn cutover_images_run_the_local_binary_on_the_pod_ip_with_api_access() {
        let p = pod(
            "ReplicaSet",
            json!({"name": "cutover", "image": "registry.example.com/platform/cutover:0.1.0",
            "args": ["run", "--http-addr=0.0.0.0:8080", "--namespace=apps"]}),
        );
        let spec = p.spec.as_ref().unwrap();
        let c = &spec.containers[0];
        let mounts = MountTable::new("p1", &[], c, Path::new("/s/volumes/ns"));
        let api_env = [(
            "KUBECONFIG".to_string(),
            "/s/p1.cutover.kubeconfig".to_string(),
        )];
        let ctx = Context {
            pod: &p,
            pod_ip: "127.0.16.5",
            restart_count: 0,
            binaries: &binaries(),
            rootfs: Path::new("/s/rootfs/ns/p1/cutover"),
            mounts: &mounts,
            api_env: &api_env,
        };
        let Workload::Process { argv, env, .. } = workload(&ctx, c, &base_env()) else {
            panic!()
        };
        assert_eq!(
            argv,
            [
                "/bin/cutover",
                "run",
                "--http-addr=127.0.16.5:8080",
                "--namespace=apps"
            ]
        );
        assert!(env.contains(&("KUBECONFIG".into(), "/s/p1.cutover.kubeconfig".into())));
        assert!(!env.iter().any(|(k, _)| k.starts_with("APPSIM_")));

        let p = pod(
            "ReplicaSet",
            json!({"name": "c", "image": "cutover:0.1.0", "command": ["/bin/sh"]}),
        );
        assert!(matches!(run(&p, &base_env()), Workload::Unrunnable(_)));
    }

    #[test]
    fn only_wildcard_bind_addresses_move_to_the_pod_ip() {
        let ip = "127.0.16.5:";
        assert_eq!(bind_to_pod_ip("0.0.0.0:80", ip), "127.0.16.5:80");
        assert_eq!(bind_to_pod_ip("--a=[::]:9", ip), "--a=127.0.16.5:9");
        assert_eq!(bind_to_pod_ip("10.0.0.0:80", ip), "10.0.0.0:80");
        assert_eq!(bind_to_pod_ip("127.0.0.1:80", ip), "127.0.0.1:80");
    }

    #[test]
    fn other_images() {
        let p = pod("ReplicaSet", json!({"name": "c", "image": "nginx"}));
        assert_eq!(run(&p, &base_env()), Workload::Idle);
        let p = pod("Job", json!({"name": "c", "image": "busybox"}));
        assert!(matches!(run(&p, &base_env()), Workload::Unrunnable(_)));
    }
}
