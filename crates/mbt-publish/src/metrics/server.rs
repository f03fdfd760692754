//! A minimal HTTP/1.x endpoint for Prometheus: `GET /metrics` and nothing else.
//!
//! One request per connection, a bounded request head (8 KiB) and a read deadline, so a slow
//! or hostile client cannot hold the daemon's memory or tasks. Plain tokio, no framework.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{MetricsError, Registry};

const MAX_HEAD: usize = 8 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds the endpoint (errors name `metrics.listen`).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, MetricsError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| MetricsError::Listen {
            addr: addr.to_string(),
            reason: e.to_string(),
        })
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    registry: Registry,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let r = registry.clone();
                    tokio::spawn(async move {
                        if let Err(e) = handle(stream, &r).await {
                            tracing::debug!("metrics: connection: {e}");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors, say: back off instead of spinning.
                    tracing::warn!("metrics: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

async fn handle(mut stream: TcpStream, registry: &Registry) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let complete = tokio::time::timeout(READ_TIMEOUT, async {
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Ok::<bool, std::io::Error>(false);
            }
            head.extend_from_slice(&buf[..n]);
            if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
                return Ok(true);
            }
            if head.len() > MAX_HEAD {
                return Ok(false);
            }
        }
    })
    .await;
    let (status, body, ctype) = match complete {
        Ok(Ok(true)) => route(&head, registry),
        Ok(Ok(false)) => ("400 Bad Request", "bad request\n".to_string(), "text/plain"),
        Ok(Err(e)) => return Err(e),
        Err(_) => return Ok(()),
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(resp.as_bytes()).await?;
    stream.shutdown().await
}

fn route(head: &[u8], registry: &Registry) -> (&'static str, String, &'static str) {
    let text = String::from_utf8_lossy(head);
    let mut first = text.lines().next().unwrap_or("").split_whitespace();
    let (method, path) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => (
            "200 OK",
            registry.render(),
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        ("GET", "/") => ("200 OK", "mbtd: metrics at /metrics\n".into(), "text/plain"),
        ("GET", _) => ("404 Not Found", "not found\n".into(), "text/plain"),
        _ => ("405 Method Not Allowed", "only GET\n".into(), "text/plain"),
    }
}
