//! Metrics: a small facade over the Prometheus project's own Rust client
//! ([`prometheus_client`]), rendered in the OpenMetrics text format, which Prometheus scrapes.
//!
//! Why a facade: the daemon and the sinks create series on first use, by name and label set
//! (`mbtd_events_total{label,kind}` appears when the first event of a label goes out), while
//! `prometheus_client` wants each family registered once up front. [`Registry`] registers a
//! family the first time its name is used and hands out cheap clonable handles
//! ([`Counter`], [`Gauge`], [`Histogram`]: atomics shared with the family), updated from any
//! task without a lock; the registry's lock is taken only to create a series and to render.
//!
//! What the daemon registers (names it should use, so dashboards agree): `mbtd_windows_total`,
//! `mbtd_inference_seconds` (histogram), `mbtd_events_total{label,kind}`,
//! `mbtd_dropped_windows_total{reason}`, `mbtd_backend_info{backend}` (gauge 1),
//! `mbtd_source_up{source}`, `mbtd_score{label,head}`. The sinks here register
//! `mbtd_spool_*{sink}` and `mbtd_sink_*{sink}` themselves.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::family::{Family, MetricConstructor};

/// The HTTP `Content-Type` of [`Registry::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

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
    #[error("metric `{0}` is registered both with and without labels")]
    LabelShape(String),
}

type Labels = Vec<(String, String)>;
type PcCounter = prometheus_client::metrics::counter::Counter<u64, AtomicU64>;
type PcGauge = prometheus_client::metrics::gauge::Gauge<f64, AtomicU64>;
type PcHistogram = prometheus_client::metrics::histogram::Histogram;

/// A monotonically increasing count.
#[derive(Debug, Clone, Default)]
pub struct Counter(PcCounter);

impl Counter {
    pub fn inc(&self) {
        self.add(1)
    }
    pub fn add(&self, n: u64) {
        self.0.inc_by(n);
    }
    /// For counters mirrored from elsewhere (a spool's own totals): never goes down.
    pub fn set_at_least(&self, n: u64) {
        self.0.inner().fetch_max(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

/// A value that goes up and down.
#[derive(Debug, Clone, Default)]
pub struct Gauge(PcGauge);

impl Gauge {
    pub fn set(&self, v: f64) {
        self.0.set(v);
    }
    pub fn get(&self) -> f64 {
        self.0.get()
    }
}

/// Observations in fixed buckets.
#[derive(Debug, Clone)]
pub struct Histogram(PcHistogram);

impl Histogram {
    pub fn observe(&self, v: f64) {
        self.0.observe(v);
    }
}

/// Default histogram buckets for inference time, in seconds (5 ms to 10 s).
pub const SECONDS_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Makes each series of a histogram family with the family's buckets.
#[derive(Debug, Clone)]
struct Buckets(Arc<[f64]>);

impl MetricConstructor<PcHistogram> for Buckets {
    fn new_metric(&self) -> PcHistogram {
        PcHistogram::new(self.0.iter().copied())
    }
}

/// A metric without labels is registered as itself (`name 3`), one with labels as a family
/// of series (`name{k="v"} 3`).
#[derive(Debug, Clone)]
enum Series<M, C = fn() -> M> {
    Plain(M),
    Labelled(Family<Labels, M, C>),
}

impl<M: Clone, C: MetricConstructor<M>> Series<M, C> {
    fn get(&self, name: &str, set: &Labels) -> Result<M, MetricsError> {
        match self {
            Series::Plain(m) if set.is_empty() => Ok(m.clone()),
            Series::Labelled(f) if !set.is_empty() => Ok(f.get_or_create(set).clone()),
            _ => Err(MetricsError::LabelShape(name.into())),
        }
    }
}

#[derive(Debug, Clone)]
enum Fam {
    Counter(Series<PcCounter>),
    Gauge(Series<PcGauge>),
    Histogram(Series<PcHistogram, Buckets>),
}

impl Fam {
    fn kind(&self) -> &'static str {
        match self {
            Fam::Counter(_) => "counter",
            Fam::Gauge(_) => "gauge",
            Fam::Histogram(_) => "histogram",
        }
    }
}

fn register<M, C>(
    r: &mut prometheus_client::registry::Registry,
    name: &str,
    help: &str,
    s: &Series<M, C>,
) where
    M: prometheus_client::registry::Metric + Clone,
    Family<Labels, M, C>: prometheus_client::registry::Metric + Clone,
{
    match s {
        Series::Plain(m) => r.register(name, help, m.clone()),
        Series::Labelled(f) => r.register(name, help, f.clone()),
    }
}

#[derive(Debug, Default)]
struct State {
    registry: prometheus_client::registry::Registry,
    families: BTreeMap<String, Fam>,
}

/// The registry: families by name, series by label set. Clone it freely (shared).
#[derive(Debug, Clone, Default)]
pub struct Registry {
    state: Arc<Mutex<State>>,
}

fn valid_name(n: &str, colon: bool) -> bool {
    let mut cs = n.chars();
    matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
}

/// `prometheus_client` writes label values as given: escape them as the format requires.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Validated, escaped and sorted (the same set in any order is the same series).
fn label_set(labels: &[(&str, &str)]) -> Result<Labels, MetricsError> {
    let mut out = Labels::with_capacity(labels.len());
    for (k, v) in labels {
        if !valid_name(k, false) || k.starts_with("__") {
            return Err(MetricsError::Label(k.to_string()));
        }
        out.push((k.to_string(), escape_label(v)));
    }
    out.sort();
    Ok(out)
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// The family `name`, registered on first use with `make`; an error if it exists with
    /// another kind.
    fn family(
        &self,
        name: &str,
        help: &str,
        make: impl FnOnce() -> Fam,
    ) -> Result<Fam, MetricsError> {
        if !valid_name(name, true) {
            return Err(MetricsError::Name(name.into()));
        }
        let mut st = self
            .state
            .lock()
            .map_err(|_| MetricsError::Name(format!("{name} (registry lock poisoned)")))?;
        if let Some(f) = st.families.get(name) {
            return Ok(f.clone());
        }
        let fam = make();
        // The encoder ends each help text with a full stop of its own.
        let help = help.trim_end_matches('.');
        let r = &mut st.registry;
        match &fam {
            // The text encoding appends `_total` to a counter's name.
            Fam::Counter(f) => register(r, name.strip_suffix("_total").unwrap_or(name), help, f),
            Fam::Gauge(f) => register(r, name, help, f),
            Fam::Histogram(f) => register(r, name, help, f),
        }
        st.families.insert(name.to_string(), fam.clone());
        Ok(fam)
    }

    fn wrong_kind(name: &str, fam: &Fam) -> MetricsError {
        MetricsError::Kind {
            name: name.into(),
            existing: fam.kind(),
        }
    }

    /// The counter `name{labels}`, created at zero on first use (the same handle after).
    pub fn counter(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
    ) -> Result<Counter, MetricsError> {
        let set = label_set(labels)?;
        let make = || {
            Fam::Counter(match set.is_empty() {
                true => Series::Plain(PcCounter::default()),
                false => Series::Labelled(Family::default()),
            })
        };
        match self.family(name, help, make)? {
            Fam::Counter(f) => f.get(name, &set).map(Counter),
            other => Err(Self::wrong_kind(name, &other)),
        }
    }

    pub fn gauge(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
    ) -> Result<Gauge, MetricsError> {
        let set = label_set(labels)?;
        let make = || {
            Fam::Gauge(match set.is_empty() {
                true => Series::Plain(PcGauge::default()),
                false => Series::Labelled(Family::default()),
            })
        };
        match self.family(name, help, make)? {
            Fam::Gauge(f) => f.get(name, &set).map(Gauge),
            other => Err(Self::wrong_kind(name, &other)),
        }
    }

    /// A histogram with the given upper bounds (finite ones, sorted); `+Inf` is implied. The
    /// first registration of a name fixes its buckets.
    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        bounds: &[f64],
    ) -> Result<Histogram, MetricsError> {
        let set = label_set(labels)?;
        let mut b: Vec<f64> = bounds.iter().copied().filter(|x| x.is_finite()).collect();
        b.sort_by(f64::total_cmp);
        b.dedup();
        let buckets = Buckets(b.into());
        let make = || {
            Fam::Histogram(match set.is_empty() {
                true => Series::Plain(buckets.new_metric()),
                false => Series::Labelled(Family::new_with_constructor(buckets.clone())),
            })
        };
        match self.family(name, help, make)? {
            Fam::Histogram(f) => f.get(name, &set).map(Histogram),
            other => Err(Self::wrong_kind(name, &other)),
        }
    }

    /// Everything, in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Ok(st) = self.state.lock() {
            if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &st.registry) {
                tracing::warn!("metrics: encoding failed: {e}");
            }
        }
        out
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
            "# TYPE mbtd_windows counter",
            "mbtd_windows_total 3",
            "mbtd_events_total{kind=\"new\",label=\"dog \\\"rex\\\"\"} 1",
            "mbtd_backend_info{backend=\"tract-cpu\"} 1.0",
            "# TYPE mbtd_inference_seconds histogram",
            "mbtd_inference_seconds_bucket{le=\"0.01\"} 1",
            "mbtd_inference_seconds_bucket{le=\"0.1\"} 2",
            "mbtd_inference_seconds_bucket{le=\"+Inf\"} 3",
            "mbtd_inference_seconds_count 3",
            "# EOF",
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
        assert!(matches!(
            r.counter("a_total", "h", &[]),
            Err(MetricsError::LabelShape(_))
        ));
        assert!(r.counter("ok", "h", &[("bad-label", "v")]).is_err());
    }
}
