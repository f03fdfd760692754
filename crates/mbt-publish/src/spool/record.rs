//! The spool's record format, and a scanner that survives anything on disk.
//!
//! ```text
//! magic "MBSR" (4) | len u32 LE (4) | crc32 u32 LE (4) | payload (len bytes)
//! ```
//!
//! The CRC (CRC-32/ISO-HDLC, `crc32fast`) covers the length bytes and the payload, so a flipped
//! bit in either is caught. The magic is what makes resynchronisation possible: after a bad
//! record the scanner cannot trust its length, so it searches for the next magic and tries
//! there (a false magic inside a payload fails its CRC with probability 1 - 2^-32). Garbage
//! after the last good record of a file is a *torn tail* (a write cut short by a crash or a
//! power cut), reported separately so the journal can cut it off.
//!
//! Pure functions over byte slices: the journal feeds them file contents, the fuzz target
//! feeds them anything.

use std::ops::Range;

pub const MAGIC: [u8; 4] = *b"MBSR";
pub const HEADER: usize = 12;
/// The largest payload accepted (an event is a few hundred bytes; the bound keeps a corrupt
/// length from asking for gigabytes).
pub const MAX_PAYLOAD: usize = 1 << 20;

/// The whole record for `payload`, ready to append.
pub fn encode(payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len())
        .unwrap_or(u32::MAX)
        .to_le_bytes();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&len);
    crc.update(payload);
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// A good record found by [`scan`]: where it sits in the scanned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The whole record, header included.
    pub record: Range<usize>,
    /// Its payload.
    pub payload: Range<usize>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    pub records: Vec<Found>,
    /// Byte ranges skipped because they held no valid record (corruption), in order.
    pub skipped: Vec<Range<usize>>,
    /// Where scanning stopped: after the last record taken, or at a record that may continue
    /// past the end of `buf` (when `at_eof` is false), or at `buf.len()`.
    pub next: usize,
    /// Set when `at_eof` and the bytes from here to the end hold no valid record but start like
    /// one that was cut short: a torn tail.
    pub torn_tail: Option<usize>,
}

/// Scans `buf` for records, at most `max_records` of them.
///
/// `at_eof` says whether `buf` runs to the end of the file. When it does not, a record whose
/// length reaches past `buf` stops the scan at its start (`next`), so the caller can read more
/// and scan again from there; when it does, such a record is either corruption (a later magic
/// exists: skip to it) or a torn tail.
pub fn scan(buf: &[u8], at_eof: bool, max_records: usize) -> Scan {
    let mut s = Scan::default();
    let mut off = 0;
    while off < buf.len() && s.records.len() < max_records {
        match check(buf, off) {
            Check::Good { end } => {
                s.records.push(Found {
                    record: off..end,
                    payload: off + HEADER..end,
                });
                off = end;
            }
            Check::Short => {
                if !at_eof {
                    break;
                }
                // Cut short at the end of the file, unless a later record proves that this
                // one's length is simply corrupt.
                match find_magic(buf, off + 1) {
                    Some(next) if has_good_record_from(buf, next) => {
                        s.skipped.push(off..next);
                        off = next;
                    }
                    _ => {
                        s.torn_tail = Some(off);
                        off = buf.len();
                    }
                }
            }
            Check::Bad => {
                let next = find_magic(buf, off + 1);
                match next {
                    Some(n) => {
                        s.skipped.push(off..n);
                        off = n;
                    }
                    None if at_eof => {
                        if buf.len() - off < HEADER || buf[off..].starts_with(&MAGIC) {
                            s.torn_tail = Some(off);
                        } else {
                            s.skipped.push(off..buf.len());
                        }
                        off = buf.len();
                    }
                    None => {
                        // The next record may start in bytes not read yet; keep the last
                        // HEADER - 1 bytes, which could hold the start of a magic.
                        let keep = buf.len().saturating_sub(MAGIC.len() - 1).max(off + 1);
                        if keep > off {
                            s.skipped.push(off..keep);
                        }
                        off = keep;
                        break;
                    }
                }
            }
        }
    }
    s.next = off;
    s
}

enum Check {
    Good {
        end: usize,
    },
    /// Looks like a record whose bytes continue past the buffer (or a header cut short).
    Short,
    Bad,
}

fn check(buf: &[u8], off: usize) -> Check {
    let rest = &buf[off..];
    if rest.len() < HEADER {
        return if MAGIC.starts_with(&rest[..rest.len().min(4)]) {
            Check::Short
        } else {
            Check::Bad
        };
    }
    if rest[..4] != MAGIC {
        return Check::Bad;
    }
    let len_bytes = [rest[4], rest[5], rest[6], rest[7]];
    let len = u32::from_le_bytes(len_bytes) as usize;
    if len > MAX_PAYLOAD {
        return Check::Bad;
    }
    if rest.len() < HEADER + len {
        return Check::Short;
    }
    let want = u32::from_le_bytes([rest[8], rest[9], rest[10], rest[11]]);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&len_bytes);
    crc.update(&rest[HEADER..HEADER + len]);
    if crc.finalize() == want {
        Check::Good {
            end: off + HEADER + len,
        }
    } else {
        Check::Bad
    }
}

fn has_good_record_from(buf: &[u8], mut off: usize) -> bool {
    loop {
        match check(buf, off) {
            Check::Good { .. } => return true,
            _ => match find_magic(buf, off + 1) {
                Some(n) => off = n,
                None => return false,
            },
        }
    }
}

fn find_magic(buf: &[u8], from: usize) -> Option<usize> {
    if from >= buf.len() {
        return None;
    }
    buf[from..]
        .windows(MAGIC.len())
        .position(|w| w == MAGIC)
        .map(|p| p + from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(payloads: &[&[u8]]) -> Vec<u8> {
        payloads.iter().flat_map(|p| encode(p)).collect()
    }

    fn payloads(buf: &[u8], s: &Scan) -> Vec<Vec<u8>> {
        s.records
            .iter()
            .map(|f| buf[f.payload.clone()].to_vec())
            .collect()
    }

    #[test]
    fn reads_back_what_was_written() {
        let buf = file(&[b"one", b"", b"three"]);
        let s = scan(&buf, true, usize::MAX);
        assert_eq!(payloads(&buf, &s), [&b"one"[..], b"", b"three"]);
        assert!(s.skipped.is_empty());
        assert_eq!(s.torn_tail, None);
        assert_eq!(s.next, buf.len());
    }

    #[test]
    fn torn_tail_is_reported_at_every_cut() {
        let good = file(&[b"first"]);
        let all = file(&[b"first", b"second record"]);
        for cut in good.len() + 1..all.len() {
            let s = scan(&all[..cut], true, usize::MAX);
            assert_eq!(payloads(&all, &s), [b"first"], "cut at {cut}");
            assert_eq!(s.torn_tail, Some(good.len()), "cut at {cut}");
        }
    }

    #[test]
    fn a_flipped_byte_anywhere_loses_only_its_record() {
        let all = file(&[b"aaaa", b"bbbbbbbb", b"cc"]);
        let first = encode(b"aaaa").len();
        let second_end = first + encode(b"bbbbbbbb").len();
        for pos in first..second_end {
            let mut buf = all.clone();
            buf[pos] ^= 0x40;
            let s = scan(&buf, true, usize::MAX);
            assert_eq!(payloads(&buf, &s), [&b"aaaa"[..], b"cc"], "flip at {pos}");
            assert_eq!(s.skipped.len(), 1, "flip at {pos}");
            assert_eq!(s.torn_tail, None);
        }
    }

    #[test]
    fn garbage_between_records_is_skipped() {
        let mut buf = file(&[b"x"]);
        buf.extend_from_slice(b"garbage MBSR more garbage");
        let before = buf.len();
        buf.extend(encode(b"y"));
        let s = scan(&buf, true, usize::MAX);
        assert_eq!(payloads(&buf, &s), [b"x", b"y"]);
        assert_eq!(
            s.skipped.iter().map(|r| r.len()).sum::<usize>(),
            before - encode(b"x").len()
        );
    }

    #[test]
    fn stops_before_a_record_that_continues_past_the_buffer() {
        let all = file(&[b"one", b"two"]);
        let cut = all.len() - 1;
        let s = scan(&all[..cut], false, usize::MAX);
        assert_eq!(s.records.len(), 1);
        assert_eq!(s.next, encode(b"one").len());
        assert_eq!(s.torn_tail, None);
    }

    #[test]
    fn respects_max_records() {
        let buf = file(&[b"1", b"2", b"3"]);
        let s = scan(&buf, true, 2);
        assert_eq!(s.records.len(), 2);
        assert_eq!(s.next, 2 * encode(b"1").len());
    }

    #[test]
    fn never_panics_on_short_or_hostile_input() {
        for buf in [
            &b""[..],
            b"M",
            b"MBS",
            b"MBSR",
            b"MBSR\xff\xff\xff\xff\0\0\0\0",
            b"\0\0\0\0\0",
        ] {
            for eof in [true, false] {
                let s = scan(buf, eof, usize::MAX);
                assert!(s.records.is_empty());
                assert!(s.next <= buf.len());
            }
        }
    }
}
