//! The spool on a disk that refuses writes (issue 33, item 2), through the storage seam
//! ([`crate::storage::Faulty`]: the real filesystem, with writes failing on demand). The same
//! on a real full tmpfs is `tests/disk_full.rs` (root only).

use std::sync::Arc;

use mbt_core::event::EventKind;

use super::*;
use crate::frame::tests::event;
use crate::storage::Faulty;

fn faulty(dir: &std::path::Path, f: &Arc<Faulty>) -> SpoolOptions {
    SpoolOptions {
        storage: f.clone(),
        ..SpoolOptions::new(dir)
    }
}

fn payloads(s: &mut Spool) -> Vec<String> {
    s.read(Position::default(), 100)
        .unwrap()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.payload).into_owned())
        .collect()
}

/// A failed append, however it failed, leaves what is on disk readable and does not disturb
/// the records appended after it: a partial record the file cannot be cut back from (a
/// read-only remount mid-write) used to make the next record's index offset wrong, so it was
/// read at the wrong place and skipped as damaged: lost.
#[test]
fn a_failed_append_loses_nothing_before_or_after_it() {
    // (errno, bytes written before the failure, truncation possible)
    let modes = [
        (libc::ENOSPC, 5, true),
        (libc::ENOSPC, 0, false),
        (libc::EROFS, 5, false),
        // The whole record reached the file, then the write (or its fsync) failed.
        (libc::EIO, u64::MAX, false),
    ];
    for (errno, short, truncate) in modes {
        let t = tempfile::tempdir().unwrap();
        let f = Faulty::new();
        let mut s = Spool::open(faulty(t.path(), &f)).unwrap();
        s.append(b"a").unwrap();
        s.append(b"b").unwrap();
        f.fail(errno);
        f.short_bytes(short);
        f.allow_truncate(truncate);
        let e = s.append(b"c").unwrap_err();
        assert!(matches!(e, SpoolError::Io { .. }), "{e}");
        assert_eq!(s.stats().write_failures, 1);
        f.heal();
        s.append(b"d").unwrap();
        let mode = format!("errno {errno}, {short} bytes, truncate {truncate}");
        assert_eq!(payloads(&mut s), ["a", "b", "d"], "{mode}");
        assert_eq!(s.stats().corrupt_regions, 0, "{mode}");
        drop(s);
        // After a restart: the same, or with the record the failed call had fully written
        // (at least once: it was reported failed, so the caller may send it again).
        let mut s = Spool::open(SpoolOptions::new(t.path())).unwrap();
        let want: &[&str] = if short == u64::MAX && !truncate {
            &["a", "b", "c", "d"]
        } else {
            &["a", "b", "d"]
        };
        assert_eq!(payloads(&mut s), want, "{mode}");
        assert_eq!(s.stats().corrupt_regions, 0, "{mode}");
    }
}

/// On a full disk the cursor file cannot be rewritten, but delivery must go on and free the
/// space it can: acks succeed, delivered segments are deleted, and the cursor is written once
/// the disk takes writes again.
#[test]
fn acks_free_space_while_the_cursor_cannot_be_written() {
    let t = tempfile::tempdir().unwrap();
    let f = Faulty::new();
    let opts = SpoolOptions {
        max_bytes: MIN_SPOOL_BYTES,
        segment_bytes: 64,
        ..faulty(t.path(), &f)
    };
    let mut s = Spool::open(opts).unwrap();
    for i in 0..10 {
        s.append(format!("event-{i}").as_bytes()).unwrap();
    }
    let before = s.stats();
    assert!(before.segments > 3, "{before:?}");
    f.fail(libc::ENOSPC);
    let recs = s.read(Position::default(), 100).unwrap();
    assert_eq!(s.ack(recs[9].end).unwrap(), 10);
    let after = s.stats();
    assert_eq!(after.pending_records, 0);
    assert!(after.segments < before.segments, "{after:?}");
    assert!(after.write_failures > 0);
    f.heal();
    s.append(b"x").unwrap();
    drop(s);
    let mut s = Spool::open(SpoolOptions::new(t.path())).unwrap();
    assert_eq!(payloads(&mut s), ["x"]);
}

fn ids(s: &mut Spool) -> Vec<String> {
    s.read(Position::default(), 100)
        .unwrap()
        .iter()
        .map(|r| crate::frame::decode_postcard(&r.payload).unwrap().id)
        .collect()
}

/// While the disk refuses writes, events are accepted and held in memory in order; when it
/// takes writes again the background retry writes them out without another append.
#[tokio::test(start_paused = true)]
async fn events_are_held_in_memory_and_written_when_the_disk_takes_them_again() {
    let t = tempfile::tempdir().unwrap();
    let f = Faulty::new();
    let shared = SharedSpool::new("test", Spool::open(faulty(t.path(), &f)).unwrap());
    shared
        .append_event(&event("e0", EventKind::New))
        .await
        .unwrap();
    f.fail(libc::ENOSPC);
    for i in 1..5 {
        let e = event(&format!("e{i}"), EventKind::New);
        shared.append_event(&e).await.unwrap();
    }
    let s = shared.stats();
    assert_eq!((s.pending_records, s.held_events), (1, 4), "{s:?}");
    assert!(s.write_failures >= 4, "{s:?}");
    f.heal();
    // No further append: the retry task writes them (paused time runs its back-off at once;
    // the loop bounds the wait, it measures nothing).
    for _ in 0..1000 {
        if shared.stats().held_events == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    let s = shared.stats();
    assert_eq!((s.pending_records, s.held_events), (5, 0), "{s:?}");
    let got = shared.with(ids).unwrap();
    assert_eq!(got, ["e0", "e1", "e2", "e3", "e4"]);
}

/// The memory queue is bounded: past `memory_events` the oldest held event goes, counted.
#[tokio::test]
async fn the_memory_queue_is_bounded_and_counts_what_it_drops() {
    let t = tempfile::tempdir().unwrap();
    let f = Faulty::new();
    let opts = SpoolOptions {
        memory_events: 3,
        ..faulty(t.path(), &f)
    };
    let shared = SharedSpool::new("test", Spool::open(opts).unwrap());
    f.fail(libc::EROFS);
    for i in 0..5 {
        let e = event(&format!("e{i}"), EventKind::New);
        shared.append_event(&e).await.unwrap();
    }
    let s = shared.stats();
    assert_eq!((s.held_events, s.held_dropped), (3, 2), "{s:?}");
    f.heal();
    // The next append writes the held ones first, in order.
    shared
        .append_event(&event("e5", EventKind::New))
        .await
        .unwrap();
    // e0 and e1 went; e2..e4 were held.
    assert_eq!(shared.with(ids).unwrap(), ["e2", "e3", "e4", "e5"]);
    assert_eq!(shared.stats().held_events, 0);
}
