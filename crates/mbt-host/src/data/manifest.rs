//! The committed source manifest (`data/packages.toml`): which Debian packages, pinned by version
//! and sha256, and which media files inside them feed AVE-Intersect.
//!
//! One file on purpose: the pin, the checksum and the per-file split assignment are reviewed
//! together, and `fetch` extracts exactly what `build` will read.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// What a source file is to the generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Sound,
    Object,
    Background,
}

/// What a source shows or sounds like. `Other` files are distractors that are never a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Dog,
    Glass,
    Speech,
    Door,
    Other,
}

impl Kind {
    /// The kinds that can be a label (doors split further into slammed and soft).
    pub const EVENTS: [Kind; 4] = [Kind::Dog, Kind::Glass, Kind::Speech, Kind::Door];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Dog => "dog",
            Kind::Glass => "glass",
            Kind::Speech => "speech",
            Kind::Door => "door",
            Kind::Other => "other",
        }
    }
}

/// A data-set split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Split {
    Train,
    Val,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub sha256: String,
    /// Debian architecture of the .deb (`all` for these data packages).
    #[serde(default = "default_arch")]
    pub arch: String,
}

fn default_arch() -> String {
    "all".into()
}

impl Package {
    /// The file name `apt-get download` writes (an epoch's `:` is escaped as `%3a`).
    pub fn deb_file_name(&self) -> String {
        format!(
            "{}_{}_{}.deb",
            self.name,
            self.version.replace(':', "%3a"),
            self.arch
        )
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceEntry {
    pub package: String,
    /// One file inside the package ...
    pub path: Option<String>,
    /// ... or a shell-style pattern (`*` only) with the first `limit` matches in name order.
    pub glob: Option<String>,
    pub limit: Option<usize>,
    pub role: Role,
    pub kind: Kind,
    /// "train", "val", "test" or "train+val".
    pub split: String,
    /// Image region [x, y, w, h] to use.
    pub crop: Option<[u32; 4]>,
}

impl SourceEntry {
    pub fn splits(&self) -> Result<Vec<Split>> {
        Ok(match self.split.as_str() {
            "train" => vec![Split::Train],
            "val" => vec![Split::Val],
            "test" => vec![Split::Test],
            "train+val" => vec![Split::Train, Split::Val],
            other => bail!(
                "source {}: split `{other}`: expected \"train\", \"val\", \"test\" or \"train+val\"",
                self.label()
            ),
        })
    }

    /// The path or glob, for messages.
    pub fn label(&self) -> String {
        format!(
            "{}:{}",
            self.package,
            self.path.as_deref().or(self.glob.as_deref()).unwrap_or("?")
        )
    }

    /// The tar member pattern that extracts this source (`./` + path or glob).
    pub fn tar_pattern(&self) -> String {
        format!(
            "./{}",
            self.path.as_deref().or(self.glob.as_deref()).unwrap_or("")
        )
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    #[serde(rename = "package")]
    pub packages: Vec<Package>,
    #[serde(rename = "source", default)]
    pub sources: Vec<SourceEntry>,
}

/// The manifest committed with the code (the default for every `mbt data` command).
pub fn default_path() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../data/packages.toml"
    ))
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Manifest> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the source manifest {}", path.display()))?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Manifest> {
        let m: Manifest = toml::from_str(text)
            .with_context(|| format!("{}: invalid manifest", path.display()))?;
        m.validate()
            .with_context(|| format!("{}: invalid manifest", path.display()))?;
        Ok(m)
    }

    fn validate(&self) -> Result<()> {
        for p in &self.packages {
            if p.sha256.len() != 64 || !p.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!(
                    "package {}: sha256 `{}`: expected 64 hexadecimal digits",
                    p.name,
                    p.sha256
                );
            }
            if p.name.is_empty() || p.version.is_empty() {
                bail!("a package has an empty name or version");
            }
        }
        for s in &self.sources {
            if self.package(&s.package).is_none() {
                bail!(
                    "source {}: package `{}` is not one of the [[package]] entries",
                    s.label(),
                    s.package
                );
            }
            match (&s.path, &s.glob) {
                (Some(p), None) if !p.contains('*') => {}
                (None, Some(_)) => {}
                _ => bail!(
                    "source {}: expected exactly one of `path` (no wildcards) or `glob`",
                    s.label()
                ),
            }
            let rel = s.path.as_deref().or(s.glob.as_deref()).unwrap_or("");
            if rel.starts_with('/') || rel.split('/').any(|c| c == "..") {
                bail!(
                    "source {}: expected a relative path inside the package, without `..`",
                    s.label()
                );
            }
            s.splits()?;
            if s.role != Role::Sound && s.glob.is_some() {
                bail!("source {}: globs are only supported for sounds", s.label());
            }
        }
        Ok(())
    }

    pub fn package(&self, name: &str) -> Option<&Package> {
        self.packages.iter().find(|p| p.name == name)
    }
}

/// `*`-only wildcard match (where `*` may span `/`, as GNU tar's default).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_manifest_is_valid_and_keeps_test_files_out_of_train() {
        let m = Manifest::load(&default_path()).unwrap();
        assert_eq!(m.packages.len(), 7);
        for s in &m.sources {
            let sp = s.splits().unwrap();
            assert!(!(sp.contains(&Split::Test) && sp.contains(&Split::Train)));
        }
        // Every event kind has sounds and objects in every split.
        for kind in Kind::EVENTS {
            for split in Split::ALL {
                for role in [Role::Sound, Role::Object] {
                    assert!(
                        m.sources.iter().any(|s| s.kind == kind
                            && s.role == role
                            && s.splits().unwrap().contains(&split)),
                        "{kind:?} {role:?} {split:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn bad_manifests_name_the_field() {
        let base = "[[package]]\nname = \"p\"\nversion = \"1\"\nsha256 = \"";
        let e = Manifest::parse(&format!("{base}abc\"\n"), Path::new("m.toml")).unwrap_err();
        assert!(
            format!("{e:#}").contains("expected 64 hexadecimal"),
            "{e:#}"
        );
        let good = format!("{base}{}\"\n", "a".repeat(64));
        let e = Manifest::parse(
            &format!("{good}[[source]]\npackage = \"q\"\npath = \"x.wav\"\nrole = \"sound\"\nkind = \"dog\"\nsplit = \"train\"\n"),
            Path::new("m.toml"),
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("package `q`"), "{e:#}");
        let e = Manifest::parse(
            &format!("{good}[[source]]\npackage = \"p\"\npath = \"x.wav\"\nrole = \"sound\"\nkind = \"dog\"\nsplit = \"all\"\n"),
            Path::new("m.toml"),
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("split `all`"), "{e:#}");
    }

    #[test]
    fn glob_matching() {
        assert!(glob_match("a/*_desc_fr.ogg", "a/b/c_desc_fr.ogg"));
        assert!(!glob_match("a/*_desc_fr.ogg", "a/c_desc_fr.ogg.txt"));
        assert!(glob_match("a/x.png", "a/x.png"));
        assert!(!glob_match("a/*x*y", "a/yx"));
    }
}
