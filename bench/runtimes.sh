#!/usr/bin/env bash
# tract against ONNX Runtime on the model variants we ship or could ship, one thread each, in
# one process (crates/mbt-infer/examples/runtimes.rs). Prints a Markdown table for
# BENCHMARKS.md. Exports use the `mbt` CLI (debug build is fine: exporting is not timed).
#
#   bench/runtimes.sh [runs]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
runs="${1:-30}"
lib="${ORT_DYLIB_PATH:-$(scripts/fetch-onnxruntime.sh)}"
cargo build --locked -p mbt-host --bin mbt >&2
mbt="$CARGO_TARGET_DIR/debug/mbt"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$mbt" export --config configs/edge-scratch.toml --random-init --seed 1 --int8 weights --out "$tmp/edge-rand-int8-weights.onnx" >&2
"$mbt" export --config configs/edge-scratch.toml --set width=192 --set layers=6 --set heads=3 --set fusion_layer=3 \
  --random-init --seed 1 --out "$tmp/d192-6L-rand.onnx" >&2
echo "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; onnxruntime $(basename "$lib"); $runs runs, median"
cargo run --locked --release -p mbt-infer --features ort --example runtimes -- --runs "$runs" --threads 1,2 --ort-lib "$lib" \
  models/edge.onnx models/edge-int8.onnx "$tmp/edge-rand-int8-weights.onnx" "$tmp/d192-6L-rand.onnx"
