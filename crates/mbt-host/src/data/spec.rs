//! The generator's latent scene: which kinds are heard and seen, and the door physics.
//!
//! This is the part of AVE-Intersect that decides labels, kept pure (no media) so that the
//! label logic is unit-tested directly and `mbt data ceiling` can sample millions of scenes.
//!
//! An *intersection* clip has two sounds and two visible objects. For an event class of kind
//! `k`, one sound and one object are `k` (the object makes the sound); the other sound is an
//! off-screen distractor and the other object a silent distractor, of different kinds, so the
//! intersection of heard and seen kinds is exactly `{k}`. A `none` intersection draws its sounds
//! and its objects like an event clip would for one modality (chosen at random), and kinds
//! disjoint from those for the other, so no event kind is both heard and seen. Either modality
//! alone therefore sees two candidate kinds and cannot tell which one (if any) is the label.
//!
//! The simpler scenes a camera really meets are mixed in ([`Layout`], [`EVENT_MIX`],
//! [`NONE_MIX`]): one sound with its visible source (an event), one sound with an object of
//! another kind, objects that make no sound, sounds from off-screen, a quiet room (all `none`).
//! A lone sound or object stays ambiguous to one modality: it may be an event's pair or a
//! `none` scene that holds it alone.
//!
//! Doors: a slammed door is louder at the source than a soft one (0..-2.5 dB vs -7.5..-10 dB), and
//! both are seen and heard from a distance `d` drawn log-uniformly in [1, 10] for both classes.
//! The received level is `source - 20 log10 d` and the object's on-screen height is
//! `DOOR_NEAR_PX / d`. Received levels of the two classes overlap over most of their range, the
//! distance distribution is the same for both, and only level and size together recover the
//! source level (with a 5 dB gap between the classes).

use super::pool::Kind;
use super::rng::Rng;

/// The labels, in the order of the model's output.
pub use mbt_core::AVE_CLASSES as CLASSES;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    DogBarking,
    GlassBreaking,
    PersonSpeaking,
    DoorSlammed,
    DoorClosedSoftly,
    AlarmRinging,
    CarHorn,
    CatMeowing,
    Footsteps,
    None,
}

impl Class {
    pub const ALL: [Class; 10] = [
        Class::DogBarking,
        Class::GlassBreaking,
        Class::PersonSpeaking,
        Class::DoorSlammed,
        Class::DoorClosedSoftly,
        Class::AlarmRinging,
        Class::CarHorn,
        Class::CatMeowing,
        Class::Footsteps,
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
            Class::AlarmRinging => Some(Kind::Alarm),
            Class::CarHorn => Some(Kind::CarHorn),
            Class::CatMeowing => Some(Kind::Cat),
            Class::Footsteps => Some(Kind::Footsteps),
            Class::None => None,
        }
    }

    /// The classes a data set over these event kinds has: theirs, then `none`.
    pub fn of_kinds(kinds: &[Kind]) -> Vec<Class> {
        Class::ALL
            .into_iter()
            .filter(|c| c.kind().is_none_or(|k| kinds.contains(&k)))
            .collect()
    }

    /// The labels a kind could make when it is both heard and seen (a door: slammed or soft).
    pub fn labels_of_kind(kind: &str) -> Vec<&'static str> {
        Class::ALL
            .into_iter()
            .filter(|c| c.kind().is_some_and(|k| k.name() == kind))
            .map(Class::name)
            .collect()
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

/// How a scene is composed: what a camera with a microphone really meets, from the
/// two-sources/two-objects intersection down to a quiet room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layout {
    /// Two sounds and two objects; the label is the one kind both heard and seen (or none).
    Intersection,
    /// One sound and its visible source (an event).
    Pair,
    /// An event's pair and another sound from off-screen.
    PairOffscreenSound,
    /// An event's pair and another object that makes no sound.
    PairSilentObject,
    /// One sound and one object of another kind (none).
    Mismatch,
    /// Objects in view that make no sound (none).
    SilentObjects,
    /// Sounds from off-screen, nothing of note in view (none).
    OffscreenSounds,
    /// A quiet room: background noise only (none).
    Quiet,
}

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Layout::Intersection => "intersection",
            Layout::Pair => "pair",
            Layout::PairOffscreenSound => "pair_offscreen_sound",
            Layout::PairSilentObject => "pair_silent_object",
            Layout::Mismatch => "mismatch",
            Layout::SilentObjects => "silent_objects",
            Layout::OffscreenSounds => "offscreen_sounds",
            Layout::Quiet => "quiet",
        }
    }
}

/// The scene mix. Event clips: an intersection, a single pair, or a pair with one distractor
/// (a sound from off-screen, or a silent object). `none` clips: an intersection with nothing in
/// common, or one of the simpler scenes. These shares set the single-modality ceilings
/// (`mbt data ceiling`, DATA.md): a modality that meets two candidate kinds cannot tell which
/// one is the event, while a lone sound or object (a pair) gives the event away to it; the
/// shares keep each perfect single-modality classifier at or under 60 %.
pub const EVENT_MIX: [(Layout, f64); 4] = [
    (Layout::Intersection, 0.55),
    (Layout::Pair, 0.1),
    // Fewer silent-object pairs than off-screen-sound ones: a lone sound gives the event away
    // to audio, which also hears a door's loudness, so audio would otherwise lead.
    (Layout::PairOffscreenSound, 0.225),
    (Layout::PairSilentObject, 0.125),
];
pub const NONE_MIX: [(Layout, f64); 5] = [
    (Layout::Intersection, 0.4),
    (Layout::Mismatch, 0.2),
    (Layout::SilentObjects, 0.15),
    (Layout::OffscreenSounds, 0.15),
    (Layout::Quiet, 0.1),
];

/// The latent scene: everything the label depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    pub class: Class,
    pub layout: Layout,
    /// 0 to 2 sounds.
    pub sounds: Vec<Sound>,
    /// 0 to 2 objects.
    pub objects: Vec<Object>,
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

fn silent(rng: &mut Rng, kind: Kind) -> Object {
    Object {
        kind,
        sounding: false,
        distance: distance(rng),
    }
}

/// Probability that a distractor is an `other` kind (neither a label nor confusable with one).
/// Kept low: an `other` distractor tells a single modality that its remaining kind is the
/// candidate, which raises the single-modality ceilings (see `ceiling`).
pub const P_OTHER: f64 = 0.1;

/// The event kinds a pool offers (the classes follow from them).
#[derive(Debug, Clone)]
pub struct Palette {
    pub kinds: Vec<Kind>,
}

impl Palette {
    /// Every event kind (the default pool has them all).
    pub fn full() -> Palette {
        Palette {
            kinds: Kind::EVENTS.to_vec(),
        }
    }

    pub fn classes(&self) -> Vec<Class> {
        Class::of_kinds(&self.kinds)
    }

    /// A distractor kind: with probability [`P_OTHER`] `Other`, else an event kind not in
    /// `taken` (uniformly; `Other` when none is left).
    fn distractor(&self, rng: &mut Rng, taken: &[Kind]) -> Kind {
        let options: Vec<Kind> = self
            .kinds
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

    /// The kinds an event clip of a random event class would hear (or see): used by `none`
    /// clips so that one of their modalities looks exactly like an event clip's.
    fn event_like_pair(&self, rng: &mut Rng) -> (Kind, Kind) {
        let events: Vec<Class> = self
            .classes()
            .into_iter()
            .filter(|c| *c != Class::None)
            .collect();
        let k = if events.is_empty() {
            Kind::Other
        } else {
            rng.pick(&events).kind().unwrap_or(Kind::Other)
        };
        let x = self.distractor(rng, &[k]);
        (k, x)
    }

    /// A kind as a lone sound or object would have it: an event kind like an event clip's
    /// (uniform over classes, so doors twice), else `Other` with probability [`P_OTHER`].
    fn lone_kind(&self, rng: &mut Rng) -> Kind {
        let (k, _) = self.event_like_pair(rng);
        if rng.chance(P_OTHER) {
            Kind::Other
        } else {
            k
        }
    }
}

fn pick_layout(rng: &mut Rng, mix: &[(Layout, f64)]) -> Layout {
    let mut u = rng.f64();
    for &(l, p) in mix {
        if u < p {
            return l;
        }
        u -= p;
    }
    mix[mix.len() - 1].0
}

impl Scene {
    /// Draws the scene of a clip of class `class` from the kinds of `palette`.
    pub fn sample(rng: &mut Rng, class: Class, palette: &Palette) -> Scene {
        let (layout, mut sounds, mut objects) = match class.kind() {
            Some(k) => {
                let layout = pick_layout(rng, &EVENT_MIX);
                let d = distance(rng);
                let shared_door =
                    (k == Kind::Door).then(|| door(rng, class == Class::DoorSlammed, d));
                let s0 = sound(rng, k, true, shared_door);
                let o0 = Object {
                    kind: k,
                    sounding: true,
                    distance: d,
                };
                let x = palette.distractor(rng, &[k]);
                let z = palette.distractor(rng, &[k, x]);
                let s1 = sound(rng, x, false, None);
                let o1 = silent(rng, z);
                match layout {
                    Layout::Pair => (layout, vec![s0], vec![o0]),
                    Layout::PairOffscreenSound => (layout, vec![s0, s1], vec![o0]),
                    Layout::PairSilentObject => (layout, vec![s0], vec![o0, o1]),
                    _ => (layout, vec![s0, s1], vec![o0, o1]),
                }
            }
            None => {
                let layout = pick_layout(rng, &NONE_MIX);
                match layout {
                    Layout::Mismatch => {
                        let a = palette.lone_kind(rng);
                        let b = palette.distractor(rng, &[a]);
                        let (heard, seen) = if rng.chance(0.5) { (a, b) } else { (b, a) };
                        let s = sound(rng, heard, false, None);
                        (layout, vec![s], vec![silent(rng, seen)])
                    }
                    Layout::SilentObjects => {
                        let a = palette.lone_kind(rng);
                        let mut objects = vec![silent(rng, a)];
                        if rng.chance(0.5) {
                            let b = palette.distractor(rng, &[a]);
                            objects.push(silent(rng, b));
                        }
                        (layout, Vec::new(), objects)
                    }
                    Layout::OffscreenSounds => {
                        let a = palette.lone_kind(rng);
                        let mut sounds = vec![sound(rng, a, false, None)];
                        if rng.chance(0.5) {
                            let b = palette.distractor(rng, &[a]);
                            sounds.push(sound(rng, b, false, None));
                        }
                        (layout, sounds, Vec::new())
                    }
                    Layout::Quiet => (layout, Vec::new(), Vec::new()),
                    _ => {
                        // One modality (chosen at random) looks exactly like an event clip's;
                        // the other holds kinds disjoint from it, so nothing is both heard and
                        // seen.
                        let audio_first = rng.chance(0.5);
                        let (p, q) = palette.event_like_pair(rng);
                        let r = palette.distractor(rng, &[p, q]);
                        let t = palette.distractor(rng, &[p, q, r]);
                        let (heard, seen) = if audio_first {
                            ([p, q], [r, t])
                        } else {
                            ([r, t], [p, q])
                        };
                        let sounds = heard.map(|k| sound(rng, k, false, None)).to_vec();
                        let objects = seen.map(|k| silent(rng, k)).to_vec();
                        (Layout::Intersection, sounds, objects)
                    }
                }
            }
        };
        // Which slot holds the labelled pair is random, so position means nothing.
        if sounds.len() == 2 && rng.chance(0.5) {
            sounds.swap(0, 1);
        }
        if objects.len() == 2 && rng.chance(0.5) {
            objects.swap(0, 1);
        }
        Scene {
            class,
            layout,
            sounds,
            objects,
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
                    Kind::Door => {
                        let source = s.level_db + attenuation_db(o.distance);
                        if source > (SLAM_SOURCE_DB.0 + SOFT_SOURCE_DB.1) / 2.0 {
                            Class::DoorSlammed
                        } else {
                            Class::DoorClosedSoftly
                        }
                    }
                    k => Class::ALL
                        .into_iter()
                        .find(|c| c.kind() == Some(k))
                        .unwrap_or(Class::None),
                };
            }
        }
        Class::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(s: &Scene) -> (Vec<Kind>, Vec<Kind>) {
        (
            s.sounds.iter().map(|x| x.kind).collect(),
            s.objects.iter().map(|o| o.kind).collect(),
        )
    }

    #[test]
    fn the_label_is_the_kind_both_heard_and_seen() {
        let mut rng = Rng::new(3, &[]);
        let palette = Palette::full();
        let mut layouts = std::collections::HashMap::new();
        for i in 0..40_000 {
            let class = Class::ALL[i % Class::ALL.len()];
            let s = Scene::sample(&mut rng, class, &palette);
            *layouts
                .entry((class == Class::None, s.layout))
                .or_insert(0usize) += 1;
            let (heard, seen) = kinds(&s);
            let both: Vec<Kind> = heard
                .iter()
                .copied()
                .filter(|k| *k != Kind::Other && seen.contains(k))
                .collect();
            match class.kind() {
                Some(k) => {
                    assert_eq!(both, vec![k], "{s:?}");
                    // Distractors: an off-screen sound and a silent object as the layout says.
                    let (ns, no) = match s.layout {
                        Layout::Pair => (0, 0),
                        Layout::PairOffscreenSound => (1, 0),
                        Layout::PairSilentObject => (0, 1),
                        _ => (1, 1),
                    };
                    assert_eq!(s.sounds.iter().filter(|x| !x.on_screen).count(), ns);
                    assert_eq!(s.objects.iter().filter(|o| !o.sounding).count(), no);
                    assert!(heard.len() < 2 || heard[0] != heard[1]);
                    assert!(seen.len() < 2 || seen[0] != seen[1]);
                }
                None => {
                    assert!(both.is_empty(), "{s:?}");
                    assert!(s.objects.iter().all(|o| !o.sounding));
                }
            }
            assert_eq!(s.label_from_observation(), class, "{s:?}");
            assert!(s.sounds.len() <= 2 && s.objects.len() <= 2);
        }
        // Every layout of the mix occurs, with its share (4,000 clips per class).
        for (none, mix) in [(false, &EVENT_MIX[..]), (true, &NONE_MIX[..])] {
            let total: usize = mix.iter().map(|(l, _)| layouts[&(none, *l)]).sum();
            for (l, p) in mix {
                let share = layouts[&(none, *l)] as f64 / total as f64;
                assert!((share - p).abs() < 0.03, "{l:?}: {share} vs {p}");
            }
        }
    }

    #[test]
    fn a_pool_without_some_kinds_draws_only_the_others() {
        let palette = Palette {
            kinds: vec![Kind::Dog, Kind::Door],
        };
        assert_eq!(
            palette.classes(),
            [
                Class::DogBarking,
                Class::DoorSlammed,
                Class::DoorClosedSoftly,
                Class::None
            ]
        );
        let mut rng = Rng::new(5, &[]);
        for i in 0..2_000 {
            let s = Scene::sample(&mut rng, palette.classes()[i % 4], &palette);
            for k in s
                .sounds
                .iter()
                .map(|x| x.kind)
                .chain(s.objects.iter().map(|o| o.kind))
            {
                assert!(matches!(k, Kind::Dog | Kind::Door | Kind::Other), "{s:?}");
            }
        }
        assert_eq!(
            Class::labels_of_kind("door"),
            ["door_slammed", "door_closed_softly"]
        );
        assert_eq!(Class::labels_of_kind("cat"), ["cat_meowing"]);
        assert!(Class::labels_of_kind("other").is_empty());
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
                let s = Scene::sample(&mut rng, class, &Palette::full());
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
