#!/usr/bin/env bash
# Tokenizer benchmark, side by side with torchaudio in one run, both pinned to one core.
#   bench/tokenizer.sh [PYTHON]
# PYTHON defaults to ~/.cache/mbt-pyref/bin/python (a venv with torch==2.5.1 torchaudio==2.5.1
# numpy; see crates/mbt-core/tests/fixtures/gen_fixtures.py for how to make it).
#
# Shared machines are noisy, so the log-mel comparison runs in ROUNDS alternating rounds (Rust,
# then torchaudio, each a few seconds) and reports every round's ratio and their median.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
py="${1:-$HOME/.cache/mbt-pyref/bin/python}"
rounds="${ROUNDS:-3}"
pin=""
command -v taskset >/dev/null && pin="taskset -c 0"

cargo bench --locked -p mbt-core --bench tokenize --no-run 2>/dev/null
echo "# machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; one thread each, pinned to core 0"
# Video rows (no reference implementation to compare with; absolute times).
$pin cargo bench --locked -p mbt-core --bench tokenize -- --output-format bencher patches 2>/dev/null | grep '^test '
ratios=()
for r in $(seq "$rounds"); do
  rust_ns=$($pin cargo bench --locked -p mbt-core --bench tokenize -- --output-format bencher \
    --warm-up-time 1 --measurement-time 4 logmel_10s_16k 2>/dev/null | awk '/^test / {gsub(",", "", $5); print $5}')
  torch_ms=$($pin "$py" bench/torchaudio_fbank.py | sed -E 's/.*median_ms=([0-9.]+).*/\1/')
  ratio=$(python3 -c "print(f'{$torch_ms / ($rust_ns / 1e6):.2f}')")
  ratios+=("$ratio")
  python3 -c "print(f'round $r: log-mel 10 s @ 16 kHz: mbt-core {$rust_ns / 1e6:.3f} ms, torchaudio {$torch_ms:.3f} ms, ratio {$ratio}x')"
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "median over $rounds rounds: mbt-core is ${median}x faster than torchaudio kaldi.fbank"
