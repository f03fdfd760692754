//! mbt-publish's integration tests: one binary, a module per area.
//!
//! The MQTT tests start a real mosquitto on 127.0.0.1 with a free port (Debian package
//! `mosquitto`; `scripts/install-deps.sh` installs it). Without it they print a loud SKIPPED
//! line and pass. The 30 s outage test is `#[ignore]`d:
//! `cargo test -p mbt-publish --test integration -- --ignored --nocapture`.

mod broker;
mod common;
mod config_files;
mod disk_full;
mod mqtt_faults;
mod mqtt_tls;
mod postcard_frames;
mod sigkill;
