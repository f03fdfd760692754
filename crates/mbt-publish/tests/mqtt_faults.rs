//! MQTT against a real mosquitto: outages, an unreachable broker, retained topics.

use std::time::{Duration, Instant};

use mbt_core::event::EventKind;
use mbt_publish::config::MqttConfig;
use mbt_publish::metrics::Registry;
use mbt_publish::mqtt::{MqttContext, MqttSink};
use mbt_publish::spool::{Spool, SpoolOptions, WhenFull};
use mbt_publish::SinkMetrics;

use crate::common::{check_delivery, event, free_port, labels, subscriber, Broker};

pub fn mqtt_cfg(port: u16) -> MqttConfig {
    MqttConfig {
        enabled: true,
        url: format!("mqtt://127.0.0.1:{port}"),
        device: "testdev".into(),
        reconnect_min_ms: 50,
        reconnect_max_ms: 400,
        keep_alive_s: 5,
        connect_timeout_s: 2,
        ..MqttConfig::default()
    }
}

pub fn ctx() -> MqttContext {
    MqttContext {
        labels: labels(),
        evidence_dir: None,
        sw_version: "test".into(),
        control: None,
    }
}

/// Sends `n` events at `every` while the broker goes away for `outage` in the middle; checks
/// that every event arrives, in order, and reports duplicates.
async fn outage(outage: Duration, n: usize, every: Duration) {
    let port = free_port();
    let Some(mut broker) = Broker::new(port) else {
        return;
    };
    broker.start();
    let rx = subscriber(port, "outage-sub").await;
    let spool_dir = tempfile::tempdir().unwrap();
    let registry = Registry::new();
    let metrics = SinkMetrics::register(&registry, "mqtt").unwrap();
    let mut sink = MqttSink::start(
        &mqtt_cfg(port),
        SpoolOptions::new(spool_dir.path()),
        ctx(),
        metrics.clone(),
    )
    .unwrap();

    let stop_at = n / 3;
    let mut sent = Vec::new();
    let mut slowest = Duration::ZERO;
    let mut outage_started = None;
    for i in 0..n {
        if i == stop_at {
            broker.stop();
            outage_started = Some(Instant::now());
        }
        if let Some(t) = outage_started {
            if t.elapsed() >= outage {
                broker.start();
                outage_started = None;
            }
        }
        let e = event(
            i,
            if i % 3 == 2 {
                EventKind::End
            } else {
                EventKind::New
            },
        );
        let t = Instant::now();
        sink.deliver(&e).await.unwrap();
        slowest = slowest.max(t.elapsed());
        sent.push((
            if e.kind == EventKind::End {
                "end"
            } else {
                "new"
            }
            .to_string(),
            e.id.clone(),
        ));
        tokio::time::sleep(every).await;
    }
    if let Some(t) = outage_started {
        tokio::time::sleep(outage.saturating_sub(t.elapsed())).await;
        broker.start();
    }
    sink.flush(Duration::from_secs(60))
        .await
        .expect("the spool drains after the broker is back");
    rx.wait_for("every event", Duration::from_secs(30), |r| {
        let got = r.events("mbt/testdev/events");
        sent.iter().all(|k| got.contains(k))
    })
    .await;
    let got = rx.events("mbt/testdev/events");
    let dups = check_delivery(&sent, &got);
    let text = registry.render();
    eprintln!(
        "outage {:?}: {} events sent, {} messages received, {dups} duplicates; \
         {} redelivered by the sink; slowest deliver() {:?}",
        outage,
        sent.len(),
        got.len(),
        metrics.redelivered.get(),
        slowest
    );
    assert!(
        slowest < Duration::from_millis(500),
        "deliver() must not wait for the broker (slowest {slowest:?})"
    );
    assert_eq!(metrics.delivered.get(), n as u64);
    assert!(
        text.contains("mbtd_spool_pending_events{sink=\"mqtt\"} 0"),
        "{text}"
    );

    // Retained state, score, availability and discovery are there too.
    let all = rx.all();
    let has = |topic: &str, payload: &[u8]| all.iter().any(|(t, p, _)| t == topic && p == payload);
    assert!(has("mbt/testdev/availability", b"online"));
    assert!(has("mbt/testdev/glass_breaking/state", b"ON"));
    assert!(has("mbt/testdev/glass_breaking/state", b"OFF"));
    assert!(all
        .iter()
        .any(|(t, _, _)| t == "homeassistant/binary_sensor/testdev_dog_barking/config"));
    assert!(all
        .iter()
        .any(|(t, _, _)| t == "homeassistant/sensor/testdev_glass_breaking_score/config"));
    // Home Assistant's event entity: its config lists the labels, and each new event arrives
    // as `{"event_type": <label>}` on its state topic.
    let ha_event = all
        .iter()
        .find(|(t, _, _)| t == "homeassistant/event/testdev_detection/config")
        .expect("event entity discovery");
    let cfg: serde_json::Value = serde_json::from_slice(&ha_event.1).unwrap();
    assert_eq!(cfg["state_topic"], "mbt/testdev/detection");
    assert!(cfg["event_types"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l == "glass_breaking"));
    assert!(all.iter().any(|(t, p, _)| t == "mbt/testdev/detection"
        && serde_json::from_slice::<serde_json::Value>(p)
            .is_ok_and(|v| v["event_type"] == "glass_breaking")));

    sink.shutdown(Duration::from_secs(2)).await;
    rx.wait_for("offline on shutdown", Duration::from_secs(5), |r| {
        r.all()
            .iter()
            .rev()
            .find(|(t, _, _)| t == "mbt/testdev/availability")
            .is_some_and(|(_, p, _)| p == b"offline")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outage_2s_loses_nothing() {
    outage(Duration::from_secs(2), 90, Duration::from_millis(40)).await;
}

/// The fault test: the broker stopped for 30 s in the middle of a stream.
/// `cargo test -p mbt-publish --test integration -- --ignored --nocapture broker_outage_30s`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "30 s broker outage; run with --ignored"]
async fn broker_outage_30s_loses_nothing() {
    outage(Duration::from_secs(30), 450, Duration::from_millis(100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_never_reachable_spool_bounded_then_backlog_delivered() {
    let port = free_port(); // nothing listens here yet
    let spool_dir = tempfile::tempdir().unwrap();
    let mut opts = SpoolOptions::new(spool_dir.path());
    opts.max_bytes = 16 * 1024;
    opts.segment_bytes = 4 * 1024;
    opts.when_full = WhenFull::DropOldest;
    let registry = Registry::new();
    let metrics = SinkMetrics::register(&registry, "mqtt").unwrap();
    let n = 400;
    {
        let mut sink =
            MqttSink::start(&mqtt_cfg(port), opts.clone(), ctx(), metrics.clone()).unwrap();
        let t = Instant::now();
        for i in 0..n {
            sink.deliver(&event(i, EventKind::New)).await.unwrap();
        }
        // The daemon keeps going: 400 appends with an fsync each, no broker waits.
        assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
        assert!(!sink.connected());
        let st = sink.spool().stats();
        eprintln!("unreachable broker: {st:?}");
        assert!(st.dropped > 0, "the bound was reached: {st:?}");
        assert!(st.disk_bytes <= opts.max_bytes);
        assert_eq!(st.pending_records + st.dropped, n as u64);
        assert_eq!(
            metrics.dropped.get(),
            st.dropped,
            "drops are counted as metrics"
        );
        assert!(registry.render().contains(&format!(
            "mbtd_spool_dropped_total{{sink=\"mqtt\"}} {}",
            st.dropped
        )));
        sink.shutdown(Duration::from_millis(200)).await;
    }
    let left = Spool::open(opts.clone()).unwrap().stats().pending_records as usize;
    assert!(left > 0);

    // A later start with a broker delivers the backlog: the newest `left` events, in order.
    let Some(mut broker) = Broker::new(port) else {
        return;
    };
    broker.start();
    let rx = subscriber(port, "backlog-sub").await;
    let mut sink = MqttSink::start(&mqtt_cfg(port), opts, ctx(), SinkMetrics::detached()).unwrap();
    sink.flush(Duration::from_secs(30))
        .await
        .expect("backlog delivered");
    let sent: Vec<(String, String)> = (n - left..n)
        .map(|i| ("new".to_string(), event(i, EventKind::New).id))
        .collect();
    rx.wait_for("the backlog", Duration::from_secs(20), |r| {
        r.events("mbt/testdev/events").len() >= left
    })
    .await;
    let dups = check_delivery(&sent, &rx.events("mbt/testdev/events"));
    eprintln!("backlog of {left} delivered after the broker appeared, {dups} duplicates");
    sink.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_is_published_from_the_evidence_dir() {
    let port = free_port();
    let Some(mut broker) = Broker::new(port) else {
        return;
    };
    broker.start();
    let rx = subscriber(port, "snap-sub").await;
    let ev_dir = tempfile::tempdir().unwrap();
    let store = mbt_publish::evidence::EvidenceStore::open(&mbt_publish::config::EvidenceConfig {
        dir: Some(ev_dir.path().to_path_buf()),
        ..Default::default()
    })
    .unwrap();
    let e = event(7, EventKind::New);
    let rgb = vec![200u8; 16 * 8 * 3];
    store
        .save(
            &e.id,
            Some(mbt_publish::evidence::FrameRef {
                width: 16,
                height: 8,
                rgb: &rgb,
            }),
            None,
        )
        .unwrap();
    let spool_dir = tempfile::tempdir().unwrap();
    let mut sink = MqttSink::start(
        &mqtt_cfg(port),
        SpoolOptions::new(spool_dir.path()),
        MqttContext {
            evidence_dir: Some(ev_dir.path().to_path_buf()),
            ..ctx()
        },
        SinkMetrics::detached(),
    )
    .unwrap();
    sink.deliver(&e).await.unwrap();
    sink.flush(Duration::from_secs(10)).await.unwrap();
    let jpeg = std::fs::read(store.jpeg_path(&e.id)).unwrap();
    rx.wait_for("the snapshot", Duration::from_secs(10), |r| {
        r.all()
            .iter()
            .any(|(t, p, _)| t == "mbt/testdev/dog_barking/snapshot" && *p == jpeg)
    })
    .await;
    let ev = rx.events("mbt/testdev/events");
    assert_eq!(ev, [("new".to_string(), e.id.clone())]);
    assert!(rx
        .all()
        .iter()
        .any(|(t, _, _)| t == "homeassistant/image/testdev_dog_barking_snapshot/config"));
    sink.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn bad_tls_settings_fail_at_start_naming_the_field() {
    let spool_dir = tempfile::tempdir().unwrap();
    let mut cfg = mqtt_cfg(1883);
    cfg.url = "mqtts://127.0.0.1:8883".into();
    cfg.ca_file = Some("/nonexistent/ca.pem".into());
    let e = MqttSink::start(
        &cfg,
        SpoolOptions::new(spool_dir.path()),
        ctx(),
        SinkMetrics::detached(),
    )
    .err()
    .expect("must fail");
    assert!(e.to_string().contains("mqtt.ca_file"), "{e}");

    // A CA file that is not PEM.
    let bogus = spool_dir.path().join("ca.pem");
    std::fs::write(&bogus, "not a certificate").unwrap();
    cfg.ca_file = Some(bogus);
    let e = MqttSink::start(
        &cfg,
        SpoolOptions::new(spool_dir.path().join("s")),
        ctx(),
        SinkMetrics::detached(),
    )
    .err()
    .expect("must fail");
    assert!(e.to_string().contains("mqtt.ca_file"), "{e}");

    cfg.url = "mqtt://no port:x".into();
    let e = MqttSink::start(
        &cfg,
        SpoolOptions::new(spool_dir.path().join("t")),
        ctx(),
        SinkMetrics::detached(),
    )
    .err()
    .expect("must fail");
    assert!(e.to_string().contains("mqtt.url"), "{e}");
}
