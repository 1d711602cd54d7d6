//! cutover: blue-green upgrades of an application together with its MongoDB data.
//!
//! Layers (arrows point at what may be used): `uri` (pure), `crd` <- `plan` (pure) <- `k8s`,
//! `mongo` <- `copy`, `probe` <- `controller` <- `cli` <- the binary.

pub mod cli;
pub mod controller;
pub mod copy;
pub mod crd;
#[doc(hidden)]
pub mod fixtures;
pub mod gitops;
pub mod http;
pub mod k8s;
pub mod lease;
pub mod metrics;
pub mod mongo;
pub mod plan;
pub mod probe;
pub mod scrub;
pub mod sync;
pub mod uri;
