//! Running an exported model with ONNX Runtime, opened at run time (feature `ort`).
//!
//! Why a second runtime: many boards ship their accelerator only as an ONNX Runtime execution
//! provider (Qualcomm QNN, VeriSilicon VSI NPU, Intel OpenVINO, NVIDIA TensorRT, Rockchip
//! RKNPU). The library is `dlopen`ed when a model is loaded, never linked or downloaded at build
//! time, so one binary runs with whatever `libonnxruntime.so` (>= 1.17) the vendor installed.
//!
//! The model goes through the same checks as on tract ([`crate::check`]): metadata, input and
//! output names, token shapes. Execution providers are registered in the order given; one the
//! library lacks is skipped and reported, and ONNX Runtime runs on its CPU provider whatever
//! the accelerators do not take.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use mbt_core::metadata::ModelMetadata;
use ort::ep::{self, ExecutionProviderDispatch};
use ort::session::Session;
use ort::value::TensorRef;

use crate::{check, check_batch, InferError, Logits, OUTPUTS};

/// The ONNX Runtime release `scripts/fetch-onnxruntime.sh` installs (the official PyPI wheel's
/// library, pinned by sha256 there).
pub const FETCHED_VERSION: &str = "1.32.0";

/// Where `scripts/fetch-onnxruntime.sh` puts the library: `$MBT_ORT_DIR`, else
/// `~/.cache/mbt-edge/onnxruntime` (the same rule as the script), whether or not it is there.
pub fn fetched_library() -> Option<PathBuf> {
    let dir = match std::env::var_os("MBT_ORT_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".cache/mbt-edge/onnxruntime"),
    };
    Some(dir.join(format!("libonnxruntime.so.{FETCHED_VERSION}")))
}

/// Where the ONNX Runtime library is looked for when nothing else says: `ORT_DYLIB_PATH`;
/// else the copy `scripts/fetch-onnxruntime.sh` installed, when it is there (a development
/// machine: `mbt eval --backend ort` then needs no flag); else `libonnxruntime.so` on the
/// dynamic loader's search path (a board with its vendor's build).
pub fn default_library() -> String {
    reference_library().unwrap_or_else(|_| "libonnxruntime.so".into())
}

/// The library for the checks that compare with ONNX Runtime (tests, benchmarks):
/// `ORT_DYLIB_PATH`, else the fetched copy; an error saying how to get one when neither is set
/// or present (they must not quietly pick up whatever build the loader finds).
pub fn reference_library() -> Result<String, String> {
    if let Ok(path) = std::env::var("ORT_DYLIB_PATH") {
        return Ok(path);
    }
    match fetched_library() {
        Some(path) if path.is_file() => Ok(path.to_string_lossy().into_owned()),
        Some(path) => Err(format!(
            "{} is missing: run scripts/fetch-onnxruntime.sh (scripts/test.sh does) or set ORT_DYLIB_PATH",
            path.display()
        )),
        None => Err(
            "HOME is not set, so the fetched ONNX Runtime cannot be found: set ORT_DYLIB_PATH".into(),
        ),
    }
}

/// The execution provider names `providers` accepts (lower case, as in mbtd's config).
pub const PROVIDERS: [&str; 9] = [
    "cpu", "cuda", "tensorrt", "qnn", "openvino", "vsinpu", "xnnpack", "rknpu", "acl",
];

/// ONNX Runtime allows one environment per process (and `ort` one library): the first load
/// opens the library and creates it, later loads share it.
fn environment(library: &str) -> Result<ort::environment::Environment, String> {
    static ENV: Mutex<Option<ort::environment::Environment>> = Mutex::new(None);
    let mut env = ENV
        .lock()
        .map_err(|_| "a previous load panicked".to_string())?;
    if let Some(e) = env.as_ref() {
        return Ok(e.clone());
    }
    let e = ort::init_from(library)
        .map_err(|e| format!("cannot load the ONNX Runtime library: {e}"))?
        .with_name("mbt")
        .build()
        .map_err(|e| format!("{e}"))?;
    *env = Some(e.clone());
    Ok(e)
}

/// The process's ONNX Runtime environment (see `environment`), for code that builds its own
/// sessions on raw graphs (the trunk benchmark example).
pub fn shared_environment(library: &str) -> Result<ort::environment::Environment, String> {
    environment(library)
}

fn provider(name: &str) -> Option<ExecutionProviderDispatch> {
    Some(match name {
        "cpu" => ep::CPU::default().build(),
        "cuda" => ep::CUDA::default().build(),
        "tensorrt" => ep::TensorRT::default().build(),
        "qnn" => ep::QNN::default().build(),
        "openvino" => ep::OpenVINO::default().build(),
        "vsinpu" => ep::VSINPU.build(),
        "xnnpack" => ep::XNNPACK::default().build(),
        "rknpu" => ep::RKNPU::default().build(),
        "acl" => ep::ACL::default().build(),
        _ => return None,
    })
}

/// A model loaded into an ONNX Runtime session.
pub struct OrtModel {
    session: Session,
    pub metadata: ModelMetadata,
    /// `(tokens, patch_dim)` of the `video` and `audio` inputs.
    pub video_shape: (usize, usize),
    pub audio_shape: (usize, usize),
    /// Providers registered, in order ("cpu" is ONNX Runtime's own fallback).
    pub providers: Vec<String>,
    /// One line per provider that was asked for and could not be registered, saying why.
    pub skipped: Vec<String>,
    /// The library's version string, e.g. "1.32.0".
    pub version: String,
}

impl OrtModel {
    /// Loads `path` with the library at `library` (see [`default_library`]), registering
    /// `providers` in order; `threads` = 0 leaves ONNX Runtime's default (one per core).
    ///
    /// Refused: an unknown provider name; a list of providers none of which registers (an
    /// explicit `["qnn"]` on a library without QNN must not quietly run on the CPU; add
    /// "cpu" to the list to allow that).
    pub fn load(
        path: &Path,
        library: &str,
        providers: &[String],
        threads: usize,
    ) -> Result<Self, InferError> {
        let bytes = std::fs::read(path).map_err(|source| InferError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let name = path.display().to_string();
        let checked = check(&bytes, &name)?;
        let rt_err = |reason: String| InferError::Runtime {
            name: "onnxruntime".into(),
            reason,
        };
        for p in providers {
            if provider(p).is_none() {
                return Err(rt_err(format!(
                    "unknown execution provider `{p}`: expected one of {}",
                    PROVIDERS.join(", ")
                )));
            }
        }
        let env = environment(library).map_err(rt_err)?;
        let mut builder = Session::builder(&env).map_err(|e| rt_err(format!("{e}")))?;
        if threads > 0 {
            builder = builder
                .with_intra_threads(threads)
                .map_err(|e| rt_err(format!("{e}")))?
                .with_inter_threads(1)
                .map_err(|e| rt_err(format!("{e}")))?;
        }
        let mut registered = Vec::new();
        let mut skipped = Vec::new();
        for p in providers {
            let Some(dispatch) = provider(p) else {
                continue;
            };
            match dispatch.error_on_failure().register(&mut builder) {
                Ok(()) => registered.push(p.clone()),
                Err(e) => skipped.push(format!("{p}: {e}")),
            }
        }
        if !providers.is_empty() && registered.is_empty() {
            return Err(rt_err(format!(
                "none of the execution providers {providers:?} could be registered ({}); add \"cpu\" to the list to allow running on the CPU",
                skipped.join("; ")
            )));
        }
        if !registered.iter().any(|p| p == "cpu") {
            registered.push("cpu".into());
        }
        let session = builder
            .commit_from_memory(&bytes)
            .map_err(|e| rt_err(format!("{name}: {e}")))?;
        Ok(OrtModel {
            session,
            metadata: checked.metadata,
            video_shape: checked.video_shape,
            audio_shape: checked.audio_shape,
            providers: registered,
            skipped,
            version: ort_version(library),
        })
    }

    pub fn classes(&self) -> usize {
        self.metadata.labels.len()
    }

    /// Runs a batch: `video` holds `batch * Tv * Pv` values, `audio` `batch * Ta * Pa`.
    pub fn run(
        &mut self,
        batch: usize,
        video: &[f32],
        audio: &[f32],
    ) -> Result<Logits, InferError> {
        check_batch(batch, video, audio, self.video_shape, self.audio_shape)?;
        let run_err = |e: ort::Error| InferError::Run(format!("onnxruntime: {e}"));
        let (tv, pv) = self.video_shape;
        let (ta, pa) = self.audio_shape;
        let v = TensorRef::from_array_view(([batch, tv, pv], video)).map_err(run_err)?;
        let a = TensorRef::from_array_view(([batch, ta, pa], audio)).map_err(run_err)?;
        let classes = self.classes();
        let out = self
            .session
            .run(ort::inputs!["video" => v, "audio" => a])
            .map_err(run_err)?;
        let take = |name: &str| -> Result<Vec<f32>, InferError> {
            let value = out
                .get(name)
                .ok_or_else(|| InferError::Run(format!("onnxruntime: no output `{name}`")))?;
            let (_, data) = value.try_extract_tensor::<f32>().map_err(run_err)?;
            if data.len() != batch * classes {
                return Err(InferError::Run(format!(
                    "onnxruntime: output `{name}` has {} values, expected {batch} x {classes}",
                    data.len()
                )));
            }
            Ok(data.to_vec())
        };
        let [fused, video_name, audio_name] = OUTPUTS;
        Ok(Logits {
            batch,
            classes,
            fused: take(fused)?,
            video: take(video_name)?,
            audio: take(audio_name)?,
        })
    }
}

/// One graph with a single input `input` `[N, dim]` and a single output (a trunk part of
/// [`crate::parts`]) in an ONNX Runtime CPU session with one intra-op thread: the runtime the
/// training feature cache uses when the library is there (BENCHMARKS.md: several times
/// faster than tract on the trunks' convolutions on x86).
pub struct OrtPart {
    session: Session,
    name: String,
}

impl OrtPart {
    pub fn from_bytes(bytes: &[u8], name: &str, library: &str) -> Result<Self, InferError> {
        let rt_err = |reason: String| InferError::Runtime {
            name: "onnxruntime".into(),
            reason: format!("{name}: {reason}"),
        };
        let env = environment(library).map_err(rt_err)?;
        let session = Session::builder(&env)
            .map_err(|e| rt_err(format!("{e}")))?
            .with_intra_threads(1)
            .map_err(|e| rt_err(format!("{e}")))?
            .with_inter_threads(1)
            .map_err(|e| rt_err(format!("{e}")))?
            .commit_from_memory(bytes)
            .map_err(|e| rt_err(format!("{e}")))?;
        Ok(OrtPart {
            session,
            name: name.into(),
        })
    }

    /// Runs `n` rows of `dim` values; returns the output's values.
    pub fn run_rows(&mut self, rows: &[f32], n: usize, dim: usize) -> Result<Vec<f32>, InferError> {
        if n == 0 || rows.len() != n * dim {
            return Err(InferError::Run(format!(
                "{}: expected {n} rows of {dim} values, got {} values",
                self.name,
                rows.len()
            )));
        }
        let run_err = |e: ort::Error| InferError::Run(format!("onnxruntime: {e}"));
        let x = TensorRef::from_array_view(([n, dim], rows)).map_err(run_err)?;
        let out = self
            .session
            .run(ort::inputs!["input" => x])
            .map_err(run_err)?;
        let (_, value) = out
            .iter()
            .next()
            .ok_or_else(|| InferError::Run(format!("{}: no output", self.name)))?;
        let (_, data) = value.try_extract_tensor::<f32>().map_err(run_err)?;
        Ok(data.to_vec())
    }
}

/// The library's version for logs: from its file name (`libonnxruntime.so.1.32.0`), else
/// from its build info (release branch or commit), which is all the C API tells.
fn ort_version(library: &str) -> String {
    if let Some((_, v)) = library.rsplit_once(".so.") {
        return v.to_string();
    }
    let info = ort::info();
    let field = |key: &str| {
        info.split(key)
            .nth(1)
            .and_then(|rest| rest.split([',', ' ']).next())
            .map(str::to_string)
    };
    match (field("git-branch=rel-"), field("git-commit-id=")) {
        (Some(v), _) => v,
        (None, Some(c)) => format!("commit {c}"),
        _ => "unknown version".into(),
    }
}

#[cfg(test)]
mod tests {
    /// `fetched_library` must name the file the script installs: the versions agree.
    #[test]
    fn fetched_version_is_the_one_the_fetch_script_installs() {
        let script = include_str!("../../../scripts/fetch-onnxruntime.sh");
        let line = format!("version={}", super::FETCHED_VERSION);
        assert!(
            script.lines().any(|l| l.trim() == line),
            "scripts/fetch-onnxruntime.sh does not say `{line}`"
        );
    }
}
