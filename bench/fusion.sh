#!/usr/bin/env bash
# The paper's Fig. 8A, measured: latency of bottleneck, full-attention and late fusion as the
# fusion layer Lf moves through {0, L/3, 2L/3} (Lf = L is late fusion for every kind), next to
# the analytic multiply-accumulate ratio from `mbt model stats`. Every variant is a random-init
# export of CONFIG with only `fusion` and `fusion_layer` changed (weights do not change the
# arithmetic), timed at batch 1 on one thread by crates/mbt-infer/examples/runtimes.rs: tract,
# and ONNX Runtime unless --no-ort. Exports go to a temporary folder and are deleted one by one
# (a vit-b-paper export is ~700 MB).
#
#   bench/fusion.sh [--no-ort] [--runs N] [--warmups N] [--threads T] CONFIG.toml
# prints a Markdown table for BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
ort=1 runs=10 warmups=2 threads=1
while [ $# -gt 1 ]; do
  case "$1" in
    --no-ort) ort=0; shift ;;
    --runs) runs=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --warmups) warmups=$2; shift 2 ;;
    *) echo "fusion.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
config=${1:?usage: bench/fusion.sh [--no-ort] [--runs N] [--warmups N] [--threads T] CONFIG.toml}
cargo build --locked -p mbt-host --bin mbt >&2
mbt="$CARGO_TARGET_DIR/debug/mbt"
cargo build --locked --release -p mbt-infer --features ort --example runtimes >&2
runtimes="$CARGO_TARGET_DIR/release/examples/runtimes"
rt_args=(--runs "$runs" --warmups "$warmups" --threads "$threads" --batches 1)
if [ "$ort" = 1 ]; then
  rt_args+=(--ort-lib "${ORT_DYLIB_PATH:-$(scripts/fetch-onnxruntime.sh)}")
else
  rt_args+=(--no-ort)
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
layers=$("$mbt" model stats --config "$config" --json >/dev/null && grep -m1 '^layers' "$config" | tr -dc 0-9)
variants=("late $layers")
for lf in 0 $((layers / 3)) $((2 * layers / 3)); do
  variants+=("bottleneck $lf" "full_attention $lf")
done
echo "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; $config; batch 1, $threads thread(s), median of $runs runs"
echo "| fusion | Lf | GMACs | MACs / late | tract ms | tract / late | onnxruntime ms | ort / late |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
late_macs="" late_tract="" late_ort=""
for v in "${variants[@]}"; do
  read -r kind lf <<<"$v"
  set_args=(--set "fusion=$kind" --set "fusion_layer=$lf")
  macs=$("$mbt" model stats --config "$config" "${set_args[@]}" --json | jq .total.macs)
  "$mbt" export --config "$config" "${set_args[@]}" --random-init --seed 1 --out "$tmp/m.onnx" >&2
  # The table row: | model | threads | batch | tract ms | ort ms | ratio | diff | loads |
  row=$("$runtimes" "${rt_args[@]}" "$tmp/m.onnx" | tail -n 1)
  rm -f "$tmp/m.onnx"
  tract_ms=$(cut -d'|' -f5 <<<"$row" | xargs)
  ort_ms=$(cut -d'|' -f6 <<<"$row" | xargs)
  if [ -z "$late_macs" ]; then late_macs=$macs late_tract=$tract_ms late_ort=$ort_ms; fi
  ratio() { if [ -n "$1" ] && [ -n "$2" ]; then awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; fi; }
  printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$kind" "$lf" \
    "$(awk -v m="$macs" 'BEGIN { printf "%.3f", m / 1e9 }')" "$(ratio "$macs" "$late_macs")" \
    "$tract_ms" "$(ratio "$tract_ms" "$late_tract")" "$ort_ms" "$(ratio "$ort_ms" "$late_ort")"
done
