//! The operator's HTTP endpoint: `/healthz` (the process serves), `/readyz` (connected and
//! watching), `/metrics` (Prometheus text). Three fixed GET routes need no web framework.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the endpoint serves; `metrics` renders the exposition on demand.
pub struct Endpoint {
    pub ready: Arc<AtomicBool>,
    pub metrics: Box<dyn Fn() -> String + Send + Sync>,
}

/// Binds and serves in the background; returns the bound address (the port may be 0).
pub async fn serve(addr: SocketAddr, endpoint: Endpoint) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let endpoint = Arc::new(endpoint);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let endpoint = endpoint.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let n = match tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    stream.read(&mut buf),
                )
                .await
                {
                    Ok(Ok(n)) => n,
                    _ => return,
                };
                let request = String::from_utf8_lossy(&buf[..n]);
                let (status, content_type, body) =
                    respond(&endpoint, request.lines().next().unwrap_or(""));
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    Ok(local)
}

fn respond(endpoint: &Endpoint, request_line: &str) -> (&'static str, &'static str, String) {
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "GET" {
        return ("405 Method Not Allowed", "text/plain", "GET only\n".into());
    }
    match path {
        "/healthz" => ("200 OK", "text/plain", "ok\n".into()),
        "/readyz" if endpoint.ready.load(Ordering::Relaxed) => {
            ("200 OK", "text/plain", "ok\n".into())
        }
        "/readyz" => (
            "503 Service Unavailable",
            "text/plain",
            "not ready\n".into(),
        ),
        "/metrics" => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            (endpoint.metrics)(),
        ),
        _ => ("404 Not Found", "text/plain", "not found\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_health_readiness_and_metrics() {
        let ready = Arc::new(AtomicBool::new(false));
        let addr = serve(
            "127.0.0.1:0".parse().unwrap(),
            Endpoint {
                ready: ready.clone(),
                metrics: Box::new(|| "cutover_x 1\n".into()),
            },
        )
        .await
        .unwrap();
        let get = |p: &'static str| crate::probe::request(addr, "GET", p, None);
        assert_eq!(get("/healthz").await, Ok(200));
        assert_eq!(get("/readyz").await, Ok(503));
        ready.store(true, Ordering::Relaxed);
        assert_eq!(get("/readyz").await, Ok(200));
        assert_eq!(get("/metrics").await, Ok(200));
        assert_eq!(get("/nope").await, Ok(404));
    }
}
