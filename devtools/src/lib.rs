//! Development-only tools for cutover's local environment: `podsim` (plays the kubelet on a
//! control plane without nodes) and `appsim` (a Squidex-like app whose start-up migrates its
//! MongoDB schema under a lock).

pub mod appsim;
pub mod bench;
pub mod image;
pub mod load;
pub mod podsim;
pub mod soak;
pub mod teardown;
pub mod watchlog;
