//! The durable spool: what a sink has not delivered yet, on disk.
//!
//! Every event for a spooled sink is appended here *before* the sink tries to deliver it, and
//! acknowledged (removed) only after the other side confirmed it (an MQTT PUBACK; for a Unix
//! socket, the kernel taking the bytes). A crash, a power cut or a broker outage therefore
//! loses nothing that `append` returned for: delivery is **at least once**, and a record sent
//! but not acknowledged before a crash or a disconnect is sent again. Duplicates carry the same
//! event id (and kind), which is how a consumer recognises them.
//!
//! **Bounded.** `max_bytes` caps the files on disk (per sink). When an append would pass it,
//! `when_full` decides: `drop_oldest` (default) deletes the oldest segment, losing its
//! undelivered events but keeping the newest, which are usually what matters in a house;
//! `refuse_newest` keeps the backlog and refuses the new event. Either way the loss is logged
//! and counted ([`SpoolStats::dropped`], [`SpoolStats::refused`], exported as metrics), never
//! silent. Dropping works in whole segments (`segment_bytes`, at most half of `max_bytes`).
//!
//! **fsync.** `fsync = "always"` (default) syncs each record's data before `append` returns and
//! the directory when a segment file is created or the cursor replaced: an event the daemon
//! handed over survives a power cut. This costs a disk flush per event, which is fine at
//! event rates (a few per minute) and even on SD cards. `fsync = "never"` leaves write-back to
//! the kernel: a killed process still loses nothing (the data is in the page cache), a power
//! cut may lose the last seconds.
//!
//! **Damage.** Records carry a CRC. A torn last record (a crash mid-write) is cut off at open;
//! flipped bytes or garbage anywhere lose only the records they touch; both are logged and
//! counted, never a panic.

mod journal;
pub mod record;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use mbt_core::event::Event;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

pub use journal::{Appended, Position, Record, Spool};

use crate::DeliveryError;

/// What to do when the spool is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Delete the oldest segment (its undelivered events are counted as dropped).
    #[default]
    DropOldest,
    /// Keep the backlog; refuse the new event (counted as refused).
    RefuseNewest,
}

/// When the spool forces its writes to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Fsync {
    /// After every record, and the directory after every new file: survives power loss.
    #[default]
    Always,
    /// Never explicitly: survives a crashed process, not necessarily a power cut.
    Never,
}

/// The smallest `max_bytes` accepted.
pub const MIN_SPOOL_BYTES: u64 = 8 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct SpoolOptions {
    pub dir: PathBuf,
    pub max_bytes: u64,
    pub segment_bytes: u64,
    pub when_full: WhenFull,
    pub fsync: Fsync,
}

impl SpoolOptions {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        SpoolOptions {
            dir: dir.into(),
            max_bytes: 64 << 20,
            segment_bytes: 1 << 20,
            when_full: WhenFull::DropOldest,
            fsync: Fsync::Always,
        }
    }

    pub(crate) fn check(&self) -> Result<(), SpoolError> {
        let bad = |field: &'static str, reason: String| Err(SpoolError::Config { field, reason });
        if self.max_bytes < MIN_SPOOL_BYTES {
            return bad(
                "spool.max_bytes",
                format!(
                    "{} is below the minimum of {MIN_SPOOL_BYTES}",
                    self.max_bytes
                ),
            );
        }
        if self.segment_bytes == 0 || self.segment_bytes > self.max_bytes / 2 {
            return bad(
                "spool.segment_bytes",
                format!(
                    "{} must be between 1 and half of spool.max_bytes ({})",
                    self.segment_bytes,
                    self.max_bytes / 2
                ),
            );
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("spool {}: already in use by another process", path.display())]
    Locked { path: PathBuf },
    #[error("spool full ({max_bytes} bytes, {pending} events waiting): new event refused (spool.when_full = \"refuse_newest\")")]
    Full { max_bytes: u64, pending: u64 },
    #[error("record of {len} bytes is larger than the spool accepts ({max})")]
    TooLarge { len: usize, max: usize },
    #[error("{field}: {reason}")]
    Config { field: &'static str, reason: String },
    #[error("spool: internal error: {0}")]
    Internal(&'static str),
}

/// Counters and gauges of one spool (exported as metrics by the sinks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SpoolStats {
    /// Records waiting for delivery (the spool depth).
    pub pending_records: u64,
    pub pending_bytes: u64,
    /// Bytes in segment files (what `max_bytes` bounds).
    pub disk_bytes: u64,
    pub segments: u64,
    /// Records appended / acknowledged since open.
    pub appended: u64,
    pub acked: u64,
    /// Undelivered records deleted by `drop_oldest`.
    pub dropped: u64,
    /// New records refused by `refuse_newest`.
    pub refused: u64,
    /// Damaged regions skipped, their bytes, and torn tails cut off.
    pub corrupt_regions: u64,
    pub skipped_bytes: u64,
    pub torn_tails: u64,
    /// The cursor file was unreadable: everything on disk is replayed.
    pub bad_cursor: bool,
}

/// Postcard bytes of an event, as stored in the spool (no COBS: the spool has its own framing).
pub fn encode_event(event: &Event) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_allocvec(event)
}

/// A spool shared by the sink front end (appends) and its delivery task (reads, acks), with a
/// wake-up for the task when something was appended.
#[derive(Clone, Debug)]
pub struct SharedSpool {
    name: String,
    inner: Arc<Mutex<Spool>>,
    notify: Arc<Notify>,
}

impl SharedSpool {
    pub fn new(name: impl Into<String>, spool: Spool) -> Self {
        SharedSpool {
            name: name.into(),
            inner: Arc::new(Mutex::new(spool)),
            notify: Arc::new(Notify::new()),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `f` on the spool under its lock (file I/O: keep it short).
    pub fn with<R>(&self, f: impl FnOnce(&mut Spool) -> R) -> Result<R, DeliveryError> {
        let mut g = self
            .inner
            .lock()
            .map_err(|_| DeliveryError::fatal(&self.name, "spool lock poisoned"))?;
        Ok(f(&mut g))
    }

    pub fn stats(&self) -> SpoolStats {
        self.with(|s| s.stats()).unwrap_or_default()
    }

    /// Appends an event (on a blocking thread: an fsync can take a while on an SD card) and
    /// wakes the delivery task. Errors: a full spool under `refuse_newest` is not retryable
    /// (the policy refused it, and it is counted); an I/O error is.
    pub async fn append_event(&self, event: &Event) -> Result<Appended, DeliveryError> {
        let bytes = encode_event(event)
            .map_err(|e| DeliveryError::fatal(&self.name, format!("encoding event: {e}")))?;
        let this = self.clone();
        let res = tokio::task::spawn_blocking(move || this.with(|s| s.append(&bytes)))
            .await
            .map_err(|e| DeliveryError::retryable(&self.name, format!("spool task: {e}")))??;
        match res {
            Ok(a) => {
                self.notify.notify_one();
                Ok(a)
            }
            Err(e @ (SpoolError::Full { .. } | SpoolError::TooLarge { .. })) => {
                Err(DeliveryError::fatal(&self.name, e.to_string()))
            }
            Err(e) => Err(DeliveryError::retryable(&self.name, e.to_string())),
        }
    }

    /// Resolves after the next append (or at once if one happened since the last call).
    pub async fn appended(&self) {
        self.notify.notified().await
    }

    /// Waits until nothing is pending or `timeout` passed; returns the number still pending.
    pub async fn drained(&self, timeout: std::time::Duration) -> u64 {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let n = self.stats().pending_records;
            if n == 0 || tokio::time::Instant::now() >= deadline {
                return n;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

#[cfg(test)]
mod tests;
