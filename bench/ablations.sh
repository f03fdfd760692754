#!/usr/bin/env bash
# The ablation table of the model card: the same data, recipe and budget for every variant of
# configs/edge.toml (audio only, video only, late fusion, full attention, bottleneck fusion with
# B in {1, 4, 16} and Lf in {0, L/2, L-1}); columns top-1 (test split, fused), GMACs and the
# measured tract latency of a 2 s window (batch 1).
#
#   bench/ablations.sh DATA_DIR OUT_DIR [extra --set overrides for every run, e.g. train.epochs=4]
#
# Each run takes as long as the default model's training (about an hour on a 2-core machine at
# 12 epochs); OUT_DIR/table.md collects the rows as they finish, so the script can be stopped
# and restarted (finished variants are skipped).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
data=${1:?usage: bench/ablations.sh DATA_DIR OUT_DIR [KEY=VALUE...]}
out=${2:?usage: bench/ablations.sh DATA_DIR OUT_DIR [KEY=VALUE...]}
shift 2
extra=()
for kv in "$@"; do extra+=(--set "$kv"); done
mbt="$CARGO_TARGET_DIR/debug/mbt"
[ -x "$mbt" ] || cargo build -p mbt-host
mkdir -p "$out"
table="$out/table.md"
[ -f "$table" ] || printf '| variant | top-1 %% (test, fused) | GMACs | latency ms (tract, batch 1) |\n|---|---:|---:|---:|\n' > "$table"

L=4
variants=(
  "late fusion|fusion=late"
  "full attention, Lf=2|fusion=full_attention fusion_layer=2"
  "bottleneck B=1, Lf=2|bottlenecks=1 fusion_layer=2"
  "bottleneck B=4, Lf=2 (default)|bottlenecks=4 fusion_layer=2"
  "bottleneck B=16, Lf=2|bottlenecks=16 fusion_layer=2"
  "bottleneck B=4, Lf=0|bottlenecks=4 fusion_layer=0"
  "bottleneck B=4, Lf=$((L - 1))|bottlenecks=4 fusion_layer=$((L - 1))"
)
for v in "${variants[@]}"; do
  name=${v%%|*}
  sets=()
  for kv in ${v#*|}; do sets+=(--set "$kv"); done
  dir="$out/$(echo "$name" | tr -c 'a-zA-Z0-9=' '_')"
  if grep -qF "| $name |" "$table"; then continue; fi
  if [ -f "$dir/checkpoint/state.json" ]; then
    "$mbt" train --resume --data "$data" --out "$dir"
  else
    "$mbt" train --config configs/edge.toml "${sets[@]}" "${extra[@]}" --data "$data" --out "$dir"
  fi
  top1=$("$mbt" eval --model "$dir" --data "$data" --split test --out "$dir/eval" | awk '$1=="fused"{print $2}')
  "$mbt" export --config "$dir/config.toml" --checkpoint "$dir" --out "$dir/model.onnx"
  gmacs=$("$mbt" model stats --config "$dir/config.toml" --json | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["total"]["macs"]/1e9,3))')
  ms=$("$mbt" bench infer --model "$dir/model.onnx" --json | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["median_ms"],2))')
  printf '| %s | %s | %s | %s |\n' "$name" "$top1" "$gmacs" "$ms" >> "$table"
  # Audio only and video only: the late-fusion run's heads. With late fusion each head sees
  # only its own stream, so each is a unimodal model trained on the same data and budget.
  if [ "$name" = "late fusion" ]; then
    for head in video audio; do
      t=$("$mbt" eval --model "$dir" --data "$data" --split test | awk -v h=$head '$1==h{print $2}')
      printf '| %s only (late-fusion head) | %s | | |\n' "$head" "$t" >> "$table"
    done
  fi
done
cat "$table"
