//! The operator's hands: reading the world (`observe`, mapped by `views`), building objects
//! (`build`, pure), and carrying out actions (`execute`: Kubernetes writes in `apply`, MongoDB
//! actions in `databases`).

pub mod apply;
pub mod build;
pub mod cache;
pub mod databases;
pub mod error;
pub mod execute;
pub mod job_outcome;
pub mod observe;
pub mod views;
