//! The web page over real HTTP: `mbtd` with synthetic sources serving pages, JSON, the live
//! stream and the camera frame; the token rules; bounds (404/405/414, bad queries); and, in
//! process, that a client which stops reading and a crowd of clients never hold the pipeline
//! back (the live stream's `send` must not wait).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use crate::common::{random_model, temp_dir};
use crate::harness::Daemon;

/// A response: status code, headers (lower-case names), body.
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// One HTTP/1.1 request on its own connection (`Connection: close`), read to the end.
pub fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut s = TcpStream::connect(addr).expect("connects");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("reads the response");
    parse(&raw)
}

pub fn parse(raw: &[u8]) -> Resp {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end: {}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(nl) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..nl]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[nl + 2..nl + 2 + size]);
        b = &b[nl + 2 + size + 2..];
    }
    out
}

/// Reads `n` Server-Sent Events (`event: window`) from `/api/scores`; their JSON data.
pub fn live_windows(
    addr: SocketAddr,
    n: usize,
    headers: &[(&str, &str)],
) -> Vec<serde_json::Value> {
    let s = TcpStream::connect(addr).expect("connects");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut req = format!("GET /api/scores HTTP/1.1\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    w.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    let mut status = None;
    while out.len() < n {
        line.clear();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            panic!("stream ended after {} window(s)", out.len());
        }
        if status.is_none() {
            status = line.split_whitespace().nth(1).map(str::to_string);
            assert_eq!(status.as_deref(), Some("200"), "{line}");
        }
        // Chunk framing lines are hex sizes; SSE lines are `field: value`.
        if let Some(data) = line.trim_end().strip_prefix("data: ") {
            out.push(serde_json::from_str(data).unwrap_or_else(|e| panic!("{e}: {data}")));
        }
    }
    out
}

fn synthetic(seconds: &str) -> Vec<&str> {
    vec![
        "--set",
        "audio.source=synthetic",
        "--set",
        "video.source=synthetic",
        "--set",
        "synthetic.realtime=true",
        "--set",
        seconds,
    ]
}

#[test]
fn serves_pages_status_live_scores_the_frame_and_errors() {
    let state = temp_dir("web-serve");
    let mut args = synthetic("synthetic.duration_s=60");
    args.extend([
        "--set",
        "events.threshold=0.01",
        "--set",
        "events.release=0.0",
    ]);
    let d = Daemon::start(&args, &state);
    let a = d.addr;

    assert_eq!(request(a, "GET", "/healthz", &[]).text(), "ok\n");
    for (path, needle) in [
        ("/", "id=\"scores\""),
        ("/events", "id=\"events\""),
        ("/timeline", "id=\"timeline\""),
        ("/assets/app.js", "EventSource"),
        ("/assets/app.css", "--accent"),
    ] {
        let r = request(a, "GET", path, &[]);
        assert_eq!(r.status, 200, "{path}");
        assert!(r.text().contains(needle), "{path}: {}", r.text());
    }

    // The live stream: one message per window, in order, with every head's scores.
    let ws = live_windows(a, 3, &[]);
    let idx: Vec<u64> = ws
        .iter()
        .map(|w| w["window"]["index"].as_u64().unwrap())
        .collect();
    assert!(idx.windows(2).all(|p| p[1] == p[0] + 1), "{idx:?}");
    let labels = 6;
    for w in &ws {
        let fused = w["window"]["fused"].as_array().unwrap();
        assert_eq!(fused.len(), labels);
        let sum: f64 = fused.iter().map(|p| p.as_f64().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-3, "softmax: {sum}");
        assert_eq!(w["window"]["audio"].as_array().unwrap().len(), labels);
        assert_eq!(w["window"]["video"].as_array().unwrap().len(), labels);
        assert_eq!(w["audio_state"], "live");
        assert_eq!(w["mode"], "both");
        // The page starts over when this changes (a reload).
        assert_eq!(w["model_version"], "edge-random-test");
        // The synthetic source: a sine of amplitude 0.3 (RMS 0.212: -13.5 dBFS) plus, in some
        // seconds, 0.3 s of uniform noise of amplitude 0.25 (-12.9 dBFS over that second).
        let level = w["level_dbfs"].as_f64().unwrap();
        assert!((-13.6..=-12.5).contains(&level), "{level}");
        // The log-mel strip: the newest half of a 2 s window at a 1 s hop.
        let mel = &w["mel"];
        let (frames, bins) = (
            mel["frames"].as_u64().unwrap(),
            mel["bins"].as_u64().unwrap(),
        );
        assert!(frames > 0 && bins > 0);
        assert_eq!(mel["data"].as_array().unwrap().len() as u64, frames * bins);
    }

    let st = request(a, "GET", "/api/status", &[]).json();
    assert_eq!(st["labels"].as_array().unwrap().len(), labels);
    assert_eq!(st["model_version"], "edge-random-test");
    assert_eq!(st["audio"]["kind"], "synthetic");
    assert_eq!(st["video_state"], "live");
    assert!(st["throughput"]["windows"].as_u64().unwrap() >= 3);
    assert!(st["last_window"]["fused"].is_array());

    let jpg = request(a, "GET", "/api/latest.jpg", &[]);
    assert_eq!(jpg.status, 200);
    assert_eq!(jpg.header("content-type"), Some("image/jpeg"));
    let img = image::load_from_memory(&jpg.body).expect("a JPEG");
    assert_eq!(
        (img.width(), img.height()),
        (160, 120),
        "the synthetic camera's size"
    );

    // Events: the low threshold opens some; each has its evidence served.
    let evs = request(a, "GET", "/api/events?limit=10", &[]).json();
    let list = evs["events"].as_array().unwrap();
    assert!(!list.is_empty(), "{evs}");
    let e = &list[0];
    let jpeg = e["jpeg"].as_str().expect("key frame URL");
    let r = request(a, "GET", jpeg, &[]);
    assert_eq!(r.status, 200, "{jpeg}");
    assert!(image::load_from_memory(&r.body).is_ok());
    let wav = request(a, "GET", e["wav"].as_str().expect("audio URL"), &[]);
    assert_eq!(wav.header("content-type"), Some("audio/wav"));
    assert_eq!(&wav.body[..4], b"RIFF");
    let since = e["start_ms"].as_u64().unwrap();
    let newer = request(a, "GET", &format!("/api/events?since={since}"), &[]).json();
    assert!(newer["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|x| x["start_ms"].as_u64().unwrap() > since));
    let tl = request(a, "GET", "/api/timeline?minutes=1", &[]).json();
    assert!(tl["points"].as_array().unwrap().len() >= 3);
    assert_eq!(tl["thresholds"].as_array().unwrap().len(), labels);

    // Errors: unknown route, writes, huge URLs, bad queries, paths out of the store.
    assert_eq!(request(a, "GET", "/nope", &[]).status, 404);
    assert_eq!(
        request(a, "POST", "/api/status", &[("Content-Length", "0")]).status,
        405
    );
    let long = format!("/api/status?{}", "x".repeat(5000));
    assert_eq!(request(a, "GET", &long, &[]).status, 414);
    let bad = request(a, "GET", "/api/events?limit=0", &[]);
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("limit"), "{}", bad.text());
    assert_eq!(request(a, "GET", "/api/events?limit=x", &[]).status, 400);
    assert_eq!(
        request(a, "GET", "/api/timeline?minutes=-1", &[]).status,
        400
    );
    for p in [
        "/evidence/..%2Fweb-token",
        "/evidence/x.txt",
        "/evidence/nope.jpg",
    ] {
        assert_eq!(request(a, "GET", p, &[]).status, 404, "{p}");
    }
    // /metrics exists only with [metrics] on.
    assert_eq!(request(a, "GET", "/metrics", &[]).status, 404);
    let _ = d.log();
}

#[test]
fn a_token_guards_every_route_but_healthz() {
    let state = temp_dir("web-token");
    let token = "s3cret-token-0123456789";
    let mut args = synthetic("synthetic.duration_s=30");
    let set = format!("web.token={token}");
    args.extend(["--set", &set]);
    let d = Daemon::start(&args, &state);
    let a = d.addr;
    assert_eq!(request(a, "GET", "/healthz", &[]).status, 200);
    for p in [
        "/",
        "/api/status",
        "/api/scores",
        "/api/latest.jpg",
        "/assets/app.js",
        "/nope",
    ] {
        let r = request(a, "GET", p, &[]);
        assert_eq!(r.status, 401, "{p}");
        assert!(r.text().contains("token"), "{}", r.text());
    }
    let wrong = request(
        a,
        "GET",
        "/api/status",
        &[("Authorization", "Bearer nope-nope-nope-nope")],
    );
    assert_eq!(wrong.status, 401);
    let bearer = format!("Bearer {token}");
    assert_eq!(
        request(a, "GET", "/api/status", &[("Authorization", &bearer)]).status,
        200
    );
    // First visit with ?token=: the answer sets the cookie the page's own requests carry.
    let first = request(a, "GET", &format!("/?token={token}"), &[]);
    assert_eq!(first.status, 200);
    let cookie = first.header("set-cookie").expect("a cookie").to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_string();
    assert_eq!(
        request(a, "GET", "/api/status", &[("Cookie", &pair)]).status,
        200
    );
    assert_eq!(live_windows(a, 1, &[("Cookie", &pair)]).len(), 1);
}

#[test]
fn refuses_to_listen_beyond_loopback_without_a_token() {
    let model = random_model().display().to_string();
    let o = Command::new(env!("CARGO_BIN_EXE_mbtd"))
        .args(["--set", &format!("model.path={model}")])
        .args(["--set", "web.listen=0.0.0.0:0"])
        .env_remove("MBTD_CONFIG")
        .env_remove("STATE_DIRECTORY")
        .env("XDG_STATE_HOME", temp_dir("web-no-token"))
        .output()
        .expect("mbtd runs");
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("web.token") && err.contains("generate"),
        "{err}"
    );
}

#[test]
fn a_stalled_client_and_a_crowd_never_hold_the_pipeline_back() {
    use mbtd::web::routes;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let labels: Vec<String> = (0..10).map(|k| format!("label_{k}")).collect();
    let info = mbtd::web::Info {
        backend: "test".into(),
        model_version: "m".into(),
        thresholds: vec![0.5; labels.len()],
        watch: vec![0.25; labels.len()],
        fires: vec![true; labels.len()],
        labels: labels.clone(),
        audio: mbtd::web::SourceInfo {
            kind: "synthetic".into(),
            name: String::new(),
        },
        video: mbtd::web::SourceInfo {
            kind: "synthetic".into(),
            name: String::new(),
        },
        window_s: 2.0,
        hop_s: 1.0,
    };
    let tokenizer =
        mbt_core::audio::AudioTokenizer::new(mbt_core::config::AudioConfig::default()).unwrap();
    let max_clients = 8;
    let live = std::sync::Arc::new(mbtd::web::Live::new(
        info,
        mbtd::web::Limits {
            timeline_windows: 600,
            near_misses: 20,
            events: 100,
            watch_ratio: 0.5,
        },
        Some(tokenizer),
    ));
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = routes::router(routes::AppState {
        live: live.clone(),
        token: None,
        evidence: None,
        metrics: None,
        controls: None,
        clients: std::sync::Arc::new(tokio::sync::Semaphore::new(max_clients)),
        stop: stop.clone(),
    });
    let server = rt.spawn(mbtd::web::serve_until(listener, app, stop));

    // One client asks for the stream and never reads; the others read a message each and
    // leave their connections open (a crowd at the limit).
    let stalled = TcpStream::connect(addr).unwrap();
    (&stalled)
        .write_all(format!("GET /api/scores HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .unwrap();
    let audio: Vec<f32> = (0..32000)
        .map(|i| ((i as f32) * 0.07).sin() * 0.3)
        .collect();
    let media = mbtd::detector::WindowMedia {
        key_frame: None,
        audio: Some((16000, std::sync::Arc::new(audio))),
    };
    let feed = |from: u64, n: u64| {
        for k in from..from + n {
            let p = 1.0 / labels.len() as f32;
            let ws = mbtd::sink::WindowScores {
                index: k,
                start_s: k as f64,
                end_s: k as f64 + 2.0,
                modalities: mbt_core::event::Modalities {
                    audio: true,
                    video: true,
                },
                fused: labels.iter().map(|l| (l.clone(), p)).collect(),
                audio: None,
                video: None,
            };
            live.window(&ws, &media, &Default::default(), &[]);
        }
    };
    // Wait until the stalled client is subscribed (its message would otherwise be lost).
    while live.clients() < 1 {
        feed(0, 0);
        std::thread::sleep(Duration::from_millis(10));
    }
    let readers: Vec<_> = (0..max_clients - 1)
        .map(|_| std::thread::spawn(move || live_windows(addr, 1, &[])))
        .collect();
    while live.clients() < max_clients {
        std::thread::sleep(Duration::from_millis(10));
    }
    // One past the limit is refused.
    let over = request(addr, "GET", "/api/scores", &[]);
    assert_eq!(over.status, 503, "{}", over.text());
    // Thousands of windows, each with a log-mel strip (~25 KB of JSON), against a client
    // that reads nothing: every call returns (the hang guard is the test's timeout).
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            feed(1, 3000);
            let _ = done_tx.send(());
        });
        done_rx
            .recv_timeout(Duration::from_secs(300))
            .expect("the pipeline side never waits for a client");
    });
    for r in readers {
        assert_eq!(r.join().unwrap().len(), 1);
    }
    // The status route still answers, with the newest window.
    let st = request(addr, "GET", "/api/status", &[]).json();
    assert_eq!(st["last_window"]["index"], 3000);
    drop(stalled);
    let _ = stop_tx.send(true);
    rt.block_on(server).unwrap();
}

#[test]
fn the_metrics_endpoint_serves_metrics_and_nothing_else() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let registry = mbt_publish::metrics::Registry::new();
    let windows = registry
        .counter("mbtd_windows_total", "Windows scored.", &[])
        .unwrap();
    windows.add(42);
    registry
        .gauge("mbtd_source_up", "Source state.", &[("source", "camera")])
        .unwrap()
        .set(1.0);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let task = {
        let _guard = rt.enter();
        mbtd::web::serve_metrics(listener, registry.clone(), stop).unwrap()
    };
    let r = request(addr, "GET", "/metrics", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some(mbt_publish::metrics::CONTENT_TYPE)
    );
    let body = r.text();
    assert!(body.lines().any(|l| l == "mbtd_windows_total 42"), "{body}");
    assert!(
        body.lines()
            .any(|l| l == "mbtd_source_up{source=\"camera\"} 1.0"),
        "{body}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    windows.inc();
    assert!(request(addr, "GET", "/metrics", &[])
        .text()
        .contains("mbtd_windows_total 43"));
    assert_eq!(request(addr, "GET", "/", &[]).status, 200);
    assert_eq!(request(addr, "GET", "/api/status", &[]).status, 404);
    assert_eq!(
        request(addr, "POST", "/metrics", &[("Content-Length", "0")]).status,
        405
    );
    // A port in use is an error naming the setting (the daemon binds at start).
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let o = Command::new(env!("CARGO_BIN_EXE_mbtd"))
        .args(["--set", &format!("model.path={}", random_model().display())])
        .args(["--set", &format!("web.listen=127.0.0.1:{port}")])
        .env_remove("MBTD_CONFIG")
        .env_remove("STATE_DIRECTORY")
        .env("XDG_STATE_HOME", temp_dir("web-port-taken"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("web.listen"));
    let _ = stop_tx.send(true);
    rt.block_on(task).unwrap();
}
