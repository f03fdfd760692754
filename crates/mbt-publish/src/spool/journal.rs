//! The journal itself: segment files, the committed cursor, the size bound.
//!
//! ```text
//! <dir>/lock                     flock(2)ed while open: one process per spool
//! <dir>/00000000000000000007.seg append-only segments of records (see `record`)
//! <dir>/ack                      the committed cursor: (segment, offset) + CRC
//! ```
//!
//! *Why segments and a cursor file* rather than rewriting one file: appends and acks never
//! rewrite a record, so a crash at any instant leaves every acknowledged-as-written record
//! intact; delivered data is reclaimed by deleting whole segments. The cursor is written to
//! `ack.tmp` and renamed over `ack` (atomic on POSIX), so it is always either the old or the
//! new value; a missing or corrupt `ack` means "replay everything still on disk" (duplicates,
//! never loss).
//!
//! *Ordering of crash-sensitive steps*: a record is appended (and fsynced, by default) before
//! `append` returns; the cursor is written before the segments it passes are deleted; on open,
//! segments wholly before the cursor are deleted and a torn tail of the last segment is cut off.
//!
//! An in-memory index of the pending records (24 bytes each: about 8 MB for a full 64 MiB
//! spool of 200-byte events) makes reads, acks and drops cheap without rescanning files.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use super::record::{self, HEADER, MAX_PAYLOAD};
use super::{Fsync, SpoolError, SpoolOptions, SpoolStats, WhenFull};
use crate::throttle::Throttle;

const ACK_MAGIC: [u8; 4] = *b"MBSA";
const ACK_LEN: usize = 24;

/// A place in the journal: a segment and a byte offset in it. Ordered as the journal is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

/// One pending record as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub start: Position,
    /// Acknowledge this to mark the record (and all before it) delivered.
    pub end: Position,
    pub payload: Vec<u8>,
}

/// What an append did besides appending.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Appended {
    /// Undelivered records dropped to make room (policy `drop_oldest`).
    pub dropped: u64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    segment: u64,
    offset: u64,
    len: u32,
}

impl Entry {
    fn start(&self) -> Position {
        Position {
            segment: self.segment,
            offset: self.offset,
        }
    }
    fn end(&self) -> Position {
        Position {
            segment: self.segment,
            offset: self.offset + u64::from(self.len),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Segment {
    id: u64,
    bytes: u64,
}

/// The spool: see the module docs. Not thread-safe by itself; [`super::SharedSpool`] wraps it.
pub struct Spool {
    dir: PathBuf,
    opts: SpoolOptions,
    segments: VecDeque<Segment>,
    active: File,
    cursor: Position,
    index: VecDeque<Entry>,
    pending_bytes: u64,
    stats: SpoolStats,
    /// The active segment may end in a partial record (a failed write whose truncation
    /// failed too): the next append starts a new segment, so no record follows the damage.
    tail_broken: bool,
    /// The cursor moved but `ack` could not be rewritten: retried at the next ack or append.
    cursor_dirty: bool,
    warn: Throttle,
    _lock: File,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.dir)
            .field("cursor", &self.cursor)
            .field("stats", &self.stats)
            .finish()
    }
}

fn io_err(path: &Path, source: std::io::Error) -> SpoolError {
    SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn seg_name(id: u64) -> String {
    format!("{id:020}.seg")
}

impl Spool {
    /// Opens (creating if needed) the spool in `opts.dir`, scans it, cuts off a torn tail,
    /// and counts what is still to deliver. Damaged records are skipped with a warning.
    pub fn open(opts: SpoolOptions) -> Result<Spool, SpoolError> {
        opts.check()?;
        let dir = opts.dir.clone();
        fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_err(&lock_path, e))?;
        // SAFETY: flock on a valid, open file descriptor owned by `lock`.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(SpoolError::Locked { path: dir });
        }

        let mut ids = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| io_err(&dir, e))? {
            let entry = entry.map_err(|e| io_err(&dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(id) = name
                .strip_suffix(".seg")
                .and_then(|s| s.parse::<u64>().ok())
            {
                ids.push(id);
            }
        }
        ids.sort_unstable();

        let mut stats = SpoolStats::default();
        let mut cursor = read_ack(&dir, &mut stats);
        // Segments wholly before the cursor were delivered: a crash came between writing the
        // cursor and deleting them.
        let mut segments = VecDeque::new();
        for &id in &ids {
            if id < cursor.segment {
                let p = dir.join(seg_name(id));
                fs::remove_file(&p).map_err(|e| io_err(&p, e))?;
            } else {
                segments.push_back(Segment { id, bytes: 0 });
            }
        }
        match segments.front() {
            Some(first) if first.id > cursor.segment => {
                cursor = Position {
                    segment: first.id,
                    offset: 0,
                }
            }
            None => {}
            _ => {}
        }

        let mut index = VecDeque::new();
        let mut pending_bytes = 0;
        let last = segments.len().saturating_sub(1);
        for (i, seg) in segments.iter_mut().enumerate() {
            let path = dir.join(seg_name(seg.id));
            let data = fs::read(&path).map_err(|e| io_err(&path, e))?;
            let scan = record::scan(&data, true, usize::MAX);
            for bad in &scan.skipped {
                tracing::warn!(
                    file = %path.display(),
                    "spool: skipping {} damaged bytes at offset {}",
                    bad.len(),
                    bad.start
                );
                stats.corrupt_regions += 1;
                stats.skipped_bytes += bad.len() as u64;
            }
            seg.bytes = data.len() as u64;
            if let Some(torn) = scan.torn_tail {
                let cut = data.len() - torn;
                stats.torn_tails += 1;
                stats.skipped_bytes += cut as u64;
                if i == last {
                    tracing::warn!(
                        file = %path.display(),
                        "spool: cutting off a torn last record ({cut} bytes at offset {torn})"
                    );
                    let f = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(|e| io_err(&path, e))?;
                    f.set_len(torn as u64).map_err(|e| io_err(&path, e))?;
                    f.sync_all().map_err(|e| io_err(&path, e))?;
                    seg.bytes = torn as u64;
                } else {
                    tracing::warn!(
                        file = %path.display(),
                        "spool: skipping {cut} damaged bytes at the end of a segment"
                    );
                }
            }
            for found in scan.records {
                let e = Entry {
                    segment: seg.id,
                    offset: found.record.start as u64,
                    len: found.record.len() as u32,
                };
                if e.start() >= cursor {
                    pending_bytes += u64::from(e.len);
                    index.push_back(e);
                }
            }
        }

        // Segment numbers only grow, even when every segment is gone, so a stale cursor can
        // never point past new data.
        let active_id = segments
            .back()
            .map(|s| s.id)
            .unwrap_or(cursor.segment.max(1));
        if let Some(seg) = segments.iter().find(|s| s.id == cursor.segment) {
            // A cursor beyond the data (possible only after a power cut with fsync = "never")
            // must not hide records appended from here on.
            cursor.offset = cursor.offset.min(seg.bytes);
        }
        if segments.is_empty() {
            cursor = Position {
                segment: active_id,
                offset: 0,
            };
            segments.push_back(Segment {
                id: active_id,
                bytes: 0,
            });
        }
        let active_path = dir.join(seg_name(active_id));
        let active = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&active_path)
            .map_err(|e| io_err(&active_path, e))?;
        // A cursor still at segment 0 here means a segment 0 exists (the spool itself numbers
        // from 1, but a copied or renamed directory may hold one): its records are pending and
        // the cursor stays before them (moving it past them lost them: found by fuzzing).
        stats.pending_records = index.len() as u64;
        let mut spool = Spool {
            dir,
            opts,
            segments,
            active,
            cursor,
            index,
            pending_bytes,
            stats,
            tail_broken: false,
            cursor_dirty: false,
            warn: Throttle::default(),
            _lock: lock,
        };
        spool.refresh_stats();
        // Rewritten at every open so it always agrees with what is on disk now.
        spool.write_ack()?;
        if spool.stats.pending_records > 0 {
            tracing::info!(
                dir = %spool.dir.display(),
                "spool: {} undelivered events to replay",
                spool.stats.pending_records
            );
        }
        Ok(spool)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn stats(&self) -> SpoolStats {
        self.stats
    }

    pub(crate) fn memory_events(&self) -> usize {
        self.opts.memory_events
    }

    /// The committed cursor: everything before it has been delivered.
    pub fn cursor(&self) -> Position {
        self.cursor
    }

    fn refresh_stats(&mut self) {
        self.stats.pending_records = self.index.len() as u64;
        self.stats.pending_bytes = self.pending_bytes;
        self.stats.disk_bytes = self.segments.iter().map(|s| s.bytes).sum();
        self.stats.segments = self.segments.len() as u64;
    }

    /// Appends one record; durable on return when `fsync = "always"`. When the spool is full
    /// the policy applies: `drop_oldest` deletes the oldest segment (counting its undelivered
    /// records in `dropped`), `refuse_newest` returns [`SpoolError::Full`] (counted in
    /// `refused`).
    pub fn append(&mut self, payload: &[u8]) -> Result<Appended, SpoolError> {
        let rec = record::encode(payload);
        let r = rec.len() as u64;
        if payload.len() > MAX_PAYLOAD || r > self.opts.max_bytes {
            return Err(SpoolError::TooLarge {
                len: payload.len(),
                max: MAX_PAYLOAD.min(self.opts.max_bytes as usize - HEADER),
            });
        }
        let mut appended = Appended::default();
        while self.stats.disk_bytes + r > self.opts.max_bytes {
            match self.opts.when_full {
                WhenFull::RefuseNewest => {
                    self.stats.refused += 1;
                    return Err(SpoolError::Full {
                        max_bytes: self.opts.max_bytes,
                        pending: self.stats.pending_records,
                    });
                }
                WhenFull::DropOldest => appended.dropped += self.drop_oldest()?,
            }
        }
        let active = *self
            .segments
            .back()
            .ok_or(SpoolError::Internal("no segment"))?;
        if self.tail_broken || (active.bytes > 0 && active.bytes + r > self.opts.segment_bytes) {
            self.roll()
                .map_err(|e| self.write_failed("starting a segment", e))?;
            self.tail_broken = false;
        }
        if self.cursor_dirty {
            // Best effort: the cursor in memory is right; the file only saves duplicates.
            self.persist_cursor();
        }
        let path = self.active_path();
        let before = self.segments.back().map(|s| s.bytes).unwrap_or(0);
        let storage = self.opts.storage.clone();
        let mut written = storage.append(&mut self.active, &path, &rec);
        if written.is_ok() && self.opts.fsync == Fsync::Always {
            written = storage.sync_data(&self.active, &path);
        }
        if let Err(e) = written {
            // Leave no partial record behind (a full disk, say), or, where the file cannot
            // be cut back (read-only), make sure nothing is appended after it: the index
            // holds offsets, so a record after unindexed bytes would be read at the wrong
            // place (and skipped as damaged: lost). Found by the storage-seam tests.
            if storage.set_len(&self.active, &path, before).is_err() {
                self.tail_broken = true;
                if let (Some(seg), Ok(meta)) = (self.segments.back_mut(), self.active.metadata()) {
                    seg.bytes = meta.len();
                }
                self.refresh_stats();
            }
            return Err(self.write_failed("appending", io_err(&path, e)));
        }
        if self.warn.succeeded() {
            tracing::info!(dir = %self.dir.display(), "spool: writing again");
        }
        let seg = self
            .segments
            .back_mut()
            .ok_or(SpoolError::Internal("no segment"))?;
        self.index.push_back(Entry {
            segment: seg.id,
            offset: before,
            len: r as u32,
        });
        seg.bytes += r;
        self.pending_bytes += r;
        self.stats.appended += 1;
        self.refresh_stats();
        Ok(appended)
    }

    fn active_path(&self) -> PathBuf {
        let id = self.segments.back().map(|s| s.id).unwrap_or(0);
        self.dir.join(seg_name(id))
    }

    fn roll(&mut self) -> Result<(), SpoolError> {
        let id = self.segments.back().map(|s| s.id + 1).unwrap_or(1);
        let path = self.dir.join(seg_name(id));
        let f = self
            .opts
            .storage
            .open_append(&path)
            .map_err(|e| io_err(&path, e))?;
        self.active = f;
        self.segments.push_back(Segment { id, bytes: 0 });
        if self.opts.fsync == Fsync::Always {
            // After the segment is ours: a failed directory sync must not leave the file
            // unaccounted (it is in `segments`, so it is deleted like any other).
            sync_dir(&self.dir)?;
        }
        // A cursor at the very end of the old active segment now means the new one's start.
        self.normalize_cursor()?;
        Ok(())
    }

    /// Deletes the oldest segment, delivered or not; returns how many undelivered records it
    /// held.
    fn drop_oldest(&mut self) -> Result<u64, SpoolError> {
        if self.segments.len() == 1 {
            self.roll()?;
        }
        let Some(old) = self.segments.pop_front() else {
            return Ok(0);
        };
        let mut n = 0;
        while self.index.front().is_some_and(|e| e.segment == old.id) {
            if let Some(e) = self.index.pop_front() {
                self.pending_bytes -= u64::from(e.len);
                n += 1;
            }
        }
        if self.cursor.segment <= old.id {
            let next = self.segments.front().map(|s| s.id).unwrap_or(old.id + 1);
            self.cursor = Position {
                segment: next,
                offset: 0,
            };
            self.persist_cursor();
        }
        let path = self.dir.join(seg_name(old.id));
        fs::remove_file(&path).map_err(|e| io_err(&path, e))?;
        if n > 0 {
            tracing::warn!(
                dir = %self.dir.display(),
                "spool full ({} bytes): dropped the {n} oldest undelivered events",
                self.opts.max_bytes
            );
        }
        self.stats.dropped += n;
        self.refresh_stats();
        Ok(n)
    }

    /// Up to `max` pending records at or after `from` (clamped to the cursor), in order.
    /// A record whose bytes went bad since the spool was opened is skipped with a warning.
    pub fn read(&mut self, from: Position, max: usize) -> Result<Vec<Record>, SpoolError> {
        let from = from.max(self.cursor);
        let mut i = self.index.partition_point(|e| e.start() < from);
        let mut out = Vec::new();
        let mut file: Option<(u64, File)> = None;
        while out.len() < max && i < self.index.len() {
            let e = self.index[i];
            if file.as_ref().map(|f| f.0) != Some(e.segment) {
                let path = self.dir.join(seg_name(e.segment));
                let f = File::open(&path).map_err(|err| io_err(&path, err))?;
                file = Some((e.segment, f));
            }
            let Some((_, f)) = file.as_ref() else { break };
            let mut buf = vec![0u8; e.len as usize];
            let ok = f.read_exact_at(&mut buf, e.offset).is_ok();
            let scan = if ok {
                record::scan(&buf, true, 1)
            } else {
                record::Scan::default()
            };
            match scan.records.first() {
                Some(found) if found.record == (0..buf.len()) => {
                    out.push(Record {
                        start: e.start(),
                        end: e.end(),
                        payload: buf[found.payload.clone()].to_vec(),
                    });
                    i += 1;
                }
                _ => {
                    tracing::warn!(
                        file = %self.dir.join(seg_name(e.segment)).display(),
                        "spool: record at offset {} went bad on disk; skipped",
                        e.offset
                    );
                    self.stats.corrupt_regions += 1;
                    self.stats.skipped_bytes += u64::from(e.len);
                    self.pending_bytes -= u64::from(e.len);
                    self.index.remove(i);
                    self.refresh_stats();
                }
            }
        }
        Ok(out)
    }

    /// Marks everything before `upto` delivered: moves the committed cursor (durably) and
    /// deletes segments left wholly behind it. Acknowledging an old position is a no-op.
    pub fn ack(&mut self, upto: Position) -> Result<u64, SpoolError> {
        if upto <= self.cursor {
            return Ok(0);
        }
        let mut n = 0;
        while self.index.front().is_some_and(|e| e.end() <= upto) {
            if let Some(e) = self.index.pop_front() {
                self.pending_bytes -= u64::from(e.len);
                n += 1;
            }
        }
        self.cursor = upto;
        self.normalize_cursor()?;
        // A cursor file that cannot be written (full or read-only disk) does not stop the
        // ack: the cursor in memory is what reads use, and deleting the segments behind it
        // is safe even with the old cursor on disk (at the next open a cursor before the
        // first segment moves to its start: the records between are replayed, duplicates,
        // never a loss). Deleting is what gives a full disk its space back.
        self.persist_cursor();
        while self.segments.len() > 1
            && self
                .segments
                .front()
                .is_some_and(|s| s.id < self.cursor.segment)
        {
            if let Some(s) = self.segments.pop_front() {
                let path = self.dir.join(seg_name(s.id));
                fs::remove_file(&path).map_err(|e| io_err(&path, e))?;
            }
        }
        self.stats.acked += n;
        self.refresh_stats();
        Ok(n)
    }

    /// A cursor at the end of a segment that is not the last one moves to the next one's start.
    fn normalize_cursor(&mut self) -> Result<(), SpoolError> {
        loop {
            let pos = self
                .segments
                .iter()
                .position(|s| s.id == self.cursor.segment);
            match pos {
                Some(p) if p + 1 < self.segments.len() => {
                    if self.cursor.offset >= self.segments[p].bytes {
                        self.cursor = Position {
                            segment: self.segments[p + 1].id,
                            offset: 0,
                        };
                        continue;
                    }
                    return Ok(());
                }
                _ => return Ok(()),
            }
        }
    }

    /// Writes the cursor file; on failure counts and logs it (throttled) and retries later.
    fn persist_cursor(&mut self) {
        match self.write_ack() {
            Ok(()) => self.cursor_dirty = false,
            Err(e) => {
                self.cursor_dirty = true;
                self.write_failed("writing the cursor", e);
            }
        }
    }

    /// Counts a failed write and logs it at most once a minute; returns the error.
    fn write_failed(&mut self, what: &str, e: SpoolError) -> SpoolError {
        self.stats.write_failures += 1;
        if let Some(n) = self.warn.failed(std::time::Instant::now()) {
            tracing::warn!(
                dir = %self.dir.display(),
                "spool: {what} failed: {e} ({n} failed writes since the last message; \
                 events wait in memory and are written when the disk takes them again)"
            );
        }
        e
    }

    fn write_ack(&self) -> Result<(), SpoolError> {
        let mut buf = Vec::with_capacity(ACK_LEN);
        buf.extend_from_slice(&ACK_MAGIC);
        buf.extend_from_slice(&self.cursor.segment.to_le_bytes());
        buf.extend_from_slice(&self.cursor.offset.to_le_bytes());
        let crc = crc32fast::hash(&buf[4..20]);
        buf.extend_from_slice(&crc.to_le_bytes());
        let tmp = self.dir.join("ack.tmp");
        let dst = self.dir.join("ack");
        let storage = &self.opts.storage;
        storage
            .write_file(&tmp, &buf, self.opts.fsync == Fsync::Always)
            .map_err(|e| io_err(&tmp, e))?;
        storage.rename(&tmp, &dst).map_err(|e| io_err(&dst, e))?;
        if self.opts.fsync == Fsync::Always {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

fn read_ack(dir: &Path, stats: &mut SpoolStats) -> Position {
    let path = dir.join("ack");
    let data = match fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Position::default(),
        Err(e) => {
            tracing::warn!(file = %path.display(), "spool: cannot read the cursor ({e}); replaying everything");
            stats.bad_cursor = true;
            return Position::default();
        }
    };
    let le = |b: &[u8]| {
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        u64::from_le_bytes(a)
    };
    if data.len() == ACK_LEN && data[..4] == ACK_MAGIC {
        let crc = u32::from_le_bytes([data[20], data[21], data[22], data[23]]);
        if crc32fast::hash(&data[4..20]) == crc {
            return Position {
                segment: le(&data[4..12]),
                offset: le(&data[12..20]),
            };
        }
    }
    tracing::warn!(file = %path.display(), "spool: the cursor file is damaged; replaying everything on disk (duplicates possible)");
    stats.bad_cursor = true;
    Position::default()
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, e))
}
