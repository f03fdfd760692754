//! `mbtd` publishing end to end, against a real mosquitto on 127.0.0.1 (a free port, started
//! by the test with mbt-publish's harness, `crates/mbt-publish/tests/broker.rs`): a broker
//! outage in the middle of a run, a broker that is never there, evidence and metrics, and
//! sink settings that cannot work.
//!
//! The 30 s outage of the issue is `#[ignore]`d (a 45 s run):
//! `cargo test --workspace --test integration -- --ignored --nocapture broker_outage_30s`.
//!
//! Events from a random-init model: the synthetic source repeats a noise burst every
//! `synthetic.burst_every_s`, which moves the scores; thresholds at the level the random model
//! gives make events open and end over and over (see [`EVENTS`]). Every check compares what
//! reached the broker with what `mbtd` printed on stdout (the same events, stdout is a sink
//! too), so it holds whatever the model's scores are.
//!
//! Without mosquitto installed the MQTT tests print a loud SKIPPED line and pass.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mbt_core::event::{Event, EventKind};

use crate::broker::{check_delivery, free_port, subscriber, Broker, Received};
use crate::common::{events, mbtd_with_state, random_model, report, stderr, temp_dir};

/// Event settings that make a random model produce a steady stream of short events on the
/// synthetic source: every label at a low threshold with release just under it, no cool-down,
/// and updates on any rise. Calibrated with `sink.stdout_scores=true`: the random model's
/// fused `person_speaking` and `door_closed_softly` scores swing between ~0.17 and ~0.22 as the
/// bursts enter and leave the window, so these open and end an event about every 2 s
/// (22 events in 12 s of synthetic input).
const EVENTS: &[&str] = &[
    "events.threshold=0.2",
    "events.release=0.195",
    "events.cooldown_s=0.0",
    "events.update_delta=0.001",
];

fn kind(e: &Event) -> &'static str {
    match e.kind {
        EventKind::New => "new",
        EventKind::Update => "update",
        EventKind::End => "end",
    }
}

/// `(type, id)` of events as the MQTT events topic carries them.
fn keys(ev: &[Event]) -> Vec<(String, String)> {
    ev.iter()
        .map(|e| (kind(e).to_string(), e.id.clone()))
        .collect()
}

/// Common arguments: the random model, the synthetic source, the test's state directory.
fn base_args(state: &Path, extra: &[String]) -> Vec<String> {
    let mut a = vec![
        format!("model.path={}", random_model().display()),
        "audio.source=synthetic".into(),
        "video.source=synthetic".into(),
        "video.fps=8".into(),
        "window.hop_s=0.5".into(),
        "synthetic.burst_every_s=1.5".into(),
        format!("spool.dir={}", state.join("spool").display()),
        format!("evidence.dir={}", state.join("evidence").display()),
    ];
    a.extend(EVENTS.iter().map(|s| s.to_string()));
    a.extend(extra.iter().cloned());
    a.into_iter()
        .flat_map(|s| ["--set".to_string(), s])
        .collect()
}

fn mqtt_args(port: u16) -> Vec<String> {
    vec![
        "mqtt.enabled=true".into(),
        format!("mqtt.url=mqtt://127.0.0.1:{port}"),
        "mqtt.device=testdev".into(),
        "mqtt.reconnect_min_ms=50".into(),
        "mqtt.reconnect_max_ms=500".into(),
        "mqtt.keep_alive_s=5".into(),
        "mqtt.connect_timeout_s=2".into(),
    ]
}

/// `mbtd` running, its stdout events collected by a thread as they come.
struct Running {
    child: Child,
    events: Arc<Mutex<Vec<Event>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    fn start(state: &Path, args: &[String]) -> Running {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mbtd"))
            .args(crate::common::WEB_ANY_PORT)
            .args(args)
            .current_dir(crate::common::ROOT)
            .env_remove("MBTD_CONFIG")
            .env_remove("STATE_DIRECTORY")
            .env("XDG_STATE_HOME", state)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mbtd starts");
        let out = BufReader::new(child.stdout.take().expect("stdout"));
        let events = Arc::new(Mutex::new(Vec::new()));
        let ev = events.clone();
        let reader = std::thread::spawn(move || {
            for line in out.lines() {
                let Ok(line) = line else { break };
                let e: Event = serde_json::from_str(&line)
                    .unwrap_or_else(|err| panic!("not an event: {line}: {err}"));
                ev.lock().unwrap().push(e);
            }
        });
        Running {
            child,
            events,
            reader: Some(reader),
        }
    }

    fn count(&self) -> usize {
        self.events.lock().unwrap().len()
    }

    fn wait_for_events(&self, n: usize, timeout: Duration) {
        let t = Instant::now();
        while self.count() < n {
            assert!(
                t.elapsed() < timeout,
                "mbtd printed {} of {n} events in {timeout:?}",
                self.count()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the exit; returns (exit code, events, stderr).
    fn finish(mut self) -> (Option<i32>, Vec<Event>, String) {
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let st = self.child.wait().expect("mbtd exits");
        if let Some(r) = self.reader.take() {
            r.join().expect("stdout reader");
        }
        let ev = self.events.lock().unwrap().clone();
        (st.code(), ev, err)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Waits until every event `mbtd` printed has reached the subscriber on the events topic.
fn wait_all_arrived(rt: &tokio::runtime::Runtime, rx: &Received, sent: &[(String, String)]) {
    rt.block_on(
        rx.wait_for("every event on the broker", Duration::from_secs(60), |r| {
            let got = r.events("mbt/testdev/events");
            sent.iter().all(|k| got.contains(k))
        }),
    );
}

/// Runs `mbtd` for `run_s` seconds of real time with the broker stopped for `outage` from the
/// moment the first events are out; checks every event arrived, in order, and returns
/// (events, messages received, duplicates).
fn outage_run(run_s: f64, outage: Duration) -> Option<(usize, usize, usize)> {
    let port = free_port();
    let mut broker = Broker::new(port)?;
    broker.start();
    let rt = runtime();
    let rx = rt.block_on(subscriber(port, "mbtd-outage-sub"));
    let state = temp_dir(&format!("outage-{}", outage.as_secs()));
    let mut extra = mqtt_args(port);
    extra.extend([
        "synthetic.realtime=true".to_string(),
        format!("synthetic.duration_s={run_s}"),
        "sink.shutdown_flush_s=60".into(),
    ]);
    let run = Running::start(&state, &base_args(&state, &extra));
    // Some events before the outage, so it starts in the middle of the stream.
    run.wait_for_events(3, Duration::from_secs(60));
    broker.stop();
    let before = run.count();
    std::thread::sleep(outage);
    let during = run.count() - before;
    broker.start();
    // mbtd exits when the synthetic source ends, after its spool has drained.
    let (code, ev, err) = run.finish();
    assert_eq!(code, Some(0), "{err}");
    assert!(
        during > 0,
        "no event was produced during the outage, so it tested nothing: {ev:?}"
    );
    let sent = keys(&ev);
    wait_all_arrived(&rt, &rx, &sent);
    let got = rx.events("mbt/testdev/events");
    let dups = check_delivery(&sent, &got);
    // Evidence: every event that opened has its key frame and audio, named by its id (the
    // budget is far from reached, so nothing was deleted).
    // Every record names the files (schema 2 `evidence`), the end as well as the new.
    for e in ev.iter() {
        let jpg = state.join("evidence").join(format!("{}.jpg", e.id));
        let wav = state.join("evidence").join(format!("{}.wav", e.id));
        assert!(jpg.is_file() && wav.is_file(), "{} missing", jpg.display());
        let named = e
            .evidence
            .as_ref()
            .unwrap_or_else(|| panic!("no evidence in {e:?}"));
        assert_eq!(named.jpeg.as_deref(), jpg.to_str(), "{e:?}");
        assert_eq!(named.wav.as_deref(), wav.to_str(), "{e:?}");
    }
    // Snapshots: the key frame of a new event, as a JPEG, on <prefix>/<device>/<label>/snapshot.
    let first_new = ev
        .iter()
        .find(|e| e.kind == EventKind::New)
        .expect("a new event");
    let topic = format!("mbt/testdev/{}/snapshot", first_new.label);
    let snap = rx
        .all()
        .into_iter()
        .find(|(t, _, _)| *t == topic)
        .unwrap_or_else(|| panic!("nothing on {topic}"));
    assert_eq!(&snap.1[..2], &[0xFF, 0xD8], "a JPEG on {topic}");
    eprintln!(
        "mbtd, broker outage {outage:?} in a {run_s} s run: {} events printed ({during} during the outage), \
         {} messages on the events topic, {dups} duplicates",
        ev.len(),
        got.len()
    );
    Some((ev.len(), got.len(), dups))
}

/// The broker stopped for 3 s in the middle of a 12 s run, then restarted: every event the
/// daemon printed reaches the broker, in order, each id at least once.
#[test]
fn broker_outage_mid_run_loses_nothing() {
    outage_run(12.0, Duration::from_secs(3));
}

/// The fault test: the broker stopped for 30 s in the middle of a 45 s run.
/// `cargo test --workspace --test integration -- --ignored --nocapture broker_outage_30s`
#[test]
#[ignore = "a 45 s run; run with --ignored"]
fn broker_outage_30s_mid_run_loses_nothing() {
    outage_run(45.0, Duration::from_secs(30));
}

/// Bytes of the files directly in `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// No broker while the daemon runs: detection goes on, the spool stays within its bound and
/// says what it dropped; a later start with a broker delivers what the spool kept, in order.
#[test]
fn broker_never_reachable_spool_bounded_then_backlog_delivered() {
    let port = free_port();
    let Some(mut broker) = Broker::new(port) else {
        return;
    };
    let state = temp_dir("unreachable");
    let max_bytes: u64 = 8192;
    let mut extra = mqtt_args(port);
    extra.extend([
        "synthetic.duration_s=60".to_string(),
        "synthetic.realtime=false".into(),
        format!("spool.max_bytes={max_bytes}"),
        "spool.segment_bytes=1024".into(),
        "spool.fsync=never".into(),
        "sink.shutdown_flush_s=0.5".into(),
    ]);
    let args = base_args(&state, &extra);
    let first = Running::start(&state, &args);
    let (code, ev, err) = first.finish();
    assert_eq!(code, Some(0), "{err}");
    // Detection went on without the broker: the events of the whole run were printed, up to
    // the end of the source (60 s of synthetic input, as fast as possible).
    let r = report(&err);
    assert!(
        r["windows_cut"].as_u64() > Some(100) && r["windows_inferred"] == r["windows_cut"],
        "every window was run: {r}"
    );
    assert!(
        ev.len() > 100,
        "too few events ({}) to fill a {max_bytes}-byte spool",
        ev.len()
    );
    let spool = state.join("spool").join("mqtt");
    let on_disk = dir_bytes(&spool);
    assert!(
        on_disk <= max_bytes,
        "spool {} holds {on_disk} bytes, more than spool.max_bytes = {max_bytes}",
        spool.display()
    );
    assert!(
        err.contains("spool full") && err.contains("dropped the"),
        "the drops are logged: {err}"
    );
    assert!(err.contains("kept in the spool"), "{err}");

    // A later start with the broker there delivers the backlog (a short run with no events of
    // its own: the threshold is out of reach).
    broker.start();
    let rt = runtime();
    let rx = rt.block_on(subscriber(port, "mbtd-backlog-sub"));
    let mut extra = mqtt_args(port);
    extra.extend([
        "synthetic.duration_s=2".to_string(),
        format!("spool.max_bytes={max_bytes}"),
        "spool.segment_bytes=1024".into(),
        "events.threshold=1.0".into(),
        "events.release=0.9".into(),
        "sink.shutdown_flush_s=30".into(),
    ]);
    let second = Running::start(&state, &base_args(&state, &extra));
    let (code, ev2, err2) = second.finish();
    assert_eq!(code, Some(0), "{err2}");
    assert!(ev2.is_empty(), "{ev2:?}");
    // What arrived is the newest part of the first run's events, in order, ending with its
    // last event: drop_oldest lost only the oldest ones.
    let sent = keys(&ev);
    let tail = sent.last().cloned().expect("events");
    rt.block_on(rx.wait_for("the backlog", Duration::from_secs(30), |r| {
        r.events("mbt/testdev/events").contains(&tail)
    }));
    let got = rx.events("mbt/testdev/events");
    let first_got = got.first().cloned().expect("something arrived");
    let from = sent
        .iter()
        .position(|k| *k == first_got)
        .expect("what arrived was printed by the first run");
    let kept = &sent[from..];
    let dups = check_delivery(kept, &got);
    assert!(from > 0, "the spool was full, so the oldest were dropped");
    eprintln!(
        "mbtd, broker never reachable: {} events, spool bound {max_bytes} bytes ({on_disk} on disk at exit); \
         next start delivered the newest {} ({from} dropped oldest-first), {dups} duplicates",
        sent.len(),
        kept.len()
    );
    assert!(
        !err2.contains("not acknowledged"),
        "the backlog drained before the second run's shutdown: {err2}"
    );
}

/// SIGKILL while the spool is being delivered, then a restart: the spool is not corrupt and
/// every event of the backlog arrives, in order, each id at least once.
///
/// Run 1 has no broker and ends cleanly, leaving its events in the spool. Run 2 starts with
/// the broker up and is killed with SIGKILL as soon as the first backlog message reaches the
/// subscriber, i.e. in the middle of delivering (or, on a fast machine, just after: either way
/// the cursor on disk is whatever the kill left). Run 3 must deliver what run 2 did not.
#[test]
fn sigkill_during_delivery_then_restart_delivers_the_backlog() {
    let port = free_port();
    let Some(mut broker) = Broker::new(port) else {
        return;
    };
    let state = temp_dir("sigkill");
    let mut extra = mqtt_args(port);
    extra.extend([
        "synthetic.duration_s=600".to_string(),
        "synthetic.realtime=false".into(),
        "spool.fsync=never".into(),
        "sink.shutdown_flush_s=0.2".into(),
    ]);
    let (code, ev, err) = Running::start(&state, &base_args(&state, &extra)).finish();
    assert_eq!(code, Some(0), "{err}");
    assert!(
        ev.len() >= 200,
        "too few events for a backlog: {}",
        ev.len()
    );
    assert!(err.contains("kept in the spool"), "{err}");
    let sent = keys(&ev);

    broker.start();
    let rt = runtime();
    let rx = rt.block_on(subscriber(port, "mbtd-sigkill-sub"));
    // No events of its own in runs 2 and 3: the threshold is out of reach.
    let mut quiet = mqtt_args(port);
    quiet.extend([
        "synthetic.duration_s=5".to_string(),
        "synthetic.realtime=true".into(),
        "events.threshold=1.0".into(),
        "events.release=0.9".into(),
        "sink.shutdown_flush_s=30".into(),
    ]);
    let mut second = Running::start(&state, &base_args(&state, &quiet));
    rt.block_on(
        rx.wait_for("the first backlog message", Duration::from_secs(30), |r| {
            !r.events("mbt/testdev/events").is_empty()
        }),
    );
    second.child.kill().expect("SIGKILL mbtd");
    let _ = second.child.wait();
    let before_restart = rx.events("mbt/testdev/events").len();

    let (code, ev3, err3) = Running::start(&state, &base_args(&state, &quiet)).finish();
    assert_eq!(code, Some(0), "{err3}");
    assert!(ev3.is_empty(), "{ev3:?}");
    assert!(
        !err3.contains("damaged") && !err3.contains("went bad"),
        "the spool was read back whole after SIGKILL: {err3}"
    );
    wait_all_arrived(&rt, &rx, &sent);
    let got = rx.events("mbt/testdev/events");
    let dups = check_delivery(&sent, &got);
    eprintln!(
        "mbtd SIGKILLed during delivery: backlog {} events, {before_restart} had arrived at the kill, \
         {} messages in all after the restart, {dups} duplicates",
        sent.len(),
        got.len()
    );
}

/// Sink settings that cannot work stop `mbtd` at start with status 1 and a message naming the
/// field (and the file, for a missing one).
#[test]
fn malformed_sink_config_names_the_field() {
    let state = temp_dir("bad-sink-config");
    let missing_ca = state.join("no-such-ca.pem");
    let not_a_dir = state.join("a-file");
    std::fs::write(&not_a_dir, b"").unwrap();
    let cases: Vec<(Vec<String>, &str, Option<String>)> = vec![
        (
            vec!["mqtt.enabled=true".into(), "mqtt.url=htp://broker".into()],
            "mqtt.url",
            None,
        ),
        (
            vec!["mqtt.url=mqtt://broker:99999".into()],
            "mqtt.url",
            None,
        ),
        (
            vec![
                "mqtt.enabled=true".into(),
                "mqtt.url=mqtts://broker".into(),
                format!("mqtt.ca_file={}", missing_ca.display()),
            ],
            "mqtt.ca_file",
            Some(missing_ca.display().to_string()),
        ),
        (
            vec!["mqtt.enabled=true".into(), "mqtt.url=mqtts://broker".into()],
            "mqtt.ca_file",
            None,
        ),
        (vec!["postcard.udp=nowhere".into()], "postcard.udp", None),
        (
            vec!["metrics.listen=localhost".into()],
            "metrics.listen",
            None,
        ),
        (vec!["spool.max_bytes=100".into()], "spool.max_bytes", None),
        (
            vec![format!("evidence.dir={}/sub", not_a_dir.display())],
            "evidence.dir",
            None,
        ),
    ];
    for (sets, field, also) in cases {
        let mut args = vec![
            "--set".to_string(),
            format!("model.path={}", random_model().display()),
            "--set".into(),
            "audio.source=synthetic".into(),
            "--set".into(),
            "video.source=synthetic".into(),
        ];
        for s in &sets {
            args.push("--set".into());
            args.push(s.clone());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = mbtd_with_state(&args, &state);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{sets:?}: {e}");
        assert!(e.contains(field), "{sets:?}: the error names {field}: {e}");
        if let Some(p) = also {
            assert!(e.contains(&p), "{sets:?}: the error names {p}: {e}");
        }
        assert!(events(&o.stdout).is_empty());
    }
    // The same from a config file: the file is named too.
    let file = state.join("mbtd.toml");
    std::fs::write(&file, "[mqtt]\nenabled = true\nurl = \"tcp//broker\"\n").unwrap();
    let o = mbtd_with_state(&["--config", &file.display().to_string()], &state);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("mqtt.url") && e.contains("mbtd.toml"), "{e}");
    // An unknown key in a publishing section is refused, naming it.
    std::fs::write(&file, "[mqtt]\nenabld = true\n").unwrap();
    let o = mbtd_with_state(&["--config", &file.display().to_string()], &state);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("enabld"), "{e}");
}

/// `--print-config` documents the publishing sections with their defaults.
#[test]
fn print_config_shows_the_publishing_sections() {
    let state = temp_dir("print-config");
    let o = mbtd_with_state(&["--print-config"], &state);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    for section in [
        "[mqtt]",
        "[postcard]",
        "[gpio]",
        "[spool]",
        "[metrics]",
        "[evidence]",
    ] {
        assert!(text.contains(section), "{section} missing:\n{text}");
    }
    assert!(text.contains("url = \"mqtt://127.0.0.1:1883\""), "{text}");
}

/// The metrics endpoint serves the pipeline's counters while `mbtd` runs.
#[test]
fn metrics_endpoint_serves_the_pipeline_counters() {
    let state = temp_dir("metrics");
    let port = free_port();
    let run = Running::start(
        &state,
        &base_args(
            &state,
            &[
                "metrics.enabled=true".into(),
                format!("metrics.listen=127.0.0.1:{port}"),
                "synthetic.realtime=true".into(),
                "synthetic.duration_s=30".into(),
                // Events from the first window on, whatever the random model's scores.
                "events.threshold=0.01".into(),
                "events.release=0.0".into(),
            ],
        ),
    );
    run.wait_for_events(1, Duration::from_secs(60));
    let body = scrape(port);
    let (code, ev, err) = {
        // SIGTERM: a clean shutdown.
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(run.child.id() as i32, libc::SIGTERM) };
        run.finish()
    };
    assert_eq!(code, Some(0), "{err}");
    assert!(!ev.is_empty());
    for series in [
        "mbtd_windows_total ",
        "mbtd_windows_inferred_total ",
        "mbtd_inference_seconds_count ",
        "mbtd_backend_info{backend=",
        "mbtd_source_up{source=\"audio\"} 1",
        "mbtd_source_up{source=\"video\"} 1",
        "mbtd_events_total{",
        "mbtd_dropped_windows_total{reason=\"behind\"}",
        "mbtd_score{head=\"fused\",label=",
        "# EOF",
    ] {
        assert!(body.contains(series), "{series} missing:\n{body}");
    }
}

fn scrape(port: u16) -> String {
    use std::io::Write;
    let t = Instant::now();
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut body = String::new();
            s.read_to_string(&mut body).unwrap();
            // The events counter appears with the first event: wait for one scrape that has it.
            if body.contains("mbtd_events_total{") {
                return body;
            }
        }
        assert!(t.elapsed() < Duration::from_secs(30), "no metrics endpoint");
        std::thread::sleep(Duration::from_millis(200));
    }
}
