//! `mbt` as a user runs it: the real binary, real files, exit codes and messages.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mbt_core::{npy, AudioConfig};

fn mbt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mbt"))
        .args(args)
        .output()
        .expect("mbt runs")
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../mbt-core/tests/fixtures")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mbt-cli-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn read_npy(p: &Path) -> npy::Array {
    npy::decode_f32(&std::fs::read(p).unwrap()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A 24-bit stereo WAV the golden tests never use, against torchaudio.load + channel mean +
/// kaldi.fbank (made by fixtures/gen_fixtures.py).
#[test]
fn tokenize_audio_matches_torchaudio_on_a_24bit_stereo_wav() {
    let wav = fixtures().join("cli_speech_stereo_s24.wav");
    let reference = read_npy(&fixtures().join("cli_speech_stereo_s24.fbank.npy"));

    let raw = tmp("raw.npy");
    let o = mbt(&[
        "tokenize",
        "audio",
        wav.to_str().unwrap(),
        "--out",
        raw.to_str().unwrap(),
        "--raw",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ours = read_npy(&raw);
    assert_eq!(ours.shape, reference.shape);
    let err = ours
        .data
        .iter()
        .zip(&reference.data)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    println!("mbt tokenize audio --raw vs torchaudio: max abs error {err:.2e}");
    assert!(err <= 1e-3, "max abs error {err}");

    // Without --raw: the AST normalisation of the same values.
    let norm = tmp("norm.npy");
    let o = mbt(&[
        "tokenize",
        "audio",
        wav.to_str().unwrap(),
        "--out",
        norm.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let cfg = AudioConfig::default();
    for (n, r) in read_npy(&norm).data.iter().zip(&reference.data) {
        let expect = (r - cfg.norm_mean) / (2.0 * cfg.norm_std);
        assert!((n - expect).abs() <= 1e-3, "{n} vs {expect}");
    }
}

#[test]
fn tokenize_audio_patches_and_fixed_have_model_shapes() {
    let wav = fixtures().join("cli_speech_stereo_s24.wav");
    let out = tmp("patches.npy");
    let o = mbt(&[
        "tokenize",
        "audio",
        wav.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--patches",
        "--set",
        "audio.num_frames=96",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(read_npy(&out).shape, vec![6 * 8, 256]);
    let o = mbt(&[
        "tokenize",
        "audio",
        wav.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--fixed",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(read_npy(&out).shape, vec![208, 128]);
}

#[test]
fn tokenize_audio_resamples_other_rates() {
    // 1 s of a 1 kHz tone at 44.1 kHz -> 16 kHz -> 98 frames; the peak bin is the one for 1 kHz
    // (same as at 16 kHz).
    let p = tmp("tone44k.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 44_100,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&p, spec).unwrap();
    for n in 0..44_100 {
        w.write_sample(
            ((2.0 * std::f32::consts::PI * 1000.0 * n as f32 / 44_100.0).sin() * 16_000.0) as i16,
        )
        .unwrap();
    }
    w.finalize().unwrap();
    let out = tmp("tone44k.npy");
    let o = mbt(&[
        "tokenize",
        "audio",
        p.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--raw",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let a = read_npy(&out);
    assert_eq!(a.shape, vec![98, 128]);
    let row = &a.data[50 * 128..51 * 128];
    let peak = row
        .iter()
        .enumerate()
        .max_by(|x, y| x.1.total_cmp(y.1))
        .unwrap()
        .0;
    let tone16: Vec<f32> = (0..16_000)
        .map(|n| (2.0 * std::f32::consts::PI * 1000.0 * n as f32 / 16_000.0).sin() * 0.5)
        .collect();
    let fb = mbt_core::audio::Fbank::new(&AudioConfig::default())
        .unwrap()
        .compute(&tone16)
        .unwrap();
    let peak16 = fb
        .row(50)
        .iter()
        .enumerate()
        .max_by(|x, y| x.1.total_cmp(y.1))
        .unwrap()
        .0;
    assert_eq!(peak, peak16);
}

#[test]
fn tokenize_video_from_y4m() {
    let frames: Vec<mbt_media::RgbFrame> = (0..5)
        .map(|i| mbt_media::RgbFrame {
            width: 160,
            height: 120,
            data: (0..160 * 120 * 3)
                .map(|v| ((v + i * 13) % 256) as u8)
                .collect(),
        })
        .collect();
    let y4m = tmp("clip.y4m");
    std::fs::write(&y4m, mbt_media::y4m::encode(&frames, 25)).unwrap();
    let out = tmp("video.npy");
    let o = mbt(&[
        "tokenize",
        "video",
        y4m.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Defaults: 8 frames (sampled from 5), tubelet 2, 112 x 112 in 16 x 16 patches.
    assert_eq!(read_npy(&out).shape, vec![4 * 7 * 7, 2 * 16 * 16 * 3]);
}

#[test]
fn bad_input_gives_exit_1_and_names_the_file_or_field() {
    let out = tmp("x.npy");
    let o = mbt(&[
        "tokenize",
        "audio",
        "/nonexistent/in.wav",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("/nonexistent/in.wav"), "{}", stderr(&o));

    let junk = tmp("junk.wav");
    std::fs::write(&junk, b"RIFF1234WAVEfmt nonsense").unwrap();
    let o = mbt(&[
        "tokenize",
        "audio",
        junk.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("junk.wav"), "{}", stderr(&o));

    let wav = fixtures().join("cli_speech_stereo_s24.wav");
    let o = mbt(&[
        "tokenize",
        "audio",
        wav.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--set",
        "audio.num_frames=100",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("audio.num_frames"), "{}", stderr(&o));

    let o = mbt(&[
        "tokenize",
        "audio",
        wav.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--set",
        "audio.mel_bins=64",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("mel_bins"), "{}", stderr(&o));

    // 12345 Hz is not a supported rate.
    let odd = tmp("odd.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 12_345,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&odd, spec).unwrap();
    for _ in 0..2000 {
        w.write_sample(0i16).unwrap();
    }
    w.finalize().unwrap();
    let o = mbt(&[
        "tokenize",
        "audio",
        odd.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("12345") && stderr(&o).contains("odd.wav"),
        "{}",
        stderr(&o)
    );

    let o = mbt(&[
        "tokenize",
        "video",
        wav.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("cli_speech_stereo_s24.wav"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn help_lists_the_subcommands_and_usage_errors_exit_2() {
    let o = mbt(&["--help"]);
    assert!(o.status.success());
    let help = String::from_utf8_lossy(&o.stdout);
    for sub in [
        "tokenize", "data", "train", "eval", "export", "infer", "model", "bench", "events",
        "timeline",
    ] {
        assert!(help.contains(sub), "--help lacks {sub}: {help}");
    }
    // events listen needs --unix or --udp
    let o = mbt(&["events", "listen"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--unix"), "{}", stderr(&o));
    // train without --data is a usage error
    assert_eq!(mbt(&["train", "--config", "x"]).status.code(), Some(2));
    assert_eq!(mbt(&["no-such-command"]).status.code(), Some(2));
}
