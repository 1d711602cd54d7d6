//! appsim's HTTP API: health (503 until migrated, so readiness gates traffic like Squidex's
//! start-up), version info, and content endpoints as a user of the app writes through them
//! (create, read, replace, delete; see `super::contents`). Every write is refused with 503
//! while read-only or still migrating, before touching the database.

use std::{convert::Infallible, sync::Arc};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use mongodb::bson::{Document, doc};
use serde_json::json;
use tokio::net::TcpListener;

use super::app::App;
use super::reply::{error, json_response, text};
use super::{contents, migrate::Progress, steps::contents_collection};

/// Serves until the process ends.
pub async fn serve(listener: TcpListener, app: Arc<App>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let app = app.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(handle(&app, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(app: &App, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let progress = app.progress.borrow().clone();
    let ready_version = match progress {
        Progress::Done { version } => Some(version),
        _ => None,
    };
    let state = match &progress {
        Progress::WaitingForLock => "waiting-for-migration-lock".to_owned(),
        Progress::Migrating { step, .. } => format!("migrating (step {step})"),
        Progress::Done { .. } => "ok".to_owned(),
    };
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => match ready_version {
            Some(_) => text(StatusCode::OK, "ok"),
            None => text(StatusCode::SERVICE_UNAVAILABLE, &state),
        },
        (&Method::GET, "/api/v1/health/check_up") => match ready_version {
            Some(v) => json_response(StatusCode::OK, &json!({"status": "ok", "version": v})),
            None => json_response(StatusCode::SERVICE_UNAVAILABLE, &json!({"status": state})),
        },
        (&Method::GET, "/version") => json_response(
            StatusCode::OK,
            &json!({
                "image": app.cfg.image,
                "schemaVersion": app.cfg.target_version,
                "databaseVersion": ready_version,
                "state": state,
                "readOnly": app.cfg.read_only,
                "databases": {"main": app.cfg.database, "content": app.cfg.content_database},
            }),
        ),
        (&Method::POST, "/api/contents") => {
            if let Some(refused) = write_refused(app, ready_version, &state) {
                return refused;
            }
            contents::insert(app, req).await
        }
        (&Method::GET, "/api/contents/count") => {
            let coll = app
                .content
                .collection::<Document>(&contents_collection(app.cfg.target_version));
            match coll.count_documents(doc! {}).await {
                Ok(n) => json_response(StatusCode::OK, &json!({"count": n})),
                Err(e) => error(&e),
            }
        }
        (method, path) => match (method, item_id(path)) {
            (&Method::GET, Some(id)) if ready_version.is_some() => contents::get(app, &id).await,
            (&Method::GET, Some(_)) => {
                json_response(StatusCode::SERVICE_UNAVAILABLE, &json!({"error": state}))
            }
            (&Method::PUT, Some(id)) => match write_refused(app, ready_version, &state) {
                Some(refused) => refused,
                None => contents::replace(app, &id, req).await,
            },
            (&Method::DELETE, Some(id)) => match write_refused(app, ready_version, &state) {
                Some(refused) => refused,
                None => contents::delete(app, &id).await,
            },
            _ => json_response(StatusCode::NOT_FOUND, &json!({"error": "not found"})),
        },
    }
}

/// The 503 a write gets while the app is read-only or not migrated yet (nothing written).
fn write_refused(
    app: &App,
    ready_version: Option<u32>,
    state: &str,
) -> Option<Response<Full<Bytes>>> {
    if app.cfg.read_only {
        return Some(json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"error": "read-only mode"}),
        ));
    }
    if ready_version.is_none() {
        return Some(json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"error": state}),
        ));
    }
    None
}

/// The id of `/api/contents/{id}` (percent-decoded), or None for any other path.
fn item_id(path: &str) -> Option<String> {
    let id = path.strip_prefix("/api/contents/")?;
    (!id.is_empty() && !id.contains('/') && id != "count")
        .then(|| super::config::percent_decode(id))
}
