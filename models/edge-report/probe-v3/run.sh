#!/bin/bash
# Probes on data v3 (224-px renders): tokenizer at 224 (7x7 cells) vs 112 (4x4 cells, the
# camera frame shrunk as mbtd does today); cells max vs mean; frames 2/4/8.
set -e
cd "$(dirname "$0")/../../.."
source scripts/env.sh
export ORT_DYLIB_PATH=$(scripts/fetch-onnxruntime.sh)
M=${MBT:-$CARGO_TARGET_DIR/release/mbt}
D=${D:-ave3}        # mbt data build --seed 0 --frame-size 224 --out ave3
O=${O:-runs/probe}
mkdir -p $O
S224="--set trunks.video_pool=1 --set tokenizer.video.height=224 --set tokenizer.video.width=224 --set tokenizer.video.resize_shorter=224"
S112="--set trunks.video_pool=1"
N="--train-clips 2500 --clips 1000"
for size in 224 112; do
  eval S=\$S$size
  for cells in max mean; do
    for frames in 8 4 2; do
      [ $cells = mean ] && [ $frames != 8 ] && continue
      t=$O/p$size-$cells-f$frames
      (time $M data probe --data $D $S $N --cells $cells --frames $frames --out $t.json) > $t.txt 2> $t.err
    done
  done
done
echo done > $O/DONE
