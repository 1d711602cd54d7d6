//! The pure core: validation, the names a plan works with (`targets`), what to read
//! (`needs`), and the state machine `decide`.
//! Nothing here performs I/O or reads the clock.

pub mod claims;
pub mod conditions;
mod decide;
mod decision;
pub mod frozen;
pub mod names;
pub mod needs;
mod observed;
pub mod obsolete;
mod reason;
pub mod shape;
pub mod targets;
mod validate;

pub use decide::{decide, spelled};
pub use decision::{Action, Decision, EventKind, EventNote};
pub use needs::{Reads, needs};
pub use observed::*;
pub use reason::Reason;
pub use targets::{Targets, targets};
pub use validate::validate;

#[cfg(test)]
mod tests;
