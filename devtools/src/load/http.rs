//! One HTTP/1.1 request per connection (`Connection: close`), the status and body back, and
//! whether a failed request may have reached the app: a write that was never sent is
//! certainly not applied; one that was sent and got no answer is in doubt.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendError {
    /// The request may have reached the app (connected and started writing it).
    pub sent: bool,
    pub message: String,
}

/// Sends one request; the whole exchange is bounded by `timeout`.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    timeout: Duration,
) -> Result<Reply, SendError> {
    let connect = tokio::time::timeout(timeout, TcpStream::connect(addr)).await;
    let mut stream = match connect {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(not_sent(format!("connect {addr}: {e}"))),
        Err(_) => return Err(not_sent(format!("connect {addr}: timed out"))),
    };
    let exchange = async {
        let body = body.unwrap_or("");
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: cutover-load\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream
            .write_all(req.as_bytes())
            .await
            .map_err(|e| format!("write to {addr}: {e}"))?;
        let mut raw = Vec::with_capacity(512);
        stream
            .read_to_end(&mut raw)
            .await
            .map_err(|e| format!("read from {addr}: {e}"))?;
        parse(&raw).ok_or_else(|| format!("{addr} answered no HTTP response ({} bytes)", raw.len()))
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(message)) => Err(SendError {
            sent: true,
            message,
        }),
        Err(_) => Err(SendError {
            sent: true,
            message: format!("{method} {path} to {addr}: no answer within {timeout:?}"),
        }),
    }
}

fn not_sent(message: String) -> SendError {
    SendError {
        sent: false,
        message,
    }
}

/// Status and body of a complete response (`Content-Length` bodies, as appsim sends them).
fn parse(raw: &[u8]) -> Option<Reply> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut status_line = head.lines().next()?.split_whitespace();
    if !status_line.next()?.starts_with("HTTP/") {
        return None;
    }
    let status = status_line.next()?.parse().ok()?;
    let length = head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    });
    if let Some(n) = length
        && body.len() < n
    {
        return None; // cut off: the answer is incomplete
    }
    Some(Reply {
        status,
        body: body.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_complete_responses_only() {
        let ok = b"HTTP/1.1 201 Created\r\ncontent-length: 9\r\n\r\n{\"id\":1}\n";
        assert_eq!(
            parse(ok),
            Some(Reply {
                status: 201,
                body: "{\"id\":1}\n".into()
            })
        );
        let empty = b"HTTP/1.1 204 No Content\r\n\r\n";
        assert_eq!(parse(empty).unwrap().status, 204);
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}"),
            None
        );
        assert_eq!(parse(b"HTTP/1.1 200 OK\r\n"), None);
        assert_eq!(parse(b""), None);
    }

    #[tokio::test]
    async fn a_refused_connection_was_not_sent() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        // The listener is dropped: nothing listens there any more.
        let e = request(port, "GET", "/", None, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(!e.sent, "{e:?}");
    }
}
