//! What podsim runs for a container: appsim for `…/appsim:*` images, a Job container's
//! `command`+`args` (after `$(VAR)` expansion and mount-path rewriting), or nothing (other
//! app images are simply reported running and ready). Pure, given the resolved env.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};

use super::{env::Env, mounts::MountTable};
use crate::image::is_appsim;

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
    pub appsim: &'a Path,
    /// Scratch directory standing in for the container's image filesystem.
    pub rootfs: &'a Path,
    pub mounts: &'a MountTable,
}

pub fn workload(ctx: &Context<'_>, container: &Container, env: &Env) -> Workload {
    let image = container.image.as_deref().unwrap_or_default();
    let appsim = is_appsim(image);
    let job = is_job_pod(ctx.pod);
    if !appsim && !job {
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
    if appsim {
        // The image's entrypoint is appsim: an explicit `appsim` command is replaced by the
        // local binary, no command means the entrypoint with `args`.
        let names_appsim = command.first().is_some_and(|c| {
            Path::new(c.as_str())
                .file_name()
                .is_some_and(|n| n == "appsim")
        });
        if names_appsim {
            argv[0] = ctx.appsim.to_string_lossy().into_owned();
        } else if command.is_empty() {
            argv.insert(0, ctx.appsim.to_string_lossy().into_owned());
        } else if !job {
            return Workload::Unrunnable(format!(
                "podsim runs appsim images only with their entrypoint, not {:?}",
                command[0]
            ));
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
            appsim: Path::new("/bin/appsim"),
            rootfs: Path::new("/s/rootfs/ns/p1/c"),
            mounts: &mounts,
        };
        workload(&ctx, c, env)
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
            appsim: Path::new("/bin/appsim"),
            rootfs: Path::new("/s/rootfs/ns/p1/c"),
            mounts: &mounts,
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
    fn other_images() {
        let p = pod("ReplicaSet", json!({"name": "c", "image": "nginx"}));
        assert_eq!(run(&p, &base_env()), Workload::Idle);
        let p = pod("Job", json!({"name": "c", "image": "busybox"}));
        assert!(matches!(run(&p, &base_env()), Workload::Unrunnable(_)));
    }
}
