//! `mbt events listen` against mbt-publish's real postcard sinks: events sent through the Unix
//! (spooled, connecting) and UDP sinks come out as JSON lines equal to what was sent; garbage
//! and unknown-schema frames are reported on stderr and skipped.
//!
//! The waits below are hang guards (a broken listener fails the test instead of stalling it),
//! not timing assertions.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use mbt_core::event::{Event, EventKind, Modalities, EVENT_SCHEMA};
use mbt_publish::backoff::Backoff;
use mbt_publish::frame;
use mbt_publish::postcard_sink::{UdpFrameSink, UnixFrameSink};
use mbt_publish::spool::SpoolOptions;
use mbt_publish::SinkMetrics;

const GUARD: Duration = Duration::from_secs(60);

fn events() -> Vec<Event> {
    let base = Event {
        schema: EVENT_SCHEMA,
        id: "1732630000000-0001".into(),
        kind: EventKind::New,
        label: "glass_breaking".into(),
        score: 0.93,
        score_audio: Some(0.71),
        score_video: None,
        modalities: Modalities {
            audio: true,
            video: false,
        },
        start_ms: 1_732_630_000_000,
        end_ms: None,
        start_s: 3.25,
        end_s: None,
        model_version: "edge-test".into(),
        evidence: None,
    };
    let update = Event {
        kind: EventKind::Update,
        score: 0.97,
        score_video: Some(0.42),
        modalities: Modalities {
            audio: true,
            video: true,
        },
        ..base.clone()
    };
    let end = Event {
        id: "1732630000000-0002 «dog»".into(),
        kind: EventKind::End,
        label: "dog_bark".into(),
        score_audio: None,
        end_ms: Some(1_732_630_004_500),
        end_s: Some(7.75),
        ..base.clone()
    };
    vec![base, update, end]
}

/// A running `mbt events listen` with its stdout and stderr read line by line.
struct Listener {
    child: Child,
    out: Receiver<String>,
    err: Receiver<String>,
    stderr_seen: Vec<String>,
}

impl Listener {
    fn start(args: &[&str]) -> Listener {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mbt"))
            .args(["events", "listen"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mbt starts");
        let out = lines(child.stdout.take().expect("piped stdout"));
        let err = lines(child.stderr.take().expect("piped stderr"));
        Listener {
            child,
            out,
            err,
            stderr_seen: Vec::new(),
        }
    }

    /// The next stderr line containing `needle`.
    fn stderr_line(&mut self, needle: &str) -> String {
        loop {
            match self.err.recv_timeout(GUARD) {
                Ok(l) => {
                    self.stderr_seen.push(l.clone());
                    if l.contains(needle) {
                        return l;
                    }
                }
                Err(e) => {
                    let _ = self.child.kill();
                    panic!(
                        "no stderr line with `{needle}` ({e:?}); stderr so far: {:?}",
                        self.stderr_seen
                    );
                }
            }
        }
    }

    /// Waits for the exit (`--count` reached), then returns the status, the events printed and
    /// all of stderr.
    fn finish(mut self) -> (ExitStatus, Vec<Event>, Vec<String>) {
        let deadline = Instant::now() + GUARD;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("waiting for mbt") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "mbt events listen did not exit; stderr: {:?}",
                    self.stderr_seen
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut printed = Vec::new();
        loop {
            match self.out.recv_timeout(GUARD) {
                Ok(l) => printed.push(
                    serde_json::from_str::<Event>(&l)
                        .unwrap_or_else(|e| panic!("stdout line is not an event ({e}): {l}")),
                ),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!("stdout not closed after exit"),
            }
        }
        let rest: Vec<String> = self.err.iter().collect();
        self.stderr_seen.extend(rest);
        (status, printed, std::mem::take(&mut self.stderr_seen))
    }
}

impl Drop for Listener {
    /// A failed test does not leave the listener running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines(r: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(r).lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

fn spool(dir: &Path) -> SpoolOptions {
    SpoolOptions::new(dir.join("spool"))
}

#[tokio::test]
async fn unix_sink_to_listener_prints_the_events_and_skips_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("events.sock");
    // A stale socket file, as a killed listener leaves: replaced, not refused.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());

    let sent = events();
    let count = sent.len().to_string();
    let mut l = Listener::start(&["--unix", sock.to_str().unwrap(), "--count", &count]);
    l.stderr_line("listening on unix");

    // A publisher writes garbage, an unknown schema and a frame cut short, then hangs up.
    let mut future = sent[0].clone();
    future.schema = EVENT_SCHEMA + 1;
    let good = frame::encode(&sent[0]).unwrap();
    let mut bad = b"\x07garbage\x00".to_vec();
    bad.extend(frame::encode(&future).unwrap());
    bad.extend_from_slice(&good[..good.len() / 2]);
    {
        let mut raw = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        raw.write_all(&bad).unwrap();
    }
    l.stderr_line("corrupt frame");
    l.stderr_line("schema");
    l.stderr_line("middle of a frame");

    // The real sink: spooled, connecting to the listener's socket.
    let mut sink = UnixFrameSink::start(
        sock.clone(),
        spool(dir.path()),
        Backoff::new(Duration::from_millis(20), Duration::from_millis(200)),
        SinkMetrics::detached(),
    )
    .unwrap();
    for e in &sent {
        sink.deliver(e).await.unwrap();
    }
    sink.flush(GUARD)
        .await
        .expect("the listener takes every event");
    sink.shutdown(Duration::from_secs(1)).await;

    let (status, printed, stderr) = l.finish();
    assert!(status.success(), "{status}; stderr: {stderr:?}");
    assert_eq!(printed, sent, "stderr: {stderr:?}");
    assert!(!sock.exists(), "the socket file is removed on exit");
}

#[tokio::test]
async fn udp_sink_to_listener_prints_the_events_and_skips_garbage() {
    let sent = events();
    let count = sent.len().to_string();
    let mut l = Listener::start(&["--udp", "127.0.0.1:0", "--count", &count]);
    let line = l.stderr_line("listening on udp");
    let addr: std::net::SocketAddr = line
        .rsplit(' ')
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in `{line}`"));

    let raw = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    raw.send_to(b"\x03\x01garbage\x00", addr).unwrap();
    l.stderr_line("corrupt frame");
    let mut future = sent[0].clone();
    future.schema = EVENT_SCHEMA + 1;
    raw.send_to(&frame::encode(&future).unwrap(), addr).unwrap();
    l.stderr_line("schema");

    let mut sink = UdpFrameSink::new(addr).await.unwrap();
    for e in &sent {
        sink.deliver(e).await.unwrap();
    }

    let (status, printed, stderr) = l.finish();
    assert!(status.success(), "{status}; stderr: {stderr:?}");
    assert_eq!(printed, sent, "stderr: {stderr:?}");
}

#[test]
fn refuses_to_replace_a_file_that_is_not_a_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "keep me").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_mbt"))
        .args(["events", "listen", "--unix", path.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("is not a socket"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");

    let o = Command::new(env!("CARGO_BIN_EXE_mbt"))
        .args(["events", "listen", "--udp", "not-an-address"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("not-an-address"), "{err}");
}
