//! Loading the extracted source media into memory, grouped by split, role and kind.
//!
//! Every file is decoded once per build (sounds to 16 kHz mono, images to RGBA), and a missing
//! or unreadable file stops the build with an error naming it: a data set silently built
//! without one of its recordings would be a different data set.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rayon::prelude::*;

use super::fetch::media_dir;
use super::manifest::{glob_match, Kind, Manifest, Role, Split};

pub struct Sound {
    /// `package:path`, as recorded in the clip manifest.
    pub id: String,
    pub samples: Vec<f32>,
}

pub struct Image {
    pub id: String,
    pub width: usize,
    pub height: usize,
    /// Premultiplied RGBA, f32 in [0, 255].
    pub rgba: Vec<f32>,
    /// Whether the file had any transparency (photos get a frame drawn around them).
    pub has_alpha: bool,
}

pub type PoolKey = (Split, Role, Kind);

pub struct Sources {
    pub sounds: Vec<Sound>,
    pub images: Vec<Image>,
    /// Indices into `sounds` (role Sound) or `images` (Object, Background).
    pub pools: BTreeMap<PoolKey, Vec<usize>>,
}

struct Resolved {
    file: PathBuf,
    id: String,
    role: Role,
    kind: Kind,
    splits: Vec<Split>,
    crop: Option<[u32; 4]>,
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let rd = std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for e in rd {
        let p = e
            .with_context(|| format!("cannot list {}", dir.display()))?
            .path();
        if p.is_dir() {
            walk(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

fn resolve(manifest: &Manifest, cache: &Path) -> Result<Vec<Resolved>> {
    let mut out = Vec::new();
    for s in &manifest.sources {
        let root = media_dir(cache, &s.package);
        let splits = s.splits()?;
        let rels: Vec<String> = match (&s.path, &s.glob) {
            (Some(p), _) => vec![p.clone()],
            (None, Some(g)) => {
                let prefix = g.split('*').next().unwrap_or("");
                let base = root.join(prefix.rsplit_once('/').map_or("", |(d, _)| d));
                if !base.is_dir() {
                    bail!(
                        "source {}: {} does not exist: run `mbt data fetch` first",
                        s.label(),
                        base.display()
                    );
                }
                let mut files = Vec::new();
                walk(&base, &mut files)?;
                let mut rels: Vec<String> = files
                    .iter()
                    .filter_map(|f| f.strip_prefix(&root).ok())
                    .map(|r| r.to_string_lossy().into_owned())
                    .filter(|r| glob_match(g, r))
                    .collect();
                rels.sort();
                rels.truncate(s.limit.unwrap_or(usize::MAX));
                if rels.is_empty() {
                    bail!("source {}: the pattern matches no file", s.label());
                }
                rels
            }
            (None, None) => bail!("source {}: neither path nor glob", s.label()),
        };
        for r in rels {
            out.push(Resolved {
                file: root.join(&r),
                id: format!("{}:{}", s.package, r),
                role: s.role,
                kind: s.kind,
                splits: splits.clone(),
                crop: s.crop,
            });
        }
    }
    Ok(out)
}

fn load_image_resolved(r: &Resolved) -> Result<Image> {
    load_image(&r.file, &r.id, r.crop)
}

/// Loads one image file as premultiplied RGBA, optionally cropped to `[x, y, w, h]`.
pub fn load_image(file: &Path, id: &str, crop: Option<[u32; 4]>) -> Result<Image> {
    let r = Resolved {
        file: file.to_path_buf(),
        id: id.to_string(),
        role: Role::Object,
        kind: Kind::Other,
        splits: Vec::new(),
        crop,
    };
    let bytes = std::fs::read(&r.file).with_context(|| {
        format!(
            "source image {} is missing or unreadable (run `mbt data fetch`)",
            r.file.display()
        )
    })?;
    let img = image::load_from_memory(&bytes)
        .with_context(|| format!("{}: not a readable PNG/JPEG image", r.file.display()))?;
    let mut rgba = img.to_rgba8();
    if let Some([x, y, w, h]) = r.crop {
        if w == 0 || h == 0 || x + w > rgba.width() || y + h > rgba.height() {
            bail!(
                "{}: crop [{x}, {y}, {w}, {h}] does not fit the {}x{} image",
                r.file.display(),
                rgba.width(),
                rgba.height()
            );
        }
        rgba = image::imageops::crop_imm(&rgba, x, y, w, h).to_image();
    }
    let (width, height) = (rgba.width() as usize, rgba.height() as usize);
    if width == 0 || height == 0 {
        bail!("{}: the image is empty (0 pixels)", r.file.display());
    }
    let raw = rgba.into_raw();
    let has_alpha = raw.chunks_exact(4).any(|p| p[3] < 250);
    let rgba = raw
        .chunks_exact(4)
        .flat_map(|p| {
            let a = p[3] as f32 / 255.0;
            [
                p[0] as f32 * a,
                p[1] as f32 * a,
                p[2] as f32 * a,
                p[3] as f32,
            ]
        })
        .collect();
    Ok(Image {
        id: r.id.clone(),
        width,
        height,
        rgba,
        has_alpha,
    })
}

fn load_sound(r: &Resolved) -> Result<Sound> {
    if !r.file.is_file() {
        bail!(
            "source sound {} is missing (run `mbt data fetch`)",
            r.file.display()
        );
    }
    let samples = mbt_media::audio::read_mono(&r.file, 16_000)?;
    if samples.iter().all(|v| *v == 0.0) {
        bail!("{}: the recording is pure silence", r.file.display());
    }
    Ok(Sound {
        id: r.id.clone(),
        samples,
    })
}

impl Sources {
    /// Loads every source of `manifest` from `cache` (decoding in parallel).
    pub fn load(manifest: &Manifest, cache: &Path) -> Result<Sources> {
        let resolved = resolve(manifest, cache)?;
        let (snd, img): (Vec<&Resolved>, Vec<&Resolved>) =
            resolved.iter().partition(|r| r.role == Role::Sound);
        let sounds: Vec<Sound> = snd
            .par_iter()
            .map(|r| load_sound(r))
            .collect::<Result<_>>()?;
        let images: Vec<Image> = img
            .par_iter()
            .map(|r| load_image_resolved(r))
            .collect::<Result<_>>()?;
        let mut pools: BTreeMap<PoolKey, Vec<usize>> = BTreeMap::new();
        for (i, r) in snd.iter().enumerate() {
            for &sp in &r.splits {
                pools.entry((sp, r.role, r.kind)).or_default().push(i);
            }
        }
        for (i, r) in img.iter().enumerate() {
            for &sp in &r.splits {
                pools.entry((sp, r.role, r.kind)).or_default().push(i);
            }
        }
        Ok(Sources {
            sounds,
            images,
            pools,
        })
    }

    /// The files a split may draw for `role` and `kind`; an error when there are none.
    pub fn pool(&self, split: Split, role: Role, kind: Kind) -> Result<&[usize]> {
        match self.pools.get(&(split, role, kind)) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => bail!(
                "the manifest has no {role:?} source of kind `{}` for the {} split",
                kind.name(),
                split.name()
            ),
        }
    }
}
