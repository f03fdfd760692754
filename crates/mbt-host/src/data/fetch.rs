//! `mbt data fetch`: download the pinned packages, check their sha256, extract only the media.
//!
//! Layout of the cache (default `$XDG_CACHE_HOME/mbt-edge/packages`):
//! `debs/NAME_VERSION_ARCH.deb` and `media/NAME/<paths inside the package>`, plus
//! `media/NAME/.extracted` holding the sha256 of the .deb and the patterns it was extracted
//! with. A package whose .deb checks out and whose marker matches is not touched again, so a
//! second run does nothing and needs no network.
//!
//! Downloading sits behind the [`Downloader`] trait: `apt-get download` in production; the tests
//! plug in one that copies a .deb they built with `dpkg-deb --build`. Checking and extraction
//! are the real code in both cases.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use super::manifest::{Manifest, Package};

/// Brings `pkg`'s .deb into `dir` under [`Package::deb_file_name`].
pub trait Downloader {
    fn download(&self, pkg: &Package, dir: &Path) -> Result<()>;
}

/// `apt-get download NAME=VERSION` (no root needed), run in the target directory.
pub struct AptGet;

impl Downloader for AptGet {
    fn download(&self, pkg: &Package, dir: &Path) -> Result<()> {
        let spec = format!("{}={}", pkg.name, pkg.version);
        let out = Command::new("apt-get")
            .args(["download", "-q", &spec])
            .current_dir(dir)
            .output()
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    anyhow::anyhow!(
                        "package {}: `apt-get` is not installed: it is needed to download {spec} \
                         (on a machine without apt, copy {} into {})",
                        pkg.name,
                        pkg.deb_file_name(),
                        dir.display()
                    )
                } else {
                    anyhow::anyhow!("package {}: cannot run apt-get: {e}", pkg.name)
                }
            })?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            bail!(
                "package {}: `apt-get download {spec}` failed ({}): {}\n(the pinned version may be gone \
                 from the mirror; `apt-cache policy {}` lists the versions it offers)",
                pkg.name,
                out.status,
                err.trim(),
                pkg.name
            );
        }
        Ok(())
    }
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

/// Where `build` finds a package's extracted files.
pub fn media_dir(cache: &Path, package: &str) -> PathBuf {
    cache.join("media").join(package)
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
    Extracted { downloaded: bool },
}

/// Fetches and extracts every package of `manifest` into `cache`.
pub fn fetch_all(
    manifest: &Manifest,
    cache: &Path,
    dl: &dyn Downloader,
) -> Result<Vec<(String, Outcome)>> {
    let mut out = Vec::new();
    for pkg in &manifest.packages {
        let patterns: Vec<String> = manifest
            .sources
            .iter()
            .filter(|s| s.package == pkg.name)
            .map(|s| s.tar_pattern())
            .collect();
        let o = fetch_one(pkg, &patterns, cache, dl)?;
        out.push((pkg.name.clone(), o));
    }
    Ok(out)
}

fn fetch_one(
    pkg: &Package,
    patterns: &[String],
    cache: &Path,
    dl: &dyn Downloader,
) -> Result<Outcome> {
    let debs = cache.join("debs");
    std::fs::create_dir_all(&debs)
        .with_context(|| format!("cannot create the cache directory {}", debs.display()))?;
    let deb = debs.join(pkg.deb_file_name());
    let media = media_dir(cache, &pkg.name);
    let marker = media.join(".extracted");
    let want_marker = format!("{}\n{}\n", pkg.sha256, patterns.join("\n"));

    let mut downloaded = false;
    let good = deb.is_file() && sha256_file(&deb)? == pkg.sha256;
    if !good {
        if deb.exists() {
            // A partial or stale download: fetch it again rather than trusting it.
            std::fs::remove_file(&deb)
                .with_context(|| format!("cannot remove {}", deb.display()))?;
        }
        dl.download(pkg, &debs)?;
        downloaded = true;
        if !deb.is_file() {
            bail!(
                "package {}: the download did not produce {}",
                pkg.name,
                deb.display()
            );
        }
        let got = sha256_file(&deb)?;
        if got != pkg.sha256 {
            bail!(
                "package {} {}: sha256 of {} is {got}, expected {} (data/packages.toml); \
                 the mirror serves a different file under this version: refusing it",
                pkg.name,
                pkg.version,
                deb.display(),
                pkg.sha256
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
        extract(pkg, &deb, &media, patterns)?;
    }
    std::fs::write(&marker, want_marker)
        .with_context(|| format!("cannot write {}", marker.display()))?;
    Ok(Outcome::Extracted { downloaded })
}

/// `dpkg-deb --fsys-tarfile DEB | tar -x --wildcards PATTERNS`: only the named media.
fn extract(pkg: &Package, deb: &Path, into: &Path, patterns: &[String]) -> Result<()> {
    let missing = |tool: &str, e: std::io::Error| {
        anyhow::anyhow!(
            "package {}: cannot run `{tool}` (needed to unpack {}): {e}",
            pkg.name,
            deb.display()
        )
    };
    let mut dpkg = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| missing("dpkg-deb", e))?;
    let Some(pipe) = dpkg.stdout.take() else {
        bail!("package {}: dpkg-deb gave no output pipe", pkg.name);
    };
    let tar = Command::new("tar")
        .args(["-x", "--wildcards", "--no-same-owner", "-C"])
        .arg(into)
        .args(patterns)
        .stdin(pipe)
        .stderr(Stdio::piped())
        .output();
    let dpkg_out = dpkg.wait_with_output();
    let tar = tar.map_err(|e| missing("tar", e))?;
    let dpkg_out = dpkg_out.map_err(|e| missing("dpkg-deb", e))?;
    if !dpkg_out.status.success() {
        bail!(
            "package {}: {} is not a readable .deb: {}",
            pkg.name,
            deb.display(),
            String::from_utf8_lossy(&dpkg_out.stderr).trim()
        );
    }
    if !tar.status.success() {
        bail!(
            "package {}: extracting the media listed in data/packages.toml failed \
             (a path the manifest names is not in this version of the package?): {}",
            pkg.name,
            String::from_utf8_lossy(&tar.stderr).trim()
        );
    }
    Ok(())
}
