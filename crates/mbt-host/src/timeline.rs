//! `mbt timeline`: the picture a user needs to set thresholds. It runs the daemon itself
//! (`mbtd`, replaying the clip with the model, window scores on) so what is drawn is exactly
//! what the daemon computed and emitted, then draws, per label, the fused, audio-only and
//! video-only scores over the clip, the ground-truth spans from the clip's `timeline.json`
//! and the daemon's events.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context};
use plotters::prelude::*;
use serde::Deserialize;

use crate::train::plot::{fonts, save_png};

pub struct TimelineArgs {
    pub model: PathBuf,
    pub clip: PathBuf,
    pub out: PathBuf,
    pub mbtd: Option<PathBuf>,
    pub overrides: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Window {
    end_s: f64,
    fused: Vec<(String, f32)>,
    audio: Option<Vec<(String, f32)>>,
    video: Option<Vec<(String, f32)>>,
}

#[derive(Debug, Deserialize)]
struct WindowLine {
    window: Window,
}

#[derive(Debug, Deserialize)]
struct EventLine {
    id: String,
    kind: String,
    label: String,
    start_s: f64,
    end_s: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct Truth {
    label: String,
    start: f64,
    end: f64,
}

#[derive(Debug, Deserialize)]
struct TimelineFile {
    #[serde(default)]
    duration: Option<f64>,
    #[serde(default)]
    events: Vec<Truth>,
}

fn find_mbtd(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("mbtd")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("mbtd"))
}

pub fn run(args: TimelineArgs) -> anyhow::Result<()> {
    fonts()?;
    let mbtd = find_mbtd(args.mbtd.as_deref());
    let mut cmd = Command::new(&mbtd);
    for kv in [
        format!("model.path={}", args.model.display()),
        "audio.source=replay".to_string(),
        "video.source=replay".to_string(),
        format!("replay.clip={}", args.clip.display()),
        "sink.stdout_scores=true".to_string(),
    ]
    .iter()
    .chain(&args.overrides)
    {
        cmd.arg("--set").arg(kv);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| {
            format!(
                "cannot run {} (build it: cargo build --bin mbtd, or pass --mbtd)",
                mbtd.display()
            )
        })?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("no stdout from mbtd"))?;
    let mut windows = Vec::new();
    let mut events: Vec<EventLine> = Vec::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.context("reading mbtd's output")?;
        if let Ok(w) = serde_json::from_str::<WindowLine>(&line) {
            windows.push(w.window);
        } else if let Ok(e) = serde_json::from_str::<EventLine>(&line) {
            events.push(e);
        }
    }
    let status = child.wait().context("waiting for mbtd")?;
    if !status.success() {
        bail!("mbtd exited with {status}");
    }
    if windows.is_empty() {
        bail!("mbtd scored no windows on {}", args.clip.display());
    }
    let truth_path = args.clip.join("timeline.json");
    let truth: TimelineFile = match std::fs::read_to_string(&truth_path) {
        Ok(t) => serde_json::from_str(&t)
            .with_context(|| format!("{}: not a timeline", truth_path.display()))?,
        Err(_) => TimelineFile {
            duration: None,
            events: Vec::new(),
        },
    };
    draw(&args.out, &windows, &events, &truth)?;
    eprintln!(
        "{} windows, {} event messages; wrote {}",
        windows.len(),
        events.len(),
        args.out.display()
    );
    Ok(())
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing failed: {e:?}")
}

fn draw(
    path: &Path,
    windows: &[Window],
    events: &[EventLine],
    truth: &TimelineFile,
) -> anyhow::Result<()> {
    let labels: Vec<String> = windows[0]
        .fused
        .iter()
        .map(|(l, _)| l.clone())
        .filter(|l| l != "none")
        .collect();
    let t_end = truth
        .duration
        .unwrap_or_else(|| windows.iter().map(|w| w.end_s).fold(0.0, f64::max));
    let row_h = 190u32;
    let (w, h) = (1100u32, 40 + row_h * labels.len() as u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (title, rest) = root.split_vertically(40);
        title
            .draw(&Text::new(
                "scores per window (plotted at the window's end) - fused (black), audio head (red), video head (blue); ground truth shaded green, events as orange bars",
                (10, 12),
                ("sans-serif", 14),
            ))
            .map_err(err)?;
        let rows = rest.split_evenly((labels.len(), 1));
        for (label, area) in labels.iter().zip(rows) {
            let mut chart = ChartBuilder::on(&area)
                .caption(label, ("sans-serif", 16))
                .margin(6)
                .x_label_area_size(24)
                .y_label_area_size(40)
                .build_cartesian_2d(0.0..t_end, 0.0..1.05)
                .map_err(err)?;
            chart
                .configure_mesh()
                .x_desc("s")
                .y_labels(3)
                .draw()
                .map_err(err)?;
            for t in truth.events.iter().filter(|t| &t.label == label) {
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(t.start, 0.0), (t.end, 1.05)],
                        GREEN.mix(0.25).filled(),
                    )))
                    .map_err(err)?;
            }
            // Events: from `new` to its `end` (or the clip's end).
            for e in events
                .iter()
                .filter(|e| &e.label == label && e.kind == "end")
            {
                let end = e.end_s.unwrap_or(t_end);
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(e.start_s, 0.97), (end, 1.03)],
                        RGBColor(255, 140, 0).filled(),
                    )))
                    .map_err(err)?;
            }
            let open: Vec<&EventLine> = events
                .iter()
                .filter(|e| &e.label == label && e.kind == "new")
                .filter(|n| !events.iter().any(|e| e.kind == "end" && e.id == n.id))
                .collect();
            for e in open {
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(e.start_s, 0.97), (t_end, 1.03)],
                        RGBColor(255, 140, 0).filled(),
                    )))
                    .map_err(err)?;
            }
            let fused: Vec<(f64, f64)> = windows
                .iter()
                .filter_map(|w| {
                    w.fused
                        .iter()
                        .find(|(l, _)| l == label)
                        .map(|(_, p)| (w.end_s, *p as f64))
                })
                .collect();
            let audio: Vec<(f64, f64)> = series(windows, label, |w| w.audio.as_ref());
            let video: Vec<(f64, f64)> = series(windows, label, |w| w.video.as_ref());
            chart
                .draw_series(LineSeries::new(audio, RED.stroke_width(1)))
                .map_err(err)?;
            chart
                .draw_series(LineSeries::new(video, BLUE.stroke_width(1)))
                .map_err(err)?;
            chart
                .draw_series(LineSeries::new(fused, BLACK.stroke_width(2)))
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    save_png(path, buf, w, h)
}

fn series(
    windows: &[Window],
    label: &str,
    pick: impl Fn(&Window) -> Option<&Vec<(String, f32)>>,
) -> Vec<(f64, f64)> {
    windows
        .iter()
        .filter_map(|w| {
            pick(w)
                .and_then(|s| s.iter().find(|(l, _)| l == label))
                .map(|(_, p)| (w.end_s, *p as f64))
        })
        .collect()
}
