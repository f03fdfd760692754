//! GPIO: drive a pin per configured label when its events come (a relay, a light, a buzzer).
//!
//! Pins sit behind the [`OutputPin`] trait so the sink's timing logic is tested with
//! [`FakePin`] on any machine (the tests use the fake; no test touches real hardware). On a
//! Raspberry Pi [`RppalPins`] opens them through rppal. rppal compiles everywhere; on a machine
//! that is not a Pi it reports that at run time, and so do we, as a clear error at start.
//!
//! Not spooled: a relay that clicks an hour late, after the broker or the disk recovered, is
//! wrong, not late. A failure to set a pin is returned (and counted by the daemon).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mbt_core::event::{Event, EventKind};

use crate::config::{GpioConfig, PinMode};
use crate::DeliveryError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpioError {
    #[error("gpio.pins[{index}] (BCM {pin}): {reason}")]
    Open {
        index: usize,
        pin: u8,
        reason: String,
    },
    #[error("gpio.pins[{index}].label: `{label}` is not a label of the model (labels: {known})")]
    UnknownLabel {
        index: usize,
        label: String,
        known: String,
    },
    #[error("BCM {pin}: {reason}")]
    Set { pin: u8, reason: String },
}

/// A digital output: what the sink needs of a pin.
pub trait OutputPin: Send {
    fn set_high(&mut self) -> Result<(), GpioError>;
    fn set_low(&mut self) -> Result<(), GpioError>;
}

/// Opens BCM pins as outputs (rppal on a Pi, fakes in tests).
pub trait PinOpener {
    fn open(&mut self, pin: u8) -> Result<Box<dyn OutputPin>, String>;
}

/// Real pins through rppal (`/dev/gpiomem`; the daemon's user needs the `gpio` group).
#[derive(Default)]
pub struct RppalPins {
    gpio: Option<rppal::gpio::Gpio>,
}

struct RppalPin {
    pin: u8,
    out: rppal::gpio::OutputPin,
}

impl OutputPin for RppalPin {
    fn set_high(&mut self) -> Result<(), GpioError> {
        self.out.set_high();
        Ok(())
    }
    fn set_low(&mut self) -> Result<(), GpioError> {
        self.out.set_low();
        Ok(())
    }
}

impl std::fmt::Debug for RppalPin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RppalPin({})", self.pin)
    }
}

impl PinOpener for RppalPins {
    fn open(&mut self, pin: u8) -> Result<Box<dyn OutputPin>, String> {
        if self.gpio.is_none() {
            let g = rppal::gpio::Gpio::new().map_err(|e| {
                format!("no usable Raspberry Pi GPIO here ({e}); remove the [[gpio.pins]] entries on other machines")
            })?;
            self.gpio = Some(g);
        }
        let g = self.gpio.as_ref().ok_or("GPIO not open")?;
        let p = g.get(pin).map_err(|e| e.to_string())?;
        Ok(Box::new(RppalPin {
            pin,
            out: p.into_output_low(),
        }))
    }
}

/// A pin that records what was done to it, for tests: `(when, high?)` in order.
#[derive(Debug, Clone, Default)]
pub struct FakePin {
    pub log: Arc<Mutex<Vec<(Instant, bool)>>>,
}

impl FakePin {
    pub fn levels(&self) -> Vec<bool> {
        self.log
            .lock()
            .map(|l| l.iter().map(|x| x.1).collect())
            .unwrap_or_default()
    }
    fn push(&self, high: bool) {
        if let Ok(mut l) = self.log.lock() {
            l.push((Instant::now(), high));
        }
    }
}

impl OutputPin for FakePin {
    fn set_high(&mut self) -> Result<(), GpioError> {
        self.push(true);
        Ok(())
    }
    fn set_low(&mut self) -> Result<(), GpioError> {
        self.push(false);
        Ok(())
    }
}

/// Hands out [`FakePin`]s and keeps a handle to each, by BCM number.
#[derive(Debug, Default, Clone)]
pub struct FakePins {
    pub pins: Arc<Mutex<BTreeMap<u8, FakePin>>>,
}

impl FakePins {
    pub fn pin(&self, bcm: u8) -> Option<FakePin> {
        self.pins.lock().ok().and_then(|m| m.get(&bcm).cloned())
    }
}

impl PinOpener for FakePins {
    fn open(&mut self, pin: u8) -> Result<Box<dyn OutputPin>, String> {
        let p = FakePin::default();
        self.pins
            .lock()
            .map_err(|_| "poisoned".to_string())?
            .insert(pin, p.clone());
        Ok(Box::new(p))
    }
}

struct Slot {
    bcm: u8,
    pin: Arc<Mutex<Box<dyn OutputPin>>>,
    mode: PinMode,
    pulse: Duration,
    active_low: bool,
    /// Bumped by every pulse; a pulse's timer turns the pin off only if still the latest.
    generation: Arc<AtomicU64>,
}

fn set(
    pin: &Mutex<Box<dyn OutputPin>>,
    bcm: u8,
    on: bool,
    active_low: bool,
) -> Result<(), GpioError> {
    let mut p = pin.lock().map_err(|_| GpioError::Set {
        pin: bcm,
        reason: "pin lock poisoned".into(),
    })?;
    if on != active_low {
        p.set_high()
    } else {
        p.set_low()
    }
}

/// The GPIO sink.
pub struct GpioSink {
    slots: BTreeMap<String, Vec<Slot>>,
}

impl GpioSink {
    /// Opens every configured pin (all off) and checks the labels against the model's.
    pub fn new(
        cfg: &GpioConfig,
        labels: &[String],
        opener: &mut dyn PinOpener,
    ) -> Result<Self, GpioError> {
        let mut slots: BTreeMap<String, Vec<Slot>> = BTreeMap::new();
        for (index, p) in cfg.pins.iter().enumerate() {
            if !labels.is_empty() && !labels.contains(&p.label) {
                return Err(GpioError::UnknownLabel {
                    index,
                    label: p.label.clone(),
                    known: labels.join(", "),
                });
            }
            let pin = opener.open(p.pin).map_err(|reason| GpioError::Open {
                index,
                pin: p.pin,
                reason,
            })?;
            let pin = Arc::new(Mutex::new(pin));
            set(&pin, p.pin, false, p.active_low)?;
            slots.entry(p.label.clone()).or_default().push(Slot {
                bcm: p.pin,
                pin,
                mode: p.mode,
                pulse: Duration::from_millis(p.pulse_ms),
                active_low: p.active_low,
                generation: Arc::new(AtomicU64::new(0)),
            });
        }
        Ok(GpioSink { slots })
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Acts on one event: `pulse` pins go on at `new` and off `pulse_ms` later (a new event
    /// meanwhile restarts the pulse); `follow` pins go on at `new`/`update` and off at `end`.
    /// Needs a tokio runtime (the pulse's end is a timer task).
    pub async fn deliver(&mut self, event: &Event) -> Result<(), DeliveryError> {
        let Some(slots) = self.slots.get(&event.label) else {
            return Ok(());
        };
        let err = |e: GpioError| DeliveryError::fatal("gpio", e.to_string());
        for s in slots {
            match (s.mode, event.kind) {
                (PinMode::Pulse, EventKind::New) => {
                    let g = s.generation.fetch_add(1, Ordering::SeqCst) + 1;
                    set(&s.pin, s.bcm, true, s.active_low).map_err(err)?;
                    let (pin, gen, bcm, low, pulse) = (
                        s.pin.clone(),
                        s.generation.clone(),
                        s.bcm,
                        s.active_low,
                        s.pulse,
                    );
                    tokio::spawn(async move {
                        tokio::time::sleep(pulse).await;
                        if gen.load(Ordering::SeqCst) == g {
                            if let Err(e) = set(&pin, bcm, false, low) {
                                tracing::warn!("gpio: {e}");
                            }
                        }
                    });
                }
                (PinMode::Follow, EventKind::New | EventKind::Update) => {
                    set(&s.pin, s.bcm, true, s.active_low).map_err(err)?
                }
                (PinMode::Follow, EventKind::End) => {
                    set(&s.pin, s.bcm, false, s.active_low).map_err(err)?
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Turns every pin off (at shutdown).
    pub fn all_off(&mut self) {
        for s in self.slots.values().flatten() {
            s.generation.fetch_add(1, Ordering::SeqCst);
            if let Err(e) = set(&s.pin, s.bcm, false, s.active_low) {
                tracing::warn!("gpio: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GpioPinConfig;
    use crate::frame::tests::event;

    fn cfg(pins: Vec<GpioPinConfig>) -> GpioConfig {
        GpioConfig { pins }
    }

    fn labels() -> Vec<String> {
        vec!["glass_breaking".into(), "dog_barking".into()]
    }

    #[tokio::test(start_paused = true)]
    async fn pulse_goes_high_then_low_after_n_ms_and_restarts() {
        let mut pins = FakePins::default();
        let mut sink = GpioSink::new(
            &cfg(vec![GpioPinConfig {
                label: "glass_breaking".into(),
                pin: 17,
                pulse_ms: 500,
                ..Default::default()
            }]),
            &labels(),
            &mut pins,
        )
        .unwrap();
        let pin = pins.pin(17).unwrap();
        assert_eq!(pin.levels(), [false], "opened off");
        sink.deliver(&event("a", EventKind::New)).await.unwrap();
        assert_eq!(pin.levels(), [false, true]);
        tokio::time::sleep(Duration::from_millis(300)).await;
        // A second event 300 ms in restarts the pulse: still high at 600 ms.
        sink.deliver(&event("b", EventKind::New)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(pin.levels(), [false, true, true]);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(pin.levels(), [false, true, true, false]);
        // Events of other labels and update/end kinds leave a pulse pin alone.
        sink.deliver(&event("c", EventKind::End)).await.unwrap();
        let mut other = event("d", EventKind::New);
        other.label = "dog_barking".into();
        sink.deliver(&other).await.unwrap();
        assert_eq!(pin.levels().len(), 4);
    }

    #[tokio::test]
    async fn follow_mode_and_active_low() {
        let mut pins = FakePins::default();
        let mut sink = GpioSink::new(
            &cfg(vec![GpioPinConfig {
                label: "glass_breaking".into(),
                pin: 4,
                mode: PinMode::Follow,
                active_low: true,
                ..Default::default()
            }]),
            &labels(),
            &mut pins,
        )
        .unwrap();
        let pin = pins.pin(4).unwrap();
        sink.deliver(&event("a", EventKind::New)).await.unwrap();
        sink.deliver(&event("a", EventKind::End)).await.unwrap();
        // Active low: off is high, on is low.
        assert_eq!(pin.levels(), [true, false, true]);
    }

    #[test]
    fn unknown_label_and_missing_hardware_are_clear_errors() {
        let e = GpioSink::new(
            &cfg(vec![GpioPinConfig {
                label: "glas_breaking".into(),
                ..Default::default()
            }]),
            &labels(),
            &mut FakePins::default(),
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("gpio.pins[0].label"), "{e}");

        // On the build machines (not a Pi) rppal refuses at run time: an error, not a panic.
        let r = GpioSink::new(
            &cfg(vec![GpioPinConfig {
                label: "glass_breaking".into(),
                ..Default::default()
            }]),
            &labels(),
            &mut RppalPins::default(),
        );
        if let Err(e) = r {
            let s = e.to_string();
            assert!(s.contains("gpio.pins[0]") && s.contains("BCM 17"), "{s}");
        }
    }
}
