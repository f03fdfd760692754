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
if [ ! -f "$model" ] || [ ! -d "$clip" ]; then
  echo "mbt-edge: no trained model ($model) and no demo clip ($clip) are bundled yet."
  echo "The tokenizer, the CLIs and their tests are in place; the daemon's pipeline, the model and"
  echo "the demo clip arrive with the model, data and daemon work (see README, 'Status')."
  echo "Meanwhile, the daemon's effective default configuration:"
  echo
  "$mbtd" --print-config
  exit 0
fi
exec "$mbtd" --set model.path="$model" --set audio.source=replay --set video.source=replay "$@"
