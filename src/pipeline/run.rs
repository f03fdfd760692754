//! [`run`]: the pipeline at work. Source tasks, the windower (here, on the runtime), the
//! inference thread, the events task and the side tasks (metrics, web page, reloads, MQTT
//! tuning), and the shutdown that drains them in order.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, watch};

use super::mqtt::mqtt_bridge;
use super::{Pipeline, RunReport};
use crate::detector::{Detector, Scored, WindowMedia};
use crate::events::EventTracker;
use crate::evidence::EvidenceWriter;
use crate::publish::PipelineMetrics;
use crate::queue::WindowQueue;
use crate::sink::{Sink, WindowScores};
use crate::source::{supervise, Backoff, Modality, Source, SourceMsg};
use crate::stats::Stats;
use crate::window::{StreamState, Window, Windower};

/// What the inference thread hands the events task: a scored window, or the news that a
/// reloaded model scores the windows from here on.
enum Scoring {
    Window(Scored),
    Model {
        meta: Box<mbt_core::metadata::ModelMetadata>,
        backend: String,
    },
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
    if !events.is_empty() {
        for s in sinks.iter() {
            let what = format!("spool {}", s.name());
            match s.storage_error() {
                Some(e) => stats.set_storage_error(&what, e),
                None => stats.clear_storage_error(&what),
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
        if let Some(l) = m.take_listener() {
            match crate::web::serve_metrics(l, m.registry.clone(), metrics_stop_rx.clone()) {
                Ok(task) => metrics_tasks.push(task),
                Err(e) => tracing::warn!("metrics: endpoint not started: {e:#}"),
            }
        }
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
        let clock = p.clock.clone();
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
        let mut tracker = EventTracker::new(
            &eff.events,
            &meta.labels,
            &meta.model_version,
            p.clock.clone(),
        );
        let mut sinks = p.sinks;
        let mut evidence = p.evidence.map(|e| EvidenceWriter::new(e, stats.clone()));
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
                if let Some(step) = tracker.check_wall() {
                    Stats::inc(&stats.wall_clock_steps);
                    tracing::warn!(
                        "the wall clock was stepped by {:+.3} s (now {} ms Unix time); windows \
                         run on the monotonic clock and are unaffected, event times follow \
                         the wall clock from here on",
                        step.by_ms as f64 / 1000.0,
                        step.now_ms
                    );
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
