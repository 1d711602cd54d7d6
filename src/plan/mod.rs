//! The pure core: validation, derived names, and the state machine `decide`.
//! Nothing here performs I/O or reads the clock.

pub mod conditions;
mod decide;
mod decision;
pub mod names;
mod observed;
pub mod obsolete;
mod reason;
mod validate;

pub use decide::decide;
pub use decision::{Action, Decision, EventKind, EventNote};
pub use observed::*;
pub use reason::Reason;
pub use validate::validate;

#[cfg(test)]
mod tests;
