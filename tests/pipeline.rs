//! The pipeline's mechanics on replayed clips of known length, with a random-init model:
//! window count and timestamps, one-modality fallback when a stream ends or fails,
//! drop-oldest accounting when inference falls behind, refusal of a model the configuration
//! cannot feed. (Scores of a random model mean nothing; these tests check what the pipeline
//! does with them.)

use std::sync::Arc;
use std::time::Duration;

use mbtd::backend::{Backend, BackendError, Logits, TractCpu};
use mbtd::clock::Clock;
use mbtd::detector::Detector;
use mbtd::pipeline::{build, run, Pipeline, RunReport};
use mbtd::queue::Overflow;
use mbtd::sink::MemorySink;
use mbtd::source::{Data, Format, Modality, Source, SourceError};
use mbtd::Config;
use tokio::sync::watch;

use crate::common::{random_model, temp_dir, write_clip};

fn replay_config(clip: &std::path::Path) -> Config {
    let mut cfg = Config::default();
    cfg.model.path = random_model().to_path_buf();
    cfg.model.backend = "cpu".into();
    cfg.audio.source = "replay".into();
    cfg.video.source = "replay".into();
    cfg.replay.clip = clip.to_path_buf();
    // Evidence is on by default: keep it in the test's own directory.
    cfg.evidence.dir = Some(temp_dir("pipeline-evidence"));
    // A free port: tests run in parallel, and 8090 may be taken.
    cfg.web.listen = "127.0.0.1:0".into();
    cfg
}

fn run_pipeline(mut p: Pipeline) -> (RunReport, MemorySink) {
    let mem = MemorySink::default();
    p.sinks = vec![Box::new(mem.clone())];
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (_tx, rx) = watch::channel(false);
    let report = rt.block_on(run(p, rx)).unwrap();
    (report, mem)
}

#[test]
fn replay_cuts_the_expected_windows_in_order() {
    let dir = temp_dir("windows");
    // 6.5 s of audio and 52 frames at 8 fps (6.5 s): windows [0,2) .. [4,6); [5,7) is not
    // covered by either stream.
    let clip = write_clip(&dir, "clip", 6.5, 52, 8);
    let cfg = replay_config(&clip);
    let (report, mem) = run_pipeline(build(&cfg, Clock::start()).unwrap());
    let w = mem.windows();
    let spans: Vec<(u64, f64, f64)> = w.iter().map(|w| (w.index, w.start_s, w.end_s)).collect();
    assert_eq!(
        spans,
        (0..5)
            .map(|k| (k, k as f64, k as f64 + 2.0))
            .collect::<Vec<_>>()
    );
    assert!(w.iter().all(|w| w.modalities.audio && w.modalities.video));
    // Probabilities: each head's scores sum to 1 over the model's labels.
    for w in &w {
        for head in [Some(&w.fused), w.audio.as_ref(), w.video.as_ref()] {
            let sum: f32 = head.unwrap().iter().map(|(_, p)| p).sum();
            assert!((sum - 1.0).abs() < 1e-4, "{sum}");
        }
    }
    assert_eq!(report.stats.windows_cut, 5);
    assert_eq!(report.stats.windows_inferred, 5);
    assert_eq!(
        report.stats.windows_dropped, 0,
        "a fast replay waits for inference"
    );
    assert_eq!(report.stats.video_frames, 52);
    assert_eq!(report.stats.audio_samples, 104_000);
    assert_eq!(report.stats.frames_missing + report.stats.frames_late, 0);
    assert_eq!(report.backend, "tract-cpu");
    assert_eq!(report.model_version, "edge-random-test");
}

#[test]
fn audio_ending_early_falls_back_to_video() {
    let dir = temp_dir("fallback-end");
    // Audio for 3.5 s, video for 6 s.
    let clip = write_clip(&dir, "clip", 3.5, 48, 8);
    let (report, mem) = run_pipeline(build(&replay_config(&clip), Clock::start()).unwrap());
    let w = mem.windows();
    let m: Vec<(bool, bool)> = w
        .iter()
        .map(|w| (w.modalities.audio, w.modalities.video))
        .collect();
    // [0,2) [1,3): both. [2,4): 1.5 of 2 s of audio (< 90 %): video only; [3,5) [4,6) too.
    assert_eq!(
        m,
        vec![
            (true, true),
            (true, true),
            (false, true),
            (false, true),
            (false, true)
        ]
    );
    // One modality: the fused score is the video head's own.
    for w in &w[2..] {
        assert_eq!(Some(&w.fused), w.video.as_ref());
        assert!(w.audio.is_none());
    }
    assert_eq!(report.stats.windows_video_only, 3);
}

/// A video source that delivers frames at 8 fps and fails for good after `fail_at` frames.
struct FailingCamera {
    next: u64,
    fail_at: u64,
}

impl Source for FailingCamera {
    fn modality(&self) -> Modality {
        Modality::Video
    }
    fn name(&self) -> String {
        "failing camera".into()
    }
    fn live(&self) -> bool {
        false
    }
    fn open(&mut self) -> Result<Format, SourceError> {
        Ok(Format::Video {
            fps: 8.0,
            width: 32,
            height: 24,
        })
    }
    fn read(&mut self) -> Result<Option<Data>, SourceError> {
        if self.next == self.fail_at {
            return Err(SourceError::Failed("cable pulled".into()));
        }
        let i = self.next;
        self.next += 1;
        Ok(Some(Data::Video(mbtd::source::VideoFrame {
            t_us: i * 125_000,
            frame: Arc::new(mbt_media::RgbFrame {
                width: 32,
                height: 24,
                data: vec![(i * 5 % 256) as u8; 32 * 24 * 3],
            }),
        })))
    }
}

#[test]
fn a_failed_camera_leaves_audio_only_windows() {
    let dir = temp_dir("fallback-fail");
    let clip = write_clip(&dir, "clip", 6.0, 48, 8);
    let mut p = build(&replay_config(&clip), Clock::start()).unwrap();
    // Frames 0..23 (0 to 2.875 s), then the camera fails.
    p.video = Some(Box::new(FailingCamera {
        next: 0,
        fail_at: 24,
    }));
    let (report, mem) = run_pipeline(p);
    let m: Vec<(bool, bool)> = mem
        .windows()
        .iter()
        .map(|w| (w.modalities.audio, w.modalities.video))
        .collect();
    // [2,4) still has 8 frames (enough: at least half of the 8 the model samples);
    // [3,5) and [4,6) have none: audio only, from the audio head.
    assert_eq!(
        m,
        vec![
            (true, true),
            (true, true),
            (true, true),
            (true, false),
            (true, false)
        ]
    );
    assert_eq!(report.stats.source_failures, 1);
    assert_eq!(report.stats.windows_audio_only, 2);
}

/// Wraps a backend and makes each batch take at least `delay`.
struct Slow(TractCpu, Duration);

impl Backend for Slow {
    fn name(&self) -> String {
        "slow".into()
    }
    fn metadata(&self) -> &mbt_core::metadata::ModelMetadata {
        self.0.metadata()
    }
    fn input_shapes(&self) -> ((usize, usize), (usize, usize)) {
        self.0.input_shapes()
    }
    fn max_batch(&self) -> usize {
        1
    }
    fn run(&mut self, batch: usize, video: &[f32], audio: &[f32]) -> Result<Logits, BackendError> {
        std::thread::sleep(self.1);
        self.0.run(batch, video, audio)
    }
}

#[test]
fn when_inference_falls_behind_the_oldest_windows_are_dropped() {
    let dir = temp_dir("drop");
    let clip = write_clip(&dir, "clip", 12.0, 96, 8);
    let mut p = build(&replay_config(&clip), Clock::start()).unwrap();
    // Live policy on an unpaced replay: 11 windows arrive at once for a queue of 2 in front
    // of a 150 ms inference.
    p.overflow = Overflow::DropOldest;
    p.queue = 2;
    let backend = TractCpu::from_bytes(crate::common::random_model_bytes(), "random", 1).unwrap();
    p.detector = Detector::new(Box::new(Slow(backend, Duration::from_millis(150)))).unwrap();
    let (report, mem) = run_pipeline(p);
    let s = &report.stats;
    assert_eq!(s.windows_cut, 11);
    assert!(s.windows_dropped > 0, "{s:?}");
    assert_eq!(
        s.windows_inferred + s.windows_dropped,
        s.windows_cut,
        "{s:?}"
    );
    let idx: Vec<u64> = mem.windows().iter().map(|w| w.index).collect();
    assert_eq!(idx.len() as u64, s.windows_inferred);
    assert!(idx.windows(2).all(|p| p[0] < p[1]), "in order: {idx:?}");
    assert_eq!(
        idx.last(),
        Some(&10),
        "the newest window is never the one dropped"
    );
}

#[test]
fn a_window_the_model_cannot_take_is_refused_naming_both_settings() {
    let dir = temp_dir("mismatch");
    let clip = write_clip(&dir, "clip", 3.0, 24, 8);
    let mut cfg = replay_config(&clip);
    cfg.window.length_s = 3.0;
    let e = format!("{:#}", build(&cfg, Clock::start()).err().unwrap());
    assert!(
        e.contains("window.length_s") && e.contains("audio.num_frames") && e.contains("1.945"),
        "{e}"
    );
    let mut cfg = replay_config(&clip);
    cfg.replay.fps = 2; // frames directory rate is ignored for Y4M; force via a frames dir below
    let frames = dir.join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    image::RgbImage::new(8, 8)
        .save(frames.join("0.png"))
        .unwrap();
    cfg.replay.video = Some(frames);
    let e = format!("{:#}", build(&cfg, Clock::start()).err().unwrap());
    assert!(
        e.contains("replay.fps") && e.contains("video.num_frames"),
        "{e}"
    );
    let mut cfg = replay_config(&clip);
    cfg.events
        .labels
        .insert("cat_meowing".into(), Default::default());
    let e = format!("{:#}", build(&cfg, Clock::start()).err().unwrap());
    assert!(e.contains("events.labels.cat_meowing"), "{e}");
}
