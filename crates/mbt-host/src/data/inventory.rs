//! `mbt data pool`: what a loaded pool holds per kind and split, and the checks that keep the
//! test split honest.
//!
//! Counts are by content (sha256 of the file, or of the icon's SVG), never by name: the same
//! file ships in more than one package, and a recording counted twice would inflate the pool
//! and could leak from train into test. Pictures are split by set (one artist or design), so
//! the test asks for an unseen artist's dog: no set may serve both train and test.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Result};
use serde::Serialize;

use super::pool::{Kind, Role, Split};
use super::sources::Sources;

/// What one kind has in one split.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Cell {
    /// Distinct recordings (by content).
    pub recordings: usize,
    /// Distinct pictures (by content).
    pub pictures: usize,
    /// Picture sets.
    pub sets: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Inventory {
    /// kind -> split -> counts.
    pub cells: BTreeMap<String, BTreeMap<String, Cell>>,
    /// Backgrounds per split.
    pub backgrounds: BTreeMap<String, usize>,
    /// Licences -> number of files.
    pub licences: BTreeMap<String, usize>,
    /// Total seconds of recordings.
    pub sound_seconds: f64,
}

/// The minimum a kind must have per split for the default pool (issue "data v2"): where the
/// registries hold fewer, the pool takes all there are and the data card says so.
#[derive(Debug, Clone, Copy)]
pub struct Targets {
    pub train_recordings: usize,
    pub test_recordings: usize,
    pub train_sets: usize,
    pub test_sets: usize,
}

pub const TARGETS: Targets = Targets {
    train_recordings: 15,
    test_recordings: 3,
    train_sets: 6,
    test_sets: 2,
};

impl Inventory {
    /// Counts the loaded sources and checks them: content shared between splits (a file in
    /// train and test under two names), picture sets shared between train and test, and event
    /// kinds with no sound or no picture in a split are errors.
    pub fn of(sources: &Sources) -> Result<Inventory> {
        // content -> splits, set -> splits (pictures), per kind.
        let mut content_splits: BTreeMap<&str, (BTreeSet<Split>, &str)> = BTreeMap::new();
        let mut set_splits: BTreeMap<(Kind, &str), BTreeSet<Split>> = BTreeMap::new();
        type Acc<'a> = (BTreeSet<&'a str>, BTreeSet<&'a str>, BTreeSet<&'a str>);
        let mut acc: BTreeMap<(Kind, Split), Acc> = BTreeMap::new();
        let mut backgrounds: BTreeMap<String, usize> = BTreeMap::new();
        let mut licences: BTreeMap<String, usize> = BTreeMap::new();
        let mut sound_seconds = 0.0;
        for info in &sources.infos {
            let e = content_splits
                .entry(info.content.as_str())
                .or_insert((BTreeSet::new(), info.id.as_str()));
            e.0.extend(info.splits.iter().copied());
            *licences.entry(info.licence.clone()).or_default() += 1;
            sound_seconds += info.seconds.unwrap_or(0.0);
            for &sp in &info.splits {
                match info.role {
                    Role::Sound => {
                        acc.entry((info.kind, sp))
                            .or_default()
                            .0
                            .insert(&info.content);
                    }
                    Role::Object => {
                        let a = acc.entry((info.kind, sp)).or_default();
                        a.1.insert(&info.content);
                        a.2.insert(&info.set);
                        set_splits
                            .entry((info.kind, info.set.as_str()))
                            .or_default()
                            .insert(sp);
                    }
                    Role::Background => {
                        *backgrounds.entry(sp.name().to_string()).or_default() += 1;
                    }
                }
            }
        }
        for (content, (splits, id)) in &content_splits {
            if splits.contains(&Split::Test) && splits.len() > 1 {
                let ids: Vec<&str> = sources
                    .infos
                    .iter()
                    .filter(|i| i.content == *content)
                    .map(|i| i.id.as_str())
                    .collect();
                bail!(
                    "{id}: the same content (sha256 {}) serves the test split and another: {ids:?}",
                    &content[..12]
                );
            }
        }
        for ((kind, set), splits) in &set_splits {
            if splits.contains(&Split::Test) && splits.contains(&Split::Train) {
                bail!(
                    "picture set `{set}` has {} pictures in both the train and the test split: \
                     split pictures by set",
                    kind.name()
                );
            }
        }
        let mut cells: BTreeMap<String, BTreeMap<String, Cell>> = BTreeMap::new();
        for kind in Kind::ALL {
            let row = cells.entry(kind.name().to_string()).or_default();
            for sp in Split::ALL {
                let a = acc.get(&(kind, sp));
                row.insert(
                    sp.name().to_string(),
                    Cell {
                        recordings: a.map_or(0, |a| a.0.len()),
                        pictures: a.map_or(0, |a| a.1.len()),
                        sets: a.map_or(0, |a| a.2.len()),
                    },
                );
            }
        }
        let inv = Inventory {
            cells,
            backgrounds,
            licences,
            sound_seconds,
        };
        for kind in Kind::EVENTS {
            let present = Split::ALL
                .iter()
                .any(|sp| *inv.cell(kind, *sp) != Cell::default());
            if !present {
                continue; // the pool does not cover this kind at all: it is simply not a class
            }
            for sp in Split::ALL {
                let c = inv.cell(kind, sp);
                if c.recordings == 0 || c.pictures == 0 {
                    bail!(
                        "kind `{}` has {} recordings and {} pictures in the {} split: every split \
                         needs both",
                        kind.name(),
                        c.recordings,
                        c.pictures,
                        sp.name()
                    );
                }
            }
        }
        for sp in Split::ALL {
            if inv.backgrounds.get(sp.name()).copied().unwrap_or(0) == 0 {
                bail!(
                    "the pool has no background picture for the {} split",
                    sp.name()
                );
            }
        }
        Ok(inv)
    }

    pub fn cell(&self, kind: Kind, split: Split) -> &Cell {
        static EMPTY: Cell = Cell {
            recordings: 0,
            pictures: 0,
            sets: 0,
        };
        self.cells
            .get(kind.name())
            .and_then(|r| r.get(split.name()))
            .unwrap_or(&EMPTY)
    }

    /// Where an event kind falls short of `t`: (kind, what, have, want).
    pub fn shortfalls(&self, t: Targets) -> Vec<(Kind, &'static str, usize, usize)> {
        let mut out = Vec::new();
        for kind in Kind::EVENTS {
            let (tr, te) = (self.cell(kind, Split::Train), self.cell(kind, Split::Test));
            for (what, have, want) in [
                ("train recordings", tr.recordings, t.train_recordings),
                ("test recordings", te.recordings, t.test_recordings),
                ("train picture sets", tr.sets, t.train_sets),
                ("test picture sets", te.sets, t.test_sets),
            ] {
                if have < want {
                    out.push((kind, what, have, want));
                }
            }
        }
        out
    }

    /// The table `mbt data pool` prints.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{:<10} {:>22} {:>22} {:>22}\n{:<10} {:>22} {:>22} {:>22}\n",
            "kind",
            "train",
            "val",
            "test",
            "",
            "rec / pics / sets",
            "rec / pics / sets",
            "rec / pics / sets"
        );
        for kind in Kind::ALL {
            s += &format!("{:<10}", kind.name());
            for sp in Split::ALL {
                let c = self.cell(kind, sp);
                s += &format!(
                    " {:>22}",
                    format!("{} / {} / {}", c.recordings, c.pictures, c.sets)
                );
            }
            s += "\n";
        }
        s += &format!(
            "{:<10} {:>22} {:>22} {:>22}\n",
            "background",
            self.backgrounds.get("train").copied().unwrap_or(0),
            self.backgrounds.get("val").copied().unwrap_or(0),
            self.backgrounds.get("test").copied().unwrap_or(0)
        );
        s
    }
}
