#!/usr/bin/env bash
# The daemon as a user runs it: mbtd (release) on the bundled demo clip paced in real time
# (replay.realtime = true, so windows come at the rate a camera and a microphone would give
# them), once per model and backend. Reports, per run:
#   * CPU: the process's user+system time over the wall time (% of one core), from /proc;
#   * memory: peak resident set (VmHWM) from /proc, read just before the clip ends;
#   * per-window compute (tokenize + infer) p50/p99/max and detection latency p50/p99/max
#     (window end on the clock -> scores ready), from mbtd's own exit report.
#
#   bench/daemon.sh                  # models/edge.onnx and models/edge-int8.onnx, backend cpu (+ ort)
#   bench/daemon.sh models/edge.onnx # one model
#
# The demo clip is 24 s, so each run takes about 25 s. Nothing here asserts a time: the
# numbers go to BENCHMARKS.md with the machine named.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo build --release --locked --bin mbtd >&2
mbtd="$CARGO_TARGET_DIR/release/mbtd"
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(models/edge.onnx models/edge-int8.onnx)
backends=(cpu)
if [ -n "${ORT_DYLIB_PATH:-}" ] || ORT_DYLIB_PATH=$(scripts/fetch-onnxruntime.sh 2>/dev/null); then
  export ORT_DYLIB_PATH
  backends+=(ort)
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tick=$(getconf CLK_TCK)

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-24s %-4s %7s %9s %22s %22s %7s\n' model backend "CPU %" "peak RSS" "compute p50/p99/max ms" "latency p50/p99/max ms" windows
for m in "${models[@]}"; do
  for b in "${backends[@]}"; do
    XDG_STATE_HOME="$tmp/state" "$mbtd" --set model.path="$m" --set model.backend="$b" \
      --set model.ort_threads=1 \
      --set audio.source=replay --set video.source=replay --set replay.clip=models/demo \
      --set replay.realtime=true --set evidence.enabled=false >"$tmp/out" 2>"$tmp/err" &
    pid=$!
    start=$(date +%s.%N)
    hwm=0
    ticks=0
    while kill -0 "$pid" 2>/dev/null; do
      if [ -r "/proc/$pid/status" ]; then
        h=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
        t=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)
        [ -n "$h" ] && [ "$h" -gt "$hwm" ] && hwm=$h
        [ -n "$t" ] && ticks=$t
      fi
      sleep 0.2
    done
    wait "$pid" || { echo "mbtd failed on $m ($b):" >&2; tail -5 "$tmp/err" >&2; exit 1; }
    end=$(date +%s.%N)
    python3 - "$tmp/err" "$m" "$b" "$ticks" "$tick" "$start" "$end" "$hwm" <<'PY'
import json, sys
err, model, backend, ticks, tck, start, end, hwm = sys.argv[1:]
line = next(l.split("done: ", 1)[1] for l in open(err) if "done: " in l)
r = json.loads(line)
wall = float(end) - float(start)
cpu = 100.0 * int(ticks) / int(tck) / wall
ms = lambda k: "-" if r.get(k) is None else f"{r[k] / 1000:.1f}"
q = lambda p: f"{ms(p + '_p50_us')}/{ms(p + '_p99_us')}/{ms(p + '_max_us')}"
print(f"{model:<24} {backend:<4} {cpu:7.1f} {int(hwm) / 1024:7.1f}MB {q('compute'):>22} {q('latency'):>22} {r['windows_inferred']:>7}")
PY
  done
done
