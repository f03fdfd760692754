//! The daemon's side of publishing: `mbt-publish`'s sinks behind the pipeline's [`Sink`]
//! trait, the metrics endpoint fed from the pipeline's counters, and evidence files per event.
//!
//! `mbt-publish` holds the parts that are hard to get right on their own (the spool, MQTT
//! sessions, framing, pins); this module only adapts them, so the pipeline knows one trait:
//!
//! * **Spooled sinks** (MQTT, `postcard.unix`): `deliver` returns once the event is in the
//!   on-disk spool; a background task delivers it when the peer is there. A broker that is
//!   away therefore never stalls detection, and an event is lost only by the spool's documented
//!   `when_full` policy (counted). At shutdown each waits up to `sink.shutdown_flush_s` for its
//!   backlog; what is left stays on disk and goes out after the next start.
//! * **Best-effort sinks** (`postcard.udp`, GPIO): nothing to keep (UDP has no delivery
//!   confirmation; a pin pulse an hour late would be wrong, not late).
//! * **Metrics** ([`PipelineMetrics`]): the pipeline's [`Stats`] are the one source of truth;
//!   a ticker mirrors them into the registry once a second, inference time is observed per
//!   batch, events per label and kind as they are delivered.
//! * **Evidence** ([`crate::evidence::EvidenceWriter`]): when a window opens or raises an event, its key frame
//!   and audio are written as `<id>.jpg` / `<id>.wav` (named by the event id) before the event
//!   reaches any sink, so the MQTT snapshot publisher finds the JPEG.
//!
//! Where evidence goes when the default directory is not writable (a daemon started by hand
//! as a user without a writable `$HOME`, say): `$TMPDIR/mbtd-<uid>/evidence`, with a warning;
//! if that fails too, evidence is off (with a warning) and detection goes on. An `evidence.dir`
//! set explicitly is never replaced: if it is not writable, `mbtd` stops at start naming it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use mbt_core::event::{Event, EventKind};
use mbt_publish::backoff::Backoff;
use mbt_publish::evidence::EvidenceStore;
use mbt_publish::gpio::{GpioSink, RppalPins};
use mbt_publish::metrics::{Counter, Gauge, Histogram, Registry, SECONDS_BUCKETS};
use mbt_publish::mqtt::{MqttContext, MqttSink};
use mbt_publish::postcard_sink::{UdpFrameSink, UnixFrameSink};
use mbt_publish::spool::SharedSpool;
use mbt_publish::{DeliveryError, SinkMetrics};

use crate::config::Config;
use crate::sink::{Sink, SinkError, SinkFuture};
use crate::source::Modality;
use crate::stats::Report;

/// What [`build`] sets up from the configuration.
#[derive(Default)]
pub struct Publishing {
    pub sinks: Vec<Box<dyn Sink>>,
    pub evidence: Option<Arc<EvidenceStore>>,
    pub metrics: Option<PipelineMetrics>,
}

fn sink_error(e: DeliveryError) -> SinkError {
    SinkError {
        sink: e.sink,
        reason: e.reason,
        retryable: e.retryable,
    }
}

/// Sets up evidence, metrics and the publishing sinks the configuration turns on. Spooled
/// sinks start their delivery tasks here, so this needs a tokio runtime when MQTT or
/// `postcard.unix` is on. Errors name the field.
pub fn build(
    cfg: &Config,
    labels: &[String],
    backend: &str,
    control: Option<mbt_publish::mqtt::ControlLink>,
) -> anyhow::Result<Publishing> {
    let mut out = Publishing {
        evidence: open_evidence(cfg)?,
        ..Publishing::default()
    };
    let registry = if cfg.metrics.enabled {
        let m = PipelineMetrics::bind(cfg, backend)?;
        let r = m.registry.clone();
        out.metrics = Some(m);
        Some(r)
    } else {
        None
    };
    let sink_metrics = |name: &str| -> anyhow::Result<SinkMetrics> {
        match &registry {
            Some(r) => SinkMetrics::register(r, name).context("registering the sink's metrics"),
            None => Ok(SinkMetrics::detached()),
        }
    };
    let spooled = cfg.mqtt.enabled || cfg.postcard.unix.is_some();
    if spooled && tokio::runtime::Handle::try_current().is_err() {
        anyhow::bail!(
            "internal: the MQTT and postcard.unix sinks must be started on a tokio runtime"
        );
    }
    let flush = Duration::from_secs_f64(cfg.sink.shutdown_flush_s);
    if cfg.mqtt.enabled {
        let ctx = MqttContext {
            labels: labels.to_vec(),
            evidence_dir: out.evidence.as_ref().map(|e| e.dir().to_path_buf()),
            sw_version: env!("CARGO_PKG_VERSION").into(),
            control,
        };
        let spool = cfg.spool.options_for("mqtt");
        let dir = spool.dir.clone();
        let sink = MqttSink::start(&cfg.mqtt, spool, ctx, sink_metrics("mqtt")?)
            .with_context(|| format!("mqtt (its spool is {}, see spool.dir)", dir.display()))?;
        tracing::info!(
            "mqtt: publishing to {} as `{}` under {}/{} (spool {})",
            cfg.mqtt.url,
            cfg.mqtt.client_id(),
            cfg.mqtt.topic_prefix,
            cfg.mqtt.device,
            dir.display()
        );
        out.sinks.push(Box::new(MqttAdapter {
            sink: Some(sink),
            flush,
        }));
    }
    if let Some(path) = &cfg.postcard.unix {
        let spool = cfg.spool.options_for("postcard-unix");
        let dir = spool.dir.clone();
        let sink = UnixFrameSink::start(
            path.clone(),
            spool,
            Backoff::new(Duration::from_millis(200), Duration::from_secs(10)),
            sink_metrics("postcard-unix")?,
        )
        .with_context(|| {
            format!(
                "postcard.unix (its spool is {}, see spool.dir)",
                dir.display()
            )
        })?;
        tracing::info!(
            "postcard: frames to {} (spool {})",
            path.display(),
            dir.display()
        );
        out.sinks.push(Box::new(UnixAdapter {
            sink: Some(sink),
            flush,
        }));
    }
    if let Some(addr) = cfg.postcard.udp_addr()? {
        tracing::info!("postcard: datagrams to {addr} (best effort, not spooled)");
        out.sinks.push(Box::new(UdpAdapter {
            to: addr,
            sock: None,
        }));
    }
    if !cfg.gpio.pins.is_empty() {
        let sink =
            GpioSink::new(&cfg.gpio, labels, &mut RppalPins::default()).context("gpio.pins")?;
        tracing::info!("gpio: {} pin(s)", cfg.gpio.pins.len());
        out.sinks.push(Box::new(GpioAdapter { sink }));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------- evidence

/// Whether files can be created in `dir` (creating it): the store itself only lists it.
fn writable(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let probe = dir.join(format!(".mbtd-probe-{}", std::process::id()));
    std::fs::write(&probe, b"")?;
    std::fs::remove_file(&probe)
}

/// The fallback when the default evidence directory cannot be written.
fn fallback_evidence_dir() -> PathBuf {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    std::env::temp_dir()
        .join(format!("mbtd-{uid}"))
        .join("evidence")
}

fn open_evidence(cfg: &Config) -> anyhow::Result<Option<Arc<EvidenceStore>>> {
    if !cfg.evidence.enabled {
        return Ok(None);
    }
    let mut ev = cfg.evidence.clone();
    let dir = ev.dir();
    if let Err(e) = writable(&dir) {
        if cfg.evidence.dir.is_some() {
            anyhow::bail!(
                "invalid setting `evidence.dir`: {} is not writable ({e}); fix it, or set evidence.enabled = false",
                dir.display()
            );
        }
        let alt = fallback_evidence_dir();
        if let Err(e2) = writable(&alt) {
            tracing::warn!(
                "evidence off: the default directory {} is not writable ({e}), nor is {} ({e2}); set evidence.dir",
                dir.display(),
                alt.display()
            );
            return Ok(None);
        }
        tracing::warn!(
            "evidence: the default directory {} is not writable ({e}); using {} instead (set evidence.dir to choose)",
            dir.display(),
            alt.display()
        );
        ev.dir = Some(alt);
    }
    // Events the user marked for training (the web page's labels.csv) are deleted last.
    let marked = crate::marks::read(&crate::marks::path(&ev.dir()));
    let store = EvidenceStore::open_pinned(&ev, marked.into_keys()).context("evidence.dir")?;
    tracing::info!(
        "evidence: key frame and audio per event in {} (at most {} bytes)",
        store.dir().display(),
        ev.max_bytes
    );
    Ok(Some(Arc::new(store)))
}

// ----------------------------------------------------------------------------------- metrics

/// The pipeline's series in the metrics registry (names as `mbt_publish::metrics` lists them).
pub struct PipelineMetrics {
    pub registry: Registry,
    listener: Option<std::net::TcpListener>,
    windows_cut: Counter,
    windows_inferred: Counter,
    dropped_behind: Counter,
    dropped_failed: Counter,
    dropped_empty: Counter,
    frames_missing: Counter,
    frames_corrupt: Counter,
    source_failures: Counter,
    sink_errors: Counter,
    reloads_ok: Counter,
    reloads_refused: Counter,
    tuning_applied: Counter,
    tuning_rejected: Counter,
    inference: Histogram,
    audio_up: Gauge,
    video_up: Gauge,
}

impl PipelineMetrics {
    /// Registers the series and binds `metrics.listen` now, so a port in use stops the daemon
    /// at start, naming the field.
    pub fn bind(cfg: &Config, backend: &str) -> anyhow::Result<Self> {
        let addr = cfg.metrics.addr()?;
        let listener = std::net::TcpListener::bind(addr).with_context(|| {
            format!("invalid setting `metrics.listen`: cannot listen on {addr}")
        })?;
        listener
            .set_nonblocking(true)
            .context("metrics.listen: setting the socket non-blocking")?;
        let r = Registry::new();
        let dropped = |reason: &str, help: &str| {
            r.counter("mbtd_dropped_windows_total", help, &[("reason", reason)])
        };
        let m = PipelineMetrics {
            windows_cut: r.counter(
                "mbtd_windows_total",
                "Windows cut from the sources (aligned audio + video).",
                &[],
            )?,
            windows_inferred: r.counter(
                "mbtd_windows_inferred_total",
                "Windows the model ran on.",
                &[],
            )?,
            dropped_behind: dropped(
                "behind",
                "Windows not run: behind = inference fell behind (oldest dropped), failed = tokenization or inference failed, empty = neither stream present.",
            )?,
            dropped_failed: dropped("failed", "")?,
            dropped_empty: dropped("empty", "")?,
            frames_missing: r.counter(
                "mbtd_frames_missing_total",
                "Video frames missing on the clock (gaps).",
                &[],
            )?,
            frames_corrupt: r.counter(
                "mbtd_frames_corrupt_total",
                "Video frames that could not be decoded (skipped).",
                &[],
            )?,
            source_failures: r.counter(
                "mbtd_source_failures_total",
                "Times a source failed (it is reopened with backoff).",
                &[],
            )?,
            sink_errors: r.counter(
                "mbtd_sink_errors_total",
                "Deliveries a sink refused (a full spool with refuse_newest, a pin error, ...).",
                &[],
            )?,
            reloads_ok: r.counter(
                "mbtd_model_reloads_total",
                "Model reloads while running: ok = the new model runs, refused = it failed to load or did not fit (the old one kept).",
                &[("result", "ok")],
            )?,
            reloads_refused: r.counter("mbtd_model_reloads_total", "", &[("result", "refused")])?,
            tuning_applied: r.counter(
                "mbtd_tuning_changes_total",
                "Run-time threshold / on-off changes (web page, MQTT): applied, or rejected (unknown label, bad value, malformed command).",
                &[("result", "applied")],
            )?,
            tuning_rejected: r.counter("mbtd_tuning_changes_total", "", &[("result", "rejected")])?,
            inference: r.histogram(
                "mbtd_inference_seconds",
                "Time per inference batch (tokenize + run).",
                &[],
                SECONDS_BUCKETS,
            )?,
            audio_up: r.gauge(
                "mbtd_source_up",
                "1 while the source delivers, 0 while it is down or ended (absent: not configured).",
                &[("source", "audio")],
            )?,
            video_up: r.gauge("mbtd_source_up", "", &[("source", "video")])?,
            listener: Some(listener),
            registry: r.clone(),
        };
        r.gauge(
            "mbtd_backend_info",
            "The inference backend that runs (value 1).",
            &[("backend", backend)],
        )?
        .set(1.0);
        tracing::info!("metrics: http://{addr}/metrics");
        Ok(m)
    }

    /// Hands over the bound `metrics.listen` socket (once; later calls give `None`): the
    /// pipeline serves it with the web module's Prometheus handler until shutdown. With
    /// `[web]` on, the page serves the same `/metrics` too.
    pub fn take_listener(&mut self) -> Option<std::net::TcpListener> {
        self.listener.take()
    }

    /// Each label's latest score per head (`mbtd_score{label,head}`; `head` is fused, audio
    /// or video): what a dashboard needs to plot next to the thresholds.
    pub fn scores(&self, ws: &crate::sink::WindowScores) {
        let heads = [
            ("fused", Some(&ws.fused)),
            ("audio", ws.audio.as_ref()),
            ("video", ws.video.as_ref()),
        ];
        for (head, scores) in heads {
            for (label, p) in scores.into_iter().flatten() {
                match self.registry.gauge(
                    "mbtd_score",
                    "The latest window's score per label and head (fused, audio, video).",
                    &[("label", label.as_str()), ("head", head)],
                ) {
                    Ok(g) => g.set(*p as f64),
                    Err(err) => tracing::debug!("metrics: {err}"),
                }
            }
        }
    }

    /// Mirrors the pipeline's counters (they only go up, as counters must).
    pub fn mirror(&self, r: &Report) {
        self.windows_cut.set_at_least(r.windows_cut);
        self.windows_inferred.set_at_least(r.windows_inferred);
        self.dropped_behind.set_at_least(r.windows_dropped);
        self.dropped_failed.set_at_least(r.windows_failed);
        self.dropped_empty.set_at_least(r.windows_empty);
        self.frames_missing.set_at_least(r.frames_missing);
        self.frames_corrupt.set_at_least(r.frames_corrupt);
        self.source_failures.set_at_least(r.source_failures);
        self.sink_errors.set_at_least(r.sink_errors);
        self.reloads_ok.set_at_least(r.model_reloads);
        self.reloads_refused.set_at_least(r.model_reload_failures);
        self.tuning_applied.set_at_least(r.tuning_changes);
        self.tuning_rejected.set_at_least(r.tuning_rejected);
    }

    pub fn inference(&self, d: Duration) {
        self.inference.observe(d.as_secs_f64());
    }

    pub fn source(&self, m: Modality, up: bool) {
        let g = match m {
            Modality::Audio => &self.audio_up,
            Modality::Video => &self.video_up,
        };
        g.set(if up { 1.0 } else { 0.0 });
    }

    pub fn event(&self, e: &Event) {
        let kind = match e.kind {
            EventKind::New => "new",
            EventKind::Update => "update",
            EventKind::End => "end",
        };
        match self.registry.counter(
            "mbtd_events_total",
            "Events delivered to the sinks, by label and kind.",
            &[("label", e.label.as_str()), ("kind", kind)],
        ) {
            Ok(c) => c.inc(),
            Err(err) => tracing::debug!("metrics: {err}"),
        }
    }
}

// ------------------------------------------------------------------------------------- sinks

/// What a spooled sink answers once it has been closed.
fn shut_down(sink: &str) -> SinkError {
    SinkError {
        sink: sink.into(),
        reason: "already shut down".into(),
        retryable: false,
    }
}

/// Waits for a spooled sink's `shutdown` (bounded by the sink itself); what is still pending
/// then stays in its spool, delivered after the next start, and the error says so.
async fn close_spooled(
    sink: &str,
    spool: SharedSpool,
    shutdown: impl std::future::Future<Output = ()>,
    untaken: &str,
) -> Result<(), SinkError> {
    shutdown.await;
    match spool.stats().pending_records {
        0 => Ok(()),
        n => Err(SinkError {
            sink: sink.into(),
            reason: format!(
                "{n} event(s) {untaken} at shutdown: kept in the spool, delivered after the next start"
            ),
            retryable: true,
        }),
    }
}

/// A spool holding events in memory because its disk refuses writes, in a line.
fn spool_trouble(spool: &SharedSpool) -> Option<String> {
    let st = spool.stats();
    (st.held_events > 0).then(|| {
        format!(
            "{} event(s) held in memory: the disk refuses spool writes ({} failed so far, {} \
             dropped from memory); they are written when it takes writes again",
            st.held_events, st.write_failures, st.held_dropped
        )
    })
}

/// MQTT through its spool.
struct MqttAdapter {
    sink: Option<MqttSink>,
    flush: Duration,
}

impl Sink for MqttAdapter {
    fn name(&self) -> String {
        "mqtt".into()
    }

    fn storage_error(&self) -> Option<String> {
        spool_trouble(self.sink.as_ref()?.spool())
    }

    fn deliver<'a>(&'a mut self, event: &'a Event) -> SinkFuture<'a> {
        Box::pin(async move {
            match self.sink.as_mut() {
                Some(s) => s.deliver(event).await.map_err(sink_error),
                None => Err(shut_down("mqtt")),
            }
        })
    }

    fn close(&mut self) -> SinkFuture<'_> {
        Box::pin(async move {
            let Some(s) = self.sink.take() else {
                return Ok(());
            };
            let left = s.spool().stats().pending_records;
            if left > 0 {
                tracing::info!(
                    "mqtt: {left} event(s) not yet acknowledged; waiting up to {:?} (sink.shutdown_flush_s)",
                    self.flush
                );
            }
            let spool = s.spool().clone();
            let shutdown = s.shutdown(self.flush);
            close_spooled("mqtt", spool, shutdown, "not acknowledged by the broker").await
        })
    }
}

/// Postcard frames over a Unix socket, through its spool.
struct UnixAdapter {
    sink: Option<UnixFrameSink>,
    flush: Duration,
}

impl Sink for UnixAdapter {
    fn name(&self) -> String {
        "postcard-unix".into()
    }

    fn storage_error(&self) -> Option<String> {
        spool_trouble(self.sink.as_ref()?.spool())
    }

    fn deliver<'a>(&'a mut self, event: &'a Event) -> SinkFuture<'a> {
        Box::pin(async move {
            match self.sink.as_mut() {
                Some(s) => s.deliver(event).await.map_err(sink_error),
                None => Err(shut_down("postcard-unix")),
            }
        })
    }

    fn close(&mut self) -> SinkFuture<'_> {
        Box::pin(async move {
            let Some(s) = self.sink.take() else {
                return Ok(());
            };
            let spool = s.spool().clone();
            let shutdown = s.shutdown(self.flush);
            close_spooled(
                "postcard-unix",
                spool,
                shutdown,
                "not taken by the listener",
            )
            .await
        })
    }
}

/// Postcard frames as UDP datagrams (best effort). The socket is bound on first use, so
/// building the pipeline needs no runtime for it.
struct UdpAdapter {
    to: std::net::SocketAddr,
    sock: Option<UdpFrameSink>,
}

impl Sink for UdpAdapter {
    fn name(&self) -> String {
        "postcard-udp".into()
    }

    fn deliver<'a>(&'a mut self, event: &'a Event) -> SinkFuture<'a> {
        Box::pin(async move {
            if self.sock.is_none() {
                self.sock = Some(UdpFrameSink::new(self.to).await.map_err(sink_error)?);
            }
            match self.sock.as_mut() {
                Some(s) => s.deliver(event).await.map_err(sink_error),
                None => Ok(()),
            }
        })
    }
}

/// GPIO pins per label.
struct GpioAdapter {
    sink: GpioSink,
}

impl Sink for GpioAdapter {
    fn name(&self) -> String {
        "gpio".into()
    }

    fn deliver<'a>(&'a mut self, event: &'a Event) -> SinkFuture<'a> {
        Box::pin(async move { self.sink.deliver(event).await.map_err(sink_error) })
    }

    fn close(&mut self) -> SinkFuture<'_> {
        self.sink.all_off();
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::tests::event;
    use mbt_publish::config::{GpioConfig, GpioPinConfig, PinMode};
    use mbt_publish::gpio::FakePins;

    /// The GPIO adapter drives its pin through the `Sink` trait (a fake pin: no GPIO here) and
    /// turns it off at close.
    #[tokio::test]
    async fn gpio_follows_events_through_the_sink_trait() {
        let cfg = GpioConfig {
            pins: vec![GpioPinConfig {
                label: "glass_breaking".into(),
                pin: 17,
                mode: PinMode::Follow,
                ..GpioPinConfig::default()
            }],
        };
        let mut pins = FakePins::default();
        let labels = ["glass_breaking".to_string(), "none".to_string()];
        let mut sink: Box<dyn Sink> = Box::new(GpioAdapter {
            sink: GpioSink::new(&cfg, &labels, &mut pins).unwrap(),
        });
        sink.deliver(&event(EventKind::New, "glass_breaking"))
            .await
            .unwrap();
        sink.deliver(&event(EventKind::New, "dog_barking"))
            .await
            .unwrap();
        let pin = pins.pin(17).unwrap();
        assert_eq!(pin.levels(), [false, true], "off at open, on at new");
        sink.close().await.unwrap();
        assert_eq!(pin.levels(), [false, true, false], "off at close");
    }
}
