#!/usr/bin/env bash
# The ablation table for the hybrid edge model (configs/edge.toml) on data v2: every variant
# trains the fusion part on the same cached trunk features with the same budget and seed, and
# is scored on the test split (last checkpoint, not the best: the same budget for every row).
# Columns: fused top-1, top-1 on the two door kinds alone (the pair that needs both streams
# jointly: slammed vs softly closed is told by the door sound's level, the door by both),
# fusion GMACs per window (the trunks add 1.189 to every row).
#
#   bench/ablations-trunks.sh DATA_DIR OUT_DIR [KEY=VALUE ... for every run, e.g. train.epochs=2]
#
# Environment: CROPS (default 1); MBT a prebuilt mbt (default: the release build).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
data=${1:?usage: bench/ablations-trunks.sh DATA_DIR OUT_DIR [KEY=VALUE...]}
out=${2:?usage: bench/ablations-trunks.sh DATA_DIR OUT_DIR [KEY=VALUE...]}
shift 2
extra=()
for kv in "$@"; do extra+=(--set "$kv"); done
crops=${CROPS:-1}
if [ -z "${MBT:-}" ]; then
  cargo build --locked --release -p mbt-host --bin mbt >&2
  MBT="$CARGO_TARGET_DIR/release/mbt"
fi
mkdir -p "$out"
table="$out/table.md"
[ -f "$table" ] || printf '| variant | top-1 %% test, fused | top-1 %% door kinds | fusion GMACs |\n|---|---:|---:|---:|\n' >"$table"
variants=(
  "late fusion|fusion=late"
  "bottleneck B=4, Lf=2 (shipped)|bottlenecks=4 fusion_layer=2"
  "bottleneck B=1, Lf=2|bottlenecks=1 fusion_layer=2"
  "bottleneck B=16, Lf=2|bottlenecks=16 fusion_layer=2"
  "bottleneck B=4, Lf=1|bottlenecks=4 fusion_layer=1"
  "bottleneck B=4, Lf=3|bottlenecks=4 fusion_layer=3"
  "full attention, Lf=2|fusion=full_attention fusion_layer=2"
)
for v in "${variants[@]}"; do
  name=${v%%|*}
  if grep -qF "| $name |" "$table"; then continue; fi
  sets=()
  for kv in ${v#*|}; do sets+=(--set "$kv"); done
  dir="$out/$(echo "$name" | tr -c 'a-zA-Z0-9=' '_')"
  rm -rf "$dir"
  "$MBT" train --config configs/edge.toml "${sets[@]}" "${extra[@]}" --data "$data" --out "$dir" >"$dir.log" 2>&1
  "$MBT" eval --model "$dir/checkpoint/model.bpk" --data "$data" --split test --crops "$crops" --out "$dir/eval-test" >"$dir/eval-test.txt" 2>&1
  row=$(python3 - "$dir/eval-test/eval.json" <<'PY'
import json, sys
e = json.load(open(sys.argv[1]))["evaluation"]
pc = {c["label"]: c for c in e["fused"]["per_class"]}
door = [pc[k] for k in ("door_slammed", "door_closed_softly")]
hit = sum(c["recall"] * c["support"] for c in door) / sum(c["support"] for c in door)
heads = " / ".join(f'{s["top1"]:.2f}' for s in e["streams"])
print(f'{e["fused"]["top1"]:.2f}|{100 * hit:.2f}|{heads}')
PY
)
  gmacs=$("$MBT" model stats --config "$dir/config.toml" --json | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["total"]["macs"]/1e9,3))')
  IFS='|' read -r fused door heads <<<"$row"
  printf '| %s | %s | %s | %s |\n' "$name" "$fused" "$door" "$gmacs" >>"$table"
  if [ "$name" = "late fusion" ]; then
    IFS=' / ' read -r vh ah <<<"$heads"
    printf '| video only (late-fusion head) | %s | | |\n| audio only (late-fusion head) | %s | | |\n' "$vh" "$ah" >>"$table"
  fi
done
cat "$table"
