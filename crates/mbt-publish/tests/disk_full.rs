//! The MQTT sink's spool on a real small filesystem that fills up (issue 33, item 2): a
//! 64 KiB tmpfs made by the test, a real mosquitto. Events keep being accepted (held in
//! memory), the failures are counted, and every event arrives, in order, once space returns,
//! without anything restarting.
//!
//! Read-only is not done here: the kernel refuses `mount -o remount,ro` while the spool holds
//! files open for writing ("mount point is busy"), unlike the forced remount of an SD card
//! after I/O errors; EROFS is exercised through the storage seam (`src/spool/faults.rs`).
//!
//! Needs root (to mount); elsewhere it prints SKIPPED and passes. The same faults on every
//! machine, at every write point, are the storage-seam tests in `src/spool/faults.rs`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mbt_core::event::EventKind;
use mbt_publish::metrics::Registry;
use mbt_publish::mqtt::MqttSink;
use mbt_publish::spool::SpoolOptions;
use mbt_publish::SinkMetrics;

use crate::common::{check_delivery, event, free_port, subscriber, Broker};
use crate::mqtt_faults::{ctx, mqtt_cfg};

/// A tmpfs of `size` mounted on a fresh directory; unmounted on drop.
struct Tmpfs {
    dir: PathBuf,
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let parent = tempfile::tempdir().map_err(|e| e.to_string())?;
        let dir = parent.path().join("state");
        std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
        mount(
            &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"],
            &dir,
        )?;
        Ok(Tmpfs {
            dir,
            _parent: parent,
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

fn mount(args: &[&str], dir: &Path) -> Result<(), String> {
    let out = Command::new("mount")
        .args(args)
        .arg(dir)
        .output()
        .map_err(|e| format!("running mount: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Fills the filesystem of `dir` with one file; returns it.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let p = dir.join("ballast");
    let mut f = std::fs::File::create(&p).expect("ballast");
    let block = vec![0u8; 4096];
    while f.write_all(&block).is_ok() {}
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_then_read_only_spool_holds_events_and_delivers_them_after() {
    let fs = match Tmpfs::mount("64k") {
        Ok(fs) => fs,
        Err(e) => {
            eprintln!("SKIPPED disk_full: cannot mount a tmpfs here (needs root): {e}");
            return;
        }
    };
    let port = free_port();
    let Some(mut broker) = Broker::new(port) else {
        return;
    };
    broker.start();
    let rx = subscriber(port, "disk-full-sub").await;
    let registry = Registry::new();
    let metrics = SinkMetrics::register(&registry, "mqtt").unwrap();
    let spool = SpoolOptions {
        max_bytes: 32 * 1024,
        segment_bytes: 4096,
        ..SpoolOptions::new(fs.dir.join("spool"))
    };
    let mut sink = MqttSink::start(&mqtt_cfg(port), spool, ctx(), metrics.clone()).unwrap();
    let mut sent = Vec::new();
    let mut send = async |sink: &mut MqttSink, i: usize| {
        let e = event(i, EventKind::New);
        sink.deliver(&e).await.expect("deliver goes on");
        sent.push(("new".to_string(), e.id));
    };

    for i in 0..5 {
        send(&mut sink, i).await;
    }
    sink.flush(Duration::from_secs(30)).await.unwrap();

    // The disk fills up: events are still taken, held in memory, counted.
    let ballast = fill(&fs.dir);
    for i in 5..60 {
        send(&mut sink, i).await;
    }
    let s = sink.spool().stats();
    eprintln!("full: {s:?}");
    assert!(s.write_failures > 0 && s.held_events > 0, "{s:?}");
    let text = registry.render();
    assert!(
        text.contains("mbtd_spool_write_failures_total{sink=\"mqtt\"}"),
        "{text}"
    );
    // Space returns: delivery resumes by itself.
    std::fs::remove_file(&ballast).unwrap();
    sink.flush(Duration::from_secs(60))
        .await
        .expect("held events delivered after space returns");

    let sent = sent.clone();
    rx.wait_for("every event", Duration::from_secs(30), |r| {
        let got = r.events("mbt/testdev/events");
        sent.iter().all(|k| got.contains(k))
    })
    .await;
    let dups = check_delivery(&sent, &rx.events("mbt/testdev/events"));
    let s = sink.spool().stats();
    eprintln!("after: {s:?}; {dups} duplicates");
    assert_eq!(metrics.delivered.get(), 60);
    assert_eq!(
        (s.held_events, s.held_dropped, s.corrupt_regions),
        (0, 0, 0)
    );
    sink.shutdown(Duration::from_secs(5)).await;
}
