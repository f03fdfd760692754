#!/bin/bash
# gen.sh SEED N: fresh renders of training sources, tokenized into /work/tok/gSEED
set -e
M=${MBT:-mbt}; S=$1; N=$2; D=/tmp/ave-g$S; O=/work/tok/g$S
$M data build --seed $S --train $N --val 6 --test 6 --out $D >/dev/null 2>&1
mkdir -p $O
python3 -c "
import json
for l in open('$D/manifest.jsonl'):
    e=json.loads(l)
    if e['split']=='train': print('g', e['id'], e['label_index'])
" > $O/list.txt
while read split id lab; do
  $M tokenize audio $D/train/$id.wav --patches --out $O/$id.a.npy 2>/dev/null
  $M tokenize video $D/train/$id.y4m --set video.tubelet=4 --out $O/$id.v.npy 2>/dev/null
done < $O/list.txt
rm -rf $D
echo done $S
