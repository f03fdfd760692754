//! Evidence per event: the window's key frame as JPEG and its audio as WAV, in one directory,
//! named by the event id (`<id>.jpg`, `<id>.wav`), so a user (or Home Assistant through the
//! MQTT snapshot) can see and hear what the detector saw; and the event's latest record as
//! JSON (`<id>.json`), so the daemon's web page lists past events after a restart.
//!
//! Bounded: after each save the oldest files (by modification time, then name) are deleted
//! until the directory holds at most `max_bytes` of evidence; the files just written are never
//! the ones deleted. Events the user marked ([`EvidenceStore::set_marked`]: the daemon's web page
//! writes `labels.csv` for `mbt data import`) are deleted last: only when the unmarked ones are
//! gone and the budget is still exceeded (logged), so the bound on disk always holds. Files are written under a temporary name and renamed, so a reader (the
//! MQTT snapshot publisher) never sees half a JPEG. Only files this module names (`*.jpg`,
//! `*.wav` with a safe id) are counted or deleted: nothing else in the directory is touched.
//!
//! A disk that refuses writes (full, read-only): the save fails with the path and the OS error
//! and leaves no temporary file and the earlier files whole; the caller logs it (at most once
//! a minute) and counts it, and the event goes out without new evidence. Writes go through
//! [`crate::storage::Storage`], where tests make them fail.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::config::EvidenceConfig;
use crate::storage::{Disk, Storage};

#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error("evidence {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("evidence: event id `{0}` cannot name a file (use letters, digits, `.`, `_`, `-`)")]
    BadId(String),
    #[error("evidence: frame {width}x{height} needs {want} RGB bytes, got {got}")]
    BadFrame {
        width: usize,
        height: usize,
        want: usize,
        got: usize,
    },
    #[error("evidence {}: encoding: {reason}", path.display())]
    Encode { path: PathBuf, reason: String },
}

/// An RGB8 frame, rows top to bottom, `width * height * 3` bytes.
#[derive(Debug, Clone, Copy)]
pub struct FrameRef<'a> {
    pub width: usize,
    pub height: usize,
    pub rgb: &'a [u8],
}

/// Mono audio samples in [-1, 1] at `rate` Hz.
#[derive(Debug, Clone, Copy)]
pub struct AudioRef<'a> {
    pub rate: u32,
    pub samples: &'a [f32],
}

/// What one save produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Saved {
    pub jpeg: Option<PathBuf>,
    pub wav: Option<PathBuf>,
    /// Older files deleted to stay within the budget.
    pub removed: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Item {
    mtime: SystemTime,
    name: String,
    bytes: u64,
}

/// The evidence directory.
#[derive(Debug)]
pub struct EvidenceStore {
    dir: PathBuf,
    max_bytes: u64,
    quality: u8,
    frame: bool,
    audio: bool,
    index: Mutex<(BTreeSet<Item>, u64)>,
    /// Event ids whose files go last (marked for training).
    pinned: Mutex<BTreeSet<String>>,
    /// Where the files' writes go: the disk, or a test's failing one.
    storage: Arc<dyn Storage>,
}

fn io_err(path: &Path, source: std::io::Error) -> EvidenceError {
    EvidenceError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Whether `id` can be a file name as is.
pub fn safe_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 200
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn ours(name: &str) -> bool {
    name.strip_suffix(".jpg")
        .or_else(|| name.strip_suffix(".wav"))
        .or_else(|| name.strip_suffix(".json"))
        .is_some_and(safe_id)
}

impl EvidenceStore {
    /// Opens (creating) the directory from the config and indexes what is already there.
    pub fn open(cfg: &EvidenceConfig) -> Result<Self, EvidenceError> {
        Self::open_pinned(cfg, std::iter::empty())
    }

    /// [`EvidenceStore::open`] with the ids already marked (pinned before the first clean-up).
    pub fn open_pinned(
        cfg: &EvidenceConfig,
        pinned: impl IntoIterator<Item = String>,
    ) -> Result<Self, EvidenceError> {
        let dir = cfg.dir();
        fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        let mut items = BTreeSet::new();
        let mut total = 0;
        for entry in fs::read_dir(&dir).map_err(|e| io_err(&dir, e))? {
            let entry = entry.map_err(|e| io_err(&dir, e))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if !ours(&name) {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            total += meta.len();
            items.insert(Item {
                mtime,
                name,
                bytes: meta.len(),
            });
        }
        let store = EvidenceStore {
            dir,
            max_bytes: cfg.max_bytes,
            quality: cfg.jpeg_quality.clamp(1, 100),
            frame: cfg.frame,
            audio: cfg.audio,
            index: Mutex::new((items, total)),
            pinned: Mutex::new(pinned.into_iter().collect()),
            storage: Arc::new(Disk),
        };
        store.enforce(&[])?;
        Ok(store)
    }

    /// Writes through `storage` from now on (a test's [`crate::storage::Faulty`]).
    pub fn with_storage(mut self, storage: Arc<dyn Storage>) -> Self {
        self.storage = storage;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Marks (or unmarks) event `id`'s files as wanted for training: deleted last.
    pub fn set_marked(&self, id: &str, on: bool) {
        if let Ok(mut p) = self.pinned.lock() {
            if on {
                p.insert(id.to_string());
            } else {
                p.remove(id);
            }
        }
    }

    /// Where the JPEG of event `id` is (or would be).
    pub fn jpeg_path(&self, id: &str) -> PathBuf {
        jpeg_path(&self.dir, id)
    }

    pub fn wav_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.wav"))
    }

    /// Bytes of evidence on disk now.
    pub fn bytes(&self) -> u64 {
        self.index.lock().map(|g| g.1).unwrap_or(0)
    }

    /// Writes the key frame and the audio of event `id` (either may be absent; a repeated save
    /// for the same id replaces its files), then trims the directory to the budget.
    pub fn save(
        &self,
        id: &str,
        frame: Option<FrameRef<'_>>,
        audio: Option<AudioRef<'_>>,
    ) -> Result<Saved, EvidenceError> {
        if !safe_id(id) {
            return Err(EvidenceError::BadId(id.to_string()));
        }
        let mut saved = Saved::default();
        let mut keep = Vec::new();
        if let (Some(f), true) = (frame, self.frame) {
            let path = self.jpeg_path(id);
            self.write_atomic(&path, &encode_jpeg(&path, f, self.quality)?)?;
            keep.push(format!("{id}.jpg"));
            saved.jpeg = Some(path);
        }
        if let (Some(a), true) = (audio, self.audio) {
            let path = self.wav_path(id);
            self.write_atomic(&path, &encode_wav(&path, a)?)?;
            keep.push(format!("{id}.wav"));
            saved.wav = Some(path);
        }
        saved.removed = self.enforce(&keep)?;
        Ok(saved)
    }

    /// Writes (replacing) the record of event `id` (`<id>.json`, the bytes as given), counted
    /// in the budget like its media.
    pub fn save_record(&self, id: &str, json: &[u8]) -> Result<(), EvidenceError> {
        if !safe_id(id) {
            return Err(EvidenceError::BadId(id.to_string()));
        }
        let path = self.dir.join(format!("{id}.json"));
        self.write_atomic(&path, json)?;
        self.enforce(&[format!("{id}.json")])?;
        Ok(())
    }

    /// The records in the store, oldest first (by modification time), at most `limit` of the
    /// newest; files that cannot be read are skipped (logged by the caller's parse).
    pub fn records(&self, limit: usize) -> Vec<(String, Vec<u8>)> {
        let names: Vec<String> = match self.index.lock() {
            Ok(g) => {
                g.0.iter()
                    .filter(|i| i.name.ends_with(".json"))
                    .map(|i| i.name.clone())
                    .collect()
            }
            Err(_) => return Vec::new(),
        };
        let skip = names.len().saturating_sub(limit);
        names
            .into_iter()
            .skip(skip)
            .filter_map(|n| {
                let bytes = fs::read(self.dir.join(&n)).ok()?;
                Some((n, bytes))
            })
            .collect()
    }

    /// The path of evidence file `name` (`<id>.jpg` or `<id>.wav`) when the store holds it;
    /// `None` for any other name (so a web route cannot be walked out of the directory).
    pub fn media_path(&self, name: &str) -> Option<PathBuf> {
        let ok = name
            .strip_suffix(".jpg")
            .or_else(|| name.strip_suffix(".wav"))
            .is_some_and(safe_id);
        let held = self
            .index
            .lock()
            .map(|g| g.0.iter().any(|i| i.name == name))
            .unwrap_or(false);
        (ok && held).then(|| self.dir.join(name))
    }

    /// Writes `bytes` to a temporary file and renames it over `path`, through the storage
    /// seam: a full or read-only disk fails here, leaving the previous file (if any) whole and
    /// no temporary behind.
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), EvidenceError> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("evidence")
            .to_string();
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let written = self
            .storage
            .write_file(&tmp, bytes, false)
            .map_err(|e| io_err(&tmp, e))
            .and_then(|()| self.storage.rename(&tmp, path).map_err(|e| io_err(path, e)));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        let meta = fs::metadata(path).map_err(|e| io_err(path, e))?;
        if let Ok(mut g) = self.index.lock() {
            let (items, total) = &mut *g;
            if let Some(old) = items.iter().find(|i| i.name == name).cloned() {
                items.remove(&old);
                *total -= old.bytes;
            }
            *total += meta.len();
            items.insert(Item {
                mtime: meta.modified().unwrap_or_else(|_| SystemTime::now()),
                name,
                bytes: meta.len(),
            });
        }
        Ok(())
    }

    /// Deletes the oldest files until within budget, sparing `keep`; returns how many went.
    fn enforce(&self, keep: &[String]) -> Result<usize, EvidenceError> {
        let Ok(mut g) = self.index.lock() else {
            return Ok(0);
        };
        let pinned = self.pinned.lock().map(|p| p.clone()).unwrap_or_default();
        let is_pinned = |name: &str| {
            let id = name.rsplit_once('.').map(|(id, _)| id).unwrap_or(name);
            pinned.contains(id)
        };
        let (items, total) = &mut *g;
        let mut removed = 0;
        // Unmarked files first (oldest first), then marked ones if the budget needs it.
        for marked_pass in [false, true] {
            while *total > self.max_bytes {
                let Some(victim) = items
                    .iter()
                    .find(|i| !keep.contains(&i.name) && is_pinned(&i.name) == marked_pass)
                    .cloned()
                else {
                    break;
                };
                if marked_pass {
                    tracing::warn!(
                        "evidence: {} was marked for training but evidence.max_bytes ({}) is full of marked events; deleting it (raise evidence.max_bytes or import the marks)",
                        victim.name,
                        self.max_bytes
                    );
                }
                let path = self.dir.join(&victim.name);
                match fs::remove_file(&path) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(&path, e)),
                }
                items.remove(&victim);
                *total -= victim.bytes;
            }
        }
        Ok(removed)
    }
}

/// Where the JPEG of event `id` lives in `dir` (the MQTT snapshot publisher reads it).
pub fn jpeg_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.jpg"))
}

/// The frame as JPEG bytes (`path` names it in errors).
fn encode_jpeg(path: &Path, f: FrameRef<'_>, quality: u8) -> Result<Vec<u8>, EvidenceError> {
    let want = f.width.saturating_mul(f.height).saturating_mul(3);
    if f.rgb.len() != want || f.width == 0 || f.height == 0 {
        return Err(EvidenceError::BadFrame {
            width: f.width,
            height: f.height,
            want,
            got: f.rgb.len(),
        });
    }
    let (Ok(w), Ok(h)) = (u32::try_from(f.width), u32::try_from(f.height)) else {
        return Err(EvidenceError::BadFrame {
            width: f.width,
            height: f.height,
            want,
            got: f.rgb.len(),
        });
    };
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode(f.rgb, w, h, image::ExtendedColorType::Rgb8)
        .map_err(|e| EvidenceError::Encode {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    Ok(out)
}

/// The audio as 16-bit mono WAV bytes (`path` names it in errors).
fn encode_wav(path: &Path, a: AudioRef<'_>) -> Result<Vec<u8>, EvidenceError> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: a.rate.max(1),
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let enc = |e: hound::Error| EvidenceError::Encode {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut out = std::io::Cursor::new(Vec::new());
    let mut w = hound::WavWriter::new(&mut out, spec).map_err(enc)?;
    for &s in a.samples {
        let s = if s.is_finite() {
            s.clamp(-1.0, 1.0)
        } else {
            0.0
        };
        w.write_sample((s * 32767.0).round() as i16).map_err(enc)?;
    }
    w.finalize().map_err(enc)?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &Path, max: u64) -> EvidenceConfig {
        EvidenceConfig {
            dir: Some(dir.to_path_buf()),
            max_bytes: max,
            ..EvidenceConfig::default()
        }
    }

    fn noise_frame(w: usize, h: usize, seed: u32) -> Vec<u8> {
        let mut x = seed;
        (0..w * h * 3)
            .map(|_| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn writes_jpeg_and_wav_that_decode() {
        let t = tempfile::tempdir().unwrap();
        let s = EvidenceStore::open(&cfg(t.path(), 1 << 20)).unwrap();
        let rgb = noise_frame(32, 24, 1);
        let samples: Vec<f32> = (0..1600).map(|i| (i as f32 * 0.05).sin() * 0.5).collect();
        let saved = s
            .save(
                "1732630000000-0001",
                Some(FrameRef {
                    width: 32,
                    height: 24,
                    rgb: &rgb,
                }),
                Some(AudioRef {
                    rate: 16000,
                    samples: &samples,
                }),
            )
            .unwrap();
        let img = image::open(saved.jpeg.unwrap()).unwrap();
        assert_eq!((img.width(), img.height()), (32, 24));
        let r = hound::WavReader::open(saved.wav.unwrap()).unwrap();
        assert_eq!(r.spec().sample_rate, 16000);
        assert_eq!(r.len(), 1600);
        assert!(s.bytes() > 0);
    }

    #[test]
    fn stays_within_the_budget_deleting_the_oldest() {
        let t = tempfile::tempdir().unwrap();
        let max = 64 * 1024;
        let s = EvidenceStore::open(&cfg(t.path(), max)).unwrap();
        fs::write(t.path().join("notes.txt"), b"not evidence").unwrap();
        for i in 0..40 {
            let rgb = noise_frame(64, 64, i);
            s.save(
                &format!("ev-{i:03}"),
                Some(FrameRef {
                    width: 64,
                    height: 64,
                    rgb: &rgb,
                }),
                None,
            )
            .unwrap();
            assert!(s.bytes() <= max, "after {i}: {}", s.bytes());
        }
        let on_disk: u64 = fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".jpg"))
            .map(|e| e.metadata().unwrap().len())
            .sum();
        assert!(on_disk <= max);
        assert!(s.jpeg_path("ev-039").exists(), "the newest stays");
        assert!(!s.jpeg_path("ev-000").exists(), "the oldest went");
        assert!(
            t.path().join("notes.txt").exists(),
            "other files are not ours"
        );
        // Reopening indexes what is there and keeps the bound.
        let s2 = EvidenceStore::open(&cfg(t.path(), max)).unwrap();
        assert_eq!(s2.bytes(), on_disk);
    }

    #[test]
    fn marked_events_are_deleted_last_and_the_bound_still_holds() {
        let t = tempfile::tempdir().unwrap();
        let max = 64 * 1024;
        let save = |s: &EvidenceStore, i: u32| {
            let rgb = noise_frame(64, 64, i);
            let f = FrameRef {
                width: 64,
                height: 64,
                rgb: &rgb,
            };
            s.save(&format!("ev-{i:03}"), Some(f), None).unwrap();
        };
        // Marked before the store opened (labels.csv read at start): ev-000 and ev-001.
        let s = EvidenceStore::open_pinned(&cfg(t.path(), max), ["ev-000".to_string()]).unwrap();
        s.set_marked("ev-001", true);
        s.set_marked("ev-002", true);
        s.set_marked("ev-002", false);
        for i in 0..40 {
            save(&s, i);
            assert!(s.bytes() <= max, "after {i}: {}", s.bytes());
        }
        assert!(s.jpeg_path("ev-000").exists() && s.jpeg_path("ev-001").exists());
        assert!(
            !s.jpeg_path("ev-002").exists(),
            "unmarked again: deleted in turn"
        );
        assert!(s.jpeg_path("ev-039").exists());
        // A budget full of marked events: they go too (oldest first), the bound holds.
        let s =
            EvidenceStore::open_pinned(&cfg(t.path(), max), (0..200).map(|i| format!("ev-{i:03}")))
                .unwrap();
        for i in 40..80 {
            save(&s, i);
            assert!(s.bytes() <= max, "after {i}: {}", s.bytes());
        }
        assert!(!s.jpeg_path("ev-000").exists());
    }

    #[test]
    fn refuses_unsafe_ids_and_bad_frames() {
        let t = tempfile::tempdir().unwrap();
        let s = EvidenceStore::open(&cfg(t.path(), 1 << 20)).unwrap();
        for id in ["../x", "", ".hidden", "a/b", "a b"] {
            assert!(
                matches!(s.save(id, None, None), Err(EvidenceError::BadId(_))),
                "{id}"
            );
        }
        let e = s.save(
            "ok",
            Some(FrameRef {
                width: 4,
                height: 4,
                rgb: &[0; 5],
            }),
            None,
        );
        assert!(matches!(e, Err(EvidenceError::BadFrame { .. })));
        assert!(!s.jpeg_path("ok").exists());
    }

    #[test]
    fn records_survive_a_reopen_and_only_held_media_is_served() {
        let t = tempfile::tempdir().unwrap();
        let s = EvidenceStore::open(&cfg(t.path(), 1 << 20)).unwrap();
        s.save_record("ev-1", br#"{"id":"ev-1"}"#).unwrap();
        s.save_record("ev-2", br#"{"id":"ev-2"}"#).unwrap();
        s.save_record("ev-1", br#"{"id":"ev-1","kind":"end"}"#)
            .unwrap();
        assert!(s.save_record("../x", b"{}").is_err());
        let rgb = noise_frame(8, 8, 3);
        let frame = FrameRef {
            width: 8,
            height: 8,
            rgb: &rgb,
        };
        s.save("ev-2", Some(frame), None).unwrap();
        let s2 = EvidenceStore::open(&cfg(t.path(), 1 << 20)).unwrap();
        let recs = s2.records(10);
        assert_eq!(recs.len(), 2, "one record per id: {recs:?}");
        let ev1 = recs.iter().find(|(n, _)| n == "ev-1.json").unwrap();
        assert_eq!(ev1.1, br#"{"id":"ev-1","kind":"end"}"#.to_vec());
        assert_eq!(s2.records(1).len(), 1);
        assert_eq!(s2.media_path("ev-2.jpg"), Some(t.path().join("ev-2.jpg")));
        for bad in ["ev-2.wav", "ev-1.json", "../ev-2.jpg", "x.txt", "ev-9.jpg"] {
            assert_eq!(s2.media_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_disk_that_refuses_writes_fails_the_save_and_leaves_the_old_files_whole() {
        use crate::storage::Faulty;
        let t = tempfile::tempdir().unwrap();
        let faulty = Faulty::new();
        let store = EvidenceStore::open(&cfg(t.path(), 1 << 20))
            .unwrap()
            .with_storage(faulty.clone());
        let rgb = noise_frame(16, 8, 1);
        let frame = || FrameRef {
            width: 16,
            height: 8,
            rgb: &rgb,
        };
        let samples = vec![0.25f32; 1600];
        let audio = || AudioRef {
            rate: 16_000,
            samples: &samples,
        };
        store.save("e-1", Some(frame()), Some(audio())).unwrap();
        let before = fs::read(store.jpeg_path("e-1")).unwrap();
        let bytes = store.bytes();
        for errno in [libc::ENOSPC, libc::EROFS] {
            faulty.fail(errno);
            let e = store.save("e-1", Some(frame()), None).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(".e-1.jpg.tmp"), "{msg}");
            assert!(store.save("e-2", None, Some(audio())).is_err());
            assert!(store.save_record("e-2", b"{}").is_err());
            // The earlier file is whole, nothing half-written is left, the budget unchanged.
            assert_eq!(fs::read(store.jpeg_path("e-1")).unwrap(), before);
            let names: Vec<String> = fs::read_dir(t.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert!(
                names
                    .iter()
                    .all(|n| !n.ends_with(".tmp") && !n.starts_with("e-2")),
                "{names:?}"
            );
            assert_eq!(store.bytes(), bytes);
        }
        // Space returns: saving works again, without reopening the store.
        faulty.heal();
        store.save("e-2", Some(frame()), Some(audio())).unwrap();
        store.save_record("e-2", b"{}").unwrap();
        assert!(store.jpeg_path("e-2").is_file() && store.wav_path("e-2").is_file());
    }
}
