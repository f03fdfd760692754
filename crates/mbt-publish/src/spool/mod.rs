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
//! **A disk that refuses writes** (full, or an SD card remounted read-only): the event is held
//! in a bounded memory queue and the append succeeds, so detection goes on; a failed write
//! leaves no partial record that later records would follow; acks go on (deleting delivered
//! segments gives space back) even when the cursor file cannot be rewritten; failures are
//! counted (`write_failures`, `held_events`, `held_dropped`, exported as `mbtd_spool_*`
//! metrics) and logged at most once a minute; held events are written, in order, as soon as
//! the disk takes them again. See [`SharedSpool`]. Every journal write goes through
//! [`crate::storage::Storage`], where the tests make it fail.
//!
//! **Damage.** Records carry a CRC. A torn last record (a crash mid-write) is cut off at open;
//! flipped bytes or garbage anywhere lose only the records they touch; both are logged and
//! counted, never a panic.

mod journal;
pub mod record;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use mbt_core::event::Event;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

pub use journal::{Appended, Position, Record, Spool};

use crate::storage::{Disk, Storage};
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

#[derive(Debug, Clone)]
pub struct SpoolOptions {
    pub dir: PathBuf,
    pub max_bytes: u64,
    pub segment_bytes: u64,
    pub when_full: WhenFull,
    pub fsync: Fsync,
    /// Events kept in memory, oldest first, while the disk refuses writes (full or
    /// read-only); past it the oldest held event is dropped (counted). See [`SharedSpool`].
    pub memory_events: usize,
    /// Where the journal's writes go: the real disk, or a test's [`crate::storage::Faulty`].
    pub storage: Arc<dyn Storage>,
}

impl PartialEq for SpoolOptions {
    fn eq(&self, o: &Self) -> bool {
        self.dir == o.dir
            && self.max_bytes == o.max_bytes
            && self.segment_bytes == o.segment_bytes
            && self.when_full == o.when_full
            && self.fsync == o.fsync
            && self.memory_events == o.memory_events
            && std::ptr::addr_eq(Arc::as_ptr(&self.storage), Arc::as_ptr(&o.storage))
    }
}

/// Default of [`SpoolOptions::memory_events`]: at a few hundred bytes an event, well under a
/// megabyte, and hours of events at a house's rates.
pub const MEMORY_EVENTS: usize = 1024;

impl SpoolOptions {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        SpoolOptions {
            dir: dir.into(),
            max_bytes: 64 << 20,
            segment_bytes: 1 << 20,
            when_full: WhenFull::DropOldest,
            fsync: Fsync::Always,
            memory_events: MEMORY_EVENTS,
            storage: Arc::new(Disk),
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
    /// Writes the disk refused (a full or read-only filesystem), since open.
    pub write_failures: u64,
    /// Events waiting in memory for the disk to take them ([`SharedSpool`]).
    pub held_events: u64,
    /// Held events dropped because the memory queue was full (`memory_events`).
    pub held_dropped: u64,
}

/// Postcard bytes of an event, as stored in the spool (no COBS: the spool has its own framing).
pub fn encode_event(event: &Event) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_allocvec(event)
}

/// A spool shared by the sink front end (appends) and its delivery task (reads, acks), with a
/// wake-up for the task when something was appended.
///
/// **When the disk refuses writes** (`ENOSPC`, `EROFS`, an SD card gone read-only): an event
/// the journal cannot take is held in memory, in order behind any already held, up to
/// [`SpoolOptions::memory_events`] (past that the oldest held one is dropped, counted in
/// [`SpoolStats::held_dropped`] and logged). The append still succeeds for the caller, so
/// detection goes on; a background task retries the held events with back-off (1 s doubling
/// to 30 s) and every later append tries them first, so delivery resumes by itself when space
/// returns. Each failure is counted ([`SpoolStats::write_failures`]) and logged at most once
/// a minute. What is already on disk is never rewritten by this path. Held events are lost if
/// the process stops before the disk takes them; that is logged when the spool is dropped.
#[derive(Clone, Debug)]
pub struct SharedSpool {
    name: String,
    inner: Arc<Mutex<Inner>>,
    notify: Arc<Notify>,
}

#[derive(Debug)]
struct Inner {
    spool: Spool,
    /// Encoded events the disk did not take, oldest first.
    held: VecDeque<Vec<u8>>,
    cap: usize,
    held_dropped: u64,
    retrying: bool,
}

impl Inner {
    /// Appends every held event it can, in order; stops at the first I/O failure (the rest
    /// stay held). A policy refusal (`refuse_newest`, too large) drops that event: holding it
    /// would not change the answer.
    fn flush(&mut self) -> Result<Appended, SpoolError> {
        let mut total = Appended::default();
        while let Some(front) = self.held.front() {
            match self.spool.append(front) {
                Ok(a) => {
                    total.dropped += a.dropped;
                    self.held.pop_front();
                }
                Err(SpoolError::Io { .. }) => break,
                Err(e) => {
                    self.held.pop_front();
                    return Err(e);
                }
            }
        }
        Ok(total)
    }

    /// Queues `bytes` behind what is held and flushes.
    fn append(&mut self, bytes: Vec<u8>) -> Result<Appended, SpoolError> {
        self.held.push_back(bytes);
        let r = self.flush();
        if self.held.len() > self.cap {
            self.held.pop_front();
            self.held_dropped += 1;
            tracing::warn!(
                dir = %self.spool.dir().display(),
                "spool: the disk still takes no writes and {} events are held in memory \
                 (spool memory_events); dropped the oldest held event ({} so far)",
                self.cap,
                self.held_dropped
            );
        }
        r
    }

    fn stats(&self) -> SpoolStats {
        SpoolStats {
            held_events: self.held.len() as u64,
            held_dropped: self.held_dropped,
            ..self.spool.stats()
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if !self.held.is_empty() {
            tracing::error!(
                dir = %self.spool.dir().display(),
                "spool: {} events held in memory were never written (the disk refused them) \
                 and are lost with this process",
                self.held.len()
            );
        }
    }
}

impl SharedSpool {
    pub fn new(name: impl Into<String>, spool: Spool) -> Self {
        let cap = spool.memory_events().max(1);
        SharedSpool {
            name: name.into(),
            inner: Arc::new(Mutex::new(Inner {
                spool,
                held: VecDeque::new(),
                cap,
                held_dropped: 0,
                retrying: false,
            })),
            notify: Arc::new(Notify::new()),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Inner>, DeliveryError> {
        self.inner
            .lock()
            .map_err(|_| DeliveryError::fatal(&self.name, "spool lock poisoned"))
    }

    /// Runs `f` on the spool under its lock (file I/O: keep it short).
    pub fn with<R>(&self, f: impl FnOnce(&mut Spool) -> R) -> Result<R, DeliveryError> {
        Ok(f(&mut self.lock()?.spool))
    }

    /// The journal's statistics with the memory queue's.
    pub fn stats(&self) -> SpoolStats {
        self.lock().map(|g| g.stats()).unwrap_or_default()
    }

    /// Appends an event (on a blocking thread: an fsync can take a while on an SD card) and
    /// wakes the delivery task; an event the disk refuses is held in memory (see the type's
    /// docs) and the append succeeds. Errors: a full spool under `refuse_newest` is not
    /// retryable (the policy refused it, and it is counted).
    pub async fn append_event(&self, event: &Event) -> Result<Appended, DeliveryError> {
        let bytes = encode_event(event)
            .map_err(|e| DeliveryError::fatal(&self.name, format!("encoding event: {e}")))?;
        let this = self.clone();
        let (res, retry) = tokio::task::spawn_blocking(move || {
            this.lock().map(|mut g| {
                let r = g.append(bytes);
                let retry = !g.held.is_empty() && !g.retrying;
                g.retrying |= retry;
                (r, retry)
            })
        })
        .await
        .map_err(|e| DeliveryError::retryable(&self.name, format!("spool task: {e}")))??;
        if retry {
            tokio::spawn(self.clone().retry_held());
        }
        self.notify.notify_one();
        match res {
            Ok(a) => Ok(a),
            Err(e @ (SpoolError::Full { .. } | SpoolError::TooLarge { .. })) => {
                Err(DeliveryError::fatal(&self.name, e.to_string()))
            }
            Err(e) => Err(DeliveryError::retryable(&self.name, e.to_string())),
        }
    }

    /// Writes the held events out with back-off until none is left (one such task at a time).
    async fn retry_held(self) {
        let mut backoff = crate::backoff::Backoff::new(
            std::time::Duration::from_secs(1),
            std::time::Duration::from_secs(30),
        );
        loop {
            tokio::time::sleep(backoff.next_delay()).await;
            let this = self.clone();
            let done = tokio::task::spawn_blocking(move || {
                let Ok(mut g) = this.lock() else { return true };
                if let Err(e) = g.flush() {
                    tracing::warn!("spool {}: a held event was refused: {e}", this.name);
                }
                g.retrying = !g.held.is_empty();
                !g.retrying
            })
            .await
            .unwrap_or(true);
            self.notify.notify_one();
            if done {
                return;
            }
        }
    }

    /// Resolves after the next append (or at once if one happened since the last call).
    pub async fn appended(&self) {
        self.notify.notified().await
    }

    /// Waits until nothing is pending (on disk or held in memory) or `timeout` passed;
    /// returns the number still pending.
    pub async fn drained(&self, timeout: std::time::Duration) -> u64 {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let s = self.stats();
            let n = s.pending_records + s.held_events;
            if n == 0 || tokio::time::Instant::now() >= deadline {
                return n;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

#[cfg(test)]
mod faults;
#[cfg(test)]
mod tests;
