//! SIGKILL during delivery, then a restart: the spool is intact and the backlog arrives.
//!
//! Runs the `mbt-publish` binary (JSON-line events on stdin -> spool -> MQTT): the first run
//! spools 3000 events while the broker is down, the broker comes back, and the process is
//! killed with SIGKILL once deliveries are under way. The spool must then open without damage
//! and still hold the undelivered rest; a second run (no new input) delivers it. Every event the
//! first run confirmed as spooled must have arrived.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mbt_core::event::EventKind;
use mbt_publish::spool::{Spool, SpoolOptions};

use crate::common::{check_delivery, event, free_port, subscriber, Broker};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_delivery_then_restart_delivers_the_backlog() {
    let port = free_port();
    let Some(mut broker) = Broker::new(port) else {
        return;
    };
    broker.start();
    let rx = subscriber(port, "kill-sub").await;
    broker.stop();

    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    let conf = dir.path().join("publish.toml");
    std::fs::write(
        &conf,
        format!(
            "[mqtt]\nenabled = true\nurl = \"mqtt://127.0.0.1:{port}\"\ndevice = \"killdev\"\n\
             reconnect_min_ms = 50\nreconnect_max_ms = 200\nmax_inflight = 8\n\
             [spool]\ndir = \"{}\"\n[evidence]\nenabled = false\n",
            spool_dir.display()
        ),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_mbt-publish");
    let n = 3000;

    let mut child = Command::new(bin)
        .args([
            "--config",
            conf.to_str().unwrap(),
            "--labels",
            "glass_breaking,dog_barking",
            "--echo",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting mbt-publish");
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        for i in 0..n {
            let line = serde_json::to_string(&event(i, EventKind::New)).unwrap();
            if writeln!(stdin, "{line}").is_err() {
                break;
            }
        }
        // Keep stdin open: the process must be killed mid-delivery, not finish by itself.
        std::thread::sleep(Duration::from_secs(120));
        drop(stdin);
    });
    let stdout = child.stdout.take().unwrap();
    let (acc_tx, acc_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(id) = line
                .strip_prefix("spooled ")
                .and_then(|r| r.split(' ').next())
            {
                let _ = acc_tx.send(id.to_string());
            }
        }
    });
    let mut accepted = Vec::new();
    let t = Instant::now();
    while accepted.len() < n {
        match acc_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(id) => accepted.push(id),
            Err(_) => break,
        }
    }
    assert_eq!(accepted.len(), n, "all events spooled ({:?})", t.elapsed());

    broker.start();
    rx.wait_for("deliveries to start", Duration::from_secs(30), |r| {
        r.events("mbt/killdev/events").len() >= 20
    })
    .await;
    // SAFETY: signalling our own child by its pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
    let seen_at_kill = rx.events("mbt/killdev/events").len();

    // The broker publishes the last will.
    rx.wait_for("the last will", Duration::from_secs(10), |r| {
        r.all()
            .iter()
            .any(|(t, p, _)| t == "mbt/killdev/availability" && p == b"offline")
    })
    .await;

    let opts = SpoolOptions::new(spool_dir.join("mqtt"));
    let st = Spool::open(opts.clone())
        .expect("the spool opens after SIGKILL")
        .stats();
    eprintln!("after SIGKILL: {seen_at_kill} messages seen, spool {st:?}");
    assert_eq!(st.corrupt_regions, 0, "{st:?}");
    assert!(!st.bad_cursor, "{st:?}");
    assert!(
        st.pending_records > 0,
        "killed during delivery, with a backlog: {st:?}"
    );

    // Restart with no new input: it delivers the backlog and exits 0.
    let status = Command::new(bin)
        .args([
            "--config",
            conf.to_str().unwrap(),
            "--flush-timeout-s",
            "60",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .expect("restarting mbt-publish");
    assert!(status.success(), "{status}");
    assert_eq!(Spool::open(opts).unwrap().stats().pending_records, 0);

    let sent: Vec<(String, String)> = accepted.into_iter().map(|id| ("new".into(), id)).collect();
    rx.wait_for("every accepted event", Duration::from_secs(30), |r| {
        let got = r.events("mbt/killdev/events");
        got.len() >= sent.len()
    })
    .await;
    let dups = check_delivery(&sent, &rx.events("mbt/killdev/events"));
    eprintln!(
        "SIGKILL + restart: {} events delivered, {dups} duplicates",
        sent.len()
    );
    drop(writer);
}
