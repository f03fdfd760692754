#!/usr/bin/env bash
# From a finished training run to the files shipped in models/: the ONNX export (trunks and
# fusion part composed into one file, the validation split's F1-best thresholds in its
# metadata), the evaluation reports of the checkpoint (validation and test splits, 4 crops) and
# of the export (test split on ONNX Runtime, clip-by-clip agreement with the checkpoint), the
# training curves and confusion matrix, the compute model and the demo clip's timeline.
#
#   scripts/ship-model.sh RUN DATA_DIR [VERSION]
#
# RUN is an `mbt train` run directory (its best.bpk is shipped), DATA_DIR the data set it was
# trained on. The trunk features are read from DATA_DIR/features (built by `mbt train`).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
run=${1:?usage: scripts/ship-model.sh RUN DATA_DIR [VERSION]}
data=${2:?usage: scripts/ship-model.sh RUN DATA_DIR [VERSION]}
version=${3:-edge-$(date -u +%Y%m%d)}
mbt="$CARGO_TARGET_DIR/debug/mbt"
[ -x "$mbt" ] || cargo build -p mbt-host
out=models/edge-report
rm -rf "$out/checkpoint" "$out/fp32" "$out/int8" "$out"/*.txt
mkdir -p "$out"

# Thresholds are tuned on the validation split only (never on the test split or the demo).
"$mbt" eval --model "$run/best.bpk" --data "$data" --split val --crops 4 --out "$out/val" | tee "$out/val.txt"
"$mbt" eval --model "$run/best.bpk" --data "$data" --split test --crops 4 --out "$out/checkpoint" | tee "$out/checkpoint.txt"
"$mbt" export --config "$run/config.toml" --checkpoint "$run/best.bpk" --model-version "$version" \
  --thresholds "$out/val/eval.json" --out models/edge.onnx
# The replay set personalisation mixes into a user's clips (models/README.md, "Personalisation"):
# standard training clips' projected tokens, made for exactly these projections.
"$mbt" model replay --model models/edge.onnx --data "$data" --clips 512 --seed 0 --out models/edge.replay
# The export on ONNX Runtime (tract takes ~0.25 s per whole window on x86, BENCHMARKS.md),
# one crop, against the checkpoint's one-crop predictions clip by clip.
ort_lib="${ORT_DYLIB_PATH:-$(scripts/fetch-onnxruntime.sh)}"
"$mbt" eval --model "$run/best.bpk" --data "$data" --split test --crops 1 --out "$out/checkpoint-1crop" | tee "$out/checkpoint-1crop.txt"
"$mbt" eval --model models/edge.onnx --backend ort --ort-lib "$ort_lib" --ort-threads 1 --data "$data" \
  --split test --crops 1 --out "$out/fp32" | tee "$out/fp32.txt"
python3 - "$out/checkpoint-1crop/eval.json" "$out/fp32/eval.json" <<'PY' | tee "$out/export-agreement.txt"
import json, sys
a, b = (json.load(open(p))["evaluation"] for p in sys.argv[1:3])
same = sum(x == y for x, y in zip(a["predictions"], b["predictions"]))
print(f"export (ONNX Runtime) vs checkpoint (burn on cached f16 trunk features), fused top-1 agreement: {same}/{len(a['predictions'])} = {100 * same / len(a['predictions']):.2f} %")
PY
cp "$run"/loss.png "$run"/accuracy.png "$out/" 2>/dev/null || true
cp "$run/metrics.jsonl" "$run/config.toml" "$run/run.json" "$out/"
cp "$out/checkpoint/confusion.png" "$out/confusion.png"
"$mbt" model stats --config "$run/config.toml" | tee "$out/stats.txt"
[ -x "$CARGO_TARGET_DIR/release/mbtd" ] || cargo build --release --bin mbtd
"$mbt" timeline --model models/edge.onnx --clip models/demo --mbtd "$CARGO_TARGET_DIR/release/mbtd" \
  --out "$out/demo-timeline.png"
ls -l models/edge.onnx models/edge.replay | tee "$out/sizes.txt"
