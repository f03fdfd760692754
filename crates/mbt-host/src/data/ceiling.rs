//! `mbt data ceiling`: how well could a perfect audio-only, video-only or joint classifier do?
//!
//! Monte-Carlo from the generator itself ([`Scene::sample`]): each "perfect" classifier sees
//! everything its modality carries about the label (the kinds heard, or seen; for doors the
//! received level, or the apparent distance, in 0.5 dB steps) and nothing else. Its best rule
//! is the Bayes rule, estimated by counting classes per observation on one set of scenes and
//! scored on a second, independent set, so the estimate is honest (it cannot memorise).

use std::collections::HashMap;

use super::pool::Kind;
use super::rng::Rng;
use super::spec::{attenuation_db, Class, Palette, Scene};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum View {
    Audio,
    Video,
    Joint,
}

fn kind_code(k: Kind) -> i32 {
    k as i32
}

/// What a perfect classifier of `view` observes, as a hashable key: the kinds heard (with a
/// door's received level) or the kinds seen (with a door's distance attenuation), in 0.5 dB
/// steps. The joint view keeps what both together say about the label: the event kinds both
/// heard and seen, and for a door heard and seen its source level (received level +
/// attenuation). That is all the label depends on (`Scene::label_from_observation`), and a key
/// of everything heard and seen would have so many rare values (ten kinds, zero to two of each
/// modality, door levels) that the counting estimate, not the task, would make the errors.
fn observe(s: &Scene, view: View) -> Vec<i32> {
    let bin = |db: f64| (db * 2.0).floor() as i32;
    let heard_door = s.sounds.iter().find(|x| x.kind == Kind::Door);
    let seen_door = s.objects.iter().find(|o| o.kind == Kind::Door);
    let mut heard: Vec<i32> = s.sounds.iter().map(|x| kind_code(x.kind)).collect();
    let mut seen: Vec<i32> = s.objects.iter().map(|o| kind_code(o.kind) + 100).collect();
    heard.sort();
    seen.sort();
    let mut key = Vec::with_capacity(6);
    match view {
        View::Audio => {
            key.extend(heard);
            key.push(heard_door.map_or(i32::MIN, |d| bin(d.level_db)));
        }
        View::Video => {
            key.extend(seen);
            key.push(seen_door.map_or(i32::MIN, |o| bin(attenuation_db(o.distance))));
        }
        View::Joint => {
            let mut both: Vec<i32> = s
                .sounds
                .iter()
                .filter(|x| x.kind != Kind::Other && s.objects.iter().any(|o| o.kind == x.kind))
                .map(|x| kind_code(x.kind))
                .collect();
            both.sort();
            both.dedup();
            key.extend(both);
            key.push(match (heard_door, seen_door) {
                (Some(d), Some(o)) => bin(d.level_db + attenuation_db(o.distance)),
                _ => i32::MIN,
            });
        }
    }
    key
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Ceiling {
    pub samples: usize,
    pub seed: u64,
    pub audio_only: f64,
    pub video_only: f64,
    pub joint: f64,
    pub chance: f64,
}

fn scenes(seed: u64, purpose: u64, n: usize) -> Vec<Scene> {
    let mut rng = Rng::new(seed, &[0xCE11, purpose]);
    let palette = Palette::full();
    (0..n)
        .map(|i| Scene::sample(&mut rng, Class::ALL[i % Class::ALL.len()], &palette))
        .collect()
}

fn accuracy(fit: &[Scene], score: &[Scene], view: View) -> f64 {
    const N: usize = Class::ALL.len();
    let mut table: HashMap<Vec<i32>, [u32; N]> = HashMap::new();
    for s in fit {
        table.entry(observe(s, view)).or_insert([0; N])[s.class.index()] += 1;
    }
    let argmax = |c: &[u32; N]| {
        (0..N)
            .max_by_key(|&i| (c[i], std::cmp::Reverse(i)))
            .unwrap_or(0)
    };
    let correct = score
        .iter()
        .filter(|s| {
            let pred = table
                .get(&observe(s, view))
                .map_or(Class::None.index(), argmax);
            pred == s.class.index()
        })
        .count();
    correct as f64 / score.len().max(1) as f64
}

/// Estimates the three ceilings from `samples` fitted and `samples` scored scenes.
pub fn estimate(samples: usize, seed: u64) -> Ceiling {
    let fit = scenes(seed, 1, samples);
    let score = scenes(seed, 2, samples);
    Ceiling {
        samples,
        seed,
        audio_only: accuracy(&fit, &score, View::Audio),
        video_only: accuracy(&fit, &score, View::Video),
        joint: accuracy(&fit, &score, View::Joint),
        chance: 1.0 / Class::ALL.len() as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_are_within_the_design_bounds() {
        let c = estimate(60_000, 1);
        eprintln!("{c:?}");
        // Fusion must matter: a perfect single-modality classifier stays at or under 60 %.
        assert!(c.audio_only <= 0.60, "{c:?}");
        assert!(c.video_only <= 0.60, "{c:?}");
        assert!(c.joint >= 0.995, "{c:?}");
        // Each modality still carries information: well above chance (10 %).
        assert!(c.audio_only > 0.25 && c.video_only > 0.25, "{c:?}");
    }
}
