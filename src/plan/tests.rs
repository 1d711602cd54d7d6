//! Tests of the state machine: a table of phase × observed world (one table per phase group),
//! focused tests beside each table, and walks of whole plans against a small simulated world.

use std::collections::BTreeMap;

use crate::crd::*;

use super::conditions as cond;
use super::shape::{CollectionShape, Shape};
use super::*;

mod fixtures;
use fixtures::*;

mod claims;
mod cleanup;
mod data;
mod deadlines;
mod frozen;
mod green;
mod method;
mod online;
mod owned;
mod pending;
mod read_only;
mod server_copy;
mod switch;
mod table;
mod unwind;
mod walks;
