//! Property tests: shapes, error variants and "never panics" for every public entry point that
//! takes outside input (samples, frames, configs, `.npy` bytes, settings text).
//!
//! Case counts are kept modest so the file runs in a few seconds; `PROPTEST_CASES=1000 cargo
//! test -p mbt-core --test properties` runs a deeper search.

use mbt_core::audio::{resample, AudioTokenizer, Fbank, SUPPORTED_RATES};
use mbt_core::config::WindowType;
use mbt_core::npy;
use mbt_core::settings;
use mbt_core::video::{Frame, VideoTokenizer};
use mbt_core::{AudioConfig, TokenizeError, TokenizerConfig, VideoConfig};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};

// ---------------------------------------------------------------------------------------------
// Helpers

/// `n` cases (`PROPTEST_CASES`, when set, overrides it), and no regression files: an
/// integration test has no `src/` beside it to put them in.
fn cases(n: u32) -> ProptestConfig {
    let default = ProptestConfig::default();
    ProptestConfig {
        cases: match std::env::var_os("PROPTEST_CASES") {
            Some(_) => default.cases,
            None => n,
        },
        failure_persistence: None,
        ..default
    }
}

/// Any finite `f32`, both signs: normal (up to `f32::MAX`), subnormal and zero, plus the
/// extremes and ordinary audio values.
fn finite_f32() -> impl Strategy<Value = f32> {
    use proptest::num::f32 as f;
    prop_oneof![
        4 => -1.0f32..1.0,
        4 => f::POSITIVE | f::NEGATIVE | f::NORMAL | f::SUBNORMAL | f::ZERO,
        1 => select(vec![
            f32::MAX,
            f32::MIN,
            f32::MIN_POSITIVE,
            -f32::MIN_POSITIVE,
            f32::EPSILON,
            1e-45,
            -0.0,
            0.0,
        ]),
    ]
}

fn non_finite_f32() -> impl Strategy<Value = f32> {
    select(vec![f32::NAN, -f32::NAN, f32::INFINITY, f32::NEG_INFINITY])
}

/// `len` deterministic pseudo-random samples in `[-scale, scale]` (cheaper than asking
/// proptest for tens of thousands of values).
fn noise(len: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let u = (s >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
            ((2.0 * u - 1.0) * scale as f64) as f32
        })
        .collect()
}

/// Amplitudes for [`noise`]: silence-level to full `f32` range.
fn scale() -> impl Strategy<Value = f32> {
    select(vec![0.0, 1e-30, 1e-6, 0.01, 1.0, 1e6, 1e30, f32::MAX])
}

fn same_value(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// The log-mel lower bound: `ln(f32::EPSILON)`, less a rounding allowance.
fn log_floor() -> f32 {
    (f32::EPSILON as f64).ln() as f32 - 1e-6
}

// ---------------------------------------------------------------------------------------------
// Audio

proptest! {
    #![proptest_config(cases(64))]

    #[test]
    fn fbank_shape_and_range(samples in prop_oneof![
        1 => Just(Vec::new()),
        15 => vec(finite_f32(), 1..4000),
    ]) {
        let cfg = AudioConfig::default();
        let fb = Fbank::new(&cfg).unwrap();
        match fb.compute(&samples) {
            Err(e) => {
                prop_assert!(samples.is_empty(), "{e}");
                prop_assert_eq!(e, TokenizeError::EmptyAudio);
            }
            Ok(m) => {
                prop_assert!(!samples.is_empty());
                prop_assert_eq!(m.frames, cfg.frames_for(samples.len()));
                prop_assert_eq!(m.bins, 128);
                prop_assert_eq!(m.data.len(), m.frames * 128);
                let floor = log_floor();
                for &v in &m.data {
                    prop_assert!(v.is_finite() && v >= floor, "log-mel value {}", v);
                }
            }
        }
    }

    /// NaN or infinity anywhere: the error names the first bad sample, whichever entry point.
    #[test]
    fn non_finite_samples_are_named(
        base in vec(finite_f32(), 1..3000),
        bad in vec((any::<Index>(), non_finite_f32()), 1..4),
        rate in select(SUPPORTED_RATES),
    ) {
        let mut x = base;
        for (at, v) in &bad {
            let i = at.index(x.len());
            x[i] = *v;
        }
        let first = x.iter().position(|v| !v.is_finite()).unwrap();
        let check = |r: Result<(), TokenizeError>, what: &str| -> Result<(), TestCaseError> {
            match r {
                Err(TokenizeError::NonFiniteSample { index, value }) => {
                    prop_assert_eq!(index, first, "{}", what);
                    prop_assert!(same_value(value, x[first]), "{}: value {}", what, value);
                }
                other => prop_assert!(false, "{}: {:?}", what, other),
            }
            Ok(())
        };
        let fb = Fbank::new(&AudioConfig::default()).unwrap();
        check(fb.compute(&x).map(drop), "fbank")?;
        check(resample(&x, rate, 16_000).map(drop), "resample")?;
        let tok = AudioTokenizer::new(AudioConfig { num_frames: 16, ..Default::default() }).unwrap();
        check(tok.tokenize(&x, rate).map(drop), "tokenize")?;
    }

    /// Any supported rate and length: the model input has the configured shape, all finite.
    #[test]
    fn audio_tokens_have_the_configured_shape(
        rate in select(SUPPORTED_RATES),
        secs in prop_oneof![1 => Just(0.0), 4 => 0.0f64..0.05, 10 => 0.0f64..0.5],
        seed in any::<u64>(),
        amp in scale(),
    ) {
        let cfg = AudioConfig { num_frames: 32, ..Default::default() };
        let (count, dim) = (cfg.token_count(), cfg.token_dim());
        let tok = AudioTokenizer::new(cfg).unwrap();
        let x = noise((secs * rate as f64) as usize, seed, amp);
        match tok.tokenize(&x, rate) {
            Ok(t) => {
                prop_assert_eq!(t.shape(), [count, dim]);
                prop_assert_eq!(t.data.len(), count * dim);
                prop_assert!(t.data.iter().all(|v| v.is_finite()));
            }
            Err(e) => {
                prop_assert!(x.is_empty(), "{} samples at {} Hz: {}", x.len(), rate, e);
                prop_assert_eq!(e, TokenizeError::EmptyAudio);
            }
        }
    }

    #[test]
    fn unsupported_rates_are_refused(
        rate in prop_oneof![
            select(vec![0u32, 1, 12_345, 15_999, 16_001, 44_000, 192_000]),
            any::<u32>(),
        ].prop_filter("supported", |r| !SUPPORTED_RATES.contains(r)),
        len in 0usize..2000,
    ) {
        let tok = AudioTokenizer::new(AudioConfig { num_frames: 16, ..Default::default() }).unwrap();
        let r = tok.tokenize(&vec![0.1; len], rate);
        let refused = matches!(
            r,
            Err(TokenizeError::UnsupportedSampleRate { rate: got, supported })
                if got == rate && supported == SUPPORTED_RATES
        );
        prop_assert!(refused, "{:?}", r);
    }
}

// ---------------------------------------------------------------------------------------------
// Video

/// One generated frame: its size, channel count and how far its data length is off.
#[derive(Debug, Clone)]
struct FrameSpec {
    width: usize,
    height: usize,
    channels: usize,
    len_delta: i64,
    seed: u64,
}

impl FrameSpec {
    fn data(&self) -> Vec<u8> {
        let n = (self.width * self.height * self.channels) as i64 + self.len_delta;
        noise(n.max(0) as usize, self.seed, 1.0)
            .into_iter()
            .map(|v| ((v + 1.0) * 127.9) as u8)
            .collect()
    }

    fn frame<'a>(&self, data: &'a [u8]) -> Frame<'a> {
        Frame {
            width: self.width,
            height: self.height,
            channels: self.channels,
            data,
        }
    }
}

/// A window of 0..6 frames around a common size; each frame may have its own size, channel
/// count or data length (each with probability about 1/9).
fn frames() -> impl Strategy<Value = Vec<FrameSpec>> {
    ((1usize..80, 1usize..80), 0usize..6).prop_flat_map(|((w, h), n)| {
        let one = (
            prop_oneof![
                16 => Just((w, h)),
                1 => (0usize..80, 0usize..80),
                1 => select(vec![(0, h), (w, 0), (0, 0)]),
            ],
            prop_oneof![8 => Just(3usize), 1 => 1usize..=4],
            prop_oneof![8 => Just(0i64), 1 => -4i64..=4],
            any::<u64>(),
        )
            .prop_map(|((width, height), channels, len_delta, seed)| FrameSpec {
                width,
                height,
                channels,
                len_delta,
                seed,
            });
        vec(one, n)
    })
}

/// What is wrong with frame `f` of a window whose first frame is `first` (nothing: empty).
fn defects(first: &FrameSpec, f: &FrameSpec, data_len: usize) -> Vec<&'static str> {
    let mut d = Vec::new();
    if f.channels != 3 {
        d.push("channels");
    }
    if f.width == 0 || f.height == 0 {
        d.push("empty");
    }
    if (f.width, f.height) != (first.width, first.height) {
        d.push("size");
    }
    if data_len != f.width * f.height * 3 {
        d.push("length");
    }
    d
}

fn small_video_config() -> impl Strategy<Value = VideoConfig> {
    (
        select(vec![2usize, 4]),
        select(vec![1usize, 2]),
        32usize..=48,
    )
        .prop_map(|(num_frames, tubelet, resize_shorter)| VideoConfig {
            num_frames,
            tubelet,
            resize_shorter,
            height: 32,
            width: 32,
            patch_size: 16,
            ..Default::default()
        })
}

proptest! {
    #![proptest_config(cases(96))]

    /// Arbitrary windows: never a panic; tokens exactly when every frame is a valid RGB frame
    /// of the first frame's size, otherwise the error for the first bad frame.
    #[test]
    fn video_windows_tokenize_or_name_the_bad_frame(
        cfg in small_video_config(),
        specs in frames(),
    ) {
        let tok = VideoTokenizer::new(cfg.clone()).unwrap();
        let data: Vec<Vec<u8>> = specs.iter().map(FrameSpec::data).collect();
        let frames: Vec<Frame> = specs.iter().zip(&data).map(|(s, d)| s.frame(d)).collect();
        let bad = specs
            .iter()
            .zip(&data)
            .map(|(s, d)| defects(&specs[0], s, d.len()))
            .enumerate()
            .find(|(_, d)| !d.is_empty());
        let r = tok.tokenize_window(&frames);
        match (&r, bad) {
            (Ok(t), None) => {
                prop_assert!(!frames.is_empty());
                prop_assert_eq!(t.shape(), [cfg.token_count(), cfg.token_dim()]);
                prop_assert_eq!(t.data.len(), cfg.token_count() * cfg.token_dim());
                prop_assert!(t.data.iter().all(|v| v.is_finite()));
            }
            (Err(TokenizeError::EmptyVideo), None) => prop_assert!(frames.is_empty()),
            (Err(e), Some((i, d))) => {
                let (index, kind) = match *e {
                    TokenizeError::ChannelCount { index, got } => {
                        prop_assert_eq!(got, specs[index].channels);
                        (index, "channels")
                    }
                    TokenizeError::EmptyFrame { index, .. } => (index, "empty"),
                    TokenizeError::FrameSizeMismatch { index, got_width, got_height, .. } => {
                        prop_assert_eq!((got_width, got_height), (specs[index].width, specs[index].height));
                        (index, "size")
                    }
                    TokenizeError::FrameDataLength { index, expected, got, .. } => {
                        prop_assert_eq!((expected, got), (specs[index].width * specs[index].height * 3, data[index].len()));
                        (index, "length")
                    }
                    _ => (usize::MAX, "other"),
                };
                prop_assert_eq!(index, i, "{}", e);
                prop_assert!(d.contains(&kind), "frame {} has {:?}, error says {}", i, d, e);
            }
            (r, bad) => prop_assert!(false, "{:?} for a window with defect {:?}", r, bad),
        }
        // The exact-count entry point checks the count before anything else.
        if frames.len() != cfg.num_frames {
            let refused = matches!(
                tok.tokenize_frames(&frames),
                Err(TokenizeError::Count { expected, got, .. })
                    if expected == cfg.num_frames && got == frames.len()
            );
            prop_assert!(refused);
        } else {
            prop_assert_eq!(tok.tokenize_frames(&frames), r);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Configs

/// A valid video config and its hand-computed `(token_count, token_dim)`.
fn valid_video() -> impl Strategy<Value = (VideoConfig, usize, usize)> {
    (
        1usize..=16,
        1usize..=4,
        1usize..=8,
        (1usize..=8, 1usize..=8),
        0usize..50,
        (-2.0f32..2.0, 0.01f32..3.0),
    )
        .prop_map(|(p, t, k, (a, b), extra, (mean, std))| {
            let (height, width) = (p * a, p * b);
            let cfg = VideoConfig {
                num_frames: t * k,
                resize_shorter: height.max(width) + extra,
                height,
                width,
                mean: [mean, -mean, mean / 2.0],
                std: [std, std * 2.0, std + 0.5],
                patch_size: p,
                tubelet: t,
                layout: mbt_core::VideoLayout::Patches,
            };
            (cfg, k * a * b, t * p * p * 3)
        })
}

/// A valid audio config and its hand-computed `(token_count, token_dim)`.
fn valid_audio() -> impl Strategy<Value = (AudioConfig, usize, usize)> {
    (
        select(SUPPORTED_RATES),
        (5.0f64..50.0, 0.2f64..1.0),
        (1usize..=16, 1usize..=16, 1usize..=16, 1usize..=16),
        (0.0f64..0.4, 0.5f64..1.0, 0u8..3),
        (0.0f64..0.99, any::<bool>(), 3.0f64..37.9),
        (-10.0f32..10.0, 0.1f32..10.0),
    )
        .prop_map(
            |(
                rate,
                (len_ms, shift_frac),
                (pt, k, pf, m),
                (lo, hi, hi_kind),
                (pre, dc, floor_exp),
                (mean, std),
            )| {
                let nyquist = rate as f64 / 2.0;
                let low_freq = lo * nyquist;
                // high_freq: 0 (Nyquist), negative (Nyquist minus), or an absolute frequency.
                let high_freq = match hi_kind {
                    0 => 0.0,
                    1 => -(1.0 - hi) * (nyquist - low_freq) * 0.9,
                    _ => low_freq + hi * (nyquist - low_freq),
                };
                let num_mel_bins = (pf * m).max(3).div_ceil(pf) * pf;
                let cfg = AudioConfig {
                    sample_rate: rate,
                    frame_length_ms: len_ms,
                    frame_shift_ms: len_ms * shift_frac,
                    num_mel_bins,
                    low_freq,
                    high_freq,
                    preemphasis: pre,
                    remove_dc_offset: dc,
                    window: WindowType::Hanning,
                    // 1e-3 down to 1.3e-38, the smallest normal f32.
                    log_floor: 10f64.powf(-floor_exp),
                    norm_mean: mean,
                    norm_std: std,
                    num_frames: pt * k,
                    patch_time: pt,
                    patch_freq: pf,
                    front_end: mbt_core::AudioFrontEnd::Kaldi,
                    patch_hop: 48,
                };
                (cfg, k * (num_mel_bins / pf), pt * pf)
            },
        )
}

fn bad_float() -> impl Strategy<Value = f64> {
    select(vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY])
}

/// A valid video config broken in one field, and the field the error must name.
fn invalid_video() -> impl Strategy<Value = (VideoConfig, &'static str)> {
    (valid_video(), 0u8..9, 1usize..1000, bad_float(), 0usize..3).prop_map(
        |((mut c, _, _), which, r, bad, ch)| {
            let field = match which {
                0 => {
                    c.num_frames = 0;
                    "video.num_frames"
                }
                1 => {
                    c.tubelet = if r % 2 == 0 { 0 } else { c.num_frames + 1 };
                    "video.tubelet"
                }
                2 => {
                    c.patch_size = 0;
                    "video.patch_size"
                }
                3 => {
                    c.height = if c.patch_size == 1 || r % 2 == 0 {
                        0
                    } else {
                        c.height + 1 + r % (c.patch_size - 1)
                    };
                    c.resize_shorter = c.resize_shorter.max(c.height);
                    "video.height"
                }
                4 => {
                    c.width = if c.patch_size == 1 || r % 2 == 0 {
                        0
                    } else {
                        c.width + 1 + r % (c.patch_size - 1)
                    };
                    c.resize_shorter = c.resize_shorter.max(c.width);
                    "video.width"
                }
                5 => {
                    c.resize_shorter = (r - 1) % c.height.max(c.width);
                    "video.resize_shorter"
                }
                6 => {
                    c.mean[ch] = bad as f32;
                    "video.mean"
                }
                7 => {
                    c.std[ch] = [0.0, -(r as f32), bad as f32][r % 3];
                    "video.std"
                }
                _ => {
                    c.num_frames = c.tubelet * (r % 8 + 1) + 1;
                    c.tubelet = if c.tubelet == 1 { 2 } else { c.tubelet };
                    if c.num_frames % c.tubelet == 0 {
                        c.num_frames += 1;
                    }
                    "video.tubelet"
                }
            };
            (c, field)
        },
    )
}

/// A valid audio config broken in one field, and the field the error must name.
fn invalid_audio() -> impl Strategy<Value = (AudioConfig, &'static str)> {
    (valid_audio(), 0u8..17, 1usize..1000, bad_float()).prop_map(
        |((mut c, _, _), which, r, bad)| {
            let neg_zero_or_bad = [0.0, -(r as f64), bad][r % 3];
            let rate = c.sample_rate as f64;
            let field = match which {
                0 => {
                    c.sample_rate = 0;
                    "audio.sample_rate"
                }
                1 => {
                    c.frame_length_ms = neg_zero_or_bad;
                    "audio.frame_length_ms"
                }
                2 => {
                    c.frame_shift_ms = neg_zero_or_bad;
                    "audio.frame_shift_ms"
                }
                3 => {
                    // Under 1.5 samples rounds to a window of at most 1.
                    c.frame_length_ms = 1000.0 * 1.4 / rate;
                    "audio.frame_length_ms"
                }
                4 => {
                    c.frame_shift_ms = 1000.0 * 0.4 / rate;
                    "audio.frame_shift_ms"
                }
                5 => {
                    c.num_mel_bins = r % 3;
                    "audio.num_mel_bins"
                }
                6 => {
                    c.low_freq = [-1.0, rate, f64::NAN][r % 3];
                    "audio.low_freq"
                }
                7 => {
                    c.high_freq = rate / 2.0 + 1.0 + r as f64;
                    "audio.low_freq"
                }
                8 => {
                    c.preemphasis = [1.0, -0.1, 1.5, f64::NAN][r % 4];
                    "audio.preemphasis"
                }
                9 => {
                    c.log_floor = [0.0, -(r as f64), bad, 1e-39, 1e-300, 1e39][r % 6];
                    "audio.log_floor"
                }
                10 => {
                    c.norm_mean = bad as f32;
                    "audio.norm_mean"
                }
                11 => {
                    c.norm_std = neg_zero_or_bad as f32;
                    "audio.norm_std"
                }
                12 => {
                    c.patch_time = 0;
                    "audio.patch_time"
                }
                13 => {
                    c.patch_freq = 0;
                    "audio.patch_freq"
                }
                14 => {
                    c.num_frames = if r % 2 == 0 {
                        0
                    } else {
                        c.patch_time * (r % 8) + 1
                    };
                    if c.patch_time == 1 {
                        c.num_frames = 0;
                    }
                    "audio.num_frames"
                }
                15 => {
                    c.patch_freq = c.num_mel_bins + 1 + r % 5;
                    "audio.patch_freq"
                }
                _ => {
                    // num_mel_bins no longer a multiple of patch_freq (>= 2).
                    c.patch_freq = c.patch_freq.max(2);
                    c.num_mel_bins = c.patch_freq * (r % 8 + 1) + 1;
                    "audio.patch_freq"
                }
            };
            (c, field)
        },
    )
}

fn named_field(r: Result<(), TokenizeError>) -> Option<&'static str> {
    match r {
        Err(TokenizeError::InvalidConfig { field, .. }) => Some(field),
        _ => None,
    }
}

proptest! {
    #![proptest_config(cases(64))]

    /// A valid video config validates, and a tokenizer built from it yields the hand-computed
    /// shape on a window of any frame size.
    #[test]
    fn valid_video_configs(
        v in valid_video(),
        (w, h) in (1usize..40, 1usize..40),
        n in 1usize..4,
        seed in any::<u64>(),
    ) {
        let (cfg, count, dim) = v;
        prop_assert_eq!(cfg.validate(), Ok(()));
        prop_assert_eq!(cfg.token_count(), count);
        prop_assert_eq!(cfg.token_dim(), dim);
        let tok = VideoTokenizer::new(cfg).unwrap();
        let spec = FrameSpec { width: w, height: h, channels: 3, len_delta: 0, seed };
        let data = spec.data();
        let t = tok.tokenize_window(&vec![spec.frame(&data); n]).unwrap();
        prop_assert_eq!(t.shape(), [count, dim]);
        prop_assert!(t.data.iter().all(|v| v.is_finite()));
    }

    /// A valid audio config validates, and a tokenizer built from it yields the hand-computed
    /// shape on input at its own rate.
    #[test]
    fn valid_audio_configs(
        a in valid_audio(),
        len in 0usize..3000,
        seed in any::<u64>(),
        amp in scale(),
    ) {
        let (cfg, count, dim) = a;
        prop_assert_eq!(cfg.validate(), Ok(()), "{:?}", cfg);
        prop_assert_eq!(cfg.token_count(), count);
        prop_assert_eq!(cfg.token_dim(), dim);
        let rate = cfg.sample_rate;
        let tok = AudioTokenizer::new(cfg).unwrap();
        let x = noise(len, seed, amp);
        match tok.tokenize(&x, rate) {
            Ok(t) => {
                prop_assert_eq!(t.shape(), [count, dim]);
                prop_assert!(t.data.iter().all(|v| v.is_finite()));
            }
            Err(e) => prop_assert!(len == 0 && e == TokenizeError::EmptyAudio, "{}", e),
        }
    }

    #[test]
    fn invalid_video_configs_name_the_field(v in invalid_video()) {
        let (cfg, field) = v;
        let r = cfg.validate();
        prop_assert_eq!(named_field(r.clone()), Some(field), "{:?}: {:?}", cfg, r);
        let msg = r.unwrap_err().to_string();
        prop_assert!(msg.contains(field), "{}", msg);
        prop_assert!(VideoTokenizer::new(cfg.clone()).is_err());
        let both = TokenizerConfig { video: cfg, ..Default::default() };
        prop_assert_eq!(named_field(both.validate()), Some(field));
    }

    #[test]
    fn invalid_audio_configs_name_the_field(a in invalid_audio()) {
        let (cfg, field) = a;
        let r = cfg.validate();
        prop_assert_eq!(named_field(r.clone()), Some(field), "{:?}: {:?}", cfg, r);
        prop_assert!(field.starts_with("audio."));
        let msg = r.unwrap_err().to_string();
        prop_assert!(msg.contains(field), "{}", msg);
        prop_assert!(AudioTokenizer::new(cfg.clone()).is_err());
        let both = TokenizerConfig { audio: cfg, ..Default::default() };
        prop_assert_eq!(named_field(both.validate()), Some(field));
    }
}

// ---------------------------------------------------------------------------------------------
// Bytes and text from outside

/// A byte-level edit of an encoded file.
#[derive(Debug, Clone)]
enum Mutation {
    Set(Index, u8),
    Insert(Index, u8),
    Remove(Index),
    Truncate(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        2 => any::<Index>().prop_map(Mutation::Remove),
        1 => any::<Index>().prop_map(Mutation::Truncate),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    match m {
        Mutation::Set(i, b) => {
            let i = i.index(bytes.len());
            bytes[i] = *b;
        }
        Mutation::Insert(i, b) => bytes.insert(i.index(bytes.len() + 1), *b),
        Mutation::Remove(i) => {
            bytes.remove(i.index(bytes.len()));
        }
        Mutation::Truncate(i) => bytes.truncate(i.index(bytes.len())),
    }
}

/// Decoding must not panic, and a decoded array must hold exactly `product(shape)` values.
fn check_decode(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(a) = npy::decode_f32(bytes) {
        let n = a.shape.iter().try_fold(1usize, |p, &d| p.checked_mul(d));
        prop_assert_eq!(n, Some(a.data.len()), "shape {:?}", a.shape);
    }
    Ok(())
}

const AUDIO_KEYS: &[&str] = &[
    "sample_rate",
    "frame_length_ms",
    "frame_shift_ms",
    "num_mel_bins",
    "low_freq",
    "high_freq",
    "preemphasis",
    "remove_dc_offset",
    "window",
    "log_floor",
    "norm_mean",
    "norm_std",
    "num_frames",
    "patch_time",
    "patch_freq",
    "bogus",
];
const VIDEO_KEYS: &[&str] = &[
    "num_frames",
    "resize_shorter",
    "height",
    "width",
    "mean",
    "std",
    "patch_size",
    "tubelet",
    "bogus",
];

/// Plausible and implausible TOML values for a settings key.
fn values_for(key: &str) -> &'static [&'static str] {
    match key {
        "remove_dc_offset" => &["true", "false", "1"],
        "window" => &["\"hanning\"", "\"hamming\"", "3"],
        "mean" | "std" => &[
            "[0.5, 0.5, 0.5]",
            "[1, 2, 3]",
            "[1, 2]",
            "[]",
            "[\"a\", 1, 2]",
        ],
        k if k.ends_with("_ms") || k.contains("freq") && k != "patch_freq" => {
            &["25", "0.5", "-1.0", "nan", "inf", "1e3", "\"x\""]
        }
        "preemphasis" | "log_floor" | "norm_mean" | "norm_std" => {
            &["0.97", "0", "-1.5", "nan", "1e-7", "2"]
        }
        _ => &[
            "16",
            "0",
            "1",
            "112",
            "-1",
            "0.5",
            "18446744073709551616",
            "{ a = 1 }",
        ],
    }
}

fn key_value(keys: &'static [&'static str]) -> impl Strategy<Value = String> {
    (select(keys), any::<Index>()).prop_map(|(k, i)| format!("{k} = {}", i.get(values_for(k))))
}

/// TOML-ish text: `[audio]` / `[video]` sections of `key = value` lines for keys the format
/// knows (and one it does not), with arbitrary lines mixed in.
fn tomlish() -> impl Strategy<Value = String> {
    let line = |keys| {
        prop_oneof![
            12 => key_value(keys),
            1 => "[a-z_.]{0,20} ?= ?[-+0-9.e\\[\\], \"a-z]{0,16}",
            1 => "\\PC{0,30}",
        ]
    };
    let section = prop_oneof![
        (Just("[audio]"), vec(line(AUDIO_KEYS), 0..4)),
        (Just("[video]"), vec(line(VIDEO_KEYS), 0..4)),
    ];
    vec(section, 0..3).prop_map(|secs| {
        secs.into_iter()
            .map(|(h, lines)| format!("{h}\n{}", lines.join("\n")))
            .collect::<Vec<_>>()
            .join("\n")
    })
}

fn overrides() -> impl Strategy<Value = Vec<String>> {
    let set =
        |table: &'static str, keys| key_value(keys).prop_map(move |kv| format!("{table}.{kv}"));
    vec(
        prop_oneof![
            2 => set("audio", AUDIO_KEYS),
            2 => set("video", VIDEO_KEYS),
            1 => set("audio.window", AUDIO_KEYS),
            1 => "[a-z_.]{0,12}=?\\PC{0,12}",
            1 => "\\PC{0,24}",
        ],
        0..3,
    )
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn npy_decode_never_panics_on_bytes(
        prefix in select(vec![&b""[..], &b"\x93NUMPY"[..], &b"\x93NUMPY\x01\x00"[..], &b"\x93NUMPY\x02\x00"[..]]),
        rest in vec(any::<u8>(), 0..200),
    ) {
        let bytes = [prefix, &rest[..]].concat();
        check_decode(&bytes)?;
    }

    #[test]
    fn npy_decode_never_panics_on_mutated_files(
        shape in vec(0usize..5, 0..4),
        f8 in any::<bool>(),
        edits in vec(mutation(), 0..6),
    ) {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 1.0).collect();
        let mut bytes = npy::encode_f32(&shape, &data);
        if edits.is_empty() {
            let a = npy::decode_f32(&bytes).unwrap();
            prop_assert_eq!(&a.shape, &shape);
            prop_assert_eq!(&a.data, &data);
        }
        if f8 {
            // Same file as <f8: the header grows by nothing ('<f8' is as long as '<f4').
            let header_end = 10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
            let header = String::from_utf8(bytes[10..header_end].to_vec()).unwrap();
            let mut b = bytes[..10].to_vec();
            b.extend_from_slice(header.replace("<f4", "<f8").as_bytes());
            for v in &data {
                b.extend_from_slice(&(*v as f64).to_le_bytes());
            }
            bytes = b;
            if edits.is_empty() {
                prop_assert_eq!(npy::decode_f32(&bytes).unwrap().data, data);
            }
        }
        for e in &edits {
            apply(&mut bytes, e);
        }
        check_decode(&bytes)?;
    }

    #[test]
    fn settings_never_panic(
        text in prop_oneof![4 => tomlish(), 1 => "\\PC{0,80}", 1 => ".{0,80}"],
        sets in overrides(),
    ) {
        if let Ok(cfg) = settings::load::<TokenizerConfig>(&text, "x", &sets) {
            // Whatever parsed is a config that can at least be checked.
            let _ = cfg.validate();
        }
    }
}
