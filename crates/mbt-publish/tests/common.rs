//! Shared test helpers: events, and (from `broker.rs`) a mosquitto broker and an MQTT
//! subscriber that records.

#![allow(dead_code)]

use mbt_core::event::{Event, EventKind, Modalities, EVENT_SCHEMA};

pub use crate::broker::*;

pub fn event(i: usize, kind: EventKind) -> Event {
    Event {
        schema: EVENT_SCHEMA,
        id: format!("ev-{i:05}"),
        kind,
        label: if i % 2 == 0 {
            "glass_breaking"
        } else {
            "dog_barking"
        }
        .into(),
        score: 0.5 + (i % 50) as f32 / 100.0,
        score_audio: Some(0.6),
        score_video: Some(0.7),
        modalities: Modalities {
            audio: true,
            video: true,
        },
        start_ms: 1_732_630_000_000 + i as u64 * 1000,
        end_ms: None,
        start_s: i as f64,
        end_s: None,
        model_version: "test".into(),
        evidence: None,
    }
}

pub fn labels() -> Vec<String> {
    vec!["glass_breaking".into(), "dog_barking".into()]
}
