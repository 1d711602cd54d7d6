//! podsim plays the kubelet for a control plane without nodes: it watches all pods, gives
//! each unscheduled one a loopback IP, runs what can be run locally (appsim for app images,
//! Job commands with their volumes mapped to local directories), and writes pod status so
//! the real Deployment/ReplicaSet/Job controllers see pods progress.

pub mod env;
pub mod expand;
pub mod incluster;
pub mod ipam;
pub mod mounts;
pub mod plan;
pub mod probe;
pub mod process;
pub mod publish;
pub mod runner;
pub mod scope;
pub mod sources;
pub mod status;
pub mod termination;
pub mod volumes;
mod watch;

pub use watch::{Options, run};
