//! Integration tests of the `mbtd` binary: one test binary, one module per area (the capture,
//! replay end-to-end and MQTT fault modules join it as the daemon grows).

mod cli;
