//! Run-time tuning and event marks on a real `mbtd` (synthetic sources, random model, real
//! HTTP, a real mosquitto): a label switched off from the web page ends its open event and
//! stays silent; a threshold change is saved in the tuning file (not the TOML), survives a
//! restart and shows in `--print-config`; bad changes are refused with reasons; events are
//! marked right / wrong / as another label into `labels.csv` (what `mbt data import` reads);
//! MQTT `.../set` commands change the same state, Home Assistant gets a number and a switch
//! per label, and malformed commands are logged, counted and ignored.
//!
//! Events come from every label at a threshold the random model always reaches (0.01), so
//! which labels fire does not depend on its scores.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mbt_core::event::{Event, EventKind};

use crate::common::{random_model, temp_dir, ROOT};
use crate::harness::Daemon;
use crate::web::{request, Resp};

/// A POST with a body (`Connection: close`).
pub fn post(addr: SocketAddr, path: &str, ctype: &str, body: &str, extra: &[(&str, &str)]) -> Resp {
    let mut s = TcpStream::connect(addr).expect("connects");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("reads the response");
    crate::web::parse(&raw)
}

fn json(addr: SocketAddr, path: &str, body: &str) -> Resp {
    post(addr, path, "application/json", body, &[])
}

/// The synthetic source in real time for `seconds`, every label at a threshold the random
/// model always reaches, no cool-down.
fn args(state: &Path, seconds: u32, extra: &[String]) -> Vec<String> {
    let mut a = vec![
        format!("model.path={}", random_model().display()),
        "audio.source=synthetic".into(),
        "video.source=synthetic".into(),
        "synthetic.realtime=true".into(),
        format!("synthetic.duration_s={seconds}"),
        "events.threshold=0.01".into(),
        "events.release=0.005".into(),
        "events.cooldown_s=0.0".into(),
        format!("evidence.dir={}", state.join("evidence").display()),
        format!("spool.dir={}", state.join("spool").display()),
    ];
    a.extend(extra.iter().cloned());
    a.into_iter()
        .flat_map(|s| ["--set".to_string(), s])
        .collect()
}

/// One label's entry of `GET /api/labels`.
fn label_state(addr: SocketAddr, label: &str) -> serde_json::Value {
    let l = request(addr, "GET", "/api/labels", &[]).json();
    l["labels"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["label"] == label).cloned())
        .unwrap_or_else(|| panic!("no {label} in {l}"))
}

fn news(ev: &[Event], label: &str) -> usize {
    ev.iter()
        .filter(|e| e.label == label && e.kind == EventKind::New)
        .count()
}

#[test]
fn labels_are_tuned_from_the_web_page_saved_apart_from_the_toml_and_marked() {
    let state = temp_dir("tuning-web");
    let d = Daemon::start(&args(&state, 60, &[]), &state);
    // Every label fires from the first window (threshold 0.01).
    d.wait_events("glass_breaking and dog_barking open", |e| {
        news(e, "glass_breaking") == 1 && news(e, "dog_barking") == 1
    });

    let labels = request(d.addr, "GET", "/api/labels", &[]).json();
    let l = labels["labels"].as_array().unwrap();
    assert_eq!(l.len(), 5, "edge-scratch has 5 labels that fire: {labels}");
    assert!(l
        .iter()
        .all(|s| s["threshold"] == 0.01 && s["origin"] == "default" && s["enabled"] == true));
    assert_eq!(
        labels["tuning_file"],
        state.join("mbtd/tuning.json").display().to_string()
    );

    // Switch glass off: its open event ends, and it stays silent.
    let r = json(
        d.addr,
        "/api/labels/glass_breaking",
        r#"{"enabled": false}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["enabled"], false);
    let ev = d.wait_events("glass_breaking ends", |e| {
        e.iter()
            .any(|e| e.label == "glass_breaking" && e.kind == EventKind::End)
    });
    let ended_at = ev.len();
    // A threshold the random model never reaches for dog (1.0): saved, from the next window.
    let r = json(d.addr, "/api/labels/dog_barking", r#"{"threshold": 1.0}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["threshold"].as_f64(), Some(1.0));
    assert_eq!(r.json()["origin"], "runtime");

    // Refused, with reasons, changing nothing.
    for (path, ctype, body, status, says) in [
        (
            "/api/labels/cat",
            "application/json",
            r#"{"enabled": false}"#,
            404,
            "unknown label `cat`",
        ),
        (
            "/api/labels/none",
            "application/json",
            r#"{"enabled": false}"#,
            400,
            "never fires",
        ),
        (
            "/api/labels/dog_barking",
            "application/json",
            r#"{"threshold": 2}"#,
            400,
            "expected a number from 0.01 to 1",
        ),
        (
            "/api/labels/dog_barking",
            "application/json",
            r#"{"treshold": 0.5}"#,
            400,
            "unknown field",
        ),
        (
            "/api/labels/dog_barking",
            "application/json",
            r#"{}"#,
            400,
            "nothing to change",
        ),
        (
            "/api/labels/dog_barking",
            "text/plain",
            r#"{"threshold": 0.5}"#,
            415,
            "application/json",
        ),
        ("/api/status", "application/json", "{}", 405, "only GET"),
    ] {
        let r = post(d.addr, path, ctype, body, &[]);
        assert_eq!(r.status, status, "{path} {body}: {}", r.text());
        assert!(r.text().contains(says), "{path} {body}: {}", r.text());
    }
    let r = post(
        d.addr,
        "/api/labels/dog_barking",
        "application/json",
        r#"{"threshold": 0.5}"#,
        &[("Origin", "http://evil.example")],
    );
    assert_eq!(r.status, 403, "{}", r.text());
    let same_origin = format!("http://{}", d.addr);
    let r = post(
        d.addr,
        "/api/labels/person_speaking",
        "application/json",
        r#"{"threshold": 0.02}"#,
        &[("Origin", &same_origin)],
    );
    assert_eq!(r.status, 200, "{}", r.text());

    // A few more windows: no glass event opens again; dog's open event carries on (release
    // 0.005 keeps it open) but no new dog event can open at 1.0.
    std::thread::sleep(Duration::from_secs(3));
    let ev = d.events();
    assert!(ev.len() > ended_at || !ev.is_empty());
    assert_eq!(news(&ev, "glass_breaking"), 1, "glass stayed off");
    assert_eq!(news(&ev, "dog_barking"), 1);

    // Marks: wrong -> none, relabel, right, clear; bad ones refused.
    let glass = ev
        .iter()
        .find(|e| e.label == "glass_breaking" && e.kind == EventKind::New)
        .unwrap()
        .id
        .clone();
    let dog = ev
        .iter()
        .find(|e| e.label == "dog_barking" && e.kind == EventKind::New)
        .unwrap()
        .id
        .clone();
    let verdict = |id: &str, body: &str| json(d.addr, &format!("/api/events/{id}/verdict"), body);
    assert_eq!(verdict(&glass, r#"{"verdict": "wrong"}"#).status, 200);
    let r = verdict(&dog, r#"{"verdict": "label", "label": "cat_meowing"}"#);
    assert_eq!(
        (r.status, r.json()["label"].as_str()),
        (200, Some("cat_meowing")),
        "{}",
        r.text()
    );
    let r = verdict(&dog, r#"{"verdict": "right"}"#);
    assert_eq!(r.json()["label"], "dog_barking");
    for (id, body, status, says) in [
        (
            dog.as_str(),
            r#"{"verdict": "label", "label": "Dog Barking"}"#,
            400,
            "a-z, 0-9 and _",
        ),
        (
            dog.as_str(),
            r#"{"verdict": "label", "label": "chien_aboyé"}"#,
            400,
            "a-z, 0-9 and _",
        ),
        (dog.as_str(), r#"{"verdict": "maybe"}"#, 400, "expected"),
        ("1-0001", r#"{"verdict": "wrong"}"#, 404, "no evidence"),
        ("..", r#"{"verdict": "wrong"}"#, 400, "not an event id"),
    ] {
        let r = verdict(id, body);
        assert_eq!(r.status, status, "{id} {body}: {}", r.text());
        assert!(r.text().contains(says), "{id} {body}: {}", r.text());
    }
    let csv = std::fs::read_to_string(state.join("evidence/labels.csv")).unwrap();
    assert_eq!(
        csv,
        format!("file,label\n{glass},none\n{dog},dog_barking\n")
    );
    // The evidence the importer will read is there beside it.
    for ext in ["jpg", "wav", "json"] {
        assert!(
            state.join(format!("evidence/{dog}.{ext}")).exists(),
            "{dog}.{ext}"
        );
    }
    let listed = request(d.addr, "GET", "/api/events?limit=500", &[]).json();
    let mark = |id: &str| {
        listed["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == id)
            .map(|e| e["mark"].clone())
    };
    assert_eq!(mark(&glass), Some(serde_json::json!("none")));
    assert_eq!(verdict(&glass, r#"{"verdict": "clear"}"#).status, 200);
    let csv = std::fs::read_to_string(state.join("evidence/labels.csv")).unwrap();
    assert_eq!(csv, format!("file,label\n{dog},dog_barking\n"));

    let report = d.stop();
    // Applied: glass off, dog 1.0, person 0.02. Rejected: the five bodies the tuning refused
    // (unknown label, `none`, 2, a misspelt field, nothing); the wrong content type, method
    // and origin are refused by HTTP before they reach it.
    assert_eq!(report["tuning_changes"], 3, "{report}");
    assert_eq!(report["tuning_rejected"], 5, "{report}");

    // Saved apart from the TOML, in force after a restart, shown by --print-config.
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("mbtd/tuning.json")).unwrap())
            .unwrap();
    assert_eq!(saved["labels"]["glass_breaking"]["enabled"], false);
    assert_eq!(saved["labels"]["dog_barking"]["threshold"], 1.0);
    let printed = Command::new(env!("CARGO_BIN_EXE_mbtd"))
        .args(args(&state, 60, &[]))
        .arg("--print-config")
        .current_dir(ROOT)
        .env_remove("MBTD_CONFIG")
        .env_remove("STATE_DIRECTORY")
        .env("XDG_STATE_HOME", &state)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&printed.stdout);
    assert!(text.contains("run-time changes from"), "{text}");
    let cfg: toml::Table = text.parse().unwrap_or_else(|e| panic!("{e}: {text}"));
    let labels = &cfg["events"]["labels"];
    assert_eq!(labels["glass_breaking"]["enabled"].as_bool(), Some(false));
    assert_eq!(labels["dog_barking"]["threshold"].as_float(), Some(1.0));
    let person = labels["person_speaking"]["threshold"].as_float().unwrap();
    assert!((person - 0.02).abs() < 1e-6, "{person}");

    let d = Daemon::start(&args(&state, 60, &[]), &state);
    let get = |label: &str| label_state(d.addr, label);
    assert_eq!(get("glass_breaking")["enabled"], false);
    assert_eq!(get("dog_barking")["origin"], "runtime");
    assert_eq!(get("door_slammed")["origin"], "default");
    // The page lists the marks of the previous run.
    let listed = request(d.addr, "GET", "/api/events?limit=500", &[]).json();
    assert!(
        listed["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["id"] == dog.as_str() && e["mark"] == "dog_barking"),
        "{listed}"
    );
    // Reset: back to the default, removed from the file.
    let r = json(d.addr, "/api/labels/dog_barking", r#"{"reset": true}"#);
    assert_eq!(r.json()["origin"], "default");
    assert!((r.json()["threshold"].as_f64().unwrap() - 0.01).abs() < 1e-6);
    let saved = std::fs::read_to_string(state.join("mbtd/tuning.json")).unwrap();
    assert!(!saved.contains("dog_barking"), "{saved}");
    // A malformed tuning file stops the daemon at start, naming it.
    drop(d);
    std::fs::write(
        state.join("mbtd/tuning.json"),
        "{\"version\": 1, \"labels\": 3}",
    )
    .unwrap();
    let o = crate::common::mbtd_with_state(
        &args(&state, 1, &[])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        &state,
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("tuning.json") && err.contains("delete it"),
        "{err}"
    );
}

#[test]
fn mqtt_set_topics_tune_labels_and_home_assistant_gets_a_number_and_a_switch() {
    let port = crate::broker::free_port();
    let Some(mut broker) = crate::broker::Broker::new(port) else {
        eprintln!("SKIPPED: mosquitto is not installed");
        return;
    };
    broker.start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let rec = rt.block_on(crate::broker::subscriber(port, "tuning-test"));
    let state = temp_dir("tuning-mqtt");
    let mqtt = vec![
        "mqtt.enabled=true".to_string(),
        format!("mqtt.url=mqtt://127.0.0.1:{port}"),
        "mqtt.device=porch".into(),
    ];
    let d = Daemon::start(&args(&state, 60, &mqtt), &state);
    let payload = |topic: &str| {
        rec.all()
            .iter()
            .rev()
            .find(|m| m.0 == topic)
            .map(|m| String::from_utf8_lossy(&m.1).into_owned())
    };
    rt.block_on(
        rec.wait_for("the tuning entities", Duration::from_secs(20), |r| {
            r.all()
                .iter()
                .any(|m| m.0 == "homeassistant/switch/porch_door_slammed_enabled/config")
        }),
    );
    let number: serde_json::Value = serde_json::from_str(
        &payload("homeassistant/number/porch_dog_barking_threshold/config").unwrap(),
    )
    .unwrap();
    assert_eq!(
        number["command_topic"],
        "mbt/porch/dog_barking/threshold/set"
    );
    assert_eq!(
        payload("mbt/porch/dog_barking/threshold").as_deref(),
        Some("0.01")
    );
    assert_eq!(
        payload("mbt/porch/dog_barking/enabled").as_deref(),
        Some("ON")
    );
    assert!(payload("homeassistant/number/porch_none_threshold/config").is_none());

    // Commands, as Home Assistant sends them, from another client.
    let publish = |topic: &str, body: &str| {
        let o = Command::new("mosquitto_pub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-t",
                topic,
                "-m",
                body,
            ])
            .output();
        match o {
            Ok(o) => assert!(o.status.success()),
            Err(_) => rt.block_on(async {
                let mut opts = rumqttc::MqttOptions::new("tuning-pub", "127.0.0.1", port);
                opts.set_keep_alive(Duration::from_secs(5));
                let (c, mut el) = rumqttc::AsyncClient::new(opts, 10);
                c.publish(
                    topic,
                    rumqttc::QoS::AtLeastOnce,
                    false,
                    body.as_bytes().to_vec(),
                )
                .await
                .unwrap();
                for _ in 0..6 {
                    let _ = tokio::time::timeout(Duration::from_millis(300), el.poll()).await;
                }
            }),
        }
    };
    publish("mbt/porch/dog_barking/threshold/set", "0.42");
    publish("mbt/porch/glass_breaking/enabled/set", "OFF");
    publish("mbt/porch/glass_breaking/threshold/set", "very high");
    publish("mbt/porch/unicorn/enabled/set", "ON");
    publish("mbt/porch/door_slammed/threshold/set", "7");
    rt.block_on(
        rec.wait_for("the new states", Duration::from_secs(20), |r| {
            let all = r.all();
            let last = |t: &str| all.iter().rev().find(|m| m.0 == t).map(|m| m.1.clone());
            last("mbt/porch/dog_barking/threshold").as_deref() == Some(b"0.42".as_slice())
                && last("mbt/porch/glass_breaking/enabled").as_deref() == Some(b"OFF".as_slice())
        }),
    );
    d.wait_log(
        "command on mbt/porch/glass_breaking/threshold/set ignored",
        Duration::from_secs(10),
    );
    d.wait_log("unicorn", Duration::from_secs(10));
    d.wait_log(
        "command for `door_slammed` ignored",
        Duration::from_secs(10),
    );
    // The web page sees the same state.
    let get = |label: &str| label_state(d.addr, label);
    let close = |v: &serde_json::Value, want: f64| (v.as_f64().unwrap() - want).abs() < 1e-6;
    assert!(
        close(&get("dog_barking")["threshold"], 0.42),
        "{}",
        get("dog_barking")
    );
    assert_eq!(get("glass_breaking")["enabled"], false);
    assert!(
        close(&get("door_slammed")["threshold"], 0.01),
        "{}",
        get("door_slammed")
    );
    // A change from the web page is announced on MQTT too.
    assert_eq!(
        json(d.addr, "/api/labels/door_slammed", r#"{"threshold": 0.3}"#).status,
        200
    );
    rt.block_on(
        rec.wait_for("the web change on MQTT", Duration::from_secs(20), |r| {
            r.all()
                .iter()
                .rev()
                .find(|m| m.0 == "mbt/porch/door_slammed/threshold")
                .is_some_and(|m| m.1 == b"0.3")
        }),
    );
    let report = d.stop();
    assert_eq!(report["tuning_changes"], 3, "{report}");
    assert_eq!(report["tuning_rejected"], 3, "{report}");
}
