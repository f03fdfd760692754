//! Postcard frames over a Unix socket (spooled, reconnecting) and UDP.

use std::time::Duration;

use mbt_core::event::EventKind;
use mbt_publish::backoff::Backoff;
use mbt_publish::frame::StreamDecoder;
use mbt_publish::postcard_sink::{UdpFrameSink, UnixFrameSink};
use mbt_publish::spool::SpoolOptions;
use mbt_publish::SinkMetrics;
use tokio::io::AsyncReadExt;
use tokio::net::{UdpSocket, UnixListener};

use crate::common::event;

async fn read_events(listener: &UnixListener, n: usize) -> Vec<mbt_core::event::Event> {
    let (mut s, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
        .await
        .expect("the sink connects")
        .unwrap();
    let mut dec = StreamDecoder::new();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while out.len() < n {
        let k = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("frames arrive")
            .unwrap();
        assert!(k > 0, "stream closed after {} events", out.len());
        for r in dec.feed(&buf[..k]) {
            out.push(r.expect("a valid frame"));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_spools_while_no_listener_and_delivers_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("events.sock");
    let metrics = SinkMetrics::detached();
    let mut sink = UnixFrameSink::start(
        sock.clone(),
        SpoolOptions::new(dir.path().join("spool")),
        Backoff::new(Duration::from_millis(20), Duration::from_millis(100)),
        metrics.clone(),
    )
    .unwrap();
    // No listener yet: events wait in the spool.
    for i in 0..5 {
        sink.deliver(&event(i, EventKind::New)).await.unwrap();
    }
    assert_eq!(sink.spool().stats().pending_records, 5);

    let listener = UnixListener::bind(&sock).unwrap();
    let got = read_events(&listener, 5).await;
    let ids: Vec<_> = got.iter().map(|e| e.id.clone()).collect();
    assert_eq!(
        ids,
        (0..5)
            .map(|i| event(i, EventKind::New).id)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        got[0],
        event(0, EventKind::New),
        "the event survives the trip exactly"
    );
    sink.flush(Duration::from_secs(5)).await.unwrap();

    // The listener goes away and comes back: later events still arrive.
    drop(listener);
    std::fs::remove_file(&sock).unwrap();
    for i in 5..8 {
        sink.deliver(&event(i, EventKind::Update)).await.unwrap();
    }
    let listener = UnixListener::bind(&sock).unwrap();
    let got = read_events(&listener, 3).await;
    assert_eq!(got.last().unwrap().id, event(7, EventKind::Update).id);
    sink.shutdown(Duration::from_secs(2)).await;
    assert!(metrics.delivered.get() >= 8);
}

#[tokio::test]
async fn udp_sends_one_frame_per_datagram() {
    let rx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut sink = UdpFrameSink::new(rx.local_addr().unwrap()).await.unwrap();
    for i in 0..3 {
        sink.deliver(&event(i, EventKind::End)).await.unwrap();
    }
    let mut buf = [0u8; 2048];
    for i in 0..3 {
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), rx.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(buf[n - 1], 0, "a datagram is one whole frame");
        assert_eq!(
            mbt_publish::frame::decode(&buf[..n]).unwrap(),
            event(i, EventKind::End)
        );
    }
}
