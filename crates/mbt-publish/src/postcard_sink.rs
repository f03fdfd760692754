//! Postcard frames (see [`crate::frame`]) to a local listener.
//!
//! * [`UnixFrameSink`]: connects to a Unix stream socket (e.g. `mbt events listen --unix
//!   PATH`) and writes frames back to back. Spooled: events wait on disk while no listener is
//!   there, and the driver reconnects with backoff. "Delivered" means the kernel accepted the
//!   bytes into the socket; a listener that dies with unread bytes loses them (this is a local
//!   pipe, not an acknowledged protocol: use MQTT where that matters).
//! * [`UdpFrameSink`]: one datagram per frame. Best effort: UDP says nothing about delivery,
//!   so there is nothing to spool against; a send error is returned and counted.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use mbt_core::event::Event;
use tokio::io::AsyncWriteExt;
use tokio::net::{UdpSocket, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::backoff::Backoff;
use crate::frame;
use crate::spool::{Position, SharedSpool, Spool, SpoolError, SpoolOptions};
use crate::{DeliveryError, SinkMetrics};

const BATCH: usize = 64;

/// Frames over a Unix stream socket, through a spool.
pub struct UnixFrameSink {
    spool: SharedSpool,
    metrics: SinkMetrics,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl UnixFrameSink {
    /// Opens the spool and starts the delivery task (needs a tokio runtime).
    pub fn start(
        path: PathBuf,
        spool: SpoolOptions,
        backoff: Backoff,
        metrics: SinkMetrics,
    ) -> Result<Self, SpoolError> {
        let spool = SharedSpool::new("postcard-unix", Spool::open(spool)?);
        metrics.spool(&spool.stats());
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(drive(
            path,
            spool.clone(),
            backoff,
            metrics.clone(),
            stop_rx,
        ));
        Ok(UnixFrameSink {
            spool,
            metrics,
            stop,
            task: Some(task),
        })
    }

    pub fn name(&self) -> &str {
        self.spool.name()
    }

    /// Puts the event on the spool; the delivery task sends it when a listener is there.
    pub async fn deliver(&mut self, event: &Event) -> Result<(), DeliveryError> {
        let r = self.spool.append_event(event).await;
        self.metrics.spool(&self.spool.stats());
        r.map(|_| ())
    }

    /// Waits up to `timeout` for the spool to empty; a retryable error says how many remain
    /// (they stay on disk for the next start).
    pub async fn flush(&mut self, timeout: Duration) -> Result<(), DeliveryError> {
        match self.spool.drained(timeout).await {
            0 => Ok(()),
            n => Err(DeliveryError::retryable(
                self.name(),
                format!("{n} events still spooled (kept on disk)"),
            )),
        }
    }

    pub fn spool(&self) -> &SharedSpool {
        &self.spool
    }

    /// Flushes for up to `timeout`, then stops the task.
    pub async fn shutdown(mut self, timeout: Duration) {
        let _ = self.flush(timeout).await;
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for UnixFrameSink {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn drive(
    path: PathBuf,
    spool: SharedSpool,
    mut backoff: Backoff,
    metrics: SinkMetrics,
    mut stop: watch::Receiver<bool>,
) {
    let mut warned = false;
    let mut sent_upto: Option<Position> = None;
    loop {
        if *stop.borrow() {
            return;
        }
        let mut stream = match UnixStream::connect(&path).await {
            Ok(s) => {
                tracing::info!("postcard: connected to {}", path.display());
                warned = false;
                backoff.reset();
                metrics.connected.set(1.0);
                s
            }
            Err(e) => {
                if !warned {
                    tracing::warn!(
                        "postcard: cannot connect to {} ({e}); events are spooled until it is there",
                        path.display()
                    );
                    warned = true;
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                    _ = stop.changed() => return,
                }
                continue;
            }
        };
        let mut read_pos = Position::default();
        loop {
            if *stop.borrow() {
                return;
            }
            let recs = match spool.with(|s| s.read(read_pos, BATCH)) {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    tracing::warn!("postcard: reading the spool: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                Err(e) => {
                    tracing::error!("postcard: {e}");
                    return;
                }
            };
            if recs.is_empty() {
                tokio::select! {
                    _ = spool.appended() => {}
                    _ = stop.changed() => return,
                }
                continue;
            }
            let mut bytes = Vec::new();
            for r in &recs {
                match frame::decode_postcard(&r.payload).and_then(|e| frame::encode(&e)) {
                    Ok(f) => bytes.extend(f),
                    Err(e) => {
                        tracing::warn!("postcard: skipping an undecodable spooled event: {e}")
                    }
                }
                if sent_upto.is_some_and(|p| r.end <= p) {
                    metrics.redelivered.inc();
                }
            }
            let last = recs[recs.len() - 1].end;
            if let Err(e) = stream.write_all(&bytes).await {
                tracing::warn!("postcard: {}: {e}; reconnecting", path.display());
                metrics.connected.set(0.0);
                sent_upto = Some(sent_upto.map_or(last, |p| p.max(last)));
                break;
            }
            // Counted under the spool lock, with the cursor (see the MQTT sink's commit).
            let acked = spool.with(|s| {
                let n = s.ack(last)?;
                metrics.delivered.add(n);
                metrics.spool(&s.stats());
                Ok::<_, crate::spool::SpoolError>(n)
            });
            match acked {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!("postcard: acknowledging in the spool: {e}"),
                Err(e) => tracing::error!("postcard: {e}"),
            }
            metrics.spool(&spool.stats());
            read_pos = last;
        }
    }
}

/// Frames as UDP datagrams, one per event.
pub struct UdpFrameSink {
    sock: UdpSocket,
    to: SocketAddr,
}

impl UdpFrameSink {
    pub async fn new(to: SocketAddr) -> Result<Self, DeliveryError> {
        let bind: SocketAddr = if to.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sock = UdpSocket::bind(bind).await.map_err(|e| {
            DeliveryError::fatal(
                "postcard-udp",
                format!("postcard.udp: binding a socket: {e}"),
            )
        })?;
        Ok(UdpFrameSink { sock, to })
    }

    pub async fn deliver(&mut self, event: &Event) -> Result<(), DeliveryError> {
        let f = frame::encode(event)
            .map_err(|e| DeliveryError::fatal("postcard-udp", e.to_string()))?;
        self.sock
            .send_to(&f, self.to)
            .await
            .map(|_| ())
            .map_err(|e| DeliveryError::retryable("postcard-udp", format!("{}: {e}", self.to)))
    }
}
