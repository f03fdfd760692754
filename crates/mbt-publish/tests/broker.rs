//! A real mosquitto for tests, and an MQTT subscriber that records what it receives.
//!
//! Shared by mbt-publish's tests and the daemon's (`tests/main.rs` at the repository root
//! includes this file with `#[path]`), so both exercise the same broker setup. Needs the
//! Debian package `mosquitto` (`scripts/install-deps.sh`); without it [`Broker::new`] prints a
//! loud SKIPPED line and returns `None`. Dependencies: rumqttc, tokio, tempfile, libc,
//! serde_json.

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event as MqttEvent, MqttOptions, Packet, QoS};

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    l.local_addr().expect("local addr").port()
}

fn mosquitto_bin() -> Option<PathBuf> {
    for p in [
        "/usr/sbin/mosquitto",
        "/usr/local/sbin/mosquitto",
        "/usr/bin/mosquitto",
    ] {
        if Path::new(p).exists() {
            return Some(p.into());
        }
    }
    None
}

/// A mosquitto on 127.0.0.1:`port` with persistence in a temp dir (so a persistent
/// subscriber's session and queued messages survive a restart, as on a real broker).
pub struct Broker {
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
    child: Option<Child>,
}

impl Broker {
    /// `None` (after a loud message) when mosquitto is not installed.
    pub fn new(port: u16) -> Option<Broker> {
        Self::with_conf(port, "")
    }

    /// [`Broker::new`] with `extra` appended to its mosquitto.conf (another listener, TLS).
    pub fn with_conf(port: u16, extra: &str) -> Option<Broker> {
        let Some(bin) = mosquitto_bin() else {
            eprintln!(
                "\n*** SKIPPED: mosquitto is not installed (apt-get install mosquitto; \
                 scripts/install-deps.sh does it) ***\n"
            );
            return None;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        // As root, mosquitto would drop to user `mosquitto`, which cannot write the
        // persistence file in our temp dir; `user root` keeps it (ignored when not root).
        // SAFETY: getuid has no preconditions.
        let user = if unsafe { libc::getuid() } == 0 {
            "user root\n"
        } else {
            ""
        };
        let conf = format!(
            "{user}listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n\
             persistence_location {}/\nautosave_interval 1\nmax_queued_messages 0\n\
             max_inflight_messages 0\nlog_dest stderr\nlog_type error\n{extra}",
            dir.path().display()
        );
        std::fs::write(dir.path().join("mosquitto.conf"), conf).expect("writing mosquitto.conf");
        Some(Broker {
            port,
            dir,
            bin,
            child: None,
        })
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none());
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting mosquitto");
        self.child = Some(child);
        let t = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "mosquitto did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM (mosquitto saves its persistence file) and wait.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child by its pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One received message: topic, payload, retained flag.
pub type Message = (String, Vec<u8>, bool);

/// Everything received on `mbt/#` and `homeassistant/#`, in arrival order.
#[derive(Clone, Default)]
pub struct Received {
    pub msgs: Arc<Mutex<Vec<Message>>>,
}

impl Received {
    pub fn all(&self) -> Vec<Message> {
        self.msgs.lock().unwrap().clone()
    }

    /// `(type, after.id)` of every message on the events topic, in arrival order.
    pub fn events(&self, topic: &str) -> Vec<(String, String)> {
        self.all()
            .into_iter()
            .filter(|(t, _, _)| t == topic)
            .map(|(_, p, _)| {
                let v: serde_json::Value = serde_json::from_slice(&p).expect("events JSON");
                (
                    v["type"].as_str().unwrap_or("").to_string(),
                    v["after"]["id"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    pub async fn wait_for(&self, what: &str, timeout: Duration, ok: impl Fn(&Self) -> bool) {
        let t = Instant::now();
        while !ok(self) {
            assert!(t.elapsed() < timeout, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A persistent-session (clean_session = false) QoS 1 subscriber that keeps reconnecting, so it
/// receives what the broker queued for it while either side was away.
pub async fn subscriber(port: u16, id: &str) -> Received {
    let rec = Received::default();
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_clean_session(false);
    o.set_keep_alive(Duration::from_secs(5));
    o.set_max_packet_size(8 << 20, 64 * 1024);
    let (client, mut el) = AsyncClient::new(o, 64);
    let r = rec.clone();
    let subscribed = Arc::new(tokio::sync::Notify::new());
    let s2 = subscribed.clone();
    tokio::spawn(async move {
        let _client = client.clone();
        loop {
            match el.poll().await {
                Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                    let _ = client.try_subscribe("mbt/#", QoS::AtLeastOnce);
                    let _ = client.try_subscribe("homeassistant/#", QoS::AtLeastOnce);
                }
                Ok(MqttEvent::Incoming(Packet::SubAck(_))) => s2.notify_one(),
                Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                    r.msgs
                        .lock()
                        .unwrap()
                        .push((p.topic.clone(), p.payload.to_vec(), p.retain));
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), subscribed.notified())
        .await
        .expect("subscriber did not get its SUBACK");
    rec
}

/// Checks at-least-once and order over the `(type, id)` stream against what was sent: every
/// sent key present, first arrivals in the sent order; returns the number of duplicates.
pub fn check_delivery(sent: &[(String, String)], got: &[(String, String)]) -> usize {
    let mut first_seen = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for k in got {
        if seen.insert(k.clone()) {
            first_seen.push(k.clone());
        }
    }
    let missing: Vec<_> = sent.iter().filter(|k| !seen.contains(*k)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} events never arrived, first: {:?}",
        missing.len(),
        sent.len(),
        &missing[..missing.len().min(5)]
    );
    let sent_order: Vec<_> = first_seen
        .iter()
        .filter(|k| sent.contains(k))
        .cloned()
        .collect();
    assert_eq!(sent_order, sent, "first arrivals are not in the order sent");
    got.len() - first_seen.len()
}
