//! cutover: blue-green upgrades of an application together with its MongoDB data.
//!
//! Layers (arrows point at what may be used): `crd` <- `plan` (pure) <- `k8s`, `mongo`
//! <- `controller` <- the binary.

pub mod crd;
pub mod plan;
