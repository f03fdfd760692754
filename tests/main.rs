//! Integration tests of the `mbtd` binary and library: one test binary, one module per area.

mod alsa_capture;
mod backends;
mod browser;
// mbt-publish's mosquitto harness, shared rather than copied.
#[path = "../crates/mbt-publish/tests/broker.rs"]
mod broker;
mod camera;
mod cli;
mod clock_step;
mod common;
mod daemon;
mod demo;
mod harness;
mod pipeline;
mod publish;
mod reload;
mod soak;
mod tuning;
mod web;
