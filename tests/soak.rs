//! The soak (issue 33, item 1): `mbtd` as fast as inference goes with the web page watched
//! (SSE clients on `/api/scores`, pollers on the JSON endpoints), MQTT on a real mosquitto that
//! is stopped and started, evidence on, `/metrics` scraped; the process's RSS, open file
//! descriptors and threads, the spool's and evidence's bytes sampled every `every`.
//!
//! * `short_soak_stays_bounded_and_accounts_for_every_event` (default tests, about 45 s): the
//!   synthetic source (events guaranteed with the random model), two broker outages; checks
//!   fds and threads stay within a bound of their level after warm-up, RSS too, every event
//!   printed reached the broker at least once or is still in the spool (published = delivered
//!   + kept), and every window cut was scored or counted.
//! * `soak_long` (`#[ignore]`d; `bench/soak.sh` runs it): the same on a looped clip with a
//!   real model for `MBT_SOAK_S` seconds, with a full disk in the middle when the test may
//!   mount a tmpfs (root), writing the samples to `MBT_SOAK_CSV` and a summary to stdout.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mbt_core::event::{Event, EventKind};
use mbt_publish::spool::{Spool, SpoolOptions};

use crate::broker::{free_port, subscriber, Broker};
use crate::common::{random_model, temp_dir};
use crate::harness::Daemon;

/// One sample of the daemon.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub t_s: f64,
    pub rss_kib: u64,
    pub fds: u64,
    pub threads: u64,
    pub spool_bytes: u64,
    pub evidence_bytes: u64,
    pub windows: u64,
    pub events: u64,
    pub delivered: u64,
    pub held: u64,
    pub write_failures: u64,
    pub broker_up: bool,
    pub disk_full: bool,
}

impl Sample {
    pub const HEADER: &'static str = "t_s,rss_kib,fds,threads,spool_bytes,evidence_bytes,windows,events,delivered,held,write_failures,broker_up,disk_full";

    fn csv(&self) -> String {
        format!(
            "{:.1},{},{},{},{},{},{},{},{},{},{},{},{}",
            self.t_s,
            self.rss_kib,
            self.fds,
            self.threads,
            self.spool_bytes,
            self.evidence_bytes,
            self.windows,
            self.events,
            self.delivered,
            self.held,
            self.write_failures,
            self.broker_up as u8,
            self.disk_full as u8
        )
    }
}

/// `/proc/<pid>/status` field in its unit (kB for memory).
fn status_field(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn open_fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0)
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// A GET on the web page; the body, or "" when the page did not answer.
fn get(addr: SocketAddr, path: &str) -> String {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return String::new();
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body
}

/// The sum of a metric's series (over its labels) in OpenMetrics text, filtered by a label.
fn metric(body: &str, name: &str, label: &str) -> u64 {
    body.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
                && l.contains(label)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Web page watchers: SSE clients that read the live stream, pollers of the JSON endpoints.
struct Watchers {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Watchers {
    fn start(addr: SocketAddr, sse: usize, pollers: usize) -> Watchers {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for _ in 0..sse {
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || {
                let mut buf = [0u8; 16 * 1024];
                while !stop.load(Ordering::Relaxed) {
                    // A client that reconnects when the stream ends, as a browser does.
                    let Ok(mut s) = TcpStream::connect(addr) else {
                        std::thread::sleep(Duration::from_millis(500));
                        continue;
                    };
                    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                    let req =
                        "GET /api/scores HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n";
                    if s.write_all(req.as_bytes()).is_err() {
                        continue;
                    }
                    while !stop.load(Ordering::Relaxed) {
                        match s.read(&mut buf) {
                            Ok(0) => break,
                            Ok(_) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                            Err(_) => break,
                        }
                    }
                }
            }));
        }
        for k in 0..pollers {
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || {
                let paths = [
                    "/api/status",
                    "/api/events",
                    "/api/timeline",
                    "/metrics",
                    "/",
                ];
                let mut i = k;
                while !stop.load(Ordering::Relaxed) {
                    let _ = get(addr, paths[i % paths.len()]);
                    i += 1;
                    std::thread::sleep(Duration::from_millis(250));
                }
            }));
        }
        Watchers { stop, threads }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// What a soak is run with.
pub struct Plan {
    pub run: Duration,
    pub every: Duration,
    /// The broker is stopped at each of these offsets for `outage`.
    pub broker_down_at: Vec<Duration>,
    pub outage: Duration,
    /// Fill the state filesystem at this offset for this long (needs `state_tmpfs`).
    pub disk_full: Option<(Duration, Duration)>,
    /// `--set` arguments for the source, model and events.
    pub args: Vec<String>,
    pub state: PathBuf,
    pub csv: Option<PathBuf>,
    /// Where the daemon's log goes at the end.
    pub log: Option<PathBuf>,
}

/// What a soak measured.
#[derive(Debug)]
pub struct Outcome {
    pub samples: Vec<Sample>,
    pub published: Vec<Event>,
    /// `(type, id)` first arrivals at the broker, and the number of extra arrivals.
    pub delivered: usize,
    pub duplicates: usize,
    /// Published events not delivered but left in the spool at exit (delivered after the next
    /// start).
    pub kept: usize,
    /// Published events neither delivered nor kept.
    pub lost: Vec<(String, String)>,
    pub report: serde_json::Value,
    /// From the space returning to the held queue being empty, seconds.
    pub recovery_s: Option<f64>,
    /// Warnings in the daemon's log.
    pub warnings: usize,
}

fn key(e: &Event) -> (String, String) {
    let kind = match e.kind {
        EventKind::New => "new",
        EventKind::Update => "update",
        EventKind::End => "end",
    };
    (kind.to_string(), e.id.clone())
}

/// A file that takes all the free space of the filesystem holding `dir`.
fn fill(dir: &Path) -> PathBuf {
    let ballast = dir.join("ballast");
    if let Ok(mut f) = std::fs::File::create(&ballast) {
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }
    ballast
}

pub fn soak(plan: Plan) -> Option<Outcome> {
    let port = free_port();
    let mut broker = Broker::new(port)?;
    broker.start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let rx = rt.block_on(subscriber(port, "mbtd-soak-sub"));
    let state = &plan.state;
    let mut args: Vec<String> = vec![
        "mqtt.enabled=true".into(),
        format!("mqtt.url=mqtt://127.0.0.1:{port}"),
        "mqtt.device=soak".into(),
        "mqtt.reconnect_min_ms=100".into(),
        "mqtt.reconnect_max_ms=2000".into(),
        "mqtt.keep_alive_s=5".into(),
        "mqtt.connect_timeout_s=2".into(),
        "metrics.enabled=true".into(),
        "metrics.listen=127.0.0.1:0".into(),
        format!("spool.dir={}", state.join("spool").display()),
        "spool.max_bytes=8388608".into(),
        "spool.segment_bytes=262144".into(),
        format!("evidence.dir={}", state.join("evidence").display()),
        "evidence.max_bytes=4194304".into(),
        "sink.shutdown_flush_s=20".into(),
    ];
    args.extend(plan.args.iter().cloned());
    let set: Vec<String> = args
        .into_iter()
        .flat_map(|s| ["--set".to_string(), s])
        .collect();
    let daemon = Daemon::start(&set, state);
    let pid = daemon.pid();
    let watchers = Watchers::start(daemon.addr, 3, 2);
    let mut csv = plan.csv.as_ref().map(|p| {
        let mut f = std::fs::File::create(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let _ = writeln!(f, "{}", Sample::HEADER);
        f
    });

    let t0 = Instant::now();
    let mut samples = Vec::new();
    let mut broker_up = true;
    let mut ballast: Option<PathBuf> = None;
    let mut space_back: Option<Instant> = None;
    let mut recovery_s = None;
    let mut failures_before_full = None;
    while t0.elapsed() < plan.run {
        let t = t0.elapsed();
        let down = plan
            .broker_down_at
            .iter()
            .any(|&at| t >= at && t < at + plan.outage);
        if down && broker_up {
            broker.stop();
            broker_up = false;
        } else if !down && !broker_up {
            broker.start();
            broker_up = true;
        }
        if let Some((at, len)) = plan.disk_full {
            if t >= at && t < at + len && ballast.is_none() {
                ballast = Some(fill(state));
            } else if t >= at + len {
                if let Some(b) = ballast.take() {
                    let _ = std::fs::remove_file(b);
                    space_back = Some(Instant::now());
                }
            }
        }
        let body = get(daemon.addr, "/metrics");
        let s = Sample {
            t_s: t.as_secs_f64(),
            rss_kib: status_field(pid, "VmRSS:"),
            fds: open_fds(pid),
            threads: status_field(pid, "Threads:"),
            spool_bytes: dir_bytes(&state.join("spool")),
            evidence_bytes: dir_bytes(&state.join("evidence")),
            windows: metric(&body, "mbtd_windows_inferred_total", ""),
            events: metric(&body, "mbtd_events_total", ""),
            delivered: metric(&body, "mbtd_sink_delivered_total", "mqtt"),
            held: metric(&body, "mbtd_spool_held_events", "mqtt"),
            write_failures: metric(&body, "mbtd_spool_write_failures_total", "mqtt"),
            broker_up,
            disk_full: ballast.is_some(),
        };
        if ballast.is_some() && failures_before_full.is_none() {
            failures_before_full = Some(s.write_failures);
        }
        if let (Some(back), None) = (space_back, recovery_s) {
            if s.held == 0 {
                recovery_s = Some(back.elapsed().as_secs_f64());
            }
        }
        if let Some(f) = csv.as_mut() {
            let _ = writeln!(f, "{}", s.csv());
        }
        samples.push(s);
        std::thread::sleep(plan.every);
    }
    if !broker_up {
        broker.start();
    }
    if let Some(b) = ballast.take() {
        let _ = std::fs::remove_file(b);
    }
    watchers.stop();
    let published = daemon.events();
    let log_of = daemon.log_handle();
    let report = daemon.stop();
    let log = log_of();
    if let Some(p) = &plan.log {
        let _ = std::fs::write(p, &log);
    }
    // The log may carry colour codes: match the level word alone.
    let warnings = log.lines().filter(|l| l.contains("WARN")).count();
    // What the spool still holds (the broker had 20 s at shutdown to take the backlog).
    let kept_keys: Vec<(String, String)> = {
        let mut spool = Spool::open(SpoolOptions::new(state.join("spool").join("mqtt")))
            .unwrap_or_else(|e| panic!("{e}"));
        let cursor = spool.cursor();
        spool
            .read(cursor, 1 << 20)
            .unwrap_or_else(|e| panic!("{e}"))
            .iter()
            .filter_map(|r| postcard::from_bytes::<Event>(&r.payload).ok())
            .map(|e| key(&e))
            .collect()
    };
    // Give the broker's queue a moment to reach the subscriber, then count.
    let sent: Vec<(String, String)> = published.iter().map(key).collect();
    let arrived = |rx: &crate::broker::Received| {
        let got: std::collections::HashSet<_> = rx.events("mbt/soak/events").into_iter().collect();
        sent.iter()
            .filter(|k| !got.contains(*k) && !kept_keys.contains(k))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while arrived(&rx) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let got = rx.events("mbt/soak/events");
    let unique: std::collections::HashSet<_> = got.iter().cloned().collect();
    let lost: Vec<(String, String)> = sent
        .iter()
        .filter(|k| !unique.contains(*k) && !kept_keys.contains(k))
        .cloned()
        .collect();
    let delivered = sent.iter().filter(|k| unique.contains(*k)).count();
    let kept = sent
        .iter()
        .filter(|k| !unique.contains(*k) && kept_keys.contains(k))
        .count();
    drop(rt);
    Some(Outcome {
        samples,
        duplicates: got.len() - unique.len(),
        delivered,
        kept,
        lost,
        published,
        report,
        recovery_s,
        warnings,
    })
}

/// Start (after warm-up), end and max of one column.
fn span(samples: &[Sample], warm: usize, f: impl Fn(&Sample) -> u64) -> (u64, u64, u64) {
    let v: Vec<u64> = samples.iter().skip(warm).map(f).collect();
    (
        v.first().copied().unwrap_or(0),
        v.last().copied().unwrap_or(0),
        v.iter().copied().max().unwrap_or(0),
    )
}

fn summary(o: &Outcome, warm: usize) -> String {
    let (r0, r1, rm) = span(&o.samples, warm, |s| s.rss_kib);
    let (f0, f1, fm) = span(&o.samples, warm, |s| s.fds);
    let (t0, t1, tm) = span(&o.samples, warm, |s| s.threads);
    let windows = o.report["windows_inferred"].as_u64().unwrap_or(0);
    let (_, _, sm) = span(&o.samples, 0, |s| s.spool_bytes);
    let (_, _, em) = span(&o.samples, 0, |s| s.evidence_bytes);
    let (_, _, hm) = span(&o.samples, 0, |s| s.held);
    format!(
        "soak: {:.0} s, {windows} windows; after warm-up RSS {r0}/{r1}/{rm} KiB (start/end/max), \
         fds {f0}/{f1}/{fm}, threads {t0}/{t1}/{tm}; max spool {sm} B, evidence {em} B, held \
         {hm}; events published {}, delivered {}, duplicated {}, kept {}, lost {}; recovery \
         after space returned: {}; {} warnings logged",
        o.samples.last().map(|s| s.t_s).unwrap_or(0.0),
        o.published.len(),
        o.delivered,
        o.duplicates,
        o.kept,
        o.lost.len(),
        o.recovery_s
            .map(|s| format!("{s:.1} s"))
            .unwrap_or_else(|| "not measured".into()),
        o.warnings
    )
}

/// The bounds every soak must stay in after its warm-up samples: fds and threads within a few
/// of their level at warm-up (clients and broker reconnects come and go), RSS within 25 % +
/// 16 MiB, every window scored or counted, every event delivered or kept.
fn check(o: &Outcome, warm: usize) {
    let after = &o.samples[warm.min(o.samples.len() - 1)..];
    let base = &after[0];
    let fds = after.iter().map(|s| s.fds).max().unwrap_or(0);
    let threads = after.iter().map(|s| s.threads).max().unwrap_or(0);
    let rss = after.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    assert!(fds <= base.fds + 16, "fds grew: {base:?} -> max {fds}");
    assert!(
        threads <= base.threads + 8,
        "threads grew: {base:?} -> max {threads}"
    );
    assert!(
        rss <= base.rss_kib + base.rss_kib / 4 + 16 * 1024,
        "RSS grew: {base:?} -> max {rss} KiB"
    );
    let r = &o.report;
    let n = |k: &str| r[k].as_u64().unwrap_or(0);
    assert_eq!(
        n("windows_cut"),
        n("windows_inferred") + n("windows_dropped") + n("windows_failed") + n("windows_empty"),
        "every window cut was scored or counted: {r}"
    );
    assert!(o.lost.is_empty(), "lost events: {:?}", o.lost);
    assert_eq!(
        o.published.len(),
        o.delivered + o.kept,
        "published = delivered + kept"
    );
}

/// Event settings that make the random model open and end events every few windows on the
/// synthetic source (as in `tests/publish.rs`).
const EVENTS: &[&str] = &[
    "events.threshold=0.2",
    "events.release=0.195",
    "events.cooldown_s=0.0",
    "events.update_delta=0.001",
];

#[test]
fn short_soak_stays_bounded_and_accounts_for_every_event() {
    let state = temp_dir("soak-short");
    let mut args: Vec<String> = vec![
        format!("model.path={}", random_model().display()),
        "audio.source=synthetic".into(),
        "video.source=synthetic".into(),
        "video.fps=8".into(),
        "window.hop_s=0.5".into(),
        "synthetic.burst_every_s=1.5".into(),
        "synthetic.realtime=false".into(),
    ];
    args.extend(EVENTS.iter().map(|s| s.to_string()));
    let plan = Plan {
        run: Duration::from_secs(40),
        every: Duration::from_secs(1),
        broker_down_at: vec![Duration::from_secs(12), Duration::from_secs(26)],
        outage: Duration::from_secs(5),
        disk_full: None,
        args,
        state,
        csv: None,
        log: None,
    };
    let Some(o) = soak(plan) else {
        eprintln!("SKIPPED short_soak: mosquitto is not installed");
        return;
    };
    eprintln!("{}", summary(&o, 10));
    assert!(
        o.published.len() > 10,
        "the soak produced events: {}",
        o.published.len()
    );
    check(&o, 10);
}

/// `bench/soak.sh`: `MBT_SOAK_S` seconds (default 3600) on a looped clip, samples to
/// `MBT_SOAK_CSV`.
#[test]
#[ignore]
fn soak_long() {
    let secs: u64 = std::env::var("MBT_SOAK_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3600);
    let model = std::env::var("MBT_SOAK_MODEL").unwrap_or_else(|_| "models/edge.onnx".into());
    let clip = std::env::var("MBT_SOAK_CLIP").unwrap_or_else(|_| "models/demo".into());
    let csv = std::env::var("MBT_SOAK_CSV").unwrap_or_else(|_| "soak.csv".into());
    let parent = temp_dir("soak-long");
    let state = parent.join("state");
    std::fs::create_dir_all(&state).unwrap_or_else(|e| panic!("{e}"));
    // The state on a filesystem of its own, filled half-way through (root only).
    let tmpfs = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64m", "tmpfs"])
        .arg(&state)
        .status()
        .is_ok_and(|s| s.success());
    if !tmpfs {
        eprintln!("soak: cannot mount a tmpfs (not root?): no full-disk phase");
    }
    let run = Duration::from_secs(secs);
    let flap = Duration::from_secs((secs / 12).clamp(20, 300));
    let plan = Plan {
        run,
        every: Duration::from_secs(5),
        broker_down_at: (1..12).map(|k| flap * k).collect(),
        outage: Duration::from_secs(30).min(flap / 2),
        disk_full: tmpfs.then(|| (run / 2 + flap / 4, Duration::from_secs(60).min(flap / 2))),
        args: vec![
            format!("model.path={model}"),
            "audio.source=replay".into(),
            "video.source=replay".into(),
            format!("replay.clip={clip}"),
            "replay.loops=0".into(),
        ],
        state: state.clone(),
        log: Some(PathBuf::from(&csv).with_extension("log")),
        csv: Some(PathBuf::from(&csv)),
    };
    let o = soak(plan);
    if tmpfs {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&state)
            .status();
    }
    let Some(o) = o else {
        panic!("soak: mosquitto is not installed");
    };
    println!("{}", summary(&o, 12));
    println!("report: {}", o.report);
    check(&o, 12);
}
