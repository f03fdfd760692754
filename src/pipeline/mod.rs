//! The daemon's pipeline: sources -> windower -> inference thread -> event tracker -> sinks.
//!
//! ```text
//!  audio source ─(blocking task)─ mpsc(32) ─┐
//!                                          ├─ windower (async task) ─ WindowQueue ─ inference thread ─ mpsc(16) ─ events task ─ sinks
//!  video source ─(blocking task)─ mpsc(32) ─┘   (one clock)          (drop oldest)  (tokenize, batch)           (tracker)
//! ```
//!
//! Why this shape: reads block (ALSA, V4L2), so each source gets a blocking task; inference is
//! seconds of CPU, so it gets its own thread and never stalls the runtime; everything between
//! stages is bounded, so memory is bounded. Live capture never waits for inference: the queue
//! before it drops the oldest window when full (counted). A replay that is not paced waits
//! instead, and the windower reads whichever stream is behind, so a fast replay cuts exactly
//! the windows a paced one would and buffers at most a window's worth of either stream.
//!
//! Shutdown (SIGINT/SIGTERM, or every source ended): the sources stop, the windows already
//! queued are still run, open events are ended, the sinks closed (spooled ones wait a bounded
//! time for their backlog, see [`crate::publish`]), and [`run`] returns the counters.
//!
//! Publishing hooks: with `[evidence]` on, the detector keeps each window's key frame and
//! audio and the events task writes them for the events that window opens or raises, before
//! the sinks see the event; with `[metrics]` on, the counters are mirrored into the registry
//! once a second and inference time is observed per batch.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, watch};

use crate::backend;
use crate::clock::{secs_to_us, Clock};
use crate::config::Config;
use crate::detector::{check_model, Detector, Scored, WindowMedia};
use crate::events::{EventTracker, LabelPeak};
use crate::publish::{EvidenceWriter, PipelineMetrics};
use crate::queue::{Overflow, WindowQueue};
use crate::sink::{Sink, StdoutSink, WindowScores};
use crate::source::alsa::AlsaSource;
use crate::source::replay::{self, AudioReplay, Pacer, VideoReplay};
use crate::source::synthetic::{SyntheticAudio, SyntheticVideo};
use crate::source::v4l2::{CameraRequest, CameraSource, PixelFormat, V4l2Device};
use crate::source::{supervise, Backoff, Modality, Source, SourceMsg};
use crate::stats::{Report, Stats};
use crate::tuning::{Change, Controls};
use crate::window::{StreamState, Window, WindowSpec, Windower};
use mbt_publish::mqtt::control::{Announce, Command, LabelControl};

/// Everything a run needs, built from the configuration by [`build`] (or by hand in tests and
/// embedding programs, with their own sources, backend and sinks).
pub struct Pipeline {
    pub clock: Clock,
    pub audio: Option<Box<dyn Source>>,
    pub video: Option<Box<dyn Source>>,
    pub detector: Detector,
    pub sinks: Vec<Box<dyn Sink>>,
    pub spec: WindowSpec,
    pub queue: usize,
    pub overflow: Overflow,
    /// Thresholds and switches in force (TOML + model + run-time changes), and their owner.
    pub controls: Arc<Controls>,
    pub backoff: Backoff,
    /// Evidence files per event (`[evidence]`); the detector must keep media for it.
    pub evidence: Option<Arc<mbt_publish::evidence::EvidenceStore>>,
    /// The metrics endpoint and series (`[metrics]`).
    pub metrics: Option<PipelineMetrics>,
    /// The web page, bound and not yet serving (`[web]`).
    pub web: Option<crate::web::Web>,
    /// The counters (shared with the tuning controls and the web page).
    pub stats: Arc<Stats>,
    /// The MQTT side of run-time tuning (with `[mqtt]` on).
    pub mqtt_bridge: Option<MqttBridge>,
    /// Reloading the model while running (SIGHUP, `model.watch_s`); `None`: never.
    pub reload: Option<Arc<crate::reload::ReloadSpec>>,
}

/// The daemon's end of the MQTT control link: what to announce, and the commands received.
pub struct MqttBridge {
    pub announce: watch::Sender<Announce>,
    pub commands: mpsc::Receiver<Command>,
}

/// What MQTT announces for the tuning in force.
pub fn announce_of(eff: &crate::tuning::Effective) -> Announce {
    Announce {
        labels: eff.labels.clone(),
        model_version: eff.model_version.clone(),
        controls: eff
            .states
            .iter()
            .map(|s| LabelControl {
                label: s.label.clone(),
                threshold: s.threshold,
                enabled: s.enabled,
            })
            .collect(),
    }
}

/// What a run did: its counters, plus what ran.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunReport {
    pub backend: String,
    pub model_version: String,
    pub seconds: f64,
    #[serde(flatten)]
    pub stats: Report,
    /// Each label's highest score over the run (see [`LabelPeak`]).
    pub peaks: Vec<LabelPeak>,
}

impl RunReport {
    /// When windows were scored but no event came out, a line saying how close each label
    /// came (highest first) and what to change: the answer to "why does it print nothing?".
    pub fn no_event_hint(&self) -> Option<String> {
        if self.stats.events > 0 || self.peaks.is_empty() {
            return None;
        }
        let mut peaks: Vec<&LabelPeak> = self.peaks.iter().collect();
        peaks.sort_by(|a, b| b.score.total_cmp(&a.score));
        let listed: Vec<String> = peaks
            .iter()
            .map(|p| {
                format!(
                    "{} {:.3} at {:.1}-{:.1} s (threshold {})",
                    p.label, p.score, p.window_s.0, p.window_s.1, p.threshold
                )
            })
            .collect();
        Some(format!(
            "no events: no label's score reached its threshold; highest scores: {}. \
             `mbt timeline` draws every score over a clip; `events.threshold` and \
             `events.labels.<label>.threshold` set the thresholds",
            listed.join(", ")
        ))
    }
}

/// Builds the pipeline the configuration describes: loads the model (once) with the chosen
/// backend, checks the configuration against its metadata, opens the replay files, and sets
/// up the sinks. Errors name the field or file.
pub fn build(cfg: &Config, clock: Clock) -> anyhow::Result<Pipeline> {
    let (backend, skipped) = backend::open(&cfg.model)
        .with_context(|| format!("model.backend = \"{}\"", cfg.model.backend))?;
    for s in &skipped {
        tracing::info!("backend skipped: {s}");
    }
    tracing::info!(
        "backend: {} ({}), model {} version {}",
        backend.name(),
        if cfg.model.backend == "auto" {
            "auto: the best one present"
        } else {
            "as configured"
        },
        cfg.model.path.display(),
        backend.metadata().model_version
    );
    let mut detector = Detector::new(backend)?;
    let meta = detector.metadata().clone();

    let realtime = cfg.is_realtime();
    let timeout = Duration::from_secs_f64(cfg.recovery.read_timeout_s);
    let pacer = |rt: bool| Pacer {
        clock,
        realtime: rt,
    };
    let syn = &cfg.synthetic;
    let needs_clip = cfg.audio.source == "replay" || cfg.video.source == "replay";
    let clip = if needs_clip {
        Some(replay::resolve(&cfg.replay)?)
    } else {
        None
    };
    let audio: Option<Box<dyn Source>> = match (cfg.audio.source.as_str(), &clip) {
        ("alsa", _) => Some(Box::new(AlsaSource::new(
            &cfg.audio.device,
            cfg.audio.rate,
            cfg.audio.channels,
            cfg.audio.period_ms,
            timeout,
            clock,
        ))),
        ("replay", Some(c)) => Some(Box::new(AudioReplay::new(
            &c.audio,
            cfg.audio.period_ms,
            pacer(cfg.replay.realtime),
        )?)),
        ("synthetic", _) => Some(Box::new(SyntheticAudio::new(
            syn.tone_hz,
            syn.burst_every_s,
            syn.duration_s,
            cfg.audio.period_ms,
            pacer(syn.realtime),
        ))),
        _ => None,
    };
    let mut video_fps = Some(cfg.video.fps as f64);
    let video: Option<Box<dyn Source>> = match (cfg.video.source.as_str(), &clip) {
        ("v4l2", _) => Some(Box::new(CameraSource::new(
            V4l2Device::new(&cfg.video.device),
            CameraRequest {
                width: cfg.video.width,
                height: cfg.video.height,
                fps: cfg.video.fps,
                format: match cfg.video.format.as_str() {
                    "mjpeg" => Some(PixelFormat::Mjpeg),
                    "yuyv" => Some(PixelFormat::Yuyv),
                    _ => None,
                },
            },
            timeout,
            clock,
        ))),
        ("replay", Some(c)) => {
            let v = VideoReplay::new(&c.video, c.fps, pacer(cfg.replay.realtime))?;
            video_fps = Some(v.fps());
            Some(Box::new(v))
        }
        ("synthetic", _) => Some(Box::new(SyntheticVideo::new(
            syn.width,
            syn.height,
            cfg.video.fps,
            syn.duration_s,
            pacer(syn.realtime),
        ))),
        _ => None,
    };
    check_model(cfg, &meta, video_fps)?;
    let stats = Arc::new(Stats::default());
    let controls = Arc::new(Controls::new(&cfg.events, &meta, stats.clone())?);
    let (mqtt_control, mqtt_bridge) = if cfg.mqtt.enabled {
        let (announce, announce_rx) = watch::channel(announce_of(&controls.current()));
        let (commands_tx, commands) = mpsc::channel(64);
        (
            Some(mbt_publish::mqtt::ControlLink {
                announce: announce_rx,
                commands: commands_tx,
            }),
            Some(MqttBridge { announce, commands }),
        )
    } else {
        (None, None)
    };

    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    if cfg.sink.stdout {
        sinks.push(Box::new(StdoutSink::new(cfg.sink.stdout_scores)));
    }
    let publishing =
        crate::publish::build(cfg, &meta.labels, &detector.backend_name(), mqtt_control)?;
    sinks.extend(publishing.sinks);
    if sinks.is_empty() {
        anyhow::bail!(
            "invalid setting `sink.stdout`: false with no [mqtt], [postcard] or [gpio] sink leaves none, so events would go nowhere"
        );
    }
    let web = if cfg.web.enabled {
        let live = web_live(cfg, &meta, &controls, &detector.backend_name())?;
        if let Some(store) = &publishing.evidence {
            live.seed_events(stored_events(store));
            live.close_stale();
            live.seed_marks(crate::web::marks::read(&crate::web::marks::path(
                store.dir(),
            )));
        }
        Some(crate::web::Web::bind(cfg, Arc::new(live))?)
    } else {
        None
    };
    // The web page shows the latest frame and the audio level: it needs the media too.
    detector.keep_media(publishing.evidence.is_some() || web.is_some());
    let reload = Some(Arc::new(crate::reload::ReloadSpec {
        cfg: cfg.clone(),
        video_fps,
        num_frames: meta.tokenizer.video.num_frames,
        keep_media: publishing.evidence.is_some() || web.is_some(),
    }));
    Ok(Pipeline {
        clock,
        audio,
        video,
        detector,
        sinks,
        spec: WindowSpec::from_config(&cfg.window, meta.tokenizer.video.num_frames, realtime),
        queue: cfg.window.queue,
        overflow: if realtime {
            Overflow::DropOldest
        } else {
            Overflow::Wait
        },
        controls,
        backoff: Backoff::new(
            Duration::from_secs_f64(cfg.recovery.backoff_initial_s),
            Duration::from_secs_f64(cfg.recovery.backoff_max_s),
        ),
        evidence: publishing.evidence,
        metrics: publishing.metrics,
        web,
        stats,
        mqtt_bridge,
        reload,
    })
}

/// The web page's live state for this configuration and model: thresholds as the event
/// tracker will apply them, the log-mel strip from the model's own tokenizer settings.
fn web_live(
    cfg: &Config,
    meta: &mbt_core::metadata::ModelMetadata,
    controls: &Controls,
    backend: &str,
) -> anyhow::Result<crate::web::Live> {
    let eff = controls.current();
    let thresholds = eff.thresholds();
    let source = |kind: &str, device: &str| crate::web::SourceInfo {
        kind: kind.to_string(),
        name: match kind {
            "alsa" | "v4l2" => device.to_string(),
            "replay" => cfg.replay.clip.display().to_string(),
            _ => String::new(),
        },
    };
    let info = crate::web::Info {
        backend: backend.to_string(),
        model_version: meta.model_version.clone(),
        labels: meta.labels.clone(),
        watch: thresholds.iter().map(|t| t * cfg.web.watch_ratio).collect(),
        thresholds,
        fires: eff.fires(),
        audio: source(&cfg.audio.source, &cfg.audio.device),
        video: source(&cfg.video.source, &cfg.video.device.display().to_string()),
        window_s: cfg.window.length_s,
        hop_s: cfg.window.hop_s,
    };
    let windows = (cfg.web.timeline_minutes * 60.0 / cfg.window.hop_s).ceil() as usize;
    let tokenizer = mbt_core::audio::AudioTokenizer::new(meta.tokenizer.audio.clone())
        .context("the model's audio tokenizer settings")?;
    Ok(crate::web::Live::new(
        info,
        crate::web::Limits {
            timeline_windows: windows.max(1),
            near_misses: 20,
            events: cfg.web.max_events,
            watch_ratio: cfg.web.watch_ratio,
        },
        Some(tokenizer),
    ))
}

/// The events the evidence store kept records of (a previous run's), oldest first.
fn stored_events(store: &mbt_publish::evidence::EvidenceStore) -> Vec<mbt_core::event::Event> {
    store
        .records(10_000)
        .into_iter()
        .filter_map(|(name, bytes)| match serde_json::from_slice(&bytes) {
            Ok(e) => Some(e),
            Err(err) => {
                tracing::debug!("evidence record {name} skipped: {err}");
                None
            }
        })
        .collect()
}

/// What the inference thread hands the events task: a scored window, or the news that a
/// reloaded model scores the windows from here on.
enum Scoring {
    Window(Scored),
    Model {
        meta: Box<mbt_core::metadata::ModelMetadata>,
        backend: String,
    },
}

/// Applies tuning commands from MQTT and keeps what MQTT announces in step with the tuning in
/// force (and the labels of the model running).
async fn mqtt_bridge(
    mut bridge: MqttBridge,
    controls: Arc<Controls>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tuning = controls.subscribe();
    loop {
        tokio::select! {
            changed = tuning.changed() => {
                if changed.is_err() {
                    return;
                }
                let eff = tuning.borrow_and_update().clone();
                bridge.announce.send_replace(announce_of(&eff));
            }
            cmd = bridge.commands.recv() => {
                let Some(cmd) = cmd else { return };
                let (label, change) = match cmd {
                    Command::Threshold { label, value } => (label, Change::Threshold(value)),
                    Command::Enabled { label, on } => (label, Change::Enabled(on)),
                    Command::Reset { label } => (label, Change::Reset),
                    Command::Invalid { topic, reason } => {
                        controls.rejected();
                        tracing::warn!("mqtt: command on {topic} ignored: {reason}");
                        continue;
                    }
                };
                if let Err(e) = controls.set(&label, change, "mqtt") {
                    tracing::warn!("mqtt: command for `{label}` ignored: {e}");
                }
            }
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

async fn deliver(
    sinks: &mut [Box<dyn Sink>],
    events: &[mbt_core::event::Event],
    stats: &Stats,
    metrics: Option<&PipelineMetrics>,
) {
    for e in events {
        Stats::inc(&stats.events);
        if let Some(m) = metrics {
            m.event(e);
        }
        for s in sinks.iter_mut() {
            if let Err(err) = s.deliver(e).await {
                Stats::inc(&stats.sink_errors);
                tracing::warn!("{err}");
            }
        }
    }
}

type SourceRx = Option<mpsc::Receiver<SourceMsg>>;

fn spawn_source(
    src: Option<Box<dyn Source>>,
    stats: &Arc<Stats>,
    stop: &Arc<AtomicBool>,
    backoff: &Backoff,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> SourceRx {
    let src = src?;
    let (tx, rx) = mpsc::channel(32);
    let (stats, stop, backoff) = (stats.clone(), stop.clone(), backoff.clone());
    tasks.push(tokio::task::spawn_blocking(move || {
        supervise(src, tx, stats, stop, backoff)
    }));
    Some(rx)
}

async fn recv(rx: &mut SourceRx) -> Option<SourceMsg> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

/// Runs until every source has ended or `shutdown` turns true; returns the counters.
pub async fn run(p: Pipeline, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<RunReport> {
    let started = std::time::Instant::now();
    let stats = p.stats.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let backend_name = p.detector.backend_name();
    let meta = p.detector.metadata().clone();
    let (has_audio, has_video) = (p.audio.is_some(), p.video.is_some());
    let p_controls = p.controls.clone();
    let mut source_tasks = Vec::new();
    let mut audio_rx = spawn_source(p.audio, &stats, &stop, &p.backoff, &mut source_tasks);
    let mut video_rx = spawn_source(p.video, &stats, &stop, &p.backoff, &mut source_tasks);

    // Metrics: the endpoint, and a ticker mirroring the counters into the registry.
    let (metrics_stop, metrics_stop_rx) = watch::channel(false);
    let mut metrics_tasks = Vec::new();
    let metrics = p.metrics.map(|mut m| {
        metrics_tasks.extend(m.serve(metrics_stop_rx.clone()));
        Arc::new(m)
    });
    let web_live = p.web.as_ref().map(|w| w.live.clone());
    let linger = p.web.as_ref().map(|w| w.linger).unwrap_or_default();
    if let Some(web) = p.web {
        let registry = metrics.as_ref().map(|m| m.registry.clone());
        match web.serve(
            p.evidence.clone(),
            registry,
            p.controls.clone(),
            metrics_stop_rx.clone(),
        ) {
            Ok(task) => metrics_tasks.push(task),
            Err(e) => tracing::warn!("web: not started: {e:#}"),
        }
    }
    if let Some(m) = &metrics {
        let (m, stats, mut stop) = (m.clone(), stats.clone(), metrics_stop_rx.clone());
        metrics_tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                m.mirror(&stats.snapshot());
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        }));
    }

    let queue: Arc<WindowQueue<Window>> = Arc::new(WindowQueue::new(p.queue, p.overflow));
    let (scored_tx, mut scored_rx) = mpsc::channel::<Scoring>(16);

    // Model reloads: a watcher loads and checks a new model off the inference thread and hands
    // it over; the inference thread swaps between batches.
    let (reload_tx, reload_rx) = std::sync::mpsc::channel::<Detector>();
    if let Some(spec) = p.reload.clone() {
        metrics_tasks.push(tokio::spawn(crate::reload::watch(
            spec,
            reload_tx,
            stats.clone(),
            meta.model_version.clone(),
            metrics_stop_rx.clone(),
        )));
    }
    // Tuning commands from MQTT, and what MQTT announces.
    if let Some(bridge) = p.mqtt_bridge {
        metrics_tasks.push(tokio::spawn(mqtt_bridge(
            bridge,
            p.controls.clone(),
            metrics_stop_rx.clone(),
        )));
    }

    // Inference on its own thread: the one place that burns CPU for long.
    let inference = {
        let (queue, stats, metrics) = (queue.clone(), stats.clone(), metrics.clone());
        let mut detector = p.detector;
        let clock = p.clock;
        std::thread::Builder::new()
            .name("mbtd-inference".into())
            .spawn(move || {
                let mut max = detector.max_batch();
                while let Some(batch) = queue.pop_batch(max) {
                    // A reloaded model takes over here: the windows of this batch (and every
                    // later one) run on it; none is dropped or run twice.
                    if let Some(next) = reload_rx.try_iter().last() {
                        detector = next;
                        max = detector.max_batch();
                        let msg = Scoring::Model {
                            meta: Box::new(detector.metadata().clone()),
                            backend: detector.backend_name(),
                        };
                        if scored_tx.blocking_send(msg).is_err() {
                            return;
                        }
                    }
                    let n = batch.len();
                    let t0 = std::time::Instant::now();
                    let result = detector.run(batch, &stats);
                    if let Some(m) = &metrics {
                        m.inference(t0.elapsed());
                    }
                    match result {
                        Ok(scored) => {
                            let ends: Vec<u64> = scored.iter().map(|s| s.end_us).collect();
                            stats.record_batch(
                                t0.elapsed().as_micros() as u64,
                                scored.len(),
                                clock.now_us(),
                                &ends,
                            );
                            for s in scored {
                                if scored_tx.blocking_send(Scoring::Window(s)).is_err() {
                                    return;
                                }
                            }
                        }
                        Err(e) => {
                            Stats::add(&stats.windows_failed, n as u64);
                            tracing::error!("inference failed on {n} window(s): {e}");
                        }
                    }
                }
            })
            .context("cannot start the inference thread")?
    };

    // Events: tracker + sinks, on the runtime (sinks are async I/O).
    let events_task = {
        let stats = stats.clone();
        let controls = p.controls.clone();
        let mut tuning = controls.subscribe();
        let eff = tuning.borrow_and_update().clone();
        let mut labels = meta.labels.clone();
        let mut tracker =
            EventTracker::new(&eff.events, &meta.labels, &meta.model_version, p.clock);
        let mut sinks = p.sinks;
        let mut evidence = p.evidence.map(EvidenceWriter::new);
        let metrics = metrics.clone();
        let web_live = web_live.clone();
        tokio::spawn(async move {
            while let Some(msg) = scored_rx.recv().await {
                let mut s = match msg {
                    Scoring::Window(s) => s,
                    Scoring::Model { meta, backend } => {
                        // Open events end under the old version; the new labels take over.
                        controls.model_changed(&meta);
                        let eff = tuning.borrow_and_update().clone();
                        let mut events =
                            tracker.switch_model(&eff.events, &meta.labels, &meta.model_version);
                        labels = meta.labels.clone();
                        if let Some(ev) = evidence.as_mut() {
                            ev.write(&mut events, &WindowMedia::default()).await;
                        }
                        if let Some(l) = &web_live {
                            l.seed_events(events.clone());
                            l.model(&eff, &backend);
                        }
                        deliver(&mut sinks, &events, &stats, metrics.as_deref()).await;
                        tracing::info!(
                            "model {} ({backend}) runs from the next window; labels: {}",
                            meta.model_version,
                            meta.labels.join(", ")
                        );
                        continue;
                    }
                };
                if tuning.has_changed().unwrap_or(false) {
                    let eff = tuning.borrow_and_update().clone();
                    let mut ended = tracker.retune(&eff.events);
                    if let Some(ev) = evidence.as_mut() {
                        ev.write(&mut ended, &WindowMedia::default()).await;
                    }
                    if let Some(l) = &web_live {
                        l.tuning(&eff);
                    }
                    deliver(&mut sinks, &ended, &stats, metrics.as_deref()).await;
                }
                let ws = WindowScores::new(&s, &labels);
                for sink in sinks.iter_mut() {
                    if let Err(err) = sink.scores(&ws).await {
                        Stats::inc(&stats.sink_errors);
                        tracing::warn!("{err}");
                    }
                }
                let mut events = tracker.observe(&s);
                let media = std::mem::take(&mut s.media);
                if let Some(ev) = evidence.as_mut() {
                    ev.write(&mut events, &media).await;
                }
                if let Some(m) = &metrics {
                    m.scores(&ws);
                }
                if let Some(l) = &web_live {
                    l.window(&ws, &media, &stats.snapshot(), &events);
                }
                deliver(&mut sinks, &events, &stats, metrics.as_deref()).await;
            }
            let peaks = tracker.peaks();
            let mut events = tracker.finish();
            if let Some(ev) = evidence.as_mut() {
                ev.write(&mut events, &WindowMedia::default()).await;
            }
            if let Some(l) = &web_live {
                l.seed_events(events.clone());
            }
            deliver(&mut sinks, &events, &stats, metrics.as_deref()).await;
            for s in sinks.iter_mut() {
                if let Err(err) = s.close().await {
                    Stats::inc(&stats.sink_errors);
                    tracing::warn!("{err}");
                }
            }
            peaks
        })
    };

    // The windower, here: merges the streams on the clock and feeds the queue.
    let live = p.spec.stall_us.is_some();
    let mut windower = Windower::new(p.spec, has_audio, has_video, stats.clone());
    let mut log_every = tokio::time::interval(Duration::from_secs(60));
    log_every.tick().await;
    let mut interrupted = *shutdown.borrow();
    let mut shutdown_open = true;
    while !interrupted && (audio_rx.is_some() || video_rx.is_some()) {
        let read_audio = audio_rx.is_some() && (live || windower.may_read(Modality::Audio));
        let read_video = video_rx.is_some() && (live || windower.may_read(Modality::Video));
        let msg = tokio::select! {
            biased;
            changed = shutdown.changed(), if shutdown_open => {
                match changed {
                    Ok(()) => interrupted = *shutdown.borrow(),
                    // Nobody can ask for shutdown any more: run until the sources end.
                    Err(_) => shutdown_open = false,
                }
                continue;
            }
            m = recv(&mut audio_rx), if read_audio => (Modality::Audio, m),
            m = recv(&mut video_rx), if read_video => (Modality::Video, m),
            _ = log_every.tick(), if live => {
                tracing::info!("{}", serde_json::to_string(&stats.snapshot()).unwrap_or_default());
                continue;
            }
        };
        let windows = match msg {
            (_, Some(m)) => windower.push(m),
            (Modality::Audio, None) => {
                audio_rx = None;
                windower.push(SourceMsg::Ended(Modality::Audio))
            }
            (Modality::Video, None) => {
                video_rx = None;
                windower.push(SourceMsg::Ended(Modality::Video))
            }
        };
        if let Some(m) = &metrics {
            for (modality, present) in [(Modality::Audio, has_audio), (Modality::Video, has_video)]
            {
                if present {
                    m.source(modality, windower.state(modality) == StreamState::Up);
                }
            }
        }
        if let Some(l) = &web_live {
            l.source(true, windower.state(Modality::Audio));
            l.source(false, windower.state(Modality::Video));
        }
        for w in windows {
            let dropped = queue.push(w).await;
            if dropped > 0 {
                Stats::add(&stats.windows_dropped, dropped as u64);
                tracing::debug!("inference is behind: dropped the oldest window");
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    // Dropping the receivers unblocks sources waiting to send.
    drop(audio_rx);
    drop(video_rx);
    if interrupted {
        tracing::info!("shutting down: finishing queued windows, ending open events");
    } else {
        for w in windower.finish() {
            let dropped = queue.push(w).await;
            Stats::add(&stats.windows_dropped, dropped as u64);
        }
    }
    queue.close();
    let joined = tokio::task::spawn_blocking(move || inference.join()).await;
    if !matches!(joined, Ok(Ok(()))) {
        tracing::error!("the inference thread panicked");
    }
    let peaks = events_task.await.unwrap_or_else(|_| {
        tracing::error!("the events task panicked");
        Vec::new()
    });
    if let Some(m) = &metrics {
        m.mirror(&stats.snapshot());
    }
    if !interrupted && !linger.is_zero() {
        tracing::info!(
            "web: the sources ended; the page stays up for {:.0} s (web.linger_s; SIGINT ends it)",
            linger.as_secs_f64()
        );
        tokio::select! {
            _ = tokio::time::sleep(linger) => {}
            _ = shutdown.wait_for(|s| *s) => {}
        }
    }
    let _ = metrics_stop.send(true);
    for t in metrics_tasks {
        let _ = t.await;
    }
    for t in source_tasks {
        // A source blocked in a device read returns within its read timeout.
        if tokio::time::timeout(Duration::from_secs(5), t)
            .await
            .is_err()
        {
            tracing::warn!("a source did not stop within 5 s");
        }
    }
    let now = p_controls.current();
    Ok(RunReport {
        backend: backend_name,
        model_version: now.model_version.clone(),
        seconds: started.elapsed().as_secs_f64(),
        stats: stats.snapshot(),
        peaks,
    })
}

/// Seconds to microseconds, for tests that build a [`WindowSpec`] by hand.
pub fn us(s: f64) -> crate::clock::Micros {
    secs_to_us(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(events: u64, scores: &[(&str, f32)]) -> RunReport {
        RunReport {
            backend: "tract-cpu".into(),
            model_version: "m".into(),
            seconds: 1.0,
            stats: Report {
                events,
                ..Default::default()
            },
            peaks: scores
                .iter()
                .enumerate()
                .map(|(k, (label, score))| LabelPeak {
                    label: label.to_string(),
                    score: *score,
                    window_s: (k as f64, k as f64 + 2.0),
                    threshold: 0.5,
                })
                .collect(),
        }
    }

    #[test]
    fn the_no_event_hint_lists_labels_highest_first_and_only_when_nothing_fired() {
        let hint = report(0, &[("glass", 0.2), ("door", 0.4375)])
            .no_event_hint()
            .unwrap_or_else(|| panic!("a run that scored windows and fired nothing gets a hint"));
        assert!(
            hint.contains(
                "highest scores: door 0.438 at 1.0-3.0 s (threshold 0.5), glass 0.200 at 0.0-2.0 s"
            ),
            "{hint}"
        );
        assert_eq!(report(1, &[("glass", 0.9)]).no_event_hint(), None);
        // Nothing scored (a model that never ran): nothing to say about thresholds.
        assert_eq!(report(0, &[]).no_event_hint(), None);
    }
}

/// The model's own per-label thresholds (`mbt.thresholds`, tuned on its validation split) for
/// every label the user's config gives no threshold of its own; a release above such a
/// threshold is lowered to it (hysteresis needs release <= threshold).
pub fn with_model_thresholds(
    cfg: &crate::config::EventsConfig,
    model: &std::collections::BTreeMap<String, f32>,
) -> crate::config::EventsConfig {
    let mut out = cfg.clone();
    for (label, &t) in model {
        let o = out.labels.entry(label.clone()).or_default();
        if o.threshold.is_none() {
            o.threshold = Some(t);
            let release = o.release.unwrap_or(cfg.release);
            if release > t {
                o.release = Some(t);
            }
        }
    }
    out
}

#[cfg(test)]
mod model_threshold_tests {
    use super::*;

    #[test]
    fn model_thresholds_fill_in_where_the_user_set_none() {
        let mut cfg = crate::config::EventsConfig::default();
        cfg.labels.insert(
            "dog".into(),
            crate::config::LabelOverride {
                threshold: Some(0.9),
                ..Default::default()
            },
        );
        let model = [("dog".to_string(), 0.4), ("glass".to_string(), 0.25)]
            .into_iter()
            .collect();
        let e = with_model_thresholds(&cfg, &model);
        assert_eq!(e.labels["dog"].threshold, Some(0.9));
        assert_eq!(e.labels["glass"].threshold, Some(0.25));
        // Default release 0.3 is above 0.25: lowered to the threshold.
        assert_eq!(e.labels["glass"].release, Some(0.25));
        assert!(!e.labels.contains_key("cat"));
    }
}
