#!/usr/bin/env bash
# Personalisation time: `mbt train --init models/edge.onnx --add-labels LABEL` (release) on a
# user's clips, side by side in one script: `replay` (the default: the shipped replay set
# models/edge.replay mixed into every batch) and `no-replay` (--no-replay, the user's clips
# alone: the reference). Each run starts from a fresh copy of the clips, so the trunk features
# are computed in it, as on a first run on a board. Prints each run's own time split
# (features, training, scoring, export), its wall time and peak RSS, and the ratio.
#
#   bench/personalise.sh USER_DATA LABEL
#
# USER_DATA: a data set of the user's clips (`mbt data import ... --out DIR`, or the one the
# test that plays the user builds: `cargo test -p mbt-host --test personalise -- --ignored`
# leaves it in /tmp/mbt-test-personalise-user-*/imported). Nothing here asserts a time: the
# numbers go to BENCHMARKS.md with the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
data=${1:?usage: bench/personalise.sh USER_DATA LABEL}
label=${2:?usage: bench/personalise.sh USER_DATA LABEL}
cargo build --release --locked -p mbt-host --bin mbt >&2
mbt="$CARGO_TARGET_DIR/release/mbt"
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$(scripts/fetch-onnxruntime.sh)}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
declare -A wall
for run in replay no-replay; do
  rm -rf "$tmp/data" "$tmp/run"
  cp -r "$data" "$tmp/data"
  rm -rf "$tmp/data/features"
  extra=()
  [ "$run" = no-replay ] && extra=(--no-replay)
  /usr/bin/time -f "%e %M" -o "$tmp/time" "$mbt" train --init models/edge.onnx --data "$tmp/data" \
    --add-labels "$label" --out "$tmp/run" "${extra[@]}" >"$tmp/out" 2>"$tmp/err" ||
    { cat "$tmp/err" >&2; exit 1; }
  read -r w rss <"$tmp/time"
  wall[$run]=$w
  echo "$run: $(grep '^time:' "$tmp/out" | cut -d';' -f1), wall $w s, peak RSS $((rss / 1024)) MB"
done
python3 -c "import sys; a, b = map(float, sys.argv[1:]); print(f'replay / no-replay wall time: {a / b:.2f}x')" \
  "${wall[replay]}" "${wall[no-replay]}"
