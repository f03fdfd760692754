#!/usr/bin/env python3
"""Writes the small seed corpora in seeds/<target>/ (committed; rerun to regenerate).

Standard library only. The postcard layout follows mbt_core::event::Event field by field
(varints, length-prefixed strings, little-endian floats, option tags), the frame is COBS plus a
zero delimiter (mbt_publish::frame), a spool record is "MBSR" | len u32 LE | crc32(len bytes +
payload) u32 LE | payload (mbt_publish::spool::record). `mbt events listen --udp` prints the
frame seeds back as JSON, which is how they were checked.
"""
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def string(s):
    b = s.encode()
    return varint(len(b)) + b


def opt(v, enc):
    return b"\x00" if v is None else b"\x01" + enc(v)


f32 = lambda x: struct.pack("<f", x)
f64 = lambda x: struct.pack("<d", x)


def event(schema=1, id="1732630000000-0001", kind=0, label="glass_breaking", score=0.93,
          score_audio=0.71, score_video=None, audio=True, video=False,
          start_ms=1_732_630_000_000, end_ms=None, start_s=3.0, end_s=None,
          model_version="edge-test", evidence=None):
    """Schema 1 has no `evidence`; schema 2 ends with Option<{jpeg: Option, wav: Option}>."""
    fields = [
        varint(schema), string(id), varint(kind), string(label), f32(score),
        opt(score_audio, f32), opt(score_video, f32), bytes([audio, video]),
        varint(start_ms), opt(end_ms, varint), f64(start_s), opt(end_s, f64),
        string(model_version),
    ]
    if schema >= 2:
        fields.append(opt(evidence, lambda e: opt(e[0], string) + opt(e[1], string)))
    return b"".join(fields)


def cobs(data):
    out, block = bytearray(), bytearray()
    for b in data:
        if b == 0:
            out += bytes([len(block) + 1]) + block
            block = bytearray()
        else:
            block.append(b)
            if len(block) == 254:
                out += b"\xff" + block
                block = bytearray()
    out += bytes([len(block) + 1]) + block
    return bytes(out) + b"\x00"


def record(payload):
    length = struct.pack("<I", len(payload))
    crc = zlib.crc32(length + payload) & 0xFFFFFFFF
    return b"MBSR" + length + struct.pack("<I", crc) + payload


def write(target, name, data):
    d = os.path.join(HERE, "seeds", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


new = event()
update = event(kind=1, score=0.97, score_video=0.42, video=True)
end = event(id="1732630000000-0002", kind=2, label="dog_bark", score_audio=None,
            end_ms=1_732_630_004_500, end_s=7.75)
long_ = event(id="x" * 300, model_version="y" * 260)  # exercises COBS's 0xFF blocks

write("frame_decode", "new", cobs(new))
write("frame_decode", "update", cobs(update))
write("frame_decode", "end", cobs(end))
write("frame_decode", "long", cobs(long_))
write("frame_decode", "stream_with_garbage", cobs(new) + b"\x07garbage\x00" + cobs(end))
write("frame_decode", "future_schema", cobs(event(schema=3)))
v2 = event(schema=2, evidence=("/var/lib/mbtd/evidence/1732630000000-0001.jpg", None))
v2_end = event(schema=2, id="1732630000000-0002", kind=2, end_ms=1_732_630_004_500, end_s=7.75)
write("frame_decode", "v2_new_with_evidence", cobs(v2))
write("frame_decode", "v2_end_without_evidence", cobs(v2_end))

write("spool_scan", "three_records", record(new) + record(update) + record(end))
write("spool_scan", "schema_1_then_2", record(new) + record(v2) + record(v2_end))
write("spool_scan", "torn_tail", record(new) + record(end)[:20])
write("spool_scan", "garbage_between", record(new) + b"junk MBSR junk" + record(end))
write("spool_scan", "flipped_byte", record(new)[:30] + b"\xff" + record(new)[31:] + record(end))

write("config", "publish.toml", b"""\
[mqtt]
enabled = false
url = "mqtts://broker.local:8883"
device = "porch"
topic_prefix = "mbt"
username = "mbt"
password = "secret"
reconnect_min_ms = 500
reconnect_max_ms = 30000

[postcard]
unix = "/run/mbtd/events.sock"
udp = "127.0.0.1:5555"

[[gpio.pins]]
label = "glass_breaking"
pin = 17

[spool]
max_bytes = 1048576
segment_bytes = 65536
when_full = "refuse_newest"
fsync = "never"

[metrics]
enabled = false
listen = "127.0.0.1:9464"

[evidence]
enabled = true
""")
write("config", "tokenizer_with_overrides.toml", b"""\
[audio]
num_frames = 96
norm_std = 3.5
[video]
num_frames = 8
tubelet = 2
--set audio.patch_time=8
--set video.mean=[0.1, 0.2, 0.3]
""")
