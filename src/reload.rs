//! A new model without a restart: on SIGHUP, or when `model.path` changes (checked every
//! `model.watch_s`), the watcher loads the file with the configured backend, checks it against
//! the configuration exactly as at start ([`check_model`]) and hands it to the inference
//! thread, which swaps between two batches: every window is scored, by the old model or the
//! new one, none twice and none dropped for the reload (loading happens here, off the
//! inference thread, so inference does not pause). The events task then ends the open events
//! under the old version and goes on with the new labels ([`crate::events::EventTracker::switch_model`]),
//! and MQTT announces them.
//!
//! A model that fails to load, or does not fit (another window length, frame count or labels
//! the configuration names that it lacks), is refused: logged with the reason, counted
//! (`model_reload_failures`, `mbtd_model_reloads_total{result="refused"}`), and the running
//! model stays. A file is taken once it looked the same (size, modification time, inode) on
//! two checks in a row, so a copy still being written is not loaded half-way; replacing the
//! file by a rename (`mv new.onnx edge.onnx`, what `mbt train --init` users are told to do) is
//! the safe way.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use tokio::sync::watch;

use crate::backend;
use crate::config::Config;
use crate::detector::{check_model, Detector};
use crate::events::NO_EVENT_LABEL;
use crate::stats::Stats;

/// What a reload needs to know about the running daemon.
#[derive(Debug, Clone)]
pub struct ReloadSpec {
    pub cfg: Config,
    /// The video source's frame rate (`None` without video).
    pub video_fps: Option<f64>,
    /// Frames per window the windower cuts (fixed at start).
    pub num_frames: usize,
    /// Whether windows keep their media (evidence, web page).
    pub keep_media: bool,
}

/// What the model file looked like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

fn fingerprint(p: &Path) -> Option<Fingerprint> {
    let m = std::fs::metadata(p).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let inode = 0;
    Some(Fingerprint {
        len: m.len(),
        modified: m.modified().ok(),
        inode,
    })
}

/// Loads `model.path` with the configured backend and checks that it fits the running
/// configuration (blocking: seconds for a large model).
pub fn load(spec: &ReloadSpec) -> anyhow::Result<Detector> {
    let cfg = &spec.cfg;
    let (backend, _) = backend::open(&cfg.model)
        .with_context(|| format!("model.backend = \"{}\"", cfg.model.backend))?;
    let mut detector = Detector::new(backend)?;
    let meta = detector.metadata().clone();
    check_model(cfg, &meta, spec.video_fps)?;
    if meta.tokenizer.video.num_frames != spec.num_frames {
        anyhow::bail!(
            "{}: samples {} frames per window, the running windows hold {} (a change of the video input needs a restart)",
            cfg.model.path.display(),
            meta.tokenizer.video.num_frames,
            spec.num_frames
        );
    }
    if !meta.labels.iter().any(|l| l != NO_EVENT_LABEL) {
        anyhow::bail!("{}: has no label that can fire", cfg.model.path.display());
    }
    detector.keep_media(spec.keep_media);
    Ok(detector)
}

/// Watches for SIGHUP and file changes until `stop`; each loaded model goes to `tx` (the
/// inference thread). `running` is the version now running (for the log).
pub async fn watch(
    spec: Arc<ReloadSpec>,
    tx: std::sync::mpsc::Sender<Detector>,
    stats: Arc<Stats>,
    mut running: String,
    mut stop: watch::Receiver<bool>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let path = spec.cfg.model.path.clone();
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(
                "cannot listen for SIGHUP ({e}): the model reloads only when its file changes"
            );
            None
        }
    };
    let every =
        (spec.cfg.model.watch_s > 0.0).then(|| Duration::from_secs_f64(spec.cfg.model.watch_s));
    let mut tick = tokio::time::interval(every.unwrap_or(Duration::from_secs(3600)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut loaded = fingerprint(&path);
    let mut seen = loaded;
    loop {
        let why = tokio::select! {
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => "SIGHUP",
            _ = tick.tick(), if every.is_some() => {
                let now = fingerprint(&path);
                let stable = now.is_some() && now == seen;
                seen = now;
                if !(stable && now != loaded) {
                    continue;
                }
                "the file changed"
            }
            _ = stop.wait_for(|s| *s) => return,
        };
        loaded = fingerprint(&path);
        seen = loaded;
        tracing::info!("model reload ({why}): loading {}", path.display());
        let s = spec.clone();
        let t0 = std::time::Instant::now();
        let result = tokio::task::spawn_blocking(move || load(&s))
            .await
            .map_err(|e| anyhow::anyhow!("the loading task failed: {e}"))
            .and_then(|r| r);
        match result {
            Ok(detector) => {
                let version = detector.metadata().model_version.clone();
                tracing::info!(
                    "model reload ({why}): {} loaded in {:.1} s (was {running}); it takes over at the next window",
                    version,
                    t0.elapsed().as_secs_f64()
                );
                running = version;
                Stats::inc(&stats.model_reloads);
                if tx.send(detector).is_err() {
                    return;
                }
            }
            Err(e) => {
                Stats::inc(&stats.model_reload_failures);
                tracing::warn!("model reload ({why}) refused: {e:#}; {running} keeps running");
            }
        }
    }
}
