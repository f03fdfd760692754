#!/bin/bash
M=${MBT:-mbt}
D=/work/data/ave
python3 -c "
import json
for l in open('$D/manifest.jsonl'):
    e=json.loads(l)
    print(e['split'], e['id'], e['label_index'])
" > /work/tok/labels.txt
grep -E "^train" labels.txt | head -1500 > sel.txt
grep -E "^val" labels.txt | head -300 >> sel.txt
while read split id lab; do
  $M tokenize audio $D/$split/$id.wav --patches --out /work/tok/$id.a.npy 2>/dev/null
  $M tokenize video $D/$split/$id.y4m --set video.tubelet=4 --out /work/tok/$id.v.npy 2>/dev/null
done < sel.txt
echo done
