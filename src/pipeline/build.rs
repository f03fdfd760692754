//! [`build`]: the pipeline the configuration describes (model and backend, sources, sinks,
//! tuning controls, evidence, metrics, the web page), checked against the model's metadata
//! before anything runs.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, watch};

use super::{announce_of, MqttBridge, Pipeline};
use crate::backend;
use crate::clock::Clock;
use crate::config::Config;
use crate::detector::{check_model, Detector};
use crate::queue::Overflow;
use crate::sink::{Sink, StdoutSink};
use crate::source::alsa::AlsaSource;
use crate::source::replay::{self, AudioReplay, Pacer, VideoReplay};
use crate::source::synthetic::{SyntheticAudio, SyntheticVideo};
use crate::source::v4l2::{CameraRequest, CameraSource, PixelFormat, V4l2Device};
use crate::source::{Backoff, Source};
use crate::stats::Stats;
use crate::tuning::Controls;
use crate::window::WindowSpec;

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
        clock: clock.clone(),
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
            clock.clone(),
        ))),
        ("replay", Some(c)) => Some(Box::new(
            AudioReplay::new(&c.audio, cfg.audio.period_ms, pacer(cfg.replay.realtime))?
                .looped(cfg.replay.loops),
        )),
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
            clock.clone(),
        ))),
        ("replay", Some(c)) => {
            let v = VideoReplay::new(&c.video, c.fps, pacer(cfg.replay.realtime))?
                .looped(cfg.replay.loops);
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
            live.seed_marks(crate::marks::read(&crate::marks::path(store.dir())));
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
