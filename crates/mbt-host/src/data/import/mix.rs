//! Audio-only and picture-only material: the user's recordings and pictures mixed into scenes
//! rendered exactly as `mbt data build` renders its own (same scene sampler, renderer and DSP:
//! backgrounds, distractors, pitch, EQ, reverb, noise, placement, drift).
//!
//! Each user file is an *anchor*: it is rendered `--renders` times, each clip with its own
//! seeded stream. The anchor's file takes the place of the pool's media of its label's kind,
//! and its other modality is drawn from, in this order: the user's files of the same label in
//! the same split (a dog's bark with a picture of that dog), the pool's media of that kind in
//! that split (the bark with some dog), or the user's files of the label from another split
//! (a new label with one picture: the picture then serves every split, and a warning says that
//! the validation and test clips share it). A new label (one the pool has no kind for) takes
//! the slot of an event kind for rendering and gets its own name back in the clip's parameters.
//! A file labelled `none` is rendered as what it is not: a sound from off-screen, or an object
//! that makes no sound, in an otherwise quiet scene.

use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use serde_json::Value;

use super::super::pool::{Kind, Role, Split};
use super::super::render::{self, Rendered};
use super::super::rng::Rng;
use super::super::sources::{Image, Sound, Sources};
use super::super::spec::{Class, Object, Palette, Scene, DISTANCE, OTHER_LEVEL_DB};

/// What a user file holds, decoded.
pub enum Media {
    /// 16 kHz mono.
    Sound(Vec<f32>),
    /// Pictures (one for a picture file, several for a silent video's stills).
    Pictures(Vec<Image>),
}

/// One user file to render scenes around.
pub struct Anchor {
    /// Index of the item (keys the random streams).
    pub item: usize,
    pub name: String,
    pub label: String,
    pub split: Split,
    pub media: Media,
}

/// A rendered clip of an anchor.
pub struct Mixed<'a> {
    pub anchor: &'a Anchor,
    pub index: usize,
    pub rendered: Rendered,
}

fn role_of(m: &Media) -> Role {
    match m {
        Media::Sound(_) => Role::Sound,
        Media::Pictures(_) => Role::Object,
    }
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Sound => "sounds",
        _ => "pictures",
    }
}

/// The class a label renders as, and the kind slot its media take.
fn class_and_slot(label: &str) -> (Class, Kind) {
    if label == "none" {
        return (Class::None, Kind::Other);
    }
    match Class::ALL.into_iter().find(|c| c.name() == label) {
        Some(c) => (c, c.kind().unwrap_or(Kind::Other)),
        // A new label: a non-door event slot (doors carry their own loudness physics).
        None => (Class::DogBarking, Kind::Dog),
    }
}

/// A `none` scene around the anchor: its sound from off-screen, or its picture as an object
/// that makes no sound, nothing else of note.
fn none_scene(rng: &mut Rng, role: Role) -> Scene {
    let (sounds, objects) = if role == Role::Sound {
        let s = super::super::spec::Sound {
            kind: Kind::Other,
            on_screen: false,
            level_db: rng.range(OTHER_LEVEL_DB.0, OTHER_LEVEL_DB.1),
            door: None,
        };
        (vec![s], Vec::new())
    } else {
        let o = Object {
            kind: Kind::Other,
            sounding: false,
            distance: rng.range(DISTANCE.0.ln(), DISTANCE.1.ln()).exp(),
        };
        (Vec::new(), vec![o])
    };
    Scene {
        class: Class::None,
        layout: if role == Role::Sound {
            super::super::spec::Layout::OffscreenSounds
        } else {
            super::super::spec::Layout::SilentObjects
        },
        sounds,
        objects,
    }
}

/// Gives a new label's name back to the slot kind it was rendered in.
fn rename_slot(params: &mut Value, slot: Kind, label: &str) {
    let slot = slot.name();
    for (list, flag) in [("sounds", "on_screen"), ("objects", "sounding")] {
        let part = if list == "sounds" { "audio" } else { "video" };
        if let Some(v) = params[part][list].as_array_mut() {
            for x in v {
                if x["kind"] == slot && x[flag] == true {
                    x["kind"] = Value::from(label);
                }
            }
        }
    }
}

/// Renders `renders` clips per anchor and hands each to `emit` (which writes it and returns
/// its manifest line); returns the lines per anchor.
pub fn render_all<F>(
    src: &mut Sources,
    anchors: &[Anchor],
    renders: usize,
    seed: u64,
    look: &render::Look,
    emit: F,
) -> Result<Vec<Vec<String>>>
where
    F: Fn(&Mixed) -> Result<String> + Sync,
{
    let original = src.pools.clone();
    // The user's media join the loaded sources; `own[a]` indexes anchor a's.
    let mut own: Vec<Vec<usize>> = Vec::new();
    for a in anchors {
        let id = format!("import:{}", a.name);
        match &a.media {
            Media::Sound(samples) => {
                own.push(vec![src.sounds.len()]);
                src.sounds.push(Sound {
                    id,
                    samples: samples.clone(),
                });
            }
            Media::Pictures(pics) => {
                own.push((src.images.len()..src.images.len() + pics.len()).collect());
                src.images.extend(pics.iter().map(|p| Image {
                    id: id.clone(),
                    width: p.width,
                    height: p.height,
                    rgba: p.rgba.clone(),
                    has_alpha: p.has_alpha,
                }));
            }
        }
    }
    let mut warned = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for (ai, a) in anchors.iter().enumerate() {
        let (class, slot) = class_and_slot(&a.label);
        let role = role_of(&a.media);
        let other = if role == Role::Sound {
            Role::Object
        } else {
            Role::Sound
        };
        let mut pools = original.clone();
        pools.insert((a.split, role, slot), own[ai].clone());
        if class != Class::None {
            let user = |same_split: bool| -> Vec<usize> {
                anchors
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| {
                        b.label == a.label
                            && role_of(&b.media) == other
                            && (!same_split || b.split == a.split)
                    })
                    .flat_map(|(bi, _)| own[bi].clone())
                    .collect()
            };
            let same = user(true);
            let builtin = Class::ALL.iter().any(|c| c.name() == a.label);
            let pool_has = builtin
                && original
                    .get(&(a.split, other, slot))
                    .is_some_and(|v| !v.is_empty());
            let counterpart = if !same.is_empty() {
                same
            } else if pool_has {
                original[&(a.split, other, slot)].clone()
            } else {
                let any = user(false);
                if any.is_empty() {
                    bail!(
                        "{}: label `{}` has {} but no {} to pair them with, and the source pool \
                         has none of that kind for the {} split; add {} of `{}` (e.g. in the \
                         label's folder)",
                        a.name,
                        a.label,
                        role_name(role),
                        role_name(other),
                        a.split.name(),
                        role_name(other),
                        a.label
                    );
                }
                if warned.insert((a.label.clone(), a.split)) {
                    eprintln!(
                        "mbt data import: warning: label `{}` has no {} in the {} split: its {} \
                         clips use {} from other splits, so they do not measure those on unseen ones",
                        a.label,
                        role_name(other),
                        a.split.name(),
                        a.split.name(),
                        role_name(other)
                    );
                }
                any
            };
            pools.insert((a.split, other, slot), counterpart);
        }
        src.pools = pools;
        let palette = Palette {
            kinds: Kind::EVENTS
                .into_iter()
                .filter(|&k| {
                    k == slot
                        || (src.has(a.split, Role::Sound, k) && src.has(a.split, Role::Object, k))
                })
                .collect(),
        };
        let shared: &Sources = src;
        let lines = (0..renders)
            .into_par_iter()
            .map(|r| -> Result<String> {
                let mut rng = Rng::new(seed, &[0x1A9057, a.item as u64, r as u64]);
                let scene = if class == Class::None {
                    none_scene(&mut rng, role)
                } else {
                    Scene::sample(&mut rng, class, &palette)
                };
                anyhow::ensure!(
                    scene.label_from_observation() == class,
                    "internal error: {}: a rendered scene does not show its label",
                    a.name
                );
                let mut rendered = render::render(&mut rng, &scene, shared, a.split, look)
                    .with_context(|| format!("{}: rendering scenes around it", a.name))?;
                if Class::ALL.iter().all(|c| c.name() != a.label) {
                    rename_slot(&mut rendered.params, slot, &a.label);
                }
                emit(&Mixed {
                    anchor: a,
                    index: r,
                    rendered,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        out.push(lines);
    }
    src.pools = original;
    Ok(out)
}
