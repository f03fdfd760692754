//! Fresh training clips every epoch (`train.fresh_renders`).
//!
//! AVE-Intersect has few recordings and pictures per kind, and a 6,000-clip training split
//! lets a small transformer memorise clips (training accuracy climbs while accuracy on new
//! renders of the *same* sources stays flat). Re-rendering the training split from the same
//! training sources each epoch (new positions, levels, pitch, reverb, noise and backgrounds)
//! removes that shortcut: every epoch is new data from the same distribution.
//!
//! Epoch `e >= 1` renders with the data seed [`epoch_seed`]`(seed, e)`, so a resumed run
//! re-renders exactly the clips it would have seen. The clips go through the same decoding
//! path as the data set's own (16-bit audio, the tokenizer's log-mel, RGB frames), so a fresh
//! clip is what `mbt data build` would have written and `DataSet::load` read back.
//! The next epoch renders on a background thread while the current one trains (with
//! `train.threads = 1` on a 2-core machine, on the otherwise idle core).

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{bail, Context};
use mbt_core::audio::AudioTokenizer;
use mbt_core::TokenizerConfig;

use super::dataset::{clip_from_signals, Clip, Split};
use crate::data::build::{class_plan, palette, render_clip};
use crate::data::pool::Pool;
use crate::data::render::RATE;
use crate::data::rng::Rng;
use crate::data::sources::Sources;
use crate::data::spec::Palette;

/// The data seed of epoch `epoch`'s fresh training split.
pub fn epoch_seed(seed: u64, epoch: usize) -> u64 {
    Rng::new(seed, &[0xF2E5, epoch as u64]).next_u64()
}

/// Renders training splits from the data set's training sources.
pub struct FreshRenderer {
    sources: Arc<Sources>,
    palette: Arc<Palette>,
    labels: Vec<String>,
    tokenizer: TokenizerConfig,
    count: usize,
    seed: u64,
    /// The split being rendered in the background, and its epoch.
    pending: Option<(usize, JoinHandle<anyhow::Result<Split>>)>,
}

impl FreshRenderer {
    /// Loads the source media (`mbt data fetch`'s cache) and checks that every class the
    /// generator draws is one of the model's labels.
    pub fn new(
        pool: &Path,
        cache: &Path,
        labels: &[String],
        tokenizer: &TokenizerConfig,
        count: usize,
        seed: u64,
    ) -> anyhow::Result<Self> {
        let m = Pool::load(pool)?;
        let sources = Sources::load(&m, cache).with_context(|| {
            format!(
                "train.fresh_renders needs the source media in {} (run `mbt data fetch`)",
                cache.display()
            )
        })?;
        let palette = palette(&sources)?;
        for c in palette.classes() {
            if !labels.iter().any(|l| l == c.name()) {
                bail!(
                    "train.fresh_renders: the generator draws `{}`, which is not one of the model's labels {:?}",
                    c.name(),
                    labels
                );
            }
        }
        AudioTokenizer::new(tokenizer.audio.clone())?;
        Ok(FreshRenderer {
            sources: Arc::new(sources),
            palette: Arc::new(palette),
            labels: labels.to_vec(),
            tokenizer: tokenizer.clone(),
            count,
            seed,
            pending: None,
        })
    }

    /// Starts rendering `epoch`'s split in the background (a no-op if it is already under way).
    pub fn prefetch(&mut self, epoch: usize) {
        if matches!(&self.pending, Some((e, _)) if *e == epoch) {
            return;
        }
        let (sources, palette, labels, tok) = (
            Arc::clone(&self.sources),
            Arc::clone(&self.palette),
            self.labels.clone(),
            self.tokenizer.clone(),
        );
        let (count, seed) = (self.count, epoch_seed(self.seed, epoch));
        let handle = std::thread::spawn(move || {
            render_split(&sources, &palette, &labels, &tok, count, seed, epoch)
        });
        self.pending = Some((epoch, handle));
    }

    /// `epoch`'s split: the one rendered in the background if it was for this epoch, else
    /// rendered now.
    pub fn take(&mut self, epoch: usize) -> anyhow::Result<Split> {
        self.prefetch(epoch);
        let Some((_, handle)) = self.pending.take() else {
            unreachable!("prefetch leaves a pending render");
        };
        match handle.join() {
            Ok(r) => r,
            Err(_) => bail!("the thread rendering epoch {}'s clips panicked", epoch + 1),
        }
    }
}

fn render_split(
    sources: &Sources,
    palette: &Palette,
    labels: &[String],
    tok: &TokenizerConfig,
    count: usize,
    seed: u64,
    epoch: usize,
) -> anyhow::Result<Split> {
    use crate::data::pool::Split as DataSplit;
    let audio = AudioTokenizer::new(tok.audio.clone())?;
    let plan = class_plan(seed, DataSplit::Train, count, &palette.classes());
    // Rendered at the size the model's tokenizer resizes to, so nothing is upsampled (a size
    // the renderer does not take falls back to data v2's 112 px, which the tokenizer resizes).
    let look = crate::data::render::Look {
        frame_size: crate::data::render::check_frame_size(tok.video.resize_shorter)
            .unwrap_or(crate::data::render::SIZE),
        styles: 0.0,
    };
    let mut clips: Vec<Clip> = Vec::with_capacity(count);
    for (i, &class) in plan.iter().enumerate() {
        let (id, r) = render_clip(sources, palette, seed, DataSplit::Train, i, class, &look)?;
        // As written to and read back from a 16-bit WAV.
        let samples: Vec<f32> = r
            .audio
            .iter()
            .map(|s| (s.clamp(-1.0, 1.0) * 32767.0).round() / 32768.0)
            .collect();
        let id = format!("fresh{}-{id}", epoch + 1);
        let label = labels.iter().position(|l| l == class.name()).unwrap_or(0);
        clips.push(clip_from_signals(
            id, label, &r.params, &samples, RATE, r.frames, labels, &audio,
        )?);
    }
    Ok(Split {
        name: format!("fresh train (epoch {})", epoch + 1),
        clips,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_get_distinct_reproducible_seeds() {
        let a: Vec<u64> = (0..50).map(|e| epoch_seed(3, e)).collect();
        let b: Vec<u64> = (0..50).map(|e| epoch_seed(3, e)).collect();
        assert_eq!(a, b);
        let mut s = a.clone();
        s.sort_unstable();
        s.dedup();
        assert_eq!(s.len(), a.len());
        assert_ne!(epoch_seed(3, 1), epoch_seed(4, 1));
    }
}
