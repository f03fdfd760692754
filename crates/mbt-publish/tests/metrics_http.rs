//! The Prometheus endpoint over real HTTP.

use std::time::Duration;

use mbt_publish::metrics::{server, Registry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn get(addr: std::net::SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}

#[tokio::test]
async fn serves_metrics_and_nothing_else() {
    let registry = Registry::new();
    registry
        .counter("mbtd_windows_total", "Windows scored.", &[])
        .unwrap()
        .add(42);
    registry
        .gauge("mbtd_source_up", "Source state.", &[("source", "camera")])
        .unwrap()
        .set(1.0);
    let listener = server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server::serve(listener, registry.clone(), async {
        let _ = stop_rx.await;
    }));

    let r = get(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 200 OK"), "{r}");
    assert!(r.contains("text/plain; version=0.0.4"));
    assert!(r.contains("\nmbtd_windows_total 42\n"), "{r}");
    assert!(r.contains("mbtd_source_up{source=\"camera\"} 1"), "{r}");
    // Values change between scrapes.
    registry
        .counter("mbtd_windows_total", "", &[])
        .unwrap()
        .inc();
    assert!(get(addr, "GET /metrics HTTP/1.0\r\n\r\n")
        .await
        .contains("mbtd_windows_total 43"));
    assert!(get(addr, "GET /nope HTTP/1.1\r\n\r\n")
        .await
        .starts_with("HTTP/1.1 404"));
    assert!(get(addr, "POST /metrics HTTP/1.1\r\n\r\n")
        .await
        .starts_with("HTTP/1.1 405"));
    // An oversized head is refused, not buffered forever.
    let big = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n", "a".repeat(20_000));
    assert!(get(addr, &big).await.starts_with("HTTP/1.1 400"));

    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_taken_port_is_an_error_naming_the_setting() {
    let first = server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let e = server::bind(first.local_addr().unwrap()).await.unwrap_err();
    assert!(e.to_string().contains("metrics.listen"), "{e}");
}
