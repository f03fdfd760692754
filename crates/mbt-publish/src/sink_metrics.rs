//! The metrics every spooled sink exports, labelled `sink="<name>"`.

use crate::metrics::{Counter, Gauge, MetricsError, Registry};
use crate::spool::SpoolStats;

/// Handles for one sink's series; [`SinkMetrics::detached`] when the daemon runs without a
/// registry (updates then go nowhere).
#[derive(Debug, Clone, Default)]
pub struct SinkMetrics {
    pub pending: Gauge,
    pub disk_bytes: Gauge,
    pub dropped: Counter,
    pub refused: Counter,
    pub corrupt: Counter,
    /// Spool writes the disk refused (full, read-only).
    pub write_failures: Counter,
    /// Events waiting in memory for the disk, and those dropped from that queue.
    pub held: Gauge,
    pub held_dropped: Counter,
    pub delivered: Counter,
    /// Events sent again after a reconnect (each one a possible duplicate downstream).
    pub redelivered: Counter,
    pub connected: Gauge,
}

impl SinkMetrics {
    pub fn detached() -> Self {
        Self::default()
    }

    pub fn register(registry: &Registry, sink: &str) -> Result<Self, MetricsError> {
        let l = [("sink", sink)];
        Ok(SinkMetrics {
            pending: registry.gauge(
                "mbtd_spool_pending_events",
                "Events in the sink's spool waiting for delivery (the spool depth).",
                &l,
            )?,
            disk_bytes: registry.gauge(
                "mbtd_spool_disk_bytes",
                "Bytes of the sink's spool files on disk.",
                &l,
            )?,
            dropped: registry.counter(
                "mbtd_spool_dropped_total",
                "Undelivered events deleted because the spool was full (when_full = drop_oldest).",
                &l,
            )?,
            refused: registry.counter(
                "mbtd_spool_refused_total",
                "New events refused because the spool was full (when_full = refuse_newest).",
                &l,
            )?,
            corrupt: registry.counter(
                "mbtd_spool_corrupt_total",
                "Damaged spool regions and torn records skipped.",
                &l,
            )?,
            write_failures: registry.counter(
                "mbtd_spool_write_failures_total",
                "Spool writes the disk refused (full or read-only filesystem).",
                &l,
            )?,
            held: registry.gauge(
                "mbtd_spool_held_events",
                "Events held in memory because the disk refused the spool's writes.",
                &l,
            )?,
            held_dropped: registry.counter(
                "mbtd_spool_held_dropped_total",
                "Held events dropped because the memory queue was full (the disk refused writes for long).",
                &l,
            )?,
            delivered: registry.counter(
                "mbtd_sink_delivered_total",
                "Events confirmed delivered by the sink.",
                &l,
            )?,
            redelivered: registry.counter(
                "mbtd_sink_redelivered_total",
                "Events sent again after a reconnect (possible duplicates, same event id).",
                &l,
            )?,
            connected: registry.gauge(
                "mbtd_sink_connected",
                "1 while the sink is connected to its peer.",
                &l,
            )?,
        })
    }

    /// Mirrors a spool's statistics (counters only ever move up).
    pub fn spool(&self, s: &SpoolStats) {
        self.pending.set(s.pending_records as f64);
        self.disk_bytes.set(s.disk_bytes as f64);
        self.dropped.set_at_least(s.dropped);
        self.refused.set_at_least(s.refused);
        self.corrupt.set_at_least(s.corrupt_regions + s.torn_tails);
        self.write_failures.set_at_least(s.write_failures);
        self.held.set(s.held_events as f64);
        self.held_dropped.set_at_least(s.held_dropped);
    }
}
