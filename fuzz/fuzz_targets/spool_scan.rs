//! The spool's record scanner (`spool::record::scan`) over arbitrary file contents.
//!
//! Checked besides "no panic": records, skipped ranges and the torn tail are in bounds, in
//! order and disjoint; every record found is a valid record (re-encoding its payload gives its
//! bytes); scanning a prefix that is not the end of the file never reports a torn tail, and
//! at the end of the file the scan covers every byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mbt_publish::spool::record::{self, HEADER};

fuzz_target!(|data: &[u8]| {
    let max = data.first().map_or(
        usize::MAX,
        |&b| if b == 0 { usize::MAX } else { b as usize },
    );
    for at_eof in [true, false] {
        let s = record::scan(data, at_eof, max);
        assert!(s.next <= data.len());
        assert!(s.records.len() <= max);
        let mut last_end = 0;
        let mut ranges: Vec<_> = s
            .records
            .iter()
            .map(|f| f.record.clone())
            .chain(s.skipped.iter().cloned())
            .collect();
        ranges.sort_by_key(|r| r.start);
        for r in &ranges {
            assert!(
                r.start >= last_end && r.start <= r.end && r.end <= s.next,
                "{r:?} in {s:?}"
            );
            last_end = r.end;
        }
        for f in &s.records {
            assert_eq!(f.payload.start, f.record.start + HEADER);
            assert_eq!(f.payload.end, f.record.end);
            assert_eq!(
                record::encode(&data[f.payload.clone()]),
                &data[f.record.clone()]
            );
        }
        match s.torn_tail {
            Some(t) => {
                assert!(at_eof, "torn tail without end of file");
                assert!(t >= last_end && t < data.len());
                assert_eq!(s.next, data.len());
            }
            None if at_eof && s.records.len() < max => {
                // Everything was either a record or skipped.
                let covered: usize = ranges.iter().map(|r| r.len()).sum();
                assert_eq!(covered, data.len(), "{s:?}");
            }
            None => {}
        }
    }
});
