#!/usr/bin/env bash
# The main job: runs mbtd on the bundled demo clip (models/demo) with the bundled model and
# prints the events as JSON lines. The clip is replayed as fast as inference goes (add
# `--set replay.realtime=true` to pace it like a live camera and microphone); extra arguments
# go to mbtd. Installs missing system packages and builds mbtd (release) first.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
scripts/install-deps.sh
cargo build --release --locked --bin mbtd
mbtd="$CARGO_TARGET_DIR/release/mbtd"
model=models/edge.onnx
clip=models/demo
if [ ! -f "$model" ]; then
  echo "mbt-edge: no trained model ($model) is bundled yet. The daemon is built: to see it run"
  echo "on the demo clip ($clip, ground truth in $clip/timeline.json) with random weights:"
  echo
  echo "  cargo run --release -p mbt-host --bin mbt -- export --config configs/edge.toml --random-init --seed 1 --out /tmp/edge-rand.onnx"
  echo "  $mbtd --set model.path=/tmp/edge-rand.onnx --set audio.source=replay --set video.source=replay --set sink.stdout_scores=true"
  echo
  echo "The daemon's effective default configuration:"
  echo
  "$mbtd" --print-config
  exit 0
fi
# The web page on a free port (its address is logged): a second mbtd on this machine, or
# anything else on 8090, must not stop the demo. `--set web.listen=127.0.0.1:8090` to choose.
exec "$mbtd" --set model.path="$model" --set audio.source=replay --set video.source=replay \
  --set replay.clip="$clip" --set web.listen=127.0.0.1:0 "$@"
