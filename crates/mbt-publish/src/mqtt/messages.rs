//! What goes on the wire: topics and payloads, pure functions (tested without a broker).
//!
//! Topics, in the style Frigate users know:
//!
//! | topic | payload | retained |
//! |---|---|---|
//! | `<prefix>/<device>/events` | `{"type": "new"\|"update"\|"end", "before": {..}, "after": {..}}` | no |
//! | `<prefix>/<device>/<label>/state` | `ON` / `OFF` | yes |
//! | `<prefix>/<device>/<label>/score` | the event's score, `0` after its end | yes |
//! | `<prefix>/<device>/<label>/snapshot` | the event's key frame, JPEG | yes |
//! | `<prefix>/<device>/detection` | on `new`: `{"event_type": <label>, ...}` (HA's event entity) | no |
//! | `<prefix>/<device>/availability` | `online` / `offline` (also the last will) | yes |
//! | `<discovery>/binary_sensor/<device>_<label>/config` | Home Assistant discovery | yes |
//! | `<discovery>/sensor/<device>_<label>_score/config` | Home Assistant discovery | yes |
//! | `<discovery>/image/<device>_<label>_snapshot/config` | Home Assistant discovery (with snapshots) | yes |
//! | `<discovery>/event/<device>_detection/config` | Home Assistant discovery: one event entity, `event_types` = the labels | yes |
//!
//! The event entity lets an automation trigger on "an event of type dog_barking" (HA's MQTT
//! event platform) instead of watching a binary sensor flip.
//!
//! `before` is the previous record of the same event id (for `new`: the same as `after`);
//! `after` is the event (see `mbt_core::event::Event`) plus `device` and `has_snapshot`.
//! Labels are made topic-safe (anything but letters, digits, `_`, `-` becomes `_`).

use mbt_core::event::{Event, EventKind};
use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

/// The topic names of one device.
#[derive(Debug, Clone)]
pub struct Topics {
    pub prefix: String,
    pub device: String,
    pub discovery_prefix: String,
}

/// A label as a topic level and Home Assistant object id.
pub fn label_level(label: &str) -> String {
    let s: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "_".into()
    } else {
        s
    }
}

impl Topics {
    fn base(&self) -> String {
        format!("{}/{}", self.prefix, self.device)
    }
    pub fn events(&self) -> String {
        format!("{}/events", self.base())
    }
    pub fn availability(&self) -> String {
        format!("{}/availability", self.base())
    }
    pub fn state(&self, label: &str) -> String {
        format!("{}/{}/state", self.base(), label_level(label))
    }
    pub fn score(&self, label: &str) -> String {
        format!("{}/{}/score", self.base(), label_level(label))
    }
    pub fn snapshot(&self, label: &str) -> String {
        format!("{}/{}/snapshot", self.base(), label_level(label))
    }
    /// Home Assistant's event entity reads this: one message per new event.
    pub fn detection(&self) -> String {
        format!("{}/detection", self.base())
    }
    pub fn discovery_event(&self) -> String {
        format!(
            "{}/event/{}_detection/config",
            self.discovery_prefix,
            label_level(&self.device)
        )
    }
    /// Home Assistant publishes `online` here when it (re)starts: the cue to resend discovery.
    pub fn ha_status(&self) -> String {
        format!("{}/status", self.discovery_prefix)
    }
    fn object(&self, label: &str) -> String {
        format!("{}_{}", self.device, label_level(label))
    }
    pub fn discovery_binary_sensor(&self, label: &str) -> String {
        format!(
            "{}/binary_sensor/{}/config",
            self.discovery_prefix,
            self.object(label)
        )
    }
    pub fn discovery_score_sensor(&self, label: &str) -> String {
        format!(
            "{}/sensor/{}_score/config",
            self.discovery_prefix,
            self.object(label)
        )
    }
    pub fn discovery_image(&self, label: &str) -> String {
        format!(
            "{}/image/{}_snapshot/config",
            self.discovery_prefix,
            self.object(label)
        )
    }
}

pub fn availability(t: &Topics, online: bool) -> Message {
    Message {
        topic: t.availability(),
        payload: if online {
            b"online".to_vec()
        } else {
            b"offline".to_vec()
        },
        retain: true,
    }
}

fn kind_str(k: EventKind) -> &'static str {
    match k {
        EventKind::New => "new",
        EventKind::Update => "update",
        EventKind::End => "end",
    }
}

fn event_object(t: &Topics, e: &Event, has_snapshot: bool) -> Value {
    let mut v = serde_json::to_value(e).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("device".into(), Value::String(t.device.clone()));
        m.insert("has_snapshot".into(), Value::Bool(has_snapshot));
    }
    v
}

/// The messages for one event, in publishing order: events, state, score, then the snapshot
/// (when there is one and the event is not an `end`).
pub fn event_messages(
    t: &Topics,
    before: Option<&Event>,
    after: &Event,
    snapshot: Option<Vec<u8>>,
) -> Vec<Message> {
    let has_snapshot = snapshot.is_some();
    let body = json!({
        "type": kind_str(after.kind),
        "before": event_object(t, before.unwrap_or(after), has_snapshot),
        "after": event_object(t, after, has_snapshot),
    });
    let on = after.kind != EventKind::End;
    let mut out = vec![
        Message {
            topic: t.events(),
            payload: body.to_string().into_bytes(),
            retain: false,
        },
        Message {
            topic: t.state(&after.label),
            payload: if on { b"ON".to_vec() } else { b"OFF".to_vec() },
            retain: true,
        },
        Message {
            topic: t.score(&after.label),
            payload: if on {
                format!("{:.3}", after.score).into_bytes()
            } else {
                b"0".to_vec()
            },
            retain: true,
        },
    ];
    if after.kind == EventKind::New {
        let detection = json!({
            "event_type": after.label,
            "id": after.id,
            "score": after.score,
            "score_audio": after.score_audio,
            "score_video": after.score_video,
            "modalities": after.modalities,
            "start_ms": after.start_ms,
            "model_version": after.model_version,
        });
        out.push(Message {
            topic: t.detection(),
            payload: detection.to_string().into_bytes(),
            retain: false,
        });
    }
    if let (Some(jpeg), true) = (snapshot, on) {
        out.push(Message {
            topic: t.snapshot(&after.label),
            payload: jpeg,
            retain: true,
        });
    }
    out
}

/// The Home Assistant device every entity of this daemon belongs to.
pub(super) fn device(t: &Topics, sw_version: &str) -> Value {
    json!({
        "identifiers": [format!("mbt-edge_{}", t.device)],
        "name": t.device,
        "manufacturer": "mbt-edge",
        "model": "mbtd sound + vision event detector",
        "sw_version": sw_version,
    })
}

/// Home Assistant discovery: per label a binary sensor (the state), a sensor (the score) and,
/// with snapshots, an image entity; one event entity whose event types are the labels; all
/// tied to one device and to the availability topic.
pub fn discovery(t: &Topics, labels: &[String], sw_version: &str, snapshots: bool) -> Vec<Message> {
    let device = device(t, sw_version);
    let avail = |v: &mut Value| {
        if let Value::Object(m) = v {
            m.insert("availability_topic".into(), json!(t.availability()));
            m.insert("payload_available".into(), json!("online"));
            m.insert("payload_not_available".into(), json!("offline"));
            m.insert("device".into(), device.clone());
        }
    };
    let mut out = Vec::new();
    for label in labels {
        let pretty = label.replace('_', " ");
        let obj = format!("{}_{}", t.device, label_level(label));
        let mut b = json!({
            "name": pretty,
            "unique_id": obj,
            "state_topic": t.state(label),
            "payload_on": "ON",
            "payload_off": "OFF",
            "qos": 1,
        });
        avail(&mut b);
        let mut s = json!({
            "name": format!("{pretty} score"),
            "unique_id": format!("{obj}_score"),
            "state_topic": t.score(label),
            "state_class": "measurement",
            "qos": 1,
        });
        avail(&mut s);
        out.push(Message {
            topic: t.discovery_binary_sensor(label),
            payload: b.to_string().into_bytes(),
            retain: true,
        });
        out.push(Message {
            topic: t.discovery_score_sensor(label),
            payload: s.to_string().into_bytes(),
            retain: true,
        });
        if snapshots {
            let mut i = json!({
                "name": format!("{pretty} snapshot"),
                "unique_id": format!("{obj}_snapshot"),
                "image_topic": t.snapshot(label),
                "content_type": "image/jpeg",
            });
            avail(&mut i);
            out.push(Message {
                topic: t.discovery_image(label),
                payload: i.to_string().into_bytes(),
                retain: true,
            });
        }
    }
    if !labels.is_empty() {
        let mut e = json!({
            "name": "detection",
            "unique_id": format!("{}_detection", t.device),
            "state_topic": t.detection(),
            "event_types": labels,
            "qos": 1,
        });
        avail(&mut e);
        out.push(Message {
            topic: t.discovery_event(),
            payload: e.to_string().into_bytes(),
            retain: true,
        });
    }
    out
}

#[cfg(test)]
pub(in crate::mqtt) mod tests {
    use super::*;
    use crate::frame::tests::event;

    /// Device `porch` under `mbt`, discovery under `homeassistant` (shared with control's tests).
    pub(in crate::mqtt) fn topics() -> Topics {
        Topics {
            prefix: "mbt".into(),
            device: "porch".into(),
            discovery_prefix: "homeassistant".into(),
        }
    }

    #[test]
    fn event_messages_are_frigate_style() {
        let t = topics();
        let new = event("e1", EventKind::New);
        let msgs = event_messages(&t, None, &new, Some(vec![0xff, 0xd8]));
        let topics: Vec<&str> = msgs.iter().map(|m| m.topic.as_str()).collect();
        assert_eq!(
            topics,
            [
                "mbt/porch/events",
                "mbt/porch/glass_breaking/state",
                "mbt/porch/glass_breaking/score",
                "mbt/porch/detection",
                "mbt/porch/glass_breaking/snapshot"
            ]
        );
        let d: Value = serde_json::from_slice(&msgs[3].payload).unwrap();
        assert_eq!(d["event_type"], "glass_breaking");
        assert_eq!(d["id"], "e1");
        assert!(!msgs[3].retain, "an event is not a state");
        let v: Value = serde_json::from_slice(&msgs[0].payload).unwrap();
        assert_eq!(v["type"], "new");
        assert_eq!(v["after"]["id"], "e1");
        assert_eq!(v["before"]["id"], "e1");
        assert_eq!(v["after"]["has_snapshot"], true);
        assert_eq!(v["after"]["device"], "porch");
        assert!(!msgs[0].retain && msgs[1].retain);
        assert_eq!(msgs[1].payload, b"ON");
        assert_eq!(msgs[2].payload, b"0.930");

        let mut end = event("e1", EventKind::End);
        end.end_ms = Some(5);
        let msgs = event_messages(&t, Some(&new), &end, Some(vec![1]));
        assert_eq!(msgs.len(), 3, "no snapshot and no detection on end");
        let v: Value = serde_json::from_slice(&msgs[0].payload).unwrap();
        assert_eq!(v["type"], "end");
        assert_eq!(v["before"]["kind"], "new");
        assert_eq!(v["after"]["end_ms"], 5);
        assert_eq!(msgs[1].payload, b"OFF");
        assert_eq!(msgs[2].payload, b"0");
    }

    #[test]
    fn discovery_configs() {
        let t = topics();
        let msgs = discovery(
            &t,
            &["glass_breaking".into(), "door slam/2".into()],
            "0.1.0",
            true,
        );
        assert_eq!(msgs.len(), 7);
        assert_eq!(
            msgs[0].topic,
            "homeassistant/binary_sensor/porch_glass_breaking/config"
        );
        assert_eq!(
            msgs[1].topic,
            "homeassistant/sensor/porch_glass_breaking_score/config"
        );
        assert_eq!(
            msgs[2].topic,
            "homeassistant/image/porch_glass_breaking_snapshot/config"
        );
        assert_eq!(
            msgs[3].topic,
            "homeassistant/binary_sensor/porch_door_slam_2/config"
        );
        assert!(msgs.iter().all(|m| m.retain));
        let b: Value = serde_json::from_slice(&msgs[0].payload).unwrap();
        assert_eq!(b["state_topic"], "mbt/porch/glass_breaking/state");
        assert_eq!(b["availability_topic"], "mbt/porch/availability");
        assert_eq!(b["unique_id"], "porch_glass_breaking");
        assert_eq!(b["device"]["identifiers"][0], "mbt-edge_porch");
        let s: Value = serde_json::from_slice(&msgs[1].payload).unwrap();
        assert_eq!(s["state_topic"], "mbt/porch/glass_breaking/score");
        let ev: Value = serde_json::from_slice(&msgs[6].payload).unwrap();
        assert_eq!(msgs[6].topic, "homeassistant/event/porch_detection/config");
        assert_eq!(ev["state_topic"], "mbt/porch/detection");
        assert_eq!(ev["event_types"], json!(["glass_breaking", "door slam/2"]));
        assert_eq!(ev["availability_topic"], "mbt/porch/availability");
        assert_eq!(discovery(&t, &["a".into()], "v", false).len(), 3);
    }

    #[test]
    fn labels_become_safe_topic_levels() {
        assert_eq!(label_level("dog_barking"), "dog_barking");
        assert_eq!(label_level("a/b+#c d"), "a_b__c_d");
        assert_eq!(label_level(""), "_");
    }
}
