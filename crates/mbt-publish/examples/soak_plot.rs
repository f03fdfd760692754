//! Draws the samples of a soak (`bench/soak.sh`, the CSV `tests/soak.rs` writes) as one PNG:
//! RSS, open file descriptors and threads, spool and evidence bytes, against time, with the
//! broker's outages and the full-disk phase shaded.
//!
//! `cargo build --workspace --locked --example soak_plot`, then
//! `$CARGO_TARGET_DIR/debug/examples/soak_plot soak.csv soak.png` (`bench/soak.sh` does both).
//!
//! Text uses DejaVu Sans (Debian's `fonts-dejavu-core`) or the file `MBT_FONT` names, read at
//! run time, as `mbt`'s own plots do.

use std::path::Path;

use plotters::prelude::*;

type Error = Box<dyn std::error::Error>;

/// A panel: its unit, and its series (name, values, colour).
type Panel<'a> = (&'a str, Vec<(&'a str, Vec<f64>, RGBColor)>);

const FONTS: [&str; 2] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

fn font() -> Result<(), Error> {
    let candidates: Vec<String> = std::env::var("MBT_FONT")
        .into_iter()
        .chain(FONTS.iter().map(|s| s.to_string()))
        .collect();
    for p in &candidates {
        if let Ok(bytes) = std::fs::read(p) {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            return plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                .map_err(|_| format!("{p}: not a usable TrueType font").into());
        }
    }
    Err(format!("no font (tried {}); set MBT_FONT", candidates.join(", ")).into())
}

/// The CSV's columns by name.
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<f64>>,
}

impl Table {
    fn read(path: &Path) -> Result<Table, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut lines = text.lines();
        let header: Vec<String> = lines
            .next()
            .ok_or_else(|| format!("{}: empty", path.display()))?
            .split(',')
            .map(str::to_string)
            .collect();
        let rows = lines
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                l.split(',')
                    .map(|v| v.parse().unwrap_or(f64::NAN))
                    .collect()
            })
            .collect();
        Ok(Table { header, rows })
    }

    fn col(&self, name: &str) -> Result<Vec<f64>, Error> {
        let i = self
            .header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| format!("no column {name}"))?;
        Ok(self
            .rows
            .iter()
            .map(|r| r.get(i).copied().unwrap_or(f64::NAN))
            .collect())
    }
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [csv, png] = args.as_slice() else {
        return Err("usage: soak_plot SAMPLES.csv OUT.png".into());
    };
    font()?;
    let t = Table::read(Path::new(csv))?;
    let time: Vec<f64> = t.col("t_s")?.iter().map(|s| s / 60.0).collect();
    let t_max = time.iter().copied().fold(1.0, f64::max);
    let down: Vec<bool> = t.col("broker_up")?.iter().map(|v| *v == 0.0).collect();
    let full: Vec<bool> = t.col("disk_full")?.iter().map(|v| *v == 1.0).collect();
    let panels: [Panel; 3] = [
        (
            "RSS (MiB)",
            vec![(
                "RSS",
                t.col("rss_kib")?.iter().map(|k| k / 1024.0).collect(),
                RED,
            )],
        ),
        (
            "count",
            vec![
                ("open fds", t.col("fds")?, BLUE),
                ("threads", t.col("threads")?, GREEN),
            ],
        ),
        (
            "MiB on disk",
            vec![
                (
                    "spool",
                    t.col("spool_bytes")?
                        .iter()
                        .map(|b| b / 1048576.0)
                        .collect(),
                    MAGENTA,
                ),
                (
                    "evidence",
                    t.col("evidence_bytes")?
                        .iter()
                        .map(|b| b / 1048576.0)
                        .collect(),
                    BLACK,
                ),
            ],
        ),
    ];
    let (w, h) = (1200u32, 900u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE)?;
        let areas = root.split_evenly((3, 1));
        for (area, (unit, series)) in areas.iter().zip(panels.iter()) {
            let y_max = series
                .iter()
                .flat_map(|(_, v, _)| v.iter().copied())
                .filter(|v| v.is_finite())
                .fold(1.0, f64::max)
                * 1.1;
            let mut chart = ChartBuilder::on(area)
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(60)
                .build_cartesian_2d(0.0..t_max, 0.0..y_max)?;
            chart
                .configure_mesh()
                .x_desc("minutes")
                .y_desc(*unit)
                .draw()?;
            // Shade the broker outages (grey) and the full disk (orange).
            for (flags, colour) in [
                (&down, RGBColor(220, 220, 220)),
                (&full, RGBColor(255, 200, 140)),
            ] {
                chart.draw_series((1..time.len()).filter(|&i| flags[i]).map(|i| {
                    Rectangle::new([(time[i - 1], 0.0), (time[i], y_max)], colour.filled())
                }))?;
            }
            for (name, v, colour) in series {
                let colour = *colour;
                chart
                    .draw_series(LineSeries::new(
                        time.iter()
                            .copied()
                            .zip(v.iter().copied())
                            .filter(|p| p.1.is_finite()),
                        colour.stroke_width(2),
                    ))?
                    .label(*name)
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour));
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()?;
        }
        root.present()?;
    }
    image::RgbImage::from_raw(w, h, buf)
        .ok_or("bad image buffer")?
        .save_with_format(png, image::ImageFormat::Png)?;
    println!("{png}");
    Ok(())
}
