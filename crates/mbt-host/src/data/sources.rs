//! Loading a pool's source media into memory, grouped by split, role and kind.
//!
//! Every file is decoded once per build (sounds to 16 kHz mono; pictures, SVG and iconify icons
//! included, to premultiplied RGBA), and a missing or unreadable file stops the build with an
//! error naming it: a data set silently built without one of its recordings would be a
//! different data set. Each source keeps the sha256 of its content, so splits can be checked
//! by content, not by name (the same file ships in more than one package).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::fetch::media_dir;
use super::pool::{glob_match, Kind, Pool, Role, Split};

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

/// What is known of a source besides its pixels or samples (for `mbt data pool` and checks).
#[derive(Debug, Clone)]
pub struct Info {
    pub id: String,
    pub role: Role,
    pub kind: Kind,
    pub splits: Vec<Split>,
    /// Picture set or recording group.
    pub set: String,
    pub licence: String,
    /// sha256 of the file's bytes (of the icon's SVG for iconify icons).
    pub content: String,
    /// Seconds, for sounds.
    pub seconds: Option<f64>,
}

pub type PoolKey = (Split, Role, Kind);

pub struct Sources {
    pub sounds: Vec<Sound>,
    pub images: Vec<Image>,
    /// `infos[i]` describes `sounds[i]` for i < sounds.len(), then `images[i - sounds.len()]`.
    pub infos: Vec<Info>,
    /// Indices into `sounds` (role Sound) or `images` (Object, Background).
    pub pools: BTreeMap<PoolKey, Vec<usize>>,
}

/// Where a source's bytes come from.
#[derive(Debug, Clone)]
enum Origin {
    File(PathBuf),
    /// One icon of an iconify JSON file.
    Icon(PathBuf, String),
}

#[derive(Debug, Clone)]
struct Resolved {
    origin: Origin,
    id: String,
    role: Role,
    kind: Kind,
    splits: Vec<Split>,
    set: String,
    licence: String,
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

fn resolve(pool: &Pool, cache: &Path) -> Result<Vec<Resolved>> {
    let mut out = Vec::new();
    for s in &pool.sources {
        let Some(pkg) = pool.package(&s.package) else {
            bail!("source {}: unknown package `{}`", s.label(), s.package);
        };
        let root = media_dir(pool, cache, pkg);
        let splits = s.splits()?;
        let rels: Vec<String> = match (&s.path, &s.glob) {
            (Some(p), _) => vec![p.clone()],
            (None, Some(g)) => {
                let prefix = g.split('*').next().unwrap_or("");
                let base = root.join(prefix.rsplit_once('/').map_or("", |(d, _)| d));
                if !base.is_dir() {
                    bail!(
                        "source {}: {} does not exist: run `mbt data fetch --pool {}` first",
                        s.label(),
                        base.display(),
                        pool.file.display()
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
        let base = |id: String, origin: Origin| Resolved {
            origin,
            id,
            role: s.role,
            kind: s.kind,
            splits: splits.clone(),
            set: s.set_name().to_string(),
            licence: s.licence.clone().unwrap_or_else(|| pkg.licence.clone()),
            crop: s.crop,
        };
        for r in rels {
            match &s.icons {
                Some(icons) => {
                    for icon in icons {
                        out.push(base(
                            format!("{}:{}#{icon}", s.package, r),
                            Origin::Icon(root.join(&r), icon.clone()),
                        ));
                    }
                }
                None => out.push(base(
                    format!("{}:{}", s.package, r),
                    Origin::File(root.join(&r)),
                )),
            }
        }
    }
    Ok(out)
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Longer side of a rasterised SVG, in pixels: objects are drawn at most 96 px high.
const SVG_PX: f32 = 128.0;

/// Rasterises an SVG document (premultiplied RGBA, longer side [`SVG_PX`]).
pub fn rasterise_svg(svg: &[u8], id: &str) -> Result<Image> {
    let tree = resvg::usvg::Tree::from_data(svg, &resvg::usvg::Options::default())
        .with_context(|| format!("{id}: not a readable SVG"))?;
    let size = tree.size();
    let scale = SVG_PX / size.width().max(size.height());
    let (w, h) = (
        (size.width() * scale).round().max(1.0) as u32,
        (size.height() * scale).round().max(1.0) as u32,
    );
    let Some(mut pixmap) = resvg::tiny_skia::Pixmap::new(w, h) else {
        bail!("{id}: the SVG has an empty size ({w} x {h})");
    };
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::from_scale(scale, scale),
        &mut pixmap.as_mut(),
    );
    let raw = pixmap.data();
    if raw.chunks_exact(4).all(|p| p[3] == 0) {
        bail!("{id}: the SVG draws nothing (every pixel is transparent)");
    }
    Ok(Image {
        id: id.to_string(),
        width: w as usize,
        height: h as usize,
        rgba: raw.iter().map(|&v| v as f32).collect(),
        has_alpha: raw.chunks_exact(4).any(|p| p[3] < 250),
    })
}

/// The SVG document of one icon of an iconify JSON file (`icons` + `aliases`, default size
/// 16 x 16 unless the file or the icon says otherwise).
pub fn iconify_svg(json: &serde_json::Value, icon: &str, file: &Path) -> Result<String> {
    let icons = &json["icons"];
    let mut name = icon;
    let mut hops = 0;
    while icons.get(name).is_none() {
        let parent = json["aliases"][name]["parent"].as_str();
        match parent {
            Some(p) if hops < 8 => {
                name = p;
                hops += 1;
            }
            _ => bail!(
                "{}: icon `{icon}` is not in this iconify set (neither in `icons` nor in `aliases`)",
                file.display()
            ),
        }
    }
    let i = &icons[name];
    let Some(body) = i["body"].as_str() else {
        bail!("{}: icon `{name}` has no `body` string", file.display());
    };
    let num = |key: &str, default: f64| {
        i[key]
            .as_f64()
            .or_else(|| json[key].as_f64())
            .unwrap_or(default)
    };
    let (left, top, w, h) = (
        num("left", 0.0),
        num("top", 0.0),
        num("width", 16.0),
        num("height", 16.0),
    );
    Ok(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" xmlns:xlink=\"http://www.w3.org/1999/xlink\" \
         viewBox=\"{left} {top} {w} {h}\" width=\"{w}\" height=\"{h}\">{body}</svg>"
    ))
}

fn decode_image(bytes: &[u8], file: &Path, id: &str, crop: Option<[u32; 4]>) -> Result<Image> {
    let is_svg = file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("svg"));
    if is_svg {
        return rasterise_svg(bytes, &file.display().to_string()).map(|mut i| {
            i.id = id.to_string();
            i
        });
    }
    let img = image::load_from_memory(bytes)
        .with_context(|| format!("{}: not a readable PNG/JPEG/GIF image", file.display()))?;
    let mut rgba = img.to_rgba8();
    if let Some([x, y, w, h]) = crop {
        if w == 0 || h == 0 || x + w > rgba.width() || y + h > rgba.height() {
            bail!(
                "{}: crop [{x}, {y}, {w}, {h}] does not fit the {}x{} image",
                file.display(),
                rgba.width(),
                rgba.height()
            );
        }
        rgba = image::imageops::crop_imm(&rgba, x, y, w, h).to_image();
    }
    if rgba.width() == 0 || rgba.height() == 0 {
        bail!("{}: the image is empty (0 pixels)", file.display());
    }
    Ok(to_image(&rgba, id))
}

/// An RGBA picture as the renderer's premultiplied [`Image`] (the one conversion: pool
/// pictures here, a user's own in `mbt data import`).
pub fn to_image(img: &image::RgbaImage, id: &str) -> Image {
    let raw = img.as_raw();
    Image {
        id: id.to_string(),
        width: img.width() as usize,
        height: img.height() as usize,
        rgba: raw
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
            .collect(),
        has_alpha: raw.chunks_exact(4).any(|p| p[3] < 250),
    }
}

fn read_source(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| {
        format!(
            "source {what} {} is missing or unreadable (run `mbt data fetch`)",
            path.display()
        )
    })
}

/// Decodes one picture source; returns it with the sha256 of its content.
fn load_picture(r: &Resolved, json_cache: &JsonCache) -> Result<(Image, String)> {
    match &r.origin {
        Origin::File(f) => {
            let bytes = read_source(f, "image")?;
            let img = decode_image(&bytes, f, &r.id, r.crop)?;
            Ok((img, sha256_hex(&bytes)))
        }
        Origin::Icon(f, icon) => {
            let Some(json) = json_cache.get(f) else {
                bail!("internal: iconify file {} was not read", f.display());
            };
            let svg = iconify_svg(json, icon, f)?;
            let img = rasterise_svg(svg.as_bytes(), &r.id)?;
            Ok((img, sha256_hex(svg.as_bytes())))
        }
    }
}

fn load_sound(r: &Resolved) -> Result<(Sound, String)> {
    let Origin::File(f) = &r.origin else {
        bail!("source {}: a sound must be a file", r.id);
    };
    let bytes = read_source(f, "sound")?;
    let audio = mbt_media::audio::decode(bytes.clone(), f)?;
    let samples = if mbt_core::audio::resample::SUPPORTED_RATES.contains(&audio.sample_rate) {
        mbt_media::audio::to_mono_rate(&audio, 16_000, f)?
    } else {
        // An odd rate (old game sounds at 30,594 Hz): the generator's own Lanczos resampler.
        let mono = audio.to_mono();
        if mono.is_empty() || audio.sample_rate == 0 {
            bail!("{}: the file holds no audio samples", f.display());
        }
        super::dsp::resample_by(&mono, audio.sample_rate as f64 / 16_000.0)
    };
    if samples.iter().all(|v| *v == 0.0) {
        bail!("{}: the recording is pure silence", f.display());
    }
    Ok((
        Sound {
            id: r.id.clone(),
            samples,
        },
        sha256_hex(&bytes),
    ))
}

type JsonCache = BTreeMap<PathBuf, serde_json::Value>;

/// Reads every iconify JSON file the sources name, once.
fn read_icon_files(resolved: &[Resolved]) -> Result<JsonCache> {
    let mut cache = JsonCache::new();
    for r in resolved {
        if let Origin::Icon(f, _) = &r.origin {
            if cache.contains_key(f) {
                continue;
            }
            let bytes = read_source(f, "icon set")?;
            let v: serde_json::Value = serde_json::from_slice(&bytes)
                .with_context(|| format!("{}: not a JSON file", f.display()))?;
            if !v["icons"].is_object() {
                bail!(
                    "{}: not an iconify set (expected an `icons` object)",
                    f.display()
                );
            }
            cache.insert(f.clone(), v);
        }
    }
    Ok(cache)
}

impl Sources {
    /// Loads every source of `pool` from `cache` (decoding in parallel).
    pub fn load(pool: &Pool, cache: &Path) -> Result<Sources> {
        let resolved = resolve(pool, cache)?;
        let json = read_icon_files(&resolved)?;
        let (snd, img): (Vec<&Resolved>, Vec<&Resolved>) =
            resolved.iter().partition(|r| r.role == Role::Sound);
        let sounds: Vec<(Sound, String)> = snd
            .par_iter()
            .map(|r| load_sound(r))
            .collect::<Result<_>>()?;
        let images: Vec<(Image, String)> = img
            .par_iter()
            .map(|r| load_picture(r, &json))
            .collect::<Result<_>>()?;
        let info = |r: &Resolved, content: &str, seconds: Option<f64>| Info {
            id: r.id.clone(),
            role: r.role,
            kind: r.kind,
            splits: r.splits.clone(),
            set: r.set.clone(),
            licence: r.licence.clone(),
            content: content.to_string(),
            seconds,
        };
        let mut infos = Vec::with_capacity(resolved.len());
        let mut pools: BTreeMap<PoolKey, Vec<usize>> = BTreeMap::new();
        for (i, (r, (s, c))) in snd.iter().zip(&sounds).enumerate() {
            infos.push(info(r, c, Some(s.samples.len() as f64 / 16_000.0)));
            for &sp in &r.splits {
                pools.entry((sp, r.role, r.kind)).or_default().push(i);
            }
        }
        for (i, (r, (_, c))) in img.iter().zip(&images).enumerate() {
            infos.push(info(r, c, None));
            for &sp in &r.splits {
                pools.entry((sp, r.role, r.kind)).or_default().push(i);
            }
        }
        Ok(Sources {
            sounds: sounds.into_iter().map(|(s, _)| s).collect(),
            images: images.into_iter().map(|(i, _)| i).collect(),
            infos,
            pools,
        })
    }

    /// The files a split may draw for `role` and `kind`; an error when there are none.
    pub fn pool(&self, split: Split, role: Role, kind: Kind) -> Result<&[usize]> {
        match self.pools.get(&(split, role, kind)) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => bail!(
                "the pool has no {role:?} source of kind `{}` for the {} split",
                kind.name(),
                split.name()
            ),
        }
    }

    /// Whether the split has any source of `role` and `kind`.
    pub fn has(&self, split: Split, role: Role, kind: Kind) -> bool {
        self.pools
            .get(&(split, role, kind))
            .is_some_and(|v| !v.is_empty())
    }
}
