//! The configuration sections this crate reads: `[mqtt]`, `[postcard]`, `[gpio]`, `[spool]`,
//! `[metrics]`, `[evidence]`.
//!
//! Every section has documented defaults (so `mbtd --print-config` shows what runs) and
//! rejects unknown keys: a typo must not silently fall back to a default. [`PublishConfig::
//! validate`] checks what can be checked before anything starts (URLs, addresses, that TLS
//! files exist and are readable) and names the field in every error, so a bad setting stops
//! the daemon at start with a message saying what to fix, not an hour later on a broker error.
//!
//! Where state lives: `spool.dir` and `evidence.dir` default to `<state>/spool` and
//! `<state>/evidence`, where `<state>` is `$STATE_DIRECTORY` (set by systemd's
//! `StateDirectory=mbtd`: `/var/lib/mbtd`), else `$XDG_STATE_HOME/mbtd`, else
//! `~/.local/state/mbtd`.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::spool::{Fsync, SpoolError, SpoolOptions, WhenFull};

mod mqtt;
pub use mqtt::{parse_broker_url, BrokerUrl, MqttConfig};

/// A setting that cannot work, and which one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}`: {reason}")]
pub struct ConfigError {
    pub field: String,
    pub reason: String,
}

fn bad<T>(field: impl Into<String>, reason: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError {
        field: field.into(),
        reason: reason.into(),
    })
}

/// All publishing sections together (the daemon embeds them as top-level tables of its own
/// config; `mbt-publish --config` reads exactly this).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct PublishConfig {
    pub mqtt: MqttConfig,
    pub postcard: PostcardConfig,
    pub gpio: GpioConfig,
    pub spool: SpoolConfig,
    pub metrics: MetricsConfig,
    pub evidence: EvidenceConfig,
}

impl PublishConfig {
    /// Parses TOML text; errors name the key (serde's message) and the source.
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.mqtt.validate()?;
        self.postcard.validate()?;
        self.gpio.validate()?;
        self.spool.validate()?;
        self.metrics.validate()?;
        self.evidence.validate()
    }
}

/// `$STATE_DIRECTORY` (systemd), else `$XDG_STATE_HOME/mbtd`, else `~/.local/state/mbtd`, else
/// `./mbtd-state`.
pub fn state_dir() -> PathBuf {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(d) = env("STATE_DIRECTORY") {
        // systemd passes a colon-separated list when several are configured; take the first.
        let s = d.to_string_lossy().into_owned();
        return PathBuf::from(s.split(':').next().unwrap_or(&s));
    }
    if let Some(d) = env("XDG_STATE_HOME") {
        return d.join("mbtd");
    }
    if let Some(h) = env("HOME") {
        return h.join(".local/state/mbtd");
    }
    PathBuf::from("mbtd-state")
}

// ------------------------------------------------------------------------------------ postcard

/// `[postcard]`: the event as postcard in COBS frames (see `frame`), to a local listener such
/// as `mbt events listen`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct PostcardConfig {
    /// Connect to this Unix stream socket and write frames (spooled; reconnects).
    pub unix: Option<PathBuf>,
    /// Send one datagram per frame to this address (best effort: UDP has no delivery
    /// confirmation, so nothing is spooled).
    pub udp: Option<String>,
}

impl PostcardConfig {
    pub fn udp_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        match &self.udp {
            None => Ok(None),
            Some(a) => a.parse::<SocketAddr>().map(Some).or_else(|e| {
                bad(
                    "postcard.udp",
                    format!("`{a}` is not an address like 127.0.0.1:5555 ({e})"),
                )
            }),
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.udp_addr()?;
        if let Some(p) = &self.unix {
            if p.as_os_str().is_empty() {
                return bad("postcard.unix", "empty path");
            }
            // sockaddr_un holds 108 bytes including the NUL.
            if p.as_os_str().len() > 107 {
                return bad(
                    "postcard.unix",
                    format!(
                        "{} is longer than a Unix socket path may be (107 bytes)",
                        p.display()
                    ),
                );
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------- gpio

/// `[gpio]`: drive pins per label (Raspberry Pi, through rppal).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct GpioConfig {
    /// One entry per label to signal: `[[gpio.pins]]`. None: GPIO off.
    pub pins: Vec<GpioPinConfig>,
}

/// How a pin follows its label's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PinMode {
    /// High for `pulse_ms` after each `new` event (a later one restarts the pulse).
    #[default]
    Pulse,
    /// High from `new` until `end`.
    Follow,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GpioPinConfig {
    /// The event label (as the model names it).
    pub label: String,
    /// BCM GPIO number (0-27 on the 40-pin header).
    pub pin: u8,
    pub mode: PinMode,
    pub pulse_ms: u64,
    /// Drive low for "on" (relay boards that switch on low).
    pub active_low: bool,
}

impl Default for GpioPinConfig {
    fn default() -> Self {
        GpioPinConfig {
            label: String::new(),
            pin: 17,
            mode: PinMode::Pulse,
            pulse_ms: 1000,
            active_low: false,
        }
    }
}

impl GpioConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (i, p) in self.pins.iter().enumerate() {
            let f = |k: &str| format!("gpio.pins[{i}].{k}");
            if p.label.is_empty() {
                return bad(f("label"), "must name a label");
            }
            if p.pin > 53 {
                return bad(f("pin"), format!("BCM {} does not exist (0-53)", p.pin));
            }
            if p.mode == PinMode::Pulse && !(1..=3_600_000).contains(&p.pulse_ms) {
                return bad(f("pulse_ms"), "must be 1..=3600000");
            }
            if let Some(j) = self.pins[..i].iter().position(|q| q.pin == p.pin) {
                return bad(
                    f("pin"),
                    format!("BCM {} is already used by gpio.pins[{j}]", p.pin),
                );
            }
        }
        Ok(())
    }
}

// --------------------------------------------------------------------------------------- spool

/// `[spool]`: the on-disk journal of undelivered events (see `spool`); one per spooled sink,
/// in `<dir>/<sink>`, each bounded by `max_bytes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpoolConfig {
    /// Default `<state>/spool` (see the module docs).
    pub dir: Option<PathBuf>,
    /// Disk use per sink; past it `when_full` applies.
    pub max_bytes: u64,
    /// Segment file size: the unit in which delivered (or dropped) data is deleted.
    pub segment_bytes: u64,
    /// `drop_oldest` or `refuse_newest`.
    pub when_full: WhenFull,
    /// `always` (each event durable before it is accepted) or `never`.
    pub fsync: Fsync,
    /// Events held in memory (per sink) while the disk refuses writes (full, read-only);
    /// past it the oldest held event is dropped, counted in `mbtd_spool_held_dropped_total`.
    pub memory_events: usize,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            dir: None,
            max_bytes: 64 << 20,
            segment_bytes: 1 << 20,
            when_full: WhenFull::DropOldest,
            fsync: Fsync::Always,
            memory_events: crate::spool::MEMORY_EVENTS,
        }
    }
}

impl SpoolConfig {
    pub fn dir(&self) -> PathBuf {
        self.dir
            .clone()
            .unwrap_or_else(|| state_dir().join("spool"))
    }

    /// The options of one sink's spool.
    pub fn options_for(&self, sink: &str) -> SpoolOptions {
        SpoolOptions {
            max_bytes: self.max_bytes,
            segment_bytes: self.segment_bytes,
            when_full: self.when_full,
            fsync: self.fsync,
            memory_events: self.memory_events,
            ..SpoolOptions::new(self.dir().join(sink))
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        // The sizes: the spool's own check (one rule, whoever opens a spool), its field named.
        match self.options_for("validate").check() {
            Err(SpoolError::Config { field, reason }) => return bad(field, reason),
            Err(e) => return bad("spool", e.to_string()),
            Ok(()) => {}
        }
        if self.memory_events == 0 {
            return bad(
                "spool.memory_events",
                "0 would drop every event while the disk refuses writes; at least 1",
            );
        }
        if self.dir.as_ref().is_some_and(|d| d.as_os_str().is_empty()) {
            return bad("spool.dir", "empty path (leave it out for the default)");
        }
        Ok(())
    }
}

// ------------------------------------------------------------------------------------- metrics

/// `[metrics]`: Prometheus text format on `http://<listen>/metrics`. Off by default; keep it on
/// the loopback interface (it has no authentication) and let a local agent scrape it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    pub enabled: bool,
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: false,
            listen: "127.0.0.1:9898".into(),
        }
    }
}

impl MetricsConfig {
    pub fn addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen.parse::<SocketAddr>().or_else(|e| {
            bad(
                "metrics.listen",
                format!(
                    "`{}` is not an address like 127.0.0.1:9898 ({e})",
                    self.listen
                ),
            )
        })
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.addr().map(|_| ())
    }
}

// ------------------------------------------------------------------------------------ evidence

/// `[evidence]`: per event, the key frame as JPEG and the window's audio as WAV, named by the
/// event id, in a directory bounded by `max_bytes` (oldest files deleted first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvidenceConfig {
    pub enabled: bool,
    /// Default `<state>/evidence`.
    pub dir: Option<PathBuf>,
    pub max_bytes: u64,
    pub jpeg_quality: u8,
    pub frame: bool,
    pub audio: bool,
}

impl Default for EvidenceConfig {
    fn default() -> Self {
        EvidenceConfig {
            enabled: true,
            dir: None,
            max_bytes: 256 << 20,
            jpeg_quality: 85,
            frame: true,
            audio: true,
        }
    }
}

impl EvidenceConfig {
    pub fn dir(&self) -> PathBuf {
        self.dir
            .clone()
            .unwrap_or_else(|| state_dir().join("evidence"))
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=100).contains(&self.jpeg_quality) {
            return bad("evidence.jpeg_quality", "must be 1..=100");
        }
        if self.max_bytes < 64 * 1024 {
            return bad("evidence.max_bytes", "must be at least 65536");
        }
        if self.dir.as_ref().is_some_and(|d| d.as_os_str().is_empty()) {
            return bad("evidence.dir", "empty path (leave it out for the default)");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(toml: &str) -> ConfigError {
        let c = PublishConfig::from_toml(toml).unwrap();
        c.validate().unwrap_err()
    }

    #[test]
    fn defaults_validate_and_round_trip_through_toml() {
        let c = PublishConfig::default();
        c.validate().unwrap();
        let text = toml::to_string(&c).unwrap();
        assert_eq!(PublishConfig::from_toml(&text).unwrap(), c);
        assert!(!c.mqtt.enabled && !c.metrics.enabled && c.evidence.enabled);
    }

    #[test]
    fn spool_memory_events_reaches_each_sinks_spool() {
        let c = PublishConfig::from_toml("[spool]\nmemory_events = 7").unwrap();
        c.validate().unwrap();
        assert_eq!(c.spool.options_for("mqtt").memory_events, 7);
        let d = PublishConfig::default();
        assert_eq!(
            d.spool.options_for("mqtt").memory_events,
            crate::spool::MEMORY_EVENTS
        );
    }

    #[test]
    fn broker_urls() {
        let u = parse_broker_url("mqtt://broker.lan").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port),
            (false, "broker.lan", 1883)
        );
        let u = parse_broker_url("mqtts://10.0.0.2:9000/").unwrap();
        assert_eq!((u.tls, u.host.as_str(), u.port), (true, "10.0.0.2", 9000));
        let u = parse_broker_url("ssl://[::1]").unwrap();
        assert_eq!((u.tls, u.host.as_str(), u.port), (true, "::1", 8883));
        assert_eq!(parse_broker_url("tcp://[::1]:1884").unwrap().port, 1884);
        for bad in [
            "broker:1883",
            "http://x",
            "mqtt://",
            "mqtt://h:0",
            "mqtt://h:99999",
            "mqtt://h:x",
            "mqtt://u:p@h",
            "mqtt://h/topic",
            "mqtt://[::1",
        ] {
            assert!(parse_broker_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("[mqtt]\nurl = \"htp://x\"", "mqtt.url"),
            ("[mqtt]\ndevice = \"a/b\"", "mqtt.device"),
            ("[mqtt]\ntopic_prefix = \"a/#\"", "mqtt.topic_prefix"),
            ("[mqtt]\npassword = \"p\"", "mqtt.username"),
            ("[mqtt]\nca_file = \"/x\"", "mqtt.ca_file"),
            (
                "[mqtt]\nclient_cert = \"/x\"\nurl = \"mqtts://h\"",
                "mqtt.client_key",
            ),
            ("[mqtt]\nmax_inflight = 0", "mqtt.max_inflight"),
            (
                "[mqtt]\nreconnect_min_ms = 5\nreconnect_max_ms = 1",
                "mqtt.reconnect_max_ms",
            ),
            ("[postcard]\nudp = \"localhost\"", "postcard.udp"),
            ("[[gpio.pins]]\nlabel = \"a\"\npin = 60", "gpio.pins[0].pin"),
            (
                "[[gpio.pins]]\nlabel = \"a\"\n[[gpio.pins]]\nlabel = \"b\"",
                "gpio.pins[1].pin",
            ),
            ("[[gpio.pins]]\npin = 4", "gpio.pins[0].label"),
            ("[spool]\nsegment_bytes = 0", "spool.segment_bytes"),
            ("[spool]\nmax_bytes = 5", "spool.max_bytes"),
            ("[spool]\nmemory_events = 0", "spool.memory_events"),
            ("[metrics]\nlisten = \"localhost\"", "metrics.listen"),
            ("[evidence]\njpeg_quality = 0", "evidence.jpeg_quality"),
        ];
        for (toml, field) in cases {
            let e = err(toml);
            assert_eq!(e.field, field, "{toml}: {e}");
            assert!(e.to_string().contains(field));
        }
    }

    #[test]
    fn missing_tls_files_are_named_when_enabled() {
        let e = err("[mqtt]\nenabled = true\nurl = \"mqtts://h\"");
        assert_eq!(e.field, "mqtt.ca_file");
        if cfg!(feature = "tls") {
            let e = err(
                "[mqtt]\nenabled = true\nurl = \"mqtts://h\"\nca_file = \"/nonexistent/ca.pem\"",
            );
            assert_eq!(e.field, "mqtt.ca_file");
            assert!(e.reason.contains("/nonexistent/ca.pem"), "{e}");
        }
        let e =
            err("[mqtt]\nenabled = true\nusername = \"u\"\npassword_file = \"/nonexistent/pw\"");
        assert_eq!(e.field, "mqtt.password_file");
    }

    #[test]
    fn unknown_keys_are_refused() {
        for t in [
            "[mqtt]\nurll = \"x\"",
            "[spool]\nwhen_full = \"drop_all\"",
            "[spool]\nfsync = \"sometimes\"",
            "[gpio]\npin = 3",
            "[nope]",
        ] {
            let e = PublishConfig::from_toml(t).unwrap_err().to_string();
            assert!(!e.is_empty(), "{t}");
        }
    }
}
