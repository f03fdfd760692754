//! Test patterns: a sine with periodic noise bursts, and a bar sweeping across a gradient.
//!
//! For trying the daemon without a camera, microphone or clip (`--set audio.source=synthetic
//! --set video.source=synthetic`), and for tests. Deterministic: the same settings give the
//! same samples and pixels.

use std::sync::Arc;

use mbt_media::RgbFrame;

use super::replay::Pacer;
use super::{AudioChunk, Data, Format, Modality, Source, SourceError, VideoFrame};
use crate::clock::secs_to_us;

pub struct SyntheticAudio {
    rate: u32,
    tone_hz: f64,
    burst_every: u64,
    period: usize,
    /// Total samples; None = forever.
    total: Option<u64>,
    pos: u64,
    noise: u32,
    pacer: Pacer,
}

impl SyntheticAudio {
    pub fn new(
        tone_hz: f64,
        burst_every_s: f64,
        duration_s: f64,
        period_ms: u32,
        pacer: Pacer,
    ) -> Self {
        let rate = 16_000;
        SyntheticAudio {
            rate,
            tone_hz,
            burst_every: ((burst_every_s * rate as f64) as u64).max(1),
            period: (rate as usize * period_ms as usize / 1000).max(1),
            total: (duration_s > 0.0).then(|| (duration_s * rate as f64).round() as u64),
            pos: 0,
            noise: 0x1234_5678,
            pacer,
        }
    }

    fn sample(&mut self, n: u64) -> f32 {
        let t = n as f64 / self.rate as f64;
        let tone = 0.3 * (2.0 * std::f64::consts::PI * self.tone_hz * t).sin();
        // A 0.3 s noise burst at the start of every burst period (xorshift noise).
        let burst = if n % self.burst_every < (0.3 * self.rate as f64) as u64 {
            self.noise ^= self.noise << 13;
            self.noise ^= self.noise >> 17;
            self.noise ^= self.noise << 5;
            0.5 * (self.noise as f64 / u32::MAX as f64 - 0.5)
        } else {
            0.0
        };
        (tone + burst) as f32
    }
}

impl Source for SyntheticAudio {
    fn modality(&self) -> Modality {
        Modality::Audio
    }

    fn name(&self) -> String {
        format!("synthetic:{} Hz tone", self.tone_hz)
    }

    fn live(&self) -> bool {
        false
    }

    fn open(&mut self) -> Result<Format, SourceError> {
        Ok(Format::Audio {
            rate: self.rate,
            channels: 1,
        })
    }

    fn read(&mut self) -> Result<Option<Data>, SourceError> {
        let end = match self.total {
            Some(total) if self.pos >= total => return Ok(None),
            Some(total) => (self.pos + self.period as u64).min(total),
            None => self.pos + self.period as u64,
        };
        let start = self.pos;
        let samples = (start..end).map(|n| self.sample(n)).collect();
        self.pacer.wait(secs_to_us(end as f64 / self.rate as f64));
        self.pos = end;
        Ok(Some(Data::Audio(AudioChunk {
            t_us: secs_to_us(start as f64 / self.rate as f64),
            rate: self.rate,
            samples,
        })))
    }
}

pub struct SyntheticVideo {
    width: usize,
    height: usize,
    fps: f64,
    total: Option<u64>,
    next: u64,
    pacer: Pacer,
}

impl SyntheticVideo {
    pub fn new(width: u32, height: u32, fps: u32, duration_s: f64, pacer: Pacer) -> Self {
        SyntheticVideo {
            width: width as usize,
            height: height as usize,
            fps: fps as f64,
            total: (duration_s > 0.0).then(|| (duration_s * fps as f64).round() as u64),
            next: 0,
            pacer,
        }
    }

    /// Frame `i`: a diagonal gradient with a white vertical bar that crosses the frame once
    /// a second.
    pub fn frame(&self, i: u64) -> RgbFrame {
        let (w, h) = (self.width, self.height);
        let bar = ((i as f64 / self.fps).fract() * w as f64) as usize;
        let mut data = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                if x.abs_diff(bar) <= w / 32 {
                    data.extend_from_slice(&[255, 255, 255]);
                } else {
                    data.extend_from_slice(&[
                        (x * 255 / w) as u8,
                        (y * 255 / h) as u8,
                        ((x + y) * 127 / (w + h)) as u8,
                    ]);
                }
            }
        }
        RgbFrame {
            width: w,
            height: h,
            data,
        }
    }
}

impl Source for SyntheticVideo {
    fn modality(&self) -> Modality {
        Modality::Video
    }

    fn name(&self) -> String {
        format!("synthetic:{}x{} bars", self.width, self.height)
    }

    fn live(&self) -> bool {
        false
    }

    fn open(&mut self) -> Result<Format, SourceError> {
        Ok(Format::Video {
            fps: self.fps,
            width: self.width as u32,
            height: self.height as u32,
        })
    }

    fn read(&mut self) -> Result<Option<Data>, SourceError> {
        if self.total.is_some_and(|t| self.next >= t) {
            return Ok(None);
        }
        let i = self.next;
        self.next += 1;
        let t_us = secs_to_us(i as f64 / self.fps);
        self.pacer.wait(t_us);
        Ok(Some(Data::Video(VideoFrame {
            t_us,
            frame: Arc::new(self.frame(i)),
        })))
    }
}
