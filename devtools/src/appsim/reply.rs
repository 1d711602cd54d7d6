//! The answers handlers build: plain text, JSON, a database error.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use serde_json::{Value, json};

pub(super) fn error(e: &mongodb::error::Error) -> Response<Full<Bytes>> {
    json_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        &json!({"error": e.to_string()}),
    )
}

pub(super) fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    response(status, "text/plain", Bytes::from(format!("{body}\n")))
}

pub(super) fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    response(status, "application/json", Bytes::from(body.to_string()))
}

pub(super) fn response(
    status: StatusCode,
    content_type: &str,
    body: Bytes,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}
