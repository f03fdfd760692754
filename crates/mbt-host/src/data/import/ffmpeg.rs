//! Decoding the user's media with the `ffmpeg` and `ffprobe` programs, run as subprocesses.
//!
//! Why programs and not bindings: the host tool runs on a PC, where `ffmpeg` is one package
//! away (Debian/Ubuntu `ffmpeg`, Homebrew, winget), and it reads every container and codec a
//! phone or camera writes (MP4/H.264+AAC, MKV, WebM/VP8/VP9+Opus/Vorbis, AVI, MOV, FLAC, MP3...).
//! Bindings (`ffmpeg-sys`) would tie the build to one libav* version, need its headers and
//! clang at build time, and complicate the cross builds for the boards, which never import.
//! `ffprobe` reports containers and streams as JSON and says plainly what is wrong with a file
//! ("moov atom not found", "Invalid data found when processing input"), which the errors here
//! pass on with the file's name. Samples and pixels come back raw on a pipe (`f32le`, `rgb24`),
//! so nothing is written to disk and no temporary files are left behind.

use std::path::Path;
use std::process::{Command, Output};

use anyhow::{bail, Context, Result};
use mbt_media::RgbFrame;

/// What `ffprobe` says about a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// Codec of the first video stream that is not a cover picture.
    pub video: Option<String>,
    /// Codec of the first audio stream.
    pub audio: Option<String>,
    /// Container duration, seconds, when known.
    pub duration: Option<f64>,
}

fn run(program: &str, args: &[&str], file: &Path) -> Result<Output> {
    Command::new(program).args(args).output().with_context(|| {
        format!(
            "{}: cannot run `{program}` (install it: Debian/Ubuntu package `ffmpeg`)",
            file.display()
        )
    })
}

/// The first line of a tool's error output that says something (for messages).
fn first_error(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    match lines.as_slice() {
        [] => "no message".into(),
        l => l[..l.len().min(3)].join("; "),
    }
}

fn path_arg(file: &Path) -> Result<&str> {
    file.to_str()
        .with_context(|| format!("{}: the path is not UTF-8", file.display()))
}

/// Lists a file's streams and duration; an unreadable or corrupt container is an error naming
/// the file and quoting ffprobe.
pub fn probe(file: &Path) -> Result<Probe> {
    let p = path_arg(file)?;
    let out = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type,codec_name:stream_disposition=attached_pic:format=duration",
            "-of",
            "json",
            p,
        ],
        file,
    )?;
    if !out.status.success() {
        bail!(
            "{}: not a readable media file (corrupt or truncated container?): ffprobe: {}",
            file.display(),
            first_error(&out.stderr)
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("{}: ffprobe printed no JSON", file.display()))?;
    let streams = v["streams"].as_array().cloned().unwrap_or_default();
    let codec = |kind: &str| {
        streams
            .iter()
            .find(|s| {
                s["codec_type"] == kind && s["disposition"]["attached_pic"].as_i64() != Some(1)
            })
            .map(|s| s["codec_name"].as_str().unwrap_or("unknown").to_string())
    };
    Ok(Probe {
        video: codec("video"),
        audio: codec("audio"),
        duration: v["format"]["duration"]
            .as_str()
            .and_then(|d| d.parse::<f64>().ok())
            .filter(|d| d.is_finite() && *d > 0.0),
    })
}

/// Runs `ffmpeg` with `args` after the input and returns its stdout; a failure names the file.
fn decode(file: &Path, input_args: &[&str], args: &[&str], what: &str) -> Result<Vec<u8>> {
    let p = path_arg(file)?;
    let mut all = vec!["-nostdin", "-v", "error"];
    all.extend_from_slice(input_args);
    all.extend_from_slice(&["-i", p]);
    all.extend_from_slice(args);
    all.push("-");
    let out = run("ffmpeg", &all, file)?;
    if !out.status.success() {
        bail!(
            "{}: cannot decode its {what}: ffmpeg: {}",
            file.display(),
            first_error(&out.stderr)
        );
    }
    if !out.stderr.is_empty() {
        eprintln!(
            "mbt data import: warning: {}: ffmpeg reported errors decoding its {what}: {}",
            file.display(),
            first_error(&out.stderr)
        );
    }
    Ok(out.stdout)
}

/// The first audio stream as mono samples at `rate` Hz.
pub fn audio(file: &Path, rate: u32) -> Result<Vec<f32>> {
    let r = rate.to_string();
    let bytes = decode(
        file,
        &[],
        &["-map", "0:a:0", "-vn", "-ac", "1", "-ar", &r, "-f", "f32le"],
        "audio",
    )?;
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// The first video stream at `fps`, scaled so its shorter side is `size` and centre-cropped
/// to `size` x `size` (what the tokenizer does to a camera's frames), RGB.
pub fn frames(file: &Path, fps: u32, size: usize) -> Result<Vec<RgbFrame>> {
    let filter = format!(
        "fps={fps},scale={size}:{size}:force_original_aspect_ratio=increase:flags=area,crop={size}:{size}"
    );
    let bytes = decode(
        file,
        &[],
        &[
            "-map", "0:v:0", "-an", "-vf", &filter, "-pix_fmt", "rgb24", "-f", "rawvideo",
        ],
        "video",
    )?;
    Ok(split_frames(bytes, size, size))
}

/// A picture at its own size, scaled down (never up) to fit `max_side`, as RGBA (transparency
/// kept): the still at `at` seconds of a video, or the picture itself (`at: None`).
pub fn picture(file: &Path, at: Option<f64>, max_side: usize) -> Result<image::RgbaImage> {
    let ts = at.map(|t| format!("{t:.3}"));
    let filter = format!(
        "scale=w='min({max_side},iw)':h='min({max_side},ih)':force_original_aspect_ratio=decrease"
    );
    let mut input = Vec::new();
    if let Some(ts) = &ts {
        input.extend(["-ss", ts.as_str()]);
    }
    let what = match &ts {
        Some(t) => format!("frame at {t} s"),
        None => "picture".into(),
    };
    let png = decode(
        file,
        &input,
        &[
            "-map",
            "0:v:0",
            "-frames:v",
            "1",
            "-vf",
            &filter,
            "-pix_fmt",
            "rgba",
            "-c:v",
            "png",
            "-f",
            "image2pipe",
        ],
        &what,
    )?;
    if png.is_empty() {
        bail!("{}: no {what} came out of ffmpeg", file.display());
    }
    Ok(image::load_from_memory(&png)
        .with_context(|| format!("{}: the {what} did not decode", file.display()))?
        .to_rgba8())
}

/// A still picture (JPEG, PNG...) scaled and centre-cropped like [`frames`].
pub fn still_frame(file: &Path, size: usize) -> Result<RgbFrame> {
    let filter = format!(
        "scale={size}:{size}:force_original_aspect_ratio=increase:flags=area,crop={size}:{size}"
    );
    let bytes = decode(
        file,
        &[],
        &[
            "-frames:v",
            "1",
            "-vf",
            &filter,
            "-pix_fmt",
            "rgb24",
            "-f",
            "rawvideo",
        ],
        "picture",
    )?;
    match split_frames(bytes, size, size).into_iter().next() {
        Some(f) => Ok(f),
        None => bail!("{}: the picture decoded to nothing", file.display()),
    }
}

fn split_frames(bytes: Vec<u8>, width: usize, height: usize) -> Vec<RgbFrame> {
    bytes
        .chunks_exact(width * height * 3)
        .map(|c| RgbFrame {
            width,
            height,
            data: c.to_vec(),
        })
        .collect()
}
