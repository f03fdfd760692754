//! The generator's latent scene: which kinds are heard and seen, and the door physics.
//!
//! This is the part of AVE-Intersect that decides labels, kept pure (no media) so that the
//! label logic is unit-tested directly and `mbt data ceiling` can sample millions of scenes.
//!
//! A clip has two sounds and two visible objects. For an event class of kind `k`, one sound and
//! one object are `k` (the object makes the sound); the other sound is an off-screen distractor
//! and the other object a silent distractor, of different kinds, so the intersection of heard
//! and seen kinds is exactly `{k}`. A `none` clip draws its sounds and its objects like an event
//! clip would for one modality (chosen at random), and kinds disjoint from those for the other,
//! so no event kind is both heard and seen.
//! Either modality alone therefore sees two candidate kinds and cannot tell which one (if any)
//! is the label.
//!
//! Doors: a slammed door is louder at the source than a soft one (0..-2.5 dB vs -7.5..-10 dB), and
//! both are seen and heard from a distance `d` drawn log-uniformly in [1, 10] for both classes.
//! The received level is `source - 20 log10 d` and the object's on-screen height is
//! `DOOR_NEAR_PX / d`. Received levels of the two classes overlap over most of their range, the
//! distance distribution is the same for both, and only level and size together recover the
//! source level (with a 5 dB gap between the classes).

use super::manifest::Kind;
use super::rng::Rng;

/// The six labels, in the order of the model's output.
pub use mbt_core::AVE_CLASSES as CLASSES;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    DogBarking,
    GlassBreaking,
    PersonSpeaking,
    DoorSlammed,
    DoorClosedSoftly,
    None,
}

impl Class {
    pub const ALL: [Class; 6] = [
        Class::DogBarking,
        Class::GlassBreaking,
        Class::PersonSpeaking,
        Class::DoorSlammed,
        Class::DoorClosedSoftly,
        Class::None,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        CLASSES[self.index()]
    }

    /// The event kind of this class (`None` for `none`).
    pub fn kind(self) -> Option<Kind> {
        match self {
            Class::DogBarking => Some(Kind::Dog),
            Class::GlassBreaking => Some(Kind::Glass),
            Class::PersonSpeaking => Some(Kind::Speech),
            Class::DoorSlammed | Class::DoorClosedSoftly => Some(Kind::Door),
            Class::None => None,
        }
    }
}

/// Source level of a slammed / soft door (dB relative to the reference level).
pub const SLAM_SOURCE_DB: (f64, f64) = (-2.5, 0.0);
pub const SOFT_SOURCE_DB: (f64, f64) = (-10.0, -7.5);
/// Distance range (log-uniform), shared by all objects and all doors.
pub const DISTANCE: (f64, f64) = (1.0, 10.0);
/// Received level range of sounds that are not doors.
pub const OTHER_LEVEL_DB: (f64, f64) = (-18.0, 0.0);
/// On-screen height in pixels of an object at distance 1 (frames are 112 px high).
pub const NEAR_PX: f64 = 96.0;

/// One sound source of a scene.
#[derive(Debug, Clone, PartialEq)]
pub struct Sound {
    pub kind: Kind,
    /// Whether the sound's source is one of the visible objects (the label's sound).
    pub on_screen: bool,
    /// Level at the microphone, dB relative to the reference level.
    pub level_db: f64,
    /// For doors: the source level (slam or soft) and the distance.
    pub door: Option<Door>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Door {
    pub slammed: bool,
    pub source_db: f64,
    pub distance: f64,
}

/// One visible object of a scene.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    pub kind: Kind,
    /// Whether this object is making one of the sounds.
    pub sounding: bool,
    pub distance: f64,
}

/// The latent scene: everything the label depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    pub class: Class,
    pub sounds: [Sound; 2],
    pub objects: [Object; 2],
}

fn distance(rng: &mut Rng) -> f64 {
    (rng.range(DISTANCE.0.ln(), DISTANCE.1.ln())).exp()
}

pub fn attenuation_db(distance: f64) -> f64 {
    20.0 * distance.log10()
}

fn door(rng: &mut Rng, slammed: bool, d: f64) -> Door {
    let (lo, hi) = if slammed {
        SLAM_SOURCE_DB
    } else {
        SOFT_SOURCE_DB
    };
    Door {
        slammed,
        source_db: rng.range(lo, hi),
        distance: d,
    }
}

fn sound(rng: &mut Rng, kind: Kind, on_screen: bool, door_state: Option<Door>) -> Sound {
    match kind {
        Kind::Door => {
            let dr = door_state.unwrap_or_else(|| {
                let slammed = rng.chance(0.5);
                let d = distance(rng);
                door(rng, slammed, d)
            });
            Sound {
                kind,
                on_screen,
                level_db: dr.source_db - attenuation_db(dr.distance),
                door: Some(dr),
            }
        }
        _ => Sound {
            kind,
            on_screen,
            level_db: rng.range(OTHER_LEVEL_DB.0, OTHER_LEVEL_DB.1),
            door: None,
        },
    }
}

/// Probability that a distractor is an `other` kind (neither a label nor confusable with one).
/// Kept low: an `other` distractor tells a single modality that its remaining kind is the
/// candidate, which raises the single-modality ceilings (see `ceiling`).
pub const P_OTHER: f64 = 0.1;

/// A distractor kind: with probability [`P_OTHER`] `Other`, else an event kind not in `taken`
/// (uniformly; `Other` when none is left).
fn distractor(rng: &mut Rng, taken: &[Kind]) -> Kind {
    let options: Vec<Kind> = Kind::EVENTS
        .iter()
        .copied()
        .filter(|k| !taken.contains(k))
        .collect();
    if options.is_empty() || rng.chance(P_OTHER) {
        Kind::Other
    } else {
        *rng.pick(&options)
    }
}

/// The kinds an event clip of a random event class would hear (or see): used by `none` clips
/// so that one of their modalities looks exactly like an event clip's.
fn event_like_pair(rng: &mut Rng) -> (Kind, Kind) {
    let class = Class::ALL[rng.below(5)];
    let k = class.kind().unwrap_or(Kind::Other);
    let x = distractor(rng, &[k]);
    (k, x)
}

impl Scene {
    /// Draws the scene of a clip of class `class`.
    pub fn sample(rng: &mut Rng, class: Class) -> Scene {
        match class.kind() {
            Some(k) => {
                let x = distractor(rng, &[k]);
                let z = distractor(rng, &[k, x]);
                let d = distance(rng);
                let shared_door =
                    (k == Kind::Door).then(|| door(rng, class == Class::DoorSlammed, d));
                let s0 = sound(rng, k, true, shared_door);
                let s1 = sound(rng, x, false, None);
                let o0 = Object {
                    kind: k,
                    sounding: true,
                    distance: d,
                };
                let o1 = Object {
                    kind: z,
                    sounding: false,
                    distance: distance(rng),
                };
                // Which slot holds the labelled pair is random, so position means nothing.
                let mut sounds = [s0, s1];
                let mut objects = [o0, o1];
                if rng.chance(0.5) {
                    sounds.swap(0, 1);
                }
                if rng.chance(0.5) {
                    objects.swap(0, 1);
                }
                Scene {
                    class,
                    sounds,
                    objects,
                }
            }
            None => {
                // One modality (chosen at random) looks exactly like an event clip's; the
                // other holds kinds disjoint from it, so nothing is both heard and seen.
                let audio_first = rng.chance(0.5);
                let (p, q) = event_like_pair(rng);
                let r = distractor(rng, &[p, q]);
                let t = distractor(rng, &[p, q, r]);
                let (heard, seen) = if audio_first {
                    ([p, q], [r, t])
                } else {
                    ([r, t], [p, q])
                };
                let mut sounds = heard.map(|k| sound(rng, k, false, None));
                let mut objects = seen.map(|k| Object {
                    kind: k,
                    sounding: false,
                    distance: distance(rng),
                });
                if rng.chance(0.5) {
                    sounds.swap(0, 1);
                }
                if rng.chance(0.5) {
                    objects.swap(0, 1);
                }
                Scene {
                    class: Class::None,
                    sounds,
                    objects,
                }
            }
        }
    }

    /// The label a perfect observer of both modalities gives this scene, derived from what is
    /// heard and seen only (not from `self.class`): the event kind both heard and seen, and for
    /// doors the source level recovered from received level plus distance attenuation.
    pub fn label_from_observation(&self) -> Class {
        for s in &self.sounds {
            if s.kind == Kind::Other {
                continue;
            }
            for o in &self.objects {
                if o.kind != s.kind {
                    continue;
                }
                return match s.kind {
                    Kind::Dog => Class::DogBarking,
                    Kind::Glass => Class::GlassBreaking,
                    Kind::Speech => Class::PersonSpeaking,
                    Kind::Door => {
                        let source = s.level_db + attenuation_db(o.distance);
                        if source > (SLAM_SOURCE_DB.0 + SOFT_SOURCE_DB.1) / 2.0 {
                            Class::DoorSlammed
                        } else {
                            Class::DoorClosedSoftly
                        }
                    }
                    Kind::Other => Class::None,
                };
            }
        }
        Class::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(s: &Scene) -> ([Kind; 2], [Kind; 2]) {
        (
            [s.sounds[0].kind, s.sounds[1].kind],
            [s.objects[0].kind, s.objects[1].kind],
        )
    }

    #[test]
    fn the_label_is_the_kind_both_heard_and_seen() {
        let mut rng = Rng::new(3, &[]);
        for i in 0..20_000 {
            let class = Class::ALL[i % 6];
            let s = Scene::sample(&mut rng, class);
            let (heard, seen) = kinds(&s);
            let both: Vec<Kind> = heard
                .iter()
                .copied()
                .filter(|k| *k != Kind::Other && seen.contains(k))
                .collect();
            match class.kind() {
                Some(k) => {
                    assert_eq!(both, vec![k], "{s:?}");
                    // Distractors: exactly one off-screen sound and one silent object.
                    assert_eq!(s.sounds.iter().filter(|x| !x.on_screen).count(), 1);
                    assert_eq!(s.objects.iter().filter(|o| !o.sounding).count(), 1);
                    assert_ne!(heard[0], heard[1]);
                    assert_ne!(seen[0], seen[1]);
                }
                None => assert!(both.is_empty(), "{s:?}"),
            }
            assert_eq!(s.label_from_observation(), class, "{s:?}");
        }
    }

    #[test]
    fn doors_need_both_level_and_distance() {
        let mut rng = Rng::new(4, &[]);
        let (mut slam_levels, mut soft_levels) = (Vec::new(), Vec::new());
        for _ in 0..5_000 {
            for (class, out) in [
                (Class::DoorSlammed, &mut slam_levels),
                (Class::DoorClosedSoftly, &mut soft_levels),
            ] {
                let s = Scene::sample(&mut rng, class);
                let snd = s.sounds.iter().find(|x| x.on_screen).unwrap();
                out.push(snd.level_db);
            }
        }
        // Received levels overlap: loudness alone cannot separate the two classes ...
        let soft_max = soft_levels.iter().cloned().fold(f64::MIN, f64::max);
        let overlap = slam_levels.iter().filter(|l| **l < soft_max).count();
        assert!(overlap > slam_levels.len() / 3, "{overlap}");
        // ... and the distance distribution is the same for both by construction.
    }
}
