//! appsim's migration protocol against the real MongoDB-wire server (`MONGODB_URI` from
//! `eval "$(hack/dev-env env)"`): migrate, fail, crash with the lock held, wait on a held
//! lock, an old app on a newer database, and the read-only gate. Skipped without
//! MONGODB_URI, except under `CI=true` where that is a failure.

use std::{process::Stdio, time::Duration};

use mongodb::bson::{Document, doc};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    process::Command,
};

fn environment() -> Option<String> {
    match std::env::var("MONGODB_URI").ok().filter(|v| !v.is_empty()) {
        Some(uri) => Some(uri),
        None if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but MONGODB_URI is not set: run `eval \"$(hack/dev-env env)\"`")
        }
        None => {
            eprintln!("skipping: MONGODB_URI not set (eval \"$(hack/dev-env env)\")");
            None
        }
    }
}

struct Dbs {
    uri: String,
    client: mongodb::Client,
    main: String,
    content: String,
}

impl Dbs {
    async fn new(uri: &str, tag: &str) -> Self {
        let id = format!("{}_{tag}", std::process::id());
        Self {
            uri: uri.to_owned(),
            client: mongodb::Client::with_uri_str(uri).await.unwrap(),
            main: format!("Sq_at_{id}"),
            content: format!("SqC_at_{id}"),
        }
    }

    async fn seed(&self, docs: u32, version: u32) {
        let out = Command::new(env!("CARGO_BIN_EXE_appsim"))
            .args(["seed", "--uri", &self.uri, "--database", &self.main])
            .args(["--content-database", &self.content])
            .args([
                "--documents",
                &docs.to_string(),
                "--version",
                &version.to_string(),
            ])
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn appsim(&self, image: &str, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_appsim"));
        cmd.args(args)
            .env_remove("APPSIM_RESTART_COUNT")
            .env("STORE__MONGODB__CONFIGURATION", &self.uri)
            .env("STORE__MONGODB__DATABASE", &self.main)
            .env("STORE__MONGODB__CONTENTDATABASE", &self.content)
            .env("APPSIM_IMAGE", image)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    async fn migrate(&self, image: &str, env: &[(&str, &str)]) -> i32 {
        let status = self
            .appsim(image, &["migrate"], env)
            .status()
            .await
            .unwrap();
        status.code().unwrap_or(-1)
    }

    async fn migration(&self) -> (i32, bool) {
        let d = self
            .client
            .database(&self.main)
            .collection::<Document>("Migration")
            .find_one(doc! {"_id": "Default"})
            .await
            .unwrap()
            .unwrap();
        (
            d.get_i32("Version").unwrap(),
            d.get_bool("IsLocked").unwrap(),
        )
    }

    async fn count(&self, coll: &str) -> u64 {
        self.client
            .database(&self.content)
            .collection::<Document>(coll)
            .count_documents(doc! {})
            .await
            .unwrap()
    }

    async fn drop(self) {
        for db in [&self.main, &self.content] {
            let _ = self.client.database(db).drop().await;
        }
    }
}

#[tokio::test]
async fn migrate_fail_crash_and_lock_wait() {
    let Some(uri) = environment() else { return };
    let dbs = Dbs::new(&uri, "mig").await;
    dbs.seed(120, 1).await;

    // A failing migration releases the lock and leaves the version.
    assert_eq!(
        dbs.migrate("appsim:3", &[("APPSIM_FAIL_MIGRATION", "1")])
            .await,
        1
    );
    assert_eq!(dbs.migration().await, (1, false));

    // A crash after one step keeps the lock and the step's version.
    assert_eq!(
        dbs.migrate("appsim:3", &[("APPSIM_CRASH_AFTER_STEP", "1")])
            .await,
        137
    );
    assert_eq!(dbs.migration().await, (2, true));
    assert_eq!(dbs.count("States_Contents_All2").await, 120);

    // A restarted instance waits on the stuck lock instead of migrating.
    let mut waiting = dbs
        .appsim("appsim:3", &["migrate"], &[("APPSIM_RESTART_COUNT", "1")])
        .spawn()
        .unwrap();
    let waited = tokio::time::timeout(Duration::from_secs(2), waiting.wait()).await;
    assert!(waited.is_err(), "must wait while IsLocked is true");
    // Releasing the lock by hand (the runbook's fix) lets it finish.
    dbs.client
        .database(&dbs.main)
        .collection::<Document>("Migration")
        .update_one(doc! {"_id": "Default"}, doc! {"$set": {"IsLocked": false}})
        .await
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), waiting.wait())
        .await
        .expect("finishes once unlocked")
        .unwrap();
    assert!(status.success());
    assert_eq!(dbs.migration().await, (3, false));
    assert_eq!(dbs.count("States_Contents_All3").await, 120);
    assert_eq!(
        dbs.count("States_Contents_All1").await,
        120,
        "old generation kept"
    );

    // An old app on a newer database does not migrate (and does not fail).
    assert_eq!(dbs.migrate("appsim:2", &[]).await, 0);
    assert_eq!(dbs.migration().await, (3, false));
    dbs.drop().await;
}

#[tokio::test]
async fn serve_health_and_read_only_gate() {
    let Some(uri) = environment() else { return };
    let dbs = Dbs::new(&uri, "srv").await;
    dbs.seed(10, 1).await;
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut app = dbs
        .appsim(
            "appsim:2",
            &["serve"],
            &[("APPSIM_LISTEN", &listen), ("MODE__ISREADONLY", "true")],
        )
        .spawn()
        .unwrap();
    let mut up = false;
    for _ in 0..100 {
        if matches!(request(port, "GET", "/healthz", "").await, Some((200, _))) {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "appsim became healthy");
    let (code, body) = request(port, "GET", "/api/v1/health/check_up", "")
        .await
        .unwrap();
    assert_eq!(
        (code, body.as_str()),
        (200, r#"{"status":"ok","version":2}"#)
    );
    let (code, body) = request(port, "POST", "/api/contents", r#"{"title":"x"}"#)
        .await
        .unwrap();
    assert_eq!(
        (code, body.as_str()),
        (503, r#"{"error":"read-only mode"}"#)
    );
    for (method, path) in [
        ("PUT", "/api/contents/content-000001"),
        ("DELETE", "/api/contents/content-000001"),
    ] {
        let (code, body) = request(port, method, path, r#"{"title":"y"}"#)
            .await
            .unwrap();
        assert_eq!(
            (code, body.as_str()),
            (503, r#"{"error":"read-only mode"}"#),
            "{method}"
        );
    }
    let (code, body) = request(port, "GET", "/api/contents/content-000001", "")
        .await
        .unwrap();
    assert_eq!(code, 200, "reads are served while read-only: {body}");
    let (_, body) = request(port, "GET", "/version", "").await.unwrap();
    assert!(body.contains(r#""readOnly":true"#), "{body}");
    let _ = app.kill().await;

    // Writable: the write lands in the current generation's collection.
    let mut app = dbs
        .appsim("appsim:2", &["serve"], &[("APPSIM_LISTEN", &listen)])
        .spawn()
        .unwrap();
    let mut created = None;
    for _ in 0..100 {
        if let Some((201, body)) = request(port, "POST", "/api/contents", r#"{"title":"x"}"#).await
        {
            created = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(created.is_some(), "write accepted");
    let (_, body) = request(port, "GET", "/api/contents/count", "")
        .await
        .unwrap();
    assert_eq!(body, r#"{"count":11}"#);

    // An item's life as a user makes it: created under its own id, read, replaced, deleted.
    let item = "/api/contents/load-1";
    let create = r#"{"_id":"load-1","v":1}"#;
    assert_eq!(
        request(port, "POST", "/api/contents", create)
            .await
            .unwrap(),
        (201, r#"{"id":"load-1"}"#.into())
    );
    assert_eq!(
        request(port, "POST", "/api/contents", create)
            .await
            .unwrap()
            .0,
        409
    );
    let (code, body) = request(port, "GET", item, "").await.unwrap();
    assert_eq!(code, 200);
    assert!(
        body.contains(r#""v":1"#) && body.contains(r#""schemaVersion":2"#),
        "{body}"
    );
    assert_eq!(
        request(port, "PUT", item, r#"{"v":2}"#).await.unwrap().0,
        200
    );
    let (_, body) = request(port, "GET", item, "").await.unwrap();
    assert!(body.contains(r#""v":2"#), "{body}");
    assert_eq!(
        request(port, "PUT", item, r#"{"_id":"other"}"#)
            .await
            .unwrap()
            .0,
        400
    );
    assert_eq!(
        request(port, "DELETE", item, "").await.unwrap(),
        (204, String::new())
    );
    assert_eq!(request(port, "GET", item, "").await.unwrap().0, 404);
    assert_eq!(
        request(port, "PUT", item, r#"{"v":3}"#).await.unwrap().0,
        404
    );
    assert_eq!(request(port, "DELETE", item, "").await.unwrap().0, 404);
    // Seeded items are reachable by their ids too.
    assert_eq!(
        request(port, "GET", "/api/contents/content-000002", "")
            .await
            .unwrap()
            .0,
        200
    );
    let _ = app.kill().await;
    dbs.drop().await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn request(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(req.as_bytes()).await.ok()?;
    let mut raw = String::new();
    conn.read_to_string(&mut raw).await.ok()?;
    let code = raw.split_whitespace().nth(1)?.parse().ok()?;
    let body = raw.split_once("\r\n\r\n")?.1.to_owned();
    Some((code, body))
}
