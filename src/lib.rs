//! `mbtd`, the edge daemon: camera + microphone -> aligned windows -> the shared tokenizer ->
//! the MBT model (tract) -> debounced events -> sinks.
//!
//! Everything pure that the host tool shares (tokenizer, model metadata, the event type) lives
//! in `mbt-core`; this crate holds what only the daemon does, one module per stage, in layers
//! (a module uses only those above it in this list, so no two import each other):
//!
//! * [`clock`]: the monotonic clock every sample and frame is stamped on;
//! * [`config`]: the one TOML configuration, with documented defaults;
//! * [`stats`]: the counters of everything dropped, skipped, late or recovered;
//! * [`shared`]: what the pipeline, the tuning controls and the web page share (the
//!   thresholds in force, a change, the web page's door to the tuning);
//! * [`marks`]: the user's marks on events (`labels.csv` beside the evidence);
//! * [`source`]: ALSA, V4L2, clip replay and synthetic sources behind one trait, and the
//!   supervisor that reconnects failed devices with backoff;
//! * [`window`]: cuts aligned audio+video windows on the clock (drift, gaps, late frames);
//! * [`queue`]: the bounded window queue (drop-oldest for live capture);
//! * [`backend`]: inference backends behind one trait (tract CPU; CUDA and ONNX Runtime slots);
//! * [`detector`]: tokenize with the model's own settings, run, softmax; one-modality fallback;
//! * [`events`]: thresholds, hysteresis, minimum duration, cool-down;
//! * [`sink`]: where events go (the `Sink` trait; JSON lines on stdout);
//! * [`evidence`]: the key frame and audio of each event, written before the sinks see it (a
//!   disk that refuses the writes is counted, shown and logged once a minute);
//! * [`tuning`]: thresholds and on/off per label changed at run time (web, MQTT), kept in a
//!   state file of their own;
//! * [`reload`]: a new model without a restart (SIGHUP, or its file changed);
//! * [`publish`]: `mbt-publish`'s MQTT, postcard and GPIO sinks behind that trait (through
//!   the durable spool), the metrics series, the evidence directory;
//! * [`web`]: the page on the board (live scores and camera, events with evidence, timeline)
//!   and its JSON API, the Prometheus endpoint; it reads the pipeline's state through one
//!   handle ([`web::Live`], which the pipeline feeds) and changes tuning through
//!   [`shared::Tuning`];
//! * [`pipeline`]: the tokio wiring of all of the above ([`pipeline::build`],
//!   [`pipeline::run`]), and clean shutdown.

pub mod backend;
pub mod clock;
pub mod config;
pub mod detector;
pub mod events;
pub mod evidence;
pub mod marks;
pub mod pipeline;
pub mod publish;
pub mod queue;
pub mod reload;
pub mod shared;
pub mod sink;
pub mod source;
pub mod stats;
pub mod tuning;
pub mod web;
pub mod window;

pub use config::Config;

/// Loads the effective configuration: defaults, then `file` if given, then `overrides`.
pub fn load_config(file: Option<&std::path::Path>, overrides: &[String]) -> anyhow::Result<Config> {
    use anyhow::Context;
    let (text, origin) = match file {
        Some(p) => (
            std::fs::read_to_string(p)
                .with_context(|| format!("cannot read config {}", p.display()))?,
            p.display().to_string(),
        ),
        None => (String::new(), "built-in defaults".to_string()),
    };
    let cfg: Config = mbt_core::settings::load(&text, &origin, overrides)?;
    let origin = if overrides.is_empty() {
        origin
    } else {
        format!("{origin} with --set overrides")
    };
    cfg.validate().with_context(|| format!("in {origin}"))?;
    Ok(cfg)
}
