"""Scores mbtd's event lines against the demo timeline: an event is a hit when a timeline event
of the same label starts within +-1 s of it (each timeline event counted once); all else is false."""
import json, sys
tl = json.load(open("models/demo/timeline.json"))["events"]
ev = [json.loads(l) for l in open(sys.argv[1])]
ev = [e for e in ev if e.get("kind") == "new"]
used, hits, false = set(), 0, []
for e in ev:
    m = [i for i, t in enumerate(tl) if i not in used and t["label"] == e["label"] and abs(t["start"] - e["start_s"]) <= 1.0]
    if m: used.add(m[0]); hits += 1
    else: false.append(f'{e["label"]}@{e["start_s"]:.0f}s')
print(f"{sys.argv[1]}: {len(ev)} events, timeline events found {len(used)}/{len(tl)}, false {len(false)}: {', '.join(false)}")
