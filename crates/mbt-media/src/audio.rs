//! Sound files of any kind the data sources ship -> mono `f32` at the model's rate.
//!
//! The AVE-Intersect sources come as Ogg/Vorbis (minetest, tuxpaint), 8/16-bit WAV (the games),
//! MP3 (Scratch) and possibly FLAC. WAV goes through [`crate::wav`] (hound, integer scaling like
//! torchaudio); Ogg/Vorbis, MP3 and FLAC through symphonia, a pure-Rust decoder. Files of
//! other kinds (MP4/M4A, Ogg/Opus, AIFF, ...) are refused naming what they are
//! ([`crate::sniff`]), so a user knows what to convert. Channels are averaged, and the
//! result is resampled with the tokenizer's own polyphase resampler
//! ([`mbt_core::audio::resample`]), so training data and the daemon share one resampling path.

use std::path::Path;

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use crate::wav::Audio;
use crate::{sniff, MediaError};

/// Decodes a sound file by its content type (WAV, Ogg/Vorbis, Ogg/FLAC, MP3 or FLAC), keeping
/// its channels and rate.
pub fn read(path: &Path) -> Result<Audio, MediaError> {
    let bytes = std::fs::read(path).map_err(|e| MediaError::io(path, e))?;
    decode(bytes, path)
}

/// Whether `bytes` start like an MP3 file: an ID3v2 tag, or an MPEG audio frame sync that is
/// not AAC's (ADTS frames share the sync word).
fn looks_like_mp3(bytes: &[u8]) -> bool {
    bytes.starts_with(b"ID3")
        || (bytes.len() > 1
            && bytes[0] == 0xFF
            && bytes[1] & 0xE0 == 0xE0
            && !sniff::is_adts(bytes))
}

/// What the sound reader takes, and how to get there: the tail of every refusal.
const TAKES: &str = "the sound reader takes WAV, Ogg/Vorbis, Ogg/FLAC, FLAC and MP3; convert it, \
e.g. `ffmpeg -i IN -c:a pcm_s16le OUT.wav`";

/// Decodes sound bytes (WAV, Ogg/Vorbis, MP3 or FLAC); `name` is used in errors. Anything
/// else is refused naming what it is (an MP4, an Ogg file of Opus, ...), not with the
/// decoder's complaint.
pub fn decode(bytes: Vec<u8>, name: &Path) -> Result<Audio, MediaError> {
    let mut hint = Hint::new();
    if bytes.starts_with(b"RIFF") || bytes.starts_with(b"RIFX") || bytes.starts_with(b"RF64") {
        // PCM and float through hound, G.711 and float64 through symphonia; the rest named.
        return crate::wav::read_bytes(&bytes, name);
    }
    if let Some(codec) = sniff::ogg_codec(&bytes) {
        if !matches!(codec, "Vorbis" | "FLAC") {
            return Err(MediaError::format(
                name,
                format!("an Ogg file holding {codec} is not supported: {TAKES}"),
            ));
        }
    } else if bytes.starts_with(b"fLaC") {
    } else if let Some(kind) = sniff::other_container(&bytes) {
        return Err(MediaError::format(
            name,
            format!("{kind} is not supported: {TAKES}"),
        ));
    } else if looks_like_mp3(&bytes) {
        hint.with_extension("mp3");
    } else {
        return Err(MediaError::format(
            name,
            "unknown sound format: expected a WAV (RIFF), Ogg/Vorbis (OggS), MP3 or FLAC (fLaC) file",
        ));
    }
    decode_symphonia(bytes, name, &hint)
}

/// The name of a codec symphonia knows of but is built without (its error says only
/// "unsupported codec").
fn codec_name(c: symphonia::core::codecs::CodecType) -> Option<&'static str> {
    use symphonia::core::codecs as k;
    Some(match c {
        k::CODEC_TYPE_ADPCM_MS => "MS ADPCM",
        k::CODEC_TYPE_ADPCM_IMA_WAV | k::CODEC_TYPE_ADPCM_IMA_QT => "IMA ADPCM",
        k::CODEC_TYPE_AAC => "AAC",
        k::CODEC_TYPE_ALAC => "Apple Lossless (ALAC)",
        k::CODEC_TYPE_OPUS => "Opus",
        k::CODEC_TYPE_SPEEX => "Speex",
        k::CODEC_TYPE_WMA => "Windows Media Audio",
        k::CODEC_TYPE_MP1 => "MPEG Layer I",
        k::CODEC_TYPE_MP2 => "MPEG Layer II",
        _ => return None,
    })
}

/// Decodes and converts to mono at `rate` Hz (a rate the tokenizer's resampler supports).
pub fn read_mono(path: &Path, rate: u32) -> Result<Vec<f32>, MediaError> {
    let audio = read(path)?;
    to_mono_rate(&audio, rate, path)
}

/// Mono mix of `audio` resampled to `rate`.
pub fn to_mono_rate(audio: &Audio, rate: u32, name: &Path) -> Result<Vec<f32>, MediaError> {
    let mono = audio.to_mono();
    if mono.is_empty() {
        return Err(MediaError::format(name, "the file holds no audio samples"));
    }
    mbt_core::audio::resample::resample(&mono, audio.sample_rate, rate).map_err(|e| {
        MediaError::format(
            name,
            format!("cannot resample {} Hz -> {rate} Hz: {e}", audio.sample_rate),
        )
    })
}

pub(crate) fn decode_symphonia(
    bytes: Vec<u8>,
    name: &Path,
    hint: &Hint,
) -> Result<Audio, MediaError> {
    let bad = |what: &str, e: SymError| MediaError::format(name, format!("{what}: {e}"));
    let mss = MediaSourceStream::new(Box::new(std::io::Cursor::new(bytes)), Default::default());
    let probed = symphonia::default::get_probe()
        .format(
            hint,
            mss,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .map_err(|e| bad("not a readable Ogg/Vorbis, MP3 or FLAC stream", e))?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| MediaError::format(name, "the container holds no audio track"))?;
    let track_id = track.id;
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|e| match codec_name(track.codec_params.codec) {
            Some(c) => {
                MediaError::format(name, format!("audio codec {c} is not supported: {TAKES}"))
            }
            None => bad("unsupported audio codec", e),
        })?;
    let mut rate = track.codec_params.sample_rate;
    let mut channels = track.codec_params.channels.map(|c| c.count());
    let mut samples = Vec::new();
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            // The normal end of a stream.
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(bad("corrupt audio stream", e)),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let buf = match decoder.decode(&packet) {
            Ok(b) => b,
            Err(e) => return Err(bad("corrupt audio packet", e)),
        };
        let spec = *buf.spec();
        rate.get_or_insert(spec.rate);
        channels.get_or_insert(spec.channels.count());
        let mut sb = SampleBuffer::<f32>::new(buf.capacity() as u64, spec);
        sb.copy_interleaved_ref(buf);
        samples.extend_from_slice(sb.samples());
    }
    let (Some(sample_rate), Some(channels)) = (rate, channels) else {
        return Err(MediaError::format(
            name,
            "the stream states no sample rate or channel count",
        ));
    };
    if channels == 0 || samples.is_empty() {
        return Err(MediaError::format(
            name,
            "the stream holds no audio samples",
        ));
    }
    if samples.iter().any(|s| !s.is_finite()) {
        return Err(MediaError::format(name, "decoded samples are not finite"));
    }
    Ok(Audio {
        sample_rate,
        channels,
        samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wav_goes_through_hound_and_is_resampled() {
        let dir = std::env::temp_dir().join(format!("mbt-media-audio-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("tone.wav");
        // 0.5 s of a 1 kHz sine at 32 kHz -> 8000 samples at 16 kHz.
        let x: Vec<f32> = (0..16_000)
            .map(|i| 0.5 * (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 32_000.0).sin())
            .collect();
        crate::wav::write_mono_i16(&p, 32_000, &x).unwrap();
        let y = read_mono(&p, 16_000).unwrap();
        assert_eq!(y.len(), 8_000);
        let rms = (y[1000..7000].iter().map(|v| v * v).sum::<f32>() / 6000.0).sqrt();
        assert!((rms - 0.5 / 2f32.sqrt()).abs() < 0.01, "rms {rms}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unknown_and_corrupt_streams_are_errors_naming_the_file() {
        let e = decode(b"hello".to_vec(), Path::new("x.mp3"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("x.mp3:") && e.contains("expected a WAV"),
            "{e}"
        );
        let e = decode(b"OggS\0garbage garbage".to_vec(), Path::new("bad.ogg"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("bad.ogg:"), "{e}");
        let e = decode(b"fLaC\0\0\0\x22".to_vec(), Path::new("bad.flac"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("bad.flac:"), "{e}");
    }
}
