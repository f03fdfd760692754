//! Postcard event frames from the network: `frame::decode`, `frame::cobs_decode` and the
//! `StreamDecoder` over arbitrary bytes.
//!
//! Checked besides "no panic": a decoded event re-encodes to a frame that decodes to the same
//! event; the stream decoder gives the same results however the bytes are split into reads;
//! and each of its events is what `decode` says about the same frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mbt_core::event::Event;
use mbt_publish::frame::{self, FrameError, StreamDecoder};

/// Events hold floats (NaN != NaN), so results are compared as their postcard bytes.
fn canon(r: &Result<Event, FrameError>) -> Result<Vec<u8>, FrameError> {
    match r {
        Ok(e) => Ok(postcard::to_allocvec(e).expect("a decoded event encodes")),
        Err(e) => Err(e.clone()),
    }
}

fuzz_target!(|data: &[u8]| {
    // One frame.
    let one = frame::decode(data);
    if let Ok(e) = &one {
        let f = frame::encode(e).expect("a decoded event encodes");
        assert_eq!(canon(&frame::decode(&f)), canon(&one), "round trip");
    }
    let _ = frame::cobs_decode(data);

    // A stream, fed whole and in two reads split at a point taken from the input.
    let mut whole = StreamDecoder::new();
    let a: Vec<_> = whole.feed(data).iter().map(canon).collect();
    let split = data.first().map_or(0, |&b| b as usize % (data.len() + 1));
    let mut parts = StreamDecoder::new();
    let mut b: Vec<_> = parts.feed(&data[..split]).iter().map(canon).collect();
    b.extend(parts.feed(&data[split..]).iter().map(canon));
    assert_eq!(a, b, "split at {split}");
    assert_eq!(whole.pending(), parts.pending());
    assert!(whole.pending() <= frame::MAX_FRAME);

    // Without over-long frames, the stream's results are `decode` on each delimited frame.
    if data.len() <= frame::MAX_FRAME {
        let expect: Vec<_> = data
            .split(|&b| b == 0)
            .collect::<Vec<_>>()
            .split_last()
            .map(|(_, done)| done)
            .unwrap_or(&[])
            .iter()
            .filter(|f| !f.is_empty())
            .map(|f| canon(&frame::decode(f)))
            .collect();
        assert_eq!(a, expect);
    }
});
