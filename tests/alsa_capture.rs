//! ALSA capture through the real alsa-lib, without a sound card: alsa-lib's `file` plugin
//! reads raw S16 samples from an `infile` (its slave, the `null` PCM, accepts any rate and
//! channel count). The configuration is a standalone file named by `ALSA_CONFIG_PATH`.
//!
//! The plugin's reads are not paced in real time and return zeros past the end of the file,
//! so the test reads exactly as many samples as it wrote and compares them.

use std::time::Duration;

use mbtd::clock::Clock;
use mbtd::source::alsa::AlsaSource;
use mbtd::source::{Data, Format, Source};

use crate::common::temp_dir;

fn capture(src: &mut AlsaSource, frames: usize) -> Vec<f32> {
    let mut got = Vec::new();
    while got.len() < frames {
        match src.read() {
            Ok(Some(Data::Audio(c))) => got.extend(c.samples),
            Ok(other) => panic!("expected audio, got {other:?}"),
            Err(e) => panic!("read failed: {e}"),
        }
    }
    got.truncate(frames);
    got
}

#[test]
fn alsa_file_plugin_capture_equals_the_file() {
    let dir = temp_dir("alsa");
    // Mono: a ramp over the whole i16 range. Stereo: L = ramp, R = 1000 (known mean).
    let n = 4000usize;
    let mono: Vec<i16> = (0..n).map(|i| (i as i32 * 16 - 32_000) as i16).collect();
    let stereo: Vec<i16> = mono.iter().flat_map(|&l| [l, 1000]).collect();
    let raw = |name: &str, s: &[i16]| {
        let p = dir.join(name);
        std::fs::write(
            &p,
            s.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(),
        )
        .unwrap();
        p
    };
    let (mono_raw, stereo_raw) = (raw("mono.raw", &mono), raw("stereo.raw", &stereo));
    let pcm = |name: &str, infile: &std::path::Path| {
        format!(
            "pcm.{name} {{\n  type file\n  slave {{ pcm {{ type null }} }}\n  file \"/dev/null\"\n  infile \"{}\"\n  format \"raw\"\n}}\n",
            infile.display()
        )
    };
    let conf = dir.join("asound.conf");
    std::fs::write(
        &conf,
        pcm("mbtmono", &mono_raw) + &pcm("mbtstereo", &stereo_raw),
    )
    .unwrap();
    // alsa-lib reads its configuration once per process, on first use; this is the only
    // test that uses ALSA.
    std::env::set_var("ALSA_CONFIG_PATH", &conf);

    let mut src = AlsaSource::new(
        "mbtmono",
        16_000,
        1,
        50,
        Duration::from_secs(2),
        Clock::start(),
    );
    assert_eq!(
        src.open().unwrap(),
        Format::Audio {
            rate: 16_000,
            channels: 1
        }
    );
    let got = capture(&mut src, n);
    for (i, (g, s)) in got.iter().zip(&mono).enumerate() {
        assert_eq!(*g, *s as f32 / 32768.0, "sample {i}");
    }
    src.close();

    // A device that gives 44.1 kHz stereo: taken as it is, downmixed here (the tokenizer
    // resamples per window).
    let mut src = AlsaSource::new(
        "mbtstereo",
        44_100,
        2,
        50,
        Duration::from_secs(2),
        Clock::start(),
    );
    assert_eq!(
        src.open().unwrap(),
        Format::Audio {
            rate: 44_100,
            channels: 2
        }
    );
    let got = capture(&mut src, n);
    for (i, (g, s)) in got.iter().zip(&mono).enumerate() {
        let want = (*s as f32 + 1000.0) / 2.0 / 32768.0;
        assert!((g - want).abs() < 1e-6, "frame {i}: {g} vs {want}");
    }
    src.close();

    // A PCM that does not exist fails to open, naming it (the supervisor then retries).
    let mut src = AlsaSource::new(
        "nosuchpcm",
        16_000,
        1,
        50,
        Duration::from_secs(1),
        Clock::start(),
    );
    let e = src.open().unwrap_err().to_string();
    assert!(e.contains("nosuchpcm"), "{e}");
}
