#!/usr/bin/env bash
# The accelerated soak (issue 33, item 1): mbtd replays a looped clip (replay.loops = 0) as
# fast as inference goes, with evidence on, the web page watched by 3 SSE clients and 2
# pollers, /metrics scraped, MQTT on a real mosquitto that is stopped for up to 30 s every
# twelfth of the run, and (as root) the state directory on a 64 MiB tmpfs filled for a minute
# half-way through. Every 5 s: RSS, open fds, threads, spool and evidence bytes, windows,
# events, deliveries, events held in memory, write failures -> CSV; then a plot (plotters).
#
#   bench/soak.sh                 # one hour, models/edge.onnx on models/demo
#   MBT_SOAK_S=600 bench/soak.sh  # ten minutes
#   MBT_SOAK_MODEL=... MBT_SOAK_CLIP=... bench/soak.sh
#
# The driver is `tests/soak.rs` (`soak_long`, ignored by default; its short form runs in the
# default tests); it checks the bounds and the accounting (published = delivered + kept) and
# prints the figures BENCHMARKS.md quotes. The daemon is the dev-profile mbtd the test binary
# is built with (opt-level 1, dependencies 2): what grows grows there too. Run it niced on a
# shared machine: `nice -n 10 bench/soak.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
out=${MBT_SOAK_OUT:-out/soak}
mkdir -p "$out"
export MBT_SOAK_S=${MBT_SOAK_S:-3600}
export MBT_SOAK_CSV=${MBT_SOAK_CSV:-$PWD/$out/soak.csv}
if [ -z "${ORT_DYLIB_PATH:-}" ]; then
  ORT_DYLIB_PATH=$(scripts/fetch-onnxruntime.sh 2>/dev/null) && export ORT_DYLIB_PATH || true
fi
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "soak: ${MBT_SOAK_S} s, samples to $MBT_SOAK_CSV"
cargo test --workspace --locked --test integration -- --ignored --nocapture --exact soak::soak_long \
  2>&1 | tee "$out/soak.log" | grep -E '^(soak|report):|panicked|test result'
cargo build --workspace --locked --example soak_plot
"$CARGO_TARGET_DIR/debug/examples/soak_plot" "$MBT_SOAK_CSV" "$out/soak.png"
