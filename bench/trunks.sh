#!/usr/bin/env bash
# The hybrid model (pretrained trunks + MBT fusion) on tract and on ONNX Runtime, side by side in
# one process (`crates/mbt-infer/examples/trunks.rs`), tract before and after our depthwise
# convolution (mbt_infer::ops::depthwise; before = tract's own, MBT_DEPTHWISE=tract), ONNX
# Runtime with as many intra-op threads as tract has, 1 and 2:
#
# * the composed model whole: a 2 s window (8 frames of 112 x 112, 5 YAMNet patches), batch 1,
#   tract with the batch fixed before optimisation and symbolic;
# * its streamed trunk parts, one row per run (what mbtd runs), batch symbolic and fixed to 1;
# * each trunk alone: YAMNet on one 96 x 64 patch and EfficientNet-Lite0 at 112 and 224 px,
#   with the time per operator kind when PROFILE=1 (tract's and ONNX Runtime's profilers).
#
# Last, mbtd replaying the demo clip with the streamed trunks (compute time per window, peak
# RSS), with our depthwise convolution and with tract's.
#
#   bench/trunks.sh [MODEL.onnx]      (default: models/edge.onnx)
#   PROFILE=1 bench/trunks.sh         (adds the per-operator-kind profiles)
#
# Builds the example and mbtd (release); needs the ONNX Runtime library
# (scripts/fetch-onnxruntime.sh, or ORT_DYLIB_PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
model=${1:-models/edge.onnx}
# With the workspace's feature set (ONNX Runtime on: the root's default and mbt-host's), the
# one every build here uses, so no dependency is built twice with different features.
cargo build --release --workspace --locked --example trunks >&2
cargo build --release --workspace --locked --bin mbtd >&2
mbtd="$CARGO_TARGET_DIR/release/mbtd"
trunks="$CARGO_TARGET_DIR/release/examples/trunks"
lib="${ORT_DYLIB_PATH:-$(scripts/fetch-onnxruntime.sh)}"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
# The composed model whole (one window, batch 1; what `mbt bench infer` runs), then its streamed
# trunk parts (one row per run, as mbtd runs them), tract's depthwise convolution against ours;
# then each trunk alone: tract before / after our depthwise convolution / ONNX Runtime
# (PROFILE=1: and the time per operator kind).
"$trunks" --runs 30 --threads 1,2 --ort-lib "$lib" ${PROFILE:+--profile} \
  --composed "$model" --parts "$model" \
  models/trunks/yamnet.onnx:1,96,64 \
  models/trunks/efficientnet-lite0.onnx:1,3,112,112 \
  models/trunks/efficientnet-lite0.onnx:1,3,224,224
# The daemon: streamed trunks on tract, the demo clip as fast as it goes; with our depthwise
# convolution (the default: any value but `tract`), then with tract's own.
for dw in ours tract; do
  echo "mbtd, depthwise: $dw"
  MBT_DEPTHWISE=$dw /usr/bin/time -v "$mbtd" --set model.path="$model" --set audio.source=replay \
    --set video.source=replay --set replay.clip=models/demo --set evidence.enabled=false 2>&1 >/dev/null |
    grep -oE '"backend":"[^"]*"|"compute_p50_us":[0-9]+|"compute_p99_us":[0-9]+|Maximum resident set size \(kbytes\): [0-9]+'
done
