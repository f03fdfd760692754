//! Publishing mbt-edge events without loss.
//!
//! An event that never reaches the house is worse than none: the user trusted it. This crate
//! holds everything between the daemon's event logic and the outside world:
//!
//! * [`spool`]: an on-disk, append-only, CRC-checked journal. Every event bound for a sink that
//!   can be away (an MQTT broker, a Unix-socket listener) is written there first and removed only
//!   once the sink has acknowledged it, so a broker restart, a dropped link or a power cut loses
//!   nothing (at-least-once; duplicates carry the same event id).
//! * [`mqtt`]: MQTT with Frigate-style topics, availability with a last will, and Home Assistant
//!   discovery; QoS 1, a PUBACK is what takes an event off the spool.
//! * [`frame`] and [`postcard_sink`]: the shared [`mbt_core::event::Event`] as postcard in
//!   COBS-framed records, over a Unix socket (spooled) or UDP (best effort).
//! * [`gpio`]: a pin driven high per label, behind the [`gpio::OutputPin`] trait (rppal on a Pi,
//!   a fake in tests).
//! * [`metrics`]: a registry and a tiny Prometheus text endpoint (off by default).
//! * [`evidence`]: a key frame as JPEG and the audio as WAV per event, in a directory bounded
//!   by a byte budget.
//! * [`storage`]: the seam every spool write goes through, so tests can make the disk full or
//!   read-only on demand; [`throttle`]: one message a minute for a failure that repeats.
//! * [`config`]: the TOML sections for all of the above, with documented defaults and
//!   validation errors that name the field.
//!
//! Each sink is a plain struct with an async `deliver(&Event)` returning a [`DeliveryError`]
//! that says whether trying again can help; the daemon wraps them in its own `Sink` trait.
//! Nothing here blocks the caller on the network: spooled sinks return as soon as the event is
//! on disk, and a background task does the talking.

pub mod backoff;
pub mod config;
pub mod evidence;
pub mod frame;
pub mod gpio;
pub mod metrics;
pub mod mqtt;
pub mod postcard_sink;
pub mod spool;
pub mod storage;

mod error;
mod sink_metrics;
pub mod throttle;

pub use error::DeliveryError;
pub use sink_metrics::SinkMetrics;
