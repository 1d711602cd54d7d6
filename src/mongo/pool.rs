//! MongoDB clients by connection string; the driver pools connections inside each.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use mongodb::options::ClientOptions;

use super::MongoError;
use crate::uri::Uri;

#[derive(Default)]
pub struct Clients {
    clients: Mutex<HashMap<String, mongodb::Client>>,
}

impl Clients {
    pub async fn get(&self, uri: &Uri) -> Result<mongodb::Client, MongoError> {
        if let Some(c) = self.clients.lock().expect("lock").get(uri.expose()) {
            return Ok(c.clone());
        }
        let failed = |e: mongodb::error::Error| MongoError::Client(uri.redact(&e.to_string()));
        let mut opts = ClientOptions::parse(uri.connection_string().clone())
            .await
            .map_err(failed)?;
        // An unreachable server should be reported in seconds, not after the driver's 30 s.
        opts.server_selection_timeout = Some(Duration::from_secs(5));
        opts.connect_timeout = Some(Duration::from_secs(5));
        opts.app_name = Some("cutover".into());
        let client = mongodb::Client::with_options(opts).map_err(failed)?;
        self.clients
            .lock()
            .expect("lock")
            .insert(uri.expose().to_string(), client.clone());
        Ok(client)
    }
}
