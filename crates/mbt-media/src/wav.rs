//! WAV decoding: 8/16/24/32-bit integer PCM, 32/64-bit float, and G.711 A-law / µ-law, any rate
//! and channel count, `WAVE_FORMAT_PCM` or `WAVE_FORMAT_EXTENSIBLE`.
//!
//! Integers are scaled to [-1, 1) by `2^(bits-1)`, exactly as `torchaudio.load` (and
//! `soundfile`) do, so the log-mel matches the reference recipe's input scale. PCM and 32-bit
//! float go through hound; 64-bit float, A-law and µ-law (old game sounds, telephone
//! recordings) through symphonia's PCM decoder, so `mbtd`'s replay takes what `mbt data
//! import` takes.
//!
//! Anything else is refused before a decoder sees it, naming the encoding from the header's
//! format tag (`WAV encoding MS ADPCM (format tag 0x0002) is not supported: ...`) and saying
//! what to convert to: hound's own message for such a file ("Ill-formed WAVE file: inconsistent
//! fmt chunk") sent users looking for a damaged file. The same goes for RIFX (big-endian) and
//! RF64 files, and for files that are not WAV at all (an Ogg, an MP4 renamed `.wav`).
//!
//! The whole file is read into memory first (the samples are held in memory anyway).

use std::path::Path;

use crate::sniff::{self, WavFmt, TAG_ALAW, TAG_FLOAT, TAG_MULAW, TAG_PCM};
use crate::MediaError;

/// What the WAV reader takes, and how to get there: the tail of every refusal.
const TAKES: &str = "the WAV reader takes 8/16/24/32-bit integer PCM, 32/64-bit float, A-law \
and µ-law; convert it to 16-bit PCM, e.g. `ffmpeg -i IN -c:a pcm_s16le OUT.wav` or \
`sox IN -e signed-integer -b 16 OUT.wav`";

/// Decoded audio: interleaved `f32` samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Audio {
    pub sample_rate: u32,
    pub channels: usize,
    /// `frames * channels` samples, interleaved.
    pub samples: Vec<f32>,
}

impl Audio {
    /// Mono by averaging the channels (a mono file is returned as is).
    pub fn to_mono(&self) -> Vec<f32> {
        if self.channels == 1 {
            return self.samples.clone();
        }
        let inv = 1.0 / self.channels as f32;
        self.samples
            .chunks_exact(self.channels)
            .map(|c| c.iter().sum::<f32>() * inv)
            .collect()
    }

    pub fn frames(&self) -> usize {
        self.samples.len() / self.channels.max(1)
    }
}

/// Reads a WAV file.
pub fn read(path: &Path) -> Result<Audio, MediaError> {
    let bytes = std::fs::read(path).map_err(|e| MediaError::io(path, e))?;
    read_bytes(&bytes, path)
}

/// Reads WAV bytes (for in-memory use and tests); `name` is used in errors.
pub fn read_bytes(bytes: &[u8], name: &Path) -> Result<Audio, MediaError> {
    let refuse =
        |what: String| MediaError::format(name, format!("{what} is not supported: {TAKES}"));
    if bytes.starts_with(b"RIFX") {
        return Err(refuse("a big-endian (RIFX) WAV file".into()));
    }
    if bytes.starts_with(b"RF64") || bytes.starts_with(b"BW64") {
        return Err(refuse(
            "an RF64 WAV file (the 64-bit form for files over 4 GiB)".into(),
        ));
    }
    if !(bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WAVE")) {
        if let Some(kind) = sniff::describe(bytes) {
            return Err(MediaError::format(
                name,
                format!("not a WAV file: it is {kind}; the WAV reader reads RIFF/WAVE files"),
            ));
        }
    }
    match sniff::wav_fmt(bytes) {
        // No readable fmt chunk: hound's message says what is wrong with the header.
        None => {}
        Some(WavFmt { tag: TAG_PCM, .. }) => {}
        Some(WavFmt {
            tag: TAG_FLOAT,
            bits: 32,
            ..
        }) => {}
        // Float64, A-law, mu-law: symphonia's PCM decoder.
        Some(WavFmt {
            tag: TAG_FLOAT | TAG_ALAW | TAG_MULAW,
            ..
        }) => {
            let mut hint = symphonia::core::probe::Hint::new();
            hint.with_extension("wav");
            return crate::audio::decode_symphonia(bytes.to_vec(), name, &hint);
        }
        Some(WavFmt {
            tag, extensible, ..
        }) => {
            let how = if extensible {
                format!("WAVE_FORMAT_EXTENSIBLE sub-format 0x{tag:04X}")
            } else {
                format!("format tag 0x{tag:04X}")
            };
            return Err(refuse(format!(
                "WAV encoding {} ({how})",
                sniff::wav_tag_name(tag)
            )));
        }
    }
    // A data chunk ending in a partial sample frame: drop the partial frame, as sox and
    // ffmpeg do, rather than refuse the whole file.
    let trimmed = sniff::trim_partial_frame(bytes);
    let bytes = trimmed.as_deref().unwrap_or(bytes);
    let reader = hound::WavReader::new(std::io::Cursor::new(bytes))
        .map_err(|e| MediaError::format(name, format!("not a readable WAV file: {e}")))?;
    decode(reader, name)
}

fn decode<R: std::io::Read>(
    mut reader: hound::WavReader<R>,
    path: &Path,
) -> Result<Audio, MediaError> {
    let spec = reader.spec();
    if spec.channels == 0 {
        return Err(MediaError::format(path, "WAV header says 0 channels"));
    }
    let bad = |e: hound::Error| {
        MediaError::format(path, format!("corrupt or truncated sample data: {e}"))
    };
    let samples: Vec<f32> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => reader
            .samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(bad)?,
        (hound::SampleFormat::Int, bits @ (8 | 16 | 24 | 32)) => {
            let scale = 1.0 / (1u64 << (bits - 1)) as f64;
            reader
                .samples::<i32>()
                .map(|s| s.map(|v| (v as f64 * scale) as f32))
                .collect::<Result<_, _>>()
                .map_err(bad)?
        }
        (fmt, bits) => {
            return Err(MediaError::format(
                path,
                format!("unsupported WAV sample format {fmt:?} {bits}-bit: {TAKES}"),
            ))
        }
    };
    Ok(Audio {
        sample_rate: spec.sample_rate,
        channels: spec.channels as usize,
        samples,
    })
}

/// Writes mono 16-bit PCM (used by tests and, later, event evidence clips).
pub fn write_mono_i16(path: &Path, rate: u32, samples: &[f32]) -> Result<(), MediaError> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let err = |e: hound::Error| MediaError::format(path, format!("cannot write WAV: {e}"));
    let mut w = hound::WavWriter::create(path, spec).map_err(err)?;
    for &s in samples {
        w.write_sample((s.clamp(-1.0, 1.0) * 32767.0).round() as i16)
            .map_err(err)?;
    }
    w.finalize().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav_bytes(
        spec: hound::WavSpec,
        write: impl FnOnce(&mut hound::WavWriter<&mut std::io::Cursor<Vec<u8>>>),
    ) -> Vec<u8> {
        let mut cur = std::io::Cursor::new(Vec::new());
        {
            let mut w = hound::WavWriter::new(&mut cur, spec).unwrap();
            write(&mut w);
            w.finalize().unwrap();
        }
        cur.into_inner()
    }

    #[test]
    fn int_formats_scale_like_torchaudio() {
        let spec16 = hound::WavSpec {
            channels: 1,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let b = wav_bytes(spec16, |w| {
            for v in [-32768i16, 0, 16384, 32767] {
                w.write_sample(v).unwrap();
            }
        });
        let a = read_bytes(&b, Path::new("t.wav")).unwrap();
        assert_eq!(a.samples, vec![-1.0, 0.0, 0.5, 32767.0 / 32768.0]);

        let spec24 = hound::WavSpec {
            bits_per_sample: 24,
            ..spec16
        };
        let b = wav_bytes(spec24, |w| w.write_sample(-(1i32 << 22)).unwrap());
        assert_eq!(
            read_bytes(&b, Path::new("t.wav")).unwrap().samples,
            vec![-0.5]
        );

        let spec8 = hound::WavSpec {
            bits_per_sample: 8,
            ..spec16
        };
        let b = wav_bytes(spec8, |w| w.write_sample(64i8).unwrap());
        assert_eq!(
            read_bytes(&b, Path::new("t.wav")).unwrap().samples,
            vec![0.5]
        );
    }

    #[test]
    fn stereo_float_downmixes() {
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 48_000,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let b = wav_bytes(spec, |w| {
            for v in [0.5f32, -0.5, 1.0, 0.0] {
                w.write_sample(v).unwrap();
            }
        });
        let a = read_bytes(&b, Path::new("t.wav")).unwrap();
        assert_eq!((a.sample_rate, a.channels, a.frames()), (48_000, 2, 2));
        assert_eq!(a.to_mono(), vec![0.0, 0.5]);
    }

    #[test]
    fn garbage_and_truncation_are_errors_naming_the_file() {
        let e = read_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk", Path::new("bad.wav"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("bad.wav:"), "{e}");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut b = wav_bytes(spec, |w| {
            for _ in 0..100 {
                w.write_sample(1i16).unwrap();
            }
        });
        b.truncate(b.len() - 51);
        let e = read_bytes(&b, Path::new("cut.wav"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cut.wav"), "{e}");
        let e = read(Path::new("/nonexistent/x.wav"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/x.wav"), "{e}");
    }
    /// A 16-bit file whose data chunk ends in half a sample (Scratch's `Rooster.wav`, 34,221
    /// data bytes, is one in the pool): the whole samples are read, the odd byte dropped, as
    /// sox and ffmpeg do. Before, the data build stopped at the first such file.
    #[test]
    fn a_partial_last_sample_frame_is_dropped() {
        // RIFF header by hand: PCM, 2 channels, 16 kHz, 16-bit (block align 4), then a data
        // chunk of 7 bytes: one whole frame (16384, -16384) and 3 bytes of a second.
        let mut b = Vec::new();
        b.extend_from_slice(b"RIFF");
        b.extend_from_slice(&(4u32 + 24 + 8 + 8).to_le_bytes());
        b.extend_from_slice(b"WAVEfmt ");
        b.extend_from_slice(&16u32.to_le_bytes());
        for v in [1u16, 2] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&16_000u32.to_le_bytes());
        b.extend_from_slice(&64_000u32.to_le_bytes());
        for v in [4u16, 16] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(b"data");
        b.extend_from_slice(&7u32.to_le_bytes());
        for v in [16384i16, -16384, 100] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.push(0x7f);
        b.push(0); // the pad byte of an odd-length chunk
        let a = read_bytes(&b, Path::new("rooster.wav")).unwrap();
        assert_eq!((a.channels, a.frames()), (2, 1));
        assert_eq!(a.samples, vec![0.5, -0.5]);
        // The sound reader (data build, import) takes it the same way.
        let a = crate::audio::decode(b, Path::new("rooster.wav")).unwrap();
        assert_eq!(a.samples, vec![0.5, -0.5]);
    }
}
