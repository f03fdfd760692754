//! Pictures: training curves, the confusion matrix (and the demo timeline, `mbt timeline`).
//!
//! plotters draws into an RGB buffer that we encode as PNG with the `image` crate we already
//! use; text uses a TrueType font read at run time (DejaVu Sans from Debian's
//! `fonts-dejavu-core`, or the file `MBT_FONT` names), so no font is bundled and no system
//! font library is linked.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Context};
use plotters::prelude::*;

use super::metrics::Metrics;
use super::LogLine;

const FONT_PATHS: [&str; 2] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

/// Registers the font once; the error says which package provides it.
pub fn fonts() -> anyhow::Result<()> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let candidates: Vec<String> = std::env::var("MBT_FONT")
            .into_iter()
            .chain(FONT_PATHS.iter().map(|s| s.to_string()))
            .collect();
        for p in &candidates {
            if let Ok(bytes) = std::fs::read(p) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                return plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                    .map_err(|_| format!("{p}: not a usable TrueType font"));
            }
        }
        Err(format!(
            "no font found (tried {}); install fonts-dejavu-core or set MBT_FONT to a .ttf file",
            candidates.join(", ")
        ))
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

/// Encodes an RGB buffer as PNG.
pub fn save_png(path: &Path, buf: Vec<u8>, w: u32, h: u32) -> anyhow::Result<()> {
    let img = image::RgbImage::from_raw(w, h, buf).ok_or_else(|| anyhow!("bad image buffer"))?;
    img.save_with_format(path, image::ImageFormat::Png)
        .with_context(|| format!("cannot write {}", path.display()))
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing failed: {e:?}")
}

/// `RUN/loss.png` and `RUN/accuracy.png` from `RUN/metrics.jsonl`.
pub fn curves(run: &Path) -> anyhow::Result<()> {
    fonts()?;
    let path = run.join("metrics.jsonl");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let lines: Vec<LogLine> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let train: Vec<&LogLine> = lines.iter().filter(|l| l.kind == "train").collect();
    let val: Vec<&LogLine> = lines.iter().filter(|l| l.kind == "val").collect();
    if train.is_empty() {
        bail!("{}: no training lines yet", path.display());
    }
    let max_step = lines.iter().map(|l| l.step).max().unwrap_or(1).max(1) as f64;
    let series = |pts: Vec<(f64, f64)>| pts;

    let loss_max = lines
        .iter()
        .map(|l| l.loss)
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        .max(1e-3);
    draw_lines(
        &run.join("loss.png"),
        "loss",
        "step",
        "loss",
        (0.0, max_step),
        (0.0, loss_max * 1.05),
        vec![
            (
                "train (fused + heads)",
                RED,
                series(train.iter().map(|l| (l.step as f64, l.loss)).collect()),
            ),
            (
                "val (fused)",
                BLUE,
                series(val.iter().map(|l| (l.step as f64, l.loss)).collect()),
            ),
        ],
    )?;
    draw_lines(
        &run.join("accuracy.png"),
        "top-1 accuracy",
        "step",
        "%",
        (0.0, max_step),
        (0.0, 100.0),
        vec![
            (
                "train fused (running)",
                RED,
                train.iter().map(|l| (l.step as f64, l.top1)).collect(),
            ),
            (
                "val fused",
                BLUE,
                val.iter().map(|l| (l.step as f64, l.top1)).collect(),
            ),
            (
                "val video head",
                GREEN,
                val.iter()
                    .filter_map(|l| l.top1_video.map(|v| (l.step as f64, v)))
                    .collect(),
            ),
            (
                "val audio head",
                MAGENTA,
                val.iter()
                    .filter_map(|l| l.top1_audio.map(|v| (l.step as f64, v)))
                    .collect(),
            ),
        ],
    )
}

type Series = (&'static str, RGBColor, Vec<(f64, f64)>);

fn draw_lines(
    path: &Path,
    title: &str,
    xlabel: &str,
    ylabel: &str,
    x: (f64, f64),
    y: (f64, f64),
    series: Vec<Series>,
) -> anyhow::Result<()> {
    let (w, h) = (900u32, 560u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 24))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(x.0..x.1, y.0..y.1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(xlabel)
            .y_desc(ylabel)
            .draw()
            .map_err(err)?;
        for (name, color, pts) in series {
            if pts.is_empty() {
                continue;
            }
            chart
                .draw_series(LineSeries::new(pts, color.stroke_width(2)))
                .map_err(err)?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::MiddleRight)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    save_png(path, buf, w, h)
}

/// The confusion matrix as a heat map with counts (rows: true class, columns: predicted).
pub fn confusion(path: &Path, m: &Metrics, labels: &[String]) -> anyhow::Result<()> {
    fonts()?;
    let c = labels.len();
    let cell = 90u32;
    let (left, top) = (190u32, 60u32);
    let (w, h) = (left + cell * c as u32 + 20, top + cell * c as u32 + 170);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let title = format!(
            "confusion (fused), top-1 {:.2}% on {} clips",
            m.top1, m.samples
        );
        root.draw(&Text::new(title, (10, 15), ("sans-serif", 20)))
            .map_err(err)?;
        for (t, row) in m.confusion.iter().enumerate() {
            let total: usize = row.iter().sum::<usize>().max(1);
            for (p, &n) in row.iter().enumerate() {
                let frac = n as f64 / total as f64;
                let shade = (255.0 * (1.0 - frac)) as u8;
                let (x0, y0) = (
                    (left + p as u32 * cell) as i32,
                    (top + t as u32 * cell) as i32,
                );
                root.draw(&Rectangle::new(
                    [(x0, y0), (x0 + cell as i32, y0 + cell as i32)],
                    RGBColor(shade, shade, 255).filled(),
                ))
                .map_err(err)?;
                let color = if frac > 0.5 { WHITE } else { BLACK };
                root.draw(&Text::new(
                    n.to_string(),
                    (x0 + 30, y0 + 35),
                    ("sans-serif", 18).into_font().color(&color),
                ))
                .map_err(err)?;
            }
            root.draw(&Text::new(
                labels[t].clone(),
                (10, (top + t as u32 * cell + 35) as i32),
                ("sans-serif", 16),
            ))
            .map_err(err)?;
        }
        for (p, l) in labels.iter().enumerate() {
            let x = (left + p as u32 * cell + 40) as i32;
            let y = (top + c as u32 * cell + 10) as i32;
            root.draw(&Text::new(
                l.clone(),
                (x, y),
                ("sans-serif", 15)
                    .into_font()
                    .transform(FontTransform::Rotate90),
            ))
            .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    save_png(path, buf, w, h)
}
