//! The storage seam: every write the spool journal and the evidence store make goes through a
//! [`Storage`], so a test can make the disk full (`ENOSPC`) or read-only (`EROFS`) on demand,
//! on any machine, without root or a filesystem of its own.
//!
//! Why a seam rather than only a small tmpfs: mounting needs root (the tmpfs test in
//! `tests/disk_full.rs` runs where it may and says it skipped elsewhere), and a real full
//! disk fails wherever it happens to fill up; the seam makes each write point fail in turn, so
//! every recovery path is exercised. [`Disk`] is the real thing (plain `std::fs`, no
//! behaviour of its own); [`Faulty`] wraps it and fails writes while armed, after letting a
//! chosen number of bytes through (a short write, as a filling disk does).
//!
//! Reads are not behind the seam: a full or read-only disk still reads.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;

/// The writes of the spool journal. Implementations must do exactly what the name says or
/// fail with the `io::Error` a filesystem would give.
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// Appends all of `buf` to `file` (opened for appending); on error some prefix of `buf`
    /// may have been written.
    fn append(&self, file: &mut File, path: &Path, buf: &[u8]) -> io::Result<()>;
    /// `fdatasync(2)` of `file`.
    fn sync_data(&self, file: &File, path: &Path) -> io::Result<()>;
    /// Cuts `file` to `len` bytes.
    fn set_len(&self, file: &File, path: &Path, len: u64) -> io::Result<()>;
    /// Opens `path` for appending, creating it.
    fn open_append(&self, path: &Path) -> io::Result<File>;
    /// Creates (truncating) `path`, writes `bytes`, and syncs them when `sync`.
    fn write_file(&self, path: &Path, bytes: &[u8], sync: bool) -> io::Result<()>;
    /// `rename(2)`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
}

/// The real filesystem.
#[derive(Debug, Clone, Copy, Default)]
pub struct Disk;

impl Storage for Disk {
    fn append(&self, file: &mut File, _path: &Path, buf: &[u8]) -> io::Result<()> {
        file.write_all(buf)
    }
    fn sync_data(&self, file: &File, _path: &Path) -> io::Result<()> {
        file.sync_data()
    }
    fn set_len(&self, file: &File, _path: &Path, len: u64) -> io::Result<()> {
        file.set_len(len)
    }
    fn open_append(&self, path: &Path) -> io::Result<File> {
        OpenOptions::new().create(true).append(true).open(path)
    }
    fn write_file(&self, path: &Path, bytes: &[u8], sync: bool) -> io::Result<()> {
        let mut f = File::create(path)?;
        f.write_all(bytes)?;
        if sync {
            f.sync_data()?;
        }
        Ok(())
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
}

/// The real filesystem with writes that fail on demand: while armed with an errno
/// ([`Faulty::fail`]), each write operation fails with it, except that an append first
/// writes up to `short_bytes` of its buffer (a disk filling up mid-record). Truncation
/// (`set_len`) fails too by default, as it does on a read-only filesystem; on a full one it
/// succeeds, which [`Faulty::allow_truncate`] models.
#[derive(Debug, Default)]
pub struct Faulty {
    errno: AtomicI32,
    short_bytes: AtomicU64,
    truncate_ok: AtomicI32,
    failures: AtomicU64,
}

impl Faulty {
    pub fn new() -> Arc<Self> {
        Arc::new(Faulty::default())
    }

    /// Fails every write with `errno` (`libc::ENOSPC`, `libc::EROFS`, ...) until [`Faulty::heal`].
    pub fn fail(&self, errno: i32) {
        self.errno.store(errno, Ordering::SeqCst);
    }

    /// Lets failing appends write this many bytes before they fail.
    pub fn short_bytes(&self, n: u64) {
        self.short_bytes.store(n, Ordering::SeqCst);
    }

    /// Lets `set_len` succeed while armed (a full disk can still shrink a file).
    pub fn allow_truncate(&self, ok: bool) {
        self.truncate_ok.store(i32::from(ok), Ordering::SeqCst);
    }

    /// Writes succeed again.
    pub fn heal(&self) {
        self.errno.store(0, Ordering::SeqCst);
    }

    /// Writes failed so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::SeqCst)
    }

    fn armed(&self) -> io::Result<()> {
        match self.errno.load(Ordering::SeqCst) {
            0 => Ok(()),
            e => {
                self.failures.fetch_add(1, Ordering::SeqCst);
                Err(io::Error::from_raw_os_error(e))
            }
        }
    }
}

impl Storage for Faulty {
    fn append(&self, file: &mut File, path: &Path, buf: &[u8]) -> io::Result<()> {
        if let Err(e) = self.armed() {
            let n = (self.short_bytes.load(Ordering::SeqCst) as usize).min(buf.len());
            Disk.append(file, path, &buf[..n])?;
            return Err(e);
        }
        Disk.append(file, path, buf)
    }
    fn sync_data(&self, file: &File, path: &Path) -> io::Result<()> {
        self.armed()?;
        Disk.sync_data(file, path)
    }
    fn set_len(&self, file: &File, path: &Path, len: u64) -> io::Result<()> {
        if self.truncate_ok.load(Ordering::SeqCst) == 0 {
            self.armed()?;
        }
        Disk.set_len(file, path, len)
    }
    fn open_append(&self, path: &Path) -> io::Result<File> {
        self.armed()?;
        Disk.open_append(path)
    }
    fn write_file(&self, path: &Path, bytes: &[u8], sync: bool) -> io::Result<()> {
        self.armed()?;
        Disk.write_file(path, bytes, sync)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.armed()?;
        Disk.rename(from, to)
    }
}
