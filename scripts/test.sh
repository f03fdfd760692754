#!/usr/bin/env bash
# The one command that runs the tests (the README's test command; CI runs it too).
# Installs missing system packages, then runs every test of the workspace. Extra arguments go
# to `cargo test` (e.g. scripts/test.sh -p mbt-core).
# Slow checks are #[ignore]d and listed in the README with the command that runs them.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
scripts/install-deps.sh
# The official ONNX Runtime build: the independent reference the `ort` backend tests compare
# tract with (downloaded once from PyPI, pinned by sha256; see the script).
ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$(scripts/fetch-onnxruntime.sh)}"
export ORT_DYLIB_PATH
cargo test --workspace --locked "$@"
