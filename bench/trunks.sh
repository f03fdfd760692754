#!/usr/bin/env bash
# The hybrid model (pretrained trunks + MBT fusion) on tract and on ONNX Runtime, side by side in
# one script on one machine: a 2 s window (8 frames of 112 x 112, 5 YAMNet patches), batch 1,
# tract with a symbolic batch and with the batch fixed before optimisation, ONNX Runtime with
# one and two intra-op threads; then mbtd replaying the demo clip with the streamed trunks
# (compute time per window, peak RSS).
#
# Then each trunk alone (`crates/mbt-infer/examples/trunks.rs`): tract before and after our
# depthwise convolution (mbt_infer::ops::depthwise) and ONNX Runtime, 1 and 2 threads, YAMNet
# on one 96 x 64 patch and EfficientNet-Lite0 at 112 and 224 px, with the time per operator
# kind (--profile); and the composed model's rows again with tract's own depthwise operator
# (MBT_DEPTHWISE=tract), the "before" of the first rows.
#
#   bench/trunks.sh [MODEL.onnx]      (default: models/edge.onnx)
#
# Needs release builds of mbt and mbtd and the ONNX Runtime library
# (scripts/fetch-onnxruntime.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
model=${1:-models/edge.onnx}
cargo build --release --locked -p mbt-host --bin mbt >&2
cargo build --release --locked --bin mbtd >&2
cargo build --release --locked -p mbt-infer --features ort --example trunks >&2
mbt="$CARGO_TARGET_DIR/release/mbt"
mbtd="$CARGO_TARGET_DIR/release/mbtd"
trunks="$CARGO_TARGET_DIR/release/examples/trunks"
lib="${ORT_DYLIB_PATH:-$(scripts/fetch-onnxruntime.sh)}"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
"$mbt" model stats --config configs/edge.toml
"$mbt" bench infer --model "$model" --runs 10
"$mbt" bench infer --model "$model" --runs 20 --fixed-batch
"$mbt" bench infer --model "$model" --runs 20 --backend ort --ort-lib "$lib" --ort-threads 1
"$mbt" bench infer --model "$model" --runs 20 --backend ort --ort-lib "$lib" --ort-threads 2
MBT_DEPTHWISE=tract "$mbt" bench infer --model "$model" --runs 10
MBT_DEPTHWISE=tract "$mbt" bench infer --model "$model" --runs 20 --fixed-batch
# Each trunk alone: tract before / after our depthwise convolution / ONNX Runtime.
"$trunks" --runs 30 --threads 1,2 --ort-lib "$lib" ${PROFILE:+--profile} \
  models/trunks/yamnet.onnx:1,96,64 \
  models/trunks/efficientnet-lite0.onnx:1,3,112,112 \
  models/trunks/efficientnet-lite0.onnx:1,3,224,224
# The daemon: streamed trunks on tract, the demo clip as fast as it goes.
/usr/bin/time -v "$mbtd" --set model.path="$model" --set audio.source=replay \
  --set video.source=replay --set replay.clip=models/demo --set evidence.enabled=false 2>&1 >/dev/null |
  grep -oE '"backend":"[^"]*"|"compute_p50_us":[0-9]+|"compute_p99_us":[0-9]+|Maximum resident set size \(kbytes\): [0-9]+'
