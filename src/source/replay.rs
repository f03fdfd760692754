//! Replay of a recorded clip: the demo layout (`audio.wav` + `frames/*.jpg` + `timeline.json`)
//! or a data set clip (`ID.wav` + `ID.mjpeg` or `ID.y4m`).
//!
//! Timestamps are the media position (sample count / rate, frame index / fps), starting at 0
//! with the pipeline clock. Paced (`replay.realtime = true`) each period or frame is held back
//! until the clock reaches its timestamp, exactly as a microphone and camera would deliver it;
//! otherwise it is delivered at once and the bounded channels make the replay go as fast as
//! inference does, with the same windows a paced run would cut.
//!
//! Files are checked when the source is built, so a wrong path is an error at startup naming
//! the file, not a source that fails later.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mbt_media::RgbFrame;

use super::{AudioChunk, Data, Format, Modality, Source, SourceError, VideoFrame};
use crate::clock::{secs_to_us, Clock, Micros};
use crate::config::ReplayConfig;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{path}: {reason} ({field})")]
    Clip {
        path: PathBuf,
        field: &'static str,
        reason: String,
    },
    #[error(transparent)]
    Media(#[from] mbt_media::MediaError),
}

fn clip_err(path: &Path, field: &'static str, reason: impl Into<String>) -> ReplayError {
    ReplayError::Clip {
        path: path.to_path_buf(),
        field,
        reason: reason.into(),
    }
}

/// The files of a clip, resolved from `[replay]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipFiles {
    pub audio: PathBuf,
    pub video: PathBuf,
    /// Frame rate for a frames directory (Y4M files carry their own); None if unknown.
    pub fps: Option<f64>,
}

/// Resolves `replay.clip` (a directory or a data set clip stem) and the explicit overrides.
pub fn resolve(cfg: &ReplayConfig) -> Result<ClipFiles, ReplayError> {
    let clip = &cfg.clip;
    let (audio, video) = if clip.is_dir() {
        let y4m = clip.join("video.y4m");
        let frames = clip.join("frames");
        let video = if frames.is_dir() || !y4m.exists() {
            frames
        } else {
            y4m
        };
        (clip.join("audio.wav"), video)
    } else {
        // A data set clip: `ID.mjpeg` (data v2) or `ID.y4m`.
        let mjpeg = clip.with_extension("mjpeg");
        let video = if mjpeg.exists() {
            mjpeg
        } else {
            clip.with_extension("y4m")
        };
        (clip.with_extension("wav"), video)
    };
    let audio = cfg.audio.clone().unwrap_or(audio);
    let video = cfg.video.clone().unwrap_or(video);
    let fps = if cfg.fps > 0 {
        Some(cfg.fps as f64)
    } else {
        timeline_fps(clip)
    };
    Ok(ClipFiles { audio, video, fps })
}

/// `fps` from the clip's `timeline.json` (the demo clip's), if there is one.
fn timeline_fps(clip: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(clip.join("timeline.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("fps")?.as_f64().filter(|f| *f > 0.0)
}

/// Paces delivery on the clock when asked to.
#[derive(Debug, Clone)]
pub struct Pacer {
    pub clock: Clock,
    pub realtime: bool,
}

impl Pacer {
    /// Holds back an item until the clock reaches `t`, when a real device would hand it over
    /// (for an audio period: the time of its last sample).
    pub(crate) fn wait(&self, t: Micros) {
        if self.realtime {
            let d = self.clock.until(t);
            if !d.is_zero() {
                std::thread::sleep(d);
            }
        }
    }
}

/// A WAV file as an audio source, in periods of `period_ms`.
pub struct AudioReplay {
    path: PathBuf,
    rate: u32,
    channels: u32,
    samples: Vec<f32>,
    period: usize,
    pos: usize,
    /// Laps played (`replay.loops`), and how many to play (0: for ever).
    lap: u64,
    loops: u32,
    pacer: Pacer,
}

impl AudioReplay {
    pub fn new(path: &Path, period_ms: u32, pacer: Pacer) -> Result<Self, ReplayError> {
        let audio = mbt_media::wav::read(path)?;
        if !mbt_core::audio::SUPPORTED_RATES.contains(&audio.sample_rate) {
            return Err(clip_err(
                path,
                "replay.audio",
                format!(
                    "{} Hz is not a rate the resampler supports ({:?})",
                    audio.sample_rate,
                    mbt_core::audio::SUPPORTED_RATES
                ),
            ));
        }
        let samples = audio.to_mono();
        if samples.is_empty() {
            return Err(clip_err(path, "replay.audio", "holds no samples"));
        }
        Ok(AudioReplay {
            path: path.to_path_buf(),
            rate: audio.sample_rate,
            channels: audio.channels as u32,
            period: ((audio.sample_rate as u64 * period_ms as u64) / 1000).max(1) as usize,
            samples,
            pos: 0,
            lap: 0,
            loops: 1,
            pacer,
        })
    }

    /// Plays the file `loops` times (0: for ever), each lap's timestamps after the last's.
    pub fn looped(mut self, loops: u32) -> Self {
        self.loops = loops;
        self
    }

    pub fn duration_s(&self) -> f64 {
        self.samples.len() as f64 / self.rate as f64
    }
}

impl Source for AudioReplay {
    fn modality(&self) -> Modality {
        Modality::Audio
    }

    fn name(&self) -> String {
        format!("replay:{}", self.path.display())
    }

    fn live(&self) -> bool {
        false
    }

    fn open(&mut self) -> Result<Format, SourceError> {
        Ok(Format::Audio {
            rate: self.rate,
            channels: self.channels,
        })
    }

    fn read(&mut self) -> Result<Option<Data>, SourceError> {
        if self.pos >= self.samples.len() {
            if !another_lap(&mut self.lap, self.loops) {
                return Ok(None);
            }
            self.pos = 0;
        }
        let end = (self.pos + self.period).min(self.samples.len());
        let lap0 = self.lap * self.samples.len() as u64;
        let t_us = secs_to_us((lap0 + self.pos as u64) as f64 / self.rate as f64);
        // A microphone hands a period over when its last sample is in.
        self.pacer
            .wait(secs_to_us((lap0 + end as u64) as f64 / self.rate as f64));
        let chunk = AudioChunk {
            t_us,
            rate: self.rate,
            samples: self.samples[self.pos..end].to_vec(),
        };
        self.pos = end;
        Ok(Some(Data::Audio(chunk)))
    }
}

enum Frames {
    /// Image files, decoded one by one as they are replayed.
    Files(Vec<PathBuf>),
    /// A Y4M file, decoded up front (data set clips are a few seconds long).
    Decoded(Vec<Arc<RgbFrame>>),
}

/// A frames directory or a Y4M file as a video source.
pub struct VideoReplay {
    path: PathBuf,
    frames: Frames,
    fps: f64,
    width: u32,
    height: u32,
    next: usize,
    lap: u64,
    loops: u32,
    pacer: Pacer,
}

/// Starts the next lap if `loops` (0: for ever) allows one.
fn another_lap(lap: &mut u64, loops: u32) -> bool {
    if loops != 0 && *lap + 1 >= loops as u64 {
        return false;
    }
    *lap += 1;
    true
}

impl VideoReplay {
    pub fn new(path: &Path, fps: Option<f64>, pacer: Pacer) -> Result<Self, ReplayError> {
        let ext = path.extension().and_then(|e| e.to_str());
        let (frames, fps, first) = if ext == Some("mjpeg") {
            let (decoded, own_fps) = mbt_media::mjpeg::read(path)?;
            let fps = own_fps.map(f64::from).or(fps).ok_or_else(|| {
                clip_err(
                    path,
                    "replay.fps",
                    "this Motion JPEG file names no frame rate: set replay.fps",
                )
            })?;
            let frames: Vec<Arc<RgbFrame>> = decoded.into_iter().map(Arc::new).collect();
            let first = frames
                .first()
                .map(|f| (f.width, f.height))
                .ok_or_else(|| clip_err(path, "replay.video", "holds no frames"))?;
            (Frames::Decoded(frames), fps, first)
        } else if ext == Some("y4m") {
            let bytes = std::fs::read(path).map_err(|e| mbt_media::MediaError::io(path, e))?;
            let fps = y4m_fps(&bytes).ok_or_else(|| {
                clip_err(
                    path,
                    "replay.video",
                    "the Y4M header has no valid F (frame rate)",
                )
            })?;
            let frames: Vec<Arc<RgbFrame>> = mbt_media::y4m::decode(&bytes, path)?
                .into_iter()
                .map(Arc::new)
                .collect();
            let first = frames
                .first()
                .map(|f| (f.width, f.height))
                .ok_or_else(|| clip_err(path, "replay.video", "holds no frames"))?;
            (Frames::Decoded(frames), fps, first)
        } else if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| mbt_media::MediaError::io(path, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    matches!(
                        p.extension()
                            .and_then(|e| e.to_str())
                            .map(|e| e.to_ascii_lowercase())
                            .as_deref(),
                        Some("png" | "jpg" | "jpeg")
                    )
                })
                .collect();
            files.sort();
            let Some(first) = files.first() else {
                return Err(clip_err(
                    path,
                    "replay.video",
                    "holds no .png/.jpg/.jpeg frames",
                ));
            };
            let fps = fps.ok_or_else(|| {
                clip_err(
                    path,
                    "replay.fps",
                    "a frames directory needs a frame rate: set replay.fps or put \"fps\" in the clip's timeline.json",
                )
            })?;
            let f = mbt_media::frames::read_image(first)?;
            (Frames::Files(files), fps, (f.width, f.height))
        } else {
            return Err(clip_err(
                path,
                "replay.video",
                "expected a directory of PNG/JPEG frames, a .y4m or an .mjpeg file",
            ));
        };
        Ok(VideoReplay {
            path: path.to_path_buf(),
            frames,
            fps,
            width: first.0 as u32,
            height: first.1 as u32,
            next: 0,
            lap: 0,
            loops: 1,
            pacer,
        })
    }

    /// Plays the frames `loops` times (0: for ever), each lap's timestamps after the last's.
    pub fn looped(mut self, loops: u32) -> Self {
        self.loops = loops;
        self
    }

    pub fn len(&self) -> usize {
        match &self.frames {
            Frames::Files(f) => f.len(),
            Frames::Decoded(f) => f.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn fps(&self) -> f64 {
        self.fps
    }
}

impl Source for VideoReplay {
    fn modality(&self) -> Modality {
        Modality::Video
    }

    fn name(&self) -> String {
        format!("replay:{}", self.path.display())
    }

    fn live(&self) -> bool {
        false
    }

    fn open(&mut self) -> Result<Format, SourceError> {
        Ok(Format::Video {
            fps: self.fps,
            width: self.width,
            height: self.height,
        })
    }

    fn read(&mut self) -> Result<Option<Data>, SourceError> {
        if self.next >= self.len() {
            if !another_lap(&mut self.lap, self.loops) {
                return Ok(None);
            }
            self.next = 0;
        }
        let i = self.next;
        self.next += 1;
        let t_us = secs_to_us((self.lap * self.len() as u64 + i as u64) as f64 / self.fps);
        self.pacer.wait(t_us);
        let frame = match &self.frames {
            Frames::Decoded(f) => f[i].clone(),
            Frames::Files(files) => match mbt_media::frames::read_image(&files[i]) {
                Ok(f) => Arc::new(f),
                Err(e) => {
                    return Err(SourceError::Skipped {
                        kind: super::SkipKind::CorruptFrame,
                        reason: e.to_string(),
                    })
                }
            },
        };
        Ok(Some(Data::Video(VideoFrame { t_us, frame })))
    }
}

/// The frame rate in a Y4M stream header (`F30000:1001`).
pub fn y4m_fps(bytes: &[u8]) -> Option<f64> {
    let end = bytes.iter().position(|&b| b == b'\n')?;
    let header = std::str::from_utf8(&bytes[..end]).ok()?;
    let f = header
        .split_ascii_whitespace()
        .find_map(|t| t.strip_prefix('F'))?;
    let (n, d) = f.split_once(':')?;
    let (n, d): (f64, f64) = (n.parse().ok()?, d.parse().ok()?);
    (n > 0.0 && d > 0.0).then_some(n / d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_looped_replay_continues_its_timestamps_and_stops_after_its_laps() {
        let dir = std::env::temp_dir().join(format!("mbtd-replay-loop-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let wav = dir.join("a.wav");
        mbt_media::wav::write_mono_i16(&wav, 16_000, &[0.0f32; 16_000]).unwrap();
        let pacer = Pacer {
            clock: Clock::start(),
            realtime: false,
        };
        let mut a = AudioReplay::new(&wav, 500, pacer).unwrap().looped(3);
        let mut times = Vec::new();
        while let Some(Data::Audio(c)) = a.read().unwrap() {
            times.push(c.t_us);
        }
        assert_eq!(
            times,
            [0, 500_000, 1_000_000, 1_500_000, 2_000_000, 2_500_000]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn y4m_frame_rates() {
        assert_eq!(y4m_fps(b"YUV4MPEG2 W4 H4 F8:1 Ip C444\nFRAME"), Some(8.0));
        let ntsc = y4m_fps(b"YUV4MPEG2 F30000:1001 W2 H2\n").unwrap();
        assert!((ntsc - 29.97).abs() < 1e-3);
        assert_eq!(y4m_fps(b"YUV4MPEG2 W4 H4\n"), None);
        assert_eq!(y4m_fps(b"YUV4MPEG2 F0:1\n"), None);
    }

    #[test]
    fn clip_layouts_resolve() {
        let demo = resolve(&ReplayConfig {
            clip: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/models/demo")),
            ..Default::default()
        })
        .unwrap();
        assert!(demo.audio.ends_with("demo/audio.wav") && demo.video.ends_with("demo/frames"));
        assert_eq!(demo.fps, Some(8.0), "from timeline.json");
        let ds = resolve(&ReplayConfig {
            clip: PathBuf::from("/data/ave/test/test-00001"),
            fps: 0,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(ds.audio, PathBuf::from("/data/ave/test/test-00001.wav"));
        assert_eq!(ds.video, PathBuf::from("/data/ave/test/test-00001.y4m"));
        assert_eq!(ds.fps, None);
    }
}
