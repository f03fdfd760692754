//! The MQTT sink: spool first, publish at QoS 1, acknowledge on PUBACK.
//!
//! ```text
//!  deliver(event) ──append──► spool ──read (window)──► driver ──publish QoS 1──► broker
//!        ▲ returns once on disk        ▲                  │ ◄──────── PUBACK ──────┘
//!        │                             └──── ack(end) ────┘ (all messages of a record acked)
//! ```
//!
//! `deliver` only appends to the spool and wakes the driver, so the daemon never waits on the
//! broker. The driver is one task that owns the connection: it connects (with backoff),
//! announces `online` and the Home Assistant discovery configs, then publishes spooled events
//! in order with up to `max_inflight` of them awaiting PUBACKs, and moves the spool's cursor
//! past a record only when every message of it (and of every record before it) was
//! acknowledged. On any connection error it drops the connection, waits, reconnects with a clean
//! session and resends from the cursor: what was published but not acknowledged goes out again
//! (at least once; the repeat has the same event id, and is counted in
//! `mbtd_sink_redelivered_total`).
//!
//! rumqttc's event loop runs in its own task and hands its events over a channel, so the
//! driver never cancels a `poll` half-way through a write. PUBACKs are matched to messages by
//! packet id: rumqttc reports `Outgoing::Publish(pkid)` for our publishes in the order we made
//! them, and a fresh client per connection means nothing else is in flight.

pub mod control;
pub mod messages;
#[cfg(feature = "tls")]
mod tls;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mbt_core::event::{Event, EventKind};
use rumqttc::{AsyncClient, Event as MqttEvent, LastWill, MqttOptions, Outgoing, Packet, QoS};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::backoff::Backoff;
use crate::config::{ConfigError, MqttConfig};
use crate::frame;
use crate::spool::{Position, SharedSpool, Spool, SpoolError, SpoolOptions};
use crate::{DeliveryError, SinkMetrics};

use messages::{Message, Topics};

/// A snapshot larger than this is not published (it would exceed what brokers accept by
/// default and is not what a dashboard needs).
pub const MAX_SNAPSHOT_BYTES: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

/// What the sink needs besides its config section.
#[derive(Debug, Clone, Default)]
pub struct MqttContext {
    /// The model's labels: one Home Assistant entity set per label.
    pub labels: Vec<String>,
    /// The evidence directory, for snapshots (`<id>.jpg`); `None`: no snapshots.
    pub evidence_dir: Option<PathBuf>,
    /// Shown in Home Assistant's device info.
    pub sw_version: String,
    /// Run-time tuning and model reloads: what to announce (replaces `labels` once given) and
    /// where commands from `.../set` topics go. `None`: static labels, no commands.
    pub control: Option<ControlLink>,
}

/// The daemon's end of run-time tuning over MQTT (see [`control`]).
#[derive(Debug, Clone)]
pub struct ControlLink {
    /// The labels, model version and per-label tuning to announce; the driver re-announces
    /// (discovery and retained states) whenever it changes.
    pub announce: watch::Receiver<control::Announce>,
    /// Commands read from `<prefix>/<device>/<label>/threshold/set` and `.../enabled/set`.
    pub commands: mpsc::Sender<control::Command>,
}

/// The sink's front end (see the module docs).
pub struct MqttSink {
    spool: SharedSpool,
    metrics: SinkMetrics,
    connected: Arc<AtomicBool>,
    last_error: Arc<std::sync::Mutex<Option<String>>>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl MqttSink {
    /// Validates the config (TLS files are read now), opens the spool and starts the driver
    /// (needs a tokio runtime). Connecting happens in the background: an unreachable broker is
    /// not an error here.
    pub fn start(
        cfg: &MqttConfig,
        spool: SpoolOptions,
        ctx: MqttContext,
        metrics: SinkMetrics,
    ) -> Result<Self, MqttError> {
        cfg.validate()?;
        let opts = mqtt_options(cfg)?;
        let spool = SharedSpool::new("mqtt", Spool::open(spool)?);
        metrics.spool(&spool.stats());
        let topics = Topics {
            prefix: cfg.topic_prefix.clone(),
            device: cfg.device.clone(),
            discovery_prefix: cfg.discovery_prefix.clone(),
        };
        let connected = Arc::new(AtomicBool::new(false));
        let last_error = Arc::new(std::sync::Mutex::new(None));
        let (stop, stop_rx) = watch::channel(false);
        let driver = Driver {
            opts,
            connect_timeout: cfg.connect_timeout_s,
            topics,
            discovery: cfg.discovery,
            snapshot_dir: if cfg.snapshots {
                ctx.evidence_dir.clone()
            } else {
                None
            },
            announced: control::Announce {
                labels: ctx.labels.clone(),
                ..Default::default()
            },
            labels: ctx.labels,
            control: ctx.control,
            sw_version: ctx.sw_version,
            window: cfg.max_inflight,
            spool: spool.clone(),
            metrics: metrics.clone(),
            backoff: Backoff::new(
                Duration::from_millis(cfg.reconnect_min_ms),
                Duration::from_millis(cfg.reconnect_max_ms),
            ),
            connected: connected.clone(),
            last_error: last_error.clone(),
            last: HashMap::new(),
            sent_upto: None,
        };
        let task = tokio::spawn(driver.run(stop_rx));
        Ok(MqttSink {
            spool,
            metrics,
            connected,
            last_error,
            stop,
            task: Some(task),
        })
    }

    pub fn name(&self) -> &str {
        "mqtt"
    }

    /// Puts the event on the spool (durable on return with `fsync = "always"`); the driver
    /// publishes it when the broker is there.
    pub async fn deliver(&mut self, event: &Event) -> Result<(), DeliveryError> {
        let r = self.spool.append_event(event).await;
        self.metrics.spool(&self.spool.stats());
        r.map(|_| ())
    }

    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Why the last connection attempt or session failed (cleared on connect): what a status
    /// page or a test shows instead of "not connected".
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|g| g.clone())
    }

    pub fn spool(&self) -> &SharedSpool {
        &self.spool
    }

    /// Waits up to `timeout` for every spooled event to be acknowledged; a retryable error
    /// says how many are left (they stay on disk for the next start).
    pub async fn flush(&mut self, timeout: Duration) -> Result<(), DeliveryError> {
        match self.spool.drained(timeout).await {
            0 => Ok(()),
            n => Err(DeliveryError::retryable(
                "mqtt",
                format!("{n} events not yet acknowledged by the broker (kept in the spool)"),
            )),
        }
    }

    /// Flushes for up to `timeout`, then says `offline`, disconnects and stops the driver.
    pub async fn shutdown(mut self, timeout: Duration) {
        let _ = self.flush(timeout).await;
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

impl Drop for MqttSink {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

fn mqtt_options(cfg: &MqttConfig) -> Result<MqttOptions, ConfigError> {
    let broker = cfg.broker()?;
    let topics = Topics {
        prefix: cfg.topic_prefix.clone(),
        device: cfg.device.clone(),
        discovery_prefix: cfg.discovery_prefix.clone(),
    };
    let mut o = MqttOptions::new(cfg.client_id(), broker.host.clone(), broker.port);
    o.set_keep_alive(Duration::from_secs(cfg.keep_alive_s.max(1)));
    // A clean session per connection: the spool, not the broker, remembers what is undelivered.
    o.set_clean_session(true);
    o.set_last_will(LastWill::new(
        topics.availability(),
        "offline",
        QoS::AtLeastOnce,
        true,
    ));
    // Room for every message of a full window (up to 4 per event) plus discovery.
    let inflight = (cfg.max_inflight * 4 + 64).min(u16::MAX as usize) as u16;
    o.set_inflight(inflight);
    o.set_max_packet_size(64 * 1024, MAX_SNAPSHOT_BYTES + 64 * 1024);
    if let Some(user) = &cfg.username {
        o.set_credentials(user.clone(), cfg.password()?.unwrap_or_default());
    }
    if broker.tls {
        #[cfg(feature = "tls")]
        {
            let tls = tls::client_config(cfg)?;
            o.set_transport(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(tls),
            ));
        }
        #[cfg(not(feature = "tls"))]
        {
            return Err(ConfigError {
                field: "mqtt.url".into(),
                reason: "mqtts:// needs the `tls` feature of mbt-publish".into(),
            });
        }
    }
    Ok(o)
}

/// Whom a PUBACK is for.
#[derive(Debug, Clone, Copy)]
enum Tag {
    Record(u64),
    Control,
}

struct InRecord {
    seq: u64,
    end: Position,
    remaining: usize,
}

#[derive(Default)]
struct Inflight {
    records: VecDeque<InRecord>,
    next_seq: u64,
    /// Published, packet id not known yet (in publishing order).
    unassigned: VecDeque<Tag>,
    awaiting: HashMap<u16, Tag>,
    control_pending: usize,
}

enum End {
    Stopped,
    Failed(String),
}

struct Driver {
    opts: MqttOptions,
    connect_timeout: u64,
    topics: Topics,
    discovery: bool,
    snapshot_dir: Option<PathBuf>,
    labels: Vec<String>,
    control: Option<ControlLink>,
    /// What the last announcement said (to remove entities of labels a reload dropped).
    announced: control::Announce,
    sw_version: String,
    window: usize,
    spool: SharedSpool,
    metrics: SinkMetrics,
    backoff: Backoff,
    connected: Arc<AtomicBool>,
    last_error: Arc<std::sync::Mutex<Option<String>>>,
    /// The last record of each open event, for `before`.
    last: HashMap<String, Event>,
    /// The furthest spool position ever published (a record ending at or before it that is
    /// published again is a redelivery).
    sent_upto: Option<Position>,
}

/// A certificate failure names what to check: rustls says *what* failed (an unknown issuer,
/// a name the certificate does not list), not which setting fixes it.
fn with_tls_hint(reason: String) -> String {
    if reason.contains("NotValidForName") || reason.contains("not valid for name") {
        format!("{reason} (the host in mqtt.url must be a name the broker's certificate lists)")
    } else if reason.contains("invalid peer certificate") || reason.contains("UnknownIssuer") {
        format!("{reason} (mqtt.ca_file must hold the CA that signed the broker's certificate)")
    } else {
        reason
    }
}

impl Driver {
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut outage_logged = false;
        loop {
            if *stop.borrow() {
                return;
            }
            match self.session(&mut stop).await {
                End::Stopped => return,
                End::Failed(reason) => {
                    let reason = with_tls_hint(reason);
                    if let Ok(mut g) = self.last_error.lock() {
                        *g = Some(reason.clone());
                    }
                    let was = self.connected.swap(false, Ordering::Relaxed);
                    self.metrics.connected.set(0.0);
                    if was || !outage_logged {
                        tracing::warn!(
                            "mqtt: {reason}; events are spooled ({} waiting) and sent on reconnect",
                            self.spool.stats().pending_records
                        );
                        outage_logged = true;
                    } else {
                        tracing::debug!("mqtt: {reason}");
                    }
                }
            }
            let delay = self.backoff.next_delay();
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.changed() => return,
            }
        }
    }

    fn publish(
        &self,
        client: &AsyncClient,
        fl: &mut Inflight,
        m: Message,
        tag: Tag,
    ) -> Result<(), String> {
        client
            .try_publish(m.topic, QoS::AtLeastOnce, m.retain, m.payload)
            .map_err(|e| format!("queueing a publish: {e}"))?;
        fl.unassigned.push_back(tag);
        if matches!(tag, Tag::Control) {
            fl.control_pending += 1;
        }
        Ok(())
    }

    /// What to announce now: the daemon's latest, or the static labels.
    fn current(&self) -> control::Announce {
        match &self.control {
            Some(c) => c.announce.borrow().clone(),
            None => control::Announce {
                labels: self.labels.clone(),
                ..Default::default()
            },
        }
    }

    /// `online`, the discovery configs (and removals for labels no longer there), and the
    /// retained tuning states.
    fn announce(&mut self, client: &AsyncClient, fl: &mut Inflight) -> Result<(), String> {
        let now = self.current();
        self.publish(
            client,
            fl,
            messages::availability(&self.topics, true),
            Tag::Control,
        )?;
        let mut out = Vec::new();
        if self.discovery {
            out.extend(control::removed(&self.topics, &self.announced, &now));
            out.extend(messages::discovery(
                &self.topics,
                &now.labels,
                &self.sw_version,
                self.snapshot_dir.is_some(),
            ));
            out.extend(control::discovery_controls(
                &self.topics,
                &now,
                &self.sw_version,
            ));
        }
        out.extend(control::state_messages(&self.topics, &now));
        for m in out {
            self.publish(client, fl, m, Tag::Control)?;
        }
        self.announced = now;
        Ok(())
    }

    fn snapshot(&self, e: &Event) -> Option<Vec<u8>> {
        let dir = self.snapshot_dir.as_ref()?;
        if e.kind == EventKind::End || !crate::evidence::safe_id(&e.id) {
            return None;
        }
        let path = crate::evidence::jpeg_path(dir, &e.id);
        match std::fs::metadata(&path) {
            Ok(m) if m.len() as usize > MAX_SNAPSHOT_BYTES => {
                tracing::warn!("mqtt: {} is too large to publish", path.display());
                None
            }
            Ok(_) => std::fs::read(&path).ok(),
            Err(_) => None,
        }
    }

    /// Tops the window up from the spool.
    fn fill(
        &mut self,
        client: &AsyncClient,
        fl: &mut Inflight,
        read_pos: &mut Position,
    ) -> Result<(), String> {
        while fl.records.len() < self.window {
            let want = self.window - fl.records.len();
            let recs = match self.spool.with(|s| s.read(*read_pos, want)) {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => return Err(format!("reading the spool: {e}")),
                Err(e) => return Err(e.to_string()),
            };
            if recs.is_empty() {
                return Ok(());
            }
            for r in recs {
                let seq = fl.next_seq;
                fl.next_seq += 1;
                *read_pos = r.end;
                let msgs = match frame::decode_postcard(&r.payload) {
                    Ok(e) => {
                        let before = self.last.get(&e.id).cloned();
                        let msgs = messages::event_messages(
                            &self.topics,
                            before.as_ref(),
                            &e,
                            self.snapshot(&e),
                        );
                        if e.kind == EventKind::End {
                            self.last.remove(&e.id);
                        } else {
                            if self.last.len() >= 4096 {
                                self.last.clear();
                            }
                            self.last.insert(e.id.clone(), e);
                        }
                        msgs
                    }
                    Err(err) => {
                        tracing::warn!("mqtt: skipping an undecodable spooled event: {err}");
                        Vec::new()
                    }
                };
                if self.sent_upto.is_some_and(|p| r.end <= p) {
                    self.metrics.redelivered.inc();
                }
                self.sent_upto = Some(self.sent_upto.map_or(r.end, |p| p.max(r.end)));
                fl.records.push_back(InRecord {
                    seq,
                    end: r.end,
                    remaining: msgs.len(),
                });
                for m in msgs {
                    self.publish(client, fl, m, Tag::Record(seq))?;
                }
            }
        }
        Ok(())
    }

    /// Moves the spool cursor past the acknowledged prefix of the window.
    async fn commit(&self, fl: &mut Inflight) -> Result<(), String> {
        let mut upto = None;
        while fl.records.front().is_some_and(|r| r.remaining == 0) {
            upto = fl.records.pop_front().map(|r| r.end);
        }
        let Some(end) = upto else { return Ok(()) };
        let spool = self.spool.clone();
        let metrics = self.metrics.clone();
        // The metrics move under the spool lock, with the cursor: whoever sees the spool
        // drained (flush, a scrape) also sees these events counted as delivered and the
        // pending gauge at its new value.
        tokio::task::spawn_blocking(move || {
            spool.with(|s| {
                let n = s.ack(end)?;
                metrics.delivered.add(n);
                metrics.spool(&s.stats());
                Ok::<_, crate::spool::SpoolError>(n)
            })
        })
        .await
        .map_err(|e| format!("spool task: {e}"))?
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("acknowledging in the spool: {e}"))?;
        Ok(())
    }

    fn on_event(
        &mut self,
        client: &AsyncClient,
        fl: &mut Inflight,
        ev: MqttEvent,
    ) -> Result<(), String> {
        match ev {
            MqttEvent::Outgoing(Outgoing::Publish(pkid)) if pkid != 0 => {
                if let Some(tag) = fl.unassigned.pop_front() {
                    fl.awaiting.insert(pkid, tag);
                }
            }
            MqttEvent::Incoming(Packet::PubAck(ack)) => match fl.awaiting.remove(&ack.pkid) {
                Some(Tag::Record(seq)) => {
                    let first = fl.records.front().map(|r| r.seq).unwrap_or(0);
                    if let Some(r) = seq
                        .checked_sub(first)
                        .and_then(|i| fl.records.get_mut(i as usize))
                    {
                        r.remaining = r.remaining.saturating_sub(1);
                    }
                }
                Some(Tag::Control) => fl.control_pending = fl.control_pending.saturating_sub(1),
                None => {}
            },
            MqttEvent::Incoming(Packet::Publish(p))
                if p.topic == self.topics.ha_status()
                    && p.payload.as_ref() == b"online"
                    && self.discovery =>
            {
                tracing::info!("mqtt: Home Assistant (re)started; sending discovery again");
                self.announce(client, fl)?;
            }
            MqttEvent::Incoming(Packet::Publish(p)) => {
                let Some(link) = &self.control else {
                    return Ok(());
                };
                if let Some(cmd) = control::parse_command(
                    &self.topics,
                    &self.announced.labels,
                    &p.topic,
                    &p.payload,
                ) {
                    if link.commands.try_send(cmd).is_err() {
                        tracing::warn!(
                            "mqtt: command on {} dropped: the daemon is not taking commands",
                            p.topic
                        );
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn session(&mut self, stop: &mut watch::Receiver<bool>) -> End {
        let labels = self.current().labels.len().max(self.labels.len());
        let cap = self.window * 4 + labels * 12 + 64;
        let (client, mut eventloop) = AsyncClient::new(self.opts.clone(), cap);
        let mut net = rumqttc::NetworkOptions::new();
        net.set_connection_timeout(self.connect_timeout.max(1));
        eventloop.set_network_options(net);
        let (tx, mut rx) = mpsc::channel(1024);
        let poller = AbortOnDrop(tokio::spawn(async move {
            loop {
                let r = eventloop.poll().await;
                let failed = r.is_err();
                if tx.send(r).await.is_err() || failed {
                    return;
                }
            }
        }));

        // The CONNACK first.
        let first = tokio::select! {
            r = rx.recv() => r,
            _ = stop.changed() => return End::Stopped,
        };
        match first {
            Some(Ok(MqttEvent::Incoming(Packet::ConnAck(_)))) => {}
            Some(Ok(other)) => return End::Failed(format!("expected CONNACK, got {other:?}")),
            Some(Err(e)) => return End::Failed(format!("connecting: {e}")),
            None => return End::Failed("event loop ended".into()),
        }
        self.connected.store(true, Ordering::Relaxed);
        self.metrics.connected.set(1.0);
        if let Ok(mut g) = self.last_error.lock() {
            *g = None;
        }
        self.backoff.reset();
        tracing::info!(
            "mqtt: connected; {} spooled events to send",
            self.spool.stats().pending_records
        );

        let mut fl = Inflight::default();
        if let Err(e) = self.announce(&client, &mut fl) {
            return End::Failed(e);
        }
        if self.discovery {
            let _ = client.try_subscribe(self.topics.ha_status(), QoS::AtLeastOnce);
        }
        if self.control.is_some() {
            for f in self.topics.command_filters() {
                let _ = client.try_subscribe(f, QoS::AtLeastOnce);
            }
        }
        let mut read_pos = Position::default();
        loop {
            if let Err(e) = self.fill(&client, &mut fl, &mut read_pos) {
                return End::Failed(e);
            }
            let room = fl.records.len() < self.window;
            tokio::select! {
                ev = rx.recv() => {
                    let mut next = ev;
                    // Take everything already there, then commit once.
                    loop {
                        match next {
                            Some(Ok(ev)) => {
                                if let Err(e) = self.on_event(&client, &mut fl, ev) {
                                    return End::Failed(e);
                                }
                            }
                            Some(Err(e)) => return End::Failed(format!("connection lost: {e}")),
                            None => return End::Failed("event loop ended".into()),
                        }
                        match rx.try_recv() {
                            Ok(x) => next = Some(x),
                            Err(_) => break,
                        }
                    }
                    if let Err(e) = self.commit(&mut fl).await {
                        return End::Failed(e);
                    }
                }
                _ = self.spool.appended(), if room => {}
                _ = announce_changed(&mut self.control) => {
                    if let Err(e) = self.announce(&client, &mut fl) {
                        return End::Failed(e);
                    }
                }
                _ = stop.changed() => {
                    self.goodbye(&client, &mut rx, &mut fl).await;
                    drop(poller);
                    return End::Stopped;
                }
            }
        }
    }

    /// On shutdown: commit what is acknowledged, say `offline` (retained), disconnect.
    async fn goodbye(
        &mut self,
        client: &AsyncClient,
        rx: &mut mpsc::Receiver<Result<MqttEvent, rumqttc::ConnectionError>>,
        fl: &mut Inflight,
    ) {
        if self
            .publish(
                client,
                fl,
                messages::availability(&self.topics, false),
                Tag::Control,
            )
            .is_err()
        {
            return;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while fl.control_pending > 0 || fl.records.iter().any(|r| r.remaining > 0) {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(Ok(ev))) => {
                    let _ = self.on_event(client, fl, ev);
                }
                _ => break,
            }
        }
        let _ = self.commit(fl).await;
        let _ = client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while let Some(Ok(_)) = rx.recv().await {}
        })
        .await;
        self.connected.store(false, Ordering::Relaxed);
        self.metrics.connected.set(0.0);
    }
}

/// Resolves when the daemon changed what to announce (never without a control link, or once
/// the daemon's side is gone).
async fn announce_changed(c: &mut Option<ControlLink>) {
    match c {
        Some(link) => {
            if link.announce.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
