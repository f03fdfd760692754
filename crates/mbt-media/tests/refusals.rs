//! Sound files in encodings or containers the decoders do not take are refused with an error
//! that names the file and what the file is, so a user knows what to convert (issue 33, item 4).
//!
//! The fixtures are real files made by Debian's sox and ffmpeg (`fixtures/make_fixtures.sh`,
//! versions in `fixtures/versions.txt`), not hand-written headers: what a user's tools produce
//! is what is refused.

use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The error of `read` on `name`, which must name the file and contain every one of `what`.
fn refused(
    read: fn(&Path) -> Result<mbt_media::wav::Audio, mbt_media::MediaError>,
    name: &str,
    what: &[&str],
) {
    let path = fixture(name);
    let e = match read(&path) {
        Ok(a) => panic!(
            "{name}: decoded ({} frames), expected a refusal",
            a.frames()
        ),
        Err(e) => e.to_string(),
    };
    // Shown with `--nocapture`: what a user reads.
    eprintln!("{e}");
    assert!(
        e.contains(&path.display().to_string()),
        "{name}: error does not name the file: {e}"
    );
    for w in what {
        assert!(e.contains(w), "{name}: error does not say `{w}`: {e}");
    }
    assert!(
        !e.contains("inconsistent fmt chunk"),
        "{name}: hound's message instead of the format: {e}"
    );
}

/// WAV files whose format tag neither reader decodes: both `wav::read` (the daemon's replay,
/// `mbt tokenize`) and `audio::read` (data import) name the encoding and its tag.
#[test]
fn wav_encodings_without_a_decoder_are_named() {
    let cases: &[(&str, &[&str])] = &[
        ("wav_ms_adpcm.wav", &["MS ADPCM", "0x0002"]),
        ("wav_ima_adpcm.wav", &["IMA ADPCM", "0x0011"]),
        ("wav_gsm.wav", &["GSM 6.10", "0x0031"]),
        ("wav_mp3.wav", &["MPEG Layer III", "0x0055"]),
        ("wav_g726.wav", &["G.726", "0x0045"]),
        ("wav_rifx.wav", &["RIFX", "big-endian"]),
        ("wav_rf64.wav", &["RF64"]),
    ];
    for (name, what) in cases {
        refused(mbt_media::wav::read, name, what);
        refused(mbt_media::audio::read, name, what);
        // The message says what the reader does take, so the user knows what to convert to.
        let e = mbt_media::wav::read(&fixture(name))
            .unwrap_err()
            .to_string();
        assert!(e.contains("16-bit PCM"), "{name}: {e}");
    }
}

/// G.711 (A-law, µ-law) and 64-bit float are decoded by both readers (hound takes none of
/// them; symphonia does), so the daemon replays what data import takes; the 20 ms 440 Hz
/// tone at half scale comes back as such.
#[test]
fn g711_and_float64_wav_are_decoded_by_both_readers() {
    for name in ["wav_alaw.wav", "wav_mulaw.wav", "wav_float64.wav"] {
        for read in [mbt_media::wav::read, mbt_media::audio::read] {
            let a = read(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                (a.sample_rate, a.channels, a.frames()),
                (8000, 1, 160),
                "{name}"
            );
            let peak = a.samples.iter().fold(0f32, |m, s| m.max(s.abs()));
            assert!((0.45..0.55).contains(&peak), "{name}: peak {peak}");
        }
    }
}

/// WAVE_FORMAT_EXTENSIBLE with a PCM or float sub-format is an ordinary WAV.
#[test]
fn extensible_pcm_and_float64_are_decoded() {
    for name in ["wav_ext_pcm16_4ch.wav", "wav_ext_float64_4ch.wav"] {
        let a = mbt_media::wav::read(&fixture(name)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (a.sample_rate, a.channels, a.frames()),
            (8000, 4, 160),
            "{name}"
        );
    }
}

/// Containers and codecs symphonia is built without: the sniffed kind is named.
#[test]
fn other_sound_formats_are_named() {
    let cases: &[(&str, &[&str])] = &[
        ("ogg_opus.opus", &["Opus"]),
        ("ogg_speex.spx", &["Speex"]),
        ("m4a_aac.m4a", &["MP4"]),
        ("adts_aac.aac", &["AAC"]),
        ("asf_wma.wma", &["ASF", "WMA"]),
        ("webm_opus.webm", &["Matroska/WebM"]),
        ("aiff_pcm.aiff", &["AIFF"]),
        ("au_pcm.au", &["Sun/NeXT AU"]),
    ];
    for (name, what) in cases {
        refused(mbt_media::audio::read, name, what);
    }
    // The WAV reader names them too rather than calling them ill-formed WAV.
    refused(
        mbt_media::wav::read,
        "ogg_opus.opus",
        &["not a WAV file", "Ogg"],
    );
    refused(
        mbt_media::wav::read,
        "aiff_pcm.aiff",
        &["not a WAV file", "AIFF"],
    );
}
