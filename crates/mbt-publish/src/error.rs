//! The one error a sink's `deliver` returns.

/// Why a sink could not take an event. Mirrors the daemon's `SinkError` so its adapter is a
/// field-by-field copy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sink `{sink}`: {reason}")]
pub struct DeliveryError {
    pub sink: String,
    pub reason: String,
    /// Whether trying again later may succeed (a listener away, a disk momentarily full) or not
    /// (an event the spool refuses because it is full by policy, a pin that does not exist).
    pub retryable: bool,
}

impl DeliveryError {
    pub fn retryable(sink: impl Into<String>, reason: impl Into<String>) -> Self {
        DeliveryError {
            sink: sink.into(),
            reason: reason.into(),
            retryable: true,
        }
    }

    pub fn fatal(sink: impl Into<String>, reason: impl Into<String>) -> Self {
        DeliveryError {
            sink: sink.into(),
            reason: reason.into(),
            retryable: false,
        }
    }
}
