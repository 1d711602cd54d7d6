//! Integration-test harness: the real control plane and MongoDB-wire server started by
//! `hack/dev-env up` (podsim plays the kubelet there). Each test gets a fresh namespace and
//! fresh database names, its own operator process watching only that namespace, and cleans
//! up after itself.
// Each test binary uses a part of the harness.
#![allow(dead_code, unused_imports)]

mod app;
mod env;
mod history;
mod http;
mod load;
mod operator;
mod plans;
mod restart;
mod tiny_oplog;

pub use app::*;
pub use cutover::crd::{CleanupState, CleanupStep, CleanupStepName};
pub use cutover::fixtures::SquidexPlan;
pub use env::*;
pub use history::*;
pub use http::*;
pub use load::*;
pub use operator::*;
pub use plans::*;
pub use restart::*;
pub use tiny_oplog::*;
