//! The detection event, shared by the daemon's sinks and the host's decoders.
//!
//! One type, serialised as JSON (stdout, MQTT) and with postcard (compact binary frames). The
//! `schema` field is first so a decoder can reject a version it does not know before reading
//! the rest.

use serde::{Deserialize, Serialize};

/// Current event schema version. 2 added [`Event::evidence`]; schema-1 records (written by an
/// older daemon, e.g. still in a spool after an upgrade) decode through [`EventV1`].
pub const EVENT_SCHEMA: u16 = 2;

/// Where an event is in its life: Frigate-style new / update / end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    New,
    Update,
    End,
}

/// Which sensor streams contributed to a score (one-modality fallback marks the other off).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Modalities {
    pub audio: bool,
    pub video: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub schema: u16,
    /// Unique per event (all of its new/update/end records share it): duplicates after a
    /// redelivery are recognisable by it.
    pub id: String,
    pub kind: EventKind,
    pub label: String,
    /// Fused score (softmax probability) that decided the event: its peak so far. With one
    /// modality (the other stream failed) it is that stream's own head's score.
    pub score: f32,
    /// Per-modality head scores in the window of the peak; `None` when that stream was
    /// unavailable there.
    pub score_audio: Option<f32>,
    pub score_video: Option<f32>,
    /// The streams behind the latest window of the event.
    pub modalities: Modalities,
    /// Start and (for `end`) end, milliseconds since the Unix epoch.
    pub start_ms: u64,
    pub end_ms: Option<u64>,
    /// The same on the daemon's monotonic clock, in seconds since capture started (for a
    /// replayed clip: the position in the clip).
    pub start_s: f64,
    pub end_s: Option<f64>,
    pub model_version: String,
    /// The evidence files of the event (the key frame as JPEG, the window's audio as WAV),
    /// absolute paths on the device, when evidence is on and the files were written: set on
    /// `new`, replaced on an `update` (a higher peak, a better picture), repeated on `end`.
    #[serde(default)]
    pub evidence: Option<Evidence>,
}

/// Where an event's evidence lies on the device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub jpeg: Option<String>,
    pub wav: Option<String>,
}

/// The schema-1 layout (no `evidence`): postcard is not self-describing, so an older record
/// needs its own type to be read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventV1 {
    pub schema: u16,
    pub id: String,
    pub kind: EventKind,
    pub label: String,
    pub score: f32,
    pub score_audio: Option<f32>,
    pub score_video: Option<f32>,
    pub modalities: Modalities,
    pub start_ms: u64,
    pub end_ms: Option<u64>,
    pub start_s: f64,
    pub end_s: Option<f64>,
    pub model_version: String,
}

impl From<EventV1> for Event {
    /// The same event without evidence, upgraded to the current schema: `schema` names the
    /// layout an [`Event`] is written in, so a record read in the old layout and sent on
    /// (a spool replayed into a postcard sink) goes out in the current one, readable.
    fn from(e: EventV1) -> Event {
        Event {
            schema: EVENT_SCHEMA,
            id: e.id,
            kind: e.kind,
            label: e.label,
            score: e.score,
            score_audio: e.score_audio,
            score_video: e.score_video,
            modalities: e.modalities,
            start_ms: e.start_ms,
            end_ms: e.end_ms,
            start_s: e.start_s,
            end_s: e.end_s,
            model_version: e.model_version,
            evidence: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_postcard_round_trip() {
        let e = Event {
            schema: EVENT_SCHEMA,
            id: "1732630000000-0001".into(),
            kind: EventKind::New,
            label: "glass_breaking".into(),
            score: 0.93,
            score_audio: Some(0.71),
            score_video: None,
            modalities: Modalities {
                audio: true,
                video: false,
            },
            start_ms: 1_732_630_000_000,
            end_ms: None,
            start_s: 3.0,
            end_s: None,
            model_version: "edge-test".into(),
            evidence: Some(Evidence {
                jpeg: Some("/var/lib/mbtd/evidence/1732630000000-0001.jpg".into()),
                wav: None,
            }),
        };
        let json = serde_json::to_string(&e).unwrap();
        assert!(json.contains(r#""kind":"new""#), "{json}");
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), e);
        let bytes = postcard::to_allocvec(&e).unwrap();
        assert_eq!(bytes[0], EVENT_SCHEMA as u8, "schema is the first varint");
        assert_eq!(postcard::from_bytes::<Event>(&bytes).unwrap(), e);
        // A schema-1 JSON line (no `evidence` key) still reads.
        let v1 = json.replace(r#""schema":2"#, r#""schema":1"#);
        let Some(cut) = v1.find(r#","evidence""#) else {
            panic!("the schema-2 line has no evidence key: {json}")
        };
        let v1 = format!("{}}}", &v1[..cut]);
        let back: Event = serde_json::from_str(&v1)
            .unwrap_or_else(|e| panic!("a schema-1 line does not decode ({e}): {v1}"));
        assert_eq!(back.evidence, None);
        assert_eq!(back.schema, 1);
    }
}
