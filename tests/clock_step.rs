//! A wall clock stepped by +1 h and then -1 h during a run (through the `WallClock` seam; the
//! machine's clock is never touched): windows are cut on the monotonic clock, so none is
//! lost or doubled; events stay in order; the spool replays them in the order they were
//! published; each step is logged and counted; event times follow the wall clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use mbt_core::event::{Event, EventKind};
use mbt_publish::spool::{Spool, SpoolOptions};
use mbtd::backend::{Backend, BackendError, Logits, TractCpu};
use mbtd::clock::{Clock, SystemWall, WallClock};
use mbtd::detector::Detector;
use mbtd::pipeline::{build, run};
use mbtd::sink::MemorySink;
use mbtd::Config;
use tokio::sync::watch;

use crate::common::{random_model, random_model_bytes, temp_dir, write_clip};

const HOUR_MS: i64 = 3_600_000;

/// The system clock plus an offset that depends on how often it was read: +1 h from read
/// `up` on, back to +0 from read `down` on. The daemon reads it once at start and once per
/// window, so the steps land at known windows whatever the machine's speed.
#[derive(Debug)]
struct SteppingWall {
    reads: AtomicU64,
    up: u64,
    down: u64,
}

impl WallClock for SteppingWall {
    fn now_ms(&self) -> u64 {
        let n = self.reads.fetch_add(1, Ordering::SeqCst);
        let offset = if (self.up..self.down).contains(&n) {
            HOUR_MS
        } else {
            0
        };
        (SystemWall.now_ms() as i64 + offset) as u64
    }
}

/// A backend whose first label is certain in windows 0, 1 of every 4 and `none` (the last
/// label) otherwise: an event every 4 windows, whatever the weights.
struct Pulses {
    inner: TractCpu,
    windows: u64,
}

impl Backend for Pulses {
    fn name(&self) -> String {
        "pulses".into()
    }
    fn metadata(&self) -> &mbt_core::metadata::ModelMetadata {
        self.inner.metadata()
    }
    fn input_shapes(&self) -> ((usize, usize), (usize, usize)) {
        self.inner.input_shapes()
    }
    fn max_batch(&self) -> usize {
        1
    }
    fn run(&mut self, batch: usize, _: &[f32], _: &[f32]) -> Result<Logits, BackendError> {
        let classes = self.inner.metadata().labels.len();
        let mut fused = vec![0.0; batch * classes];
        for row in 0..batch {
            let hot = if self.windows % 4 < 2 { 0 } else { classes - 1 };
            fused[row * classes + hot] = 12.0;
            self.windows += 1;
        }
        Ok(Logits {
            batch,
            classes,
            video: fused.clone(),
            audio: fused.clone(),
            fused,
        })
    }
}

/// Log lines of the runtime's threads, kept for the test to read.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(b);
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        self.0
            .lock()
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default()
    }
}

fn event_number(e: &Event) -> u64 {
    e.id.rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("event id {} ends in its number", e.id))
}

#[test]
fn a_wall_clock_stepped_both_ways_loses_doubles_and_reorders_nothing() {
    let dir = temp_dir("clock-step");
    // 24 s: windows [0,2) .. [22,24), 23 of them.
    let clip = write_clip(&dir, "clip", 24.0, 192, 8);
    let mut cfg = Config::default();
    cfg.model.path = random_model().to_path_buf();
    cfg.model.backend = "cpu".into();
    cfg.audio.source = "replay".into();
    cfg.video.source = "replay".into();
    cfg.replay.clip = clip;
    cfg.evidence.enabled = false;
    // A free port: tests run in parallel, and the default 8090 may be taken.
    cfg.web.listen = "127.0.0.1:0".into();
    cfg.sink.stdout = false;
    cfg.events.min_duration_s = 0.0;
    cfg.events.cooldown_s = 0.0;
    // A spooled sink with nobody listening: every event stays in its spool, to be replayed.
    cfg.postcard.unix = Some(dir.join("nobody.sock"));
    cfg.spool.dir = Some(dir.join("spool"));
    cfg.sink.shutdown_flush_s = 0.0;
    cfg.spool.fsync = mbt_publish::spool::Fsync::Never;

    let wall = Arc::new(SteppingWall {
        reads: AtomicU64::new(0),
        up: 8,
        down: 16,
    });
    let clock = Clock::with_wall(wall.clone());
    let run_start_ms = clock.wall_start_ms() as i64;
    let logs = Logs::default();
    let dispatch = tracing::Dispatch::new(
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer({
                let logs = logs.clone();
                move || logs.clone()
            })
            .finish(),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        // The events task logs on the runtime's threads: route those to `logs` (the guard
        // lives as long as the thread).
        .on_thread_start(move || std::mem::forget(tracing::dispatcher::set_default(&dispatch)))
        .build()
        .unwrap();
    // The postcard sink's delivery task starts in `build`: on the runtime.
    let entered = rt.enter();
    let mut p = build(&cfg, clock).unwrap();
    let inner = TractCpu::from_bytes(random_model_bytes(), "random", 1).unwrap();
    p.detector = Detector::new(Box::new(Pulses { inner, windows: 0 })).unwrap();
    let mem = MemorySink::default();
    p.sinks.push(Box::new(mem.clone()));
    drop(entered);
    let (_tx, rx) = watch::channel(false);
    let report = rt.block_on(run(p, rx)).unwrap();
    drop(rt);

    // No window lost or doubled.
    let idx: Vec<u64> = mem.windows().iter().map(|w| w.index).collect();
    assert_eq!(idx, (0..23).collect::<Vec<_>>());
    assert_eq!(report.stats.windows_cut, 23);
    assert_eq!(report.stats.windows_inferred, 23);
    assert_eq!(report.stats.windows_dropped, 0);
    // Both steps found, once each.
    assert!(
        wall.reads.load(Ordering::SeqCst) > 16,
        "the wall clock was read per window"
    );
    assert_eq!(report.stats.wall_clock_steps, 2, "{:?}", report.stats);
    let logs = logs.text();
    let steps: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("wall clock was stepped"))
        .collect();
    assert_eq!(steps.len(), 2, "{logs}");
    assert!(
        steps[0].contains("by +3") && steps[1].contains("by -3"),
        "{steps:?}"
    );

    // Events in order: numbered in sequence, on the monotonic clock, each `new` before its
    // `end`.
    let events = mem.events();
    assert!(events.len() >= 10, "an event every 4 windows: {events:?}");
    let numbers: Vec<u64> = events.iter().map(event_number).collect();
    assert!(numbers.windows(2).all(|n| n[0] <= n[1]), "{numbers:?}");
    assert!(
        events.windows(2).all(|e| e[0].start_s <= e[1].start_s),
        "{events:?}"
    );
    for e in events.iter().filter(|e| e.kind == EventKind::End) {
        let new = events
            .iter()
            .position(|n| n.id == e.id && n.kind == EventKind::New);
        let end = events.iter().position(|n| n == e);
        assert!(new < end, "{} ends after it starts", e.id);
    }
    // Event times follow the wall clock: the offset of Unix time over the run's clock goes
    // 0 -> +1 h -> 0 across the run (before the fix it stayed at the start's wall time).
    let mut offsets: Vec<i64> = events
        .iter()
        .map(|e| {
            let off = e.start_ms as i64 - (e.start_s * 1000.0) as i64 - run_start_ms;
            (off as f64 / HOUR_MS as f64).round() as i64
        })
        .collect();
    offsets.dedup();
    assert_eq!(offsets, [0, 1, 0], "hours of offset, event by event");

    // The spool replays exactly what was published, in the same order.
    let mut spool = Spool::open(SpoolOptions::new(dir.join("spool").join("postcard-unix")))
        .unwrap_or_else(|e| panic!("{e}"));
    let cursor = spool.cursor();
    let replay: Vec<(String, EventKind)> = spool
        .read(cursor, 10_000)
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .map(|r| {
            let e: Event = postcard::from_bytes(&r.payload).unwrap();
            (e.id, e.kind)
        })
        .collect();
    let published: Vec<(String, EventKind)> =
        events.iter().map(|e| (e.id.clone(), e.kind)).collect();
    assert_eq!(replay, published);
}
