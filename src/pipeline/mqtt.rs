//! The MQTT side of run-time tuning: commands received on `.../set` topics applied through the
//! tuning controls, and what MQTT announces (Home Assistant discovery, retained states) kept in
//! step with the tuning in force and the labels of the model running.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::tuning::{Change, Controls};
use mbt_publish::mqtt::control::{Announce, Command, LabelControl};

/// The daemon's end of the MQTT control link: what to announce, and the commands received.
pub struct MqttBridge {
    pub announce: watch::Sender<Announce>,
    pub commands: mpsc::Receiver<Command>,
}

/// What MQTT announces for the tuning in force.
pub fn announce_of(eff: &crate::tuning::Effective) -> Announce {
    Announce {
        labels: eff.labels.clone(),
        model_version: eff.model_version.clone(),
        controls: eff
            .states
            .iter()
            .map(|s| LabelControl {
                label: s.label.clone(),
                threshold: s.threshold,
                enabled: s.enabled,
            })
            .collect(),
    }
}

/// Applies tuning commands from MQTT and keeps what MQTT announces in step with the tuning in
/// force (and the labels of the model running).
pub(super) async fn mqtt_bridge(
    mut bridge: MqttBridge,
    controls: Arc<Controls>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tuning = controls.subscribe();
    loop {
        tokio::select! {
            changed = tuning.changed() => {
                if changed.is_err() {
                    return;
                }
                let eff = tuning.borrow_and_update().clone();
                bridge.announce.send_replace(announce_of(&eff));
            }
            cmd = bridge.commands.recv() => {
                let Some(cmd) = cmd else { return };
                let (label, change) = match cmd {
                    Command::Threshold { label, value } => (label, Change::Threshold(value)),
                    Command::Enabled { label, on } => (label, Change::Enabled(on)),
                    Command::Reset { label } => (label, Change::Reset),
                    Command::Invalid { topic, reason } => {
                        controls.rejected();
                        tracing::warn!("mqtt: command on {topic} ignored: {reason}");
                        continue;
                    }
                };
                if let Err(e) = controls.set(&label, change, "mqtt") {
                    tracing::warn!("mqtt: command for `{label}` ignored: {e}");
                }
            }
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
