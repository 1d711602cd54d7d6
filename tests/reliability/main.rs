//! The unhappy paths of an upgrade (issue 5, DESIGN.md §3–4), each a full plan on the real
//! environment: rollback before and after read-only was lifted, compensation of a failure in
//! every phase before the switch, a stale migration lock, the operator SIGKILLed in every
//! phase, one active plan per target, and a table of bad input. Every test ends by checking
//! that the app serves read-write and that no data written before the upgrade was lost.
//!
//! One test binary (so the suites share `--test-threads`), one module per concern.

#[path = "../common/mod.rs"]
mod common;

mod after_lift;
mod bad_input;
mod bad_inputs;
mod claims;
mod env_guard;
mod failures;
mod frozen;
mod job_disruption;
mod many_collections;
mod one_plan;
mod ownership;
mod restart;
mod rollback;
mod stale_lock;
mod support;
mod undecodable;
