//! Metrics: a small registry the daemon feeds, rendered in the Prometheus text format
//! (version 0.0.4) by [`server`].
//!
//! Why not the `prometheus` crate: a handful of counters and gauges does not need it, and a
//! daemon for small boards should not carry a web framework. Handles ([`Counter`], [`Gauge`],
//! [`Histogram`]) are cheap clones of atomics, updated from any task without a lock; the
//! registry's lock is taken only to register and to render.
//!
//! What the daemon registers (names it should use, so dashboards agree): `mbtd_windows_total`,
//! `mbtd_inference_seconds` (histogram), `mbtd_events_total{label,kind}`,
//! `mbtd_dropped_windows_total{reason}`, `mbtd_backend_info{backend}` (gauge 1),
//! `mbtd_source_up{source}`. The sinks here register `mbtd_spool_*{sink}` and
//! `mbtd_sink_*{sink}` themselves.

pub mod server;

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricsError {
    #[error("metric name `{0}` is not valid ([a-zA-Z_:][a-zA-Z0-9_:]*)")]
    Name(String),
    #[error("label name `{0}` is not valid ([a-zA-Z_][a-zA-Z0-9_]*)")]
    Label(String),
    #[error("metric `{name}` is already registered as a {existing}")]
    Kind {
        name: String,
        existing: &'static str,
    },
    #[error("metrics.listen `{addr}`: {reason}")]
    Listen { addr: String, reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A monotonically increasing count.
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn inc(&self) {
        self.add(1)
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// For counters mirrored from elsewhere (a spool's own totals): never goes down.
    pub fn set_at_least(&self, n: u64) {
        self.0.fetch_max(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (stored as f64 bits).
#[derive(Debug, Clone, Default)]
pub struct Gauge(Arc<AtomicU64>);

impl Gauge {
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// Observations in fixed buckets (cumulative in the output, as Prometheus expects).
#[derive(Debug, Clone)]
pub struct Histogram(Arc<Mutex<HistogramState>>);

#[derive(Debug)]
struct HistogramState {
    bounds: Vec<f64>,
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    pub fn observe(&self, v: f64) {
        if let Ok(mut h) = self.0.lock() {
            let i = h
                .bounds
                .iter()
                .position(|&b| v <= b)
                .unwrap_or(h.bounds.len());
            h.counts[i] += 1;
            h.sum += v;
            h.count += 1;
        }
    }
    pub fn count(&self) -> u64 {
        self.0.lock().map(|h| h.count).unwrap_or(0)
    }
}

/// Default histogram buckets for inference time, in seconds (5 ms to 10 s).
pub const SECONDS_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Clone)]
enum Cell {
    Counter(Counter),
    Gauge(Gauge),
    Histogram(Histogram),
}

#[derive(Debug)]
struct Family {
    help: String,
    kind: Kind,
    series: BTreeMap<String, Cell>,
}

/// The registry: families by name, series by label set. Clone it freely (shared).
#[derive(Debug, Clone, Default)]
pub struct Registry {
    families: Arc<Mutex<BTreeMap<String, Family>>>,
}

fn valid_name(n: &str, colon: bool) -> bool {
    let mut cs = n.chars();
    matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn label_key(labels: &[(&str, &str)]) -> Result<String, MetricsError> {
    let mut sorted: Vec<_> = labels.to_vec();
    sorted.sort();
    let mut s = String::new();
    for (i, (k, v)) in sorted.iter().enumerate() {
        if !valid_name(k, false) || k.starts_with("__") {
            return Err(MetricsError::Label(k.to_string()));
        }
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{k}=\"{}\"", escape_label(v));
    }
    Ok(s)
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    fn get_or_insert(
        &self,
        name: &str,
        help: &str,
        kind: Kind,
        labels: &[(&str, &str)],
        make: impl FnOnce() -> Cell,
    ) -> Result<Cell, MetricsError> {
        if !valid_name(name, true) {
            return Err(MetricsError::Name(name.into()));
        }
        let key = label_key(labels)?;
        let mut fams = self
            .families
            .lock()
            .map_err(|_| MetricsError::Name(format!("{name} (registry lock poisoned)")))?;
        let fam = fams.entry(name.to_string()).or_insert_with(|| Family {
            help: help.to_string(),
            kind,
            series: BTreeMap::new(),
        });
        if fam.kind != kind {
            return Err(MetricsError::Kind {
                name: name.into(),
                existing: fam.kind.name(),
            });
        }
        Ok(fam.series.entry(key).or_insert_with(make).clone())
    }

    /// The counter `name{labels}`, created at zero on first use (the same handle after).
    pub fn counter(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
    ) -> Result<Counter, MetricsError> {
        match self.get_or_insert(name, help, Kind::Counter, labels, || {
            Cell::Counter(Counter::default())
        })? {
            Cell::Counter(c) => Ok(c),
            _ => Err(MetricsError::Name(name.into())),
        }
    }

    pub fn gauge(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
    ) -> Result<Gauge, MetricsError> {
        match self.get_or_insert(name, help, Kind::Gauge, labels, || {
            Cell::Gauge(Gauge::default())
        })? {
            Cell::Gauge(g) => Ok(g),
            _ => Err(MetricsError::Name(name.into())),
        }
    }

    /// A histogram with the given upper bounds (sorted, finite); `+Inf` is implied.
    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        bounds: &[f64],
    ) -> Result<Histogram, MetricsError> {
        let mut b: Vec<f64> = bounds.iter().copied().filter(|x| x.is_finite()).collect();
        b.sort_by(f64::total_cmp);
        b.dedup();
        let n = b.len();
        match self.get_or_insert(name, help, Kind::Histogram, labels, || {
            Cell::Histogram(Histogram(Arc::new(Mutex::new(HistogramState {
                bounds: b,
                counts: vec![0; n + 1],
                sum: 0.0,
                count: 0,
            }))))
        })? {
            Cell::Histogram(h) => Ok(h),
            _ => Err(MetricsError::Name(name.into())),
        }
    }

    /// Everything, in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let Ok(fams) = self.families.lock() else {
            return out;
        };
        for (name, fam) in fams.iter() {
            let help = fam.help.replace('\\', "\\\\").replace('\n', "\\n");
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {}", fam.kind.name());
            for (labels, cell) in &fam.series {
                let braced = |extra: &str| -> String {
                    match (labels.is_empty(), extra.is_empty()) {
                        (true, true) => String::new(),
                        (true, false) => format!("{{{extra}}}"),
                        (false, true) => format!("{{{labels}}}"),
                        (false, false) => format!("{{{labels},{extra}}}"),
                    }
                };
                match cell {
                    Cell::Counter(c) => {
                        let _ = writeln!(out, "{name}{} {}", braced(""), c.get());
                    }
                    Cell::Gauge(g) => {
                        let _ = writeln!(out, "{name}{} {}", braced(""), fmt_f64(g.get()));
                    }
                    Cell::Histogram(h) => {
                        let Ok(h) = h.0.lock() else { continue };
                        let mut cum = 0;
                        for (i, b) in h.bounds.iter().enumerate() {
                            cum += h.counts[i];
                            let le = format!("le=\"{}\"", fmt_f64(*b));
                            let _ = writeln!(out, "{name}_bucket{} {cum}", braced(&le));
                        }
                        cum += h.counts[h.bounds.len()];
                        let _ = writeln!(out, "{name}_bucket{} {cum}", braced("le=\"+Inf\""));
                        let _ = writeln!(out, "{name}_sum{} {}", braced(""), fmt_f64(h.sum));
                        let _ = writeln!(out, "{name}_count{} {}", braced(""), h.count);
                    }
                }
            }
        }
        out
    }
}

fn fmt_f64(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_text_format() {
        let r = Registry::new();
        let w = r
            .counter("mbtd_windows_total", "Windows scored.", &[])
            .unwrap();
        w.add(3);
        let e = r
            .counter(
                "mbtd_events_total",
                "Events.",
                &[("label", "dog \"rex\""), ("kind", "new")],
            )
            .unwrap();
        e.inc();
        r.gauge("mbtd_backend_info", "Backend.", &[("backend", "tract-cpu")])
            .unwrap()
            .set(1.0);
        let h = r
            .histogram("mbtd_inference_seconds", "Inference.", &[], &[0.1, 0.01])
            .unwrap();
        h.observe(0.005);
        h.observe(0.05);
        h.observe(3.0);
        let text = r.render();
        let want = [
            "# TYPE mbtd_windows_total counter",
            "mbtd_windows_total 3",
            "mbtd_events_total{kind=\"new\",label=\"dog \\\"rex\\\"\"} 1",
            "mbtd_backend_info{backend=\"tract-cpu\"} 1",
            "# TYPE mbtd_inference_seconds histogram",
            "mbtd_inference_seconds_bucket{le=\"0.01\"} 1",
            "mbtd_inference_seconds_bucket{le=\"0.1\"} 2",
            "mbtd_inference_seconds_bucket{le=\"+Inf\"} 3",
            "mbtd_inference_seconds_count 3",
        ];
        for line in want {
            assert!(
                text.lines().any(|l| l == line),
                "missing `{line}` in\n{text}"
            );
        }
    }

    #[test]
    fn same_name_and_labels_share_one_series() {
        let r = Registry::new();
        r.counter("a_total", "h", &[("x", "1")]).unwrap().inc();
        r.counter("a_total", "h", &[("x", "1")]).unwrap().inc();
        assert_eq!(r.counter("a_total", "h", &[("x", "1")]).unwrap().get(), 2);
        assert!(matches!(
            r.gauge("a_total", "h", &[]),
            Err(MetricsError::Kind { .. })
        ));
        assert!(r.counter("bad name", "h", &[]).is_err());
        assert!(r.counter("ok", "h", &[("bad-label", "v")]).is_err());
    }
}
