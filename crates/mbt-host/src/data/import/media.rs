//! Sound-only and picture-only files, and a silent video's stills (`--silent-videos
//! pictures`), decoded into the [`mix::Media`] that `mix.rs` renders scenes around.

use anyhow::{bail, Result};

use super::super::render::RATE;
use super::super::sources;
use super::inputs::{Item, Material};
use super::{ffmpeg, mix};

/// Longest side of a user picture kept for rendering (objects are drawn at most 96 px high).
const PICTURE_PX: usize = 256;
/// Stills taken from a silent video used as pictures.
const MAX_STILLS: usize = 8;

/// Decodes a sound or picture item (or a silent video's stills) for mixing.
pub(super) fn load_media(item: &Item) -> Result<mix::Media> {
    let id = format!("import:{}", item.name);
    match item.material {
        Material::Sound => {
            let s = ffmpeg::audio(&item.path, RATE)?;
            if s.is_empty() || s.iter().all(|v| *v == 0.0) {
                bail!("{}: the recording is empty or pure silence", item.name);
            }
            Ok(mix::Media::Sound(s))
        }
        Material::Picture => {
            let img = ffmpeg::picture(&item.path, None, PICTURE_PX)?;
            Ok(mix::Media::Pictures(vec![sources::to_image(&img, &id)]))
        }
        _ => {
            let p = ffmpeg::probe(&item.path)?;
            let dur = p.duration.unwrap_or(0.0);
            let n = ((dur / 2.0).floor() as usize).clamp(1, MAX_STILLS);
            let pics = (0..n)
                .map(|k| {
                    let t = (k as f64 + 0.5) * dur / n as f64;
                    ffmpeg::picture(&item.path, Some(t), PICTURE_PX)
                        .map(|i| sources::to_image(&i, &id))
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(mix::Media::Pictures(pics))
        }
    }
}
