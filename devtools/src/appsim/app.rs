//! What every request handler shares: the configuration, the content database and the
//! migration's progress.

use tokio::sync::watch;

use super::{config::Config, migrate::Progress};

pub struct App {
    pub cfg: Config,
    pub content: mongodb::Database,
    pub progress: watch::Receiver<Progress>,
}
