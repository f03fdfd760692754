#!/usr/bin/env bash
# Tokenizer benchmark, side by side with torchaudio in one run, both pinned to one core.
#   bench/tokenizer.sh [PYTHON]
# PYTHON defaults to ~/.cache/mbt-pyref/bin/python (a venv with torch==2.5.1 torchaudio==2.5.1
# numpy; see crates/mbt-core/tests/fixtures/gen_fixtures.py for how to make it).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
py="${1:-$HOME/.cache/mbt-pyref/bin/python}"
pin=""
command -v taskset >/dev/null && pin="taskset -c 0"

rust_out=$($pin cargo bench --locked -p mbt-core --bench tokenize -- --output-format bencher 2>/dev/null | grep '^test ')
echo "$rust_out"
py_out=$($pin "$py" bench/torchaudio_fbank.py)
echo "$py_out"

rust_ns=$(echo "$rust_out" | awk '/logmel_10s_16k/ {gsub(",", "", $5); print $5}')
torch_ms=$(echo "$py_out" | sed -E 's/.*median_ms=([0-9.]+).*/\1/')
python3 - "$rust_ns" "$torch_ms" <<'PY'
import sys
rust_ms = float(sys.argv[1]) / 1e6
torch_ms = float(sys.argv[2])
print(f"log-mel 10 s @ 16 kHz: mbt-core {rust_ms:.3f} ms, torchaudio {torch_ms:.3f} ms, "
      f"mbt-core is {torch_ms / rust_ms:.2f}x faster (one thread each)")
PY
