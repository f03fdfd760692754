//! `[mqtt]`: the broker connection, topics, Home Assistant discovery and TLS settings, with
//! their checks (split from `config/mod.rs`, which holds the other sections).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{bad, ConfigError};

/// `[mqtt]`: publish events to an MQTT broker (Frigate-style topics, Home Assistant discovery).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// Off unless turned on.
    pub enabled: bool,
    /// `mqtt://host[:port]` (default port 1883) or `mqtts://host[:port]` (TLS, default 8883).
    pub url: String,
    /// The MQTT client id; empty: `mbtd-<device>`.
    pub client_id: String,
    /// This device's name: a topic level and part of Home Assistant's unique ids
    /// (letters, digits, `_`, `-`).
    pub device: String,
    /// Topics are `<topic_prefix>/<device>/...`.
    pub topic_prefix: String,
    /// Publish Home Assistant discovery messages (retained) on connect and when Home Assistant
    /// announces itself on `<discovery_prefix>/status`.
    pub discovery: bool,
    pub discovery_prefix: String,
    pub username: Option<String>,
    /// The password, or better `password_file` (readable by the daemon only).
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    /// CA certificate(s), PEM: required for `mqtts://` (e.g.
    /// `/etc/ssl/certs/ca-certificates.crt` for a publicly signed broker).
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for brokers that authenticate clients by certificate.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// MQTT keep-alive: how soon a silently dead link is noticed.
    pub keep_alive_s: u64,
    /// Give up a connection attempt after this long.
    pub connect_timeout_s: u64,
    /// Events published and awaiting their PUBACK at once.
    pub max_inflight: usize,
    /// Reconnect delays: doubling from the first to the second.
    pub reconnect_min_ms: u64,
    pub reconnect_max_ms: u64,
    /// Publish the event's key frame (from `[evidence]`) on `<prefix>/<device>/<label>/snapshot`.
    pub snapshots: bool,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            enabled: false,
            url: "mqtt://127.0.0.1:1883".into(),
            client_id: String::new(),
            device: "mbtd".into(),
            topic_prefix: "mbt".into(),
            discovery: true,
            discovery_prefix: "homeassistant".into(),
            username: None,
            password: None,
            password_file: None,
            ca_file: None,
            client_cert: None,
            client_key: None,
            keep_alive_s: 30,
            connect_timeout_s: 5,
            max_inflight: 32,
            reconnect_min_ms: 500,
            reconnect_max_ms: 30_000,
            snapshots: true,
        }
    }
}

/// A parsed broker URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

/// Parses `mqtt://host[:port]` / `mqtts://host[:port]` (also `tcp://`, `ssl://`; IPv6 hosts in
/// brackets). No path, query or credentials in the URL: those have their own fields.
pub fn parse_broker_url(url: &str) -> Result<BrokerUrl, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("`{url}` is not a URL like mqtt://host:1883"))?;
    let tls = match scheme.to_ascii_lowercase().as_str() {
        "mqtt" | "tcp" => false,
        "mqtts" | "ssl" => true,
        other => return Err(format!("scheme `{other}` is not mqtt:// or mqtts://")),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#', '@']) {
        return Err(format!(
            "`{url}`: only host and port belong in the URL (credentials go in mqtt.username / mqtt.password)"
        ));
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("`{url}`: unclosed `[` in the host"))?;
        match after {
            "" => (h, None),
            p => (
                h,
                Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("`{url}`: expected `:port` after `]`"))?,
                ),
            ),
        }
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    if host.is_empty() {
        return Err(format!("`{url}` has no host"));
    }
    let port = match port {
        None => {
            if tls {
                8883
            } else {
                1883
            }
        }
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => return Err(format!("`{p}` is not a port number (1-65535)")),
            Ok(n) => n,
        },
    };
    Ok(BrokerUrl {
        tls,
        host: host.to_string(),
        port,
    })
}

/// A topic level we build from configuration: no wildcards, no separators, no NUL.
fn check_topic_level(field: &str, v: &str, allow_slash: bool) -> Result<(), ConfigError> {
    if v.is_empty() {
        return bad(field, "must not be empty");
    }
    if v.contains(['+', '#', '\0']) || (!allow_slash && v.contains('/')) {
        return bad(
            field,
            format!(
                "`{v}` must not contain `+`, `#`{}",
                if allow_slash { "" } else { " or `/`" }
            ),
        );
    }
    if v.starts_with('/') || v.ends_with('/') {
        return bad(field, format!("`{v}` must not start or end with `/`"));
    }
    Ok(())
}

/// A file that must exist and be readable at start.
fn check_file(field: &str, p: &Path) -> Result<(), ConfigError> {
    match std::fs::File::open(p) {
        Ok(f) => match f.metadata() {
            Ok(m) if m.is_file() => Ok(()),
            Ok(_) => bad(field, format!("{} is not a regular file", p.display())),
            Err(e) => bad(field, format!("{}: {e}", p.display())),
        },
        Err(e) => bad(field, format!("{}: {e}", p.display())),
    }
}

impl MqttConfig {
    pub fn broker(&self) -> Result<BrokerUrl, ConfigError> {
        parse_broker_url(&self.url).or_else(|r| bad("mqtt.url", r))
    }

    pub fn client_id(&self) -> String {
        if self.client_id.is_empty() {
            format!("mbtd-{}", self.device)
        } else {
            self.client_id.clone()
        }
    }

    /// The password from `password` or `password_file` (trailing newline removed).
    pub fn password(&self) -> Result<Option<String>, ConfigError> {
        match (&self.password, &self.password_file) {
            (Some(p), None) => Ok(Some(p.clone())),
            (None, Some(f)) => match std::fs::read_to_string(f) {
                Ok(s) => Ok(Some(s.trim_end_matches(['\n', '\r']).to_string())),
                Err(e) => bad("mqtt.password_file", format!("{}: {e}", f.display())),
            },
            (None, None) => Ok(None),
            (Some(_), Some(_)) => bad(
                "mqtt.password_file",
                "set either mqtt.password or mqtt.password_file, not both",
            ),
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        // Checked even when disabled, so a prepared config does not hide a typo until the day
        // it is turned on.
        let broker = self.broker()?;
        if !self
            .device
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            || self.device.is_empty()
        {
            return bad(
                "mqtt.device",
                format!("`{}`: use letters, digits, `_` and `-` only", self.device),
            );
        }
        check_topic_level("mqtt.topic_prefix", &self.topic_prefix, true)?;
        check_topic_level("mqtt.discovery_prefix", &self.discovery_prefix, true)?;
        if self.client_id.len() > 128 || self.client_id.contains('\0') {
            return bad("mqtt.client_id", "at most 128 characters, no NUL");
        }
        if (self.password.is_some() || self.password_file.is_some()) && self.username.is_none() {
            return bad(
                "mqtt.username",
                "a password is set but no username (MQTT 3.1.1 sends no password without one)",
            );
        }
        if self.password.is_some() && self.password_file.is_some() {
            return bad(
                "mqtt.password_file",
                "set either mqtt.password or mqtt.password_file, not both",
            );
        }
        if self.keep_alive_s == 0 || self.keep_alive_s > 65_535 {
            return bad("mqtt.keep_alive_s", "must be 1..=65535 seconds");
        }
        if self.connect_timeout_s == 0 {
            return bad("mqtt.connect_timeout_s", "must be at least 1");
        }
        if self.max_inflight == 0 || self.max_inflight > 1000 {
            return bad("mqtt.max_inflight", "must be 1..=1000");
        }
        if self.reconnect_min_ms == 0 {
            return bad("mqtt.reconnect_min_ms", "must be at least 1");
        }
        if self.reconnect_max_ms < self.reconnect_min_ms {
            return bad(
                "mqtt.reconnect_max_ms",
                "must not be smaller than mqtt.reconnect_min_ms",
            );
        }
        if self.client_cert.is_some() != self.client_key.is_some() {
            let f = if self.client_cert.is_some() {
                "mqtt.client_key"
            } else {
                "mqtt.client_cert"
            };
            return bad(f, "mqtt.client_cert and mqtt.client_key go together");
        }
        if !broker.tls {
            for (f, v) in [
                ("mqtt.ca_file", &self.ca_file),
                ("mqtt.client_cert", &self.client_cert),
                ("mqtt.client_key", &self.client_key),
            ] {
                if v.is_some() {
                    return bad(
                        f,
                        format!("is set but mqtt.url `{}` is not mqtts://", self.url),
                    );
                }
            }
        }
        if !self.enabled {
            return Ok(());
        }
        // Files are checked only when MQTT is on: they may not exist on a machine that only
        // prints the config.
        if broker.tls {
            if !cfg!(feature = "tls") {
                return bad(
                    "mqtt.url",
                    "mqtts:// needs TLS support, which this build lacks (cargo feature `tls` of mbt-publish)",
                );
            }
            match &self.ca_file {
                None => {
                    return bad(
                        "mqtt.ca_file",
                        "required for mqtts:// (for a publicly signed broker: /etc/ssl/certs/ca-certificates.crt)",
                    )
                }
                Some(p) => check_file("mqtt.ca_file", p)?,
            }
            if let Some(p) = &self.client_cert {
                check_file("mqtt.client_cert", p)?;
            }
            if let Some(p) = &self.client_key {
                check_file("mqtt.client_key", p)?;
            }
        }
        if let Some(p) = &self.password_file {
            check_file("mqtt.password_file", p)?;
        }
        Ok(())
    }
}
