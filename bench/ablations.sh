#!/usr/bin/env bash
# The ablation table of the model card: the same data, recipe and budget for every variant of
# configs/edge-scratch.toml (audio only, video only, late fusion, full attention, bottleneck fusion with
# B in {1, 4, 16} and Lf in {0, L/2, L-1}); columns: fused top-1 on the test split (unseen
# recordings and pictures), top-1 of the fused output and of each head on clips rendered anew
# from the *training* sources (SEEN, optional: that is where the variants differ, see the model
# card), GMACs and the measured tract latency of a 2 s window (batch 1).
#
#   bench/ablations.sh DATA_DIR OUT_DIR [extra --set overrides for every run, e.g. train.epochs=4]
#
# Environment: SEEN=DIR a data set rendered from the training sources with another seed
#   (`mbt data build --seed 7 --train 1200 --val 6 --test 6 --out DIR`; its train split is
#   scored); CROPS (default 1) crops per clip in both evaluations; TRAIN_ARGS extra arguments
#   of every `mbt train` (e.g. "--limit-val 250": validation only picks best.bpk, the table
#   scores the last checkpoint); MBT a prebuilt mbt (default: the release build).
#
# With the sharded step (train.threads = 2) a variant trains in about 15 minutes on a 2-core
# machine at the shipped 8 epochs; OUT_DIR/table.md collects the rows as they finish, so the
# script can be stopped and restarted (finished variants are skipped, a stopped run resumes).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
data=${1:?usage: bench/ablations.sh DATA_DIR OUT_DIR [KEY=VALUE...]}
out=${2:?usage: bench/ablations.sh DATA_DIR OUT_DIR [KEY=VALUE...]}
shift 2
extra=()
for kv in "$@"; do extra+=(--set "$kv"); done
crops=${CROPS:-1}
read -r -a train_args <<<"${TRAIN_ARGS:-}"
if [ -z "${MBT:-}" ]; then
  cargo build --locked --release -p mbt-host --bin mbt >&2
  MBT="$CARGO_TARGET_DIR/release/mbt"
fi
mbt=$MBT
mkdir -p "$out"
table="$out/table.md"
[ -f "$table" ] || printf '| variant | top-1 %% test, fused | top-1 %% seen sources: fused / video head / audio head | GMACs | latency ms (tract, batch 1) |\n|---|---:|---:|---:|---:|\n' >"$table"

# `mbt eval` prints "output top-1 top-5 mAP" rows; top1 FILE OUTPUT picks one.
top1() { awk -v o="$2" '$1==o{print $2}' "$1"; }

L=4
variants=(
  "late fusion|fusion=late"
  "full attention, Lf=2|fusion=full_attention fusion_layer=2"
  "bottleneck B=1, Lf=2|bottlenecks=1 fusion_layer=2"
  "bottleneck B=16, Lf=2|bottlenecks=16 fusion_layer=2"
  "bottleneck B=4, Lf=0|bottlenecks=4 fusion_layer=0"
  "bottleneck B=4, Lf=$((L - 1))|bottlenecks=4 fusion_layer=$((L - 1))"
  "bottleneck B=4, Lf=2 (default)|bottlenecks=4 fusion_layer=2"
)
for v in "${variants[@]}"; do
  name=${v%%|*}
  sets=()
  for kv in ${v#*|}; do sets+=(--set "$kv"); done
  dir="$out/$(echo "$name" | tr -c 'a-zA-Z0-9=' '_')"
  if grep -qF "| $name |" "$table"; then continue; fi
  if [ -f "$dir/checkpoint/state.json" ]; then
    "$mbt" train --resume --data "$data" --out "$dir" "${train_args[@]}"
  else
    "$mbt" train --config configs/edge-scratch.toml "${sets[@]}" "${extra[@]}" --data "$data" --out "$dir" "${train_args[@]}"
  fi
  # The last checkpoint (the run directory), not best.bpk: the same budget for every row.
  "$mbt" eval --model "$dir/checkpoint/model.bpk" --data "$data" --split test --crops "$crops" --out "$dir/eval-test" | tee "$dir/eval-test.txt"
  seen="n/a"
  if [ -n "${SEEN:-}" ]; then
    "$mbt" eval --model "$dir/checkpoint/model.bpk" --data "$SEEN" --split train --crops "$crops" --out "$dir/eval-seen" | tee "$dir/eval-seen.txt"
    seen="$(top1 "$dir/eval-seen.txt" fused) / $(top1 "$dir/eval-seen.txt" video) / $(top1 "$dir/eval-seen.txt" audio)"
  fi
  "$mbt" export --config "$dir/config.toml" --checkpoint "$dir" --out "$dir/model.onnx"
  gmacs=$("$mbt" model stats --config "$dir/config.toml" --json | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["total"]["macs"]/1e9,3))')
  ms=$("$mbt" bench infer --model "$dir/model.onnx" --json | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["median_ms"],2))')
  printf '| %s | %s | %s | %s | %s |\n' "$name" "$(top1 "$dir/eval-test.txt" fused)" "$seen" "$gmacs" "$ms" >>"$table"
  # Audio only and video only: the late-fusion run's heads. With late fusion each head sees
  # only its own stream, so each is a unimodal model trained on the same data and budget.
  if [ "$name" = "late fusion" ]; then
    for head in video audio; do
      s="n/a"
      [ -n "${SEEN:-}" ] && s=$(top1 "$dir/eval-seen.txt" $head)
      printf '| %s only (late-fusion head) | %s | %s | | |\n' "$head" "$(top1 "$dir/eval-test.txt" $head)" "$s" >>"$table"
    done
  fi
done
cat "$table"
