#!/usr/bin/env bash
# A model reload while mbtd runs in real time: mbtd (release) replays the bundled demo clip
# paced like a live camera + microphone (replay.realtime = true) with the bundled model; 8 s
# in, the model file is replaced by a rename (as `mv` does) with a copy of itself, so the
# watcher (model.watch_s = 0.5) loads it beside the running one and hands it over; 14 s in,
# a SIGHUP does it again. Reports, from mbtd's own log and exit report: how long each load
# took, windows cut / scored / dropped over the run, and the detection latency p50/p99/max
# (the reloads' cost, if any, shows in the max). Compare with bench/daemon.sh's row for the
# same model (no reload), run in the same session.
#
#   bench/reload.sh                  # models/edge.onnx
#   bench/reload.sh path/to/model.onnx
#
# Two runs side by side: `none` (no reload, the reference) and `reload`.
#
# About 52 s. Nothing here asserts a time: the numbers go to BENCHMARKS.md with the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo build --release --locked --bin mbtd >&2
mbtd="$CARGO_TARGET_DIR/release/mbtd"
src=${1:-models/edge.onnx}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$src" "$tmp/model.onnx"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
run() { # $1 = reload|none: one paced run of the demo, report from the exit line
  rm -rf "$tmp/state"
  cp "$src" "$tmp/model.onnx"
  XDG_STATE_HOME="$tmp/state" RUST_LOG=info "$mbtd" --set model.path="$tmp/model.onnx" \
    --set model.watch_s=0.5 --set model.backend=cpu \
    --set audio.source=replay --set video.source=replay --set replay.clip=models/demo \
    --set replay.realtime=true --set web.listen=127.0.0.1:0 >"$tmp/out" 2>"$tmp/err" &
  pid=$!
  if [ "$1" = reload ]; then
    sleep 8
    cp "$src" "$tmp/model.part" && mv "$tmp/model.part" "$tmp/model.onnx"
    sleep 6
    kill -HUP "$pid"
  fi
  wait "$pid" || { echo "mbtd failed:" >&2; tail -5 "$tmp/err" >&2; exit 1; }
  python3 - "$tmp/err" "$1" <<'PY'
import json, re, sys
log = open(sys.argv[1]).read()
loads = re.findall(r"model reload \(([^)]*)\): (\S+) loaded in ([0-9.]+) s", log)
r = json.loads(next(l.split("done: ", 1)[1] for l in log.splitlines() if "done: " in l))
ms = lambda us: "-" if us is None else f"{us / 1000:.0f}"
took = ", ".join(f"{why}: {s} s" for why, _, s in loads) or "-"
print(f"{sys.argv[2]:<7} {r['model_reloads']:>7} {r['model_reload_failures']:>7} {r['windows_cut']:>4} {r['windows_inferred']:>8} {r['windows_dropped']:>7}   "
      f"{ms(r['latency_p50_us'])}/{ms(r['latency_p99_us'])}/{ms(r['latency_max_us']):<12} {took}")
PY
}
printf '%-7s %7s %7s %4s %8s %7s   %-16s %s\n' run reloads refused cut inferred dropped "latency p50/p99/max ms" "load time"
run none
run reload
