//! Integration tests of the `mbtd` binary and library: one test binary, one module per area.

mod alsa_capture;
mod camera;
mod cli;
mod common;
mod daemon;
mod demo;
mod pipeline;
