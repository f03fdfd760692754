#!/usr/bin/env bash
# Training throughput of `mbt train` against its PyTorch CPU twin (bench/train_twin.py): same
# config, batch size, optimiser and thread count, run one after the other in this script.
# mbt's figure includes tokenizing and augmenting every clip; the twin's uses ready tensors.
#
#   bench/train_throughput.sh DATA_DIR [CONFIG] [THREADS] [STEPS]
# needs the Python reference venv (~/.cache/mbt-pyref, or MBT_PYTHON) with torch.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
data=${1:?usage: bench/train_throughput.sh DATA_DIR [CONFIG] [THREADS] [STEPS]}
config=${2:-configs/edge-scratch.toml}
threads=${3:-2}
steps=${4:-30}
py=${MBT_PYTHON:-$HOME/.cache/mbt-pyref/bin/python}
# MBT=path/to/mbt times another build (the default is the release build, as shipped).
if [ -z "${MBT:-}" ]; then
  cargo build --locked --release -p mbt-host --bin mbt >&2
  MBT="$CARGO_TARGET_DIR/release/mbt"
fi
mbt=$MBT
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $threads thread(s), $config"
# 3 warm-up steps, then the timed ones (the run resumes, so loading is not timed either).
"$mbt" train --config "$config" --set train.threads="$threads" --data "$data" --out "$tmp/run" \
  --limit-train 2048 --limit-val 32 --max-steps 3 2>/dev/null
line=$("$mbt" train --resume --data "$data" --out "$tmp/run" --max-steps "$steps" 2>&1 | grep 'samples/s')
echo "# mbt: $line"
ours=$(grep -o '[0-9.]* samples/s' <<<"$line" | cut -d' ' -f1)
twin=$("$py" bench/train_twin.py "$config" --threads "$threads" --steps "$steps" | "$py" -c 'import json,sys; print(round(json.load(sys.stdin)["samples_per_s"],2))')
"$py" -c "print(f'mbt train: $ours samples/s   PyTorch twin: $twin samples/s   ratio mbt/PyTorch: {$ours/$twin:.2f}x')"
