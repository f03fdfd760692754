//! The spool journal over an arbitrary directory: segment files with any contents (records,
//! torn tails, garbage), a cursor file that is missing, garbage or valid, then a sequence of
//! appends, reads, acks and reopens.
//!
//! Checked besides "no panic": `open` succeeds on any contents (damage is skipped, never an
//! error); reading from the start returns exactly the pending records it counts, in order;
//! acknowledging what was read empties it; and an event appended after all that is read back
//! after a reopen (nothing the spool accepted is lost). Runs in a fresh temporary directory per
//! input (`TMPDIR=/dev/shm` makes it faster).
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use mbt_publish::spool::{record, Fsync, Position, Spool, SpoolOptions, WhenFull};

#[derive(Debug, Arbitrary)]
enum Ack {
    Missing,
    Raw(Vec<u8>),
    /// A well-formed cursor (its CRC right) pointing anywhere near the segments.
    Valid {
        segment: u8,
        offset: u16,
    },
}

#[derive(Debug, Arbitrary)]
enum Op {
    Append(Vec<u8>),
    Read(u8),
    AckAll,
    AckFirst,
    Reopen,
}

#[derive(Debug, Arbitrary)]
struct Input {
    /// (segment id, contents): small ids as a real spool has; records are a mix of valid
    /// ones made here and raw bytes.
    segments: Vec<(u8, Vec<Chunk>)>,
    ack: Ack,
    small: bool,
    refuse: bool,
    ops: Vec<Op>,
}

#[derive(Debug, Arbitrary)]
enum Chunk {
    Record(Vec<u8>),
    Raw(Vec<u8>),
    /// A valid record cut short after this many bytes (a torn write).
    Torn(Vec<u8>, u8),
}

fn ack_bytes(segment: u64, offset: u64) -> Vec<u8> {
    let mut b = b"MBSA".to_vec();
    b.extend_from_slice(&segment.to_le_bytes());
    b.extend_from_slice(&offset.to_le_bytes());
    let crc = crc32(&b[4..20]);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

/// CRC-32/ISO-HDLC (what the spool uses), bitwise: no extra dependency for a fuzz harness.
fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

fn check_read_all(spool: &mut Spool) -> Vec<(Position, Vec<u8>)> {
    let pending = spool.stats().pending_records;
    let recs = spool
        .read(Position::default(), usize::MAX)
        .expect("reading an open spool");
    // Files are not changed behind the spool here, so nothing goes bad between open and read.
    assert_eq!(recs.len() as u64, pending, "pending count vs records read");
    for w in recs.windows(2) {
        assert!(w[0].end <= w[1].start, "records out of order");
    }
    for r in &recs {
        assert!(r.start >= spool.cursor(), "record before the cursor");
    }
    recs.into_iter().map(|r| (r.end, r.payload)).collect()
}

fuzz_target!(|input: Input| {
    let Ok(dir) = tempfile::tempdir() else { return };
    for (id, chunks) in &input.segments {
        let mut bytes = Vec::new();
        for c in chunks {
            match c {
                Chunk::Record(p) => bytes.extend(record::encode(p)),
                Chunk::Raw(b) => bytes.extend_from_slice(b),
                Chunk::Torn(p, cut) => {
                    let r = record::encode(p);
                    bytes.extend_from_slice(&r[..(*cut as usize).min(r.len())]);
                }
            }
        }
        let name = dir.path().join(format!("{:020}.seg", u64::from(*id)));
        std::fs::write(name, bytes).expect("writing a segment");
    }
    match &input.ack {
        Ack::Missing => {}
        Ack::Raw(b) => std::fs::write(dir.path().join("ack"), b).expect("writing ack"),
        Ack::Valid { segment, offset } => std::fs::write(
            dir.path().join("ack"),
            ack_bytes(u64::from(*segment), u64::from(*offset)),
        )
        .expect("writing ack"),
    }

    let mut opts = SpoolOptions::new(dir.path());
    opts.fsync = Fsync::Never;
    if input.small {
        opts.max_bytes = 8 * 1024;
        opts.segment_bytes = 1024;
    }
    if input.refuse {
        opts.when_full = WhenFull::RefuseNewest;
    }
    let mut spool = Spool::open(opts.clone()).expect("open never fails on damaged contents");
    check_read_all(&mut spool);

    for op in input.ops.iter().take(32) {
        match op {
            Op::Append(p) => {
                let _ = spool.append(p);
            }
            Op::Read(n) => {
                let recs = spool
                    .read(Position::default(), usize::from(*n))
                    .expect("read");
                assert!(recs.len() <= usize::from(*n));
            }
            Op::AckAll => {
                let recs = check_read_all(&mut spool);
                if let Some((end, _)) = recs.last() {
                    let n = spool.ack(*end).expect("ack");
                    assert_eq!(n, recs.len() as u64);
                    assert_eq!(spool.stats().pending_records, 0);
                }
            }
            Op::AckFirst => {
                let recs = check_read_all(&mut spool);
                if let Some((end, _)) = recs.first() {
                    spool.ack(*end).expect("ack");
                    assert_eq!(spool.stats().pending_records, recs.len() as u64 - 1);
                }
            }
            Op::Reopen => {
                drop(spool);
                spool = Spool::open(opts.clone()).expect("reopen");
                check_read_all(&mut spool);
            }
        }
    }

    // Whatever came before, an accepted append survives a reopen, last in line.
    let marker = b"fuzz-marker-event".to_vec();
    let accepted = spool.append(&marker).is_ok();
    drop(spool);
    let mut spool = Spool::open(opts).expect("reopen after append");
    let recs = check_read_all(&mut spool);
    if accepted {
        assert_eq!(
            recs.last().map(|r| &r.1),
            Some(&marker),
            "the appended record is lost"
        );
    }
});
