//! The binary event frame: postcard, COBS-framed.
//!
//! One frame is `COBS(postcard(Event))` followed by a single `0x00`. COBS removes every zero
//! from the encoded bytes, so the zero is an unambiguous delimiter: a reader that joins a
//! stream in the middle, or loses bytes, resynchronises at the next zero. The same frame goes
//! into a UDP datagram (one per datagram) and onto a Unix stream (back to back).
//!
//! Versioning: [`Event::schema`] is the first field, so it is the first postcard varint of the
//! decoded bytes. The decoder reads it before anything else and refuses a schema it does not
//! know ([`FrameError::Schema`]) instead of misreading the rest. Schema 1 (before
//! `evidence`) is still read, through its own layout, so a spool written by an older daemon
//! is delivered after an upgrade instead of being skipped as damaged.

use mbt_core::event::{Event, EventV1, EVENT_SCHEMA};

/// Frames longer than this are refused by the stream decoder (a real event is a few hundred
/// bytes; the bound keeps a garbage stream without zeros from growing the buffer forever).
pub const MAX_FRAME: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("empty frame")]
    Empty,
    #[error("bad COBS encoding at byte {0}")]
    Cobs(usize),
    #[error("frame of {len} bytes or more is longer than the limit of {max}")]
    TooLong { len: usize, max: usize },
    #[error("event schema {found} is not one this build reads (1 to {expected})")]
    Schema { found: u16, expected: u16 },
    #[error("bad postcard event: {0}")]
    Postcard(String),
    #[error("{0} unexpected bytes after the event")]
    Trailing(usize),
}

/// Encodes one event as a complete frame, delimiter included.
pub fn encode(event: &Event) -> Result<Vec<u8>, FrameError> {
    postcard::to_allocvec_cobs(event).map_err(|e| FrameError::Postcard(e.to_string()))
}

/// Decodes one frame (the bytes between two delimiters; a trailing delimiter is allowed).
pub fn decode(frame: &[u8]) -> Result<Event, FrameError> {
    let frame = frame.strip_suffix(&[0]).unwrap_or(frame);
    if frame.is_empty() {
        return Err(FrameError::Empty);
    }
    let raw = cobs_decode(frame)?;
    decode_postcard(&raw)
}

/// Decodes the postcard bytes of an event (no COBS), checking the schema first. The spool
/// stores events in this form.
pub fn decode_postcard(raw: &[u8]) -> Result<Event, FrameError> {
    let (schema, _) = postcard::take_from_bytes::<u16>(raw)
        .map_err(|e| FrameError::Postcard(format!("schema: {e}")))?;
    let bad = |e: postcard::Error| FrameError::Postcard(e.to_string());
    let (event, rest) = match schema {
        EVENT_SCHEMA => postcard::take_from_bytes::<Event>(raw).map_err(bad)?,
        1 => {
            let (v1, rest) = postcard::take_from_bytes::<EventV1>(raw).map_err(bad)?;
            (Event::from(v1), rest)
        }
        _ => {
            return Err(FrameError::Schema {
                found: schema,
                expected: EVENT_SCHEMA,
            })
        }
    };
    if !rest.is_empty() {
        return Err(FrameError::Trailing(rest.len()));
    }
    Ok(event)
}

/// Consistent Overhead Byte Stuffing, decoding side (the encoder is postcard's). Written out
/// here so every malformed input is an error at a byte position, never a panic (fuzzed).
pub fn cobs_decode(input: &[u8]) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let code = input[i] as usize;
        if code == 0 {
            return Err(FrameError::Cobs(i));
        }
        let start = i + 1;
        let end = start + code - 1;
        if end > input.len() {
            return Err(FrameError::Cobs(i));
        }
        let block = &input[start..end];
        if let Some(z) = block.iter().position(|&b| b == 0) {
            return Err(FrameError::Cobs(start + z));
        }
        out.extend_from_slice(block);
        i = end;
        if code != 0xFF && i < input.len() {
            out.push(0);
        }
    }
    Ok(out)
}

/// Splits a byte stream into frames at the zero delimiters and decodes each; survives garbage
/// (a bad frame is one error, and decoding resumes at the next delimiter).
#[derive(Debug, Default)]
pub struct StreamDecoder {
    buf: Vec<u8>,
    /// Skipping the rest of an over-long frame, up to the next delimiter.
    discarding: bool,
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes; returns every frame completed by them, in order.
    pub fn feed(&mut self, data: &[u8]) -> Vec<Result<Event, FrameError>> {
        let mut out = Vec::new();
        for &b in data {
            if b == 0 {
                if self.discarding {
                    self.discarding = false;
                } else if !self.buf.is_empty() {
                    out.push(decode(&self.buf));
                }
                self.buf.clear();
                continue;
            }
            if self.discarding {
                continue;
            }
            if self.buf.len() >= MAX_FRAME {
                out.push(Err(FrameError::TooLong {
                    len: self.buf.len() + 1,
                    max: MAX_FRAME,
                }));
                self.buf.clear();
                self.discarding = true;
                continue;
            }
            self.buf.push(b);
        }
        out
    }

    /// Bytes of an unfinished frame (a stream that ends here ended mid-frame).
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use mbt_core::event::{EventKind, Modalities};

    pub(crate) fn event(id: &str, kind: EventKind) -> Event {
        Event {
            schema: EVENT_SCHEMA,
            id: id.into(),
            kind,
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
            evidence: None,
        }
    }

    #[test]
    fn round_trip_and_delimiter() {
        let e = event("a-1", EventKind::New);
        let f = encode(&e).unwrap();
        assert_eq!(f.last(), Some(&0));
        assert_eq!(
            f.iter().filter(|&&b| b == 0).count(),
            1,
            "only the delimiter is zero"
        );
        assert_eq!(decode(&f).unwrap(), e);
        assert_eq!(decode(&f[..f.len() - 1]).unwrap(), e);
    }

    #[test]
    fn cobs_matches_postcard_on_long_zero_free_runs() {
        // > 254 non-zero bytes exercises the 0xFF code path.
        let mut e = event(&"x".repeat(600), EventKind::Update);
        e.label = "y".repeat(300);
        let f = encode(&e).unwrap();
        assert_eq!(decode(&f).unwrap(), e);
    }

    #[test]
    fn schema_1_records_still_decode_without_evidence() {
        let e = event("old-1", EventKind::New);
        let v1 = mbt_core::event::EventV1 {
            schema: 1,
            id: e.id.clone(),
            kind: e.kind,
            label: e.label.clone(),
            score: e.score,
            score_audio: e.score_audio,
            score_video: e.score_video,
            modalities: e.modalities,
            start_ms: e.start_ms,
            end_ms: e.end_ms,
            start_s: e.start_s,
            end_s: e.end_s,
            model_version: e.model_version.clone(),
        };
        let f = postcard::to_allocvec_cobs(&v1).unwrap();
        // Read in the old layout, upgraded to the current one: sent on, it decodes again
        // (found by the frame_decode fuzz target: kept as schema 1 in the new layout, the
        // re-encoded frame failed with one trailing byte).
        let got = decode(&f).unwrap();
        assert_eq!(got, e);
        assert_eq!(decode(&encode(&got).unwrap()).unwrap(), e);
        // And a schema-2 record is not read as schema 1 (its layout is longer).
        let mut new = event("new-1", EventKind::New);
        new.evidence = Some(mbt_core::event::Evidence {
            jpeg: Some("/e/new-1.jpg".into()),
            wav: Some("/e/new-1.wav".into()),
        });
        assert_eq!(decode(&encode(&new).unwrap()).unwrap(), new);
    }

    /// The fuzz seeds are written by an independent encoder (`fuzz/make_seeds.py`, postcard's
    /// wire format by hand), so decoding them checks the layout of both schemas.
    #[test]
    fn hand_encoded_frames_of_both_schemas_decode() {
        let v1 = decode(include_bytes!("../../../fuzz/seeds/frame_decode/new")).unwrap();
        assert_eq!((v1.schema, v1.evidence.clone()), (EVENT_SCHEMA, None));
        assert_eq!(v1.label, "glass_breaking");
        let v2 = decode(include_bytes!(
            "../../../fuzz/seeds/frame_decode/v2_new_with_evidence"
        ))
        .unwrap();
        assert_eq!(v2.schema, 2);
        assert_eq!(
            v2.evidence,
            Some(mbt_core::event::Evidence {
                jpeg: Some("/var/lib/mbtd/evidence/1732630000000-0001.jpg".into()),
                wav: None
            })
        );
        let end = decode(include_bytes!(
            "../../../fuzz/seeds/frame_decode/v2_end_without_evidence"
        ))
        .unwrap();
        assert_eq!(
            (end.kind, end.end_s, end.evidence),
            (EventKind::End, Some(7.75), None)
        );
        assert!(matches!(
            decode(include_bytes!(
                "../../../fuzz/seeds/frame_decode/future_schema"
            )),
            Err(FrameError::Schema { found: 3, .. })
        ));
    }

    #[test]
    fn refuses_unknown_schema_before_reading_the_rest() {
        let mut e = event("a", EventKind::End);
        e.schema = EVENT_SCHEMA + 1;
        let f = postcard::to_allocvec_cobs(&e).unwrap();
        assert_eq!(
            decode(&f),
            Err(FrameError::Schema {
                found: EVENT_SCHEMA + 1,
                expected: EVENT_SCHEMA
            })
        );
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert_eq!(decode(&[]), Err(FrameError::Empty));
        assert_eq!(decode(&[0]), Err(FrameError::Empty));
        assert!(matches!(decode(&[5, 1, 2]), Err(FrameError::Cobs(0))));
        assert!(decode(&[3, 1, 0, 1]).is_err());
        let f = encode(&event("a", EventKind::New)).unwrap();
        assert!(decode(&f[..f.len() / 2]).is_err());
    }

    #[test]
    fn stream_decoder_resyncs_after_garbage_and_splits_anywhere() {
        let a = event("a", EventKind::New);
        let b = event("b", EventKind::End);
        let mut stream = encode(&a).unwrap();
        stream.extend_from_slice(&[7, 7, 7, 0]); // garbage frame
        stream.extend(encode(&b).unwrap());
        for split in 0..stream.len() {
            let mut d = StreamDecoder::new();
            let mut got = d.feed(&stream[..split]);
            got.extend(d.feed(&stream[split..]));
            assert_eq!(got.len(), 3, "split at {split}");
            assert_eq!(got[0].as_ref().unwrap(), &a);
            assert!(got[1].is_err());
            assert_eq!(got[2].as_ref().unwrap(), &b);
            assert_eq!(d.pending(), 0);
        }
    }

    #[test]
    fn stream_decoder_bounds_a_frame_without_delimiter() {
        let mut d = StreamDecoder::new();
        let got = d.feed(&vec![1u8; MAX_FRAME + 10]);
        assert_eq!(got.len(), 1);
        assert!(matches!(got[0], Err(FrameError::TooLong { .. })));
        let e = event("after", EventKind::New);
        let mut tail = vec![0u8];
        tail.extend(encode(&e).unwrap());
        let got = d.feed(&tail);
        assert_eq!(got, vec![Ok(e)]);
    }
}
