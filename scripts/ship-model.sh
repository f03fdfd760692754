#!/usr/bin/env bash
# From a finished training run to the files shipped in models/: the fp32 and int8 (dynamic)
# ONNX exports, the evaluation reports of the checkpoint and of both exports on the test split,
# the training curves and the confusion matrix, and the numbers the model card quotes.
#
#   scripts/ship-model.sh RUN DATA_DIR [VERSION]
#
# RUN is an `mbt train` run directory, DATA_DIR the data set it was trained on.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
run=${1:?usage: scripts/ship-model.sh RUN DATA_DIR [VERSION]}
data=${2:?usage: scripts/ship-model.sh RUN DATA_DIR [VERSION]}
version=${3:-edge-$(date -u +%Y%m%d)}
mbt="$CARGO_TARGET_DIR/debug/mbt"
[ -x "$mbt" ] || cargo build -p mbt-host
out=models/edge-report
mkdir -p "$out"

"$mbt" export --config "$run/config.toml" --checkpoint "$run" --model-version "$version" --out models/edge.onnx
"$mbt" export --config "$run/config.toml" --checkpoint "$run" --model-version "$version-int8" --int8 dynamic --out models/edge-int8.onnx

# The checkpoint (burn) and the fp32 export (tract) on the test split, 4 crops. The int8 export
# runs on ONNX Runtime: tract's dynamic-int8 path takes about 1.5 s per window on x86, hours for
# the test split (BENCHMARKS.md), so its figures come from the runtime that int8 is shipped for.
"$mbt" eval --model "$run" --data "$data" --split test --crops 4 --out "$out/checkpoint" | tee "$out/checkpoint.txt"
"$mbt" eval --model models/edge.onnx --data "$data" --split test --crops 4 --out "$out/fp32" | tee "$out/fp32.txt"
ort_lib="${ORT_DYLIB_PATH:-$(scripts/fetch-onnxruntime.sh)}"
"$mbt" eval --model models/edge-int8.onnx --backend ort --ort-lib "$ort_lib" --data "$data" --split test --crops 4 \
  --out "$out/int8" | tee "$out/int8.txt"

cp "$run"/loss.png "$run"/accuracy.png "$out/" 2>/dev/null || true
cp "$run/metrics.jsonl" "$run/config.toml" "$run/run.json" "$out/"
cp "$out/fp32/confusion.png" "$out/confusion.png"
"$mbt" model stats --config "$run/config.toml" | tee "$out/stats.txt"
# The demo clip through the daemon: fused and per-modality scores per label, ground truth and
# emitted events (the view for choosing thresholds).
[ -x "$CARGO_TARGET_DIR/debug/mbtd" ] || cargo build --bin mbtd
"$mbt" timeline --model models/edge.onnx --clip models/demo --mbtd "$CARGO_TARGET_DIR/debug/mbtd" \
  --out "$out/demo-timeline.png"
for m in models/edge.onnx models/edge-int8.onnx; do
  "$mbt" bench infer --model "$m" --runs 50 | tee -a "$out/latency.txt"
done
ls -l models/edge.onnx models/edge-int8.onnx | tee "$out/sizes.txt"
# int8 against fp32, clip by clip (fused top-1 agreement).
python3 - "$out/fp32/eval.json" "$out/int8/eval.json" <<'PY' | tee "$out/int8-agreement.txt"
import json, sys
a, b = (json.load(open(p))["evaluation"] for p in sys.argv[1:3])
same = sum(x == y for x, y in zip(a["predictions"], b["predictions"]))
print(f"int8 vs fp32 fused top-1 agreement: {same}/{len(a['predictions'])} = {100 * same / len(a['predictions']):.2f} %")
PY
