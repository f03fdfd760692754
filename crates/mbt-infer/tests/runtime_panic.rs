//! A runtime that panics while preparing the model (tract-cuda 0.23 does when the CUDA
//! libraries load but no device answers) gives an error naming the runtime, not a crash, so
//! the daemon's `backend = "auto"` can fall back to the CPU. The panicking runtime is a test
//! double registered in tract's runtime registry: no machine here can make tract-cuda fail
//! that way on demand.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::runtime::{InventorizedRuntime, RunOptions, Runnable, Runtime};

#[derive(Debug)]
struct NoDevice;

impl Runtime for NoDevice {
    fn name(&self) -> std::borrow::Cow<'static, str> {
        "no-device".into()
    }
    fn check(&self) -> TractResult<()> {
        Ok(())
    }
    fn prepare_with_options(
        &self,
        _model: TypedModel,
        _options: &RunOptions,
    ) -> TractResult<Box<dyn Runnable>> {
        panic!("Could not create CUDA context: Could not find system default CUDA device")
    }
}

static NO_DEVICE: NoDevice = NoDevice;
tract_onnx::tract_core::internal::inventory::submit! { InventorizedRuntime(&NO_DEVICE) }

#[test]
fn a_runtime_that_panics_while_preparing_is_an_error() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/edge.onnx");
    let err = match mbt_infer::Model::load(&path, "no-device") {
        Ok(_) => panic!("loading on a runtime that panics succeeded"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("runtime `no-device`"), "{err}");
    assert!(err.contains("Could not create CUDA context"), "{err}");
    // The CPU still loads the same file afterwards.
    assert!(mbt_infer::Model::load(&path, "cpu").is_ok());
}
