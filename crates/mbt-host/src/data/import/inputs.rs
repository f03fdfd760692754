//! Finding what to import and its labels: CSV files, label folders, and `mbtd`'s evidence
//! directories.
//!
//! An input is a CSV file (`file,label[,start,end]`, header optional, paths relative to the
//! CSV's folder) or a directory. A directory is read two ways at once: its `labels.csv` (the
//! file the daemon's web page writes when an event is marked right, wrong (`none`) or
//! relabelled), and its label folders (`DIR/<label>/...`, where a user moves files by hand).
//! Files are recognised by extension: videos are cut into windows, sounds and pictures are
//! mixed into rendered scenes, and an `<id>.json` beside `<id>.jpg` and `<id>.wav` marks one of
//! `mbtd`'s evidence events (key frame + window audio), which becomes a still clip. A CSV row
//! may name an event by its id or by any of its three files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::windows::Segment;

/// What a source file is.
#[derive(Debug, Clone, PartialEq)]
pub enum Material {
    /// A video with sound (or without: checked when decoding).
    Video,
    /// One of `mbtd`'s events: key frame, window audio, event record.
    Evidence {
        jpg: PathBuf,
        wav: PathBuf,
        json: PathBuf,
    },
    /// Audio alone: mixed into rendered scenes.
    Sound,
    /// A picture alone: placed into rendered scenes.
    Picture,
}

impl Material {
    pub fn name(&self) -> &'static str {
        match self {
            Material::Video => "video",
            Material::Evidence { .. } => "evidence",
            Material::Sound => "sound",
            Material::Picture => "picture",
        }
    }
}

/// One source: a file (or an evidence event) with its labels.
#[derive(Debug, Clone)]
pub struct Item {
    /// The file (for an evidence event, its `.json`).
    pub path: PathBuf,
    /// The name shown in messages and the summary: relative to its input.
    pub name: String,
    pub material: Material,
    pub segments: Vec<Segment>,
    /// Where each segment's label came from (`labels.csv line 4`, `folder dog/`).
    pub origins: Vec<String>,
}

impl Item {
    /// The label that stands for the item when splitting: its first.
    pub fn primary_label(&self) -> &str {
        self.segments.first().map_or("", |s| s.label.as_str())
    }
}

/// Everything found in the inputs.
#[derive(Debug, Default)]
pub struct Found {
    pub items: Vec<Item>,
    /// Evidence events no CSV row or folder labels (left out).
    pub unlabelled: Vec<String>,
    /// Files of no known media type in label folders (left out).
    pub ignored: Vec<String>,
}

pub const VIDEO: &[&str] = &[
    "mp4", "m4v", "mov", "mkv", "webm", "avi", "mpg", "mpeg", "ts", "ogv", "3gp", "wmv", "flv",
];
pub const SOUND: &[&str] = &[
    "wav", "flac", "mp3", "ogg", "oga", "opus", "m4a", "aac", "wma",
];
pub const PICTURE: &[&str] = &["jpg", "jpeg", "png", "gif", "bmp", "webp"];

fn ext(p: &Path) -> String {
    p.extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// The evidence event `stem` in `dir`, when its record `<stem>.json` is there.
fn evidence(dir: &Path, stem: &str) -> Option<Material> {
    let json = dir.join(format!("{stem}.json"));
    json.is_file().then(|| Material::Evidence {
        jpg: dir.join(format!("{stem}.jpg")),
        wav: dir.join(format!("{stem}.wav")),
        json,
    })
}

/// What `path` is, or `None` for a file of no known type.
fn material_of(path: &Path) -> Option<Material> {
    let e = ext(path);
    if matches!(e.as_str(), "jpg" | "wav" | "json") {
        let (dir, stem) = (path.parent()?, path.file_stem()?.to_str()?);
        if let Some(m) = evidence(dir, stem) {
            return Some(m);
        }
    }
    if VIDEO.contains(&e.as_str()) {
        Some(Material::Video)
    } else if SOUND.contains(&e.as_str()) {
        Some(Material::Sound)
    } else if PICTURE.contains(&e.as_str()) {
        Some(Material::Picture)
    } else {
        None
    }
}

fn known_types() -> String {
    format!(
        "videos: {}; sounds: {}; pictures: {}; or an mbtd evidence event <id>.jpg/.wav/.json",
        VIDEO.join(" "),
        SOUND.join(" "),
        PICTURE.join(" ")
    )
}

/// One row of a labels CSV.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Line number in the file (1-based).
    pub line: usize,
    pub file: String,
    pub label: String,
    pub span: Option<(f64, f64)>,
}

/// Splits one CSV line (commas; double quotes around a field, `""` inside them).
fn fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter().map(|f| f.trim().to_string()).collect()
}

/// Parses a labels CSV: `file,label[,start,end]`, an optional header row, `#` comments and
/// blank lines skipped. Errors name the file and line.
pub fn parse_csv(text: &str, path: &Path) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let raw = raw.trim_start_matches('\u{feff}').trim();
        if raw.is_empty() || raw.starts_with('#') {
            continue;
        }
        let f = fields(raw);
        let at = || format!("{} line {line}", path.display());
        if rows.is_empty()
            && f.first().is_some_and(|x| x.eq_ignore_ascii_case("file"))
            && f.get(1).is_some_and(|x| x.eq_ignore_ascii_case("label"))
        {
            continue; // the header
        }
        let span = match f.len() {
            2 => None,
            4 => {
                let num = |k: usize, name: &str| -> Result<f64> {
                    let v: f64 = f[k].parse().map_err(|_| {
                        anyhow::anyhow!("{}: {name} `{}` is not a number of seconds", at(), f[k])
                    })?;
                    anyhow::ensure!(
                        v.is_finite() && v >= 0.0,
                        "{}: {name} {v} must be a time >= 0 s",
                        at()
                    );
                    Ok(v)
                };
                let (s, e) = (num(2, "start")?, num(3, "end")?);
                anyhow::ensure!(e > s, "{}: end {e} s is not after start {s} s", at());
                Some((s, e))
            }
            n => bail!(
                "{}: {n} fields; expected `file,label` or `file,label,start,end`",
                at()
            ),
        };
        if f[0].is_empty() {
            bail!("{}: the file name is empty", at());
        }
        rows.push(Row {
            line,
            file: f[0].clone(),
            label: f[1].clone(),
            span,
        });
    }
    if rows.is_empty() {
        bail!(
            "{}: no rows (expected lines `file,label[,start,end]`)",
            path.display()
        );
    }
    Ok(rows)
}

/// Collects items, merging the labels of one file named in several places.
#[derive(Default)]
struct Collector {
    by_path: BTreeMap<PathBuf, usize>,
    found: Found,
}

impl Collector {
    fn add(
        &mut self,
        path: PathBuf,
        name: String,
        material: Material,
        seg: Segment,
        origin: String,
    ) -> Result<()> {
        let Some(&i) = self.by_path.get(&path) else {
            self.by_path.insert(path.clone(), self.found.items.len());
            self.found.items.push(Item {
                path,
                name,
                material,
                segments: vec![seg],
                origins: vec![origin],
            });
            return Ok(());
        };
        let item = &mut self.found.items[i];
        let whole = |s: &Segment| s.span.is_none();
        if let Some(k) = item.segments.iter().position(|s| whole(s) || whole(&seg)) {
            let same = item.segments[k] == seg;
            if !same {
                bail!(
                    "{}: {} labels it `{}`{}, and {} labels it `{}`{}: a file labelled as a \
                     whole cannot have other labels (give every row start and end times)",
                    item.name,
                    item.origins[k],
                    item.segments[k].label,
                    span_text(&item.segments[k]),
                    origin,
                    seg.label,
                    span_text(&seg)
                );
            }
            return Ok(()); // named twice (an event's .jpg and .wav rows)
        }
        item.segments.push(seg);
        item.origins.push(origin);
        Ok(())
    }
}

fn span_text(s: &Segment) -> String {
    match s.span {
        Some((a, b)) => format!(" from {a} s to {b} s"),
        None => " as a whole".into(),
    }
}

/// Reads a CSV's rows into the collector; paths are relative to the CSV's folder.
fn read_csv(csv: &Path, c: &mut Collector) -> Result<()> {
    let text = std::fs::read_to_string(csv)
        .with_context(|| format!("cannot read {} (a labels CSV)", csv.display()))?;
    let rows = parse_csv(&text, csv)?;
    let dir = csv.parent().unwrap_or(Path::new("."));
    let csv_name = csv.file_name().map_or_else(
        || csv.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    for r in rows {
        let at = format!("{csv_name} line {}", r.line);
        let p = dir.join(&r.file);
        // An event's id, or one of its files that is gone (the record names the event).
        let stem = Path::new(&r.file)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("");
        let material = if p.is_file() {
            material_of(&p)
        } else {
            evidence(dir, &r.file).or_else(|| {
                matches!(ext(&p).as_str(), "jpg" | "wav" | "json")
                    .then(|| evidence(dir, stem))
                    .flatten()
            })
        };
        let Some(material) = material else {
            if p.exists() || dir.join(format!("{}.json", r.file)).exists() {
                bail!(
                    "{} line {}: {}: not a file of a known type ({})",
                    csv.display(),
                    r.line,
                    p.display(),
                    known_types()
                );
            }
            bail!(
                "{} line {}: `{}` does not exist (looked for {}; paths are relative to the CSV's folder)",
                csv.display(),
                r.line,
                r.file,
                p.display()
            );
        };
        if r.span.is_some() && material != Material::Video {
            bail!(
                "{} line {}: start and end apply to video files only; {} is {}",
                csv.display(),
                r.line,
                r.file,
                material.name()
            );
        }
        let (path, name) = match &material {
            Material::Evidence { json, .. } => {
                (json.clone(), json.with_extension("").display().to_string())
            }
            _ => (p.clone(), p.display().to_string()),
        };
        let seg = Segment {
            label: r.label.clone(),
            span: r.span,
        };
        c.add(path, name, material, seg, at)?;
    }
    Ok(())
}

fn list(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("cannot list {}", dir.display()))?;
    v.sort();
    Ok(v)
}

fn hidden(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

/// Every file under `dir` (recursively, hidden ones skipped), sorted.
fn files_under(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for p in list(dir)? {
        if hidden(&p) {
            continue;
        }
        if p.is_dir() {
            files_under(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

/// Reads a directory: its `labels.csv` and its label folders.
fn read_dir(dir: &Path, c: &mut Collector) -> Result<()> {
    let csv = dir.join("labels.csv");
    let has_csv = csv.is_file();
    if has_csv {
        read_csv(&csv, c)?;
    }
    let mut any_folder = false;
    let mut flat_events = Vec::new();
    for p in list(dir)? {
        if hidden(&p) {
            continue;
        }
        if p.is_file() {
            if ext(&p) == "json" {
                if let Some(stem) = p.file_stem().and_then(|s| s.to_str()) {
                    flat_events.push((p.clone(), stem.to_string()));
                }
            }
            continue;
        }
        let Some(label) = p.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue;
        };
        let mut files = Vec::new();
        files_under(&p, &mut files)?;
        for f in files {
            let rel = f.strip_prefix(dir).unwrap_or(&f).display().to_string();
            let Some(material) = material_of(&f) else {
                if !matches!(ext(&f).as_str(), "json" | "csv" | "txt" | "md") {
                    c.found.ignored.push(f.display().to_string());
                }
                continue;
            };
            let (path, name) = match &material {
                Material::Evidence { json, .. } => {
                    (json.clone(), json.with_extension("").display().to_string())
                }
                _ => (f.clone(), f.display().to_string()),
            };
            if let Material::Evidence { json, .. } = &material {
                if c.by_path.contains_key(json) && json != &f {
                    continue; // the event's other files
                }
            }
            any_folder = true;
            let seg = Segment {
                label: label.clone(),
                span: None,
            };
            c.add(
                path,
                name,
                material,
                seg,
                format!("folder {label}/ ({rel})"),
            )?;
        }
    }
    for (json, stem) in flat_events {
        if !c.by_path.contains_key(&json) {
            c.found.unlabelled.push(stem);
        }
    }
    if !has_csv && !any_folder {
        bail!(
            "{}: nothing to import: expected label folders ({}/<label>/...) or a labels.csv \
             (file,label[,start,end]) in it",
            dir.display(),
            dir.display()
        );
    }
    Ok(())
}

/// Reads every input (CSV files and directories).
pub fn collect(inputs: &[PathBuf]) -> Result<Found> {
    let mut c = Collector::default();
    for input in inputs {
        if input.is_dir() {
            read_dir(input, &mut c)?;
        } else if input.is_file() {
            if ext(input) != "csv" {
                bail!(
                    "{}: an input is a labels CSV (file,label[,start,end]) or a directory of label \
                     folders; to import one file, list it in a CSV",
                    input.display()
                );
            }
            read_csv(input, &mut c)?;
        } else {
            bail!("{}: no such file or directory", input.display());
        }
    }
    Ok(c.found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_with_and_without_times() {
        let text = "file,label,start,end\n\n# comment\na.mp4,dog,1,3.5\n\"b, c.mkv\",none\n";
        let rows = parse_csv(text, Path::new("x.csv")).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].line, 4);
        assert_eq!(rows[0].span, Some((1.0, 3.5)));
        assert_eq!((rows[1].file.as_str(), rows[1].span), ("b, c.mkv", None));
        let e = parse_csv("a.mp4,dog,x,2\n", Path::new("x.csv")).unwrap_err();
        assert!(format!("{e}").contains("x.csv line 1: start `x`"), "{e}");
        let e = parse_csv("a.mp4,dog,3,2\n", Path::new("x.csv")).unwrap_err();
        assert!(format!("{e}").contains("not after start"), "{e}");
        let e = parse_csv("file,label\n", Path::new("x.csv")).unwrap_err();
        assert!(format!("{e}").contains("no rows"), "{e}");
        let e = parse_csv("a.mp4\n", Path::new("x.csv")).unwrap_err();
        assert!(format!("{e}").contains("1 fields"), "{e}");
    }
}
