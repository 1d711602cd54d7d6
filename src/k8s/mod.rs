//! Kubernetes side: reading the world, building objects (pure), carrying out actions.

pub mod build;
pub mod cache;
pub mod execute;
pub mod observe;
