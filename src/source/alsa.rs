//! Microphone capture through alsa-lib.
//!
//! Asks the device for interleaved S16 at `audio.rate` Hz (16 kHz) and `audio.channels`, and
//! takes what it grants: channels are averaged to mono here, and any rate the shared resampler
//! supports is resampled per window by the tokenizer (the same code path as training data). A
//! device that cannot do S16 is refused with a hint (`plughw:` converts).
//!
//! Overruns (the pipeline was too slow to read) are recovered with `snd_pcm_recover` and
//! counted; the lost span shows up as a gap on the clock, which the windower counts too. A
//! read that waits longer than `recovery.read_timeout_s` means the device is gone (USB mic
//! unplugged): the source fails and the supervisor reopens it with backoff.
//!
//! Timestamps: each period is stamped with the clock time of its first sample (read time
//! minus the period's duration); the windower places samples by count and measures how far
//! these stamps drift from the count.

use std::time::Duration;

use ::alsa::pcm::{Access, Format as PcmFormat, HwParams, PCM};
use ::alsa::{Direction, ValueOr};

use super::{AudioChunk, Data, Format, Modality, SkipKind, Source, SourceError};
use crate::clock::{secs_to_us, Clock};

pub struct AlsaSource {
    device: String,
    want_rate: u32,
    want_channels: u32,
    period_ms: u32,
    timeout: Duration,
    clock: Clock,
    pcm: Option<PCM>,
    rate: u32,
    channels: u32,
    buf: Vec<i16>,
}

impl AlsaSource {
    pub fn new(
        device: &str,
        rate: u32,
        channels: u32,
        period_ms: u32,
        timeout: Duration,
        clock: Clock,
    ) -> Self {
        AlsaSource {
            device: device.to_string(),
            want_rate: rate,
            want_channels: channels,
            period_ms,
            timeout,
            clock,
            pcm: None,
            rate: 0,
            channels: 0,
            buf: Vec::new(),
        }
    }

    fn configure(&self, pcm: &PCM) -> Result<(u32, u32, usize), String> {
        let hwp = HwParams::any(pcm).map_err(|e| format!("hw params: {e}"))?;
        hwp.set_access(Access::RWInterleaved)
            .map_err(|e| format!("interleaved access refused: {e}"))?;
        hwp.set_format(PcmFormat::s16()).map_err(|e| {
            format!(
                "the device cannot deliver S16_LE ({e}); use a `plughw:` device, which converts"
            )
        })?;
        let channels = hwp
            .set_channels_near(self.want_channels)
            .map_err(|e| format!("channels: {e}"))?;
        let rate = hwp
            .set_rate_near(self.want_rate, ValueOr::Nearest)
            .map_err(|e| format!("rate: {e}"))?;
        if !mbt_core::audio::SUPPORTED_RATES.contains(&rate) {
            return Err(format!(
                "the device offers {rate} Hz, which the resampler does not support (expected one of {:?}); use a `plughw:` device",
                mbt_core::audio::SUPPORTED_RATES
            ));
        }
        let period = (rate as u64 * self.period_ms as u64 / 1000).max(1);
        let period = hwp
            .set_period_size_near(period as _, ValueOr::Nearest)
            .map_err(|e| format!("period size: {e}"))?;
        let _ = hwp.set_buffer_size_near(period * 8);
        pcm.hw_params(&hwp)
            .map_err(|e| format!("applying hw params: {e}"))?;
        Ok((rate, channels, period.max(1) as usize))
    }
}

impl Source for AlsaSource {
    fn modality(&self) -> Modality {
        Modality::Audio
    }

    fn name(&self) -> String {
        format!("alsa:{}", self.device)
    }

    fn live(&self) -> bool {
        true
    }

    fn open(&mut self) -> Result<Format, SourceError> {
        self.close();
        let pcm = PCM::new(&self.device, Direction::Capture, false)
            .map_err(|e| SourceError::Failed(format!("cannot open PCM `{}`: {e}", self.device)))?;
        let (rate, channels, period) = self
            .configure(&pcm)
            .map_err(|e| SourceError::Failed(format!("PCM `{}`: {e}", self.device)))?;
        pcm.start().map_err(|e| {
            SourceError::Failed(format!("PCM `{}`: cannot start: {e}", self.device))
        })?;
        self.rate = rate;
        self.channels = channels;
        self.buf = vec![0; period * channels as usize];
        self.pcm = Some(pcm);
        Ok(Format::Audio { rate, channels })
    }

    fn read(&mut self) -> Result<Option<Data>, SourceError> {
        let pcm = self
            .pcm
            .as_ref()
            .ok_or_else(|| SourceError::Failed("read before open".into()))?;
        let timeout_ms = self.timeout.as_millis().min(u32::MAX as u128) as u32;
        match pcm.wait(Some(timeout_ms)) {
            Ok(true) => {}
            Ok(false) => {
                return Err(SourceError::Failed(format!(
                    "no audio for {:.1} s",
                    self.timeout.as_secs_f64()
                )))
            }
            Err(e) => return Err(recover(pcm, e)),
        }
        let io = pcm
            .io_i16()
            .map_err(|e| SourceError::Failed(format!("PCM I/O: {e}")))?;
        let frames = match io.readi(&mut self.buf) {
            Ok(n) => n,
            Err(e) => return Err(recover(pcm, e)),
        };
        let ch = self.channels as usize;
        let samples = downmix_s16(&self.buf[..frames * ch], ch);
        let dur = secs_to_us(frames as f64 / self.rate as f64);
        let t_us = self.clock.now_us().saturating_sub(dur);
        if frames == 0 {
            return Err(SourceError::Skipped {
                kind: SkipKind::ShortRead,
                reason: "read returned no samples".into(),
            });
        }
        Ok(Some(Data::Audio(AudioChunk {
            t_us,
            rate: self.rate,
            samples,
        })))
    }

    fn close(&mut self) {
        if let Some(pcm) = self.pcm.take() {
            let _ = pcm.drop();
        }
    }
}

/// Recovers from an overrun or suspend (counted as an xrun); anything alsa-lib cannot recover
/// from fails the source so it is reopened.
fn recover(pcm: &PCM, e: ::alsa::Error) -> SourceError {
    let errno = e.errno();
    match pcm.try_recover(e, true) {
        Ok(()) => {
            let _ = pcm.start();
            SourceError::Skipped {
                kind: SkipKind::Xrun,
                reason: format!("recovered from errno {errno} (overrun or suspend)"),
            }
        }
        Err(e2) => SourceError::Failed(format!("capture failed: {e2}")),
    }
}

/// Interleaved S16 frames -> mono f32 in [-1, 1): the channel mean, scaled by 2^15 like
/// `torchaudio.load` (and `mbt_media::wav`), so live audio has the training data's scale.
pub fn downmix_s16(interleaved: &[i16], channels: usize) -> Vec<f32> {
    let ch = channels.max(1);
    let scale = 1.0 / (32768.0 * ch as f32);
    interleaved
        .chunks_exact(ch)
        .map(|f| f.iter().map(|&s| s as f32).sum::<f32>() * scale)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downmix_averages_channels_with_torchaudio_scaling() {
        assert_eq!(downmix_s16(&[16384, -32768], 1), vec![0.5, -1.0]);
        // Stereo frames (L, R): (0.5 + 0) / 2 and (-1 + -0.5) / 2.
        assert_eq!(
            downmix_s16(&[16384, 0, -32768, -16384], 2),
            vec![0.25, -0.75]
        );
        // A trailing partial frame is not a frame.
        assert_eq!(downmix_s16(&[100, 200, 300], 2).len(), 1);
    }
}
