//! A backup or clone Job whose pod is disrupted is retried under a new name (issue 16), on the
//! real environment. A binary of its own: restarting podsim kills every pod of the environment,
//! which must not land in the middle of another suite's plans (cargo runs test binaries one
//! after another).

#[path = "common/mod.rs"]
mod common;

#[allow(dead_code)]
#[path = "reliability/support.rs"]
mod support;

#[path = "reliability/job_disruption.rs"]
mod job_disruption;
