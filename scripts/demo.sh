#!/usr/bin/env bash
# The main job: runs mbtd on the bundled demo clip with the bundled model and prints events.
# Installs missing system packages and builds mbtd (release) first.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
scripts/install-deps.sh
cargo build --release --locked --bin mbtd
mbtd="$CARGO_TARGET_DIR/release/mbtd"
model=models/edge.onnx
clip=models/demo
if [ ! -f "$model" ]; then
  echo "mbt-edge: no trained model ($model) is bundled yet, and the daemon's capture/inference"
  echo "pipeline is not built yet; the demo clip is in $clip (timeline: $clip/timeline.json)."
  echo "The tokenizer, the model/export tools, the data set builder and their tests are in place"
  echo "(see README, 'Status'). Meanwhile, the daemon's effective default configuration:"
  echo
  "$mbtd" --print-config
  exit 0
fi
exec "$mbtd" --set model.path="$model" --set audio.source=replay --set video.source=replay "$@"
