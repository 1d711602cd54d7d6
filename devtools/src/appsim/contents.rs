//! Content items as a user of the app reads and writes them, in the contents collection of
//! this app's schema version (`States_Contents_All{N}`; the migration copies every document
//! with all its fields into the next one):
//!
//! - `POST /api/contents` (a JSON object; an `_id` in it names the item, else one is made):
//!   201 `{"id"}`, 409 if that id exists;
//! - `GET /api/contents/{id}`: 200 with the document, 404;
//! - `PUT /api/contents/{id}` (a JSON object, the item's new content): 200 `{"id"}`, 404;
//! - `DELETE /api/contents/{id}`: 204, 404.
//!
//! The read-only and readiness gates are `super::http`'s. A write is answered only after the
//! database acknowledged it (the client's write concern); a database error is a 500, after
//! which the write may or may not have happened.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode, body::Incoming};
use mongodb::bson::{Bson, Document, doc, oid::ObjectId};
use serde_json::{Value, json};

use super::app::App;
use super::reply::{error, json_response, response};
use super::steps::contents_collection;

fn collection(app: &App) -> mongodb::Collection<Document> {
    app.content
        .collection(&contents_collection(app.cfg.target_version))
}

/// Matches an item by its id: the string as given, or the ObjectId it spells (items created
/// without an `_id` get an ObjectId).
fn by_id(id: &str) -> Document {
    match ObjectId::parse_str(id) {
        Ok(oid) => doc! {"_id": {"$in": [id, oid]}},
        Err(_) => doc! {"_id": id},
    }
}

/// The request's body as a BSON document (a JSON object), or the 400 to answer.
async fn body_document(req: Request<Incoming>) -> Result<Document, Response<Full<Bytes>>> {
    let bad = |msg: String| json_response(StatusCode::BAD_REQUEST, &json!({"error": msg}));
    let body = req
        .into_body()
        .collect()
        .await
        .map_err(|e| bad(e.to_string()))?
        .to_bytes();
    match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => mongodb::bson::to_document(&v).map_err(|e| bad(e.to_string())),
        _ => Err(bad("body must be a JSON object".into())),
    }
}

pub async fn insert(app: &App, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let mut document = match body_document(req).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    document.insert("schemaVersion", i64::from(app.cfg.target_version));
    match collection(app).insert_one(document).await {
        Ok(r) => json_response(
            StatusCode::CREATED,
            &json!({"id": r.inserted_id.into_relaxed_extjson()}),
        ),
        Err(e) if is_duplicate_key(&e) => json_response(
            StatusCode::CONFLICT,
            &json!({"error": "an item with this id exists"}),
        ),
        Err(e) => error(&e),
    }
}

pub async fn get(app: &App, id: &str) -> Response<Full<Bytes>> {
    match collection(app).find_one(by_id(id)).await {
        Ok(Some(d)) => json_response(StatusCode::OK, &Bson::Document(d).into_relaxed_extjson()),
        Ok(None) => not_found(),
        Err(e) => error(&e),
    }
}

/// Replaces the item's content (its `_id` stays; an `_id` in the body must be the same).
pub async fn replace(app: &App, id: &str, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let mut document = match body_document(req).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    if let Some(body_id) = document.remove("_id")
        && body_id.as_str() != Some(id)
    {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": "the body's _id differs from the path's"}),
        );
    }
    document.insert("schemaVersion", i64::from(app.cfg.target_version));
    match collection(app).replace_one(by_id(id), document).await {
        Ok(r) if r.matched_count == 0 => not_found(),
        Ok(_) => json_response(StatusCode::OK, &json!({"id": id})),
        Err(e) => error(&e),
    }
}

pub async fn delete(app: &App, id: &str) -> Response<Full<Bytes>> {
    match collection(app).delete_one(by_id(id)).await {
        Ok(r) if r.deleted_count == 0 => not_found(),
        Ok(_) => response(StatusCode::NO_CONTENT, "application/json", Bytes::new()),
        Err(e) => error(&e),
    }
}

fn not_found() -> Response<Full<Bytes>> {
    json_response(StatusCode::NOT_FOUND, &json!({"error": "no such item"}))
}

fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    match &*e.kind {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == 11000,
        ErrorKind::Command(c) => c.code == 11000,
        _ => e.to_string().contains("E11000") || e.to_string().contains("duplicate key"),
    }
}
