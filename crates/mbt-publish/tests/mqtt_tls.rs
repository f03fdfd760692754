//! MQTT over TLS against a real mosquitto with a TLS listener and a CA made here (rcgen):
//! the right CA connects and delivers; a CA that did not sign the broker's certificate, or a
//! host name the certificate does not list, is refused with an error naming the setting.

use std::path::Path;
use std::time::{Duration, Instant};

use mbt_core::event::EventKind;
use mbt_publish::config::MqttConfig;
use mbt_publish::metrics::Registry;
use mbt_publish::mqtt::{MqttContext, MqttSink};
use mbt_publish::spool::SpoolOptions;
use mbt_publish::SinkMetrics;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

use crate::common::{event, free_port, labels, subscriber, Broker};

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
}

/// A CA, the broker's certificate for `localhost` signed by it, and an unrelated CA.
fn pki(dir: &Path) {
    let good = ca("mbt-edge test CA");
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &good)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), good.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
    std::fs::write(dir.join("other-ca.pem"), ca("someone else's CA").pem()).unwrap();
}

fn sink(url: String, ca: &Path, spool: &Path) -> MqttSink {
    let cfg = MqttConfig {
        enabled: true,
        url,
        device: "tlsdev".into(),
        ca_file: Some(ca.to_path_buf()),
        reconnect_min_ms: 50,
        reconnect_max_ms: 400,
        keep_alive_s: 5,
        connect_timeout_s: 2,
        ..MqttConfig::default()
    };
    let metrics = SinkMetrics::register(&Registry::new(), "mqtt").unwrap();
    let ctx = MqttContext {
        labels: labels(),
        evidence_dir: None,
        sw_version: "test".into(),
        control: None,
    };
    MqttSink::start(&cfg, SpoolOptions::new(spool), ctx, metrics).unwrap()
}

/// Waits until the sink has failed at least once; its error.
async fn refused(s: &MqttSink) -> String {
    let t = Instant::now();
    loop {
        if let Some(e) = s.last_error() {
            assert!(!s.connected());
            return e;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "no error reported");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_connects_with_the_right_ca_and_refuses_a_wrong_ca_or_host() {
    let dir = tempfile::tempdir().unwrap();
    pki(dir.path());
    let (plain, tls) = (free_port(), free_port());
    let d = dir.path().display();
    let extra = format!(
        "listener {tls} 127.0.0.1\ncafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n"
    );
    let Some(mut broker) = Broker::with_conf(plain, &extra) else {
        return;
    };
    broker.start();
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", tls)).is_err() {
        assert!(t.elapsed() < Duration::from_secs(10), "no TLS listener");
        std::thread::sleep(Duration::from_millis(20));
    }
    let rx = subscriber(plain, "tls-sub").await;

    // The right CA and the name the certificate lists: connects, delivers.
    let spool = tempfile::tempdir().unwrap();
    let mut ok = sink(
        format!("mqtts://localhost:{tls}"),
        &dir.path().join("ca.pem"),
        spool.path(),
    );
    let e = event(1, EventKind::New);
    ok.deliver(&e).await.unwrap();
    rx.wait_for("the event over TLS", Duration::from_secs(20), |r| {
        r.all()
            .iter()
            .any(|(t, p, _)| t == "mbt/tlsdev/events" && String::from_utf8_lossy(p).contains(&e.id))
    })
    .await;
    assert!(ok.connected());
    assert_eq!(ok.last_error(), None);
    ok.shutdown(Duration::from_secs(2)).await;

    // A CA that did not sign the broker's certificate.
    let spool = tempfile::tempdir().unwrap();
    let bad_ca = sink(
        format!("mqtts://localhost:{tls}"),
        &dir.path().join("other-ca.pem"),
        spool.path(),
    );
    let err = refused(&bad_ca).await;
    assert!(
        err.contains("certificate") && err.contains("mqtt.ca_file"),
        "{err}"
    );
    bad_ca.shutdown(Duration::from_secs(1)).await;

    // The right CA, but a host name the certificate does not list.
    let spool = tempfile::tempdir().unwrap();
    let bad_host = sink(
        format!("mqtts://127.0.0.1:{tls}"),
        &dir.path().join("ca.pem"),
        spool.path(),
    );
    let err = refused(&bad_host).await;
    assert!(err.contains("mqtt.url") && err.contains("name"), "{err}");
    bad_host.shutdown(Duration::from_secs(1)).await;
}
