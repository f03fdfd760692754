//! Rendering a [`Scene`] into 2 s of 16 kHz mono audio and 16 RGB frames (8 fps, square, 112 px
//! by default: `mbt data build --frame-size`), with the augmentations of DATA.md, recording every
//! random choice for the clip manifest.
//!
//! The scene's geometry is drawn for a 112-px frame ([`SIZE`]) and scaled to the frame size
//! asked for: object heights, where they stand and how far they drift are the same fractions of
//! the frame at every size, and the random draws are the same in the same order, so a 224-px
//! clip shows what the 112-px clip of the same seed shows, only sharper. At 112 px the scale is
//! exactly 1 and the output is data v2's, byte for byte.

use anyhow::Result;
use mbt_media::RgbFrame;
use serde_json::{json, Value};

use super::dsp;
use super::pool::{Kind, Role, Split};
use super::rng::Rng;
use super::sources::{Image, Sources};
use super::spec::{Scene, NEAR_PX};
use super::style::{self, Style};

/// Background noise of a scene without sounds (a quiet room), dB relative to the reference
/// level.
pub const QUIET_NOISE_DB: (f64, f64) = (-45.0, -28.0);

pub const RATE: u32 = 16_000;
pub const SECONDS: f64 = 2.0;
pub const SAMPLES: usize = 32_000;
pub const FPS: u32 = 8;
pub const FRAMES: usize = 16;
/// The frame size the scene geometry is drawn for (and data v2's frame size).
pub const SIZE: usize = 112;
/// The frame sizes `--frame-size` accepts: a multiple of 16 (the from-scratch ViT's patch side;
/// the CNN trunks pad to their stride of 32, as at 112 px) from 64 to 512.
pub const FRAME_SIZES: std::ops::RangeInclusive<usize> = 64..=512;

/// How a clip's frames are drawn (`mbt data build --frame-size`, `--styles`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Look {
    /// Square frames of this many pixels ([`check_frame_size`]).
    pub frame_size: usize,
    /// The chance that a training-split picture is shown in a random style
    /// ([`super::style`]) and at a jittered size (not doors: their apparent size is half of
    /// what tells a slam from a soft close); 0 draws exactly what data v2 drew.
    pub styles: f64,
}

impl Default for Look {
    /// Data v2's: 112 px, no styles.
    fn default() -> Self {
        Look {
            frame_size: SIZE,
            styles: 0.0,
        }
    }
}

/// Checks a requested frame size (see [`FRAME_SIZES`]).
pub fn check_frame_size(size: usize) -> Result<usize> {
    anyhow::ensure!(
        FRAME_SIZES.contains(&size) && size % 16 == 0,
        "--frame-size {size}: expected a multiple of 16 from {} to {} (112 is data v2's size, 224 data v3's)",
        FRAME_SIZES.start(),
        FRAME_SIZES.end()
    );
    Ok(size)
}
/// The reference level (0 dB in the scene) as an active RMS: -20 dBFS, leaving headroom for
/// the crest of glass and bangs.
pub const REF_RMS: f64 = 0.1;

pub struct Rendered {
    pub audio: Vec<f32>,
    pub frames: Vec<RgbFrame>,
    pub params: Value,
}

fn fade(x: &mut [f32]) {
    let n = (RATE as usize / 100).min(x.len() / 2); // 10 ms
    for i in 0..n {
        let g = i as f32 / n as f32;
        x[i] *= g;
        let j = x.len() - 1 - i;
        x[j] *= g;
    }
}

fn render_audio(
    rng: &mut Rng,
    scene: &Scene,
    src: &Sources,
    split: Split,
) -> Result<(Vec<f32>, Value)> {
    let mut mix = vec![0.0f32; SAMPLES];
    let mut params = Vec::new();
    let mut quietest = f64::MAX;
    for s in &scene.sounds {
        let pool = src.pool(split, Role::Sound, s.kind)?;
        let idx = *rng.pick(pool);
        let rec = &src.sounds[idx].samples;
        // A segment of a long recording (speech), the whole of a short one (a bang).
        let max_len = (rng.range(0.8, 1.8) * RATE as f64) as usize;
        let (start, len) = if rec.len() > max_len {
            (rng.below(rec.len() - max_len + 1), max_len)
        } else {
            (0, rec.len())
        };
        let mut x = rec[start..start + len].to_vec();
        fade(&mut x);
        let semitones = rng.range(-3.0, 3.0);
        let x = dsp::pitch_shift(&x, semitones);
        let eq_freq = (rng.range(200f64.ln(), 4000f64.ln())).exp();
        let eq_gain = rng.range(-6.0, 6.0);
        let mut x = dsp::peaking_eq(&x, eq_freq, eq_gain);
        // Level: the scene's received level, measured as active RMS after EQ.
        let target = REF_RMS * dsp::db_to_gain(s.level_db);
        let act = dsp::active_rms(&x);
        let g = if act > 0.0 {
            (target / act) as f32
        } else {
            0.0
        };
        x.iter_mut().for_each(|v| *v *= g);
        quietest = quietest.min(target);
        let x = &x[..x.len().min(SAMPLES)];
        let onset = rng.below(SAMPLES - x.len() + 1);
        for (m, v) in mix[onset..].iter_mut().zip(x) {
            *m += v;
        }
        params.push(json!({
            "kind": s.kind.name(),
            "source": src.sounds[idx].id,
            "on_screen": s.on_screen,
            "level_db": s.level_db,
            "door": s.door.map(|d| json!({"slammed": d.slammed, "source_db": d.source_db, "distance": d.distance})),
            "segment_start_s": start as f64 / RATE as f64,
            "duration_s": x.len() as f64 / RATE as f64,
            "onset_s": onset as f64 / RATE as f64,
            "semitones": semitones,
            "eq_freq_hz": eq_freq,
            "eq_gain_db": eq_gain,
        }));
    }
    let rt60 = rng.range(0.2, 0.8);
    let size = rng.range(0.6, 1.2);
    let wet = rng.range(0.0, 0.3);
    let mut mix = dsp::reverb(&mix, rt60, size, wet);
    let colour = rng.range(0.0, 0.95);
    // Noise below the quietest sound, or a quiet room's own level when nothing sounds.
    let (noise_rms, noise_params) = if scene.sounds.is_empty() {
        let db = rng.range(QUIET_NOISE_DB.0, QUIET_NOISE_DB.1);
        (
            REF_RMS * dsp::db_to_gain(db),
            json!({"level_db": db, "colour": colour, "relative_to": "reference level"}),
        )
    } else {
        let snr = rng.range(0.0, 20.0);
        (
            quietest * dsp::db_to_gain(-snr),
            json!({"snr_db": snr, "colour": colour, "relative_to": "quietest sound"}),
        )
    };
    let noise = dsp::noise(rng, SAMPLES, colour, noise_rms);
    for (m, n) in mix.iter_mut().zip(&noise) {
        *m = (*m + n).clamp(-1.0, 1.0);
    }
    let peak = mix.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    Ok((
        mix,
        json!({
            "sounds": params,
            "reverb": {"rt60_s": rt60, "size": size, "wet": wet},
            "noise": noise_params,
            "peak": peak,
        }),
    ))
}

/// Bilinear sample of premultiplied RGBA at (x, y) in source pixels (edges clamp).
pub fn sample(img: &Image, x: f64, y: f64) -> [f32; 4] {
    let xf = x.clamp(0.0, (img.width - 1) as f64);
    let yf = y.clamp(0.0, (img.height - 1) as f64);
    let (x0, y0) = (xf.floor() as usize, yf.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(img.width - 1), (y0 + 1).min(img.height - 1));
    let (fx, fy) = ((xf - x0 as f64) as f32, (yf - y0 as f64) as f32);
    let px = |x: usize, y: usize| {
        let i = (y * img.width + x) * 4;
        [
            img.rgba[i],
            img.rgba[i + 1],
            img.rgba[i + 2],
            img.rgba[i + 3],
        ]
    };
    let (a, b, c, d) = (px(x0, y0), px(x1, y0), px(x0, y1), px(x1, y1));
    let mut out = [0.0f32; 4];
    for k in 0..4 {
        let top = a[k] + (b[k] - a[k]) * fx;
        let bot = c[k] + (d[k] - c[k]) * fx;
        out[k] = top + (bot - top) * fy;
    }
    out
}

struct Placed {
    img: usize,
    w: f64,
    h: f64,
    x: f64,
    y_bottom: f64,
    vx: f64,
    flip: bool,
    gains: [f32; 3],
}

fn render_video(
    rng: &mut Rng,
    scene: &Scene,
    src: &Sources,
    split: Split,
    look: &Look,
) -> Result<(Vec<RgbFrame>, Value)> {
    let frame_size = look.frame_size;
    let size = frame_size as f64;
    // Lengths drawn for a 112-px frame, in this frame's pixels (exactly 1 at 112 px).
    let k = size / SIZE as f64;
    // Background: a random square crop of a photo, slowly panning, brightness jittered.
    let bg_idx = *rng.pick(src.pool(split, Role::Background, Kind::Other)?);
    let bg = &src.images[bg_idx];
    let side = bg.width.min(bg.height) as f64 * rng.range(0.6, 1.0);
    let bx = rng.range(0.0, bg.width as f64 - side);
    let by = rng.range(0.0, bg.height as f64 - side);
    let pan = rng.range(-0.08, 0.08) * side;
    let pan = pan.clamp(-bx, bg.width as f64 - side - bx);
    let bright = rng.range(0.8, 1.2) as f32;

    // Objects: height from distance, one in each half, standing lower when nearer.
    let left_first = rng.chance(0.5);
    let mut placed = Vec::new();
    let mut oparams = Vec::new();
    for (slot, o) in scene.objects.iter().enumerate() {
        let pool = src.pool(split, Role::Object, o.kind)?;
        let idx = *rng.pick(pool);
        let img = &src.images[idx];
        let h = (NEAR_PX * k / o.distance).max(6.0 * k);
        let w = (h * img.width as f64 / img.height as f64).min(size * 0.5);
        // Two objects: one in each half; a lone object anywhere.
        let left = (slot == 0) == left_first;
        let (lo, hi) = if scene.objects.len() < 2 {
            (w / 2.0, size - w / 2.0)
        } else if left {
            (w / 2.0, size / 2.0)
        } else {
            (size / 2.0, size - w / 2.0)
        };
        let x = rng.range(lo, hi.max(lo + 1e-6));
        let y_bottom = (60.0 + 50.0 / o.distance + rng.range(-2.0, 2.0)) * k;
        let vx = rng.range(-6.0, 6.0) * k;
        let flip = rng.chance(0.5);
        let gains = [
            rng.range(0.85, 1.15) as f32,
            rng.range(0.85, 1.15) as f32,
            rng.range(0.85, 1.15) as f32,
        ];
        oparams.push(json!({
            "kind": o.kind.name(), "source": img.id, "sounding": o.sounding,
            "distance": o.distance, "height_px": h, "width_px": w, "x": x, "y_bottom": y_bottom,
            "drift_px": vx, "flip": flip, "colour_gains": gains,
        }));
        placed.push(Placed {
            img: idx,
            w,
            h,
            x,
            y_bottom,
            vx,
            flip,
            gains,
        });
    }
    // Styles and size jitter of training pictures, drawn after everything data v2 drew (so
    // with `styles` 0 the draws, and the clip, are data v2's).
    let mut restyled: Vec<Option<(Style, super::sources::Image)>> = Vec::new();
    for (slot, pl) in placed.iter_mut().enumerate() {
        let mut styled = None;
        if look.styles > 0.0 && split == Split::Train && rng.chance(look.styles) {
            let s = Style::draw(rng);
            let is_door = scene.objects[slot].kind == super::pool::Kind::Door;
            let jitter = if is_door { 1.0 } else { rng.range(0.8, 1.25) };
            pl.h *= jitter;
            pl.w = (pl.w * jitter).min(size * 0.5);
            let o = &mut oparams[slot];
            o["style"] = s.describe();
            o["size_jitter"] = json!(jitter);
            o["height_px"] = json!(pl.h);
            o["width_px"] = json!(pl.w);
            styled = Some((s, style::apply(&src.images[pl.img], s)));
        }
        restyled.push(styled);
    }
    let mut placed: Vec<(Placed, Option<super::sources::Image>)> = placed
        .into_iter()
        .zip(restyled)
        .map(|(p, s)| (p, s.map(|(_, img)| img)))
        .collect();
    // Draw far objects first so near ones cover them.
    placed.sort_by(|a, b| a.0.h.total_cmp(&b.0.h));

    let mut frames = Vec::with_capacity(FRAMES);
    for f in 0..FRAMES {
        let t = f as f64 / (FRAMES - 1) as f64;
        let mut buf = vec![0.0f32; frame_size * frame_size * 3];
        let ox = bx + pan * t;
        let scale = side / size;
        for y in 0..frame_size {
            for x in 0..frame_size {
                let p = sample(
                    bg,
                    ox + (x as f64 + 0.5) * scale - 0.5,
                    by + (y as f64 + 0.5) * scale - 0.5,
                );
                let i = (y * frame_size + x) * 3;
                buf[i..i + 3].copy_from_slice(&[p[0] * bright, p[1] * bright, p[2] * bright]);
            }
        }
        for (pl, styled) in &placed {
            let img = styled.as_ref().unwrap_or(&src.images[pl.img]);
            let cx = pl.x + pl.vx * t;
            let (x0, x1) = (cx - pl.w / 2.0, cx + pl.w / 2.0);
            let (y0, y1) = (pl.y_bottom - pl.h, pl.y_bottom);
            let framed = !img.has_alpha;
            for y in (y0.floor().max(0.0) as usize)..(y1.ceil().min(size) as usize) {
                for x in (x0.floor().max(0.0) as usize)..(x1.ceil().min(size) as usize) {
                    let (px, py) = (x as f64 + 0.5, y as f64 + 0.5);
                    if px < x0 || px >= x1 || py < y0 || py >= y1 {
                        continue;
                    }
                    let mut u = (px - x0) / pl.w;
                    if pl.flip {
                        u = 1.0 - u;
                    }
                    let v = (py - y0) / pl.h;
                    let i = (y * frame_size + x) * 3;
                    if framed && (px - x0 < 1.0 || x1 - px < 1.0 || py - y0 < 1.0 || y1 - py < 1.0)
                    {
                        buf[i..i + 3].copy_from_slice(&[235.0, 235.0, 235.0]);
                        continue;
                    }
                    let s = sample(img, u * img.width as f64 - 0.5, v * img.height as f64 - 0.5);
                    let a = s[3] / 255.0;
                    for k in 0..3 {
                        buf[i + k] = s[k] * pl.gains[k] + buf[i + k] * (1.0 - a);
                    }
                }
            }
        }
        frames.push(RgbFrame {
            width: frame_size,
            height: frame_size,
            data: buf
                .iter()
                .map(|v| v.round().clamp(0.0, 255.0) as u8)
                .collect(),
        });
    }
    Ok((
        frames,
        json!({
            "background": {"source": bg.id, "crop_x": bx, "crop_y": by, "crop_side": side, "pan_px": pan, "brightness": bright},
            "objects": oparams,
        }),
    ))
}

/// Renders one clip, its frames drawn as `look` says. `rng` is the clip's own stream (already
/// used to draw `scene`).
pub fn render(
    rng: &mut Rng,
    scene: &Scene,
    src: &Sources,
    split: Split,
    look: &Look,
) -> Result<Rendered> {
    let (audio, ap) = render_audio(rng, scene, src, split)?;
    let (frames, vp) = render_video(rng, scene, src, split, look)?;
    Ok(Rendered {
        audio,
        frames,
        params: json!({"layout": scene.layout.name(), "audio": ap, "video": vp}),
    })
}
