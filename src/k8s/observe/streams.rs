//! `backup.cloneMethod: auto`: does the server stream changes? A replica set (`hello` names
//! its set) on which a change stream opens on a source database. Read once, in `Pending`.

use std::time::Duration;

use mongodb::bson::doc;

use crate::plan::StreamSupport;
use crate::uri::Uri;

/// A change stream that opens answers its first (empty) batch at once; this bounds the wait.
const AWAIT: Duration = Duration::from_millis(200);

/// What the server says; an error answering is a reason too (`auto` then picks `restore`,
/// which needs no stream).
pub(super) async fn probe(c: &mongodb::Client, uri: &Uri, source: &str) -> StreamSupport {
    let hello = match c.database("admin").run_command(doc! {"hello": 1}).await {
        Ok(h) => h,
        Err(e) => {
            return StreamSupport::No(uri.redact(&format!("the server did not answer hello: {e}")));
        }
    };
    let Ok(set_name) = hello.get_str("setName").map(str::to_string) else {
        return StreamSupport::No(
            "the server is not a replica set (hello names no setName), so it has no change streams"
                .into(),
        );
    };
    match c.database(source).watch().max_await_time(AWAIT).await {
        // Dropped at once: the driver closes its cursor.
        Ok(_stream) => StreamSupport::Streams { set_name },
        Err(e) => StreamSupport::No(uri.redact(&format!(
            "replica set {set_name}, but a change stream on {source} was refused: {e}"
        ))),
    }
}
