//! A counting Kubernetes API proxy on loopback: `cutover run` is given a kubeconfig pointing
//! here (plain HTTP on 127.0.0.1), every request is recorded (time, verb, resource) and sent
//! on with the benchmark's own client (the real kubeconfig's address and credentials).
//! kube-apiserver 1.20 has no per-client request counter and its audit log would need a
//! restart of the shared environment; this counts exactly one process's requests.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::{Request, Response, StatusCode, body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::cluster::now_ms;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// One request as the operator made it.
#[derive(Clone, Debug)]
pub struct ApiRequest {
    pub at_ms: i64,
    /// `VERB resource[/subresource]`, e.g. `get upgradeplans`, `patch upgradeplans/status`.
    pub key: String,
}

pub struct Proxy {
    pub addr: std::net::SocketAddr,
    seen: Arc<Mutex<Vec<ApiRequest>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(client: kube::Client) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (client, log) = (client.clone(), log.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let (client, log) = (client.clone(), log.clone());
                        async move { Ok::<_, Infallible>(forward(&client, &log, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Proxy { addr, seen, task })
    }

    /// A kubeconfig for a client of this proxy (no credentials: the proxy adds its own).
    pub fn write_kubeconfig(&self, dir: &Path) -> std::io::Result<PathBuf> {
        let path = dir.join(format!("kubeconfig-proxy-{}", self.addr.port()));
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: bench-proxy\n  cluster:\n    server: http://{}\nusers:\n- name: bench\n  user: {{}}\ncontexts:\n- name: bench\n  context: {{cluster: bench-proxy, user: bench, namespace: default}}\ncurrent-context: bench\n",
            self.addr
        );
        std::fs::write(&path, text)?;
        Ok(path)
    }

    /// Requests made at or after `since_ms` (and before `until_ms`, if given).
    pub fn requests(&self, since_ms: i64, until_ms: Option<i64>) -> Vec<ApiRequest> {
        self.seen
            .lock()
            .expect("proxy log")
            .iter()
            .filter(|r| r.at_ms >= since_ms && until_ms.is_none_or(|u| r.at_ms < u))
            .cloned()
            .collect()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Requests by key.
pub fn tally(reqs: &[ApiRequest]) -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    for r in reqs {
        *out.entry(r.key.clone()).or_insert(0) += 1;
    }
    out
}

async fn forward(
    client: &kube::Client,
    log: &Mutex<Vec<ApiRequest>>,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let (parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    log.lock().expect("proxy log").push(ApiRequest {
        at_ms: now_ms(),
        key: classify(parts.method.as_str(), &path),
    });
    let bytes = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let mut out = Request::builder().method(parts.method).uri(&path);
    for (k, v) in &parts.headers {
        if !matches!(
            k.as_str(),
            "host" | "connection" | "content-length" | "transfer-encoding" | "authorization"
        ) {
            out = out.header(k, v);
        }
    }
    let out = match out.body(kube::client::Body::from(bytes)) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    match client.send(out).await {
        Ok(resp) => resp.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed_unsync()),
        Err(e) => error(StatusCode::BAD_GATEWAY, &e.to_string()),
    }
}

fn error(code: StatusCode, msg: &str) -> Response<ProxyBody> {
    let mut r = Response::new(
        Full::new(Bytes::from(msg.to_string()))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *r.status_mut() = code;
    r
}

/// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection` and the
/// resource (with subresource) of an API path.
pub fn classify(method: &str, path_and_query: &str) -> String {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    // /api/v1/... or /apis/GROUP/VERSION/...
    let rest: &[&str] = match parts.first() {
        Some(&"api") if parts.len() >= 2 => &parts[2..],
        Some(&"apis") if parts.len() >= 3 => &parts[3..],
        _ => return format!("{} {path}", method.to_ascii_lowercase()),
    };
    let rest = match rest {
        ["namespaces", _ns, tail @ ..] if !tail.is_empty() => tail,
        other => other,
    };
    let (resource, name, sub) = match rest {
        [] => ("", None, None),
        [r] => (*r, None, None),
        [r, n] => (*r, Some(*n), None),
        [r, n, s, ..] => (*r, Some(*n), Some(*s)),
    };
    let watch = query
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1");
    let verb = match (method, name.is_some()) {
        ("GET", _) if watch => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        (m, _) => return format!("{} {resource}", m.to_ascii_lowercase()),
    };
    match sub {
        Some(s) => format!("{verb} {resource}/{s}"),
        None => format!("{verb} {resource}"),
    }
}

#[cfg(test)]
mod tests {
    use super::classify;

    #[test]
    fn classifies_api_paths() {
        let c = classify;
        assert_eq!(
            c(
                "GET",
                "/apis/cutover.dev/v1alpha1/namespaces/a/upgradeplans/p"
            ),
            "get upgradeplans"
        );
        assert_eq!(
            c(
                "GET",
                "/apis/cutover.dev/v1alpha1/namespaces/a/upgradeplans?&watch=true&timeoutSeconds=290"
            ),
            "watch upgradeplans"
        );
        assert_eq!(
            c("GET", "/apis/batch/v1/namespaces/a/jobs?labelSelector=x"),
            "list jobs"
        );
        assert_eq!(
            c(
                "PATCH",
                "/apis/cutover.dev/v1alpha1/namespaces/a/upgradeplans/p/status?fieldManager=cutover&force=true"
            ),
            "patch upgradeplans/status"
        );
        assert_eq!(
            c("GET", "/api/v1/namespaces/a/secrets/mongo"),
            "get secrets"
        );
        assert_eq!(
            c("POST", "/apis/events.k8s.io/v1/namespaces/a/events"),
            "create events"
        );
        assert_eq!(
            c(
                "PUT",
                "/apis/coordination.k8s.io/v1/namespaces/a/leases/cutover"
            ),
            "update leases"
        );
        assert_eq!(c("GET", "/api/v1/namespaces/a"), "get namespaces");
        assert_eq!(c("GET", "/version"), "get /version");
    }
}
