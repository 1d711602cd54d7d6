//! readinessProbe.httpGet, done like the kubelet (a plain HTTP/1.1 GET, success for status
//! 200–399) over a raw TCP connection: one request line is all a probe needs.

use std::time::Duration;

use k8s_openapi::{
    api::core::v1::{Container, HTTPGetAction},
    apimachinery::pkg::util::intstr::IntOrString,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Where and how to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpProbe {
    pub host: String,
    pub port: u16,
    pub path: String,
    pub failure_threshold: u32,
}

impl HttpProbe {
    /// The container's readinessProbe if it is an httpGet (other probe kinds are treated as
    /// "no probe": ready once started).
    pub fn readiness(container: &Container, pod_ip: &str) -> Option<Self> {
        let probe = container.readiness_probe.as_ref()?;
        let get: &HTTPGetAction = probe.http_get.as_ref()?;
        let port = match &get.port {
            IntOrString::Int(p) => u16::try_from(*p).ok()?,
            IntOrString::String(name) => container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name))
                .and_then(|p| u16::try_from(p.container_port).ok())?,
        };
        Some(Self {
            host: get.host.clone().unwrap_or_else(|| pod_ip.to_owned()),
            port,
            path: get.path.clone().unwrap_or_else(|| "/".into()),
            failure_threshold: probe
                .failure_threshold
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(3),
        })
    }

    /// One probe attempt.
    pub async fn check(&self) -> bool {
        tokio::time::timeout(Duration::from_secs(1), self.status())
            .await
            .ok()
            .flatten()
            .is_some_and(|s| (200..400).contains(&s))
    }

    async fn status(&self) -> Option<u16> {
        let mut conn = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .ok()?;
        let req = format!(
            "GET {} HTTP/1.1\r\nHost: {}:{}\r\nUser-Agent: kube-probe/podsim\r\nConnection: close\r\n\r\n",
            self.path, self.host, self.port
        );
        conn.write_all(req.as_bytes()).await.ok()?;
        let mut buf = [0u8; 64];
        let mut n = 0;
        while n < 12 {
            let read = conn.read(&mut buf[n..]).await.ok()?;
            if read == 0 {
                break;
            }
            n += read;
        }
        parse_status(&buf[..n])
    }
}

/// The status code of an HTTP/1.x status line.
fn parse_status(head: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(head).ok()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/1."))?;
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_probe_with_named_port() {
        let c: Container = serde_json::from_value(json!({
            "name": "app",
            "ports": [{"name": "http", "containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "failureThreshold": 2}
        }))
        .unwrap();
        assert_eq!(
            HttpProbe::readiness(&c, "127.0.16.3"),
            Some(HttpProbe {
                host: "127.0.16.3".into(),
                port: 8080,
                path: "/healthz".into(),
                failure_threshold: 2
            })
        );
        let exec: Container = serde_json::from_value(json!({
            "name": "app", "readinessProbe": {"exec": {"command": ["true"]}}
        }))
        .unwrap();
        assert_eq!(HttpProbe::readiness(&exec, "127.0.16.3"), None);
    }

    #[test]
    fn parses_status_lines() {
        assert_eq!(parse_status(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(parse_status(b"HTTP/1.0 503 Service"), Some(503));
        assert_eq!(parse_status(b"garbage"), None);
    }

    #[tokio::test]
    async fn probes_a_listener() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            for code in [200, 503] {
                let (mut s, _) = l.accept().await.unwrap();
                let mut b = [0u8; 256];
                let _ = s.read(&mut b).await;
                let _ = s
                    .write_all(format!("HTTP/1.1 {code} X\r\ncontent-length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        let p = HttpProbe {
            host: "127.0.0.1".into(),
            port,
            path: "/healthz".into(),
            failure_threshold: 3,
        };
        assert!(p.check().await);
        assert!(!p.check().await);
        assert!(!p.check().await, "nothing listens any more");
    }
}
