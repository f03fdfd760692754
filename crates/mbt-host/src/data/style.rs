//! Style transforms of training pictures (`mbt data build --styles`): greyscale, line art,
//! posterised colour, a rotated hue, blur and JPEG artefacts, each a whole-picture transform
//! of the premultiplied RGBA the renderer samples.
//!
//! Why: the pool's pictures come from a handful of picture sets (emoji and icon designs, a few
//! photos), and the test split holds whole sets out. Measured on data v2's pool (issue 31), an
//! ImageNet trunk's features recognise Twemoji's flat colour 97 % of the time and OpenMoji's
//! line art 72 %: what the model learns from one set's palette and strokes does not carry to
//! another's. Showing each training picture in other styles asks the model for the shape, not
//! the set. Only training-split pictures are restyled; validation and test stay as drawn, so
//! they keep measuring unseen sets.
//!
//! Every transform keeps the picture's size, and all but blur its alpha (its silhouette; blur
//! softens the silhouette too, as a lens out of focus does): premultiplied colour stays within
//! `[0, alpha]`.

use super::rng::Rng;
use super::sources::Image;

/// One style transform and its parameters (recorded in the clip manifest).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Style {
    /// Luma only (ITU-R BT.601 weights).
    Greyscale,
    /// Dark strokes where the luma changes (a Sobel edge map over the picture on white),
    /// white elsewhere: line art from a flat-colour picture.
    Outline,
    /// Each colour channel quantised to this many levels.
    Posterise(u8),
    /// The hue rotated by this many degrees (luma kept).
    Hue(f32),
    /// A Gaussian blur with this standard deviation, in source pixels.
    Blur(f32),
    /// Encoded and decoded as a JPEG of this quality.
    Jpeg(u8),
}

impl Style {
    /// A style drawn uniformly among the six, with its parameter drawn from `rng`.
    pub fn draw(rng: &mut Rng) -> Style {
        match rng.below(6) {
            0 => Style::Greyscale,
            1 => Style::Outline,
            2 => Style::Posterise(2 + rng.below(4) as u8),
            3 => Style::Hue(rng.range(30.0, 330.0) as f32),
            4 => Style::Blur(rng.range(0.6, 2.0) as f32),
            _ => Style::Jpeg(10 + rng.below(30) as u8),
        }
    }

    /// The manifest's record of it.
    pub fn describe(self) -> serde_json::Value {
        match self {
            Style::Greyscale => serde_json::json!({"style": "greyscale"}),
            Style::Outline => serde_json::json!({"style": "outline"}),
            Style::Posterise(n) => serde_json::json!({"style": "posterise", "levels": n}),
            Style::Hue(d) => serde_json::json!({"style": "hue", "degrees": d}),
            Style::Blur(s) => serde_json::json!({"style": "blur", "sigma_px": s}),
            Style::Jpeg(q) => serde_json::json!({"style": "jpeg", "quality": q}),
        }
    }
}

/// `img` in `style`.
pub fn apply(img: &Image, style: Style) -> Image {
    let rgba = match style {
        Style::Greyscale => per_pixel(img, |[r, g, b]| {
            let y = luma(r, g, b);
            [y, y, y]
        }),
        Style::Posterise(levels) => {
            let steps = (levels.max(2) - 1) as f32;
            per_pixel(img, |c| {
                c.map(|v| (v / 255.0 * steps).round() / steps * 255.0)
            })
        }
        Style::Hue(degrees) => {
            let m = hue_matrix(degrees);
            per_pixel(img, |[r, g, b]| {
                [0, 1, 2].map(|k| m[k][0] * r + m[k][1] * g + m[k][2] * b)
            })
        }
        Style::Blur(sigma) => blur(img, sigma),
        Style::Outline => outline(img),
        Style::Jpeg(quality) => jpeg(img, quality),
    };
    Image {
        id: img.id.clone(),
        width: img.width,
        height: img.height,
        rgba,
        has_alpha: img.has_alpha,
    }
}

fn luma(r: f32, g: f32, b: f32) -> f32 {
    0.299 * r + 0.587 * g + 0.114 * b
}

/// Applies `f` to each pixel's straight (not premultiplied) colour in [0, 255]; alpha kept.
fn per_pixel(img: &Image, f: impl Fn([f32; 3]) -> [f32; 3]) -> Vec<f32> {
    let mut out = img.rgba.clone();
    for p in out.chunks_exact_mut(4) {
        let a = p[3];
        if a <= 0.0 {
            continue;
        }
        let s = 255.0 / a;
        let c = f([p[0] * s, p[1] * s, p[2] * s]);
        for (v, c) in p.iter_mut().zip(c) {
            *v = c.clamp(0.0, 255.0) * a / 255.0;
        }
    }
    out
}

/// The RGB rotation about the grey axis by `degrees` (the standard hue-rotate matrix).
fn hue_matrix(degrees: f32) -> [[f32; 3]; 3] {
    let (s, c) = degrees.to_radians().sin_cos();
    [
        [
            0.213 + c * 0.787 - s * 0.213,
            0.715 - c * 0.715 - s * 0.715,
            0.072 - c * 0.072 + s * 0.928,
        ],
        [
            0.213 - c * 0.213 + s * 0.143,
            0.715 + c * 0.285 + s * 0.140,
            0.072 - c * 0.072 - s * 0.283,
        ],
        [
            0.213 - c * 0.213 - s * 0.787,
            0.715 - c * 0.715 + s * 0.715,
            0.072 + c * 0.928 + s * 0.072,
        ],
    ]
}

/// A separable Gaussian blur of all four premultiplied channels (edges clamp).
fn blur(img: &Image, sigma: f32) -> Vec<f32> {
    let r = (sigma * 3.0).ceil().max(1.0) as isize;
    let kernel: Vec<f32> = (-r..=r)
        .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f32 = kernel.iter().sum();
    let kernel: Vec<f32> = kernel.iter().map(|k| k / sum).collect();
    let (w, h) = (img.width as isize, img.height as isize);
    let pass = |src: &[f32], horizontal: bool| {
        let mut out = vec![0.0f32; src.len()];
        for y in 0..h {
            for x in 0..w {
                let mut acc = [0.0f32; 4];
                for (j, k) in kernel.iter().enumerate() {
                    let d = j as isize - r;
                    let (sx, sy) = if horizontal {
                        ((x + d).clamp(0, w - 1), y)
                    } else {
                        (x, (y + d).clamp(0, h - 1))
                    };
                    let i = ((sy * w + sx) * 4) as usize;
                    for (a, s) in acc.iter_mut().zip(&src[i..i + 4]) {
                        *a += k * s;
                    }
                }
                let o = ((y * w + x) * 4) as usize;
                out[o..o + 4].copy_from_slice(&acc);
            }
        }
        out
    };
    pass(&pass(&img.rgba, true), false)
}

/// Line art: the Sobel gradient of the picture's luma composited on white, as dark strokes on
/// white, within the picture's own alpha (its silhouette's edge gives the outer stroke).
fn outline(img: &Image) -> Vec<f32> {
    let (w, h) = (img.width, img.height);
    // Luma over white: premultiplied colour + (1 - alpha) * white.
    let on_white: Vec<f32> = img
        .rgba
        .chunks_exact(4)
        .map(|p| luma(p[0], p[1], p[2]) + (255.0 - p[3]))
        .collect();
    let at = |x: isize, y: isize| {
        on_white[(y.clamp(0, h as isize - 1) as usize) * w + x.clamp(0, w as isize - 1) as usize]
    };
    let mut out = img.rgba.clone();
    for y in 0..h as isize {
        for x in 0..w as isize {
            let gx = at(x + 1, y - 1) + 2.0 * at(x + 1, y) + at(x + 1, y + 1)
                - at(x - 1, y - 1)
                - 2.0 * at(x - 1, y)
                - at(x - 1, y + 1);
            let gy = at(x - 1, y + 1) + 2.0 * at(x, y + 1) + at(x + 1, y + 1)
                - at(x - 1, y - 1)
                - 2.0 * at(x, y - 1)
                - at(x + 1, y - 1);
            // A full-contrast step (0 to 255) gives |g| = 1020: strokes saturate well before.
            let ink = ((gx * gx + gy * gy).sqrt() / 255.0).clamp(0.0, 1.0);
            let v = 255.0 * (1.0 - ink);
            let i = ((y as usize) * w + x as usize) * 4;
            let a = img.rgba[i + 3] / 255.0;
            out[i..i + 3].copy_from_slice(&[v * a, v * a, v * a]);
        }
    }
    out
}

/// Encoded and decoded as a JPEG (straight colour; alpha kept as it was). An encoder failure
/// (it has none for RGB of these sizes) leaves the picture as it is.
fn jpeg(img: &Image, quality: u8) -> Vec<f32> {
    let straight: Vec<u8> = img
        .rgba
        .chunks_exact(4)
        .flat_map(|p| {
            let s = if p[3] > 0.0 { 255.0 / p[3] } else { 0.0 };
            [0, 1, 2].map(|k| (p[k] * s).round().clamp(0.0, 255.0) as u8)
        })
        .collect();
    let mut bytes = Vec::new();
    let encoded = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality.max(1))
        .encode(
            &straight,
            img.width as u32,
            img.height as u32,
            image::ExtendedColorType::Rgb8,
        );
    let decoded = encoded
        .ok()
        .and_then(|_| image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg).ok())
        .map(|d| d.to_rgb8());
    let Some(rgb) = decoded else {
        return img.rgba.clone();
    };
    let mut out = img.rgba.clone();
    for (p, c) in out.chunks_exact_mut(4).zip(rgb.pixels()) {
        let a = p[3] / 255.0;
        for (v, c) in p.iter_mut().zip(c.0) {
            *v = c as f32 * a;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `w x h` picture: left half red, right half blue, opaque, with a transparent top row.
    fn two_colours(w: usize, h: usize) -> Image {
        let mut rgba = Vec::with_capacity(w * h * 4);
        for y in 0..h {
            for x in 0..w {
                let a = if y == 0 { 0.0 } else { 255.0 };
                let c = if x < w / 2 {
                    [255.0, 0.0, 0.0]
                } else {
                    [0.0, 0.0, 255.0]
                };
                rgba.extend([c[0] * a / 255.0, c[1] * a / 255.0, c[2] * a / 255.0, a]);
            }
        }
        Image {
            id: "t".into(),
            width: w,
            height: h,
            rgba,
            has_alpha: true,
        }
    }

    fn px(img: &Image, x: usize, y: usize) -> [f32; 4] {
        let i = (y * img.width + x) * 4;
        [
            img.rgba[i],
            img.rgba[i + 1],
            img.rgba[i + 2],
            img.rgba[i + 3],
        ]
    }

    fn keeps_alpha_and_bounds(a: &Image, b: &Image) {
        within_bounds(a, b, true)
    }

    fn within_bounds(a: &Image, b: &Image, same_alpha: bool) {
        assert_eq!(
            (a.width, a.height, a.rgba.len()),
            (b.width, b.height, b.rgba.len())
        );
        for (p, q) in a.rgba.chunks_exact(4).zip(b.rgba.chunks_exact(4)) {
            if same_alpha {
                assert_eq!(p[3], q[3], "alpha kept");
            }
            for &c in &q[..3] {
                assert!(
                    c >= -1e-3 && c <= q[3] + 1e-3,
                    "premultiplied colour {c} within alpha {}",
                    q[3]
                );
            }
        }
    }

    #[test]
    fn greyscale_is_bt601_luma() {
        let img = two_colours(8, 4);
        let g = apply(&img, Style::Greyscale);
        keeps_alpha_and_bounds(&img, &g);
        // Red: 0.299 * 255 = 76.245; blue: 0.114 * 255 = 29.07 (hand computation).
        assert!((px(&g, 1, 2)[1] - 76.245).abs() < 1e-3);
        assert!((px(&g, 6, 2)[0] - 29.07).abs() < 1e-3);
    }

    #[test]
    fn posterise_to_two_levels_snaps_each_channel() {
        let mut img = two_colours(4, 2);
        // A mid grey (100) rounds down to 0, 200 up to 255 at two levels.
        img.rgba[4..8].copy_from_slice(&[100.0, 200.0, 100.0, 255.0]);
        let p = apply(&img, Style::Posterise(2));
        keeps_alpha_and_bounds(&img, &p);
        assert_eq!(&p.rgba[4..7], &[0.0, 255.0, 0.0]);
    }

    #[test]
    fn hue_rotation_keeps_grey_and_360_is_identity() {
        let mut img = two_colours(4, 2);
        img.rgba[4..8].copy_from_slice(&[128.0, 128.0, 128.0, 255.0]);
        let h = apply(&img, Style::Hue(120.0));
        keeps_alpha_and_bounds(&img, &h);
        for k in 0..3 {
            assert!((h.rgba[4 + k] - 128.0).abs() < 0.5, "grey stays grey");
        }
        // Red rotated by 120 degrees is mostly green.
        let r = px(&h, 1, 1);
        assert!(r[1] > r[0] && r[1] > r[2], "{r:?}");
        let full = apply(&img, Style::Hue(360.0));
        for (a, b) in img.rgba.iter().zip(&full.rgba) {
            assert!((a - b).abs() < 0.05);
        }
    }

    #[test]
    fn blur_keeps_flat_areas_and_softens_the_edge() {
        let img = two_colours(16, 8);
        let b = apply(&img, Style::Blur(1.0));
        within_bounds(&img, &b, false);
        // Far from the edge and the transparent row: unchanged red.
        assert!((px(&b, 1, 5)[0] - 255.0).abs() < 0.5);
        // At the edge: a mix of red and blue.
        let e = px(&b, 7, 5);
        assert!(e[0] > 20.0 && e[2] > 20.0, "{e:?}");
    }

    #[test]
    fn outline_inks_the_colour_edge_and_leaves_flat_areas_white() {
        let img = two_colours(16, 8);
        let o = apply(&img, Style::Outline);
        keeps_alpha_and_bounds(&img, &o);
        assert!(px(&o, 3, 5)[0] > 250.0, "flat red area is white");
        assert!(
            px(&o, 8, 5)[0] < 200.0,
            "red/blue edge is inked: {:?}",
            px(&o, 8, 5)
        );
    }

    #[test]
    fn jpeg_keeps_size_alpha_and_roughly_the_colours() {
        let img = two_colours(16, 16);
        let j = apply(&img, Style::Jpeg(20));
        keeps_alpha_and_bounds(&img, &j);
        let r = px(&j, 2, 8);
        assert!(r[0] > 180.0 && r[2] < 80.0, "{r:?}");
    }

    #[test]
    fn draws_cover_all_six_styles() {
        let mut rng = Rng::new(1, &[2]);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            seen.insert(Style::draw(&mut rng).describe()["style"].to_string());
        }
        assert_eq!(seen.len(), 6, "{seen:?}");
    }
}
