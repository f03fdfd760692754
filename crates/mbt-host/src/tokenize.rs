//! `mbt tokenize`: runs the shared tokenizer on files, so its output can be checked from
//! outside (e.g. against torchaudio with numpy).

use anyhow::Context;
use mbt_core::audio::{spectrogram, AudioTokenizer};
use mbt_core::video::VideoTokenizer;
use mbt_core::{npy, TokenizerConfig};

use crate::cli::{TokenizeCmd, TokenizerArgs};

fn load_settings(args: &TokenizerArgs) -> anyhow::Result<TokenizerConfig> {
    let (text, origin) = match &args.tokenizer {
        Some(p) => (
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?,
            p.display().to_string(),
        ),
        None => (String::new(), "default tokenizer settings".to_string()),
    };
    let cfg: TokenizerConfig = mbt_core::settings::load(&text, &origin, &args.overrides)?;
    let origin = if args.overrides.is_empty() {
        origin
    } else {
        format!("{origin} with --set overrides")
    };
    cfg.validate().with_context(|| format!("in {origin}"))?;
    Ok(cfg)
}

fn write_npy(path: &std::path::Path, shape: &[usize], data: &[f32]) -> anyhow::Result<()> {
    std::fs::write(path, npy::encode_f32(shape, data))
        .with_context(|| format!("cannot write {}", path.display()))
}

pub fn run(cmd: TokenizeCmd) -> anyhow::Result<()> {
    match cmd {
        TokenizeCmd::Audio {
            input,
            out,
            raw,
            fixed,
            patches,
            settings,
        } => {
            let cfg = load_settings(&settings)?;
            let audio = mbt_media::wav::read(&input)?;
            let mono = audio.to_mono();
            let tok = AudioTokenizer::new(cfg.audio.clone())?;
            let name = input.display();
            let (shape, data) = if patches {
                let t = tok
                    .tokenize(&mono, audio.sample_rate)
                    .with_context(|| format!("{name}"))?;
                (t.shape().to_vec(), t.data)
            } else if fixed {
                let m = tok
                    .spectrogram(&mono, audio.sample_rate)
                    .with_context(|| format!("{name}"))?;
                (vec![m.frames, m.bins], m.data)
            } else {
                let m = tok
                    .log_mel(&mono, audio.sample_rate)
                    .with_context(|| format!("{name}"))?;
                let m = if raw {
                    m
                } else {
                    spectrogram::normalize(m, cfg.audio.norm_mean, cfg.audio.norm_std)
                };
                (vec![m.frames, m.bins], m.data)
            };
            write_npy(&out, &shape, &data)?;
            eprintln!(
                "{}: {} Hz, {} ch, {} samples -> {} {:?}",
                name,
                audio.sample_rate,
                audio.channels,
                audio.frames(),
                out.display(),
                shape
            );
            Ok(())
        }
        TokenizeCmd::Video {
            input,
            out,
            settings,
        } => {
            let cfg = load_settings(&settings)?;
            let frames = mbt_media::frames::load(&input)?;
            let views: Vec<_> = frames.iter().map(|f| f.as_frame()).collect();
            let tok = VideoTokenizer::new(cfg.video)?;
            let t = tok
                .tokenize_window(&views)
                .with_context(|| format!("{}", input.display()))?;
            write_npy(&out, &t.shape(), &t.data)?;
            eprintln!(
                "{}: {} frame(s) of {}x{} -> {} {:?}",
                input.display(),
                frames.len(),
                frames[0].width,
                frames[0].height,
                out.display(),
                t.shape()
            );
            Ok(())
        }
    }
}
