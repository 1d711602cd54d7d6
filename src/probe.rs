//! HTTP probes against pod IPs: the health gate and the read-only write check. A minimal
//! HTTP/1.1 client is enough here (one request, status line only) and keeps the operator free
//! of a second HTTP stack.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::plan::needs::Probe;
use crate::plan::{PodAnswer, ProbeView};

const TIMEOUT: Duration = Duration::from_secs(3);

/// Sends one request and returns the response status code.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<u16, String> {
    let fut = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let body = body.unwrap_or("");
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: cutover\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream
            .write_all(req.as_bytes())
            .await
            .map_err(|e| format!("write to {addr}: {e}"))?;
        let mut buf = Vec::with_capacity(256);
        let mut chunk = [0u8; 256];
        while !buf.windows(2).any(|w| w == b"\r\n") && buf.len() < 4096 {
            let n = stream
                .read(&mut chunk)
                .await
                .map_err(|e| format!("read from {addr}: {e}"))?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        parse_status(&buf).ok_or_else(|| format!("{addr} did not answer HTTP"))
    };
    tokio::time::timeout(TIMEOUT, fut)
        .await
        .map_err(|_| format!("{addr} did not answer within {TIMEOUT:?}"))?
}

/// Sends the request to every ready pod (`targets`: name and IP); ok when all of them answer
/// as the probe wants. A pod that cannot be asked is `Unreachable`, not an unwanted answer.
pub async fn pods(targets: &[(String, IpAddr)], p: &Probe) -> ProbeView {
    let mut pods = Vec::with_capacity(targets.len());
    for (pod, ip) in targets {
        let addr = SocketAddr::new(*ip, p.port as u16);
        let answer = match request(addr, p.method, &p.path, p.body.as_deref()).await {
            Ok(code) if p.accept.accepts(code) => PodAnswer::Wanted,
            Ok(code) => {
                PodAnswer::Unwanted(format!("{pod} answered {code} to {} {}", p.method, p.path))
            }
            Err(e) => PodAnswer::Unreachable(e),
        };
        pods.push((pod.clone(), answer));
    }
    let ok = !pods.is_empty() && pods.iter().all(|(_, a)| *a == PodAnswer::Wanted);
    let detail = if pods.is_empty() {
        "no ready pod to probe".to_string()
    } else if ok {
        format!("{} pod(s) answered as expected", pods.len())
    } else {
        pods.iter()
            .filter_map(|(pod, a)| match a {
                PodAnswer::Wanted => None,
                PodAnswer::Unwanted(d) => Some(d.clone()),
                PodAnswer::Unreachable(e) => Some(format!("{pod}: {e}")),
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    ProbeView { ok, detail, pods }
}

fn parse_status(buf: &[u8]) -> Option<u16> {
    let line = buf.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    let version = parts.next()?;
    if !version.starts_with("HTTP/") {
        return None;
    }
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_lines() {
        assert_eq!(parse_status(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(
            parse_status(b"HTTP/1.0 503 Service Unavailable\r\nX: y"),
            Some(503)
        );
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_status(b""), None);
    }

    #[tokio::test]
    async fn probes_a_local_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).await.unwrap();
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            let code = if req.starts_with("POST /api/contents") {
                503
            } else {
                404
            };
            s.write_all(format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n").as_bytes())
                .await
                .unwrap();
        });
        assert_eq!(
            request(addr, "POST", "/api/contents", Some("{}")).await,
            Ok(503)
        );
    }

    #[tokio::test]
    async fn reports_a_closed_port() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        assert!(request(addr, "GET", "/", None).await.is_err());
    }
}
