//! Run-time tuning over MQTT: each label's threshold and on/off switch, as Frigate does for its
//! audio labels, and the Home Assistant entities for them. Pure functions (tested without a
//! broker); the driver subscribes and publishes them.
//!
//! | topic | payload | retained |
//! |---|---|---|
//! | `<prefix>/<device>/<label>/threshold/set` | a number from 0.01 to 1, or `reset` | (command) |
//! | `<prefix>/<device>/<label>/enabled/set` | `ON` / `OFF` (also `true`/`false`, `1`/`0`), or `reset` | (command) |
//! | `<prefix>/<device>/<label>/threshold` | the threshold in force | yes |
//! | `<prefix>/<device>/<label>/enabled` | `ON` / `OFF` | yes |
//! | `<discovery>/number/<device>_<label>_threshold/config` | Home Assistant number entity | yes |
//! | `<discovery>/switch/<device>_<label>_enabled/config` | Home Assistant switch entity | yes |
//!
//! The daemon owns the state: a command only asks for a change; the state topics are
//! published back once the daemon applied (and saved) it, so Home Assistant shows what is in
//! force, not what was asked. A command that cannot be read is handed over as
//! [`Command::Invalid`] so the daemon logs and counts it in one place.

use serde_json::json;

use super::messages::{label_level, Message, Topics};

/// One label's tuning in force.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelControl {
    pub label: String,
    pub threshold: f32,
    pub enabled: bool,
}

/// What the MQTT side announces: the model's labels (discovery) and, with run-time tuning,
/// each label's threshold and switch. The daemon replaces it on a reload or a change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Announce {
    pub labels: Vec<String>,
    pub model_version: String,
    /// Empty: no tuning entities (no `.../set` subscriptions either).
    pub controls: Vec<LabelControl>,
}

/// A command received on a `.../set` topic.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Threshold {
        label: String,
        value: f32,
    },
    Enabled {
        label: String,
        on: bool,
    },
    /// `reset` on either topic: forget that label's run-time changes.
    Reset {
        label: String,
    },
    /// Not understood: the topic and why.
    Invalid {
        topic: String,
        reason: String,
    },
}

impl Topics {
    fn label_base(&self, label: &str) -> String {
        format!("{}/{}/{}", self.prefix, self.device, label_level(label))
    }
    pub fn threshold(&self, label: &str) -> String {
        format!("{}/threshold", self.label_base(label))
    }
    pub fn enabled(&self, label: &str) -> String {
        format!("{}/enabled", self.label_base(label))
    }
    /// The two subscriptions for commands.
    pub fn command_filters(&self) -> [String; 2] {
        [
            format!("{}/{}/+/threshold/set", self.prefix, self.device),
            format!("{}/{}/+/enabled/set", self.prefix, self.device),
        ]
    }
    pub fn discovery_number(&self, label: &str) -> String {
        format!(
            "{}/number/{}_{}_threshold/config",
            self.discovery_prefix,
            self.device,
            label_level(label)
        )
    }
    pub fn discovery_switch(&self, label: &str) -> String {
        format!(
            "{}/switch/{}_{}_enabled/config",
            self.discovery_prefix,
            self.device,
            label_level(label)
        )
    }
}

/// Reads a message on one of [`Topics::command_filters`]; `None` when the topic is not a
/// command topic of this device.
pub fn parse_command(
    t: &Topics,
    labels: &[String],
    topic: &str,
    payload: &[u8],
) -> Option<Command> {
    let base = format!("{}/{}/", t.prefix, t.device);
    let rest = topic.strip_prefix(&base)?;
    let (level, what) = rest.split_once('/')?;
    let what = match what {
        "threshold/set" => "threshold",
        "enabled/set" => "enabled",
        _ => return None,
    };
    let invalid = |reason: String| {
        Some(Command::Invalid {
            topic: topic.to_string(),
            reason,
        })
    };
    let Some(label) = labels.iter().find(|l| label_level(l) == level) else {
        return invalid(format!(
            "`{level}` is not a label of the running model (its labels: {})",
            labels.join(", ")
        ));
    };
    let Ok(text) = std::str::from_utf8(payload) else {
        return invalid("the payload is not UTF-8 text".into());
    };
    let text = text.trim();
    if text.eq_ignore_ascii_case("reset") {
        return Some(Command::Reset {
            label: label.clone(),
        });
    }
    if what == "threshold" {
        return match text.parse::<f32>() {
            Ok(v) if v.is_finite() => Some(Command::Threshold {
                label: label.clone(),
                value: v,
            }),
            _ => invalid(format!(
                "threshold payload `{}`: expected a number from 0.01 to 1, or `reset`",
                text.chars().take(40).collect::<String>()
            )),
        };
    }
    let on = match text.to_ascii_lowercase().as_str() {
        "on" | "true" | "1" => true,
        "off" | "false" | "0" => false,
        _ => {
            return invalid(format!(
                "enabled payload `{}`: expected ON or OFF (or true/false, 1/0, reset)",
                text.chars().take(40).collect::<String>()
            ))
        }
    };
    Some(Command::Enabled {
        label: label.clone(),
        on,
    })
}

/// The retained state topics of the tuning in force.
pub fn state_messages(t: &Topics, a: &Announce) -> Vec<Message> {
    let mut out = Vec::new();
    for c in &a.controls {
        out.push(Message {
            topic: t.threshold(&c.label),
            payload: format!("{}", c.threshold).into_bytes(),
            retain: true,
        });
        out.push(Message {
            topic: t.enabled(&c.label),
            payload: if c.enabled {
                b"ON".to_vec()
            } else {
                b"OFF".to_vec()
            },
            retain: true,
        });
    }
    out
}

/// Home Assistant discovery for the tuning: a number entity per threshold (0.01-1, step
/// 0.01, a slider) and a switch per label, on the device the detection entities belong to.
pub fn discovery_controls(t: &Topics, a: &Announce, sw_version: &str) -> Vec<Message> {
    let device = super::messages::device(t, sw_version);
    let mut out = Vec::new();
    for c in &a.controls {
        let pretty = c.label.replace('_', " ");
        let obj = format!("{}_{}", t.device, label_level(&c.label));
        let n = json!({
            "name": format!("{pretty} threshold"),
            "unique_id": format!("{obj}_threshold"),
            "command_topic": format!("{}/set", t.threshold(&c.label)),
            "state_topic": t.threshold(&c.label),
            "min": 0.01,
            "max": 1.0,
            "step": 0.01,
            "mode": "slider",
            "entity_category": "config",
            "availability_topic": t.availability(),
            "device": device,
            "qos": 1,
        });
        let s = json!({
            "name": format!("{pretty} detection"),
            "unique_id": format!("{obj}_enabled"),
            "command_topic": format!("{}/set", t.enabled(&c.label)),
            "state_topic": t.enabled(&c.label),
            "payload_on": "ON",
            "payload_off": "OFF",
            "entity_category": "config",
            "availability_topic": t.availability(),
            "device": device,
            "qos": 1,
        });
        out.push(Message {
            topic: t.discovery_number(&c.label),
            payload: n.to_string().into_bytes(),
            retain: true,
        });
        out.push(Message {
            topic: t.discovery_switch(&c.label),
            payload: s.to_string().into_bytes(),
            retain: true,
        });
    }
    out
}

/// Empty retained configs for the entities of labels the new model no longer has (Home
/// Assistant removes an entity whose discovery config is emptied), and their state topics
/// cleared.
pub fn removed(t: &Topics, before: &Announce, after: &Announce) -> Vec<Message> {
    let gone = |l: &&String| !after.labels.contains(l);
    let mut out = Vec::new();
    for label in before.labels.iter().filter(gone) {
        for topic in [
            t.discovery_binary_sensor(label),
            t.discovery_score_sensor(label),
            t.discovery_image(label),
            t.discovery_number(label),
            t.discovery_switch(label),
            t.state(label),
            t.score(label),
            t.threshold(label),
            t.enabled(label),
        ] {
            out.push(Message {
                topic,
                payload: Vec::new(),
                retain: true,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::messages::tests::topics;

    fn labels() -> Vec<String> {
        vec!["dog_barking".into(), "glass_breaking".into()]
    }

    #[test]
    fn commands_are_read_from_their_topics() {
        let t = topics();
        let p =
            |topic: &str, payload: &str| parse_command(&t, &labels(), topic, payload.as_bytes());
        assert_eq!(
            p("mbt/porch/dog_barking/threshold/set", " 0.65 "),
            Some(Command::Threshold {
                label: "dog_barking".into(),
                value: 0.65
            })
        );
        assert_eq!(
            p("mbt/porch/glass_breaking/enabled/set", "OFF"),
            Some(Command::Enabled {
                label: "glass_breaking".into(),
                on: false
            })
        );
        assert_eq!(
            p("mbt/porch/glass_breaking/enabled/set", "true"),
            Some(Command::Enabled {
                label: "glass_breaking".into(),
                on: true
            })
        );
        assert_eq!(
            p("mbt/porch/dog_barking/threshold/set", "RESET"),
            Some(Command::Reset {
                label: "dog_barking".into()
            })
        );
        // Not command topics of this device: ignored.
        assert_eq!(p("mbt/porch/dog_barking/threshold", "0.5"), None);
        assert_eq!(p("mbt/garage/dog_barking/threshold/set", "0.5"), None);
        // Malformed: handed over as invalid, with the reason.
        for (topic, payload, want) in [
            (
                "mbt/porch/dog_barking/threshold/set",
                "high",
                "expected a number",
            ),
            (
                "mbt/porch/dog_barking/threshold/set",
                "NaN",
                "expected a number",
            ),
            (
                "mbt/porch/dog_barking/enabled/set",
                "maybe",
                "expected ON or OFF",
            ),
            (
                "mbt/porch/cat/enabled/set",
                "ON",
                "not a label of the running model",
            ),
        ] {
            match p(topic, payload) {
                Some(Command::Invalid { reason, .. }) => assert!(reason.contains(want), "{reason}"),
                other => panic!("{topic} {payload}: {other:?}"),
            }
        }
        match parse_command(
            &t,
            &labels(),
            "mbt/porch/dog_barking/enabled/set",
            &[0xff, 0xfe],
        ) {
            Some(Command::Invalid { reason, .. }) => assert!(reason.contains("UTF-8")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn home_assistant_gets_a_number_and_a_switch_per_label_tied_to_the_topics() {
        let t = topics();
        let a = Announce {
            labels: labels(),
            model_version: "v".into(),
            controls: vec![LabelControl {
                label: "dog_barking".into(),
                threshold: 0.4,
                enabled: false,
            }],
        };
        let d = discovery_controls(&t, &a, "1.0");
        assert_eq!(d.len(), 2);
        assert_eq!(
            d[0].topic,
            "homeassistant/number/porch_dog_barking_threshold/config"
        );
        let n: serde_json::Value = serde_json::from_slice(&d[0].payload).unwrap();
        assert_eq!(n["command_topic"], "mbt/porch/dog_barking/threshold/set");
        assert_eq!(n["state_topic"], "mbt/porch/dog_barking/threshold");
        assert_eq!(
            (n["min"].as_f64(), n["max"].as_f64()),
            (Some(0.01), Some(1.0))
        );
        let s: serde_json::Value = serde_json::from_slice(&d[1].payload).unwrap();
        assert_eq!(
            d[1].topic,
            "homeassistant/switch/porch_dog_barking_enabled/config"
        );
        assert_eq!(s["command_topic"], "mbt/porch/dog_barking/enabled/set");
        // The command topics HA will use are ones the parser reads.
        let cmd = n["command_topic"].as_str().unwrap();
        assert!(matches!(
            parse_command(&t, &labels(), cmd, b"0.5"),
            Some(Command::Threshold { .. })
        ));
        let st = state_messages(&t, &a);
        assert_eq!(
            st.iter()
                .map(|m| (
                    m.topic.as_str(),
                    String::from_utf8_lossy(&m.payload).into_owned(),
                    m.retain
                ))
                .collect::<Vec<_>>(),
            vec![
                ("mbt/porch/dog_barking/threshold", "0.4".to_string(), true),
                ("mbt/porch/dog_barking/enabled", "OFF".to_string(), true)
            ]
        );
    }

    #[test]
    fn labels_a_new_model_dropped_get_their_entities_removed() {
        let t = topics();
        let before = Announce {
            labels: labels(),
            ..Default::default()
        };
        let after = Announce {
            labels: vec!["dog_barking".into(), "cat_meowing".into()],
            ..Default::default()
        };
        let r = removed(&t, &before, &after);
        assert!(r.iter().all(|m| m.payload.is_empty() && m.retain));
        assert!(r.iter().all(|m| m.topic.contains("glass_breaking")));
        assert!(r
            .iter()
            .any(|m| m.topic == "homeassistant/binary_sensor/porch_glass_breaking/config"));
        assert!(r
            .iter()
            .any(|m| m.topic == "homeassistant/switch/porch_glass_breaking_enabled/config"));
    }
}
