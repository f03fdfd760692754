use std::fs;
use std::io::Write;

use super::*;

fn opts(dir: &std::path::Path) -> SpoolOptions {
    SpoolOptions::new(dir)
}

fn payloads(recs: &[Record]) -> Vec<String> {
    recs.iter()
        .map(|r| String::from_utf8_lossy(&r.payload).into_owned())
        .collect()
}

fn segs(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

#[test]
fn append_read_ack_and_replay_after_reopen() {
    let t = tempfile::tempdir().unwrap();
    {
        let mut s = Spool::open(opts(t.path())).unwrap();
        for p in ["a", "b", "c", "d"] {
            s.append(p.as_bytes()).unwrap();
        }
        let recs = s.read(Position::default(), 10).unwrap();
        assert_eq!(payloads(&recs), ["a", "b", "c", "d"]);
        // Reading does not consume; acking does.
        assert_eq!(s.ack(recs[1].end).unwrap(), 2);
        assert_eq!(s.stats().pending_records, 2);
        assert_eq!(s.stats().acked, 2);
        // A read from an old position is clamped to the cursor.
        assert_eq!(payloads(&s.read(recs[0].start, 10).unwrap()), ["c", "d"]);
        // Reading ahead of the cursor (a window in flight).
        assert_eq!(payloads(&s.read(recs[2].end, 10).unwrap()), ["d"]);
        // Acking an old position is a no-op.
        assert_eq!(s.ack(recs[0].end).unwrap(), 0);
    }
    let mut s = Spool::open(opts(t.path())).unwrap();
    assert_eq!(s.stats().pending_records, 2);
    let recs = s.read(Position::default(), 10).unwrap();
    assert_eq!(payloads(&recs), ["c", "d"]);
    s.append(b"e").unwrap();
    assert_eq!(
        payloads(&s.read(Position::default(), 10).unwrap()),
        ["c", "d", "e"]
    );
}

#[test]
fn a_second_process_cannot_open_the_same_spool() {
    let t = tempfile::tempdir().unwrap();
    let _a = Spool::open(opts(t.path())).unwrap();
    // flock is per open file description, so a second open in this process conflicts too.
    assert!(matches!(
        Spool::open(opts(t.path())),
        Err(SpoolError::Locked { .. })
    ));
}

#[test]
fn torn_last_record_is_cut_off_and_appends_continue() {
    let t = tempfile::tempdir().unwrap();
    {
        let mut s = Spool::open(opts(t.path())).unwrap();
        for p in ["one", "two", "three"] {
            s.append(p.as_bytes()).unwrap();
        }
    }
    let seg = segs(t.path()).pop().unwrap();
    let len = fs::metadata(&seg).unwrap().len();
    let f = fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 3).unwrap(); // "three" loses its last bytes
    drop(f);

    let mut s = Spool::open(opts(t.path())).unwrap();
    assert_eq!(s.stats().torn_tails, 1);
    assert_eq!(s.stats().pending_records, 2);
    s.append(b"four").unwrap();
    drop(s);
    let mut s = Spool::open(opts(t.path())).unwrap();
    assert_eq!(s.stats().torn_tails, 0, "the tail was cut off for good");
    assert_eq!(
        payloads(&s.read(Position::default(), 10).unwrap()),
        ["one", "two", "four"]
    );
}

#[test]
fn flipped_bytes_lose_only_the_damaged_record() {
    let t = tempfile::tempdir().unwrap();
    let second;
    {
        let mut s = Spool::open(opts(t.path())).unwrap();
        for p in ["first", "second", "third"] {
            s.append(p.as_bytes()).unwrap();
        }
        second = s.read(Position::default(), 3).unwrap()[1].clone();
    }
    let seg = segs(t.path()).pop().unwrap();
    let mut data = fs::read(&seg).unwrap();
    let at = second.start.offset as usize + record::HEADER + 2;
    data[at] ^= 0xff;
    fs::write(&seg, &data).unwrap();

    let mut s = Spool::open(opts(t.path())).unwrap();
    assert_eq!(
        payloads(&s.read(Position::default(), 10).unwrap()),
        ["first", "third"]
    );
    assert_eq!(s.stats().corrupt_regions, 1);
    assert!(s.stats().skipped_bytes > 0);
}

#[test]
fn damage_after_open_is_skipped_at_read_time() {
    let t = tempfile::tempdir().unwrap();
    let mut s = Spool::open(opts(t.path())).unwrap();
    for p in ["x", "y", "z"] {
        s.append(p.as_bytes()).unwrap();
    }
    let y = s.read(Position::default(), 3).unwrap()[1].clone();
    let seg = segs(t.path()).pop().unwrap();
    let mut data = fs::read(&seg).unwrap();
    data[y.start.offset as usize + record::HEADER] ^= 1;
    fs::write(&seg, &data).unwrap();
    assert_eq!(
        payloads(&s.read(Position::default(), 10).unwrap()),
        ["x", "z"]
    );
    assert_eq!(s.stats().pending_records, 2);
    assert_eq!(s.stats().corrupt_regions, 1);
}

#[test]
fn garbage_segment_and_garbage_cursor_never_panic() {
    let t = tempfile::tempdir().unwrap();
    {
        let mut s = Spool::open(opts(t.path())).unwrap();
        s.append(b"kept").unwrap();
        let r = s.read(Position::default(), 1).unwrap();
        s.append(b"also kept").unwrap();
        s.ack(r[0].end).unwrap();
    }
    // A later segment full of noise, and a cursor file of noise.
    let mut noise = Vec::new();
    let mut x: u32 = 12345;
    for _ in 0..5000 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        noise.push((x >> 16) as u8);
    }
    noise.extend_from_slice(b"MBSR\x05\0\0\0"); // a torn header at the very end
    fs::write(t.path().join(format!("{:020}.seg", 99)), &noise).unwrap();
    fs::write(t.path().join("ack"), b"not a cursor").unwrap();

    let mut s = Spool::open(opts(t.path())).unwrap();
    assert!(s.stats().bad_cursor);
    // The cursor is gone, so everything on disk replays: duplicates, not loss.
    assert_eq!(
        payloads(&s.read(Position::default(), 10).unwrap()),
        ["kept", "also kept"]
    );
    assert!(s.stats().corrupt_regions + s.stats().torn_tails >= 1);
    // New records go after the noise and read back.
    s.append(b"new").unwrap();
    assert_eq!(
        payloads(&s.read(Position::default(), 10).unwrap())
            .last()
            .map(String::as_str),
        Some("new")
    );
}

#[test]
fn acked_segments_are_deleted_and_the_cursor_survives() {
    let t = tempfile::tempdir().unwrap();
    let mut o = opts(t.path());
    o.max_bytes = 16 * 1024;
    o.segment_bytes = 1024;
    let payload = [7u8; 200];
    {
        let mut s = Spool::open(o.clone()).unwrap();
        for _ in 0..20 {
            s.append(&payload).unwrap();
        }
        assert!(segs(t.path()).len() >= 4);
        let recs = s.read(Position::default(), 15).unwrap();
        s.ack(recs[14].end).unwrap();
        assert_eq!(s.stats().pending_records, 5);
        assert!(segs(t.path()).len() <= 3, "{:?}", segs(t.path()));
    }
    let s = Spool::open(o).unwrap();
    assert_eq!(s.stats().pending_records, 5);
}

#[test]
fn drop_oldest_keeps_the_newest_within_the_bound() {
    let t = tempfile::tempdir().unwrap();
    let mut o = opts(t.path());
    o.max_bytes = 8 * 1024;
    o.segment_bytes = 2 * 1024;
    let mut s = Spool::open(o.clone()).unwrap();
    let mut dropped = 0;
    for i in 0..500u32 {
        let p = format!("{i:06}-{}", "x".repeat(80));
        dropped += s.append(p.as_bytes()).unwrap().dropped;
        assert!(s.stats().disk_bytes <= o.max_bytes);
    }
    let st = s.stats();
    assert!(dropped > 0);
    assert_eq!(st.dropped, dropped);
    assert_eq!(st.appended, 500);
    assert_eq!(
        st.pending_records + st.dropped,
        500,
        "every record accounted for"
    );
    let recs = s.read(Position::default(), 1000).unwrap();
    let ids: Vec<u32> = recs
        .iter()
        .map(|r| String::from_utf8_lossy(&r.payload[..6]).parse().unwrap())
        .collect();
    // What is left is the newest, contiguous and in order.
    let first = 500 - ids.len() as u32;
    assert_eq!(ids, (first..500).collect::<Vec<_>>());
    let on_disk: u64 = segs(t.path())
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum();
    assert!(on_disk <= o.max_bytes);
}

#[test]
fn refuse_newest_keeps_the_backlog_and_counts() {
    let t = tempfile::tempdir().unwrap();
    let mut o = opts(t.path());
    o.max_bytes = 8 * 1024;
    o.segment_bytes = 2 * 1024;
    o.when_full = WhenFull::RefuseNewest;
    let mut s = Spool::open(o).unwrap();
    let payload = [1u8; 100];
    let mut ok = 0;
    let mut refused = 0;
    for _ in 0..200 {
        match s.append(&payload) {
            Ok(a) => {
                assert_eq!(a.dropped, 0);
                ok += 1
            }
            Err(SpoolError::Full { .. }) => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(refused > 0);
    assert_eq!(s.stats().refused, refused);
    assert_eq!(s.stats().pending_records, ok);
    // Delivering the backlog makes room again.
    let recs = s.read(Position::default(), 1000).unwrap();
    s.ack(recs.last().unwrap().end).unwrap();
    s.append(&payload).unwrap();
}

#[test]
fn refuses_bad_options_naming_the_field() {
    let t = tempfile::tempdir().unwrap();
    let mut o = opts(t.path());
    o.segment_bytes = o.max_bytes;
    let e = Spool::open(o).unwrap_err().to_string();
    assert!(e.contains("spool.segment_bytes"), "{e}");
    let mut o = opts(t.path());
    o.max_bytes = 10;
    let e = Spool::open(o).unwrap_err().to_string();
    assert!(e.contains("spool.max_bytes"), "{e}");
}

#[test]
fn a_stale_cursor_never_hides_new_records() {
    let t = tempfile::tempdir().unwrap();
    let mut o = opts(t.path());
    o.max_bytes = 16 * 1024;
    o.segment_bytes = 1024;
    {
        let mut s = Spool::open(o.clone()).unwrap();
        for _ in 0..12 {
            s.append(&[3u8; 200]).unwrap();
        }
        let recs = s.read(Position::default(), 100).unwrap();
        s.ack(recs.last().unwrap().end).unwrap();
    }
    // Someone deletes the segments by hand; the cursor file stays.
    for p in segs(t.path()) {
        fs::remove_file(p).unwrap();
    }
    {
        let mut s = Spool::open(o.clone()).unwrap();
        s.append(b"after").unwrap();
    }
    let mut s = Spool::open(o).unwrap();
    assert_eq!(
        payloads(&s.read(Position::default(), 10).unwrap()),
        ["after"]
    );
}

#[test]
fn a_partial_write_at_the_end_reads_as_torn() {
    let t = tempfile::tempdir().unwrap();
    {
        let mut s = Spool::open(opts(t.path())).unwrap();
        s.append(b"whole").unwrap();
    }
    let seg = segs(t.path()).pop().unwrap();
    let mut f = fs::OpenOptions::new().append(true).open(&seg).unwrap();
    let rec = record::encode(b"half written");
    f.write_all(&rec[..rec.len() / 2]).unwrap();
    drop(f);
    let mut s = Spool::open(opts(t.path())).unwrap();
    assert_eq!(s.stats().torn_tails, 1);
    assert_eq!(
        payloads(&s.read(Position::default(), 10).unwrap()),
        ["whole"]
    );
}

/// Regression (fuzz target `spool_open`): a segment numbered 0 next to a later one, no cursor
/// file. Its record was counted as pending but the cursor jumped past it, so it was never read.
#[test]
fn a_segment_numbered_zero_is_replayed_not_hidden() {
    let t = tempfile::tempdir().unwrap();
    fs::write(
        t.path().join(format!("{:020}.seg", 0)),
        record::encode(b"in segment 0"),
    )
    .unwrap();
    fs::write(t.path().join(format!("{:020}.seg", 65)), b"").unwrap();
    let mut s = Spool::open(opts(t.path())).unwrap();
    assert_eq!(s.stats().pending_records, 1);
    let recs = s.read(Position::default(), 10).unwrap();
    assert_eq!(payloads(&recs), ["in segment 0"]);
    assert_eq!(s.ack(recs[0].end).unwrap(), 1);
    assert_eq!(s.stats().pending_records, 0);
    s.append(b"later").unwrap();
    drop(s);
    let mut s = Spool::open(opts(t.path())).unwrap();
    assert_eq!(
        payloads(&s.read(Position::default(), 10).unwrap()),
        ["later"]
    );
}
