//! Model reload without a restart, on a real `mbtd` (synthetic sources in real time): the
//! model file replaced by a rename is picked up by the watcher, a SIGHUP reloads at once, a
//! file that is not a model and a model that does not fit the configuration are refused with
//! the reason while the running model carries on; through it all every window is scored once,
//! by one model, none dropped; open events end under the old version and the new model's
//! labels (one more here) fire under the new one.

use std::path::Path;
use std::time::{Duration, Instant};

use mbt_core::event::EventKind;

use crate::common::{random_model, random_model_bytes, random_model_variant, temp_dir};
use crate::harness::Daemon;

const A: &str = "edge-random-test";
const B: &str = "edge-random-b";
/// edge-scratch's labels.
const LABELS_A: [&str; 6] = [
    "dog_barking",
    "glass_breaking",
    "person_speaking",
    "door_slammed",
    "door_closed_softly",
    "none",
];

/// Replaces `to` by a rename, as a user should (`mv`): readers never see half a file.
fn replace(to: &Path, bytes: &[u8]) {
    let tmp = to.with_extension("onnx.part");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

fn count(log: &str, what: &str) -> usize {
    log.matches(what).count()
}

fn wait_until(d: &Daemon, what: &str, ok: impl Fn(&str) -> bool) {
    let t0 = Instant::now();
    while !ok(&d.log()) {
        assert!(
            t0.elapsed() < Duration::from_secs(40),
            "{what}: not in the log:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `mbtd` arguments: synthetic sources in real time for `seconds`, `model` watched every
/// 0.2 s, evidence in `state`, then `extra` settings.
fn watched(model: &Path, state: &Path, seconds: u32, extra: &[String]) -> Vec<String> {
    [
        format!("model.path={}", model.display()),
        "model.watch_s=0.2".into(),
        "audio.source=synthetic".into(),
        "video.source=synthetic".into(),
        "synthetic.realtime=true".into(),
        format!("synthetic.duration_s={seconds}"),
        format!("evidence.dir={}", state.join("evidence").display()),
    ]
    .into_iter()
    .chain(extra.iter().cloned())
    .flat_map(|s| ["--set".to_string(), s])
    .collect()
}

#[test]
fn a_new_model_takes_over_without_a_restart_and_bad_ones_are_refused() {
    let state = temp_dir("reload");
    let model = state.join("model.onnx");
    std::fs::write(&model, random_model_bytes()).unwrap();
    let _ = random_model();
    let mut labels_b: Vec<&str> = LABELS_A[..5].to_vec();
    labels_b.extend(["cat_meowing", "none"]);
    let model_b = random_model_variant(B, &labels_b, 2);
    // Fits nothing here: it lacks `door_slammed`, which the configuration tunes.
    let model_c = random_model_variant("edge-random-c", &["dog_barking", "none"], 3);

    let args = watched(
        &model,
        &state,
        120,
        &[
            "sink.stdout_scores=true".into(),
            "events.threshold=0.01".into(),
            "events.release=0.005".into(),
            "events.labels.door_slammed.threshold=0.01".into(),
        ],
    );
    let d = Daemon::start(&args, &state);
    d.wait_events("model A's events", |e| {
        e.iter().any(|e| e.model_version == A)
    });

    // 1. The file replaced: the watcher loads B; cat_meowing fires under B.
    replace(&model, &model_b);
    wait_until(&d, "B takes over", |l| {
        l.contains(&format!("model {B} (")) && l.contains("runs from the next window")
    });
    d.wait_events("cat under B", |e| {
        e.iter()
            .any(|e| e.label == "cat_meowing" && e.kind == EventKind::New && e.model_version == B)
    });

    // 2. Not a model: refused, B keeps running.
    replace(&model, b"this is not an ONNX file");
    wait_until(&d, "the broken file refused", |l| count(l, "refused") == 1);
    // 3. A model that does not fit, on SIGHUP: refused, naming the field.
    replace(&model, &model_c);
    d.signal("HUP");
    wait_until(&d, "the misfit refused", |l| count(l, "refused") == 2);
    let log = d.log();
    assert!(log.contains("events.labels.door_slammed"), "{log}");
    assert!(log.contains(&format!("{B} keeps running")), "{log}");
    // 4. A back, on SIGHUP (before the watcher would see it).
    replace(&model, random_model_bytes());
    d.signal("HUP");
    wait_until(&d, "A again", |l| count(l, &format!("model {A} (")) == 1);
    let n = d.windows().len();
    let t0 = Instant::now();
    while d.windows().len() < n + 2 {
        assert!(t0.elapsed() < Duration::from_secs(20), "windows stopped");
        std::thread::sleep(Duration::from_millis(50));
    }
    let windows = d.windows();
    let events = d.events();
    let log = d.log();
    let report = d.stop();

    // Every window once, in order, none dropped, each scored by one model: the label set
    // goes A -> B -> A, switching exactly twice.
    let idx: Vec<u64> = windows
        .iter()
        .map(|w| w["index"].as_u64().unwrap())
        .collect();
    assert!(idx.windows(2).all(|p| p[1] == p[0] + 1), "{idx:?}");
    let label_sets: Vec<Vec<String>> = windows
        .iter()
        .map(|w| {
            w["fused"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p[0].as_str().unwrap().to_string())
                .collect()
        })
        .collect();
    let mut runs: Vec<&Vec<String>> = Vec::new();
    for s in &label_sets {
        if runs.last() != Some(&s) {
            runs.push(s);
        }
    }
    assert_eq!(runs.len(), 3, "{runs:?}");
    assert_eq!(runs[0], &LABELS_A.map(String::from).to_vec());
    assert_eq!(
        runs[1],
        &labels_b.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    );
    assert_eq!(report["windows_dropped"], 0, "{report}");
    assert_eq!(report["model_reloads"], 2, "{report}");
    assert_eq!(report["model_reload_failures"], 2, "{report}");
    assert_eq!(report["model_version"], A, "{report}");

    // Events: ids unique; every A event open at the switch ends under A before any B event.
    let news: Vec<&str> = events
        .iter()
        .filter(|e| e.kind == EventKind::New)
        .map(|e| e.id.as_str())
        .collect();
    let mut unique = news.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), news.len(), "event ids repeat: {news:?}");
    let first_b = events.iter().position(|e| e.model_version == B).unwrap();
    let a_open: Vec<&str> = events[..first_b]
        .iter()
        .filter(|e| e.kind == EventKind::New)
        .map(|e| e.id.as_str())
        .collect();
    for id in &a_open {
        let end = events[..first_b]
            .iter()
            .any(|e| e.id == *id && e.kind == EventKind::End);
        assert!(end, "A's event {id} not ended before B's events:\n{log}");
    }
    assert!(events[first_b..]
        .iter()
        .filter(|e| e.kind == EventKind::New)
        .take_while(|e| e.model_version == B)
        .any(|e| e.label == "cat_meowing"));
}

/// Home Assistant follows a reload: the new model's labels get their entities (event sensor,
/// threshold number, on/off switch), a label the new model lacks has its retained configs
/// emptied (which is how Home Assistant removes an entity), on a real mosquitto.
#[test]
fn a_reloaded_model_is_announced_to_home_assistant() {
    let port = crate::broker::free_port();
    let Some(mut broker) = crate::broker::Broker::new(port) else {
        eprintln!("SKIPPED: mosquitto is not installed");
        return;
    };
    broker.start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let rec = rt.block_on(crate::broker::subscriber(port, "reload-test"));
    let state = temp_dir("reload-mqtt");
    let model = state.join("model.onnx");
    std::fs::write(&model, random_model_bytes()).unwrap();
    // B: A's labels less `person_speaking`, plus `cat_meowing`.
    let labels_b = [
        "dog_barking",
        "glass_breaking",
        "door_slammed",
        "door_closed_softly",
        "cat_meowing",
        "none",
    ];
    let model_b = random_model_variant("edge-random-mqtt-b", &labels_b, 4);
    let args = watched(
        &model,
        &state,
        60,
        &[
            "mqtt.enabled=true".into(),
            format!("mqtt.url=mqtt://127.0.0.1:{port}"),
            "mqtt.device=porch".into(),
        ],
    );
    let d = Daemon::start(&args, &state);
    let config = |kind: &str, id: &str| format!("homeassistant/{kind}/porch_{id}/config");
    // The last retained payload of `topic`: None never seen, Some(empty) removed.
    let last = |r: &crate::broker::Received, topic: &str| {
        r.all()
            .iter()
            .rev()
            .find(|m| m.0 == topic)
            .map(|m| m.1.clone())
    };
    let speaking = [
        config("binary_sensor", "person_speaking"),
        config("number", "person_speaking_threshold"),
        config("switch", "person_speaking_enabled"),
    ];
    let cat = [
        config("binary_sensor", "cat_meowing"),
        config("number", "cat_meowing_threshold"),
        config("switch", "cat_meowing_enabled"),
    ];
    rt.block_on(rec.wait_for("A's entities", Duration::from_secs(20), |r| {
        speaking
            .iter()
            .all(|t| last(r, t).is_some_and(|p| !p.is_empty()))
    }));
    assert!(cat.iter().all(|t| last(&rec, t).is_none()));

    replace(&model, &model_b);
    rt.block_on(rec.wait_for(
        "B's entities, A's extra label removed",
        Duration::from_secs(30),
        |r| {
            cat.iter()
                .all(|t| last(r, t).is_some_and(|p| !p.is_empty()))
                && speaking
                    .iter()
                    .all(|t| last(r, t).is_some_and(|p| p.is_empty()))
        },
    ));
    // The new label's entity reads the same device's topics.
    let sensor: serde_json::Value = serde_json::from_slice(&last(&rec, &cat[0]).unwrap()).unwrap();
    assert_eq!(
        sensor["device"]["identifiers"][0], "mbt-edge_porch",
        "{sensor}"
    );
    let report = d.stop();
    assert_eq!(report["model_reloads"], 1, "{report}");
    assert_eq!(report["model_version"], "edge-random-mqtt-b", "{report}");
}
